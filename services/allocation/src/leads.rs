//! After a service accepts a case: the family's stated preference (recorded, shown to the service
//! with the offer, copied onto each request to lead), and the lead practitioner — the service (its
//! provider staff, or a team manager) asks a practitioner, who accepts (`lead_practitioner_named`:
//! they lead the case) or declines with a reason from the list and words saying why
//! (`lead_practitioner_declined`: the team manager is told). One request is open at a time; a case
//! has one lead. Every step runs holding the council's allocation lock, like the offers it follows.
use crate::domain::{self, Violation};
use crate::grpc::{AllocationApi, acting_for, internal, invalid};
use crate::offers;
use crate::store::{self, LeadRow, OfferRow, Preference, StoredService};
use eh_auth::Principal;
use eh_proto::allocation::v1 as pb;
use prost::Message;
use sea_orm::DatabaseTransaction;
use tonic::{Response, Status};

/// The statuses a request to lead can have.
const LEAD_STATUSES: &[&str] = &["", "asked", "accepted", "declined"];

pub fn lead_pb(l: &LeadRow) -> pb::LeadRequest {
    pb::LeadRequest {
        request_id: l.id.clone(),
        case_id: l.case_id.clone(),
        offer_id: l.offer_id.clone(),
        service_id: l.service_id.clone(),
        organization_id: l.organization_id.clone(),
        practitioner: l.practitioner.clone(),
        asked_by: l.asked_by.clone(),
        asked_at: l.asked_at.to_rfc3339(),
        note: l.note.clone(),
        status: l.status.clone(),
        answered_at: l.answered_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        decline_reason: l.decline_reason.clone(),
        decline_detail: l.decline_detail.clone(),
        family_preference: l.family_preference.clone(),
    }
}

/// The case's offer that holds a place now (offered or accepted), with its service.
async fn holding_offer(
    txn: &DatabaseTransaction,
    tenant: &str,
    case_id: &str,
    today: chrono::NaiveDate,
) -> Result<Option<(OfferRow, Option<StoredService>)>, Status> {
    let Some(o) = store::offers_of_case(txn, tenant, case_id)
        .await
        .map_err(internal)?
        .into_iter()
        .rev()
        .find(|o| store::HOLDING.contains(&o.status.as_str()))
    else {
        return Ok(None);
    };
    let s = store::service(txn, tenant, &o.service_id, today)
        .await
        .map_err(internal)?;
    Ok(Some((o, s)))
}

fn organization_of(s: Option<&StoredService>) -> String {
    s.map(|s| s.service.organization_id.clone())
        .unwrap_or_default()
}

impl AllocationApi {
    /// A provider acting for another organisation than the one holding the case: audited as
    /// denied, answered NOT_FOUND (the case is none of its business); nothing written.
    async fn other_organisation(
        &self,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
        txn: DatabaseTransaction,
    ) -> Status {
        if let Err(e) = txn.rollback().await {
            return internal(e);
        }
        if let Err(s) = self
            .auditor
            .decide(
                p,
                tenant,
                method,
                record,
                "allocation",
                false,
                "the case is offered or allocated to another organisation".into(),
            )
            .await
        {
            return s;
        }
        Status::not_found("no such case")
    }

    pub(crate) async fn record_preference(
        &self,
        p: &Principal,
        req: pb::RecordFamilyPreferenceRequest,
    ) -> Result<Response<pb::FamilyPreference>, Status> {
        let method = "RecordFamilyPreference";
        let record = format!("case:{}", req.case_id);
        self.admit(p, &req.tenant, method, &record).await?;
        if let Some(v) = domain::check_text("preference", &req.preference) {
            return Err(invalid("the preference is invalid", &[v]));
        }
        let a = &self.allocation;
        let now = a.ctx.clock.now();
        let txn = eh_store::begin_scoped(&a.ctx.db, p.data_scope(&req.tenant))
            .await
            .map_err(internal)?;
        offers::lock_council(&txn, &req.tenant)
            .await
            .map_err(internal)?;
        if store::case(&txn, &req.tenant, &req.case_id)
            .await
            .map_err(internal)?
            .is_none()
        {
            return Err(Status::not_found("no such case"));
        }
        if let Some(mine) = acting_for(p) {
            let org = holding_offer(&txn, &req.tenant, &req.case_id, now.date_naive())
                .await?
                .map(|(_, s)| organization_of(s.as_ref()))
                .unwrap_or_default();
            if mine != org {
                return Err(self
                    .other_organisation(p, &req.tenant, method, &record, txn)
                    .await);
            }
        }
        self.write_preference(txn, p, req, now).await
    }

