//! The audit trail: who touched which record, under which role and purpose, allowed or denied.
//! Append-only and tamper-evident: one keyed hash chain per council. Each entry carries the hash
//! of its council's previous entry (`prev_hash`) and its own `hash` = HMAC-SHA256(key, previous
//! hash ‖ the entry's fields), the key being the platform's `audit.hmac_key` (a Secret, never in
//! the database). Someone who can write to the database but has not the key cannot rewrite an
//! entry, or remove one, and recompute the chain consistently: [`Auditor::verify_report`] (and
//! `earlyhelp audit verify`) finds the first entry that does not follow.
//!
//! Entries written before the key (chain `database`, one chain for the whole database, and chain
//! `council`, per council, both plain SHA-256) are kept as they are and verified as they were
//! written, reported apart as *unkeyed*: their chain shows accidental damage, not a rewrite by
//! someone with database access. A council's first keyed entry chains to its last unkeyed one, so
//! a rewrite of the unkeyed tail shows at the first keyed entry; an unkeyed entry after a keyed one
//! is a break.
//!
//! Every audited call waits until its entry is committed, but calls do not take turns at the
//! database: the entries of one council that arrive while its previous ones are being written go
//! in together (group commit), by the council's one writer task. Councils have separate chains,
//! writers and head rows (`eh_audit_head`), so they never wait on each other. A writer remembers
//! its council's head, so a batch is one statement on PostgreSQL: the head row is moved from the
//! hash the writer knows to the batch's last and the batch inserted, or nothing is written when
//! another replica moved the head first (the writer then reads the head and links again).
use eh_store::{Migration, Rows, stmt, tuples};
use hmac::{Hmac, Mac};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
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
    // Each council's chain head: the hash of its last entry. Appends move it (one council's
    // appends take turns on its row; other councils' rows are not touched), and `verify` checks
    // it names the last entry (a removed tail shows). Entries from now on are keyed.
    Migration {
        owner: "auth",
        version: 4,
        name: "audit chain heads",
        sql: "CREATE TABLE eh_audit_head (
            tenant TEXT PRIMARY KEY,
            hash TEXT NOT NULL
          );
          INSERT INTO eh_audit_head (tenant, hash)
            SELECT a.tenant, a.hash FROM eh_audit a
            WHERE a.seq = (SELECT MAX(b.seq) FROM eh_audit b WHERE b.tenant = a.tenant)",
    },
];

/// The `chain` of entries keyed with the platform's audit key, per council.
const KEYED_CHAIN: &str = "keyed";
/// The `chain` of unkeyed (SHA-256) entries chained per council, written before the key.
const COUNCIL_CHAIN: &str = "council";
/// The `chain` of entries written before per-council chains: one chain in `seq` order.
const DATABASE_CHAIN: &str = "database";
/// The first entry's `prev_hash`.
const GENESIS: &str = "genesis";
/// Most entries one statement writes.
const MAX_BATCH: usize = 1024;
/// Entries `verify` reads at a time.
const VERIFY_PAGE: i64 = 10_000;
/// How often a batch is linked again after other replicas moved the council's head first.
const MAX_ATTEMPTS: usize = 16;
/// A council's writer task ends after this long without entries (a new one starts on demand).
const WRITER_IDLE: Duration = Duration::from_secs(30);
/// The shortest key accepted (bytes).
pub const MIN_KEY_LEN: usize = 32;
/// In embedded mode without `audit.hmac_key`: the file under `data_dir` holding a generated key.
pub const KEY_FILE: &str = "audit-hmac.key";

/// The key of the audit chains (HMAC-SHA256). Never printed.
#[derive(Clone)]
pub struct AuditKey(Arc<Hmac<Sha256>>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(********)")
    }
}

impl AuditKey {
    /// A key of `bytes`; at least [`MIN_KEY_LEN`] of them.
    ///
    /// # Errors
    /// A shorter key.
    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(format!("must be at least {MIN_KEY_LEN} bytes"));
        }
        Hmac::<Sha256>::new_from_slice(bytes)
            .map(|m| Self(Arc::new(m)))
            .map_err(|e| e.to_string())
    }

    /// The key of `settings`: `audit.hmac_key`; without it, in embedded mode, the key generated
    /// once and kept in `data_dir` ([`KEY_FILE`]). Distributed mode has no default: a chain keyed
    /// with a key anyone could read from a pod's disk would prove nothing.
    ///
    /// # Errors
    /// Distributed mode without `audit.hmac_key`; a key too short; the key file unreadable.
    pub fn from_settings(settings: &eh_platform::Settings) -> Result<Self, String> {
        use secrecy::ExposeSecret;
        if let Some(k) = &settings.audit.hmac_key
            && !k.expose_secret().is_empty()
        {
            return Self::new(k.expose_secret().as_bytes())
                .map_err(|e| format!("audit.hmac_key: {e}"));
        }
        match settings.mode {
            eh_platform::Mode::Distributed => Err(
                "audit.hmac_key: required in distributed mode (from a Secret): it keys the audit \
                 trail so that a rewrite by someone with database access is detected"
                    .into(),
            ),
            eh_platform::Mode::Embedded => Self::load_or_create(&settings.data_dir),
        }
    }

    /// The key kept in `dir` ([`KEY_FILE`], hex), generated and written (owner-only) at first.
    ///
    /// # Errors
    /// The file cannot be read, written or is not a key.
    pub fn load_or_create(dir: &std::path::Path) -> Result<Self, String> {
        let path = dir.join(KEY_FILE);
        let shown = path.display();
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{shown}: {e}"))?;
            let bytes = hex::decode(text.trim()).map_err(|e| format!("{shown}: {e}"))?;
            return Self::new(&bytes).map_err(|e| format!("{shown}: {e}"));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let bytes: [u8; 32] = rand::random();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(|e| format!("{shown}: {e}"))?;
        std::io::Write::write_all(&mut file, hex::encode(bytes).as_bytes())
            .map_err(|e| format!("{shown}: {e}"))?;
        Self::new(&bytes)
    }
}

