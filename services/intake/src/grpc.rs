//! The gRPC door: `SubmitReferral` (same content and rules as the inbound subject),
//! `GetReferral`, and the match candidates a practitioner confirms or rejects
//! (`ListMatchCandidates`, `ResolveMatchCandidate`); each checked against the caller's tenant
//! and audited. The match candidate calls show people's names and details, so they also need a
//! role that may see people ([`PEOPLE_ROLES`]); a refusal is audited like any other decision.
use crate::domain::contract::{self, Rejection};
use crate::domain::matching::{CandidateStatus, Resolution};
use crate::handlers::candidates::ResolveError;
use crate::handlers::{Door, Intake, Outcome};
use crate::store::matches::{self, StoredCandidate};
use crate::store::referrals;
use eh_auth::{Auditor, Principal};
use eh_proto::intake::v1::intake_service_server::IntakeService;
use eh_proto::intake::v1::{
    GetReferralRequest, ListMatchCandidatesRequest, ListMatchCandidatesResponse, MatchCandidate,
    MatchField, ReferralRecord, ResolveMatchCandidateRequest, SubmitReferralRequest,
    SubmitReferralResponse,
};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub struct IntakeApi {
    pub intake: Intake,
    pub auditor: Auditor,
}

impl IntakeApi {
    /// Refuses (and audits) a principal acting on another tenant's data.
    async fn check_tenant(
        &self,
        p: &Principal,
        tenant: &str,
        action: &str,
        record: &str,
    ) -> Result<(), Status> {
        self.auditor
            .check_tenant(p, tenant, action, record, "intake")
            .await
    }

    /// The caller's tenant (PERMISSION_DENIED otherwise) and a role that may see people
    /// (PERMISSION_DENIED otherwise); one audit entry either way.
    async fn check_people_access(
        &self,
        p: &Principal,
        tenant: &str,
        action: &str,
        record: &str,
    ) -> Result<(), Status> {
        if !p.may_access_tenant(tenant) {
            // Audited as denied, and refused.
            return self.check_tenant(p, tenant, action, record).await;
        }
        let allowed = PEOPLE_ROLES.iter().any(|r| p.has_role(r));
        let reason = if allowed {
            "same tenant; role may see people".to_string()
        } else {
            format!(
                "role {:?} may not see people (needs one of {})",
                p.role(),
                PEOPLE_ROLES.join(", ")
            )
        };
        self.auditor
            .decide(p, tenant, action, record, "intake", allowed, reason)
            .await?;
        if allowed {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{action} needs one of the roles {}",
                PEOPLE_ROLES.join(", ")
            )))
        }
    }

    /// An unknown tenant is INVALID_ARGUMENT, as for `SubmitReferral`.
    fn known_tenant(&self, tenant: &str) -> Result<(), Status> {
        if eh_platform::config::is_token(tenant)
            && self.intake.ctx.settings.tenants.contains_key(tenant)
        {
            Ok(())
        } else {
            Err(invalid(&Rejection::single(
                "/tenant",
                format!("unknown tenant {tenant:?}"),
            )))
        }
    }
}

/// Roles whose holders may see the people a council holds (and so match candidates).
pub const PEOPLE_ROLES: &[&str] = &["front_door", "team_manager", "practitioner"];

fn bad_request(field: &str, reason: String) -> Status {
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(field, reason.clone());
    Status::with_error_details(Code::InvalidArgument, format!("{field}: {reason}"), details)
}

fn candidate_pb(c: StoredCandidate) -> MatchCandidate {
    MatchCandidate {
        candidate_id: c.id,
        tenant: c.tenant,
        referral_id: c.referral_id,
        new_person: Some(c.new_person),
        existing_person: Some(c.existing_person),
        existing_family_id: c.existing_family_id,
        score: c.score,
        fields: c
            .fields
            .iter()
            .map(|f| MatchField {
                field: serde_name(&f.field),
                kind: serde_name(&f.kind),
                weight: f.weight,
            })
            .collect(),
        status: c.status.as_str().into(),
        reason: c.reason.unwrap_or_default(),
        decided_by: c.decided_by.unwrap_or_default(),
        decided_at: c.decided_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        created_at: c.created_at.to_rfc3339(),
        referral_family_id: c.referral_family_id,
    }
}

/// The snake_case name a unit enum serialises to (`date_of_birth`, `year_off_by_one`).
fn serde_name(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn invalid(rejection: &Rejection) -> Status {
    let mut details = ErrorDetails::new();
    for v in &rejection.violations {
        let field = if v.path == "/tenant" {
            "tenant".to_string()
        } else {
            contract::field_path(&v.path)
        };
        details.add_bad_request_violation(field, v.reason.clone());
    }
    Status::with_error_details(
        Code::InvalidArgument,
        format!("the referral breaks the contract: {}", rejection.summary()),
        details,
    )
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "intake failed");
    Status::internal("internal error")
}

