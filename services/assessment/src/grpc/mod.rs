//! The gRPC door. Every call is admitted in one place ([`ACCESS`]: method → the roles that may
//! call it): a known tenant, the caller's own (PERMISSION_DENIED, audited, for another council),
//! one of the method's roles (PERMISSION_DENIED, audited). Then the assessment's own rules
//! (`domain`): who may open, contribute, edit, finalise, amend — a refusal is PERMISSION_DENIED
//! (audited) or FAILED_PRECONDITION. Input is checked (INVALID_ARGUMENT with a violation per
//! field, never quoting the value).
//!
//! A read (`GetAssessment`) is for the case's lead and the lead's organisation, the council's team
//! managers and front door, and every agency that has contributed; anyone else is NOT_FOUND,
//! audited. What it shows is what the family's consent lets the reader's agency see, section by
//! section (`domain::view`); it is audited with the version and the sections shown and withheld.
use crate::domain::view::{self, Section};
use crate::domain::{self, Caller, Lead, Refusal, Status as VersionStatus, Violation};
use crate::store::{self, AssessmentRow, CaseRow, ContributionRow, VersionRow};
use chrono::{DateTime, Utc};
use eh_auth::{Auditor, Principal};
use eh_bus::{Envelope, OutboundMessage, ServiceContext};
use eh_proto::assessment::v1 as pb;
use eh_proto::assessment::v1::assessment_service_server::AssessmentService;
use eh_proto::catalogue::EventSpec;
use eh_service::consent::{Asker, ConsentClient, consent_agency};
use eh_service::errors::invalid;
use prost::Message;
use sea_orm::DatabaseTransaction;
use std::collections::BTreeMap;
use tonic::{Request, Response, Status};

mod outcomes;
mod plan;

/// Who may call what (people only).
pub const ACCESS: &[(&str, &[&str])] = &[
    // Subject access (records asks, forwarding the caller's credential).
    (eh_service::rights::METHOD, eh_service::rights::ROLES),
    (
        "OpenAssessment",
        &["practitioner", "provider", "team_manager"],
    ),
    (
        "AddContribution",
        &["practitioner", "provider", "team_manager"],
    ),
    (
        "EditContribution",
        &["practitioner", "provider", "team_manager"],
    ),
    (
        "FinaliseAssessment",
        &["practitioner", "provider", "team_manager"],
    ),
    (
        "AmendAssessment",
        &["practitioner", "provider", "team_manager"],
    ),
    (
        "GetAssessment",
        &["practitioner", "provider", "team_manager", "front_door"],
    ),
    ("SetPlan", &["practitioner", "provider", "team_manager"]),
    (
        "GetPlan",
        &["practitioner", "provider", "team_manager", "front_door"],
    ),
    (
        "UpdateAction",
        &["practitioner", "provider", "team_manager"],
    ),
    ("ListActions", &["practitioner", "provider", "team_manager"]),
    (
        "RecordScores",
        &["practitioner", "provider", "team_manager"],
    ),
    (
        "RecordReview",
        &["practitioner", "provider", "team_manager"],
    ),
    (
        "GetOutcomes",
        &["practitioner", "provider", "team_manager", "front_door"],
    ),
    (
        "CloseWithOutcomes",
        &["practitioner", "provider", "team_manager"],
    ),
    (
        "RecordFollowUp",
        &["practitioner", "provider", "team_manager"],
    ),
];

/// The roles that see every case of their council.
const COUNCIL_WIDE: &[&str] = &["team_manager", "front_door"];

/// The roles that may call `method` (none for a method not in [`ACCESS`]).
pub fn roles_for(method: &str) -> &'static [&'static str] {
    eh_service::access::roles_for(ACCESS, method)
}

/// INVALID_ARGUMENT naming `field` when `value` is empty.
fn required(field: &str, value: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        Err(invalid(
            "the request is invalid",
            &[Violation::new(field, "is required")],
        ))
    } else {
        Ok(())
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    eh_service::errors::internal(crate::SERVICE, e)
}

pub struct AssessmentApi {
    pub ctx: ServiceContext,
    pub auditor: Auditor,
    pub consent: ConsentClient,
    /// Each council's working days and scale, read at start.
    pub councils: std::sync::Arc<BTreeMap<String, crate::settings::Council>>,
}