/// The key [`Auditor::new`] keys entries with: the one the process installed ([`install_key`]).
static INSTALLED: RwLock<Option<AuditKey>> = RwLock::new(None);

/// Makes `key` the one [`Auditor::new`] uses from now on (the binary installs the key of its
/// settings before any service starts).
pub fn install_key(key: AuditKey) {
    *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
}

/// The installed key; in a process that installed none (a service's own tests), a random key of
/// the process, which verifies only what the process itself wrote.
fn process_key() -> AuditKey {
    if let Some(k) = INSTALLED.read().unwrap_or_else(|e| e.into_inner()).clone() {
        return k;
    }
    static RANDOM: OnceLock<AuditKey> = OnceLock::new();
    RANDOM
        .get_or_init(|| {
            tracing::warn!(
                "no audit key installed: keying this process's audit entries with a random key"
            );
            let bytes: [u8; 32] = rand::random();
            match AuditKey::new(&bytes) {
                Ok(k) => k,
                // 32 bytes is a valid HMAC key.
                Err(_) => unreachable!("32 random bytes are a key"),
            }
        })
        .clone()
}

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
    /// Connections held to one council each (its writer appends through them), and the system
    /// scope of `verify`, which walks every council's chain.
    readers: eh_store::TenantReaders,
    key: AuditKey,
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

/// The hashed fields of an entry after `prev`, each length-prefixed (canonical, unambiguous).
fn canonical(prev: &str, at: &str, e: &AuditEntry, mut update: impl FnMut(&[u8])) {
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
        update(&(part.len() as u64).to_be_bytes());
        update(part.as_bytes());
    }
}

/// The unkeyed hash of the older chains (SHA-256).
fn chain(prev: &str, at: &str, e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    canonical(prev, at, e, |b| h.update(b));
    hex::encode(h.finalize())
}

/// The keyed hash: HMAC-SHA256(key, prev ‖ fields).
fn keyed(key: &AuditKey, prev: &str, at: &str, e: &AuditEntry) -> String {
    let mut m = (*key.0).clone();
    canonical(prev, at, e, |b| m.update(b));
    hex::encode(m.finalize().into_bytes())
}

const AUDIT_COLUMNS: &str =
    "at, tenant, actor, role, action, record, purpose, decision, reason, prev_hash, hash, chain";

