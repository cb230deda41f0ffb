//! The gRPC door. Every call is admitted in one place by [`ACCESS`] (method → who may call it:
//! the caller's own council and a role of the row, or an upstream system where the row says so;
//! PERMISSION_DENIED, audited, otherwise), answers NOT_FOUND for a case the tenant does not hold,
//! and FAILED_PRECONDITION (naming both states) for a step the state machine refuses.
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
use eh_service::access::UPSTREAM_SYSTEM;
use eh_store::TenantReaders;
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

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

/// Who may call what ([`eh_service::access`]; a method missing from the table is refused). An
/// upstream system reads the cases its own referrals opened (the case's `source_system` is its
/// name), each as its referral and status only ([`for_system`]); another case is NOT_FOUND
/// (audited). It never acts on a case.
pub const ACCESS: &[(&str, &[&str])] = &[
    // Subject access (records asks, forwarding the caller's credential).
    (eh_service::rights::METHOD, eh_service::rights::ROLES),
    (
        "GetCase",
        &[
            "front_door",
            "team_manager",
            "practitioner",
            "social_worker",
            "business_support",
            UPSTREAM_SYSTEM,
        ],
    ),
    (
        "ListCases",
        &[
            "front_door",
            "team_manager",
            "practitioner",
            "social_worker",
            "business_support",
            UPSTREAM_SYSTEM,
        ],
    ),
    ("StepUp", STEP_UP_ROLES),
    ("CloseCase", CLOSE_ROLES),
    ("RecordFirstContact", FIRST_CONTACT_ROLES),
];

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
        service: PURPOSE,
    }
}

