//! The gRPC door. Every call checks the caller's tenant (PERMISSION_DENIED, audited, for another
//! tenant's cases) and role, audits the access, answers NOT_FOUND for a case the tenant does not
//! hold, and FAILED_PRECONDITION (naming both states) for a step the state machine refuses.
//!
//! A read of one case (`GetCase`, the hot path) is one statement on a connection held to the
//! caller's council ([`eh_store::TenantReaders`]), run while its audit entry is being written:
//! the answer waits for both, so none is given before its entry is committed, and none at all
//! when the entry cannot be written. A refusal is decided before anything is read.
use crate::domain::{self, State};
use crate::handlers::{Casework, Error};
use crate::store::{self, CaseRow};
use eh_auth::{Auditor, Principal};
use eh_proto::casework::v1 as pb;
use eh_proto::casework::v1::casework_service_server::CaseworkService;
use eh_store::TenantReaders;
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Roles that may read cases.
pub const READ_ROLES: &[&str] = &[
    "front_door",
    "team_manager",
    "practitioner",
    "social_worker",
    "business_support",
];
/// Roles that may step a case up to the front door.
pub const STEP_UP_ROLES: &[&str] = &["front_door", "team_manager", "social_worker"];
/// Roles that may close a case.
pub const CLOSE_ROLES: &[&str] = &["front_door", "team_manager"];
/// Roles that may record first contact with the family (the lead practitioner themselves, or a
/// team manager).
pub const FIRST_CONTACT_ROLES: &[&str] = &["practitioner", "provider", "team_manager"];
/// How first contact with a family was made.
pub const CONTACT_METHODS: &[&str] = &[
    "home_visit",
    "phone",
    "video",
    "in_person",
    "letter_or_message",
];

pub struct CaseworkApi {
    pub casework: Casework,
    pub auditor: Auditor,
    /// Connections held to one council each, for reads of one statement.
    pub readers: TenantReaders,
}

/// The purpose every access through this door is audited under.
const PURPOSE: &str = "casework";

fn invalid(field: &str, reason: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(field, reason);
    Status::with_error_details(Code::InvalidArgument, format!("{field}: {reason}"), details)
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "casework failed");
    Status::internal("internal error")
}

impl CaseworkApi {
    /// A known tenant, the caller's own, and a role among `roles` (systems and platform services
    /// may read). Audited either way.
    async fn admit(
        &self,
        p: &Principal,
        tenant: &str,
        action: &str,
        record: &str,
        roles: &[&str],
        systems_may: bool,
    ) -> Result<(), Status> {
        self.admit_then(p, tenant, action, record, roles, systems_may, async {
            Ok(())
        })
        .await
    }

    /// As [`Self::admit`]; when admitted, `then` runs while the access's audit entry is written,
    /// and its answer is returned once that entry is committed (never when it cannot be: the
    /// call is then UNAVAILABLE). A refused call never polls `then`: the refusal is decided
    /// first, audited, and answered.
    #[allow(clippy::too_many_arguments)]
    async fn admit_then<T>(
        &self,
        p: &Principal,
        tenant: &str,
        action: &str,
        record: &str,
        roles: &[&str],
        systems_may: bool,
        then: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        if !self.casework.ctx.settings.tenants.contains_key(tenant) {
            return Err(invalid("tenant", &format!("unknown tenant {tenant:?}")));
        }
        let role_allows = match p {
            Principal::Person { .. } => roles.iter().any(|r| p.has_role(r)),
            Principal::System { .. } | Principal::Service { .. } => systems_may,
        };
        if p.may_access_tenant(tenant) && role_allows {
            let (audited, answer) = tokio::join!(
                self.auditor
                    .check_tenant(p, tenant, action, record, PURPOSE),
                then
            );
            audited?;
            return answer;
        }
        // Refused. Another council's principal: the denial is audited and answered here. The
        // caller's own council, a role missing: the tenant check (allowed), then the role's
        // denial, are audited before the answer.
        self.auditor
            .check_tenant(p, tenant, action, record, PURPOSE)
            .await?;
        self.auditor
            .decide(
                p,
                tenant,
                action,
                record,
                PURPOSE,
                false,
                format!("needs one of the roles {}", roles.join(", ")),
            )
            .await?;
        Err(Status::permission_denied(format!(
            "{action} needs one of the roles: {}",
            roles.join(", ")
        )))
    }

    /// A transaction held to the caller's tenant by row-level security (PostgreSQL): the case
    /// reads below filter by case id alone. Opened after the audited admission, committed before
    /// any further audit (embedded mode has one connection).
    async fn scoped(&self, p: &Principal, tenant: &str) -> Result<DatabaseTransaction, Status> {
        eh_store::begin_scoped(&self.casework.ctx.db, p.data_scope(tenant))
            .await
            .map_err(internal)
    }