/// The council's head, creating its row (at genesis) for a council with none.
async fn read_head(db: &DatabaseConnection, tenant: &str) -> Result<String, DbErr> {
    let b = db.get_database_backend();
    let row = db
        .query_one_raw(stmt(
            b,
            "INSERT INTO eh_audit_head (tenant, hash) VALUES ($1, $2)
             ON CONFLICT (tenant) DO UPDATE SET tenant = excluded.tenant RETURNING hash",
            [tenant.into(), GENESIS.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("audit head: no row returned".into()))?;
    row.try_get_by_index(0)
}

/// Writes `values` (`n` rows linked from `prev` to `last`) if the council's head is still `prev`,
/// moving it to `last`; false when it is not (nothing written).
async fn write_linked(
    db: &DatabaseConnection,
    tenant: &str,
    prev: &str,
    last: &str,
    values: Vec<sea_orm::Value>,
    n: usize,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    if b == DbBackend::Postgres {
        // One statement, so one round trip: the head row's update waits for another writer of
        // the council (and then sees its head, so writes nothing); the rows are inserted only
        // when it moved, after it did (their `seq` after the previous writer's).
        let sql = format!(
            "WITH h AS (UPDATE eh_audit_head SET hash = $1 WHERE tenant = $2 AND hash = $3 RETURNING 1)
             INSERT INTO eh_audit ({AUDIT_COLUMNS})
             SELECT * FROM (VALUES {}) AS v WHERE EXISTS (SELECT 1 FROM h)",
            tuples(4, n, 12)
        );
        let params = [last.into(), tenant.into(), prev.into()]
            .into_iter()
            .chain(values);
        let written = db.execute_raw(stmt(b, &sql, params)).await?.rows_affected();
        return Ok(written == n as u64);
    }
    // SQLite: one writer per database anyway; a transaction of the process's own connection.
    let txn = eh_store::begin(db).await?;
    let moved = txn
        .execute_raw(stmt(
            b,
            "UPDATE eh_audit_head SET hash = $1 WHERE tenant = $2 AND hash = $3",
            [last.into(), tenant.into(), prev.into()],
        ))
        .await?
        .rows_affected();
    if moved != 1 {
        #[allow(clippy::disallowed_methods)] // nothing was written
        txn.rollback().await?;
        return Ok(false);
    }
    let mut rows = Rows::new(
        "INSERT INTO eh_audit (at, tenant, actor, role, action, record, purpose, decision, reason, prev_hash, hash, chain)",
        12,
    );
    for row in values.chunks(12) {
        rows.push(row.iter().cloned());
    }
    rows.write(&txn).await?;
    eh_store::commit(txn).await?;
    Ok(true)
}

/// Appends `batch` (entries of `tenant`, in order) to the council's chain; `head` is the
/// council's last hash as this writer knows it (read when unknown or stale).
async fn append(
    db: &DatabaseConnection,
    key: &AuditKey,
    tenant: &str,
    head: &mut Option<String>,
    batch: &[Pending],
) -> Result<(), DbErr> {
    for _ in 0..MAX_ATTEMPTS {
        let prev = match head.take() {
            Some(h) => h,
            None => read_head(db, tenant).await?,
        };
        let mut link = prev.clone();
        let mut values = Vec::with_capacity(batch.len() * 12);
        for p in batch {
            let e = &p.entry;
            let hash = keyed(key, &link, &p.at, e);
            values.extend([
                p.at.clone().into(),
                e.tenant.clone().into(),
                e.actor.clone().into(),
                e.role.clone().into(),
                e.action.clone().into(),
                e.record.clone().into(),
                e.purpose.clone().into(),
                e.decision.as_str().into(),
                e.reason.clone().into(),
                link.into(),
                hash.clone().into(),
                KEYED_CHAIN.into(),
            ]);
            link = hash;
        }
        if write_linked(db, tenant, &prev, &link, values, batch.len()).await? {
            *head = Some(link);
            return Ok(());
        }
        // Another replica moved the council's head: read it and link again.
    }
    Err(DbErr::Custom(format!(
        "audit: the chain head of {tenant} kept moving ({MAX_ATTEMPTS} attempts)"
    )))
}

/// One council's writer: takes what has queued up (at most [`MAX_BATCH`]), writes it, tells each
/// caller, and ends when idle.
async fn run_writer(
    readers: eh_store::TenantReaders,
    key: AuditKey,
    tenant: String,
    generation: u64,
    mut queue: mpsc::UnboundedReceiver<Pending>,
    table: Weak<WriterTable>,
) {
    let mut batch = Vec::new();
    let mut head = None;
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
        // The council's own connections: its rows are all this writer can see or write.
        // A decision naming no council (an empty or wildcard tenant asked for, and refused) is
        // still recorded: by a named system-scope worker.
        let db = if tenant.trim().is_empty() || tenant.contains(eh_store::SYSTEM_SCOPE) {
            readers.system(eh_store::SystemWorker::AuditNoCouncil).await
        } else {
            readers.of(&tenant).await
        };
        let result = match db {
            Ok(db) => append(&db, &key, &tenant, &mut head, &batch).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            // What was written is unknown (a lost connection after the commit): read the head.
            head = None;
            tracing::error!(error = %e, entries = batch.len(), "audit write failed");
        }
        for p in batch.drain(..) {
            let _ = p.written.send(result.clone());
        }
    }
}

/// One council's chain as [`Auditor::verify_report`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub tenant: String,
    /// Entries keyed with the audit key.
    pub keyed: u64,
    /// Entries written before the key (plain SHA-256 chains): chained, but a rewrite of them by
    /// someone with database access would not show.
    pub unkeyed: u64,
    /// The hash of the council's last entry (`genesis` for none).
    pub head: String,
}

/// Where a chain first does not follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The entry's `seq` (for a head that does not name the last entry: that last entry's, or 0).
    pub seq: i64,
    pub tenant: String,
    /// What differs.
    pub what: String,
}

/// What [`Auditor::verify_report`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Each council's chain, by tenant.
    pub chains: Vec<ChainReport>,
    /// The first break, if any (by `seq`; a head after the entries).
    pub first_break: Option<Break>,
}

/// A council's chain as the walk goes.
#[derive(Default)]
struct Walk {
    last: Option<String>,
    last_seq: i64,
    keyed: u64,
    unkeyed: u64,
}

impl Auditor {
    /// An auditor keyed with the process's installed key ([`install_key`]).
    pub fn new(db: DatabaseConnection) -> Self {
        Self::with_key(db, process_key())
    }

