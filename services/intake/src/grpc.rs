//! The gRPC door: `SubmitReferral` (same content and rules as the inbound subject),
//! `GetReferral`, and the match candidates a practitioner confirms or rejects
//! (`ListMatchCandidates`, `ResolveMatchCandidate`). Every call is admitted in one place by
//! [`ACCESS`] (method → who may call it: the caller's own council, a role of the row or an
//! upstream system where the row says so), audited either way. The match candidate calls show
//! people's names and details, so they need a role that may see people ([`PEOPLE_ROLES`]); an
//! upstream system submits and reads only the referrals it sent.
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
use eh_service::access::UPSTREAM_SYSTEM;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub struct IntakeApi {
    pub intake: Intake,
    pub auditor: Auditor,
}

impl IntakeApi {
    /// Admits `p` to `method` on `tenant`'s `record` by [`ACCESS`], audited either way.
    async fn admit(
        &self,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
    ) -> Result<(), Status> {
        eh_service::access::admit(
            &self.auditor,
            &self.intake.ctx.settings,
            ACCESS,
            &call(p, tenant, method, record),
        )
        .await
    }

    /// As [`Self::admit`] for a list: the audit entry names the ids `ids` finds in `list`'s
    /// answer ([`eh_service::access::admit_list`]).
    async fn admit_list<T>(
        &self,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
        list: impl Future<Output = Result<T, Status>>,
        ids: impl FnOnce(&T) -> Vec<String>,
    ) -> Result<T, Status> {
        eh_service::access::admit_list(
            &self.auditor,
            &self.intake.ctx.settings,
            ACCESS,
            &call(p, tenant, method, record),
            list,
            ids,
        )
        .await
    }
}

fn call<'a>(
    p: &'a Principal,
    tenant: &'a str,
    method: &'a str,
    record: &'a str,
) -> eh_service::access::Call<'a> {
    eh_service::access::Call {
        principal: p,
        tenant,
        method,
        record,
        service: "intake",
    }
}

/// The upstream system a referral came from (its `source.system`).
fn source_system(r: &eh_proto::intake::v1::Referral) -> &str {
    r.source.as_ref().map_or("", |s| s.system.as_str())
}

/// Roles whose holders may see the people a council holds (and so match candidates).
pub const PEOPLE_ROLES: &[&str] = &["front_door", "team_manager", "practitioner"];

