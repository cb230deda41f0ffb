//! The plan over gRPC: `SetPlan` (a new whole version, by the lead or a team manager, once the
//! assessment is finalised), `GetPlan` (a version as the reader may see it), `UpdateAction`
//! (progress, by the action's practitioner owner, the lead or a team manager) and `ListActions`
//! (the caller's own, or a case's).
use super::{AssessmentApi, caller, internal, required};
use crate::domain::plan::{
    self as rules, ActionInput, ActionStatus, Due, Outcome, OwnerKind, PlannedAction, Settle,
};
use crate::domain::view::{self, Item};
use crate::domain::{self, Lead, Refusal, Status as VersionStatus, Violation};
use crate::store::plan::{self as plans, ActionRow, PlanRow, PlanVersionRow};
use crate::store::{self, CaseRow};
use eh_auth::Principal;
use eh_proto::assessment::v1 as pb;
use eh_service::consent::Asker;
use eh_service::errors::invalid;
use prost::Message;
use sea_orm::DatabaseTransaction;
use std::collections::{BTreeMap, BTreeSet};
use tonic::Status;

fn action_input(i: usize, a: pb::PlannedAction, v: &mut Vec<Violation>) -> Option<ActionInput> {
    let f = format!("actions[{i}]");
    let kind = OwnerKind::parse(a.owner_kind.trim());
    if kind.is_none() {
        v.push(Violation::new(
            format!("{f}.owner_kind"),
            "must be practitioner or family",
        ));
    }
    let date = a.due_date.trim();
    let due = match (date.is_empty(), a.due_in_working_days) {
        (false, 0) => match date.parse() {
            Ok(d) => Some(Due::On(d)),
            Err(_) => {
                v.push(Violation::new(
                    format!("{f}.due_date"),
                    "must be a date, YYYY-MM-DD",
                ));
                None
            }
        },
        (true, n) if n > 0 => Some(Due::InWorkingDays(n)),
        _ => {
            v.push(Violation::new(
                format!("{f}.due_date"),
                "give exactly one of due_date and due_in_working_days",
            ));
            None
        }
    };
    let id = a.action_id.trim();
    Some(ActionInput {
        index: i,
        action_id: (!id.is_empty()).then(|| id.to_string()),
        what: a.what.trim().to_string(),
        owner_kind: kind?,
        owner: a.owner.trim().to_string(),
        owner_email: a.owner_email.trim().to_string(),
        due: due?,
        category: a.category.trim().to_string(),
        headline: a.headline.trim().to_string(),
    })
}

fn action_pb(a: &ActionRow, today: chrono::NaiveDate) -> pb::Action {
    let status = ActionStatus::parse(&a.status).unwrap_or(ActionStatus::Open);
    pb::Action {
        action_id: a.id.clone(),
        case_id: a.case_id.clone(),
        what: a.what.clone(),
        owner_kind: a.owner_kind.clone(),
        owner: a.owner.clone(),
        due_date: a.due_date.to_string(),
        status: a.status.clone(),
        overdue: a.active && rules::overdue(status, a.due_date, today),
        reminded_at: a.reminded_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        updated_at: a.updated_at.to_rfc3339(),
        updated_by: a.updated_by.clone(),
        category: a.category.clone(),
        headline: a.headline.clone(),
        plan_version: a.plan_version,
    }
}

/// A version's action as the version holds it (for an earlier version: what it said then), with
/// the action's live progress.
fn versioned_action_pb(
    a: &PlannedAction,
    live: Option<&ActionRow>,
    version: u32,
    today: chrono::NaiveDate,
) -> pb::Action {
    let mut out = live.map_or_else(
        || pb::Action {
            action_id: a.action_id.clone(),
            status: "open".into(),
            ..Default::default()
        },
        |l| action_pb(l, today),
    );
    out.case_id = live.map(|l| l.case_id.clone()).unwrap_or_default();
    out.what = a.what.clone();
    out.owner_kind = a.owner_kind.clone();
    out.owner = a.owner.clone();
    out.due_date = a.due_date.to_string();
    out.category = a.category.clone();
    out.headline = a.headline.clone();
    out.plan_version = version;
    out
}

fn version_pb(v: &PlanVersionRow) -> pb::PlanVersion {
    pb::PlanVersion {
        version: v.version,
        set_by: v.set_by.clone(),
        set_at: v.set_at.to_rfc3339(),
        what_changes: v.what_changes.clone(),
    }
}

