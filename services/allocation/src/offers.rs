//! Offering cases to services — load, decide, apply. Every step runs in one transaction holding
//! the council's allocation lock (an advisory lock on PostgreSQL, across replicas; SQLite has one
//! writer), so the places it counts cannot change under it: two cases never take a service's last
//! place at once. The decision is the matcher's ([`crate::domain::matching::decide`]); what is
//! written and published follows from it:
//! - a service ranked first → an offer (`offered`, holding one of its places and counting against
//!   its contract period), the case `offered`, `offer_made` published;
//! - none → the case `waiting` (from the first time it waited), `case_waiting` published when it
//!   starts waiting.
//!
//! An offer not answered within the council's provider response time (working days on its
//! calendar) lapses (`expired`, `offer_expired` published) and the case goes to the next candidate,
//! as after a decline ([`run_clocks`]). A case waiting longer than the council's limit is reported
//! once (`waiting_limit_breached`).
//!
//! A service that declined the case (or let its offer lapse, or whose offer was withdrawn) is never
//! offered it again.
//! Whenever a place frees — a decline, a case closed or stepped up, terms with more capacity — the
//! waiting cases are tried again in the list's order.
use crate::domain;
use crate::domain::matching::{self, Candidate, Family};
use crate::handlers::Allocation;
use crate::settings::Council;
use crate::store::{self, CaseRow, OfferRow, StoredService};
use chrono::{DateTime, Utc};
use eh_bus::{Envelope, OutboundMessage};
use eh_proto::allocation::v1 as pb;
use eh_proto::catalogue::EventSpec;
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};
use std::collections::HashSet;

/// The most waiting cases tried when a place frees.
const WAITING_TRIED: usize = 200;

/// A directory service as the matcher sees it.
pub fn candidate(s: &StoredService, declined: bool) -> Candidate {
    let offerable = s.offerable();
    Candidate {
        id: s.service.id.clone(),
        name: s.service.name.clone(),
        active: offerable.is_ok(),
        inactive_reason: offerable.err().unwrap_or_default(),
        minimum_age: s.service.minimum_age,
        maximum_age: s.service.maximum_age,
        taxonomy_needs: s.taxonomy_needs.clone(),
        terms: s.terms.clone(),
        open_cases: s.open_cases,
        period_cases: s.period_cases,
        declined,
    }
}

/// Holds the council's allocation lock until `txn` ends (PostgreSQL; SQLite has one writer).
///
/// # Errors
/// When the database fails.
pub async fn lock_council(txn: &DatabaseTransaction, tenant: &str) -> Result<(), DbErr> {
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        txn.execute_raw(eh_store::stmt(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            [format!("eh.allocation.places.{tenant}").into()],
        ))
        .await?;
    }
    Ok(())
}

/// Publishes `payload` as `spec` of `tenant`, in `txn`.
///
/// # Errors
/// When the outbox cannot be written.
pub async fn emit(
    a: &Allocation,
    txn: &DatabaseTransaction,
    tenant: &str,
    spec: &EventSpec,
    actor: &str,
    payload: Vec<u8>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let env = Envelope::new(spec.payload, tenant, actor, now);
    a.ctx
        .outbox
        .enqueue(
            txn,
            &OutboundMessage::event(spec.subject(a.ctx.namespace(), tenant), &env, payload),
        )
        .await
        .map_err(|e| DbErr::Custom(e.to_string()))
}

/// Where a case was placed.
#[derive(Debug, Clone, PartialEq)]
pub enum Placed {
    Offered(Box<OfferRow>),
    /// On the waiting list at this position (1-based).
    Waiting {
        position: u32,
    },
}

