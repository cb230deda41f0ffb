//! Offers of cases to services, for the providers that answer them: `GET /v1/offers` (those made
//! to the caller's organisation — a provider's token names it as its agency; team managers and
//! the front door see the council's), `POST /v1/offers/{offer_id}/accept` and
//! `POST /v1/offers/{offer_id}/decline` (with a reason from the list). Allocation's gRPC API
//! answers with the caller's own credential: its access table decides who may, an offer made to
//! another organisation is not found, and a provider's view of an offer leaves out what the
//! family's consent does not let it see (saying so in `withheld`).
use super::consent::{checked, spelling};
use super::{Api, instant, json, refusal};
use crate::problem::{Problem, Violation};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use eh_proto::allocation::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::ToSchema;

/// Where an offer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferStatus {
    Offered,
    Accepted,
    Declined,
    Expired,
    Withdrawn,
    Closed,
}

/// Why a service declines an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeclineReason {
    NoCapacity,
    OutsideArea,
    NeedsNotMet,
    AgeRange,
    ConflictOfInterest,
    Other,
}

/// What a provider's view of an offer leaves out, and why (never the content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WithheldPart {
    /// What was left out, e.g. "2 of the family's needs".
    pub what: String,
    pub reason: String,
}

/// An offer of a case to a service, as the caller may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OfferView {
    pub offer_id: String,
    pub case_id: String,
    pub service_id: String,
    pub service_name: String,
    /// The service's organisation (its Open Referral UK id).
    pub organization_id: String,
    /// `offered`, `accepted`, `declined`, `expired`, `withdrawn` or `closed`.
    #[schema(example = "offered")]
    pub status: String,
    /// When it was offered (RFC 3339).
    pub offered_at: String,
    /// When an open offer lapses unanswered (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub respond_by: Option<String>,
    /// When it was answered or lapsed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<String>,
    /// The 1-based attempt for this case.
    pub attempt: u32,
    /// Why this service was chosen.
    pub reasons: Vec<String>,
    /// The family's needs, as their consent lets the service see them.
    pub needs: Vec<String>,
    /// The postcode district (e.g. `WR1`), never the full postcode.
    pub district: String,
    pub children_ages: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decline_reason: Option<String>,
    /// What was left out of this view, and why.
    pub withheld: Vec<WithheldPart>,
}

/// Offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OfferList {
    pub offers: Vec<OfferView>,
}

/// A decline: the reason from the list, and words for `other`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferDeclineRequest {
    pub reason: DeclineReason,
    /// Required for `other`; kept with the offer, never published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2000)]
    pub detail: Option<String>,
}

fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn view(o: pb::Offer) -> OfferView {
    OfferView {
        offer_id: o.offer_id,
        case_id: o.case_id,
        service_id: o.service_id,
        service_name: o.service_name,
        organization_id: o.organization_id,
        status: o.status,
        offered_at: instant(&o.offered_at),
        respond_by: some(o.respond_by).map(|t| instant(&t)),
        settled_at: some(o.settled_at).map(|t| instant(&t)),
        attempt: o.attempt,
        reasons: o.reasons,
        needs: o.needs,
        district: o.district,
        children_ages: o.children_ages,
        decline_reason: some(o.decline_reason),
        withheld: o
            .withheld
            .into_iter()
            .map(|w| WithheldPart {
                what: w.what,
                reason: w.reason,
            })
            .collect(),
    }
}

const NO_OFFER: &str = "no such offer for this caller";

