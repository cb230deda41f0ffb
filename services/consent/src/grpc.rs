//! The gRPC door. Every call is admitted in one place by [`ACCESS`] (method → who may call it:
//! the caller's own council and a role of the row; PERMISSION_DENIED, audited, otherwise),
//! validates its input (INVALID_ARGUMENT with field violations) and answers NOT_FOUND for a record
//! the tenant does not hold.
//!
//! `GrantOverride`: the authorising manager is the CALLER — this service cannot see another
//! person's roles, so the person whose token carries the `team_manager` role authorises, and the
//! requester named in the request must be someone else (compared with the caller's subject and
//! actor id, case-insensitively). A caller without the role is refused (PERMISSION_DENIED, audited).
use crate::convert;
use crate::domain::overrides::{self, Authority, MANAGER_ROLE, Override, Refusal};
use crate::domain::{Agency, Category, Purpose, Violation, parse_list};
use crate::handlers::{Appended, Consent};
use crate::store::{self, Asker};
use eh_auth::{Auditor, Principal};
use eh_proto::consent::v1::consent_service_server::ConsentService;
use eh_proto::consent::v1::{
    CategoryDecision, CheckSharingAllRequest, CheckSharingRequest, ConsentRecord,
    GrantOverrideRequest, ListConsentRequest, ListConsentResponse, RecordConsentRequest,
    SafeguardingOverride, SharingDecision, SharingDecisions, WithdrawConsentRequest, Withdrawal,
};
use eh_store::Within;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The roles of the people who work with families: they take, withdraw and read a family's
/// consent.
const PRACTITIONERS: &[&str] = &[
    "front_door",
    "practitioner",
    "social_worker",
    "team_manager",
];

/// Who may call what ([`eh_service::access`]; a method missing from the table is refused).
/// Consent is recorded, withdrawn (which closes the family's case) and read by the people who work
/// with the family, never by an upstream system; a safeguarding override only by a team manager
/// (who must not be its requester: `domain::overrides`). `CheckSharing` is asked by everyone who
/// may be shown a family's information — a provider's staff about their view of an offer
/// (allocation and assessment ask with the reader's own credential) — and by the platform's
/// services on their own behalf.
pub const ACCESS: &[(&str, &[&str])] = &[
    // Subject access (records asks, forwarding the caller's credential).
    (eh_service::rights::METHOD, eh_service::rights::ROLES),
    ("RecordConsent", PRACTITIONERS),
    ("WithdrawConsent", PRACTITIONERS),
    ("ListConsent", PRACTITIONERS),
    ("GrantOverride", &[MANAGER_ROLE]),
    ("CheckSharing", SHARING_ASKERS),
    ("CheckSharingAll", SHARING_ASKERS),
];

/// Who may ask whether a family's information may be shared.
const SHARING_ASKERS: &[&str] = &[
    "front_door",
    "practitioner",
    "social_worker",
    "team_manager",
    "provider",
    eh_service::access::PLATFORM_SERVICE,
];

/// The most categories one `CheckSharingAll` asks about.
const MAX_CATEGORIES: usize = 20;

pub struct ConsentApi {
    pub consent: Consent,
    pub auditor: Auditor,
}

fn invalid(what: &str, violations: &[Violation]) -> Status {
    let mut details = ErrorDetails::new();
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.reason.clone());
    }
    let summary: Vec<String> = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.reason))
        .collect();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{what}: {}", summary.join("; ")),
        details,
    )
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "consent failed");
    Status::internal("internal error")
}

impl ConsentApi {
    async fn audit(
        &self,
        p: &Principal,
        tenant: &str,
        action: &str,
        record: &str,
        allowed: bool,
        reason: String,
    ) -> Result<(), Status> {
        self.auditor
            .decide(p, tenant, action, record, "consent", allowed, reason)
            .await
    }

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
            &self.consent.ctx.settings,
            ACCESS,
            &eh_service::access::Call {
                principal: p,
                tenant,
                method,
                record,
                service: "consent",
            },
        )
        .await
    }
}

