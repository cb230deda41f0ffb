//! The audit trail: who touched which record, under which role and purpose, allowed or denied.
//! Append-only and tamper-evident: one hash chain per council — each entry carries the SHA-256
//! of the previous entry of its council and its own content — so an edited or deleted row breaks
//! the chain ([`Auditor::verify`]).
//!
//! Every audited call waits until its entry is committed, but calls do not take turns at the
//! database: the entries of one council that arrive while its previous ones are being written go
//! in together, in one transaction (group commit), by the council's one writer task. Councils
//! have separate chains, writers and locks, so they never wait on each other.
use eh_store::{Migration, Rows, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        owner: "auth",
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
    },
    // Entries written before this one form one chain for the whole database (`chain =
    // 'database'`); from now on each council's entries chain to that council's previous entry.
    Migration {
        owner: "auth",
        version: 3,
        name: "audit chains per council",
        sql: "ALTER TABLE eh_audit ADD COLUMN chain TEXT NOT NULL DEFAULT 'database';
              CREATE INDEX eh_audit_tenant_seq ON eh_audit (tenant, seq)",
    },
];

/// The `chain` of entries chained to their council's previous entry.
const COUNCIL_CHAIN: &str = "council";
/// The `chain` of entries written before per-council chains: one chain in `seq` order.
const DATABASE_CHAIN: &str = "database";
/// The first entry's `prev_hash`.
const GENESIS: &str = "genesis";
/// First half of the PostgreSQL advisory lock a council's chain is written under (across
/// replicas); the second half is the council's `hashtext`.
const CHAIN_LOCK: i32 = 7469387;
/// Most entries one transaction writes.
const MAX_BATCH: usize = 1024;
/// A council's writer task ends after this long without entries (a new one starts on demand).
const WRITER_IDLE: Duration = Duration::from_secs(30);

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

/// An entry waiting for its council's writer, with when it was decided and whom to tell.
struct Pending {
    at: String,
    entry: AuditEntry,
    written: oneshot::Sender<Result<(), DbErr>>,
}

/// Each council's writer task: its generation (so an idle writer removes only itself) and queue.
type Writers = Mutex<HashMap<String, (u64, mpsc::UnboundedSender<Pending>)>>;

/// Writes the trail of one service's database.
#[derive(Debug, Clone)]
pub struct Auditor {
    db: DatabaseConnection,
    writers: Arc<WriterTable>,
}

#[derive(Default)]
struct WriterTable {
    writers: Writers,
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for WriterTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriterTable")
    }
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

/// Appends `batch` (entries of `tenant`, in order) to the council's chain in one transaction.
async fn append(db: &DatabaseConnection, tenant: &str, batch: &[Pending]) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    let txn = eh_store::begin(db).await?;
    if b == DbBackend::Postgres {
        // One writer of a council's chain at a time across replicas; other councils go on.
        txn.execute_raw(stmt(
            b,
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            [CHAIN_LOCK.into(), tenant.into()],
        ))
        .await?;
    }
    let mut prev: String = match txn
        .query_one_raw(stmt(
            b,
            "SELECT hash FROM eh_audit WHERE tenant = $1 ORDER BY seq DESC LIMIT 1",
            [tenant.into()],
        ))
        .await?
    {
        Some(r) => r.try_get_by_index(0)?,
        None => GENESIS.into(),
    };
    let mut rows = Rows::new(
        "INSERT INTO eh_audit (at, tenant, actor, role, action, record, purpose, decision, reason, prev_hash, hash, chain)",
        12,
    );
    for p in batch {
        let e = &p.entry;
        let hash = chain(&prev, &p.at, e);
        rows.push([
            p.at.clone().into(),
            e.tenant.clone().into(),
            e.actor.clone().into(),
            e.role.clone().into(),
            e.action.clone().into(),
            e.record.clone().into(),
            e.purpose.clone().into(),
            e.decision.as_str().into(),
            e.reason.clone().into(),
            prev.into(),
            hash.clone().into(),
            COUNCIL_CHAIN.into(),
        ]);
        prev = hash;
    }
    rows.write(&txn).await?;
    eh_store::commit(txn).await
}

/// One council's writer: takes what has queued up (at most [`MAX_BATCH`]), writes it in one
/// transaction, tells each caller, and ends when idle.
async fn run_writer(
    db: DatabaseConnection,
    tenant: String,
    generation: u64,
    mut queue: mpsc::UnboundedReceiver<Pending>,
    table: Weak<WriterTable>,
) {
    let mut batch = Vec::new();
    loop {
        match tokio::time::timeout(WRITER_IDLE, queue.recv()).await {
            Ok(Some(p)) => batch.push(p),
            Ok(None) => return,
            Err(_) => {
                let Some(table) = table.upgrade() else { return };
                let mut writers = table.writers.lock().unwrap_or_else(|e| e.into_inner());
                // Entries are queued under this lock, so once removed nothing more arrives.
                if queue.is_empty() {
                    if writers.get(&tenant).is_some_and(|(g, _)| *g == generation) {
                        writers.remove(&tenant);
                    }
                    return;
                }
                continue;
            }
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let result = append(&db, &tenant, &batch).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, entries = batch.len(), "audit write failed");
        }
        for p in batch.drain(..) {
            let _ = p.written.send(result.clone());
        }
    }
}