/// The offers made to the caller's organisation.
///
/// A provider (role `provider`, its token's agency its organisation) sees the offers made to its
/// organisation's services; team managers and the front door see the council's. Newest first.
#[utoipa::path(
    get,
    path = "/v1/offers",
    tag = "offers",
    operation_id = "listOffers",
    params(("status" = Option<OfferStatus>, Query, description = "Only offers in this status (e.g. `offered`: those waiting for an answer)")),
    responses(
        (status = 200, description = "The offers", body = OfferList),
        (status = 400, description = "A query that cannot be read", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials, or not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials do not allow this (an upstream system, or a role that may not see offers)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown status (the violation listed)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client's rate limit; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A service is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_offers(
    State(api): State<Arc<Api>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    json(list(&api, &headers, query).await)
}

async fn list(
    api: &Api,
    headers: &HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<OfferList, Problem> {
    let caller = api.caller(headers)?;
    let Query(query) = query.map_err(|_| {
        Problem::bad_request(
            vec![Violation::new("query", "format")],
            "the query cannot be read",
        )
    })?;
    let status = query.get("status").cloned().unwrap_or_default();
    if !status.is_empty()
        && serde_json::from_value::<OfferStatus>(serde_json::Value::String(status.clone())).is_err()
    {
        return Err(Problem::validation(vec![Violation::new(
            "query:status",
            "enum",
        )]));
    }
    let mut client = api.allocation.clone();
    let listed = client
        .list_offers(caller.request(pb::ListOffersRequest {
            tenant: caller.tenant.clone(),
            status,
            case_id: String::new(),
        }))
        .await
        .map_err(|s| refusal(s, NO_OFFER, |f| format!("query:{f}")))?
        .into_inner();
    Ok(OfferList {
        offers: listed.offers.into_iter().map(view).collect(),
    })
}

/// Accept an offer.
///
/// The provider the offer was made to (or a team manager, for the council's own teams) accepts
/// an open offer: the case is allocated to the service. An offer made to another organisation,
/// or of another council, is not found.
#[utoipa::path(
    post,
    path = "/v1/offers/{offer_id}/accept",
    tag = "offers",
    operation_id = "acceptOffer",
    params(("offer_id" = String, Path, description = "The offer, as `listOffers` gives it")),
    responses(
        (status = 200, description = "Accepted: the case is allocated to the service", body = OfferView),
        (status = 401, description = "No credentials, or not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials do not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such offer for this caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The offer is no longer open", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The request is not valid", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client's rate limit; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A service is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn accept_offer(
    State(api): State<Arc<Api>>,
    Path(offer_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    json(answer(&api, &headers, offer_id, Answer::Accept).await)
}

/// Decline an offer, with a reason.
///
/// The case is offered to the next candidate (never again to this service) or waits. An offer
/// made to another organisation, or of another council, is not found.
#[utoipa::path(
    post,
    path = "/v1/offers/{offer_id}/decline",
    tag = "offers",
    operation_id = "declineOffer",
    params(("offer_id" = String, Path, description = "The offer, as `listOffers` gives it")),
    request_body(content = OfferDeclineRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Declined", body = OfferView),
        (status = 400, description = "A body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials, or not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials do not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such offer for this caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The offer is no longer open", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than `gateway.max_body_bytes`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The decline is not valid (every violation listed: e.g. `other` without `detail`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client's rate limit; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A service is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn decline_offer(
    State(api): State<Arc<Api>>,
    Path(offer_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    json(answer(&api, &headers, offer_id, Answer::Decline(body)).await)
}

/// How a provider answers an offer.
enum Answer {
    Accept,
    /// With the body: an [`OfferDeclineRequest`].
    Decline(Body),
}

/// The caller's answer to an offer, sent to allocation with the caller's credential; the offer
/// as it then stands.
async fn answer(
    api: &Api,
    headers: &HeaderMap,
    offer_id: String,
    answer: Answer,
) -> Result<OfferView, Problem> {
    let caller = api.caller(headers)?;
    let tenant = caller.tenant.clone();
    let mut client = api.allocation.clone();
    let answered = match answer {
        Answer::Accept => {
            client
                .accept_offer(caller.request(pb::AcceptOfferRequest { tenant, offer_id }))
                .await
        }
        Answer::Decline(body) => {
            let (reason, detail) = decline_of(api, headers, body).await?;
            client
                .decline_offer(caller.request(pb::DeclineOfferRequest {
                    tenant,
                    offer_id,
                    reason,
                    detail,
                }))
                .await
        }
    };
    let offer = answered
        .map_err(|s| refusal(s, NO_OFFER, |f| format!("/{f}")))?
        .into_inner();
    Ok(view(offer))
}

/// A decline's reason (as allocation spells it) and words, checked: `other` needs words.
async fn decline_of(
    api: &Api,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, String), Problem> {
    let req: OfferDeclineRequest = checked(api, headers, body, "OfferDeclineRequest").await?;
    let detail = req.detail.unwrap_or_default();
    if matches!(req.reason, DeclineReason::Other) && detail.trim().is_empty() {
        return Err(Problem::validation(vec![Violation::new(
            "/detail", "required",
        )]));
    }
    Ok((spelling(&req.reason), detail))
}