/// Matches `case` and offers it, or puts it on the waiting list. Call with the council's lock
/// held ([`lock_council`]).
///
/// # Errors
/// When the database fails.
pub async fn place(
    a: &Allocation,
    txn: &DatabaseTransaction,
    council: &Council,
    case: &CaseRow,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Placed, DbErr> {
    let tenant = &case.tenant;
    let today = now.date_naive();
    let services = store::services(txn, tenant, today).await?;
    let before = store::offers_of_case(txn, tenant, &case.case_id).await?;
    let tried: HashSet<&str> = before.iter().map(|o| o.service_id.as_str()).collect();
    let ages = store::birth_dates(txn, tenant, &case.referral_id)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|d| domain::age_on(d, today))
        .collect();
    let family = Family {
        postcode: case.postcode.clone(),
        needs: case.needs.clone(),
        programmes: case.programmes.clone(),
        children_ages: ages,
    };
    let candidates: Vec<Candidate> = services
        .iter()
        .map(|s| candidate(s, tried.contains(s.service.id.as_str())))
        .collect();
    let decision = matching::decide(&family, &council.rules, &candidates);
    if let Some(first) = decision.first() {
        let Some(service) = services.iter().find(|s| s.service.id == first.id) else {
            return Err(DbErr::Custom(
                "the matcher chose a service it was not given".into(),
            ));
        };
        let terms = service.terms.as_ref();
        let respond_by = council
            .overdue_from(now, council.provider_response_days)
            .map_err(|e| DbErr::Custom(format!("the provider response time: {e}")))?;
        let period = terms.map_or_else(
            || today.to_string(),
            |t| t.contract_period.start(today).to_string(),
        );
        let offer = OfferRow {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.clone(),
            case_id: case.case_id.clone(),
            service_id: first.id.clone(),
            status: "offered".into(),
            period_start: period,
            attempt: u32::try_from(before.len() + 1).unwrap_or(u32::MAX),
            rule_version: decision.rule_version.clone(),
            reasons: first.reasons.clone(),
            offered_at: now,
            settled_at: None,
            settled_by: String::new(),
            decline_reason: String::new(),
            decline_detail: String::new(),
            respond_by: Some(respond_by),
        };
        store::insert_offer(txn, &offer).await?;
        store::set_case_status(txn, tenant, &case.case_id, "offered", "", now).await?;
        let made = pb::OfferMade {
            offer_id: offer.id.clone(),
            case_id: case.case_id.clone(),
            family_id: case.family_id.clone(),
            referral_id: case.referral_id.clone(),
            service_id: service.service.id.clone(),
            service_name: service.service.name.clone(),
            organization_id: service.service.organization_id.clone(),
            kind: terms.map(|t| t.kind.as_str()).unwrap_or_default().into(),
            offer_email: terms.map(|t| t.offer_email.clone()).unwrap_or_default(),
            rule_version: offer.rule_version.clone(),
            attempt: offer.attempt,
            at: now.to_rfc3339(),
            respond_by: respond_by.to_rfc3339(),
        };
        emit(
            a,
            txn,
            tenant,
            &eh_proto::catalogue::OFFER_MADE,
            actor,
            made.encode_to_vec(),
            now,
        )
        .await?;
        tracing::info!(tenant = %tenant, case_id = %case.case_id, offer_id = %offer.id, service_id = %offer.service_id, attempt = offer.attempt, "case offered");
        return Ok(Placed::Offered(Box::new(offer)));
    }
    // No service can take it: why, in a line, from the reasons most services gave.
    let reason = summary(&decision);
    let was_waiting = case.status == "waiting";
    store::set_case_status(txn, tenant, &case.case_id, "waiting", &reason, now).await?;
    let position = store::waiting(txn, tenant)
        .await?
        .iter()
        .position(|c| c.case_id == case.case_id)
        .map_or(0, |p| u32::try_from(p + 1).unwrap_or(u32::MAX));
    if !was_waiting {
        let waiting = pb::CaseWaiting {
            case_id: case.case_id.clone(),
            family_id: case.family_id.clone(),
            referral_id: case.referral_id.clone(),
            position,
            significant_need: case.significant_need,
            at: now.to_rfc3339(),
        };
        emit(
            a,
            txn,
            tenant,
            &eh_proto::catalogue::CASE_WAITING,
            actor,
            waiting.encode_to_vec(),
            now,
        )
        .await?;
        tracing::info!(tenant = %tenant, case_id = %case.case_id, position, "case waiting: no service can take it now");
    }
    Ok(Placed::Waiting { position })
}

/// Why no service could take a case, in a line: the most common reasons services were excluded.
fn summary(d: &matching::Decision) -> String {
    if d.placed.is_empty() {
        return "the council's directory has no services".into();
    }
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for p in &d.placed {
        for r in &p.reasons {
            // Group by the reason's kind (its words before any figures or names).
            let kind: String = r.split(['(', ':']).next().unwrap_or(r).trim().to_string();
            *counts.entry(kind).or_default() += 1;
        }
    }
    let mut by: Vec<(String, usize)> = counts.into_iter().collect();
    by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: Vec<String> = by
        .iter()
        .take(3)
        .map(|(k, n)| format!("{k} ({n} of {})", d.placed.len()))
        .collect();
    format!("no service can take it now: {}", top.join("; "))
}

