//! What records consumes: the family index from intake's and casework's events (ids and dates
//! only: which referrals, people and cases make up a family, children's dates of birth, when
//! cases closed), and each service's confirmation of a destruction. Each in one transaction with
//! its inbox claim, so an event delivered twice is applied once.
use crate::store;
use chrono::{DateTime, Utc};
use eh_bus::{Handled, HandlerError, Received, ServiceContext};
use eh_proto::catalogue::{self, Subscription};
use prost::Message;

/// Which event a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    ReferralReceived,
    PeopleMerged,
    CaseStateChanged,
    PersonCorrected,
    /// A service's confirmation of a destruction.
    Confirmation,
}

/// Every consumer of records and what it reads.
pub fn feeds() -> Vec<(Feed, &'static Subscription)> {
    let mut out = vec![
        (
            Feed::ReferralReceived,
            &catalogue::RECORDS_REFERRAL_RECEIVED,
        ),
        (Feed::PeopleMerged, &catalogue::RECORDS_PEOPLE_MERGED),
        (
            Feed::CaseStateChanged,
            &catalogue::RECORDS_CASE_STATE_CHANGED,
        ),
        (Feed::PersonCorrected, &catalogue::RECORDS_PERSON_CORRECTED),
    ];
    for s in [
        &catalogue::RECORDS_INTAKE_RECORDS_DESTROYED,
        &catalogue::RECORDS_CONSENT_RECORDS_DESTROYED,
        &catalogue::RECORDS_CASEWORK_RECORDS_DESTROYED,
        &catalogue::RECORDS_ASSESSMENT_RECORDS_DESTROYED,
        &catalogue::RECORDS_ALLOCATION_RECORDS_DESTROYED,
        &catalogue::RECORDS_NOTIFICATIONS_RECORDS_DESTROYED,
        &catalogue::RECORDS_REPORTING_RECORDS_DESTROYED,
        &catalogue::RECORDS_GATEWAY_RECORDS_DESTROYED,
    ] {
        out.push((Feed::Confirmation, s));
    }
    out
}

pub struct IndexHandler {
    pub ctx: ServiceContext,
    pub name: &'static str,
    pub feed: Feed,
}

fn permanent(what: &str, e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(format!("not a {what}: {e}"))
}

fn instant(at: &str, msg: &Received) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(at)
        .map(|t| t.to_utc())
        .ok()
        .or_else(|| msg.envelope().map(|e| e.occurred_at))
        .unwrap_or_else(Utc::now)
}

