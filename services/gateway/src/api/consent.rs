//! A family's consent over HTTP: `POST /v1/consent` appends a record to the family's ledger and
//! `POST /v1/consent/{record_id}/withdrawal` withdraws one. The body is checked against the
//! published document's schema first (every violation by path and rule), then the consent
//! service's `RecordConsent` / `WithdrawConsent` decide with the caller's own credential: its
//! access table says who may (the people who work with families; never an upstream system), it
//! validates what the schema cannot (a date in the future, a competent young person unnamed) and
//! audits. The council is always the caller's. Each is made once per `Idempotency-Key`, as a
//! referral's submission is ([`Api::once`]): a retry gets the first answer, nothing recorded twice.
use super::{Api, instant, refusal};
use crate::contract::pointer_under;
use crate::problem::{Problem, Violation};
use crate::store::Kept;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use eh_proto::consent::v1 as pb;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// How consent was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMethod {
    Signed,
    Verbal,
    Electronic,
}

/// What the consent is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentPurpose {
    Assessment,
    Sharing,
    Contacting,
}

/// A category of the family's information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InformationCategory {
    Health,
    Education,
    Police,
    Housing,
    Finances,
    DomesticAbuse,
    MentalHealth,
    SubstanceUse,
    SocialCare,
    All,
}

/// An agency information may be shared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Agency {
    Health,
    Education,
    Police,
    Housing,
    SocialCare,
    YouthSupport,
    Jobcentre,
    Voluntary,
    Other,
}

/// What the family does NOT agree to share: a category, with one agency or (absent) with all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRestriction {
    pub category: InformationCategory,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<Agency>,
}

/// A consent record to append to a family's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentRecordRequest {
    /// The family (intake's family id).
    #[schema(min_length = 1, max_length = 200)]
    pub family_id: String,
    /// One person of the family; absent: the whole family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub person_id: Option<String>,
    /// The name of the person who gave it.
    #[schema(min_length = 1, max_length = 200)]
    pub given_by: String,
    /// Mother, father, carer, self, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 100)]
    pub giver_relationship: Option<String>,
    #[serde(default)]
    pub parental_responsibility: bool,
    /// A competent young person consenting for themselves (name them in `person_id`).
    #[serde(default)]
    pub competent_young_person: bool,
    pub method: ConsentMethod,
    /// Where the evidence is (a document reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500)]
    pub evidence_ref: Option<String>,
    /// The day it was given (`YYYY-MM-DD`, not in the future).
    #[schema(format = Date, example = "2026-11-20")]
    pub given_on: String,
    /// The day it lapses (`YYYY-MM-DD`, not before `given_on`); absent: it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = Date)]
    pub expires_on: Option<String>,
    #[schema(min_items = 1)]
    pub purposes: Vec<ConsentPurpose>,
    #[serde(default)]
    #[schema(max_items = 50)]
    pub restrictions: Vec<ConsentRestriction>,
}

/// A record appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordedConsent {
    pub record_id: String,
    pub family_id: String,
    /// When it was recorded (RFC 3339).
    pub recorded_at: String,
}

/// Why consent is withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentWithdrawalRequest {
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// A withdrawal: the record stays in the ledger, withdrawn from now on for every later check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsentWithdrawal {
    pub withdrawal_id: String,
    pub record_id: String,
    /// When it was withdrawn (RFC 3339).
    pub withdrawn_at: String,
    /// `false` when the record had been withdrawn already: this is the withdrawal held.
    pub newly_withdrawn: bool,
}

/// A body checked against the document's schema `component`, then read as `T`.
pub(crate) async fn checked<T: serde::de::DeserializeOwned>(
    api: &Api,
    headers: &HeaderMap,
    body: Body,
    component: &str,
) -> Result<T, Problem> {
    schema_checked(api.json_body(headers, body).await?, component)
}

/// A JSON document checked against the document's schema `component`, then read as `T`.
pub(crate) fn schema_checked<T: serde::de::DeserializeOwned>(
    doc: serde_json::Value,
    component: &str,
) -> Result<T, Problem> {
    let violations = crate::openapi::violations(component, &doc).map_err(|e| {
        tracing::error!(error = %e, "a request schema cannot be compiled");
        Problem::internal()
    })?;
    if !violations.is_empty() {
        return Err(Problem::validation(violations));
    }
    serde_json::from_value(doc).map_err(|e| {
        // The schema held, so this is a mismatch between schema and type: ours.
        tracing::error!(error = %e, component, "a valid body does not read as its type");
        Problem::internal()
    })
}

/// A value's JSON spelling (`snake_case` of an enum), as the services take it.
pub(crate) fn spelling<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn consent_field(f: &str) -> String {
    pointer_under("consent", f)
}