/// Who may call what ([`eh_service::access`]; a method missing from the table is refused). An
/// upstream system submits and reads only referrals it sent: the referral's `source.system` is
/// the system's own name (its API key's `name`) — a referral naming another is refused
/// (PERMISSION_DENIED, audited), another system's referral is NOT_FOUND (audited).
pub const ACCESS: &[(&str, &[&str])] = &[
    // Subject access (records asks, forwarding the caller's credential).
    (eh_service::rights::METHOD, eh_service::rights::ROLES),
    (
        "SubmitReferral",
        &[
            "front_door",
            "team_manager",
            "practitioner",
            "social_worker",
            "business_support",
            "provider",
            UPSTREAM_SYSTEM,
        ],
    ),
    (
        "GetReferral",
        &[
            "front_door",
            "team_manager",
            "practitioner",
            UPSTREAM_SYSTEM,
        ],
    ),
    ("ListMatchCandidates", PEOPLE_ROLES),
    ("ResolveMatchCandidate", PEOPLE_ROLES),
    // Rectification (rights.rs).
    ("CorrectPerson", crate::handlers::rights::CORRECT_ROLES),
];

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
    async fn correct_person(
        &self,
        request: Request<eh_proto::intake::v1::CorrectPersonRequest>,
    ) -> Result<Response<eh_proto::intake::v1::PersonCorrection>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.admit(
            &p,
            &req.tenant,
            "CorrectPerson",
            &format!("person:{}", req.person_id),
        )
        .await?;
        use crate::handlers::rights::{CorrectError, correct_person};
        match correct_person(&self.intake.ctx, &p.actor(), &req).await {
            Ok(done) => Ok(Response::new(done)),
            Err(CorrectError::Invalid(vs)) => {
                let vs: Vec<eh_service::errors::Violation> = vs
                    .into_iter()
                    .map(|(f, r)| eh_service::errors::Violation::new(f, r))
                    .collect();
                Err(eh_service::errors::invalid(
                    "the correction is invalid",
                    &vs,
                ))
            }
            Err(CorrectError::NotFound) => Err(Status::not_found("no such person")),
            Err(CorrectError::Db(e)) => Err(eh_service::errors::internal("intake", e)),
        }
    }

    async fn export_person_data(
        &self,
        request: tonic::Request<eh_proto::records::v1::ExportPersonDataRequest>,
    ) -> Result<tonic::Response<eh_proto::records::v1::PersonDataExport>, tonic::Status> {
        eh_service::rights::export_person_data(
            "intake",
            &self.intake.ctx.db,
            &self.intake.ctx.settings,
            &self.auditor,
            ACCESS,
            crate::handlers::rights::HOLDINGS,
            request,
        )
        .await
    }

    async fn submit_referral(
        &self,
        request: Request<SubmitReferralRequest>,
    ) -> Result<Response<SubmitReferralResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let tenant = req.tenant.clone();
        let record = "referral:new";
        self.admit(&p, &tenant, "SubmitReferral", record).await?;
        let parsed = match req.referral {
            None => Err(Rejection::single("", "referral is required")),
            Some(r) => {
                let doc = contract::to_json(&r);
                contract::validate(&doc).map(|typed| (doc, typed))
            }
        };
        // An upstream system sends referrals in its own name only: one naming another system
        // would be read back by that system, and would take its place in the duplicate check.
        if let (Principal::System { name, .. }, Ok((_, typed))) = (&p, &parsed)
            && source_system(typed) != name
        {
            return Err(eh_service::access::refuse(
                &self.auditor,
                &call(&p, &tenant, "SubmitReferral", record),
                "an upstream system submits referrals in its own name only (source.system)".into(),
                Status::permission_denied("source.system must be the calling system's own name"),
            )
            .await);
        }
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
        let record = format!("referral:{}", req.referral_id);
        self.admit(&p, &req.tenant, "GetReferral", &record).await?;
        // Held to the caller's tenant by row-level security too (a no-op on SQLite).
        let txn = eh_store::begin_scoped(&self.intake.ctx.db, p.data_scope(&req.tenant))
            .await
            .map_err(internal)?;
        let found = referrals::get(&txn, &req.tenant, &req.referral_id)
            .await
            .map_err(internal)?;
        eh_store::end_read(txn).await.map_err(internal)?;
        let not_found = || Status::not_found(format!("no referral {}", req.referral_id));
        let stored = found.ok_or_else(not_found)?;
        // An upstream system reads the referrals it sent, and no other: another's is as absent
        // as one that does not exist (the refusal is on the trail).
        if let Principal::System { name, .. } = &p
            && source_system(&stored.referral) != name
        {
            return Err(eh_service::access::refuse(
                &self.auditor,
                &call(&p, &req.tenant, "GetReferral", &record),
                "another system's referral".into(),
                not_found(),
            )
            .await);
        }
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
        let status = req
            .status
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let record = format!("match_candidates:{}", status.unwrap_or("all"));
        let list = async {
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
            Ok(ListMatchCandidatesResponse {
                candidates: candidates.into_iter().map(candidate_pb).collect(),
            })
        };
        let listed = self
            .admit_list(&p, &req.tenant, "ListMatchCandidates", &record, list, |r| {
                r.candidates
                    .iter()
                    .map(|c| format!("match_candidate:{}", c.candidate_id))
                    .collect()
            })
            .await?;
        Ok(Response::new(listed))
    }

    async fn resolve_match_candidate(
        &self,
        request: Request<ResolveMatchCandidateRequest>,
    ) -> Result<Response<MatchCandidate>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let id = req.candidate_id.trim();
        self.admit(
            &p,
            &req.tenant,
            "ResolveMatchCandidate",
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