fn outcome_pb(o: &Outcome) -> pb::PlannedOutcome {
    pb::PlannedOutcome {
        headline: o.headline.clone(),
        outcome: o.outcome.clone(),
        category: o.category.clone(),
    }
}

impl AssessmentApi {
    /// The UK date now.
    pub(super) fn today(&self) -> chrono::NaiveDate {
        eh_workdays::uk_local_date(self.ctx.clock.now())
    }

    /// The case (FAILED_PRECONDITION when assessment does not know it, or it has ended).
    pub(super) async fn open_case(
        txn: &DatabaseTransaction,
        tenant: &str,
        case_id: &str,
    ) -> Result<CaseRow, Status> {
        let case = store::case(txn, tenant, case_id.trim())
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                Status::failed_precondition(
                    "the case has no lead practitioner yet (or is not known)",
                )
            })?;
        if case.ended_at.is_some() {
            return Err(Status::failed_precondition(
                "the case is closed (or stepped up): nothing more is recorded on it",
            ));
        }
        Ok(case)
    }

    /// The whole of the plan's `version` as `reader` may see it, with what was withheld; audited
    /// as a read of `method`.
    #[allow(clippy::too_many_arguments)]
    async fn plan_view(
        &self,
        p: &Principal,
        asker: Option<&mut Asker>,
        tenant: &str,
        plan: &PlanRow,
        versions: &[PlanVersionRow],
        version: &PlanVersionRow,
        live: &[ActionRow],
    ) -> Result<pb::Plan, Status> {
        let today = self.today();
        let who = caller(p);
        let reader = super::reader_agency(&who);
        let items: Vec<Item> = version
            .outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| Item {
                id: format!("outcome:{}", i + 1),
                what: format!("outcome {} of the plan", i + 1),
                category: o.category.clone(),
            })
            .chain(version.actions.iter().map(|a| Item {
                id: a.action_id.clone(),
                what: "an action of the plan".into(),
                category: a.category.clone(),
            }))
            .collect();
        let own = asker.is_none() || who.agency == Some(version.set_by_agency.as_str());
        let mut answers = BTreeMap::new();
        if let (false, Some(asker)) = (own, asker) {
            answers = asker
                .ask_all(
                    tenant,
                    &plan.family_id,
                    &reader,
                    &view::item_categories(&items),
                )
                .await;
        }
        let (shown, withheld) = view::filter_items(&items, own, &reader, &answers);
        let by_id: BTreeMap<&str, &ActionRow> = live.iter().map(|a| (a.id.as_str(), a)).collect();
        Ok(pb::Plan {
            plan_id: plan.id.clone(),
            case_id: plan.case_id.clone(),
            version: Some(version_pb(version)),
            versions: versions.iter().map(version_pb).collect(),
            outcomes: version
                .outcomes
                .iter()
                .enumerate()
                .filter(|(i, _)| shown.contains(&format!("outcome:{}", i + 1)))
                .map(|(_, o)| outcome_pb(o))
                .collect(),
            actions: version
                .actions
                .iter()
                .filter(|a| shown.contains(&a.action_id))
                .map(|a| {
                    let mut out = versioned_action_pb(
                        a,
                        by_id.get(a.action_id.as_str()).copied(),
                        version.version,
                        today,
                    );
                    out.case_id.clone_from(&plan.case_id);
                    out
                })
                .collect(),
            withheld: withheld.into_iter().map(super::withheld_pb).collect(),
        })
    }

    pub(super) async fn set_plan_call(
        &self,
        p: &Principal,
        req: pb::SetPlanRequest,
    ) -> Result<pb::Plan, Status> {
        let record = format!("case:{}", req.case_id);
        self.admit(p, &req.tenant, "SetPlan", &record).await?;
        required("case_id", &req.case_id)?;
        let now = self.ctx.clock.now();
        let mut v = Vec::new();
        let inputs: Vec<ActionInput> = req
            .actions
            .into_iter()
            .enumerate()
            .filter_map(|(i, a)| action_input(i, a, &mut v))
            .collect();
        let outcomes: Vec<Outcome> = req
            .outcomes
            .into_iter()
            .map(|o| Outcome {
                headline: o.headline.trim().to_string(),
                outcome: o.outcome.trim().to_string(),
                category: o.category.trim().to_string(),
            })
            .collect();
        let lead_email = req.lead_email.trim().to_string();
        if !lead_email.is_empty() && !rules::is_email(&lead_email) {
            v.push(Violation::new("lead_email", "must be a mailbox"));
        }
        let outcomes = rules::check_outcomes(&outcomes).unwrap_or_else(|mut e| {
            v.append(&mut e);
            Vec::new()
        });
        if !v.is_empty() && inputs.is_empty() {
            return Err(invalid("the plan is invalid", &v));
        }
        let council = self.council(&req.tenant)?;
        let txn = self.begin(p, &req.tenant).await?;
        let case = Self::open_case(&txn, &req.tenant, &req.case_id).await?;
        let lead = Lead {
            practitioner: &case.lead_practitioner,
            organization: &case.lead_organization,
        };
        if let Err(r) = domain::lead_only(&caller(p), &lead, "set the plan") {
            return Err(self
                .refuse(txn, p, &req.tenant, "SetPlan", &record, r)
                .await);
        }
        let finalised = match store::assessment(&txn, &req.tenant, "", &case.case_id)
            .await
            .map_err(internal)?
        {
            None => false,
            Some(a) => store::versions(&txn, &req.tenant, &a.id)
                .await
                .map_err(internal)?
                .iter()
                .any(|v| v.status == VersionStatus::Finalised),
        };
        if !finalised {
            return Err(self
                .refuse(
                    txn,
                    p,
                    &req.tenant,
                    "SetPlan",
                    &record,
                    Refusal::Conflict(
                        "the plan follows the assessment: finalise the assessment first".into(),
                    ),
                )
                .await);
        }
        let existing = plans::plan(&txn, &req.tenant, &case.case_id)
            .await
            .map_err(internal)?;
        let versions = match &existing {
            Some(pl) => plans::versions(&txn, &req.tenant, &pl.id)
                .await
                .map_err(internal)?,
            None => Vec::new(),
        };
        let next = versions.last().map_or(1, |v| v.version + 1);
        let what_changes = req.what_changes.trim().to_string();
        if next > 1 {
            domain::text(&mut v, "what_changes", &what_changes, true);
        }
        let previous = versions.last().map_or(&[][..], |v| &v.actions[..]);
        let now_for_days = now;
        let add = |n: u32| council.calendar.deadline(now_for_days, n).ok();
        let new_id = || uuid::Uuid::now_v7().to_string();
        let settled = rules::settle_actions(
            &inputs,
            &Settle {
                today: eh_workdays::uk_local_date(now),
                add_working_days: &add,
                previous,
                new_id: &new_id,
            },
        );
        let actions = match settled {
            Ok(a) if v.is_empty() => a,
            Ok(_) => {
                txn.rollback().await.map_err(internal)?;
                return Err(invalid("the plan is invalid", &v));
            }
            Err(mut e) => {
                txn.rollback().await.map_err(internal)?;
                v.append(&mut e);
                return Err(invalid("the plan is invalid", &v));
            }
        };
        let plan = PlanRow {
            id: existing
                .as_ref()
                .map_or_else(|| uuid::Uuid::now_v7().to_string(), |pl| pl.id.clone()),
            tenant: req.tenant.clone(),
            case_id: case.case_id.clone(),
            family_id: case.family_id.clone(),
            lead_email: if lead_email.is_empty() {
                existing.map(|pl| pl.lead_email).unwrap_or_default()
            } else {
                lead_email
            },
        };
        plans::upsert_plan(&txn, &plan).await.map_err(internal)?;
        let actor = p.actor();
        let row = PlanVersionRow {
            version: next,
            set_by: actor.clone(),
            set_by_agency: caller(p).agency.unwrap_or_default().to_string(),
            set_at: now,
            what_changes,
            outcomes,
            actions,
        };
        if !plans::insert_version(&txn, &req.tenant, &plan.id, &row)
            .await
            .map_err(internal)?
        {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::aborted(
                "the plan was changed meanwhile: read it again and retry",
            ));
        }
        plans::apply_version(&txn, &req.tenant, &plan, next, &row.actions, &actor, now)
            .await
            .map_err(internal)?;
        let ev = pb::PlanAgreed {
            plan_id: plan.id.clone(),
            case_id: plan.case_id.clone(),
            family_id: plan.family_id.clone(),
            version: next,
            outcomes: u32::try_from(row.outcomes.len()).unwrap_or(u32::MAX),
            actions: u32::try_from(row.actions.len()).unwrap_or(u32::MAX),
            at: now.to_rfc3339(),
        };
        self.emit(
            &txn,
            &req.tenant,
            &eh_proto::catalogue::PLAN_AGREED,
            &actor,
            ev.encode_to_vec(),
            now,
        )
        .await?;
        let live = plans::case_actions(&txn, &req.tenant, &plan.case_id)
            .await
            .map_err(internal)?;
        let mut all = versions;
        all.push(row.clone());
        let out = self
            .plan_view(p, None, &req.tenant, &plan, &all, &row, &live)
            .await?;
        eh_store::commit(txn).await.map_err(internal)?;
        Ok(out)
    }

    pub(super) async fn get_plan_call(
        &self,
        p: &Principal,
        mut asker: Asker,
        req: pb::GetPlanRequest,
    ) -> Result<pb::Plan, Status> {
        let asked = format!("case:{}", req.case_id);
        self.admit(p, &req.tenant, "GetPlan", &asked).await?;
        required("case_id", &req.case_id)?;
        let txn = self.begin(p, &req.tenant).await?;
        let case = store::case(&txn, &req.tenant, req.case_id.trim())
            .await
            .map_err(internal)?;
        let plan = plans::plan(&txn, &req.tenant, req.case_id.trim())
            .await
            .map_err(internal)?;
        let (Some(case), Some(plan)) = (case, plan) else {
            eh_store::end_read(txn).await.map_err(internal)?;
            return Err(Status::not_found("the case has no plan"));
        };
        let versions = plans::versions(&txn, &req.tenant, &plan.id)
            .await
            .map_err(internal)?;
        let live = plans::case_actions(&txn, &req.tenant, &plan.case_id)
            .await
            .map_err(internal)?;
        let agencies = self.contributing_agencies(&txn, &req.tenant, &case).await?;
        eh_store::end_read(txn).await.map_err(internal)?;
        let version = if req.version == 0 {
            versions.last()
        } else {
            versions.iter().find(|v| v.version == req.version)
        };
        let Some(version) = version else {
            return Err(Status::not_found(format!(
                "the plan has no version {}",
                req.version
            )));
        };
        let record = format!("plan:{}:v{}", plan.id, version.version);
        let owns = live
            .iter()
            .any(|a| a.owner_kind == "practitioner" && a.owner == caller(p).id);
        self.check_related(p, &req.tenant, "GetPlan", &record, &case, &agencies, owns)
            .await?;
        let out = self
            .plan_view(
                p,
                Some(&mut asker),
                &req.tenant,
                &plan,
                &versions,
                version,
                &live,
            )
            .await?;
        self.audit_read(p, &req.tenant, "GetPlan", &record, &out.withheld, || {
            out.outcomes
                .iter()
                .enumerate()
                .map(|(i, _)| format!("outcome:{}", i + 1))
                .chain(out.actions.iter().map(|a| a.action_id.clone()))
                .collect()
        })
        .await?;
        Ok(out)
    }

    pub(super) async fn update_action_call(
        &self,
        p: &Principal,
        req: pb::UpdateActionRequest,
    ) -> Result<pb::Action, Status> {
        let record = format!("action:{}", req.action_id);
        self.admit(p, &req.tenant, "UpdateAction", &record).await?;
        required("action_id", &req.action_id)?;
        let mut v = Vec::new();
        let to = ActionStatus::parse(req.status.trim());
        if to.is_none() {
            v.push(Violation::new(
                "status",
                format!("must be one of {}", ActionStatus::ALL.join(", ")),
            ));
        }
        let note = req.note.trim();
        if note.chars().count() > 1000 {
            v.push(Violation::new("note", "is longer than 1000 characters"));
        }
        let Some(to) = to.filter(|_| v.is_empty()) else {
            return Err(invalid("the update is invalid", &v));
        };
        let now = self.ctx.clock.now();
        let txn = self.begin(p, &req.tenant).await?;
        let Some(action) = plans::action(&txn, &req.tenant, req.action_id.trim())
            .await
            .map_err(internal)?
        else {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::not_found("no such action"));
        };
        let case = Self::open_case(&txn, &req.tenant, &action.case_id).await?;
        let lead = Lead {
            practitioner: &case.lead_practitioner,
            organization: &case.lead_organization,
        };
        let from = ActionStatus::parse(&action.status).unwrap_or(ActionStatus::Open);
        let decided =
            rules::may_update_action(&caller(p), &lead, &action.owner_kind, &action.owner)
                .and_then(|()| {
                    if action.active {
                        Ok(())
                    } else {
                        Err(Refusal::Conflict(
                            "the action is no longer in the plan".into(),
                        ))
                    }
                })
                .and_then(|()| rules::may_move(from, to));
        if let Err(r) = decided {
            return Err(self
                .refuse(txn, p, &req.tenant, "UpdateAction", &record, r)
                .await);
        }
        let actor = p.actor();
        if !plans::update_status(
            &txn,
            &req.tenant,
            &action.id,
            from.as_str(),
            to.as_str(),
            note,
            &actor,
            now,
        )
        .await
        .map_err(internal)?
        {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::aborted(
                "the action was updated meanwhile: read it again and retry",
            ));
        }
        eh_store::commit(txn).await.map_err(internal)?;
        let updated = ActionRow {
            status: to.as_str().into(),
            note: note.into(),
            updated_by: actor,
            updated_at: now,
            ..action
        };
        Ok(action_pb(&updated, self.today()))
    }

    pub(super) async fn list_actions_call(
        &self,
        p: &Principal,
        mut asker: Asker,
        req: pb::ListActionsRequest,
    ) -> Result<pb::ListActionsResponse, Status> {
        let case_id = req.case_id.trim().to_string();
        let asked = if case_id.is_empty() {
            "actions:own".to_string()
        } else {
            format!("case:{case_id}:actions")
        };
        self.admit(p, &req.tenant, "ListActions", &asked).await?;
        let today = self.today();
        let who = caller(p);
        let txn = self.begin(p, &req.tenant).await?;
        let (rows, withheld) = if case_id.is_empty() {
            let rows = plans::owned_actions(&txn, &req.tenant, who.id)
                .await
                .map_err(internal)?;
            eh_store::end_read(txn).await.map_err(internal)?;
            (rows, Vec::new())
        } else {
            let case = store::case(&txn, &req.tenant, &case_id)
                .await
                .map_err(internal)?;
            let Some(case) = case else {
                eh_store::end_read(txn).await.map_err(internal)?;
                return Err(Status::not_found("no such case"));
            };
            let rows = plans::case_actions(&txn, &req.tenant, &case_id)
                .await
                .map_err(internal)?;
            let agencies = self.contributing_agencies(&txn, &req.tenant, &case).await?;
            let plan = plans::plan(&txn, &req.tenant, &case_id)
                .await
                .map_err(internal)?;
            let set_by_agency = match &plan {
                Some(pl) => plans::versions(&txn, &req.tenant, &pl.id)
                    .await
                    .map_err(internal)?
                    .last()
                    .map(|v| v.set_by_agency.clone())
                    .unwrap_or_default(),
                None => String::new(),
            };
            eh_store::end_read(txn).await.map_err(internal)?;
            self.check_related(
                p,
                &req.tenant,
                "ListActions",
                &asked,
                &case,
                &agencies,
                false,
            )
            .await?;
            let reader = super::reader_agency(&who);
            let items: Vec<Item> = rows
                .iter()
                .map(|a| Item {
                    id: a.id.clone(),
                    what: "an action of the plan".into(),
                    category: a.category.clone(),
                })
                .collect();
            let own = who.agency == Some(set_by_agency.as_str());
            let mut answers = BTreeMap::new();
            if !own {
                answers = asker
                    .ask_all(
                        &req.tenant,
                        &case.family_id,
                        &reader,
                        &view::item_categories(&items),
                    )
                    .await;
            }
            let (shown, withheld) = view::filter_items(&items, own, &reader, &answers);
            let rows: Vec<ActionRow> = rows.into_iter().filter(|a| shown.contains(&a.id)).collect();
            (rows, withheld)
        };
        let mut actions: Vec<pb::Action> = rows
            .iter()
            .map(|a| action_pb(a, today))
            .filter(|a| !req.overdue_only || a.overdue)
            .collect();
        // Overdue first, then by due date (already in that order).
        actions.sort_by_key(|a| !a.overdue);
        let withheld: Vec<pb::Withheld> = withheld.into_iter().map(super::withheld_pb).collect();
        let ids: BTreeSet<String> = actions.iter().map(|a| a.action_id.clone()).collect();
        self.audit_read(p, &req.tenant, "ListActions", &asked, &withheld, || {
            ids.into_iter().collect()
        })
        .await?;
        Ok(pb::ListActionsResponse { actions, withheld })
    }
}
