//! The operator's webhook commands (`earlyhelp webhook list|replay|discard`): a delivery the
//! gateway dead-lettered after its attempts (`gateway.webhooks.max_attempts`) stays `dead` until an
//! operator replays it — back to `pending`, its attempts from none, due now, so the running
//! gateway's sender posts it again with the same `webhook-id` (a receiver that had it already
//! recognises the repeat, per Standard Webhooks) — or discards it (kept as `discarded`, never sent).
//!
//! Replaying or discarding resends or drops a status update about a council's case, so, as for
//! `earlyhelp dlq`, it is first written to an audit trail — the gateway's own, unless `--service`
//! names another — with who (`operator:<name>`), which delivery
//! and why; when the trail cannot be written, nothing is done. Only a dead delivery of the council
//! named is touched: another status, an unknown id or another council's id is refused, changing
//! nothing. What is printed is ids and statuses, never a delivery's body.
use anyhow::Context;
use eh_auth::{AuditEntry, Decision};
use eh_gateway::webhook::store::{self, Listed};
use eh_platform::Settings;
use sea_orm::DatabaseConnection;

use crate::Target;
use crate::dlq::{Action, one_line, record_first};

/// The service whose audit trail records the commands unless the operator names another: the
/// gateway, which holds the deliveries.
pub const AUDITED_BY: &str = eh_gateway::SERVICE;

/// The audit trail's `action`.
fn audit_action(action: Action) -> &'static str {
    match action {
        Action::Replay => "webhook.replay",
        Action::Discard => "webhook.discard",
    }
}

/// The gateway's database, with its deliveries' table, for council `tenant`.
async fn open(settings: &Settings, tenant: &str) -> anyhow::Result<DatabaseConnection> {
    let known = crate::app::with_demo_tenant(settings.clone());
    anyhow::ensure!(
        known.tenants.contains_key(tenant),
        "no council {tenant:?} in the settings"
    );
    let loc = eh_store::Location::for_service(settings, eh_gateway::SERVICE)?;
    let db = eh_store::connect(&loc)
        .await
        .context("the gateway's database")?;
    let pending = eh_store::pending(&db, store::MIGRATIONS).await?;
    anyhow::ensure!(
        pending.is_empty(),
        "the gateway's webhook deliveries are not migrated: run `earlyhelp migrate --target gateway` first"
    );
    Ok(db)
}

/// The deliveries of council `tenant` (of `status` only, when given), oldest first.
///
/// # Errors
/// An unknown council or status; the database cannot be read.
pub async fn list(
    settings: &Settings,
    tenant: &str,
    status: Option<&str>,
    limit: u32,
) -> anyhow::Result<Vec<Listed>> {
    if let Some(s) = status {
        anyhow::ensure!(
            store::STATUSES.contains(&s),
            "no status {s:?}: one of {}",
            store::STATUSES.join(", ")
        );
    }
    let db = open(settings, tenant).await?;
    let txn = eh_store::begin_scoped(&db, tenant).await?;
    let list = store::list(&txn, tenant, status, limit).await?;
    eh_store::end_read(txn).await?;
    db.close().await.ok();
    Ok(list)
}

/// Audits, then carries out, `action` on dead delivery `id` of council `tenant` by operator `by`
/// for `reason`. Returns the delivery as it was.
///
/// # Errors
/// Wrong input, an unknown council, no such delivery of the council, a delivery that is not dead,
/// the audit trail not written: each naming what is wrong, nothing changed.
pub async fn act(
    settings: &Settings,
    tenant: &str,
    id: &str,
    action: Action,
    by: &str,
    reason: &str,
    service: Option<&str>,
) -> anyhow::Result<Listed> {
    let by = one_line("the operator's name (--by)", by)?;
    let reason = one_line("the reason (--reason)", reason)?;
    let target = Target::named(service.unwrap_or(AUDITED_BY)).map_err(anyhow::Error::msg)?;
    let db = open(settings, tenant).await?;
    let txn = eh_store::begin_scoped(&db, tenant).await?;
    let found = store::find(&txn, tenant, id).await?;
    eh_store::end_read(txn).await?;
    let d = found.with_context(|| format!("council {tenant} holds no webhook delivery {id:?}"))?;
    anyhow::ensure!(
        d.status == store::DEAD,
        "webhook delivery {id} is {}, not dead: only a dead delivery is replayed or discarded; nothing done",
        d.status
    );
    record_first(
        settings,
        target,
        AuditEntry {
            tenant: tenant.into(),
            actor: format!("operator:{by}"),
            role: "operator".into(),
            action: audit_action(action).into(),
            record: format!("webhook_delivery:{}:{id}", d.system),
            purpose: "webhook deliveries".into(),
            decision: Decision::Allowed,
            reason: format!(
                "webhook delivery {id} ({}) to {}, dead after {} attempt(s): {reason}",
                d.event_type, d.system, d.attempts
            ),
        },
    )
    .await?;
    let now = chrono::Utc::now();
    let txn = eh_store::begin_scoped(&db, tenant).await?;
    let done = match action {
        Action::Replay => store::replay(&txn, tenant, id, now).await?,
        Action::Discard => store::discard(&txn, tenant, id, now).await?,
    };
    eh_store::commit(txn).await?;
    db.close().await.ok();
    anyhow::ensure!(
        done,
        "webhook delivery {id} changed meanwhile (no longer dead); nothing done"
    );
    tracing::info!(
        tenant,
        delivery = %id,
        system = %d.system,
        operator = %by,
        action = audit_action(action),
        "webhook delivery settled by an operator"
    );
    Ok(d)
}