    async fn view(&self, db: &impl ConnectionTrait, c: &CaseRow) -> Result<pb::Case, Status> {
        store::case_view(db, &c.tenant, &c.id)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal(format!("case {} not found in its own view", c.id)))
    }

    async fn act(
        &self,
        p: &Principal,
        tenant: &str,
        case_id: &str,
        to: State,
        reason: &str,
    ) -> Result<Response<pb::Case>, Status> {
        if reason.trim().is_empty() {
            return Err(invalid("reason", "required: say why"));
        }
        // A practitioner's step-up takes the urgent lane (its connections and relay): the
        // front door hears of it ahead of the ordinary backlog.
        let casework = if to == State::SteppedUp {
            self.casework.urgent()
        } else {
            self.casework.clone()
        };
        match casework
            .act(tenant, case_id, to, &p.actor(), reason.trim())
            .await
        {
            Ok(Some(c)) => {
                let txn = self.scoped(p, tenant).await?;
                let view = self.view(&txn, &c).await?;
                eh_store::end_read(txn).await.map_err(internal)?;
                Ok(Response::new(view))
            }
            Ok(None) => Err(Status::not_found(format!("no case {case_id}"))),
            Err(Error::Illegal(e)) => Err(Status::failed_precondition(e.to_string())),
            Err(e) => Err(internal(e)),
        }
    }

    /// First contact, by the case's lead practitioner or a team manager (anyone else: denied and
    /// audited).
    async fn first_contact(
        &self,
        p: &Principal,
        req: &pb::RecordFirstContactRequest,
    ) -> Result<Response<pb::Case>, Status> {
        let record = format!("case:{}", req.case_id);
        self.admit(
            p,
            &req.tenant,
            "record_first_contact",
            &record,
            FIRST_CONTACT_ROLES,
            false,
        )
        .await?;
        if !CONTACT_METHODS.contains(&req.method.as_str()) {
            return Err(invalid(
                "method",
                &format!("must be one of {}", CONTACT_METHODS.join(", ")),
            ));
        }
        let txn = self.scoped(p, &req.tenant).await?;
        let found = store::get_case(&txn, &req.tenant, &req.case_id)
            .await
            .map_err(internal)?;
        let lead = match &found {
            Some(c) => store::lead_of(&txn, &c.id).await.map_err(internal)?,
            None => None,
        };
        eh_store::end_read(txn).await.map_err(internal)?;
        if found.is_none() {
            return Err(Status::not_found(format!("no case {}", req.case_id)));
        }
        let me = match p {
            Principal::Person { subject, .. } => subject.as_str(),
            _ => "",
        };
        let is_lead = lead.as_ref().is_some_and(|l| l.practitioner == me);
        if !is_lead && !p.has_role("team_manager") {
            self.auditor
                .decide(
                    p,
                    &req.tenant,
                    "record_first_contact",
                    &record,
                    PURPOSE,
                    false,
                    "only the case's lead practitioner or a team manager".into(),
                )
                .await?;
            return Err(Status::permission_denied(
                "only the case's lead practitioner or a team manager records first contact",
            ));
        }
        let actor = p.actor();
        let how = req.method.replace('_', " ");
        match self
            .casework
            .step(&req.tenant, &req.case_id, |case, at| {
                crate::decide::first_contact(case, &actor, &how, at)
            })
            .await
        {
            Ok(Some(c)) => {
                let txn = self.scoped(p, &req.tenant).await?;
                let view = self.view(&txn, &c).await?;
                eh_store::end_read(txn).await.map_err(internal)?;
                Ok(Response::new(view))
            }
            Ok(None) => Err(Status::not_found(format!("no case {}", req.case_id))),
            Err(Error::Illegal(e)) => Err(Status::failed_precondition(e.to_string())),
            Err(Error::Invalid(e)) => Err(Status::failed_precondition(e)),
            Err(e) => Err(internal(e)),
        }
    }
}

#[tonic::async_trait]
impl CaseworkService for CaseworkApi {
    async fn get_case(
        &self,
        request: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("case:{}", req.case_id);
        let read = async {
            let db = self
                .readers
                .of(p.data_scope(&req.tenant))
                .await
                .map_err(internal)?;
            store::case_view(&db, &req.tenant, &req.case_id)
                .await
                .map_err(internal)
        };
        match self
            .admit_then(&p, &req.tenant, "get_case", &record, READ_ROLES, true, read)
            .await?
        {
            Some(case) => Ok(Response::new(case)),
            None => Err(Status::not_found(format!("no case {}", req.case_id))),
        }
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let state = if req.state.is_empty() {
            None
        } else {
            Some(
                req.state
                    .parse::<State>()
                    .map_err(|e| invalid("state", &e))?,
            )
        };
        let family = (!req.family_id.is_empty()).then_some(req.family_id.as_str());
        let record = format!("cases:family={}", req.family_id);
        self.admit(&p, &req.tenant, "list_cases", &record, READ_ROLES, true)
            .await?;
        let limit = match req.limit {
            0 => 100,
            n => u64::from(n.min(1000)),
        };
        let txn = self.scoped(&p, &req.tenant).await?;
        let rows = store::list_cases(&txn, &req.tenant, state, family, limit)
            .await
            .map_err(internal)?;
        let mut cases = Vec::with_capacity(rows.len());
        for c in &rows {
            cases.push(self.view(&txn, c).await?);
        }
        eh_store::end_read(txn).await.map_err(internal)?;
        Ok(Response::new(pb::ListCasesResponse { cases }))
    }

    async fn step_up(
        &self,
        request: Request<pb::StepUpRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("case:{}", req.case_id);
        self.admit(&p, &req.tenant, "step_up", &record, STEP_UP_ROLES, false)
            .await?;
        self.act(&p, &req.tenant, &req.case_id, State::SteppedUp, &req.reason)
            .await
    }

    async fn close_case(
        &self,
        request: Request<pb::CloseCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let Some(to) = domain::closing_outcome(&req.outcome) else {
            return Err(invalid(
                "outcome",
                "one of closed_advice_given, closed_no_consent, closed_withdrawn",
            ));
        };
        let record = format!("case:{}", req.case_id);
        self.admit(&p, &req.tenant, "close_case", &record, CLOSE_ROLES, false)
            .await?;
        self.act(&p, &req.tenant, &req.case_id, to, &req.reason)
            .await
    }

    async fn record_first_contact(
        &self,
        request: Request<pb::RecordFirstContactRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.first_contact(&p, &req).await
    }
}
