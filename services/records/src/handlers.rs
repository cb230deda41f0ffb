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
                store::index_referral(&txn, &tenant, &ev.referral_id, &ev.family_id, &people)
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
                    // The bus's last copies the services cannot reach: dead letters carrying the
                    // family's ids, discarded before the commit (a broker away: the confirmation
                    // is retried, and a repeat finds none).
                    let searched = !orders.is_empty();
                    let mut discarded = 0;
                    for order in orders {
                        let order = rec::DestructionOrdered::decode(order.as_slice())
                            .map_err(|e| permanent("DestructionOrdered", e))?;
                        discarded += discard_dead_letters(ctx, &tenant, &order)
                            .await
                            .map_err(|e| HandlerError::bus(&e))?;
                    }
                    if searched {
                        store::note_dead_letters(
                            &txn,
                            &tenant,
                            &ev.destruction_id,
                            i64::try_from(discarded).unwrap_or(i64::MAX),
                        )
                        .await
                        .map_err(db)?;
                    }
                    tracing::info!(
                        tenant,
                        destruction_id = ev.destruction_id,
                        dead_letters = discarded,
                        "destruction complete: every service confirmed"
                    );
                }
            }
        }
        eh_store::commit(txn).await.map_err(db)?;
        Ok(Handled::Done)
    }
}

/// Discards every dead letter of council `tenant` whose payload or headers carry one of the ids
/// `order` destroyed; how many.
///
/// # Errors
/// The broker could not be read or a dead letter not deleted.
pub async fn discard_dead_letters(
    ctx: &ServiceContext,
    tenant: &str,
    order: &eh_proto::records::v1::DestructionOrdered,
) -> eh_bus::Result<usize> {
    let ids = eh_service::rights::Ids {
        tenant: tenant.into(),
        family: order.family_ids.clone(),
        person: order.person_ids.clone(),
        referral: order.referral_ids.clone(),
        case: order.case_ids.clone(),
    };
    let needles = ids.all();
    let carries = |hay: &[u8]| {
        needles
            .iter()
            .any(|id| hay.windows(id.len()).any(|w| w == id.as_bytes()))
    };
    let ns = ctx.namespace();
    let mut discarded = 0;
    for dl in eh_bus::dlq::list(ctx.transport.as_ref(), ns, usize::MAX).await? {
        if eh_bus::subjects::tenant_of(ns, &dl.original_subject) != Some(tenant) {
            continue;
        }
        if carries(&dl.payload) || dl.headers.values().any(|v| carries(v.as_bytes())) {
            ctx.transport
                .delete(&eh_bus::subjects::dead_letter_stream(ns), dl.seq)
                .await?;
            discarded += 1;
        }
    }
    Ok(discarded)
}