#[async_trait::async_trait]
impl eh_bus::Handler for IndexHandler {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError> {
        use eh_proto::casework::v1 as case;
        use eh_proto::intake::v1 as intake;
        use eh_proto::records::v1 as rec;
        let ctx = &self.ctx;
        let tenant = eh_bus::subjects::tenant_of(ctx.namespace(), &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let p = msg.payload.as_ref();
        // Decoded and checked before anything is written.
        enum Fact {
            Referral(Box<intake::ReferralReceived>),
            Merged(intake::PeopleMerged),
            Case(case::CaseStateChanged),
            Corrected(intake::PersonCorrected),
            Confirmed(rec::RecordsDestroyed),
        }
        let fact = match self.feed {
            Feed::ReferralReceived => {
                let ev = intake::ReferralReceived::decode(p)
                    .map_err(|e| permanent("ReferralReceived", e))?;
                if ev.referral_id.is_empty() || ev.family_id.is_empty() {
                    return Err(HandlerError::Permanent(
                        "ReferralReceived has no referral_id or family_id".into(),
                    ));
                }
                Fact::Referral(Box::new(ev))
            }
            Feed::PeopleMerged => {
                let ev =
                    intake::PeopleMerged::decode(p).map_err(|e| permanent("PeopleMerged", e))?;
                if ev.person_id.is_empty() {
                    return Err(HandlerError::Permanent(
                        "PeopleMerged has no person_id".into(),
                    ));
                }
                Fact::Merged(ev)
            }
            Feed::CaseStateChanged => {
                let ev = case::CaseStateChanged::decode(p)
                    .map_err(|e| permanent("CaseStateChanged", e))?;
                let c = ev.case.as_ref();
                if c.is_none_or(|c| c.case_id.is_empty() || c.family_id.is_empty()) {
                    return Err(HandlerError::Permanent(
                        "CaseStateChanged has no case_id or family_id".into(),
                    ));
                }
                Fact::Case(ev)
            }
            Feed::PersonCorrected => {
                let ev = intake::PersonCorrected::decode(p)
                    .map_err(|e| permanent("PersonCorrected", e))?;
                if ev.person_id.is_empty() {
                    return Err(HandlerError::Permanent(
                        "PersonCorrected has no person_id".into(),
                    ));
                }
                Fact::Corrected(ev)
            }
            Feed::Confirmation => {
                let ev = rec::RecordsDestroyed::decode(p)
                    .map_err(|e| permanent("RecordsDestroyed", e))?;
                if ev.destruction_id.is_empty()
                    || !crate::settings::SERVICES.contains(&ev.service.as_str())
                {
                    return Err(HandlerError::Permanent(
                        "RecordsDestroyed has no destruction_id or no known service".into(),
                    ));
                }
                Fact::Confirmed(ev)
            }
        };
        let db = |e: sea_orm::DbErr| HandlerError::db(&e);
        let txn = eh_store::begin_scoped(&ctx.db, &tenant).await.map_err(db)?;
        if !eh_bus::inbox::claim_live(&txn, self.name, msg)
            .await
            .map_err(|e| HandlerError::bus(&e))?
        {
            // Committed: a message about a destroyed family stays claimed too.
            eh_store::commit(txn)
                .await
                .map_err(|e| eh_bus::HandlerError::db(&e))?;
            return Ok(Handled::Duplicate);
        }
        match fact {
            Fact::Referral(ev) => {
                let r = ev.referral.clone().unwrap_or_default();
                let mut people = Vec::new();
                for (i, c) in ev.children.iter().enumerate() {
                    let dob = r.children.get(i).and_then(|c| c.date_of_birth.clone());
                    people.push((c.person_id.clone(), true, dob));
                }
                for m in &ev.family_members {
                    people.push((m.person_id.clone(), false, None));
                }
                let source = r.source.clone().unwrap_or_default();
                store::index_referral(
                    &txn,
                    &tenant,
                    &ev.referral_id,
                    &ev.family_id,
                    (&source.system, &source.reference),
                    &people,
                )
                .await
                .map_err(db)?;
            }
            Fact::Merged(ev) => {
                store::merge_people(
                    &txn,
                    &tenant,
                    &ev.person_id,
                    &ev.merged_person_id,
                    &ev.family_id,
                    &ev.previous_family_id,
                )
                .await
                .map_err(db)?;
            }
            Fact::Case(ev) => {
                let c = ev.case.clone().unwrap_or_default();
                let closed =
                    crate::domain::is_over(&ev.to_state).then(|| instant(&ev.at, msg).date_naive());
                store::index_case(
                    &txn,
                    &tenant,
                    &c.case_id,
                    &c.family_id,
                    &ev.to_state,
                    closed,
                )
                .await
                .map_err(db)?;
            }
            Fact::Corrected(ev) => {
                if let Some(dob) = &ev.date_of_birth {
                    store::correct_birth(&txn, &tenant, &ev.person_id, dob)
                        .await
                        .map_err(db)?;
                }
            }
            Fact::Confirmed(ev) => {
                let done = store::confirm(
                    &txn,
                    &tenant,
                    &ev.destruction_id,
                    &ev.service,
                    i64::from(ev.rows),
                    instant(&ev.at, msg),
                    crate::settings::SERVICES,
                )
                .await
                .map_err(db)?;
                if let Some(orders) = done {
                    if orders.is_empty() {
                        // The order's outbox copy (the only place records still held the ids)
                        // is gone: kept `bus.outbox_retention_hours` after publishing, and the
                        // destruction took longer. Its dead letters are not searched; the
                        // count stays unknown (NULL) rather than a false 0.
                        tracing::warn!(
                            tenant,
                            destruction_id = ev.destruction_id,
                            "destruction complete, but its order's ids are no longer held: dead letters not searched"
                        );
                    }
                    // The bus's last copies the services cannot reach: dead letters and events
                    // in the streams' replay window carrying the family's ids, removed before the
                    // commit (a broker away: the confirmation is retried, and a repeat finds
                    // none).
                    let searched = !orders.is_empty();
                    let mut discarded = Discarded::default();
                    for order in orders {
                        let order = rec::DestructionOrdered::decode(order.as_slice())
                            .map_err(|e| permanent("DestructionOrdered", e))?;
                        discarded += discard_copies(ctx, &tenant, &order)
                            .await
                            .map_err(|e| HandlerError::bus(&e))?;
                    }
                    if searched {
                        let n = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                        store::note_discarded(
                            &txn,
                            &tenant,
                            &ev.destruction_id,
                            n(discarded.dead_letters),
                            n(discarded.event_copies),
                        )
                        .await
                        .map_err(db)?;
                    }
                    tracing::info!(
                        tenant,
                        destruction_id = ev.destruction_id,
                        dead_letters = discarded.dead_letters,
                        event_copies = discarded.event_copies,
                        "destruction complete: every service confirmed"
                    );
                }
            }
        }
        eh_store::commit(txn).await.map_err(db)?;
        Ok(Handled::Done)
    }
}

/// What a destruction removed from the bus.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Discarded {
    pub dead_letters: usize,
    pub event_copies: usize,
}

