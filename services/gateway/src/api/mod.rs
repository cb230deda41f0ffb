//! The public HTTP API: `POST /v1/referrals` (the referral contract in, with an
//! `Idempotency-Key`) and `GET /v1/referrals/{id}` (its status, for the caller's council), the
//! case's public status ([`cases`]), consent recorded and withdrawn ([`consent`]), the offers a
//! provider answers ([`offers`]) and the council's directory of services ([`directory`]). The
//! caller is an upstream system with its council's API key (`X-Api-Key`) or a person with a
//! bearer token, authenticated as the gRPC services authenticate them; each request goes on to
//! the service's gRPC API carrying the caller's own credential, so the service decides and audits
//! as for any other caller. Every error is a problem document ([`crate::problem`]).
pub mod cases;
pub mod consent;
pub mod directory;
pub mod offers;

use crate::contract;
use crate::limit::RateLimiter;
use crate::problem::{Problem, Violation};
use crate::settings::GatewaySettings;
use crate::store::{self, Kept};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use eh_auth::{Authenticator, Principal};
use eh_platform::Clock;
use eh_proto::allocation::v1::allocation_service_client::AllocationServiceClient;
use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
use eh_proto::consent::v1::consent_service_client::ConsentServiceClient;
use eh_proto::intake::v1::intake_service_client::IntakeServiceClient;
use eh_proto::intake::v1::{GetReferralRequest, SubmitReferralRequest};
use sea_orm::DatabaseConnection;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::sync::Arc;
use std::time::Instant;
use tonic::transport::Channel;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

/// The idempotency header a submission must carry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on an answer repeated for an idempotency key already used with the same body.
pub const REPLAYED: &str = "idempotent-replayed";
/// The longest idempotency key taken.
pub const MAX_KEY_LEN: usize = 255;

/// What the handlers share.
pub struct Api {
    pub db: DatabaseConnection,
    pub intake: IntakeServiceClient<Channel>,
    pub casework: CaseworkServiceClient<Channel>,
    pub consent: ConsentServiceClient<Channel>,
    pub allocation: AllocationServiceClient<Channel>,
    pub auth: Authenticator,
    pub settings: GatewaySettings,
    pub limiter: RateLimiter,
    pub clock: Arc<dyn Clock>,
}

/// A referral was taken (201) or was held already under its source reference (200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmittedReferral {
    pub referral_id: String,
    /// When intake first received it (RFC 3339).
    pub received_at: String,
    /// `true` when the same `source.system` and `source.reference` were held already: nothing
    /// new was stored.
    pub duplicate: bool,
}

/// Where a referral stands, as the system that sent it may know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReferralStatus {
    pub referral_id: String,
    /// `received`: intake holds it.
    #[schema(example = "received")]
    pub status: String,
    pub received_at: String,
    pub source: ReferralSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReferralSource {
    pub system: String,
    pub reference: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Early Help platform: public API",
        description = "For upstream systems (school, health and police systems, councils' integration hubs): \
submit a request for support with the council's API key and an `Idempotency-Key`, and read where it and \
its case stand (status only, never the family's details); for practitioners, record and withdraw a family's consent; \
for providers, the offers made to their organisation, to accept or decline; and the council's directory of \
services, searched for a family like the one described. Each call goes on to the service that \
owns the record with the caller's own credential: that service decides who may, and audits it. Every error is `application/problem+json` (RFC 9457); a request refused for its content lists every \
violation by path and rule, never the value sent.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&Security),
    tags(
        (name = "referrals", description = "Requests for support (the referral contract `earlyhelp.referral.v1`)"),
        (name = "cases", description = "Where a referral's case stands: its public status only"),
        (name = "consent", description = "A family's consent ledger: records appended and withdrawn (practitioners)"),
        (name = "offers", description = "Offers of cases to services: a provider sees and answers those made to its organisation"),
        (name = "directory", description = "The council's directory of services (Open Referral UK with the council's terms): searched for a family's needs, ages and postcode, ranked by the council's matching rules"),
    ),
    components(schemas(
        Problem,
        Violation,
        crate::webhook::CaseStatusChanged,
        crate::webhook::CaseStatusChangedData,
        offers::OfferStatus
    ))
)]
struct ApiDoc;