/// What an upstream system sees of a case its referral opened: that referral and where the case
/// is (state, route, when), nothing of the family, the timeline or who works with it.
pub fn for_system(c: pb::Case) -> pb::Case {
    pb::Case {
        referral_ids: vec![c.referral_id.clone()],
        case_id: c.case_id,
        tenant: c.tenant,
        referral_id: c.referral_id,
        route: c.route,
        state: c.state,
        opened_at: c.opened_at,
        updated_at: c.updated_at,
        source_system: c.source_system,
        source_reference: c.source_reference,
        ..Default::default()
    }
}

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
    /// Admits `p` to `method` on `tenant`'s `record` by [`ACCESS`], audited either way.
    async fn admit(
        &self,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
    ) -> Result<(), Status> {
        self.admit_then(p, tenant, method, record, async { Ok(()) })
            .await
    }

    /// As [`Self::admit`]; when admitted, `then` runs while the admission's audit entry is
    /// written, and its answer is returned once that entry is committed (never when it cannot
    /// be: the call is then UNAVAILABLE). A refused call never polls `then`.
    async fn admit_then<T>(
        &self,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
        then: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        eh_service::access::admit_then(
            &self.auditor,
            &self.casework.ctx.settings,
            ACCESS,
            &call(p, tenant, method, record),
            then,
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
            &self.casework.ctx.settings,
            ACCESS,
            &call(p, tenant, method, record),
            list,
            ids,
        )
        .await
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
        self.admit(p, &req.tenant, "RecordFirstContact", &record)
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
            return Err(eh_service::access::refuse(
                &self.auditor,
                &call(p, &req.tenant, "RecordFirstContact", &record),
                "only the case's lead practitioner or a team manager".into(),
                Status::permission_denied(
                    "only the case's lead practitioner or a team manager records first contact",
                ),
            )
            .await);
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
    async fn export_person_data(
        &self,
        request: tonic::Request<eh_proto::records::v1::ExportPersonDataRequest>,
    ) -> Result<tonic::Response<eh_proto::records::v1::PersonDataExport>, tonic::Status> {
        eh_service::rights::export_person_data(
            crate::SERVICE,
            &self.casework.ctx.db,
            &self.casework.ctx.settings,
            &self.auditor,
            ACCESS,
            crate::rights::HOLDINGS,
            request,
        )
        .await
    }

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
        let not_found = || Status::not_found(format!("no case {}", req.case_id));
        let case = self
            .admit_then(&p, &req.tenant, "GetCase", &record, read)
            .await?
            .ok_or_else(not_found)?;
        match &p {
            Principal::System { name, .. } if case.source_system != *name => {
                Err(eh_service::access::refuse(
                    &self.auditor,
                    &call(&p, &req.tenant, "GetCase", &record),
                    "a case another system's referral opened".into(),
                    not_found(),
                )
                .await)
            }
            Principal::System { .. } => Ok(Response::new(for_system(case))),
            _ => Ok(Response::new(case)),
        }
    }

    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("cases:family={}", req.family_id);
        let list = async {
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
            let limit = match req.limit {
                0 => 100,
                n => u64::from(n.min(1000)),
            };
            let txn = self.scoped(&p, &req.tenant).await?;
            let mut cases = Vec::new();
            if !req.referral_id.is_empty() {
                // The one case the referral opened or was attached to, as the caller may see it.
                let case = match store::case_of_referral(&txn, &req.tenant, &req.referral_id)
                    .await
                    .map_err(internal)?
                {
                    Some(id) => store::get_case(&txn, &req.tenant, &id)
                        .await
                        .map_err(internal)?,
                    None => None,
                };
                let wanted = case.filter(|c| {
                    state.is_none_or(|s| c.state == s)
                        && family.is_none_or(|f| c.family_id == f)
                        && match &p {
                            Principal::System { name, .. } => c.source_system == *name,
                            _ => true,
                        }
                });
                if let Some(c) = wanted {
                    if matches!(p, Principal::System { .. }) {
                        if let Some(v) = store::case_view(&txn, &req.tenant, &c.id)
                            .await
                            .map_err(internal)?
                        {
                            cases.push(for_system(v));
                        }
                    } else {
                        cases.push(self.view(&txn, &c).await?);
                    }
                }
            } else if let Principal::System { name, .. } = &p {
                // The cases its own referrals opened, each as its referral and status only.
                for id in system_cases(&txn, &req.tenant, name, state, family, limit).await? {
                    if let Some(c) = store::case_view(&txn, &req.tenant, &id)
                        .await
                        .map_err(internal)?
                    {
                        cases.push(for_system(c));
                    }
                }
            } else {
                let rows = store::list_cases(&txn, &req.tenant, state, family, limit)
                    .await
                    .map_err(internal)?;
                cases.reserve(rows.len());
                for c in &rows {
                    cases.push(self.view(&txn, c).await?);
                }
            }
            eh_store::end_read(txn).await.map_err(internal)?;
            Ok(pb::ListCasesResponse { cases })
        };
        let listed = self
            .admit_list(&p, &req.tenant, "ListCases", &record, list, |r| {
                r.cases
                    .iter()
                    .map(|c| format!("case:{}", c.case_id))
                    .collect()
            })
            .await?;
        Ok(Response::new(listed))
    }

    async fn step_up(
        &self,
        request: Request<pb::StepUpRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("case:{}", req.case_id);
        self.admit(&p, &req.tenant, "StepUp", &record).await?;
        self.act(&p, &req.tenant, &req.case_id, State::SteppedUp, &req.reason)
            .await
    }

    async fn close_case(
        &self,
        request: Request<pb::CloseCaseRequest>,
    ) -> Result<Response<pb::Case>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("case:{}", req.case_id);
        self.admit(&p, &req.tenant, "CloseCase", &record).await?;
        let Some(to) = domain::closing_outcome(&req.outcome) else {
            return Err(invalid(
                "outcome",
                "one of closed_advice_given, closed_no_consent, closed_withdrawn",
            ));
        };
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

/// The ids of the cases of `tenant` that referrals of upstream system `system` opened, newest
/// first, by state and family when asked.
async fn system_cases(
    db: &impl ConnectionTrait,
    tenant: &str,
    system: &str,
    state: Option<State>,
    family_id: Option<&str>,
    limit: u64,
) -> Result<Vec<String>, Status> {
    let mut sql = "SELECT id FROM cases WHERE tenant = $1 AND source_system = $2".to_string();
    let mut values: Vec<sea_orm::Value> = vec![tenant.into(), system.into()];
    if let Some(s) = state {
        values.push(s.as_str().into());
        sql.push_str(&format!(" AND state = ${}", values.len()));
    }
    if let Some(f) = family_id {
        values.push(f.into());
        sql.push_str(&format!(" AND family_id = ${}", values.len()));
    }
    values.push((limit as i64).into());
    sql.push_str(&format!(
        " ORDER BY opened_at DESC, id DESC LIMIT ${}",
        values.len()
    ));
    let rows = db
        .query_all_raw(eh_store::stmt(db.get_database_backend(), &sql, values))
        .await
        .map_err(internal)?;
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0).map_err(internal))
        .collect()
}