/// The agency consent decides for: the reader's own, or the council's social care for a
/// council-wide reader without one.
fn reader_agency(who: &Caller<'_>) -> String {
    who.agency
        .map_or("social_care", |a| consent_agency(a))
        .to_string()
}

fn withheld_pb(w: view::Withheld) -> pb::Withheld {
    pb::Withheld {
        contribution_id: w.contribution_id,
        what: w.what,
        reason: w.reason,
        decision_ids: w.decision_ids,
    }
}

/// The caller as the rules see them.
fn caller(p: &Principal) -> Caller<'_> {
    match p {
        Principal::Person {
            subject, agency, ..
        } => Caller {
            id: subject,
            agency: agency.as_deref().filter(|a| !a.trim().is_empty()),
            team_manager: p.has_role("team_manager"),
        },
        _ => Caller {
            id: "",
            agency: None,
            team_manager: false,
        },
    }
}

fn version_pb(v: &VersionRow) -> pb::VersionSummary {
    pb::VersionSummary {
        version: v.version,
        status: v.status.as_str().into(),
        opened_by: v.opened_by.clone(),
        opened_at: v.opened_at.to_rfc3339(),
        finalised_by: v.finalised_by.clone(),
        finalised_at: v.finalised_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        what_changes: v.what_changes.clone(),
    }
}

fn body_pb(c: &domain::Contribution) -> pb::SignsOfSafety {
    pb::SignsOfSafety {
        category: c.category.clone(),
        worries: c.worries.clone(),
        working_well: c.working_well.clone(),
        next_steps: c.next_steps.clone(),
        scaling: c.scaling.as_ref().map(|s| pb::Scaling {
            score: s.score,
            scored_by: s.scored_by.clone(),
            why: s.why.clone(),
        }),
        child_voices: c
            .child_voices
            .iter()
            .map(|v| pb::ChildVoice {
                child_id: v.child_id.clone(),
                words: v.words.clone(),
                how_gathered: v.how_gathered.clone(),
            })
            .collect(),
        needs: c
            .needs
            .iter()
            .map(|n| pb::Need {
                headline: n.headline.clone(),
                detail: n.detail.clone(),
            })
            .collect(),
    }
}

/// The request's body as the domain's, trimmed, or every violation (fields under `field`).
fn body_checked(
    b: Option<pb::SignsOfSafety>,
    field: &str,
) -> Result<domain::Contribution, Vec<Violation>> {
    let Some(b) = b else {
        return Err(vec![Violation::new(field, "is required")]);
    };
    let trim = |v: Vec<String>| v.into_iter().map(|s| s.trim().to_string()).collect();
    let c = domain::Contribution {
        category: b.category.trim().to_string(),
        worries: trim(b.worries),
        working_well: trim(b.working_well),
        next_steps: trim(b.next_steps),
        scaling: b.scaling.map(|s| domain::Scaling {
            score: s.score,
            scored_by: s.scored_by.trim().to_string(),
            why: s.why.trim().to_string(),
        }),
        child_voices: b
            .child_voices
            .into_iter()
            .map(|v| domain::ChildVoice {
                child_id: v.child_id.trim().to_string(),
                words: v.words.trim().to_string(),
                how_gathered: v.how_gathered.trim().to_string(),
            })
            .collect(),
        needs: b
            .needs
            .into_iter()
            .map(|n| domain::Need {
                headline: n.headline.trim().to_string(),
                detail: n.detail.trim().to_string(),
            })
            .collect(),
    };
    let v: Vec<Violation> = c
        .check()
        .into_iter()
        .map(|v| Violation {
            field: v.field.replacen("contribution", field, 1),
            reason: v.reason,
        })
        .collect();
    if v.is_empty() { Ok(c) } else { Err(v) }
}

/// The request's body as the domain's, trimmed; INVALID_ARGUMENT naming every wrong field.
fn body_of(b: Option<pb::SignsOfSafety>) -> Result<domain::Contribution, Status> {
    body_checked(b, "contribution").map_err(|v| {
        let v: Vec<Violation> = v
            .into_iter()
            .map(|v| {
                if v.field == "contribution" && v.reason == "is required" {
                    Violation::new("body", "is required")
                } else {
                    v
                }
            })
            .collect();
        invalid("the contribution is invalid", &v)
    })
}

