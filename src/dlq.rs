//! The operator's dead-letter commands (`earlyhelp dlq replay|discard`). Each is an access to a
//! message about a family, so before it is carried out it is written to the audit trail of the
//! service whose consumer parked the message — the same tamper-evident chain, per council, that
//! records its gRPC accesses: who (`operator:<name>`), when, which dead letter (its consumer,
//! event id, stream sequence and original subject) and why. When the trail cannot be written,
//! nothing is done.
use anyhow::Context;
use eh_auth::{AuditEntry, Auditor, Decision};
use eh_bus::Transport;
use eh_bus::dlq::{self, DeadLetter};
use eh_platform::Settings;

use crate::Target;

/// What an operator does with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publish it again on its original subject, then remove it.
    Replay,
    /// Remove it without handling it.
    Discard,
}

impl Action {
    /// The audit trail's `action`.
    pub fn audit_action(self) -> &'static str {
        match self {
            Action::Replay => "dlq.replay",
            Action::Discard => "dlq.discard",
        }
    }
}

/// The longest operator name or reason accepted.
const MAX_TEXT: usize = 500;

/// `text` as one trimmed line, or why not.
pub(crate) fn one_line(what: &str, text: &str) -> anyhow::Result<String> {
    let t = text.trim();
    anyhow::ensure!(!t.is_empty(), "{what} is empty");
    anyhow::ensure!(
        !t.chars().any(char::is_control),
        "{what} must be one line of text (no control characters)"
    );
    anyhow::ensure!(
        t.chars().count() <= MAX_TEXT,
        "{what} is longer than {MAX_TEXT} characters"
    );
    Ok(t.to_string())
}

/// The service whose consumer `consumer` is (the catalogue's subscriptions), or `service` when
/// the operator names one.
pub fn owner(consumer: &str, service: Option<&str>) -> anyhow::Result<Target> {
    if let Some(s) = service {
        return Target::named(s).map_err(anyhow::Error::msg);
    }
    Target::ALL
        .iter()
        .copied()
        .find(|t| {
            t.service()
                .subscriptions()
                .iter()
                .any(|s| s.consumer == consumer)
        })
        .with_context(|| {
            format!(
                "consumer {consumer:?} belongs to no service of this binary; name the service whose audit trail records this with --service"
            )
        })
}

/// The council whose audit chain records an action on `d`: its envelope's tenant, else its
/// subject's tenant token.
fn tenant_of(ns: &str, d: &DeadLetter) -> String {
    d.headers
        .get(eh_bus::envelope::H_TENANT)
        .filter(|t| !t.is_empty())
        .cloned()
        .or_else(|| eh_bus::subjects::tenant_of(ns, &d.original_subject).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Audits, then carries out, `action` on dead letter `seq` by operator `by` for `reason`.
/// Nothing is done when the input is wrong, the dead letter is not there, or the audit trail
/// cannot be written. Returns the dead letter as it was.
///
/// # Errors
/// Each of those, naming what is wrong; or the transport failing after the entry was written (the
/// dead letter is then still there, and the command can be run again).
pub async fn act(
    settings: &Settings,
    transport: &dyn Transport,
    seq: u64,
    action: Action,
    by: &str,
    reason: &str,
    service: Option<&str>,
) -> anyhow::Result<DeadLetter> {
    let by = one_line("the operator's name (--by)", by)?;
    let reason = one_line("the reason (--reason)", reason)?;
    let ns = &settings.bus.namespace;
    let d = match dlq::get(transport, ns, seq).await {
        Err(eh_bus::Error::NotFound(_)) => anyhow::bail!("no dead letter {seq}"),
        other => other?,
    };
    let target = owner(&d.consumer, service)?;
    let event = d
        .headers
        .get(eh_bus::envelope::H_ID)
        .cloned()
        .unwrap_or_else(|| format!("seq:{seq}"));
    let entry = AuditEntry {
        tenant: tenant_of(ns, &d),
        actor: format!("operator:{by}"),
        role: "operator".into(),
        action: action.audit_action().into(),
        record: format!("dead_letter:{}:{event}", d.consumer),
        purpose: "dead letters".into(),
        decision: Decision::Allowed,
        reason: format!(
            "dead letter {seq} of {} from {} (parked {}, {} attempts): {reason}",
            d.consumer, d.original_subject, d.parked_at, d.attempts
        ),
    };
    record_first(settings, target, entry).await?;
    let done = match action {
        Action::Replay => dlq::replay(transport, ns, seq).await?,
        Action::Discard => dlq::discard(transport, ns, seq).await?,
    };
    tracing::info!(
        seq,
        consumer = %done.consumer,
        subject = %done.original_subject,
        event = %event,
        operator = %by,
        action = action.audit_action(),
        "dead letter settled by an operator"
    );
    Ok(done)
}

/// Writes `entry` to the audit trail of `target` before an operator's command is carried out
/// (`earlyhelp dlq`, `earlyhelp webhook`).
///
/// # Errors
/// The trail is not migrated or cannot be written: then nothing may be done.
pub(crate) async fn record_first(
    settings: &Settings,
    target: Target,
    entry: AuditEntry,
) -> anyhow::Result<()> {
    let loc = eh_store::Location::for_service(settings, target.name())?;
    let db = eh_store::connect(&loc)
        .await
        .with_context(|| format!("{target} database (its audit trail)"))?;
    let pending = eh_store::pending(&db, eh_auth::audit::MIGRATIONS).await?;
    anyhow::ensure!(
        pending.is_empty(),
        "the audit trail of {target} is not migrated ({pending:?}): run `earlyhelp migrate --target {target}` first"
    );
    let key = eh_auth::AuditKey::from_settings(settings).map_err(anyhow::Error::msg)?;
    Auditor::with_key(db.clone(), key)
        .record(entry)
        .await
        .with_context(|| format!("the audit trail of {target} cannot be written; nothing done"))?;
    db.close().await.ok();
    Ok(())
}