/// Record a family's consent.
///
/// Appends a record to the family's consent ledger (nothing is ever changed in it). The
/// practitioners who work with families may (front door, practitioners, social workers, team
/// managers); an upstream system may not.
#[utoipa::path(
    post,
    path = "/v1/consent",
    tag = "consent",
    operation_id = "recordConsent",
    params(
        ("Idempotency-Key" = String, Header, description = "A new key per request, the same key to retry it (the same answer again, `Idempotent-Replayed: true`; another request under it is refused, 422): 1 to 255 visible ASCII characters, kept for `gateway.idempotency_ttl_hours` (24 by default)")
    ),
    request_body(content = ConsentRecordRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Recorded, or a replay", body = RecordedConsent),
        (status = 400, description = "No or a malformed `Idempotency-Key`, or a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials, or not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials do not allow this (an upstream system, or a role that may not record consent)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this idempotency key is under way: retry with the same key shortly (`Retry-After`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 413, description = "The body is larger than `gateway.max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The record is not valid (every violation listed), or the idempotency key was used for another request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client's rate limit; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A service is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn record_consent(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    record(&api, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn record(api: &Api, headers: &HeaderMap, body: Body) -> Result<Response, Problem> {
    let caller = api.caller(headers)?;
    let (key, doc) = api.keyed_json_body(headers, body).await?;
    let request = format!("POST /v1/consent\n{doc}");
    api.once(&caller, &key, &request, async {
        let req: ConsentRecordRequest = schema_checked(doc, "ConsentRecordRequest")?;
        let consent = pb::Consent {
            family_id: req.family_id,
            person_id: req.person_id.unwrap_or_default(),
            given_by: req.given_by,
            giver_relationship: req.giver_relationship.unwrap_or_default(),
            parental_responsibility: req.parental_responsibility,
            competent_young_person: req.competent_young_person,
            method: spelling(&req.method),
            evidence_ref: req.evidence_ref.unwrap_or_default(),
            given_on: req.given_on,
            expires_on: req.expires_on,
            purposes: req.purposes.iter().map(spelling).collect(),
            restrictions: req
                .restrictions
                .iter()
                .map(|r| pb::Restriction {
                    category: spelling(&r.category),
                    agency: r.agency.as_ref().map(spelling),
                })
                .collect(),
        };
        let mut client = api.consent.clone();
        let record = client
            .record_consent(caller.request(pb::RecordConsentRequest {
                tenant: caller.tenant.clone(),
                consent: Some(consent),
            }))
            .await
            .map_err(|s| refusal(s, "no such family for this council", consent_field))?
            .into_inner();
        let answer = RecordedConsent {
            record_id: record.record_id,
            family_id: record.consent.map(|c| c.family_id).unwrap_or_default(),
            recorded_at: instant(&record.recorded_at),
        };
        Kept::answer(StatusCode::CREATED, &answer, None)
    })
    .await
}

/// Withdraw a consent record.
///
/// The record stays in the ledger, withdrawn for every later check at once (the family's case
/// closes when no consent remains). Withdrawing again answers the withdrawal already held (200).
/// Another council's record is not found, as one that does not exist.
#[utoipa::path(
    post,
    path = "/v1/consent/{record_id}/withdrawal",
    tag = "consent",
    operation_id = "withdrawConsent",
    params(
        ("record_id" = String, Path, description = "The record `recordConsent` answered"),
        ("Idempotency-Key" = String, Header, description = "A new key per request, the same key to retry it (the same answer again, `Idempotent-Replayed: true`; another request under it is refused, 422): 1 to 255 visible ASCII characters, kept for `gateway.idempotency_ttl_hours` (24 by default)")
    ),
    request_body(content = ConsentWithdrawalRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Withdrawn now, or a replay", body = ConsentWithdrawal),
        (status = 200, description = "Withdrawn already: the withdrawal held, or a replay", body = ConsentWithdrawal),
        (status = 400, description = "No or a malformed `Idempotency-Key`, or a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials, or not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials do not allow this (an upstream system, or a role that may not withdraw consent)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such record for this council", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this idempotency key is under way: retry with the same key shortly (`Retry-After`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 413, description = "The body is larger than `gateway.max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The withdrawal is not valid (every violation listed), or the idempotency key was used for another request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client's rate limit; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A service is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn withdraw_consent(
    State(api): State<Arc<Api>>,
    Path(record_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    withdraw(&api, &headers, record_id, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn withdraw(
    api: &Api,
    headers: &HeaderMap,
    record_id: String,
    body: Body,
) -> Result<Response, Problem> {
    let caller = api.caller(headers)?;
    let (key, doc) = api.keyed_json_body(headers, body).await?;
    let request = format!("POST /v1/consent/{record_id}/withdrawal\n{doc}");
    api.once(&caller, &key, &request, async {
        let req: ConsentWithdrawalRequest = schema_checked(doc, "ConsentWithdrawalRequest")?;
        if req.reason.trim().is_empty() {
            return Err(Problem::validation(vec![Violation::new(
                "/reason", "required",
            )]));
        }
        let mut client = api.consent.clone();
        let w = client
            .withdraw_consent(caller.request(pb::WithdrawConsentRequest {
                tenant: caller.tenant.clone(),
                record_id,
                reason: req.reason,
            }))
            .await
            .map_err(|s| {
                refusal(s, "no such consent record for this council", |f| {
                    format!("/{f}")
                })
            })?
            .into_inner();
        let status = if w.newly_withdrawn {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let answer = ConsentWithdrawal {
            withdrawal_id: w.withdrawal_id,
            record_id: w.record_id,
            withdrawn_at: instant(&w.withdrawn_at),
            newly_withdrawn: w.newly_withdrawn,
        };
        Kept::answer(status, &answer, None)
    })
    .await
}