/// The carried-over sections of an `OpenAssessment`, checked: every violation by field.
fn carried_of(c: Vec<pb::CarriedSection>) -> Result<Vec<domain::Carried>, Vec<Violation>> {
    let mut v = Vec::new();
    let mut out = Vec::new();
    if c.len() > domain::MAX_ITEMS {
        v.push(Violation::new(
            "carried_over",
            format!("has more than {} entries", domain::MAX_ITEMS),
        ));
    }
    for (i, s) in c.into_iter().enumerate() {
        let f = format!("carried_over[{i}]");
        let body = body_checked(s.body, &format!("{f}.body")).map_err(|mut e| v.append(&mut e));
        let on = s.assessed_on.trim().parse::<chrono::NaiveDate>();
        if on.is_err() {
            v.push(Violation::new(
                format!("{f}.assessed_on"),
                "must be a date, YYYY-MM-DD",
            ));
        }
        let reference = s.source_reference.trim().to_string();
        let by = s.assessed_by.trim().to_string();
        for (name, value) in [("source_reference", &reference), ("assessed_by", &by)] {
            let n = value.chars().count();
            if n == 0 || n > 200 {
                v.push(Violation::new(
                    format!("{f}.{name}"),
                    "is required, at most 200 characters",
                ));
            }
        }
        if let (Ok(body), Ok(on)) = (body, on) {
            out.push(domain::Carried {
                body,
                source_reference: reference,
                assessed_on: on,
                assessed_by: by,
            });
        }
    }
    if v.is_empty() { Ok(out) } else { Err(v) }
}

fn contribution_pb(c: &ContributionRow) -> pb::Contribution {
    pb::Contribution {
        contribution_id: c.id.clone(),
        version: c.version,
        author: c.author.clone(),
        agency: c.agency.clone(),
        role: c.role.clone(),
        added_at: c.added_at.to_rfc3339(),
        edited_at: c.edited_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        body: Some(body_pb(&c.body)),
        carried_from: c.carried_from.clone(),
    }
}

/// Everything a call about one assessment loads: the assessment, its case, its versions.
struct Loaded {
    assessment: AssessmentRow,
    case: CaseRow,
    versions: Vec<VersionRow>,
}

impl Loaded {
    fn latest(&self) -> Result<&VersionRow, Status> {
        self.versions
            .last()
            .ok_or_else(|| internal("an assessment without a version"))
    }

    fn lead(&self) -> Lead<'_> {
        Lead {
            practitioner: &self.case.lead_practitioner,
            organization: &self.case.lead_organization,
        }
    }
}

impl AssessmentApi {
    async fn admit(
        &self,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
    ) -> Result<(), Status> {
        eh_service::access::admit(
            &self.auditor,
            &self.ctx.settings,
            ACCESS,
            &eh_service::access::Call {
                principal: p,
                tenant,
                method,
                record,
                service: crate::SERVICE,
            },
        )
        .await
    }

    /// A rule said no: audited as denied (after `txn` is given up: embedded mode has one
    /// connection), then PERMISSION_DENIED or FAILED_PRECONDITION.
    async fn refuse(
        &self,
        txn: DatabaseTransaction,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
        r: Refusal,
    ) -> Status {
        if let Err(e) = txn.rollback().await {
            return internal(e);
        }
        match r {
            Refusal::Forbidden(why) => {
                if let Err(s) = self
                    .auditor
                    .decide(
                        p,
                        tenant,
                        method,
                        record,
                        crate::SERVICE,
                        false,
                        why.clone(),
                    )
                    .await
                {
                    return s;
                }
                Status::permission_denied(why)
            }
            Refusal::Conflict(why) => Status::failed_precondition(why),
        }
    }

    async fn begin(&self, p: &Principal, tenant: &str) -> Result<DatabaseTransaction, Status> {
        eh_store::begin_scoped(&self.ctx.db, p.data_scope(tenant))
            .await
            .map_err(internal)
    }

    /// The assessment (by id, or by case), its case and versions; NOT_FOUND when there is none.
    async fn load(
        txn: &DatabaseTransaction,
        tenant: &str,
        id: &str,
        case_id: &str,
    ) -> Result<Loaded, Status> {
        if id.trim().is_empty() && case_id.trim().is_empty() {
            return Err(invalid(
                "the request is invalid",
                &[Violation::new(
                    "assessment_id",
                    "give the assessment's id or its case's (case_id)",
                )],
            ));
        }
        let assessment = store::assessment(txn, tenant, id.trim(), case_id.trim())
            .await
            .map_err(internal)?
            .ok_or_else(|| Status::not_found("no such assessment"))?;
        let case = store::case(txn, tenant, &assessment.case_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("an assessment without its case"))?;
        let versions = store::versions(txn, tenant, &assessment.id)
            .await
            .map_err(internal)?;
        Ok(Loaded {
            assessment,
            case,
            versions,
        })
    }

