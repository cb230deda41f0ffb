//! The audit trail: who touched which record, under which role and purpose, allowed or denied.
//! Append-only and tamper-evident: each entry carries the SHA-256 of the previous entry's hash and
//! its own content, so an edited or deleted row breaks the chain ([`Auditor::verify`]).
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Mutex;

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 2,
    name: "audit trail",
    sql: "CREATE TABLE eh_audit (
            seq {serial},
            at TEXT NOT NULL,
            tenant TEXT NOT NULL,
            actor TEXT NOT NULL,
            role TEXT NOT NULL,
            action TEXT NOT NULL,
            record TEXT NOT NULL,
            purpose TEXT NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
          )",
}];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
        }
    }
}

/// One access decision.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub tenant: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub record: String,
    pub purpose: String,
    pub decision: Decision,
    pub reason: String,
}

/// Writes the trail of one service's database.
#[derive(Debug, Clone)]
pub struct Auditor {
    db: DatabaseConnection,
    lock: Arc<Mutex<()>>,
}

fn chain(prev: &str, at: &str, e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        at,
        &e.tenant,
        &e.actor,
        &e.role,
        &e.action,
        &e.record,
        &e.purpose,
        e.decision.as_str(),
        &e.reason,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

impl Auditor {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// Appends `entry`.
    pub async fn record(&self, entry: AuditEntry) -> Result<(), sea_orm::DbErr> {
        let _guard = self.lock.lock().await;
        let b = self.db.get_database_backend();
        let txn = eh_store::begin(&self.db).await?;
        if b == DbBackend::Postgres {
            // One writer of the chain at a time across replicas.
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(7469387)")
                .await?;
        }
        let prev: String = match txn
            .query_one_raw(stmt(
                b,
                "SELECT hash FROM eh_audit ORDER BY seq DESC LIMIT 1",
                [],
            ))
            .await?
        {
            Some(r) => r.try_get_by_index(0)?,
            None => "genesis".into(),
        };
        let at = chrono::Utc::now();
        let at_text = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let hash = chain(&prev, &at_text, &entry);
        txn.execute_raw(stmt(
            b,
            "INSERT INTO eh_audit (at, tenant, actor, role, action, record, purpose, decision, reason, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            [
                at_text.into(),
                entry.tenant.into(),
                entry.actor.into(),
                entry.role.into(),
                entry.action.into(),
                entry.record.into(),
                entry.purpose.into(),
                entry.decision.as_str().into(),
                entry.reason.into(),
                prev.into(),
                hash.into(),
            ],
        ))
        .await?;
        eh_store::commit(txn).await
    }

    /// Records one access decision by `p`. When the trail cannot be written the request is
    /// refused (UNAVAILABLE): no access goes unaudited.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
        &self,
        p: &crate::Principal,
        tenant: &str,
        action: &str,
        record: &str,
        purpose: &str,
        allowed: bool,
        reason: String,
    ) -> Result<(), tonic::Status> {
        let entry = AuditEntry {
            tenant: tenant.to_string(),
            actor: p.actor(),
            role: p.role(),
            action: action.to_string(),
            record: record.to_string(),
            purpose: purpose.to_string(),
            decision: if allowed {
                Decision::Allowed
            } else {
                Decision::Denied
            },
            reason,
        };
        self.record(entry).await.map_err(|e| {
            tracing::error!(error = %e, "audit write failed; refusing the request");
            tonic::Status::unavailable("audit trail unavailable")
        })
    }

    /// May `p` act on `tenant`'s data? Audited either way; PERMISSION_DENIED when not.
    pub async fn check_tenant(
        &self,
        p: &crate::Principal,
        tenant: &str,
        action: &str,
        record: &str,
        purpose: &str,
    ) -> Result<(), tonic::Status> {
        let allowed = p.may_access_tenant(tenant);
        let reason = if allowed {
            "same tenant".to_string()
        } else {
            format!("principal of tenant {:?}", p.tenant().unwrap_or_default())
        };
        self.decide(p, tenant, action, record, purpose, allowed, reason)
            .await?;
        if allowed {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied(format!(
                "not permitted for tenant {tenant}"
            )))
        }
    }

    /// Entries for `tenant`, oldest first: (actor, action, record, decision, reason).
    pub async fn entries(
        &self,
        tenant: &str,
    ) -> Result<Vec<(String, String, String, String, String)>, sea_orm::DbErr> {
        let b = self.db.get_database_backend();
        let rows = self
            .db
            .query_all_raw(stmt(
                b,
                "SELECT actor, action, record, decision, reason FROM eh_audit WHERE tenant = $1 ORDER BY seq",
                [tenant.into()],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get_by_index(0)?,
                    r.try_get_by_index(1)?,
                    r.try_get_by_index(2)?,
                    r.try_get_by_index(3)?,
                    r.try_get_by_index(4)?,
                ))
            })
            .collect()
    }

    /// Recomputes the chain; the sequence number of the first broken entry, if any.
    pub async fn verify(&self) -> Result<Option<i64>, sea_orm::DbErr> {
        let b = self.db.get_database_backend();
        let rows = self
            .db
            .query_all_raw(stmt(
                b,
                "SELECT seq, at, tenant, actor, role, action, record, purpose, decision, reason, prev_hash, hash
                 FROM eh_audit ORDER BY seq",
                [],
            ))
            .await?;
        let mut prev = "genesis".to_string();
        for r in rows {
            let seq: i64 = r.try_get_by_index(0)?;
            let at: String = r.try_get_by_index(1)?;
            let decision: String = r.try_get_by_index(8)?;
            let e = AuditEntry {
                tenant: r.try_get_by_index(2)?,
                actor: r.try_get_by_index(3)?,
                role: r.try_get_by_index(4)?,
                action: r.try_get_by_index(5)?,
                record: r.try_get_by_index(6)?,
                purpose: r.try_get_by_index(7)?,
                decision: if decision == "allowed" {
                    Decision::Allowed
                } else {
                    Decision::Denied
                },
                reason: r.try_get_by_index(9)?,
            };
            let stored_prev: String = r.try_get_by_index(10)?;
            let stored: String = r.try_get_by_index(11)?;
            if stored_prev != prev || chain(&prev, &at, &e) != stored {
                return Ok(Some(seq));
            }
            prev = stored;
        }
        Ok(None)
    }
}