/// The two ways a client authenticates: a council's API key, or a person's bearer token.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "An API key configured for one council's upstream system",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A person's token from the council's identity provider",
                    ))
                    .build(),
            ),
        );
        openapi.security = Some(vec![
            SecurityRequirement::new("api_key", Vec::<String>::new()),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]);
    }
}

/// The documented routes: what the router serves and the OpenAPI document says, from one list.
pub fn documented() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(submit_referral))
        .routes(routes!(get_referral))
        .routes(routes!(cases::get_case_of_referral))
        .routes(routes!(consent::record_consent))
        .routes(routes!(consent::withdraw_consent))
        .routes(routes!(offers::list_offers))
        .routes(routes!(offers::accept_offer))
        .routes(routes!(offers::decline_offer))
        .routes(routes!(directory::search_directory))
        .routes(routes!(directory::get_directory_service))
}

/// The API's routes and `/openapi.json`; every unknown route, wrong method and error is a
/// problem document.
pub fn router(api: Arc<Api>) -> Router {
    let (routes, _) = documented().split_for_parts();
    let doc = crate::openapi::document();
    routes
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
            }),
        )
        .fallback(|| async { Problem::not_found().detail("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            )
            .detail("the route exists; the Allow header lists its methods")
        })
        .with_state(api)
}

/// The caller, from `X-Api-Key` or `Authorization: Bearer` (only those: a platform service's
/// key is never taken from outside), and the credential to send on to the services.
pub(crate) struct Caller {
    pub(crate) principal: Principal,
    pub(crate) tenant: String,
    credential: (&'static str, HeaderValue),
}

impl Caller {
    /// The rate limit's and the idempotency keys' owner: the council and the API key's name or
    /// the person.
    fn client(&self) -> String {
        self.principal.actor()
    }

    pub(crate) fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        let (name, value) = &self.credential;
        if let Ok(v) = tonic::metadata::MetadataValue::try_from(value.as_bytes()) {
            req.metadata_mut().insert(*name, v);
        }
        req
    }
}

impl Api {
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Problem> {
        let credential = if let Some(v) = headers.get(header::AUTHORIZATION) {
            ("authorization", v.clone())
        } else if let Some(v) = headers.get("x-api-key") {
            ("x-api-key", v.clone())
        } else {
            return Err(Problem::unauthenticated(
                "send `X-Api-Key: <key>` or `Authorization: Bearer <token>`",
            ));
        };
        let mut md = tonic::metadata::MetadataMap::new();
        if let Ok(v) = tonic::metadata::MetadataValue::try_from(credential.1.as_bytes()) {
            md.insert(credential.0, v);
        }
        let principal = self.auth.authenticate(&md).map_err(|e| {
            tracing::info!(reason = %e, "HTTP request not authenticated");
            Problem::unauthenticated("the credentials were not accepted")
        })?;
        let Some(tenant) = principal.tenant().map(String::from) else {
            return Err(Problem::forbidden("the credentials belong to no council"));
        };
        Ok(Caller {
            principal,
            tenant,
            credential,
        })
    }