#[tonic::async_trait]
impl ConsentService for ConsentApi {
    async fn export_person_data(
        &self,
        request: tonic::Request<eh_proto::records::v1::ExportPersonDataRequest>,
    ) -> Result<tonic::Response<eh_proto::records::v1::PersonDataExport>, tonic::Status> {
        eh_service::rights::export_person_data(
            crate::SERVICE,
            &self.consent.ctx.db,
            &self.consent.ctx.settings,
            &self.auditor,
            ACCESS,
            crate::rights::HOLDINGS,
            request,
        )
        .await
    }

    async fn record_consent(
        &self,
        request: Request<RecordConsentRequest>,
    ) -> Result<Response<ConsentRecord>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let family = req
            .consent
            .as_ref()
            .map(|c| c.family_id.clone())
            .unwrap_or_default();
        self.admit(
            &p,
            &req.tenant,
            "RecordConsent",
            &format!("family:{family}"),
        )
        .await?;
        let Some(c) = req.consent.as_ref() else {
            return Err(invalid(
                "consent is required",
                &[Violation::new("consent", "required")],
            ));
        };
        let now = self.consent.ctx.clock.now();
        let record = convert::new_record(c, uuid::Uuid::now_v7().to_string(), now)
            .map_err(|v| invalid("the consent record is invalid", &v))?;
        match self
            .consent
            .append(
                Within::Db(&self.consent.ctx.db, p.data_scope(&req.tenant)),
                &req.tenant,
                &record,
                "grpc",
                None,
                &p.actor(),
                None,
            )
            .await
            .map_err(internal)?
        {
            Appended::Stored(s) => Ok(Response::new(convert::record_pb(&s))),
            other => Err(internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn withdraw_consent(
        &self,
        request: Request<WithdrawConsentRequest>,
    ) -> Result<Response<Withdrawal>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.admit(
            &p,
            &req.tenant,
            "WithdrawConsent",
            &format!("consent:{}", req.record_id),
        )
        .await?;
        if req.record_id.trim().is_empty() {
            return Err(invalid(
                "record_id is required",
                &[Violation::new("record_id", "required")],
            ));
        }
        let nul = convert::nul_free(&[("record_id", &req.record_id), ("reason", &req.reason)]);
        if !nul.is_empty() {
            return Err(invalid("a field holds a NUL character", &nul));
        }
        let (w, newly) = self
            .consent
            .withdraw(
                &req.tenant,
                req.record_id.trim(),
                req.reason.trim(),
                &p.actor(),
            )
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found(format!("no consent record {}", req.record_id)))?;
        Ok(Response::new(convert::withdrawal_pb(&w, newly)))
    }

