//! The urgent lane's last leg. The front door's email (a step-up) has a sender of its own
//! ([`Sender::urgent`](crate::sender::Sender::urgent)) with its own SMTP connections, woken the
//! moment a step-up is recorded, so no backlog of other email stands in front of it; it is
//! retried without end (never marked failed). When it has not gone within [`OVERDUE_AFTER`] of
//! being queued (the SMTP server down, say) it is raised loudly, once per message across
//! replicas: an error in the log, `earlyhelp_front_door_overdue_total{tenant}`, and
//! `front_door_overdue` on the bus; `earlyhelp_front_door_unsent{tenant}` says how many are still
//! unsent while any are. Ids only: the message id and the case id.
use crate::store;
use eh_bus::{Envelope, OutboundMessage, ServiceContext};
use eh_platform::metrics::TenantLabels;
use eh_proto::catalogue::FRONT_DOOR_OVERDUE;
use eh_proto::notifications::v1::FrontDoorOverdue;
use prost::Message;
use sea_orm::DbErr;
use std::collections::BTreeMap;
use std::time::Duration;

/// An urgent email not sent this long after it was queued is raised.
pub const OVERDUE_AFTER: chrono::Duration = chrono::Duration::seconds(60);
/// How often the watch looks.
pub const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Looks for overdue urgent email every `every` until shutdown.
pub async fn watch_overdue(ctx: ServiceContext, every: Duration) {
    loop {
        if let Err(e) = check_overdue(&ctx).await {
            tracing::warn!(error = %e, "cannot check the front door's email for delays; will retry");
        }
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Raises every urgent email unsent [`OVERDUE_AFTER`] after it was queued and not raised before;
/// sets the unsent gauge. Returns how many it raised now.
pub async fn check_overdue(ctx: &ServiceContext) -> Result<usize, DbErr> {
    let now = ctx.clock.now();
    // Every council's urgent emails (each raised in its council's scope).
    let sweep = eh_store::begin_system(&ctx.db, eh_store::SystemWorker::UrgentWatch).await?;
    let late = store::overdue_urgent(&sweep, now - OVERDUE_AFTER).await?;
    eh_store::end_read(sweep).await?;
    // Every council's gauge is set, to zero when none is late.
    let mut unsent: BTreeMap<String, i64> = ctx
        .settings
        .tenants
        .keys()
        .map(|t| (t.clone(), 0))
        .collect();
    let mut raised = 0;
    for (m, raised_before) in late {
        *unsent.entry(m.tenant.clone()).or_default() += 1;
        if raised_before {
            continue;
        }
        let txn = eh_store::begin_scoped(&ctx.db, &m.tenant).await?;
        if !store::raise_overdue(&txn, &m.id, now).await? {
            txn.rollback().await?;
            continue; // another replica raised it
        }
        let env = Envelope::new(
            FRONT_DOOR_OVERDUE.payload,
            &m.tenant,
            "service:notifications",
            now,
        );
        let event = FrontDoorOverdue {
            message_id: m.id.clone(),
            case_id: m.related_id.clone(),
            queued_at: m.created_at.to_rfc3339(),
            attempts: m.attempts.max(0) as u32,
            detected_at: now.to_rfc3339(),
        };
        let subject = FRONT_DOOR_OVERDUE.subject(ctx.namespace(), &m.tenant);
        ctx.outbox
            .enqueue(
                &txn,
                &OutboundMessage::event(subject, &env, event.encode_to_vec()),
            )
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        eh_store::commit(txn).await?;
        ctx.outbox.committed();
        ctx.metrics
            .front_door_overdue
            .get_or_create(&TenantLabels {
                tenant: m.tenant.clone(),
            })
            .inc();
        tracing::error!(
            tenant = %m.tenant,
            message_id = %m.id,
            case_id = %m.related_id,
            attempts = m.attempts,
            queued_at = %m.created_at.to_rfc3339(),
            "the front door has NOT been told of a step-up: its email is unsent a minute after it \
             was queued; it is retried without end (see the message's last_error)"
        );
        raised += 1;
    }
    for (tenant, n) in unsent {
        ctx.metrics
            .front_door_unsent
            .get_or_create(&TenantLabels { tenant })
            .set(n);
    }
    Ok(raised)
}
