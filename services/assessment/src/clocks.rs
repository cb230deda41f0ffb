//! Assessment's clocks, run by every replica every [`CLOCK_POLL`]: an unfinished action past its
//! due date (the UK midnight ending it) reminds its owner once for that date (`action_overdue`),
//! and a closure's follow-up check that has fallen due is asked once (`follow_up_due`). Each is
//! marked in the same transaction as its event (a conditional update: two replicas never send it
//! twice), and a case that has ended is never chased.
use crate::store::{outcomes, plan};
use chrono::{DateTime, Utc};
use eh_bus::{Envelope, OutboundMessage, ServiceContext};
use eh_proto::assessment::v1 as pb;
use eh_proto::catalogue::EventSpec;
use prost::Message;
use sea_orm::DbErr;
use std::time::Duration;

/// How often the clocks are looked at.
pub const CLOCK_POLL: Duration = Duration::from_secs(1);
/// The most reminders or checks one pass sends.
const BATCH: u64 = 200;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ran {
    pub reminded: usize,
    pub follow_ups: usize,
}

async fn emit(
    ctx: &ServiceContext,
    txn: &sea_orm::DatabaseTransaction,
    tenant: &str,
    spec: &'static EventSpec,
    payload: Vec<u8>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let actor = format!("service:{}", crate::SERVICE);
    let env = Envelope::new(spec.payload, tenant, &actor, now);
    let msg = OutboundMessage::event(spec.subject(ctx.namespace(), tenant), &env, payload);
    ctx.outbox
        .enqueue(txn, &msg)
        .await
        .map_err(|e| DbErr::Custom(e.to_string()))
}

/// One pass over every council's clocks.
///
/// # Errors
/// The database failed (the next pass tries again; nothing was half done).
pub async fn run(ctx: &ServiceContext) -> Result<Ran, DbErr> {
    let now = ctx.clock.now();
    let today = eh_workdays::uk_local_date(now);
    let mut ran = Ran::default();
    // Every council's clocks are found in the system scope; each is handled in its council's.
    let sweep = eh_store::begin_system(&ctx.db, eh_store::SystemWorker::AssessmentClocks).await?;
    let overdue = plan::overdue_unreminded(&sweep, today, BATCH).await?;
    eh_store::end_read(sweep).await?;
    for o in overdue {
        let txn = eh_store::begin_scoped(&ctx.db, &o.tenant).await?;
        if !plan::mark_reminded(&txn, &o.tenant, &o.action_id, &o.due_date, now).await? {
            txn.rollback().await?;
            continue;
        }
        let remind_email = if o.owner_kind == "practitioner" {
            o.owner_email
        } else {
            o.lead_email
        };
        let ev = pb::ActionOverdue {
            action_id: o.action_id,
            case_id: o.case_id,
            owner_kind: o.owner_kind,
            remind_email,
            due_date: o.due_date,
            at: now.to_rfc3339(),
        };
        emit(
            ctx,
            &txn,
            &o.tenant,
            &eh_proto::catalogue::ACTION_OVERDUE,
            ev.encode_to_vec(),
            now,
        )
        .await?;
        eh_store::commit(txn).await?;
        ran.reminded += 1;
    }
    let sweep = eh_store::begin_system(&ctx.db, eh_store::SystemWorker::AssessmentClocks).await?;
    let due = outcomes::follow_ups_due(&sweep, now, BATCH).await?;
    eh_store::end_read(sweep).await?;
    for c in due {
        let txn = eh_store::begin_scoped(&ctx.db, &c.tenant).await?;
        if !outcomes::mark_follow_up_asked(&txn, &c.tenant, &c.case_id, now).await? {
            txn.rollback().await?;
            continue;
        }
        let ev = pb::FollowUpDue {
            case_id: c.case_id.clone(),
            family_id: c.family_id.clone(),
            closed_at: c.closed_at.to_rfc3339(),
            remind_email: c.remind_email.clone(),
            at: now.to_rfc3339(),
        };
        emit(
            ctx,
            &txn,
            &c.tenant,
            &eh_proto::catalogue::FOLLOW_UP_DUE,
            ev.encode_to_vec(),
            now,
        )
        .await?;
        eh_store::commit(txn).await?;
        ran.follow_ups += 1;
    }
    Ok(ran)
}

/// Runs the clocks every [`CLOCK_POLL`] until shutdown.
pub fn spawn(ctx: &ServiceContext) {
    let this = ctx.clone();
    let shutdown = ctx.shutdown.clone();
    ctx.tasks.spawn(async move {
        loop {
            match run(&this).await {
                Ok(r) if r.reminded > 0 || r.follow_ups > 0 => tracing::info!(
                    reminded = r.reminded,
                    follow_ups = r.follow_ups,
                    "assessment clocks ran"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "assessment clocks failed; trying again"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(CLOCK_POLL) => {}
            }
        }
    });
}