    async fn check_sharing(
        &self,
        request: Request<CheckSharingRequest>,
    ) -> Result<Response<SharingDecision>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.admit(
            &p,
            &req.tenant,
            "CheckSharing",
            &format!("family:{}", req.family_id),
        )
        .await?;
        let q =
            convert::sharing_request(&req).map_err(|v| invalid("the question is invalid", &v))?;
        let asker = Asker {
            actor: p.actor(),
            role: p.role(),
        };
        // Read the ledger and keep the decision held to the caller's tenant by row-level
        // security; committed before the audit below (which writes through the pool).
        let txn = eh_store::begin_scoped(&self.consent.ctx.db, p.data_scope(&req.tenant))
            .await
            .map_err(internal)?;
        let (id, at, d) = self
            .consent
            .check(&txn, &req.tenant, &q, &asker)
            .await
            .map_err(internal)?;
        eh_store::commit(txn).await.map_err(internal)?;
        // The decision itself also goes on the tamper-evident trail.
        let what = format!(
            "family:{} person:{} agency:{} category:{} purpose:{} decision:{id}",
            q.family_id,
            q.person_id.as_deref().unwrap_or("-"),
            q.agency,
            q.category,
            q.purpose
        );
        self.audit(
            &p,
            &req.tenant,
            "sharing_decision",
            &what,
            d.allowed,
            d.reason.clone(),
        )
        .await?;
        Ok(Response::new(convert::decision_pb(&d, &id, at)))
    }

    async fn check_sharing_all(
        &self,
        request: Request<CheckSharingAllRequest>,
    ) -> Result<Response<SharingDecisions>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.admit(
            &p,
            &req.tenant,
            "CheckSharingAll",
            &format!("family:{}", req.family_id),
        )
        .await?;
        // Each category is asked as CheckSharing asks it; a violation names its place.
        let mut v = Vec::new();
        if req.categories.is_empty() || req.categories.len() > MAX_CATEGORIES {
            v.push(Violation::new(
                "categories",
                format!("give 1 to {MAX_CATEGORIES} categories"),
            ));
        }
        let mut questions = Vec::with_capacity(req.categories.len());
        for (i, c) in req.categories.iter().enumerate() {
            if req.categories[..i].contains(c) {
                v.push(Violation::new(format!("categories[{i}]"), "is asked twice"));
                continue;
            }
            let one = CheckSharingRequest {
                tenant: req.tenant.clone(),
                family_id: req.family_id.clone(),
                person_id: req.person_id.clone(),
                agency: req.agency.clone(),
                category: c.clone(),
                purpose: req.purpose.clone(),
            };
            match convert::sharing_request(&one) {
                Ok(q) => questions.push(q),
                Err(e) => {
                    for mut x in e {
                        if x.field == "category" {
                            x.field = format!("categories[{i}]");
                        } else if i > 0 {
                            // The other fields are the same for every category: named once.
                            continue;
                        }
                        v.push(x);
                    }
                }
            }
        }
        if !v.is_empty() {
            return Err(invalid("the question is invalid", &v));
        }
        let asker = Asker {
            actor: p.actor(),
            role: p.role(),
        };
        let txn = eh_store::begin_scoped(&self.consent.ctx.db, p.data_scope(&req.tenant))
            .await
            .map_err(internal)?;
        let decided = self
            .consent
            .check_all(&txn, &req.tenant, &req.family_id, &questions, &asker)
            .await
            .map_err(internal)?;
        eh_store::commit(txn).await.map_err(internal)?;
        // Every decision on the tamper-evident trail, in one entry.
        // Every category parsed (or the call was refused above): they pair up in order.
        let each: Vec<String> = req
            .categories
            .iter()
            .zip(&decided)
            .map(|(c, (id, _, d))| {
                format!("{c}:{}:{id}", if d.allowed { "allowed" } else { "denied" })
            })
            .collect();
        let what = format!(
            "family:{} person:{} agency:{} purpose:{} decisions:[{}]",
            req.family_id,
            questions
                .first()
                .and_then(|q| q.person_id.as_deref())
                .unwrap_or("-"),
            req.agency,
            req.purpose,
            each.join(" ")
        );
        let all_allowed = decided.iter().all(|(_, _, d)| d.allowed);
        self.audit(
            &p,
            &req.tenant,
            "sharing_decision",
            &what,
            all_allowed,
            format!("{} decision(s), each recorded", decided.len()),
        )
        .await?;
        Ok(Response::new(SharingDecisions {
            decisions: req
                .categories
                .iter()
                .zip(&decided)
                .map(|(c, (id, at, d))| CategoryDecision {
                    category: c.clone(),
                    decision: Some(convert::decision_pb(d, id, *at)),
                })
                .collect(),
        }))
    }

    async fn grant_override(
        &self,
        request: Request<GrantOverrideRequest>,
    ) -> Result<Response<SafeguardingOverride>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("family:{}", req.family_id);
        self.admit(&p, &req.tenant, "GrantOverride", &record)
            .await?;
        let now = self.consent.ctx.clock.now();
        let mut v = Vec::new();
        let agencies = parse_list(
            "agencies",
            &req.agencies,
            Agency::parse,
            &Agency::spellings(),
            &mut v,
        );
        let categories = parse_list(
            "categories",
            &req.categories,
            Category::parse,
            &Category::spellings(),
            &mut v,
        );
        let purposes = parse_list(
            "purposes",
            &req.purposes,
            Purpose::parse,
            &Purpose::spellings(),
            &mut v,
        );
        let expires_at = if req.expires_at.trim().is_empty() {
            None
        } else {
            match chrono::DateTime::parse_from_rfc3339(req.expires_at.trim()) {
                Ok(t) => Some(t.with_timezone(&chrono::Utc)),
                Err(_) => {
                    v.push(Violation::new("expires_at", "not an RFC 3339 instant"));
                    // Reported already; keep check_grant from adding "required".
                    Some(now + chrono::Duration::seconds(1))
                }
            }
        };
        let mut ids = vec![p.actor()];
        if let Principal::Person { subject, .. } = &p {
            ids.push(subject.clone());
        }
        let authority = Authority {
            requested_by: req.requested_by.clone(),
            authoriser_ids: ids,
            authoriser_is_manager: p.has_role(MANAGER_ROLE),
        };
        match overrides::check_grant(
            &authority,
            &req.legal_basis,
            &req.family_id,
            (&agencies, &categories, &purposes),
            expires_at,
            now,
            v,
        ) {
            Err(Refusal::NotAManager) => {
                self.audit(
                    &p,
                    &req.tenant,
                    "GrantOverride",
                    &record,
                    false,
                    format!("caller lacks the {MANAGER_ROLE} role"),
                )
                .await?;
                return Err(Status::permission_denied(format!(
                    "a safeguarding override must be authorised by a caller with the {MANAGER_ROLE} role"
                )));
            }
            Err(Refusal::Invalid(v)) => return Err(invalid("the override is invalid", &v)),
            Ok(()) => {}
        }
        let o = Override {
            id: uuid::Uuid::now_v7().to_string(),
            family_id: req.family_id.trim().to_string(),
            person_id: Some(req.person_id.trim().to_string()).filter(|s| !s.is_empty()),
            requested_by: req.requested_by.trim().to_string(),
            authorised_by: p.actor(),
            legal_basis: req.legal_basis.trim().to_string(),
            reasoning: req.reasoning.trim().to_string(),
            agencies,
            categories,
            purposes,
            granted_at: now,
            expires_at: expires_at.unwrap_or(now),
        };
        self.consent
            .grant(&req.tenant, &o, &p.actor())
            .await
            .map_err(internal)?;
        Ok(Response::new(convert::override_pb(&req.tenant, &o)))
    }

    async fn list_consent(
        &self,
        request: Request<ListConsentRequest>,
    ) -> Result<Response<ListConsentResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("family:{}", req.family_id);
        let list = async {
            if req.family_id.trim().is_empty() {
                return Err(invalid(
                    "family_id is required",
                    &[Violation::new("family_id", "required")],
                ));
            }
            // Held to the caller's tenant by row-level security too (a no-op on SQLite).
            let db = eh_store::begin_scoped(&self.consent.ctx.db, p.data_scope(&req.tenant))
                .await
                .map_err(internal)?;
            let records = store::family_records(&db, &req.tenant, req.family_id.trim())
                .await
                .map_err(internal)?;
            let overrides = store::family_overrides(&db, &req.tenant, req.family_id.trim())
                .await
                .map_err(internal)?;
            eh_store::end_read(db).await.map_err(internal)?;
            Ok(ListConsentResponse {
                records: records.iter().map(convert::record_pb).collect(),
                overrides: overrides
                    .iter()
                    .map(|o| convert::override_pb(&req.tenant, o))
                    .collect(),
            })
        };
        let listed = eh_service::access::admit_list(
            &self.auditor,
            &self.consent.ctx.settings,
            ACCESS,
            &eh_service::access::Call {
                principal: &p,
                tenant: &req.tenant,
                method: "ListConsent",
                record: &record,
                service: "consent",
            },
            list,
            |r: &ListConsentResponse| {
                let records = r.records.iter().map(|c| format!("consent:{}", c.record_id));
                let overrides = r
                    .overrides
                    .iter()
                    .map(|o| format!("override:{}", o.override_id));
                records.chain(overrides).collect()
            },
        )
        .await?;
        Ok(Response::new(listed))
    }
}