    pub(crate) fn admit(&self, caller: &Caller) -> Result<(), Problem> {
        self.limiter
            .take(
                &format!("{}/{}", caller.tenant, caller.client()),
                Instant::now(),
            )
            .map_err(|wait| {
                let mut p = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "Too many requests",
                )
                .detail("this client's request rate is over its limit; retry after the time given");
                p.retry_after_secs = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
                p
            })
    }

    /// The caller, admitted under its rate limit.
    pub(crate) fn caller(&self, headers: &HeaderMap) -> Result<Caller, Problem> {
        let caller = self.authenticate(headers)?;
        self.admit(&caller)?;
        Ok(caller)
    }

    /// A JSON request body: `application/json`, at most `gateway.max_body_bytes` (declared or
    /// streamed), a JSON document.
    pub(crate) async fn json_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<serde_json::Value, Problem> {
        require_json(headers)?;
        self.json_bytes(headers, body).await
    }

    /// As [`Self::json_body`] for a request made once per `Idempotency-Key` ([`Self::once`]):
    /// the media type, then the key, then the body.
    pub(crate) async fn keyed_json_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(String, serde_json::Value), Problem> {
        require_json(headers)?;
        let key = idempotency_key(headers)?;
        Ok((key, self.json_bytes(headers, body).await?))
    }

    /// A request made once per `Idempotency-Key`: the answer kept for the caller's `key` is
    /// given again (`Idempotent-Replayed: true`) when `request` — what identifies it: its route
    /// and body — is the same, and refused (422) when it is another; otherwise `run` answers and
    /// its answer is kept for the key. The key is taken before `run` starts, so the same key sent
    /// again meanwhile is 409 (never a second run). A refusal is not kept: the same key may carry
    /// the corrected request.
    pub(crate) async fn once(
        &self,
        caller: &Caller,
        key: &str,
        request: &str,
        run: impl Future<Output = Result<Kept, Problem>>,
    ) -> Result<Response, Problem> {
        let digest = hex::encode(sha2::Sha256::digest(request.as_bytes()));
        let since = self.since();
        let now = self.clock.now();
        // A reservation older than a few call timeouts was left by a request that never
        // finished (its process died): a retry takes the key over.
        let abandoned = now
            - chrono::Duration::milliseconds(
                i64::try_from(self.settings.call_timeout_ms.saturating_mul(3)).unwrap_or(i64::MAX),
            );
        let client = caller.client();
        let tenant = caller.tenant.as_str();
        let reserved = async {
            let txn = eh_store::begin_scoped(&self.db, tenant).await?;
            let r =
                store::reserve(&txn, tenant, &client, key, &digest, now, since, abandoned).await?;
            eh_store::commit(txn).await?;
            Ok::<_, sea_orm::DbErr>(r)
        }
        .await
        .map_err(db_error)?;
        match reserved {
            store::Reserved::Answered(kept) => return replay(&kept, &digest),
            store::Reserved::InProgress { request_sha256 } if request_sha256 != digest => {
                return Err(key_reused());
            }
            store::Reserved::InProgress { .. } => {
                let mut p = Problem::new(
                    StatusCode::CONFLICT,
                    "idempotency-key-in-progress",
                    "A request with this idempotency key is under way",
                )
                .detail("retry with the same key shortly: it will get that request's answer");
                p.retry_after_secs = Some(1);
                return Err(p);
            }
            store::Reserved::Fresh => {}
        }
        let settle = |kept: Option<Kept>| async move {
            let txn = eh_store::begin_scoped(&self.db, tenant).await?;
            match &kept {
                Some(k) => store::complete(&txn, tenant, &client, key, k).await?,
                None => store::release(&txn, tenant, &client, key).await?,
            }
            eh_store::commit(txn).await
        };
        match run.await {
            Ok(answer) => {
                let kept = Kept {
                    request_sha256: digest,
                    ..answer
                };
                // Done already: an answer that could not be kept is still this request's (a
                // retry after the reservation is abandoned runs again).
                if let Err(e) = settle(Some(kept.clone())).await {
                    tracing::warn!(error = %e, "idempotency key: the answer was not kept");
                }
                Ok(answer_with(&kept, false))
            }
            Err(p) => {
                // Refused, or failed with no answer: the key is free for a retry. (A call that
                // timed out may still have been done by the service; a retry then runs again,
                // as it would with no key at all.)
                if let Err(e) = settle(None).await {
                    tracing::warn!(error = %e, "idempotency key: not released");
                }
                Err(p)
            }
        }
    }

    async fn json_bytes(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<serde_json::Value, Problem> {
        let limit = self.settings.max_body_bytes;
        let too_large = || {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            )
            .detail(format!("the body may be at most {limit} bytes"))
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| too_large())?;
        serde_json::from_slice(&bytes).map_err(|_| {
            Problem::bad_request(
                vec![Violation::new("", "json")],
                "the body is not a JSON document (UTF-8)",
            )
        })
    }

    fn since(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now() - self.settings.idempotency_ttl()
    }
}