    /// An auditor keyed with `key`.
    pub fn with_key(db: DatabaseConnection, key: AuditKey) -> Self {
        Self {
            readers: eh_store::TenantReaders::new(db.clone()),
            db,
            key,
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
            self.readers.clone(),
            self.key.clone(),
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
            .readers
            .of(tenant)
            .await?
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

    /// Recomputes every chain; the sequence number of the first broken entry, if any (see
    /// [`Auditor::verify_report`]).
    pub async fn verify(&self) -> Result<Option<i64>, DbErr> {
        Ok(self.verify_report(None).await?.first_break.map(|b| b.seq))
    }

    /// Recomputes each council's chain (of `tenant` only, when given) with the key. A council's
    /// entry must name the hash of that council's previous entry (of any kind) as its
    /// `prev_hash`, the first one `genesis`; an entry of the older database-wide chain, the hash
    /// of the entry before it in the database; every entry's hash must match its content (keyed:
    /// under the key); no unkeyed entry may follow a keyed one of its council; and the council's
    /// head row must name its last entry (a removed tail).
    pub async fn verify_report(&self, tenant: Option<&str>) -> Result<VerifyReport, DbErr> {
        self.verify_in_pages(tenant, VERIFY_PAGE).await
    }

    /// [`Auditor::verify_report`], reading `page` entries at a time.
    async fn verify_in_pages(
        &self,
        tenant: Option<&str>,
        page_size: i64,
    ) -> Result<VerifyReport, DbErr> {
        let b = self.db.get_database_backend();
        // Every council's chain, and the older database-wide one: a named system-scope worker.
        let db = self
            .readers
            .system(eh_store::SystemWorker::AuditVerify)
            .await?;
        let mut last = GENESIS.to_string();
        let mut walks: BTreeMap<String, Walk> = BTreeMap::new();
        let mut breaks: Vec<Break> = Vec::new();
        // Read in pages by `seq`, so a long trail is never all in memory.
        let mut after = i64::MIN;
        loop {
            let rows = db
            .query_all_raw(stmt(
                b,
                "SELECT seq, at, tenant, actor, role, action, record, purpose, decision, reason, prev_hash, hash, chain
                 FROM eh_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                [after.into(), page_size.into()],
            ))
            .await?;
            let page = rows.len();
            for r in rows {
                let seq: i64 = r.try_get_by_index(0)?;
                let at: String = r.try_get_by_index(1)?;
                let decision: String = r.try_get_by_index(8)?;
                let stored_prev: String = r.try_get_by_index(10)?;
                let stored: String = r.try_get_by_index(11)?;
                let kind: String = r.try_get_by_index(12)?;
                let e = AuditEntry {
                    tenant: r.try_get_by_index(2)?,
                    actor: r.try_get_by_index(3)?,
                    role: r.try_get_by_index(4)?,
                    action: r.try_get_by_index(5)?,
                    record: r.try_get_by_index(6)?,
                    purpose: r.try_get_by_index(7)?,
                    decision: match decision.as_str() {
                        "allowed" => Decision::Allowed,
                        _ => Decision::Denied,
                    },
                    reason: r.try_get_by_index(9)?,
                };
                let walk = walks.entry(e.tenant.clone()).or_default();
                let council_prev = walk.last.clone().unwrap_or_else(|| GENESIS.into());
                let mut broken = |what: String| {
                    breaks.push(Break {
                        seq,
                        tenant: e.tenant.clone(),
                        what,
                    })
                };
                let (prev, expected) = match kind.as_str() {
                    KEYED_CHAIN => {
                        walk.keyed += 1;
                        let h = keyed(&self.key, &council_prev, &at, &e);
                        (council_prev, h)
                    }
                    COUNCIL_CHAIN | DATABASE_CHAIN => {
                        walk.unkeyed += 1;
                        if walk.keyed > 0 {
                            broken(format!(
                                "an unkeyed ({kind}) entry after the council's keyed entries: written \
                             without the key (by someone with database access, or by a replica of \
                             the previous version still running after the migration)"
                            ));
                        }
                        let prev = if kind == COUNCIL_CHAIN {
                            council_prev
                        } else {
                            last.clone()
                        };
                        let h = chain(&prev, &at, &e);
                        (prev, h)
                    }
                    other => {
                        broken(format!("unknown chain {other:?}"));
                        (council_prev, String::new())
                    }
                };
                if !matches!(decision.as_str(), "allowed" | "denied") {
                    broken(format!(
                        "decision {decision:?} is neither allowed nor denied"
                    ));
                }
                if stored_prev != prev {
                    broken(
                        "prev_hash does not name the council's previous entry: an entry before it \
                     was removed, or this one was moved or inserted"
                            .into(),
                    );
                }
                if expected != stored {
                    broken(if kind == KEYED_CHAIN {
                        "hash does not match the entry under the audit key: the entry was altered, \
                     or written without the key"
                            .into()
                    } else {
                        "hash does not match the entry: the entry was altered".into()
                    });
                }
                walk.last = Some(stored.clone());
                walk.last_seq = seq;
                last = stored;
                after = seq;
            }
            if (page as i64) < page_size {
                break;
            }
        }
        let heads = db
            .query_all_raw(stmt(b, "SELECT tenant, hash FROM eh_audit_head", []))
            .await?;
        let mut head_breaks = Vec::new();
        let mut headed = std::collections::HashSet::new();
        for h in heads {
            let t: String = h.try_get_by_index(0)?;
            let hash: String = h.try_get_by_index(1)?;
            let walk = walks.entry(t.clone()).or_default();
            if hash != walk.last.as_deref().unwrap_or(GENESIS) {
                head_breaks.push(Break {
                    seq: walk.last_seq,
                    tenant: t.clone(),
                    what: "the council's head names another hash than its last entry's: \
                           entries at the end of the chain were removed, or the head was altered"
                        .into(),
                });
            }
            headed.insert(t);
        }
        for (t, walk) in &walks {
            if walk.last.is_some() && !headed.contains(t) {
                head_breaks.push(Break {
                    seq: walk.last_seq,
                    tenant: t.clone(),
                    what: "the council has entries but no head row: the head was removed".into(),
                });
            }
        }
        let wanted = |t: &str| tenant.is_none_or(|w| w == t);
        let first_break = breaks
            .into_iter()
            .chain(head_breaks)
            .find(|b| wanted(&b.tenant));
        let chains = walks
            .into_iter()
            .filter(|(t, _)| wanted(t))
            .map(|(tenant, w)| ChainReport {
                tenant,
                keyed: w.keyed,
                unkeyed: w.unkeyed,
                head: w.last.unwrap_or_else(|| GENESIS.into()),
            })
            .collect();
        Ok(VerifyReport {
            chains,
            first_break,
        })
    }
}

// --- Checkpoints: each council's head, signed, kept outside the database --------------------

/// What a checkpoint's signature is keyed with: a key derived from the audit key, so a
/// checkpoint's signature is never an entry's hash.
const CHECKPOINT_KEY_LABEL: &[u8] = b"earlyhelp audit checkpoint key v1";

impl AuditKey {
    /// The keyed hash of `entry` written at `at` after the entry hashed `prev`: what an entry's
    /// `hash` is (for tools and tests that show what a holder of the key could write).
    pub fn hash_entry(&self, prev: &str, at: &str, entry: &AuditEntry) -> String {
        keyed(self, prev, at, entry)
    }

    fn checkpoint_mac(&self) -> Hmac<Sha256> {
        let mut m = (*self.0).clone();
        m.update(CHECKPOINT_KEY_LABEL);
        let derived = m.finalize().into_bytes();
        match Hmac::<Sha256>::new_from_slice(&derived) {
            Ok(m) => m,
            // HMAC takes a key of any length.
            Err(_) => unreachable!("a 32-byte HMAC key"),
        }
    }
}

/// One council's chain head of one service's trail at one moment, signed (HMAC-SHA256 under a
/// key derived from the audit key) and published outside the database (a JetStream stream no
/// service may delete from, or a file in embedded mode). Someone who later rewrites the chain in
/// the database — even consistently, with the key — cannot change what a checkpoint says the
/// entry `seq` hashed to: [`Auditor::check_checkpoints`] finds the first checkpoint the trail no
/// longer matches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub service: String,
    pub tenant: String,
    /// The council's last entry then.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
    /// When it was taken (RFC 3339).
    pub at: String,
    /// Hex HMAC-SHA256 of the fields above under the checkpoint key.
    pub signature: String,
}

impl Checkpoint {
    fn mac(
        key: &AuditKey,
        service: &str,
        tenant: &str,
        seq: i64,
        hash: &str,
        at: &str,
    ) -> Hmac<Sha256> {
        let mut m = key.checkpoint_mac();
        let seq = seq.to_string();
        for part in [service, tenant, seq.as_str(), hash, at] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part.as_bytes());
        }
        m
    }

    /// The checkpoint of `service`'s `tenant` chain at entry `seq` (hash `hash`), signed.
    pub fn new(key: &AuditKey, service: &str, tenant: &str, seq: i64, hash: &str) -> Self {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let signature = hex::encode(
            Self::mac(key, service, tenant, seq, hash, &at)
                .finalize()
                .into_bytes(),
        );
        Self {
            service: service.into(),
            tenant: tenant.into(),
            seq,
            hash: hash.into(),
            at,
            signature,
        }
    }

    /// Whether the signature is the key's for these fields (compared in constant time).
    pub fn signed_with(&self, key: &AuditKey) -> bool {
        let Ok(sig) = hex::decode(&self.signature) else {
            return false;
        };
        Self::mac(
            key,
            &self.service,
            &self.tenant,
            self.seq,
            &self.hash,
            &self.at,
        )
        .verify_slice(&sig)
        .is_ok()
    }
}