/// Tries the council's waiting cases again, in the list's order (a place has freed). Call with
/// the council's lock held. How many were offered.
///
/// # Errors
/// When the database fails.
pub async fn offer_waiting(
    a: &Allocation,
    txn: &DatabaseTransaction,
    council: &Council,
    tenant: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<usize, DbErr> {
    let waiting = store::waiting(txn, tenant).await?;
    let mut offered = 0;
    for case in waiting.iter().take(WAITING_TRIED) {
        if let Placed::Offered(_) = place(a, txn, council, case, actor, now).await? {
            offered += 1;
        }
    }
    Ok(offered)
}

/// The case left allocation (closed, or stepped up to the front door): its open offer is
/// withdrawn, an accepted allocation closed (its place freed; it still counts against its
/// contract period), and the waiting cases tried again. Call with the council's lock held.
/// `false` when allocation did not hold the case, or held it closed already.
///
/// # Errors
/// When the database fails.
pub async fn release(
    a: &Allocation,
    txn: &DatabaseTransaction,
    council: &Council,
    tenant: &str,
    case_id: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let Some(case) = store::case(txn, tenant, case_id).await? else {
        return Ok(false);
    };
    if case.status == "closed" {
        return Ok(false);
    }
    for o in store::offers_of_case(txn, tenant, case_id).await? {
        match o.status.as_str() {
            "offered" => {
                store::settle_offer(
                    txn,
                    tenant,
                    &o.id,
                    "offered",
                    "withdrawn",
                    actor,
                    "",
                    "",
                    now,
                )
                .await?;
            }
            "accepted" => {
                store::settle_offer(txn, tenant, &o.id, "accepted", "closed", actor, "", "", now)
                    .await?;
            }
            _ => {}
        }
    }
    store::set_case_status(txn, tenant, case_id, "closed", "", now).await?;
    offer_waiting(a, txn, council, tenant, actor, now).await?;
    Ok(true)
}

/// Open offers lapsed, and waiting cases reported over the limit, in one round of [`run_clocks`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClocksRun {
    pub expired: usize,
    pub breached: usize,
}

/// The most lapsed offers settled in one transaction.
const LAPSED_PER_ROUND: u64 = 100;

/// Runs council `tenant`'s allocation clocks at `now`, in one transaction holding its allocation
/// lock (replicas may all run it: an offer settles once, a breach is reported once):
/// - every open offer past its `respond_by` lapses (`expired`, by `system:allocation`),
///   `offer_expired` is published and the case placed again (never with that service);
/// - every case waiting longer than `waiting_list_days` working days is reported, once.
///
/// # Errors
/// When the database fails.
pub async fn run_clocks(
    a: &Allocation,
    tenant: &str,
    council: &Council,
    now: DateTime<Utc>,
) -> Result<ClocksRun, DbErr> {
    let txn = eh_store::begin_scoped(&a.ctx.db, tenant).await?;
    lock_council(&txn, tenant).await?;
    let mut run = ClocksRun::default();
    for o in store::lapsed_offers(&txn, tenant, now, LAPSED_PER_ROUND).await? {
        if !store::settle_offer(
            &txn,
            tenant,
            &o.id,
            "offered",
            "expired",
            CLOCK_ACTOR,
            "",
            "",
            now,
        )
        .await?
        {
            continue;
        }
        run.expired += 1;
        let ev = pb::OfferExpired {
            offer_id: o.id.clone(),
            case_id: o.case_id.clone(),
            service_id: o.service_id.clone(),
            respond_by: o.respond_by.map(|t| t.to_rfc3339()).unwrap_or_default(),
            at: now.to_rfc3339(),
        };
        emit(
            a,
            &txn,
            tenant,
            &eh_proto::catalogue::OFFER_EXPIRED,
            CLOCK_ACTOR,
            ev.encode_to_vec(),
            now,
        )
        .await?;
        tracing::info!(tenant = %tenant, case_id = %o.case_id, offer_id = %o.id, service_id = %o.service_id, "offer lapsed unanswered");
        if let Some(case) = store::case(&txn, tenant, &o.case_id).await?
            && case.status == "offered"
        {
            place(a, &txn, council, &case, CLOCK_ACTOR, now).await?;
        }
    }
    if run.expired > 0 {
        offer_waiting(a, &txn, council, tenant, CLOCK_ACTOR, now).await?;
    }
    let waiting = store::waiting(&txn, tenant).await?;
    for case in store::waiting_unbreached(&txn, tenant).await? {
        let Some(since) = case.waiting_since else {
            continue;
        };
        let due = council
            .overdue_from(since, council.waiting_list_days)
            .map_err(|e| DbErr::Custom(format!("the waiting-list limit: {e}")))?;
        if due > now || !store::mark_waiting_breached(&txn, tenant, &case.case_id, now).await? {
            continue;
        }
        run.breached += 1;
        let position = waiting
            .iter()
            .position(|c| c.case_id == case.case_id)
            .map_or(0, |p| u32::try_from(p + 1).unwrap_or(u32::MAX));
        let ev = pb::WaitingLimitBreached {
            case_id: case.case_id.clone(),
            family_id: case.family_id.clone(),
            referral_id: case.referral_id.clone(),
            waiting_since: since.to_rfc3339(),
            limit_days: council.waiting_list_days,
            due_at: due.to_rfc3339(),
            position,
            at: now.to_rfc3339(),
        };
        emit(
            a,
            &txn,
            tenant,
            &eh_proto::catalogue::WAITING_LIMIT_BREACHED,
            CLOCK_ACTOR,
            ev.encode_to_vec(),
            now,
        )
        .await?;
        tracing::warn!(tenant = %tenant, case_id = %case.case_id, position, "case waiting longer than the council's limit");
    }
    eh_store::commit(txn).await?;
    Ok(run)
}

/// The actor the clocks act as.
pub const CLOCK_ACTOR: &str = "system:allocation";