/// Submit a request for support.
///
/// The body is the referral contract `earlyhelp.referral.v1`, checked in full (formats
/// asserted); the council is the caller's. The `Idempotency-Key` makes a retry safe: the same
/// key with the same body gets the first answer again (`Idempotent-Replayed: true`), the same
/// key with another body is refused (422). A referral whose `source.system` and
/// `source.reference` are held already is answered 200 with `duplicate: true`.
#[utoipa::path(
    post,
    path = "/v1/referrals",
    tag = "referrals",
    operation_id = "submitReferral",
    params(
        ("Idempotency-Key" = String, Header, description = "A new key per referral, the same key to retry it: 1 to 255 visible ASCII characters, kept for `gateway.idempotency_ttl_hours` (24 by default)")
    ),
    request_body(content = String, content_type = "application/json", description = "The referral (contract `earlyhelp.referral.v1`)"),
    responses(
        (status = 201, description = "Taken: the referral is stored", body = SubmittedReferral,
            headers(("Location" = String, description = "Its status: `/v1/referrals/{referral_id}`"))),
        (status = 200, description = "Held already under its source reference (nothing new stored), or a replay", body = SubmittedReferral,
            headers(("Location" = String, description = "Its status: `/v1/referrals/{referral_id}`"))),
        (status = 400, description = "No or a malformed `Idempotency-Key`, or a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials, or not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials do not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this idempotency key is under way: retry with the same key shortly (`Retry-After`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 413, description = "The body is larger than `gateway.max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The referral breaks the contract (every violation listed), or the idempotency key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client's rate limit; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A service or the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn submit_referral(State(api): State<Arc<Api>>, headers: HeaderMap, body: Body) -> Response {
    match submit(&api, &headers, body).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn submit(api: &Api, headers: &HeaderMap, body: Body) -> Result<Response, Problem> {
    let caller = api.caller(headers)?;
    let (key, doc) = api.keyed_json_body(headers, body).await?;
    // The body alone identifies a referral (as keys kept before other routes took them).
    let request = doc.to_string();
    api.once(&caller, &key, &request, async {
        let violations = contract::violations(&doc).map_err(|e| {
            tracing::error!(error = %e, "the referral contract cannot be compiled");
            Problem::internal()
        })?;
        if !violations.is_empty() {
            return Err(Problem::validation(violations));
        }
        let referral: eh_proto::intake::v1::Referral =
            serde_json::from_value(doc).map_err(|e| {
                // The contract held, so this is a mismatch between contract and message: ours.
                tracing::error!(error = %e, "a valid referral does not read as the gRPC message");
                Problem::internal()
            })?;
        let mut intake = api.intake.clone();
        let submitted = intake
            .submit_referral(caller.request(SubmitReferralRequest {
                tenant: caller.tenant.clone(),
                referral: Some(referral),
            }))
            .await
            .map_err(from_status)?
            .into_inner();
        let answer = SubmittedReferral {
            referral_id: submitted.referral_id,
            received_at: instant(&submitted.received_at),
            duplicate: submitted.duplicate,
        };
        let location = format!("/v1/referrals/{}", answer.referral_id);
        let status = if answer.duplicate {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Kept::answer(status, &answer, Some(location))
    })
    .await
}

fn key_reused() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
        "Idempotency key already used for another request",
    )
    .detail(
        "this Idempotency-Key was used for another request (body or route); use a new key for a new request",
    )
    .violations(vec![Violation::new(
        "header:Idempotency-Key",
        "idempotency_key_reused",
    )])
}

fn replay(kept: &Kept, digest: &str) -> Result<Response, Problem> {
    if kept.request_sha256 != digest {
        return Err(key_reused());
    }
    Ok(answer_with(kept, true))
}

fn answer_with(kept: &Kept, replayed: bool) -> Response {
    let status = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::OK);
    let mut resp = (status, kept.response.clone()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(loc) = kept
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        h.insert(header::LOCATION, loc);
    }
    if replayed {
        h.insert(REPLAYED, HeaderValue::from_static("true"));
    }
    resp
}

/// The request's body is declared `application/json`.
fn require_json(headers: &HeaderMap) -> Result<(), Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if json {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "Unsupported media type",
    )
    .detail("send the body as `Content-Type: application/json`"))
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    let refuse = |rule: &str, detail: &str| {
        Problem::bad_request(vec![Violation::new("header:Idempotency-Key", rule)], detail)
    };
    let Some(v) = headers.get(IDEMPOTENCY_KEY) else {
        return Err(refuse(
            "required",
            "send an `Idempotency-Key` header: a new one per request, the same one to retry it",
        ));
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            refuse(
                "format",
                "the Idempotency-Key is 1 to 255 visible ASCII characters",
            )
        })?;
    Ok(key.to_string())
}

/// Where a referral stands, for the caller's council.
///
/// Another council's referral is not found, exactly as one that does not exist.
#[utoipa::path(
    get,
    path = "/v1/referrals/{id}",
    tag = "referrals",
    operation_id = "getReferral",
    params(("id" = String, Path, description = "The referral id `submitReferral` answered")),
    responses(
        (status = 200, description = "The referral's status", body = ReferralStatus),
        (status = 401, description = "No credentials, or not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials do not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such referral for this council", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client's rate limit; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A service is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_referral(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    json(status(&api, &headers, id).await)
}

/// An answer as JSON (200), or its problem.
pub(crate) fn json<T: Serialize>(answer: Result<T, Problem>) -> Response {
    match answer {
        Ok(v) => axum::Json(v).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn status(api: &Api, headers: &HeaderMap, id: String) -> Result<ReferralStatus, Problem> {
    let caller = api.caller(headers)?;
    // The caller's own council, whatever the referral's: another council's referral is not found.
    let mut intake = api.intake.clone();
    let record = intake
        .get_referral(caller.request(GetReferralRequest {
            tenant: caller.tenant.clone(),
            referral_id: id,
        }))
        .await
        .map_err(from_status)?
        .into_inner();
    let source = record.referral.and_then(|r| r.source).unwrap_or_default();
    Ok(ReferralStatus {
        referral_id: record.referral_id,
        status: "received".into(),
        received_at: instant(&record.received_at),
        source: ReferralSource {
            system: source.system,
            reference: source.reference,
        },
    })
}

/// An instant as the API gives it: RFC 3339 in UTC to the microsecond, the precision the
/// database keeps, so the time a submission answers is the time its status reads.
pub(crate) fn instant(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

fn db_error(e: sea_orm::DbErr) -> Problem {
    if eh_store::is_transient(&e) {
        tracing::warn!(error = %e, "gateway database unavailable");
        Problem::unavailable("the database is unavailable; retry shortly")
    } else {
        tracing::error!(error = %e, "gateway database error");
        Problem::internal()
    }
}

/// Intake's gRPC refusal of a referral call as a problem ([`refusal`]).
fn from_status(s: tonic::Status) -> Problem {
    refusal(s, "no such referral for this council", contract::pointer)
}

/// A service's gRPC refusal as a problem. Messages are not passed on (a service's message may
/// quote what was sent); field violations keep their path only (`pointer` makes the gRPC field
/// a JSON pointer into the body). `not_found` says what was not found.
pub(crate) fn refusal(s: tonic::Status, not_found: &str, pointer: fn(&str) -> String) -> Problem {
    use tonic::Code;
    use tonic_types::StatusExt;
    match s.code() {
        Code::InvalidArgument => {
            let violations = s
                .get_details_bad_request()
                .map(|b| {
                    b.field_violations
                        .iter()
                        .map(|v| Violation::new(pointer(&v.field), "contract"))
                        .collect()
                })
                .unwrap_or_default();
            Problem::validation(violations)
        }
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => Problem::new(
            StatusCode::CONFLICT,
            "conflict",
            "The record's state does not allow this",
        )
        .detail("the record has moved on (e.g. an offer already answered); read it again"),
        Code::NotFound => Problem::not_found().detail(not_found),
        Code::Unauthenticated => Problem::unauthenticated("the credentials were not accepted"),
        Code::PermissionDenied => Problem::forbidden("the credentials do not allow this"),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted => {
            tracing::warn!(code = ?s.code(), "a service is unavailable");
            Problem::unavailable("a service is unavailable; retry shortly")
        }
        code => {
            tracing::error!(?code, "a service failed");
            Problem::internal()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_utc_to_the_microsecond_truncated() {
        assert_eq!(
            instant("2026-11-29T00:34:43.585474589+00:00"),
            "2026-11-29T00:34:43.585474Z"
        );
        assert_eq!(
            instant("2026-11-29T01:34:43.585474+01:00"),
            "2026-11-29T00:34:43.585474Z"
        );
        assert_eq!(
            instant("2026-11-29T00:34:43Z"),
            "2026-11-29T00:34:43.000000Z"
        );
    }
}
