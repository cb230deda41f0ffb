//! Where a referral's case stands, as its sender may know it: `GET /v1/referrals/{id}/case`.
//! Casework's `ListCases` (by referral) answers with the caller's own credential, so an upstream
//! system sees only a case its own referral opened — another system's, another council's or none
//! at all are the same 404 — and only the case's status (casework gives a system nothing of the
//! family, the timeline or who works with it). The same public statuses are what the outbound
//! webhooks announce ([`crate::webhook`]).
use super::{Api, instant, json, refusal};
use crate::problem::Problem;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use eh_proto::casework::v1::ListCasesRequest;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// A case's public status: where it stands in the lifecycle, nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PublicStatus {
    /// The request is with the council: waiting for consent or being screened.
    Received,
    /// Screened and accepted for Early Help: a service is being found.
    Screened,
    /// A service took the case (and then works with the family).
    Allocated,
    /// Sent to the council's front door (children's social care).
    SteppedUp,
    /// Closed (advice given, no consent, consent withdrawn, or with its outcomes).
    Closed,
}

impl PublicStatus {
    /// The public status of casework's case state; `None` for a state it does not know.
    pub fn of_state(state: &str) -> Option<Self> {
        Some(match state {
            "requested" | "awaiting_consent" | "screening" => Self::Received,
            "ready_for_allocation" | "allocating" | "waiting_for_provider" => Self::Screened,
            "allocated" | "assessment_open" | "assessed" | "plan_agreed" | "in_review" => {
                Self::Allocated
            }
            "stepped_up" => Self::SteppedUp,
            s if s.starts_with("closed_") => Self::Closed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Screened => "screened",
            Self::Allocated => "allocated",
            Self::SteppedUp => "stepped_up",
            Self::Closed => "closed",
        }
    }
}

/// Where the case a referral opened stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CaseStatus {
    pub case_id: String,
    /// The referral asked about.
    pub referral_id: String,
    pub status: PublicStatus,
    /// The case's state in casework's lifecycle (finer than `status`; e.g. `awaiting_consent`).
    #[schema(example = "screening")]
    pub state: String,
    /// When the case was opened (RFC 3339).
    pub opened_at: String,
    /// When its state last changed (RFC 3339).
    pub updated_at: String,
}

/// Where a referral's case stands.
///
/// For an upstream system, only a case its own referral opened; another system's referral,
/// another council's, or one whose case is not opened yet (casework opens it within moments of
/// the referral's receipt) are not found alike. Status only: never the family's details.
#[utoipa::path(
    get,
    path = "/v1/referrals/{id}/case",
    tag = "cases",
    operation_id = "getCaseOfReferral",
    params(("id" = String, Path, description = "The referral id `submitReferral` answered")),
    responses(
        (status = 200, description = "The case's public status", body = CaseStatus),
        (status = 401, description = "No credentials, or not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials do not allow this (e.g. a role that may not read cases)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No case of this referral for this caller (yet)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client's rate limit; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A service is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_case_of_referral(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    json(case_of(&api, &headers, id).await)
}

const NO_CASE: &str = "no case of this referral for this caller (yet)";

async fn case_of(api: &Api, headers: &HeaderMap, id: String) -> Result<CaseStatus, Problem> {
    let caller = api.caller(headers)?;
    if id.trim().is_empty() {
        return Err(Problem::not_found().detail(NO_CASE));
    }
    let mut casework = api.casework.clone();
    let listed = casework
        .list_cases(caller.request(ListCasesRequest {
            tenant: caller.tenant.clone(),
            referral_id: id.clone(),
            limit: 1,
            ..Default::default()
        }))
        .await
        .map_err(|s| refusal(s, NO_CASE, |f| format!("/{f}")))?
        .into_inner();
    let Some(case) = listed.cases.into_iter().next() else {
        return Err(Problem::not_found().detail(NO_CASE));
    };
    let status = PublicStatus::of_state(&case.state).ok_or_else(|| {
        tracing::error!(state = %case.state, "a case state without a public status");
        Problem::internal()
    })?;
    Ok(CaseStatus {
        case_id: case.case_id,
        referral_id: id,
        status,
        state: case.state,
        opened_at: instant(&case.opened_at),
        updated_at: instant(&case.updated_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_state_has_a_public_status() {
        for (state, status) in [
            ("requested", "received"),
            ("awaiting_consent", "received"),
            ("screening", "received"),
            ("ready_for_allocation", "screened"),
            ("allocating", "screened"),
            ("waiting_for_provider", "screened"),
            ("allocated", "allocated"),
            ("assessment_open", "allocated"),
            ("assessed", "allocated"),
            ("plan_agreed", "allocated"),
            ("in_review", "allocated"),
            ("stepped_up", "stepped_up"),
            ("closed_advice_given", "closed"),
            ("closed_no_consent", "closed"),
            ("closed_withdrawn", "closed"),
            ("closed_outcomes_met", "closed"),
            ("closed_outcomes_not_met", "closed"),
            ("closed_stepped_down", "closed"),
        ] {
            assert_eq!(
                PublicStatus::of_state(state).map(PublicStatus::as_str),
                Some(status),
                "{state}"
            );
        }
        assert_eq!(PublicStatus::of_state("nonsense"), None);
    }
}
