//! `earlyhelp audit verify`: recomputes each council's audit chain of each service with the
//! audit key (`audit.hmac_key`) and reports, per service and council, the entries found (keyed,
//! and unkeyed ones written before the key) or the first entry that does not follow.
use anyhow::Context;
use eh_auth::audit::VerifyReport;
use eh_auth::{AuditKey, Auditor};
use eh_platform::Settings;

use crate::Target;

/// Whether `target` keeps an audit trail (its migrations include the trail's).
pub fn has_trail(target: Target) -> bool {
    let first = &eh_auth::audit::MIGRATIONS[0];
    target
        .migrations()
        .iter()
        .any(|m| m.owner == first.owner && m.version == first.version)
}

/// One service's trail as verified.
#[derive(Debug)]
pub struct ServiceReport {
    pub service: Target,
    pub report: VerifyReport,
}

impl ServiceReport {
    /// Whether every chain of the service follows.
    pub fn ok(&self) -> bool {
        self.report.first_break.is_none()
    }

    /// The report as lines for the operator: one per council, and the break if any.
    pub fn lines(&self) -> Vec<String> {
        let s = self.service;
        let mut out = Vec::new();
        if self.report.chains.is_empty() {
            out.push(format!("{s}: no audit entries"));
        }
        for c in &self.report.chains {
            let broken = self
                .report
                .first_break
                .as_ref()
                .is_some_and(|b| b.tenant == c.tenant);
            out.push(format!(
                "{s} {}: {}, {} keyed entries, {} unkeyed (written before the key){}, head {}",
                c.tenant,
                if broken { "BROKEN" } else { "OK" },
                c.keyed,
                c.unkeyed,
                if c.unkeyed > 0 {
                    " — a rewrite of unkeyed entries is not detected"
                } else {
                    ""
                },
                c.head,
            ));
        }
        if let Some(b) = &self.report.first_break {
            out.push(format!(
                "{s} {}: first break at entry {}: {}",
                b.tenant, b.seq, b.what
            ));
        }
        out
    }
}

/// Verifies the trail of `service` (every service with one when `None`), of `tenant` only when
/// given, with the key of `settings`.
///
/// # Errors
/// No key (distributed mode without `audit.hmac_key`); a service without a trail; a database
/// that cannot be reached or read (not migrated: run `earlyhelp migrate` first).
pub async fn verify(
    settings: &Settings,
    service: Option<&str>,
    tenant: Option<&str>,
) -> anyhow::Result<Vec<ServiceReport>> {
    let key = AuditKey::from_settings(settings).map_err(anyhow::Error::msg)?;
    let targets: Vec<Target> = match service {
        Some(s) => {
            let t = Target::named(s).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(has_trail(t), "{t} keeps no audit trail");
            vec![t]
        }
        None => Target::ALL
            .iter()
            .copied()
            .filter(|t| has_trail(*t))
            .collect(),
    };
    let mut reports = Vec::new();
    for t in targets {
        let loc = eh_store::Location::for_service(settings, t.name())?;
        let db = eh_store::connect(&loc)
            .await
            .with_context(|| format!("{t} database"))?;
        let report = Auditor::with_key(db.clone(), key.clone())
            .verify_report(tenant)
            .await
            .with_context(|| format!("{t}: reading the audit trail (is it migrated?)"))?;
        db.close().await.ok();
        reports.push(ServiceReport { service: t, report });
    }
    Ok(reports)
}

/// The stream of the audit checkpoints in namespace `ns`: `<NS>_AUDIT`.
pub fn checkpoint_stream(ns: &str) -> String {
    let token: String = ns
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{token}_AUDIT")
}

/// The subject of `service`'s audit checkpoints: `<ns>.audit.<service>` (three tokens, so no
/// service's stream, `<ns>.*.<service>.>`, takes it).
pub fn checkpoint_subject(ns: &str, service: &str) -> String {
    format!("{ns}.audit.{service}")
}