impl std::ops::AddAssign for Discarded {
    fn add_assign(&mut self, o: Self) {
        self.dead_letters += o.dead_letters;
        self.event_copies += o.event_copies;
    }
}

/// The streams whose events may carry a council's families' details for their replay window:
/// every service's but records' own (its orders and confirmations are ids, kept with the
/// certificate), and each council's inbound stream.
pub fn event_streams(ns: &str, tenants: &[&str]) -> Vec<eh_bus::StreamSpec> {
    let mut services: Vec<&str> = catalogue::EVENTS
        .iter()
        .map(|e| e.service)
        .filter(|s| *s != crate::SERVICE)
        .collect();
    services.sort_unstable();
    services.dedup();
    let mut out: Vec<eh_bus::StreamSpec> = services
        .into_iter()
        .map(|s| eh_bus::subjects::service_stream(ns, s))
        .collect();
    out.extend(eh_bus::subjects::inbound_streams(ns, tenants.iter().copied()).partitions);
    out
}

/// Removes every copy on the bus of council `tenant` whose payload or headers carry one of the
/// ids `order` destroyed, or that is an upstream system's document under one of the family's
/// referrals' references: its dead letters (discarded) and its events still in the streams'
/// replay window (erased); how many of each.
///
/// # Errors
/// The broker could not be read or a message not removed.
pub async fn discard_copies(
    ctx: &ServiceContext,
    tenant: &str,
    order: &eh_proto::records::v1::DestructionOrdered,
) -> eh_bus::Result<Discarded> {
    const PAGE: usize = 256;
    let ids = eh_service::rights::Ids {
        tenant: tenant.into(),
        family: order.family_ids.clone(),
        person: order.person_ids.clone(),
        referral: order.referral_ids.clone(),
        case: order.case_ids.clone(),
    };
    let needles = ids.all();
    let has = |hay: &[u8]| {
        needles
            .iter()
            .any(|id| hay.windows(id.len()).any(|w| w == id.as_bytes()))
    };
    // An upstream system's document (JSON, naming its referral by its own reference).
    let sent = |payload: &[u8]| {
        if order.sources.is_empty() || payload.first() != Some(&b'{') {
            return false;
        }
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return false;
        };
        let source = &doc["source"];
        order.sources.iter().any(|s| {
            source["system"].as_str() == Some(s.system.as_str())
                && source["reference"].as_str() == Some(s.reference.as_str())
        })
    };
    let carries = |payload: &[u8], headers: &std::collections::BTreeMap<String, String>| {
        has(payload) || sent(payload) || headers.values().any(|v| has(v.as_bytes()))
    };
    let ns = ctx.namespace();
    let t = ctx.transport.as_ref();
    let mut out = Discarded::default();
    let dlq = eh_bus::subjects::dead_letter_stream(ns);
    for dl in eh_bus::dlq::list(t, ns, usize::MAX).await? {
        if eh_bus::subjects::tenant_of(ns, &dl.original_subject) != Some(tenant) {
            continue;
        }
        if carries(&dl.payload, &dl.headers) {
            t.delete(&dlq, dl.seq).await?;
            out.dead_letters += 1;
        }
    }
    let council = format!("{ns}.{tenant}.>");
    for stream in event_streams(ns, &[tenant]) {
        let mut from = 0;
        loop {
            let page = t.scan(&stream, &council, from, PAGE).await?;
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            let full = page.len() == PAGE;
            for m in page.iter().filter(|m| carries(&m.payload, &m.headers)) {
                t.delete(&stream, m.seq).await?;
                out.event_copies += 1;
            }
            if !full {
                break;
            }
        }
    }
    Ok(out)
}