#[tonic::async_trait]
impl IntakeService for IntakeApi {
    async fn submit_referral(
        &self,
        request: Request<SubmitReferralRequest>,
    ) -> Result<Response<SubmitReferralResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let tenant = req.tenant.clone();
        if !eh_platform::config::is_token(&tenant)
            || !self.intake.ctx.settings.tenants.contains_key(&tenant)
        {
            return Err(invalid(&Rejection::single(
                "/tenant",
                format!("unknown tenant {tenant:?}"),
            )));
        }
        self.check_tenant(&p, &tenant, "submit_referral", "referral:new")
            .await?;
        let parsed = match req.referral {
            None => Err(Rejection::single("", "referral is required")),
            Some(r) => {
                let doc = contract::to_json(&r);
                contract::validate(&doc).map(|typed| (doc, typed))
            }
        };
        let actor = p.actor();
        let outcome = self
            .intake
            .submit(
                &tenant,
                parsed,
                Door {
                    actor: &actor,
                    inbound: None,
                },
            )
            .await
            .map_err(internal)?;
        match outcome {
            Outcome::Stored(s) => Ok(Response::new(SubmitReferralResponse {
                referral_id: s.id,
                duplicate: false,
                received_at: s.received_at.to_rfc3339(),
            })),
            Outcome::Duplicate { id, received_at } => Ok(Response::new(SubmitReferralResponse {
                referral_id: id,
                duplicate: true,
                received_at: received_at.to_rfc3339(),
            })),
            Outcome::Rejected(r) => Err(invalid(&r)),
            Outcome::AlreadyHandled => Err(internal("inbox outcome on the gRPC door")),
        }
    }

    async fn get_referral(
        &self,
        request: Request<GetReferralRequest>,
    ) -> Result<Response<ReferralRecord>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.check_tenant(
            &p,
            &req.tenant,
            "get_referral",
            &format!("referral:{}", req.referral_id),
        )
        .await?;
        // Held to the caller's tenant by row-level security too (a no-op on SQLite).
        let txn = eh_store::begin_scoped(&self.intake.ctx.db, p.data_scope(&req.tenant))
            .await
            .map_err(internal)?;
        let stored = referrals::get(&txn, &req.tenant, &req.referral_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no referral {}", req.referral_id)))?;
        eh_store::end_read(txn).await.map_err(internal)?;
        Ok(Response::new(ReferralRecord {
            referral_id: stored.id,
            tenant: stored.tenant,
            received_at: stored.received_at.to_rfc3339(),
            referral: Some(stored.referral),
            family_id: stored.family_id,
            children: stored.children,
            family_members: stored.family_members,
            re_referral: stored.re_referral,
            known_family: stored.known_family,
        }))
    }

    async fn list_match_candidates(
        &self,
        request: Request<ListMatchCandidatesRequest>,
    ) -> Result<Response<ListMatchCandidatesResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.known_tenant(&req.tenant)?;
        let status = req
            .status
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let record = format!("match_candidates:{}", status.unwrap_or("all"));
        self.check_people_access(&p, &req.tenant, "list_match_candidates", &record)
            .await?;
        let status = match status {
            None => None,
            Some(s) => Some(CandidateStatus::parse(s).ok_or_else(|| {
                bad_request(
                    "status",
                    format!("{s:?} is not one of pending, confirmed, rejected"),
                )
            })?),
        };
        let txn = eh_store::begin_scoped(&self.intake.ctx.db, p.data_scope(&req.tenant))
            .await
            .map_err(internal)?;
        let candidates = matches::candidates(&txn, &req.tenant, status)
            .await
            .map_err(internal)?;
        eh_store::end_read(txn).await.map_err(internal)?;
        Ok(Response::new(ListMatchCandidatesResponse {
            candidates: candidates.into_iter().map(candidate_pb).collect(),
        }))
    }

    async fn resolve_match_candidate(
        &self,
        request: Request<ResolveMatchCandidateRequest>,
    ) -> Result<Response<MatchCandidate>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.known_tenant(&req.tenant)?;
        let id = req.candidate_id.trim();
        self.check_people_access(
            &p,
            &req.tenant,
            "resolve_match_candidate",
            &format!("match_candidate:{id}"),
        )
        .await?;
        let resolution = Resolution::parse(req.decision.trim()).ok_or_else(|| {
            bad_request(
                "decision",
                format!("{:?} is not one of confirm, reject", req.decision),
            )
        })?;
        if id.is_empty() {
            return Err(bad_request("candidate_id", "required".into()));
        }
        let reason = req.reason.trim();
        if reason.is_empty() {
            return Err(bad_request("reason", "required".into()));
        }
        match self
            .intake
            .resolve_candidate(&req.tenant, id, resolution, reason, &p.actor())
            .await
        {
            Ok(c) => Ok(Response::new(candidate_pb(c))),
            Err(ResolveError::NotFound(id)) => {
                Err(Status::not_found(format!("no match candidate {id}")))
            }
            Err(e @ ResolveError::AlreadyResolved { .. }) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Err(ResolveError::Db(e)) => Err(internal(e)),
        }
    }
}