/// A checkpoint the trail does not match, or one not signed with the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenCheckpoint {
    /// Where it is kept: its stream sequence, or its line in the file.
    pub position: u64,
    pub tenant: String,
    pub seq: i64,
    pub at: String,
    pub what: String,
}

/// What [`Auditor::check_checkpoints`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointReport {
    /// Checkpoints signed with the key and compared with the trail.
    pub checked: u64,
    /// The newest of those the trail matches, per council: (tenant, seq).
    pub latest: BTreeMap<String, i64>,
    /// The first (by position) checkpoint the trail does not match.
    pub first_broken: Option<BrokenCheckpoint>,
    /// Checkpoints whose signature does not verify (forged, or written with another key): the
    /// first of them, and how many.
    pub first_unsigned: Option<BrokenCheckpoint>,
    pub unsigned: u64,
}

impl Auditor {
    /// Each council's head: (tenant, seq, hash) of its last entry.
    pub async fn heads(&self) -> Result<Vec<(String, i64, String)>, DbErr> {
        let b = self.db.get_database_backend();
        let db = self
            .readers
            .system(eh_store::SystemWorker::AuditVerify)
            .await?;
        let rows = db
            .query_all_raw(stmt(
                b,
                "SELECT a.tenant, a.seq, a.hash FROM eh_audit a
                 WHERE a.seq = (SELECT MAX(b.seq) FROM eh_audit b WHERE b.tenant = a.tenant)
                 ORDER BY a.tenant",
                [],
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    r.try_get_by_index(0)?,
                    r.try_get_by_index(1)?,
                    r.try_get_by_index(2)?,
                ))
            })
            .collect()
    }

    /// Compares the trail with `checkpoints` (position, checkpoint) of this service, in position
    /// order (of `tenant` only, when given): each one signed with the key must name an entry of
    /// its council that is still there with the hash it had.
    pub async fn check_checkpoints(
        &self,
        checkpoints: &[(u64, Checkpoint)],
        tenant: Option<&str>,
    ) -> Result<CheckpointReport, DbErr> {
        let b = self.db.get_database_backend();
        let db = self
            .readers
            .system(eh_store::SystemWorker::AuditVerify)
            .await?;
        let mut report = CheckpointReport::default();
        let mut known: HashMap<(String, i64), Option<String>> = HashMap::new();
        for (position, c) in checkpoints {
            if tenant.is_some_and(|t| t != c.tenant) {
                continue;
            }
            let broken = |what: &str| BrokenCheckpoint {
                position: *position,
                tenant: c.tenant.clone(),
                seq: c.seq,
                at: c.at.clone(),
                what: what.to_string(),
            };
            if !c.signed_with(&self.key) {
                report.unsigned += 1;
                if report.first_unsigned.is_none() {
                    report.first_unsigned = Some(broken(
                        "its signature does not verify under the key: not written by the platform \
                         (forged, or signed with another key)",
                    ));
                }
                continue;
            }
            report.checked += 1;
            let k = (c.tenant.clone(), c.seq);
            if !known.contains_key(&k) {
                let row = db
                    .query_one_raw(stmt(
                        b,
                        "SELECT hash FROM eh_audit WHERE tenant = $1 AND seq = $2",
                        [c.tenant.clone().into(), c.seq.into()],
                    ))
                    .await?;
                let hash = match row {
                    Some(r) => Some(r.try_get_by_index::<String>(0)?),
                    None => None,
                };
                known.insert(k.clone(), hash);
            }
            let what = match known.get(&k).cloned().flatten() {
                None => Some(format!(
                    "entry {} of the council, which the checkpoint names, is gone: the chain was \
                     cut or rewritten",
                    c.seq
                )),
                Some(h) if h != c.hash => Some(format!(
                    "entry {} hashes to another value than the checkpoint says: the chain was \
                     rewritten at or before it",
                    c.seq
                )),
                Some(_) => None,
            };
            match what {
                Some(w) => {
                    if report.first_broken.is_none() {
                        report.first_broken = Some(broken(&w));
                    }
                }
                None => {
                    let latest = report.latest.entry(c.tenant.clone()).or_insert(c.seq);
                    *latest = (*latest).max(c.seq);
                }
            }
        }
        Ok(report)
    }

    /// Per council of `tenants`, the entries written before `before` that no checkpoint covers
    /// (after the newest entry a checkpoint matched, `covered`; all of them for a council with
    /// none): how many, and the first.
    pub async fn uncovered(
        &self,
        tenants: &[String],
        covered: &BTreeMap<String, i64>,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Uncovered>, DbErr> {
        let b = self.db.get_database_backend();
        let db = self
            .readers
            .system(eh_store::SystemWorker::AuditVerify)
            .await?;
        // `at` is RFC 3339 in UTC with microseconds: its text orders as its time does.
        let before = before.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut out = Vec::new();
        for tenant in tenants {
            let after = covered.get(tenant).copied().unwrap_or(0);
            let row = db
                .query_one_raw(stmt(
                    b,
                    "SELECT COUNT(*), MIN(seq), MIN(at) FROM eh_audit
                     WHERE tenant = $1 AND seq > $2 AND at < $3",
                    [tenant.clone().into(), after.into(), before.clone().into()],
                ))
                .await?;
            let Some(r) = row else { continue };
            let n: i64 = r.try_get_by_index(0)?;
            if n > 0 {
                out.push(Uncovered {
                    tenant: tenant.clone(),
                    entries: u64::try_from(n).unwrap_or(0),
                    first_seq: r.try_get_by_index(1)?,
                    first_at: r.try_get_by_index(2)?,
                });
            }
        }
        Ok(out)
    }
}