    /// The council's settings (INVALID_ARGUMENT naming the tenant when it has none: `admit`
    /// refuses unknown tenants first).
    fn council(&self, tenant: &str) -> Result<&crate::settings::Council, Status> {
        self.councils.get(tenant).ok_or_else(|| {
            invalid(
                "unknown tenant",
                &[Violation::new("tenant", "not a tenant of this platform")],
            )
        })
    }

    /// Puts `payload` as event `spec` in the outbox, in `txn`.
    async fn emit(
        &self,
        txn: &DatabaseTransaction,
        tenant: &str,
        spec: &'static EventSpec,
        actor: &str,
        payload: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<(), Status> {
        let env = Envelope::new(spec.payload, tenant, actor, now);
        let msg = OutboundMessage::event(spec.subject(self.ctx.namespace(), tenant), &env, payload);
        self.ctx.outbox.enqueue(txn, &msg).await.map_err(internal)
    }

    /// The agencies that have contributed to any version of the case's assessment.
    async fn contributing_agencies(
        &self,
        txn: &DatabaseTransaction,
        tenant: &str,
        case: &CaseRow,
    ) -> Result<Vec<String>, Status> {
        let Some(a) = store::assessment(txn, tenant, "", &case.case_id)
            .await
            .map_err(internal)?
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for v in store::versions(txn, tenant, &a.id)
            .await
            .map_err(internal)?
        {
            for c in store::contributions(txn, tenant, &a.id, v.version)
                .await
                .map_err(internal)?
            {
                if !out.contains(&c.agency) {
                    out.push(c.agency);
                }
            }
        }
        Ok(out)
    }

    /// Who may read a case's assessment, plan and outcomes: the council-wide roles, the lead and
    /// the lead's organisation, every agency that has contributed, and (`also`) whoever else the
    /// call admits (e.g. an action's owner). Anyone else: NOT_FOUND, audited.
    #[allow(clippy::too_many_arguments)]
    async fn check_related(
        &self,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
        case: &CaseRow,
        agencies: &[String],
        also: bool,
    ) -> Result<(), Status> {
        let who = caller(p);
        let related = also
            || COUNCIL_WIDE.iter().any(|r| p.has_role(r))
            || who.id == case.lead_practitioner
            || who.agency == Some(case.lead_organization.as_str())
            || who.agency.is_some_and(|a| agencies.iter().any(|x| x == a));
        if related {
            return Ok(());
        }
        self.auditor
            .decide(
                p,
                tenant,
                method,
                record,
                crate::SERVICE,
                false,
                "no relationship to the case: not its lead, of the lead's organisation, or of an agency that contributed".into(),
            )
            .await?;
        Err(Status::not_found("no such case"))
    }

    /// Audits a read: what was shown (ids) and withheld.
    async fn audit_read(
        &self,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
        withheld: &[pb::Withheld],
        shown: impl FnOnce() -> Vec<String>,
    ) -> Result<(), Status> {
        let who = caller(p);
        let withheld: Vec<&str> = withheld
            .iter()
            .map(|w| w.contribution_id.as_str())
            .collect();
        self.auditor
            .decide(
                p,
                tenant,
                method,
                record,
                crate::SERVICE,
                true,
                format!(
                    "read as agency {}: shown [{}], withheld [{}]",
                    reader_agency(&who),
                    shown().join(", "),
                    withheld.join(", ")
                ),
            )
            .await
    }

    /// Publishes `payload` as `spec` in `txn` (the outbox), reads the assessment back as its
    /// lead sees it after the change, and commits: the answer to every call that changes it.
    #[allow(clippy::too_many_arguments)]
    async fn publish_and_answer(
        &self,
        txn: DatabaseTransaction,
        tenant: &str,
        spec: &'static EventSpec,
        actor: &str,
        payload: &[u8],
        assessment_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Response<pb::Assessment>, Status> {
        self.emit(&txn, tenant, spec, actor, payload.to_vec(), now)
            .await?;
        let l = Self::load(&txn, tenant, assessment_id, "").await?;
        let out = self.whole(&txn, tenant, &l, l.latest()?).await?;
        eh_store::commit(txn).await.map_err(internal)?;
        Ok(Response::new(out))
    }

    /// The whole of one version as its lead sees it right after changing it (their own writes).
    async fn whole(
        &self,
        txn: &DatabaseTransaction,
        tenant: &str,
        l: &Loaded,
        version: &VersionRow,
    ) -> Result<pb::Assessment, Status> {
        let rows = store::contributions(txn, tenant, &l.assessment.id, version.version)
            .await
            .map_err(internal)?;
        Ok(pb::Assessment {
            assessment_id: l.assessment.id.clone(),
            case_id: l.assessment.case_id.clone(),
            version: Some(version_pb(version)),
            versions: l.versions.iter().map(version_pb).collect(),
            lead_practitioner: l.case.lead_practitioner.clone(),
            contributions: rows.iter().map(contribution_pb).collect(),
            withheld: Vec::new(),
        })
    }
}

#[tonic::async_trait]
impl AssessmentService for AssessmentApi {
    async fn export_person_data(
        &self,
        request: tonic::Request<eh_proto::records::v1::ExportPersonDataRequest>,
    ) -> Result<tonic::Response<eh_proto::records::v1::PersonDataExport>, tonic::Status> {
        eh_service::rights::export_person_data(
            crate::SERVICE,
            &self.ctx.db,
            &self.ctx.settings,
            &self.auditor,
            ACCESS,
            crate::rights::HOLDINGS,
            request,
        )
        .await
    }

    async fn open_assessment(
        &self,
        request: Request<pb::OpenAssessmentRequest>,
    ) -> Result<Response<pb::Assessment>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("case:{}", req.case_id);
        self.admit(&p, &req.tenant, "OpenAssessment", &record)
            .await?;
        required("case_id", &req.case_id)?;
        let carried = carried_of(req.carried_over)
            .map_err(|v| invalid("the sections carried over are invalid", &v))?;
        let now = self.ctx.clock.now();
        let txn = self.begin(&p, &req.tenant).await?;
        let Some(case) = store::case(&txn, &req.tenant, req.case_id.trim())
            .await
            .map_err(internal)?
        else {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::failed_precondition(
                "the case has no lead practitioner yet (or is not known): an assessment is opened once it has",
            ));
        };
        let exists = store::assessment(&txn, &req.tenant, "", &case.case_id)
            .await
            .map_err(internal)?
            .is_some();
        let lead = Lead {
            practitioner: &case.lead_practitioner,
            organization: &case.lead_organization,
        };
        let decided = match domain::may_open(&caller(&p), &lead, exists) {
            Err(Refusal::Conflict(why)) => {
                txn.rollback().await.map_err(internal)?;
                return Err(Status::already_exists(why));
            }
            other => other.and_then(|()| domain::may_carry_over(&case.route, carried.len())),
        };
        if let Err(r) = decided {
            return Err(self
                .refuse(txn, &p, &req.tenant, "OpenAssessment", &record, r)
                .await);
        }
        let a = AssessmentRow {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: req.tenant.clone(),
            case_id: case.case_id.clone(),
            family_id: case.family_id.clone(),
        };
        let actor = p.actor();
        if !store::insert_assessment(&txn, &a, &actor, now)
            .await
            .map_err(internal)?
        {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::already_exists("the case already has an assessment"));
        }
        store::insert_version(&txn, &req.tenant, &a.id, 1, &actor, "", now)
            .await
            .map_err(internal)?;
        for c in carried {
            let id = uuid::Uuid::now_v7().to_string();
            let row = ContributionRow {
                id: id.clone(),
                tenant: req.tenant.clone(),
                assessment_id: a.id.clone(),
                version: 1,
                section_id: id,
                author: actor.clone(),
                agency: domain::CARRIED_AGENCY.into(),
                role: p.role(),
                added_at: now,
                edited_at: None,
                carried_from: c.from(),
                body: c.body,
            };
            store::insert_contribution(&txn, &row)
                .await
                .map_err(internal)?;
        }
        let ev = pb::AssessmentOpened {
            assessment_id: a.id.clone(),
            case_id: a.case_id.clone(),
            family_id: a.family_id.clone(),
            version: 1,
            at: now.to_rfc3339(),
        };
        let spec = &eh_proto::catalogue::ASSESSMENT_OPENED;
        let id = a.id.clone();
        self.publish_and_answer(
            txn,
            &req.tenant,
            spec,
            &actor,
            &ev.encode_to_vec(),
            &id,
            now,
        )
        .await
    }

    async fn add_contribution(
        &self,
        request: Request<pb::AddContributionRequest>,
    ) -> Result<Response<pb::Contribution>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("assessment:{}", req.assessment_id);
        self.admit(&p, &req.tenant, "AddContribution", &record)
            .await?;
        let body = body_of(req.body)?;
        let now = self.ctx.clock.now();
        let txn = self.begin(&p, &req.tenant).await?;
        let l = Self::load(&txn, &req.tenant, &req.assessment_id, "").await?;
        let latest = l.latest()?.clone();
        let who = caller(&p);
        if let Err(r) = domain::may_contribute(&who, latest.status) {
            return Err(self
                .refuse(txn, &p, &req.tenant, "AddContribution", &record, r)
                .await);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let row = ContributionRow {
            id: id.clone(),
            tenant: req.tenant.clone(),
            assessment_id: l.assessment.id.clone(),
            version: latest.version,
            section_id: id,
            author: p.actor(),
            agency: who.agency.unwrap_or_default().to_string(),
            role: p.role(),
            added_at: now,
            edited_at: None,
            body,
            carried_from: String::new(),
        };
        store::insert_contribution(&txn, &row)
            .await
            .map_err(internal)?;
        eh_store::commit(txn).await.map_err(internal)?;
        Ok(Response::new(contribution_pb(&row)))
    }

    async fn edit_contribution(
        &self,
        request: Request<pb::EditContributionRequest>,
    ) -> Result<Response<pb::Contribution>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("contribution:{}", req.contribution_id);
        self.admit(&p, &req.tenant, "EditContribution", &record)
            .await?;
        required("contribution_id", &req.contribution_id)?;
        let body = body_of(req.body)?;
        let now = self.ctx.clock.now();
        let txn = self.begin(&p, &req.tenant).await?;
        let Some(mut row) = store::contribution(&txn, &req.tenant, req.contribution_id.trim())
            .await
            .map_err(internal)?
        else {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::not_found("no such contribution"));
        };
        let versions = store::versions(&txn, &req.tenant, &row.assessment_id)
            .await
            .map_err(internal)?;
        let status = versions
            .iter()
            .find(|v| v.version == row.version)
            .map_or(VersionStatus::Finalised, |v| v.status);
        if let Err(r) = domain::may_edit(&caller(&p), &row.agency, status) {
            return Err(self
                .refuse(txn, &p, &req.tenant, "EditContribution", &record, r)
                .await);
        }
        if !store::edit_contribution(&txn, &req.tenant, &row.id, &body, now)
            .await
            .map_err(internal)?
        {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::failed_precondition(
                "the assessment was finalised meanwhile: the lead must amend it first",
            ));
        }
        eh_store::commit(txn).await.map_err(internal)?;
        row.body = body;
        row.edited_at = Some(now);
        Ok(Response::new(contribution_pb(&row)))
    }

    async fn finalise_assessment(
        &self,
        request: Request<pb::FinaliseAssessmentRequest>,
    ) -> Result<Response<pb::Assessment>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("assessment:{}", req.assessment_id);
        self.admit(&p, &req.tenant, "FinaliseAssessment", &record)
            .await?;
        let now = self.ctx.clock.now();
        let txn = self.begin(&p, &req.tenant).await?;
        let l = Self::load(&txn, &req.tenant, &req.assessment_id, "").await?;
        let latest = l.latest()?.clone();
        let sections = store::contributions(&txn, &req.tenant, &l.assessment.id, latest.version)
            .await
            .map_err(internal)?;
        if let Err(r) = domain::may_finalise(&caller(&p), &l.lead(), latest.status, sections.len())
        {
            return Err(self
                .refuse(txn, &p, &req.tenant, "FinaliseAssessment", &record, r)
                .await);
        }
        let actor = p.actor();
        if !store::finalise_version(
            &txn,
            &req.tenant,
            &l.assessment.id,
            latest.version,
            &actor,
            now,
        )
        .await
        .map_err(internal)?
        {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::failed_precondition(
                "the assessment is already finalised",
            ));
        }
        let mut agencies: Vec<String> = sections.iter().map(|s| s.agency.clone()).collect();
        agencies.sort();
        agencies.dedup();
        let ev = pb::AssessmentFinalised {
            assessment_id: l.assessment.id.clone(),
            case_id: l.assessment.case_id.clone(),
            family_id: l.assessment.family_id.clone(),
            version: latest.version,
            contributions: u32::try_from(sections.len()).unwrap_or(u32::MAX),
            agencies,
            at: now.to_rfc3339(),
        };
        let spec = &eh_proto::catalogue::ASSESSMENT_FINALISED;
        let id = l.assessment.id.clone();
        self.publish_and_answer(
            txn,
            &req.tenant,
            spec,
            &actor,
            &ev.encode_to_vec(),
            &id,
            now,
        )
        .await
    }

    async fn amend_assessment(
        &self,
        request: Request<pb::AmendAssessmentRequest>,
    ) -> Result<Response<pb::Assessment>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("assessment:{}", req.assessment_id);
        self.admit(&p, &req.tenant, "AmendAssessment", &record)
            .await?;
        let now = self.ctx.clock.now();
        let txn = self.begin(&p, &req.tenant).await?;
        let l = Self::load(&txn, &req.tenant, &req.assessment_id, "").await?;
        let latest = l.latest()?.clone();
        let what = req.what_changes.trim();
        match domain::may_amend(&caller(&p), &l.lead(), latest.status, what) {
            Err(v) => {
                txn.rollback().await.map_err(internal)?;
                return Err(invalid("the amendment is invalid", &v));
            }
            Ok(Err(r)) => {
                return Err(self
                    .refuse(txn, &p, &req.tenant, "AmendAssessment", &record, r)
                    .await);
            }
            Ok(Ok(())) => {}
        }
        let actor = p.actor();
        let next = latest.version + 1;
        store::insert_version(&txn, &req.tenant, &l.assessment.id, next, &actor, what, now)
            .await
            .map_err(internal)?;
        // The new version starts from the finalised one's sections (new rows: those stay locked).
        for s in store::contributions(&txn, &req.tenant, &l.assessment.id, latest.version)
            .await
            .map_err(internal)?
        {
            let copy = ContributionRow {
                id: uuid::Uuid::now_v7().to_string(),
                version: next,
                ..s
            };
            store::insert_contribution(&txn, &copy)
                .await
                .map_err(internal)?;
        }
        let ev = pb::AssessmentOpened {
            assessment_id: l.assessment.id.clone(),
            case_id: l.assessment.case_id.clone(),
            family_id: l.assessment.family_id.clone(),
            version: next,
            at: now.to_rfc3339(),
        };
        let spec = &eh_proto::catalogue::ASSESSMENT_OPENED;
        let id = l.assessment.id.clone();
        self.publish_and_answer(
            txn,
            &req.tenant,
            spec,
            &actor,
            &ev.encode_to_vec(),
            &id,
            now,
        )
        .await
    }

    async fn get_assessment(
        &self,
        request: Request<pb::GetAssessmentRequest>,
    ) -> Result<Response<pb::Assessment>, Status> {
        let p = eh_auth::principal(&request)?;
        let mut asker = Asker::new(self.consent.clone(), request.metadata());
        let req = request.into_inner();
        let asked = if req.assessment_id.trim().is_empty() {
            format!("case:{}", req.case_id)
        } else {
            format!("assessment:{}", req.assessment_id)
        };
        self.admit(&p, &req.tenant, "GetAssessment", &asked).await?;
        let txn = self.begin(&p, &req.tenant).await?;
        let l = Self::load(&txn, &req.tenant, &req.assessment_id, &req.case_id).await?;
        let version = if req.version == 0 {
            l.latest()?.clone()
        } else if let Some(v) = l.versions.iter().find(|v| v.version == req.version) {
            v.clone()
        } else {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::not_found(format!(
                "the assessment has no version {}",
                req.version
            )));
        };
        let rows = store::contributions(&txn, &req.tenant, &l.assessment.id, version.version)
            .await
            .map_err(internal)?;
        eh_store::end_read(txn).await.map_err(internal)?;
        let record = format!("assessment:{}:v{}", l.assessment.id, version.version);
        let who = caller(&p);
        let agencies: Vec<String> = rows.iter().map(|r| r.agency.clone()).collect();
        self.check_related(
            &p,
            &req.tenant,
            "GetAssessment",
            &record,
            &l.case,
            &agencies,
            false,
        )
        .await?;
        // Consent decides for the reader's agency; council-wide readers without an agency read as
        // the council's social care.
        let reader = reader_agency(&who);
        let sections: Vec<Section> = rows
            .iter()
            .map(|r| Section {
                id: r.id.clone(),
                author_agency: r.agency.clone(),
                body: r.body.clone(),
            })
            .collect();
        let own = who.agency.unwrap_or(&reader).to_string();
        let answers = asker
            .ask_all(
                &req.tenant,
                &l.assessment.family_id,
                &reader,
                &view::categories_to_ask(&sections, &own),
            )
            .await;
        let v = view::apply(sections, &own, &answers);
        let shown: Vec<&str> = v.shown.iter().map(|s| s.id.as_str()).collect();
        let withheld: Vec<&str> = v
            .withheld
            .iter()
            .map(|w| w.contribution_id.as_str())
            .collect();
        self.auditor
            .decide(
                &p,
                &req.tenant,
                "GetAssessment",
                &record,
                crate::SERVICE,
                true,
                format!(
                    "read as agency {reader}: shown [{}], withheld [{}]",
                    shown.join(", "),
                    withheld.join(", ")
                ),
            )
            .await?;
        let by_id: BTreeMap<&str, &ContributionRow> =
            rows.iter().map(|r| (r.id.as_str(), r)).collect();
        let contributions = v
            .shown
            .iter()
            .filter_map(|s| {
                by_id.get(s.id.as_str()).map(|r| {
                    let mut c = contribution_pb(r);
                    c.body = Some(body_pb(&s.body));
                    c
                })
            })
            .collect();
        Ok(Response::new(pb::Assessment {
            assessment_id: l.assessment.id.clone(),
            case_id: l.assessment.case_id.clone(),
            version: Some(version_pb(&version)),
            versions: l.versions.iter().map(version_pb).collect(),
            lead_practitioner: l.case.lead_practitioner.clone(),
            contributions,
            withheld: v
                .withheld
                .into_iter()
                .map(|w| pb::Withheld {
                    contribution_id: w.contribution_id,
                    what: w.what,
                    reason: w.reason,
                    decision_ids: w.decision_ids,
                })
                .collect(),
        }))
    }

    async fn set_plan(
        &self,
        request: Request<pb::SetPlanRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        let p = eh_auth::principal(&request)?;
        self.set_plan_call(&p, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::Plan>, Status> {
        let p = eh_auth::principal(&request)?;
        let asker = Asker::new(self.consent.clone(), request.metadata());
        self.get_plan_call(&p, asker, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_action(
        &self,
        request: Request<pb::UpdateActionRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        let p = eh_auth::principal(&request)?;
        self.update_action_call(&p, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_actions(
        &self,
        request: Request<pb::ListActionsRequest>,
    ) -> Result<Response<pb::ListActionsResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let asker = Asker::new(self.consent.clone(), request.metadata());
        self.list_actions_call(&p, asker, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn record_scores(
        &self,
        request: Request<pb::RecordScoresRequest>,
    ) -> Result<Response<pb::Outcomes>, Status> {
        let p = eh_auth::principal(&request)?;
        self.record_scores_call(&p, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn record_review(
        &self,
        request: Request<pb::RecordReviewRequest>,
    ) -> Result<Response<pb::Outcomes>, Status> {
        let p = eh_auth::principal(&request)?;
        self.record_review_call(&p, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_outcomes(
        &self,
        request: Request<pb::GetOutcomesRequest>,
    ) -> Result<Response<pb::Outcomes>, Status> {
        let p = eh_auth::principal(&request)?;
        let asker = Asker::new(self.consent.clone(), request.metadata());
        self.get_outcomes_call(&p, asker, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn close_with_outcomes(
        &self,
        request: Request<pb::CloseWithOutcomesRequest>,
    ) -> Result<Response<pb::Outcomes>, Status> {
        let p = eh_auth::principal(&request)?;
        self.close_call(&p, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn record_follow_up(
        &self,
        request: Request<pb::RecordFollowUpRequest>,
    ) -> Result<Response<pb::Outcomes>, Status> {
        let p = eh_auth::principal(&request)?;
        self.follow_up_call(&p, request.into_inner())
            .await
            .map(Response::new)
    }
}