impl Auditor {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            writers: Arc::new(WriterTable::default()),
        }
    }

    /// Appends `entry` to its council's chain; returns once it is committed.
    pub async fn record(&self, entry: AuditEntry) -> Result<(), DbErr> {
        let (written, committed) = oneshot::channel();
        self.enqueue(Pending {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            entry,
            written,
        });
        committed
            .await
            .unwrap_or_else(|_| Err(DbErr::Custom("the audit writer stopped".into())))
    }

    /// Queues `pending` for its council's writer, starting one when there is none.
    fn enqueue(&self, mut pending: Pending) {
        let table = &self.writers;
        let mut writers = table.writers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, queue)) = writers.get(&pending.entry.tenant) {
            match queue.send(pending) {
                Ok(()) => return,
                // Its writer has gone (its runtime stopped): start another.
                Err(mpsc::error::SendError(p)) => pending = p,
            }
        }
        let generation = table
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tenant = pending.entry.tenant.clone();
        let (queue, queued) = mpsc::unbounded_channel();
        // Cannot fail: the receiver is in hand.
        let _ = queue.send(pending);
        writers.insert(tenant.clone(), (generation, queue));
        tokio::spawn(run_writer(
            self.db.clone(),
            tenant,
            generation,
            queued,
            Arc::downgrade(table),
        ));
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

    /// Recomputes every chain; the sequence number of the first broken entry, if any. A council's
    /// entry must name the hash of that council's previous entry (of either kind) as its
    /// `prev_hash`, the first one `genesis`; an entry of the older database-wide chain, the hash of
    /// the entry before it; and every entry's hash must match its content.
    pub async fn verify(&self) -> Result<Option<i64>, DbErr> {
        let b = self.db.get_database_backend();
        let rows = self
            .db
            .query_all_raw(stmt(
                b,
                "SELECT seq, at, tenant, actor, role, action, record, purpose, decision, reason, prev_hash, hash, chain
                 FROM eh_audit ORDER BY seq",
                [],
            ))
            .await?;
        let mut last = GENESIS.to_string();
        let mut last_of: HashMap<String, String> = HashMap::new();
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
                decision: match decision.as_str() {
                    "allowed" => Decision::Allowed,
                    "denied" => Decision::Denied,
                    _ => return Ok(Some(seq)),
                },
                reason: r.try_get_by_index(9)?,
            };
            let stored_prev: String = r.try_get_by_index(10)?;
            let stored: String = r.try_get_by_index(11)?;
            let kind: String = r.try_get_by_index(12)?;
            let prev = match kind.as_str() {
                COUNCIL_CHAIN => last_of
                    .get(&e.tenant)
                    .map(String::as_str)
                    .unwrap_or(GENESIS),
                DATABASE_CHAIN => last.as_str(),
                _ => return Ok(Some(seq)),
            };
            if stored_prev != prev || chain(prev, &at, &e) != stored {
                return Ok(Some(seq));
            }
            last_of.insert(e.tenant, stored.clone());
            last = stored;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tenant: &str, i: usize) -> AuditEntry {
        AuditEntry {
            tenant: tenant.into(),
            actor: format!("person:{i}"),
            role: "practitioner".into(),
            action: "get_case".into(),
            record: format!("case:{i}"),
            purpose: "casework".into(),
            decision: Decision::Allowed,
            reason: "same tenant".into(),
        }
    }

    /// A trail written before per-council chains (one chain for the database) still verifies
    /// after the migration, with council entries after it; and its entries are still checked.
    #[tokio::test]
    async fn entries_of_the_older_database_wide_chain_still_verify() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let db = eh_store::connect(&eh_testkit::sqlite(dir.path(), "audit.sqlite")).await?;
        eh_store::migrate(&db, "audit", &MIGRATIONS[..1]).await?;
        let b = db.get_database_backend();
        let mut prev = GENESIS.to_string();
        for (i, tenant) in ["worcs", "staffs", "worcs"].into_iter().enumerate() {
            let at = format!("2026-01-01T00:00:0{i}.000000Z");
            let e = entry(tenant, i);
            let hash = chain(&prev, &at, &e);
            db.execute_raw(stmt(
                b,
                "INSERT INTO eh_audit (at, tenant, actor, role, action, record, purpose, decision, reason, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                [
                    at.into(),
                    e.tenant.into(),
                    e.actor.into(),
                    e.role.into(),
                    e.action.into(),
                    e.record.into(),
                    e.purpose.into(),
                    e.decision.as_str().into(),
                    e.reason.into(),
                    prev.clone().into(),
                    hash.clone().into(),
                ],
            ))
            .await?;
            prev = hash;
        }
        eh_store::migrate(&db, "audit", MIGRATIONS).await?;
        let auditor = Auditor::new(db.clone());
        auditor.record(entry("worcs", 3)).await?;
        auditor.record(entry("staffs", 4)).await?;
        auditor.record(entry("derby", 5)).await?;
        assert_eq!(auditor.verify().await?, None);
        // The council entries continue their council's last entry of the older chain.
        let row = db
            .query_one_raw(stmt(
                b,
                "SELECT prev_hash, (SELECT hash FROM eh_audit WHERE seq = 3) FROM eh_audit WHERE seq = 4",
                [],
            ))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no entry 4"))?;
        assert_eq!(
            row.try_get_by_index::<String>(0)?,
            row.try_get_by_index::<String>(1)?
        );

        db.execute_unprepared("UPDATE eh_audit SET record = 'case:other' WHERE seq = 2")
            .await?;
        assert_eq!(auditor.verify().await?, Some(2));
        Ok(())
    }
}