/// A council's entries old enough to have been checkpointed that no checkpoint covers
/// ([`Auditor::uncovered`]): the checkpoints were removed, or none was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered {
    pub tenant: String,
    pub entries: u64,
    pub first_seq: i64,
    pub first_at: String,
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

    fn test_key(byte: u8) -> AuditKey {
        AuditKey::new(&[byte; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    async fn keyed_trail(dir: &std::path::Path) -> anyhow::Result<(DatabaseConnection, Auditor)> {
        let db = eh_store::connect(&eh_testkit::sqlite(dir, "audit.sqlite")).await?;
        eh_store::migrate(&db, "audit", MIGRATIONS).await?;
        let auditor = Auditor::with_key(db.clone(), test_key(7));
        for i in 0..4 {
            auditor.record(entry("worcs", i)).await?;
            auditor.record(entry("staffs", i)).await?;
        }
        Ok((db, auditor))
    }

    /// (seq, at, prev_hash) of the entry `seq`.
    async fn row(db: &DatabaseConnection, seq: i64) -> anyhow::Result<(String, String)> {
        let r = db
            .query_one_raw(stmt(
                db.get_database_backend(),
                "SELECT at, prev_hash FROM eh_audit WHERE seq = $1",
                [seq.into()],
            ))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no entry {seq}"))?;
        Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?))
    }

    #[tokio::test]
    async fn a_keyed_chain_verifies_with_its_key_and_counts_each_council() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (db, auditor) = keyed_trail(dir.path()).await?;
        let report = auditor.verify_report(None).await?;
        assert_eq!(report.first_break, None);
        let counts: Vec<(&str, u64, u64)> = report
            .chains
            .iter()
            .map(|c| (c.tenant.as_str(), c.keyed, c.unkeyed))
            .collect();
        assert_eq!(counts, [("staffs", 4, 0), ("worcs", 4, 0)]);
        // Read a few entries at a time, the same.
        assert_eq!(auditor.verify_in_pages(None, 3).await?, report);
        db.execute_unprepared("UPDATE eh_audit SET record = 'case:x' WHERE seq = 7")
            .await?;
        let paged = auditor.verify_in_pages(None, 3).await?;
        assert_eq!(paged.first_break.map(|b| b.seq), Some(7));
        db.execute_unprepared("UPDATE eh_audit SET record = 'case:3' WHERE seq = 7")
            .await?;
        let only = auditor.verify_report(Some("worcs")).await?;
        assert_eq!(only.chains.len(), 1);
        // The same entries under another key do not verify: the hash is keyed.
        let other = Auditor::with_key(db, test_key(8));
        let b = other.verify_report(None).await?.first_break;
        assert_eq!(b.map(|b| b.seq), Some(1));
        Ok(())
    }

    /// Someone with the database and the audit key itself rewrites worcs's chain consistently:
    /// the chain verifies, but the checkpoints taken before (kept elsewhere) no longer match, the
    /// first of them named; a checkpoint signed with another key is reported, never trusted.
    #[tokio::test]
    async fn checkpoints_find_a_rewrite_made_with_the_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (db, auditor) = keyed_trail(dir.path()).await?;
        let key = test_key(7);
        // worcs's entries are seq 1, 3, 5, 7; staffs's 2, 4, 6, 8.
        assert_eq!(
            auditor
                .heads()
                .await?
                .iter()
                .map(|h| (h.0.as_str(), h.1))
                .collect::<Vec<_>>(),
            [("staffs", 8), ("worcs", 7)]
        );
        let mut kept: Vec<(u64, Checkpoint)> = Vec::new();
        for (tenant, seq, hash) in auditor.heads().await? {
            let n = kept.len() as u64 + 1;
            kept.push((n, Checkpoint::new(&key, "casework", &tenant, seq, &hash)));
        }
        auditor.record(entry("worcs", 4)).await?; // 9
        for (tenant, seq, hash) in auditor.heads().await? {
            let n = kept.len() as u64 + 1;
            kept.push((n, Checkpoint::new(&key, "casework", &tenant, seq, &hash)));
        }
        let fine = auditor.check_checkpoints(&kept, None).await?;
        assert_eq!(
            (fine.checked, fine.first_broken.clone(), fine.unsigned),
            (4, None, 0)
        );
        assert_eq!(fine.latest.get("worcs"), Some(&9));

        // Entry 5 rewritten, 5, 7 and 9 re-chained under the real key, the head moved along.
        let b = db.get_database_backend();
        let mut prev = row(&db, 5).await?.1;
        for (i, seq) in [(2_usize, 5_i64), (3, 7), (4, 9)] {
            let mut e = entry("worcs", i);
            if seq == 5 {
                e.reason = "nothing to see".into();
            }
            let at = row(&db, seq).await?.0;
            let hash = keyed(&key, &prev, &at, &e);
            db.execute_raw(stmt(
                b,
                "UPDATE eh_audit SET reason = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
                [
                    e.reason.into(),
                    prev.clone().into(),
                    hash.clone().into(),
                    seq.into(),
                ],
            ))
            .await?;
            prev = hash;
        }
        db.execute_raw(stmt(
            b,
            "UPDATE eh_audit_head SET hash = $1 WHERE tenant = 'worcs'",
            [prev.into()],
        ))
        .await?;
        assert_eq!(
            auditor.verify_report(None).await?.first_break,
            None,
            "consistent"
        );
        let found = auditor.check_checkpoints(&kept, None).await?;
        let first = found
            .first_broken
            .ok_or_else(|| anyhow::anyhow!("unnoticed"))?;
        // Checkpoint 2 (worcs at entry 7) is the first the trail no longer matches.
        assert_eq!(
            (first.position, first.tenant.as_str(), first.seq),
            (2, "worcs", 7)
        );
        assert!(first.what.contains("rewritten"), "{}", first.what);
        // staffs's checkpoints still hold.
        let staffs = auditor.check_checkpoints(&kept, Some("staffs")).await?;
        assert_eq!((staffs.checked, staffs.first_broken), (2, None));

        // A checkpoint made to fit the rewrite, signed without the key: reported, not trusted.
        let (t, seq, hash) = auditor
            .heads()
            .await?
            .into_iter()
            .find(|h| h.0 == "worcs")
            .unwrap();
        let forged = Checkpoint::new(&test_key(9), "casework", &t, seq, &hash);
        let mut altered = Checkpoint::new(&key, "casework", &t, seq, "0000");
        altered.hash = hash;
        let report = auditor
            .check_checkpoints(&[(10, forged), (11, altered)], None)
            .await?;
        assert_eq!((report.checked, report.unsigned), (0, 2));
        assert_eq!(report.first_unsigned.map(|u| u.position), Some(10));
        Ok(())
    }

    /// What someone with write access to the database but not the key can do: rewrite an entry
    /// and recompute its hash (and every later one) consistently — with any key but the real one,
    /// or unkeyed. Each is found.
    #[tokio::test]
    async fn a_consistent_rewrite_without_the_key_is_found() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (db, auditor) = keyed_trail(dir.path()).await?;
        let b = db.get_database_backend();
        // worcs's entries are seq 1, 3, 5, 7. Rewrite entry 3's reason, re-chain 3, 5 and 7 with
        // a guessed key, and move the head along, as an attacker would.
        for (attacker, kind) in [(Some(test_key(9)), KEYED_CHAIN), (None, COUNCIL_CHAIN)] {
            let mut prev = row(&db, 3).await?.1;
            for (i, seq) in [3_i64, 5, 7].into_iter().enumerate() {
                let mut e = entry("worcs", i + 1);
                if seq == 3 {
                    e.reason = "nothing to see".into();
                }
                let at = row(&db, seq).await?.0;
                let hash = match &attacker {
                    Some(k) => keyed(k, &prev, &at, &e),
                    None => chain(&prev, &at, &e),
                };
                db.execute_raw(stmt(
                    b,
                    "UPDATE eh_audit SET reason = $1, prev_hash = $2, hash = $3, chain = $4 WHERE seq = $5",
                    [e.reason.into(), prev.clone().into(), hash.clone().into(), kind.into(), seq.into()],
                ))
                .await?;
                prev = hash;
            }
            db.execute_raw(stmt(
                b,
                "UPDATE eh_audit_head SET hash = $1 WHERE tenant = 'worcs'",
                [prev.into()],
            ))
            .await?;
            let found = auditor
                .verify_report(None)
                .await?
                .first_break
                .ok_or_else(|| anyhow::anyhow!("the rewrite went unnoticed ({kind})"))?;
            assert_eq!(
                (found.seq, found.tenant.as_str()),
                (3, "worcs"),
                "{found:?}"
            );
            // The other council's chain is its own: still whole.
            assert_eq!(
                auditor.verify_report(Some("staffs")).await?.first_break,
                None
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_removed_entry_is_found_in_the_middle_or_at_the_end() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (db, auditor) = keyed_trail(dir.path()).await?;
        // The last worcs entry (7) removed: its head still names it.
        db.execute_unprepared("DELETE FROM eh_audit WHERE seq = 7")
            .await?;
        let found = auditor.verify_report(None).await?.first_break;
        assert_eq!(
            found.map(|b| (b.seq, b.tenant, b.what.contains("head"))),
            Some((5, "worcs".to_string(), true))
        );
        // One from the middle: the entry after it no longer links.
        db.execute_unprepared("DELETE FROM eh_audit WHERE seq = 4")
            .await?;
        let found = auditor.verify_report(None).await?.first_break;
        assert_eq!(found.map(|b| b.seq), Some(6));
        Ok(())
    }

    #[tokio::test]
    async fn appends_continue_a_chain_another_writer_moved() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (db, first) = keyed_trail(dir.path()).await?;
        // A second replica appends; the first's remembered head is then stale.
        let second = Auditor::with_key(db.clone(), test_key(7));
        second.record(entry("worcs", 10)).await?;
        first.record(entry("worcs", 11)).await?;
        second.record(entry("worcs", 12)).await?;
        assert_eq!(first.verify().await?, None);
        assert_eq!(first.entries("worcs").await?.len(), 7);
        Ok(())
    }

    #[test]
    fn a_key_is_required_in_distributed_mode_and_generated_once_in_embedded_mode()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let load = |env: &[(&str, &str)]| {
            let mut vars: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            vars.push(("EH__DATA_DIR".into(), dir.path().display().to_string()));
            eh_platform::Settings::load(&[], vars)
        };
        let distributed = load(&[
            ("EH__MODE", "distributed"),
            ("EH__DATABASE__URL", "postgres://eh@db/eh"),
        ])?;
        let e = AuditKey::from_settings(&distributed)
            .err()
            .unwrap_or_default();
        assert!(e.contains("audit.hmac_key"), "{e}");
        let short = load(&[("EH__AUDIT__HMAC_KEY", "too short")])?;
        assert!(AuditKey::from_settings(&short).is_err());
        let secret = "an audit key of more than thirty-two bytes";
        let configured = load(&[("EH__AUDIT__HMAC_KEY", secret)])?;
        let k = AuditKey::from_settings(&configured).map_err(anyhow::Error::msg)?;
        assert!(!format!("{k:?}").contains("audit key"), "never printed");
        let printed = configured.to_masked_json().to_string();
        assert!(!printed.contains(secret), "masked: {printed}");
        // Embedded without one: generated, kept, and the same on the next start.
        let embedded = load(&[])?;
        let a = AuditKey::from_settings(&embedded).map_err(anyhow::Error::msg)?;
        let b = AuditKey::from_settings(&embedded).map_err(anyhow::Error::msg)?;
        let e = entry("worcs", 1);
        assert_eq!(keyed(&a, GENESIS, "t", &e), keyed(&b, GENESIS, "t", &e));
        assert!(dir.path().join(KEY_FILE).exists());
        assert_ne!(keyed(&a, GENESIS, "t", &e), keyed(&k, GENESIS, "t", &e));
        Ok(())
    }
}