    async fn write_preference(
        &self,
        txn: DatabaseTransaction,
        p: &Principal,
        req: pb::RecordFamilyPreferenceRequest,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Response<pb::FamilyPreference>, Status> {
        let pref = Preference {
            preference: req.preference.trim().to_string(),
            recorded_by: p.actor(),
            recorded_at: now,
        };
        store::set_preference(&txn, &req.tenant, &req.case_id, &pref)
            .await
            .map_err(internal)?;
        eh_store::commit(txn).await.map_err(internal)?;
        tracing::info!(tenant = %req.tenant, case_id = %req.case_id, "family preference recorded");
        Ok(Response::new(pb::FamilyPreference {
            case_id: req.case_id,
            preference: pref.preference,
            recorded_by: pref.recorded_by,
            recorded_at: now.to_rfc3339(),
        }))
    }

    pub(crate) async fn ask_lead(
        &self,
        p: &Principal,
        req: pb::AskLeadPractitionerRequest,
    ) -> Result<Response<pb::LeadRequest>, Status> {
        let method = "AskLeadPractitioner";
        let record = format!("case:{}", req.case_id);
        self.admit(p, &req.tenant, method, &record).await?;
        let v: Vec<Violation> = [
            domain::check_practitioner(&req.practitioner),
            domain::check_text("note", &req.note),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !v.is_empty() {
            return Err(invalid("the request is invalid", &v));
        }
        let a = &self.allocation;
        let now = a.ctx.clock.now();
        let tenant = req.tenant.as_str();
        let txn = eh_store::begin_scoped(&a.ctx.db, p.data_scope(tenant))
            .await
            .map_err(internal)?;
        offers::lock_council(&txn, tenant).await.map_err(internal)?;
        let Some(case) = store::case(&txn, tenant, &req.case_id)
            .await
            .map_err(internal)?
        else {
            return Err(Status::not_found("no such case"));
        };
        let holding = holding_offer(&txn, tenant, &case.case_id, now.date_naive()).await?;
        let org = holding
            .as_ref()
            .map(|(_, s)| organization_of(s.as_ref()))
            .unwrap_or_default();
        if acting_for(p).is_some_and(|mine| mine != org) {
            return Err(self
                .other_organisation(p, tenant, method, &record, txn)
                .await);
        }
        let Some((offer, _)) = holding.filter(|(o, _)| o.status == "accepted") else {
            return Err(Status::failed_precondition(format!(
                "the case is {}, not allocated: a lead is asked for once a service accepts it",
                case.status
            )));
        };
        let before = store::lead_requests(&txn, tenant, &case.case_id, "", "", "")
            .await
            .map_err(internal)?;
        if before.iter().any(|l| l.status == "accepted") {
            return Err(Status::failed_precondition(
                "the case has a lead practitioner",
            ));
        }
        if before.iter().any(|l| l.status == "asked") {
            return Err(Status::failed_precondition(
                "a request to lead this case is open: wait for its answer",
            ));
        }
        let preference = store::preference(&txn, tenant, &case.case_id)
            .await
            .map_err(internal)?
            .map(|p| p.preference)
            .unwrap_or_default();
        let row = LeadRow {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.to_string(),
            case_id: case.case_id.clone(),
            offer_id: offer.id.clone(),
            service_id: offer.service_id.clone(),
            organization_id: org,
            practitioner: req.practitioner.clone(),
            asked_by: p.actor(),
            asked_at: now,
            note: req.note.trim().to_string(),
            family_preference: preference,
            status: "asked".into(),
            answered_at: None,
            decline_reason: String::new(),
            decline_detail: String::new(),
        };
        store::insert_lead_request(&txn, &row)
            .await
            .map_err(internal)?;
        eh_store::commit(txn).await.map_err(internal)?;
        tracing::info!(tenant, case_id = %row.case_id, request_id = %row.id, "practitioner asked to lead");
        Ok(Response::new(lead_pb(&row)))
    }

    pub(crate) async fn answer_lead(
        &self,
        p: &Principal,
        req: pb::AnswerLeadRequestRequest,
    ) -> Result<Response<pb::LeadRequest>, Status> {
        let method = "AnswerLeadRequest";
        let record = format!("lead_request:{}", req.request_id);
        self.admit(p, &req.tenant, method, &record).await?;
        let v = domain::check_lead_answer(req.accept, &req.reason, &req.detail);
        if !v.is_empty() {
            return Err(invalid("the answer is invalid", &v));
        }
        let a = &self.allocation;
        let now = a.ctx.clock.now();
        let tenant = req.tenant.as_str();
        let txn = eh_store::begin_scoped(&a.ctx.db, p.data_scope(tenant))
            .await
            .map_err(internal)?;
        offers::lock_council(&txn, tenant).await.map_err(internal)?;
        let Some(lead) = store::lead_request(&txn, tenant, &req.request_id)
            .await
            .map_err(internal)?
        else {
            return Err(Status::not_found("no such request"));
        };
        let me = match p {
            Principal::Person { subject, .. } => subject.as_str(),
            _ => "",
        };
        if me != lead.practitioner {
            txn.rollback().await.map_err(internal)?;
            self.auditor
                .decide(
                    p,
                    tenant,
                    method,
                    &record,
                    "allocation",
                    false,
                    "only the practitioner asked may answer".into(),
                )
                .await?;
            return Err(Status::not_found("no such request"));
        }
        let (status, reason, detail) = if req.accept {
            ("accepted", "", "")
        } else {
            ("declined", req.reason.as_str(), req.detail.trim())
        };
        if !store::answer_lead_request(&txn, tenant, &lead.id, status, reason, detail, now)
            .await
            .map_err(internal)?
        {
            return Err(Status::failed_precondition(format!(
                "the request is {}, not open",
                lead.status
            )));
        }
        let case = store::case(&txn, tenant, &lead.case_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("a request to lead without its case"))?;
        let (spec, payload) = if req.accept {
            let service = store::service(&txn, tenant, &lead.service_id, now.date_naive())
                .await
                .map_err(internal)?;
            let ev = pb::LeadPractitionerNamed {
                request_id: lead.id.clone(),
                case_id: case.case_id.clone(),
                family_id: case.family_id.clone(),
                referral_id: case.referral_id.clone(),
                service_id: lead.service_id.clone(),
                service_name: service.map(|s| s.service.name).unwrap_or_default(),
                organization_id: lead.organization_id.clone(),
                practitioner: lead.practitioner.clone(),
                at: now.to_rfc3339(),
            };
            (
                &eh_proto::catalogue::LEAD_PRACTITIONER_NAMED,
                ev.encode_to_vec(),
            )
        } else {
            let ev = pb::LeadPractitionerDeclined {
                request_id: lead.id.clone(),
                case_id: case.case_id.clone(),
                family_id: case.family_id.clone(),
                service_id: lead.service_id.clone(),
                organization_id: lead.organization_id.clone(),
                practitioner: lead.practitioner.clone(),
                reason: reason.to_string(),
                at: now.to_rfc3339(),
            };
            (
                &eh_proto::catalogue::LEAD_PRACTITIONER_DECLINED,
                ev.encode_to_vec(),
            )
        };
        offers::emit(a, &txn, tenant, spec, &p.actor(), payload, now)
            .await
            .map_err(internal)?;
        let answered = store::lead_request(&txn, tenant, &lead.id)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("the request vanished"))?;
        eh_store::commit(txn).await.map_err(internal)?;
        tracing::info!(tenant, case_id = %lead.case_id, request_id = %lead.id, status, "request to lead answered");
        Ok(Response::new(lead_pb(&answered)))
    }

    pub(crate) async fn list_leads(
        &self,
        p: &Principal,
        req: pb::ListLeadRequestsRequest,
    ) -> Result<Response<pb::ListLeadRequestsResponse>, Status> {
        let list = async {
            if !LEAD_STATUSES.contains(&req.status.as_str()) {
                return Err(invalid(
                    "the request is invalid",
                    &[Violation::new(
                        "status",
                        "must be asked, accepted or declined (or empty)",
                    )],
                ));
            }
            // Council staff see every request; a provider its organisation's; anyone else those made
            // to them.
            let council_staff = p.has_role("team_manager") || p.has_role("front_door");
            let (practitioner, org) = match (council_staff, acting_for(p), p) {
                (true, _, _) => (String::new(), String::new()),
                (false, Some(org), _) => (String::new(), org),
                (false, None, Principal::Person { subject, .. }) => {
                    (subject.clone(), String::new())
                }
                (false, None, _) => return Err(Status::permission_denied("people only")),
            };
            if !council_staff && practitioner.is_empty() && org.is_empty() {
                return Ok(pb::ListLeadRequestsResponse::default());
            }
            let txn = eh_store::begin_scoped(&self.allocation.ctx.db, p.data_scope(&req.tenant))
                .await
                .map_err(internal)?;
            let rows = store::lead_requests(
                &txn,
                &req.tenant,
                &req.case_id,
                &req.status,
                &practitioner,
                &org,
            )
            .await
            .map_err(internal)?;
            eh_store::end_read(txn).await.map_err(internal)?;
            Ok(pb::ListLeadRequestsResponse {
                requests: rows.iter().map(lead_pb).collect(),
            })
        };
        let listed = self
            .admit_list(
                p,
                &req.tenant,
                "ListLeadRequests",
                "lead_requests",
                list,
                |r| {
                    r.requests
                        .iter()
                        .map(|l| format!("lead_request:{}", l.request_id))
                        .collect()
                },
            )
            .await?;
        Ok(Response::new(listed))
    }
}
