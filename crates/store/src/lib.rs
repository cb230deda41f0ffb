//! Database connections for one service: PostgreSQL (a schema per service) in distributed mode,
//! a SQLite file per service in embedded mode; versioned migrations; portable SQL statements.
mod migrate;
mod readers;

pub use migrate::{
    Migration, TENANT_POLICY, UNKNOWN_OWNER, check as check_migrations, grant, migrate, pending,
};
pub use readers::TenantReaders;
pub use sea_orm;

use eh_platform::{Mode, Settings};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, Statement, TransactionTrait, Value,
};
use secrecy::ExposeSecret;
use std::time::Duration;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("database configuration: {0}")]
    Config(String),
    #[error("migration {owner}/{version} ({name}) failed: {source}")]
    Migration {
        owner: &'static str,
        version: i64,
        name: &'static str,
        source: sea_orm::DbErr,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a service's database is: the URL and, for PostgreSQL, the schema.
#[derive(Debug, Clone)]
pub struct Location {
    pub url: String,
    pub schema: Option<String>,
    pub max_connections: u32,
}

impl Location {
    /// The location of `service`'s database under `settings`, as the services' role
    /// (`database.url`).
    pub fn for_service(settings: &Settings, service: &str) -> Result<Self> {
        Self::as_role(settings, service, false)
    }

    /// The location of `service`'s database as the owner, for migrations: `database.migrate_url`
    /// (with `database.migrate_password`) when set, else as [`Location::for_service`].
    pub fn for_migrations(settings: &Settings, service: &str) -> Result<Self> {
        Self::as_role(settings, service, settings.database.migrate_url.is_some())
    }

    fn as_role(settings: &Settings, service: &str, owner: bool) -> Result<Self> {
        match settings.mode {
            Mode::Embedded => {
                std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
                    Error::Config(format!("data_dir {}: {e}", settings.data_dir.display()))
                })?;
                let path = settings.data_dir.join(format!("{service}.sqlite"));
                Ok(Self {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    schema: None,
                    // One writer at a time: SQLite refuses, rather than waits for, a deferred
                    // transaction that would upgrade to a write while another one writes.
                    max_connections: 1,
                })
            }
            Mode::Distributed => {
                let (base, password) = if owner {
                    (
                        settings.database.migrate_url.clone(),
                        settings.database.migrate_password.as_ref(),
                    )
                } else {
                    (
                        settings.database.url.clone(),
                        settings.database.password.as_ref(),
                    )
                };
                let mut url = base.ok_or_else(|| {
                    Error::Config(
                        if owner {
                            "database.migrate_url is required"
                        } else {
                            "database.url is required"
                        }
                        .into(),
                    )
                })?;
                if let Some(pw) = password {
                    url = with_password(&url, pw.expose_secret())?;
                }
                if let Some(ca) = &settings.database.ca_file {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    url = format!("{url}{sep}sslrootcert={}", ca.display());
                    if !url.contains("sslmode=") {
                        url.push_str("&sslmode=verify-full");
                    }
                }
                Ok(Self {
                    url,
                    schema: Some(service.replace('-', "_")),
                    max_connections: settings.database.max_connections,
                })
            }
        }
    }
}

/// The services' login role that migrations grant the use of the tables to: the user of
/// `database.url` when `database.migrate_url` names another (the role split). `None` when there
/// is no split (embedded mode; or one role for both, which then owns the tables).
pub fn service_role(settings: &Settings) -> Option<String> {
    if settings.mode != Mode::Distributed {
        return None;
    }
    let user = |u: &str| -> Option<String> {
        let rest = u.split_once("://")?.1;
        let (userinfo, _) = rest.rsplit_once('@')?;
        let user = userinfo.split(':').next().unwrap_or(userinfo);
        (!user.is_empty()).then(|| user.to_string())
    };
    let service = user(settings.database.url.as_deref()?)?;
    let owner = user(settings.database.migrate_url.as_deref()?)?;
    (service != owner).then_some(service)
}

fn with_password(url: &str, password: &str) -> Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::Config("database.url: not a URL".into()))?;
    let (userinfo, host) = rest.split_once('@').ok_or_else(|| {
        Error::Config("database.url: a user is needed to use database.password".into())
    })?;
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!("{scheme}://{user}:{encoded}@{host}"))
}

/// The PostgreSQL setting the tenant-isolation policies read (see [`TENANT_POLICY`]): a tenant
/// token sees and writes that tenant's rows only; [`SYSTEM_SCOPE`] sees every tenant's; unset (as
/// every pooled connection starts) sees none.
pub const TENANT_SETTING: &str = "eh.tenant";

/// The value of [`TENANT_SETTING`] that sees every tenant: only ever set for one transaction, by
/// [`begin_system`] for a named [`SystemWorker`] (and by [`migrate`]).
pub const SYSTEM_SCOPE: &str = "*";

/// The transaction-local setting naming the [`SystemWorker`] a system-scope transaction is for
/// (`application_name` says it too, so it shows in `pg_stat_activity`).
pub const WORKER_SETTING: &str = "eh.worker";

/// The few workers that act for every council at once and so may see every council's rows
/// ([`begin_system`]). A closed list: a new one is a change to this enum, reviewed as such
/// (`crates/store/tests/rls.rs` lists them). Everything else — each message's handling, each
/// gRPC call — runs in its council's scope ([`begin_scoped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemWorker {
    /// Applies the migrations (a data migration must see every row).
    Migrate,
    /// Publishes the outbox in order, whichever council a row is of.
    Relay,
    /// Deletes published outbox rows past the replay window and counts the backlog.
    OutboxRetention,
    /// An operator's `republish` of a window of the outbox after a broker loss.
    Republish,
    /// Casework's service-level clocks: finds the timers that ran out (each fires in its
    /// council's scope).
    CaseworkClocks,
    /// Assessment's clocks: plan actions overdue and follow-ups due (each handled in its
    /// council's scope).
    AssessmentClocks,
    /// Notifications' sender: claims the messages due to send (each recorded in its council's
    /// scope).
    Sender,
    /// Notifications' watch over urgent emails unsent for a minute.
    UrgentWatch,
    /// `earlyhelp audit verify`: reads every council's chain.
    AuditVerify,
    /// The gateway's hourly purge of idempotency keys past their time.
    IdempotencyPurge,
    /// Records an access decision that names no council (a request for an empty or wildcard
    /// tenant, refused) in the audit trail.
    AuditNoCouncil,
    /// The console's session store: a session is found by the digest of its cookie before its
    /// council is known, and expired sessions are purged across councils.
    ConsoleSessions,
}

impl SystemWorker {
    /// Every worker, in declaration order.
    pub const ALL: [SystemWorker; 12] = [
        SystemWorker::Migrate,
        SystemWorker::Relay,
        SystemWorker::OutboxRetention,
        SystemWorker::Republish,
        SystemWorker::CaseworkClocks,
        SystemWorker::AssessmentClocks,
        SystemWorker::Sender,
        SystemWorker::UrgentWatch,
        SystemWorker::AuditVerify,
        SystemWorker::IdempotencyPurge,
        SystemWorker::AuditNoCouncil,
        SystemWorker::ConsoleSessions,
    ];

    /// Its name: the metric's `worker` label, `eh.worker` and `application_name`.
    pub fn name(self) -> &'static str {
        match self {
            SystemWorker::Migrate => "migrate",
            SystemWorker::Relay => "relay",
            SystemWorker::OutboxRetention => "outbox_retention",
            SystemWorker::Republish => "republish",
            SystemWorker::CaseworkClocks => "casework_clocks",
            SystemWorker::AssessmentClocks => "assessment_clocks",
            SystemWorker::Sender => "sender",
            SystemWorker::UrgentWatch => "urgent_watch",
            SystemWorker::AuditVerify => "audit_verify",
            SystemWorker::IdempotencyPurge => "idempotency_purge",
            SystemWorker::AuditNoCouncil => "audit_no_council",
            SystemWorker::ConsoleSessions => "console_sessions",
        }
    }
}

/// Opens the pool, creating the PostgreSQL schema when missing. Fails fast when unreachable.
///
/// On PostgreSQL no connection of the pool is in any scope: used as it is, it sees and writes no
/// row of a table under row-level security. Work begins with [`begin_scoped`] (one council) or,
/// for the named cross-council workers alone, [`begin_system`].
pub async fn connect(location: &Location) -> Result<DatabaseConnection> {
    connect_in(location, None).await
}

/// Connections a service's urgent work (the urgent lane: a child at risk of significant harm)
/// takes on PostgreSQL, apart from its pool: urgent work never waits for a connection behind the
/// ordinary backlog's transactions.
pub const URGENT_CONNECTIONS: u32 = 2;

/// A service's database twice over: `ordinary` for everything, `urgent` for the urgent lane's
/// work alone, so that work never queues behind the ordinary backlog for a connection.
///
/// On PostgreSQL `urgent` is a pool of its own ([`URGENT_CONNECTIONS`]). On SQLite (one writer at
/// a time) it is a second connection to the same file, and the two take turns through a
/// [`lane::Gate`]: while urgent work waits or runs, the ordinary connection is not handed out,
/// so urgent work waits for the one ordinary transaction in flight at most — never for the
/// queue of ordinary work behind it — and the two never write at once (no `SQLITE_BUSY`).
#[derive(Clone)]
pub struct Lanes {
    pub ordinary: DatabaseConnection,
    pub urgent: DatabaseConnection,
    /// The turns the two take (SQLite only).
    pub gate: Option<std::sync::Arc<lane::Gate>>,
}

/// Opens both lanes of `location` ([`Lanes`]).
pub async fn connect_lanes(location: &Location) -> Result<Lanes> {
    if location.schema.is_some() {
        let ordinary = connect(location).await?;
        let urgent = connect(&Location {
            max_connections: URGENT_CONNECTIONS,
            ..location.clone()
        })
        .await?;
        return Ok(Lanes {
            ordinary,
            urgent,
            gate: None,
        });
    }
    let gate = std::sync::Arc::new(lane::Gate::default());
    let ordinary = connect_in(location, Some((gate.clone(), lane::Lane::Ordinary))).await?;
    let urgent = connect_in(location, Some((gate.clone(), lane::Lane::Urgent))).await?;
    Ok(Lanes {
        ordinary,
        urgent,
        gate: Some(gate),
    })
}

pub mod lane {
    //! Turns between the two SQLite connections of a service's [`Lanes`](super::Lanes): urgent
    //! first. Each connection is held, by the pool's hooks, from the moment it is handed out
    //! until it is returned: the ordinary one is not handed out while urgent work is waiting or
    //! running; urgent work waits until the ordinary one is back (its transaction committed).
    //! A turn is never waited for longer than [`MAX_WAIT`]: past that (work holding one
    //! connection while it waits for the other — a bug) the connection is handed out anyway
    //! and SQLite's busy timeout decides.
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::sync::Notify;

    /// The longest a connection waits for its turn.
    pub const MAX_WAIT: Duration = Duration::from_secs(2);

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Lane {
        Ordinary,
        Urgent,
    }

    #[derive(Default)]
    struct State {
        /// Urgent connections waiting for their turn or handed out.
        urgent: usize,
        /// The ordinary connection is handed out.
        ordinary_out: bool,
    }

    /// Whose turn it is, shared by the two connections of one SQLite file.
    #[derive(Default)]
    pub struct Gate {
        state: Mutex<State>,
        changed: Notify,
    }

    /// Undoes an urgent registration when the wait for a turn is given up (the acquire
    /// cancelled); disarmed once the connection is handed out.
    struct Registered<'a>(&'a Gate, bool);

    impl Drop for Registered<'_> {
        fn drop(&mut self) {
            if self.1 {
                self.0.leave(Lane::Urgent);
            }
        }
    }

    impl Gate {
        fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Waits for `lane`'s turn and takes it; [`Gate::leave`] gives it back.
        pub async fn enter(&self, lane: Lane) {
            let deadline = tokio::time::Instant::now() + MAX_WAIT;
            let mut registered = None;
            if lane == Lane::Urgent {
                self.lock().urgent += 1;
                registered = Some(Registered(self, true));
            }
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                {
                    let mut s = self.lock();
                    let turn = match lane {
                        Lane::Ordinary => s.urgent == 0,
                        Lane::Urgent => !s.ordinary_out,
                    };
                    if turn || tokio::time::Instant::now() >= deadline {
                        if lane == Lane::Ordinary {
                            s.ordinary_out = true;
                        }
                        if let Some(r) = registered.as_mut() {
                            r.1 = false;
                        }
                        return;
                    }
                }
                let _ = tokio::time::timeout_at(deadline, changed).await;
            }
        }

        /// Urgent connections waiting for their turn or handed out.
        pub fn urgent(&self) -> usize {
            self.lock().urgent
        }

        /// Gives `lane`'s turn back.
        pub fn leave(&self, lane: Lane) {
            {
                let mut s = self.lock();
                match lane {
                    Lane::Ordinary => s.ordinary_out = false,
                    Lane::Urgent => s.urgent = s.urgent.saturating_sub(1),
                }
            }
            self.changed.notify_waiters();
        }
    }
}

async fn connect_in(
    location: &Location,
    gate: Option<(std::sync::Arc<lane::Gate>, lane::Lane)>,
) -> Result<DatabaseConnection> {
    if let Some(schema) = &location.schema {
        // Create the schema on a plain connection, then pin every pooled connection to it.
        let mut opts = ConnectOptions::new(location.url.clone());
        opts.max_connections(1)
            .connect_timeout(Duration::from_secs(5))
            .sqlx_logging(false);
        let admin = Database::connect(opts).await?;
        // Only when missing: the services' role may not create schemas (it owns nothing), and
        // `CREATE SCHEMA IF NOT EXISTS` checks that privilege before it looks.
        let exists = admin
            .query_one_raw(stmt(
                DbBackend::Postgres,
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                [schema.clone().into()],
            ))
            .await?
            .is_some();
        if !exists
            && let Err(e) = admin
                .execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await
        {
            // The services' role may not create it: the migrations (as the owner) will; until
            // then everything is pending (and `/readyz` says so).
            tracing::debug!(schema, error = %e, "schema not created");
        }
        admin.close().await?;
    }
    let mut opts = ConnectOptions::new(location.url.clone());
    opts.max_connections(location.max_connections)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        // Ping a pooled connection before handing it out only when it sat idle a while: a ping
        // on every acquire is a round trip more per transaction. One that died anyway fails its
        // statement, and the message is retried like any other database hiccup.
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .sqlx_logging(false);
    if let Some(schema) = &location.schema {
        opts.set_schema_search_path(format!("\"{schema}\""));
    }
    if let Some((gate, lane)) = gate {
        // Held from hand-out to return (see `lane`); the one connection is kept open, so every
        // hand-out but the first passes `before_acquire` (the first happens before any work).
        let (enter, leave) = (gate.clone(), gate);
        opts.map_sqlx_sqlite_pool_opts(move |o| {
            let leave = leave.clone();
            o.idle_timeout(None)
                .max_lifetime(None)
                .after_release(move |_, _| {
                    let leave = leave.clone();
                    Box::pin(async move {
                        leave.leave(lane);
                        Ok(true)
                    })
                })
        });
        opts.map_sqlx_sqlite_before_acquire(move |_, _| {
            let enter = enter.clone();
            Box::pin(async move {
                enter.enter(lane).await;
                Ok(true)
            })
        });
    }
    let db = Database::connect(opts).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        .await?;
    }
    Ok(db)
}

/// Begins a transaction that, on PostgreSQL, sees and writes `tenant`'s rows only: row-level
/// security (installed by [`migrate`] on every table with a `tenant` column) holds it to that
/// tenant even where a query forgets its `WHERE tenant = …`, and refuses a row written for
/// another. The scope is transaction-local (`set_config(…, true)`), set in the same round trip as
/// the commit mark: it ends with the transaction and the connection returns to the pool unset
/// (seeing nothing). On SQLite (embedded mode, one process, no RLS) it is a plain transaction.
///
/// Refuses an empty tenant and the system scope `*`. For a request, pass the tenant of the
/// authenticated principal, not the one named in the request; for a message, the tenant of its
/// envelope (checked against its subject). Do not use the pool (e.g. the audit trail) while the
/// transaction is open: embedded mode has a single connection.
pub async fn begin_scoped(
    db: &DatabaseConnection,
    tenant: &str,
) -> Result<DatabaseTransaction, DbErr> {
    check_tenant(tenant)?;
    #[allow(clippy::disallowed_methods)] // marked here, in the same round trip as the scope
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config($1, $2, true), set_config($3, $4, true)",
            [
                TENANT_SETTING.into(),
                tenant.into(),
                MARK_SETTING.into(),
                MARK.into(),
            ],
        ))
        .await?;
    } else {
        mark(&txn).await?;
    }
    Ok(txn)
}

fn check_tenant(tenant: &str) -> Result<(), DbErr> {
    if tenant.trim().is_empty() || tenant.contains(SYSTEM_SCOPE) {
        return Err(DbErr::Custom(format!("{tenant:?} is not a tenant")));
    }
    Ok(())
}

/// Narrows a transaction already open (e.g. one begun by [`begin_system`] to find work across
/// councils) to `tenant` for the rest of it: one round trip. A savepoint's scope ends with the
/// savepoint when it is rolled back.
pub async fn narrow(txn: &DatabaseTransaction, tenant: &str) -> Result<(), DbErr> {
    check_tenant(tenant)?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config($1, $2, true)",
            [TENANT_SETTING.into(), tenant.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Begins a transaction in the system scope — every council's rows — for `worker`, one of the
/// few named cross-council workers ([`SystemWorker`]). The worker is named on the transaction
/// (`eh.worker`, and `application_name`, so `pg_stat_activity` shows who holds it), every use is
/// counted (`earlyhelp_system_scope_uses_total{worker}`) and logged at debug level. Prefer
/// [`begin_scoped`] wherever the council is known (e.g. after claiming a row: handle it in a
/// transaction of its council). On SQLite it is a plain transaction, counted the same.
pub async fn begin_system(
    db: &DatabaseConnection,
    worker: SystemWorker,
) -> Result<DatabaseTransaction, DbErr> {
    #[allow(clippy::disallowed_methods)] // marked here, in the same round trip as the scope
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config($1, $2, true), set_config($3, $4, true),
                    set_config($5, $6, true), set_config('application_name', $7, true)",
            [
                TENANT_SETTING.into(),
                SYSTEM_SCOPE.into(),
                WORKER_SETTING.into(),
                worker.name().into(),
                MARK_SETTING.into(),
                MARK.into(),
                format!("earlyhelp:{}", worker.name()).into(),
            ],
        ))
        .await?;
    } else {
        mark(&txn).await?;
    }
    eh_platform::metrics::system_scope_used(worker.name());
    tracing::debug!(worker = worker.name(), "system scope");
    Ok(txn)
}

/// The transaction-local setting [`begin`] marks its transaction with, and [`commit`] looks for.
const MARK_SETTING: &str = "eh.txn";
const MARK: &str = "open";

/// Begins a transaction that [`commit`] can vouch for, in no council's scope: on PostgreSQL it
/// sees and writes no row of a table under row-level security (every table with a `tenant`
/// column). For such work use [`begin_scoped`] (one council) or [`begin_system`] (a named
/// cross-council worker); this is for tables of no council (the migration ledger, the audit
/// trail's checkpoints) and for SQLite-only stores.
///
/// Why: a transaction's `COMMIT` can answer "ok" although nothing was kept. PostgreSQL answers
/// `COMMIT` in an aborted transaction with `ROLLBACK` and no error; and sqlx 0.9 (under sea-orm),
/// when a `SAVEPOINT` fails — the server went away mid-batch — queues the rollback of the
/// *enclosing* level and forgets the transaction, so the batch's later commit is a no-op that
/// returns `Ok`. Each transaction is therefore marked at its start (a transaction-local setting on
/// PostgreSQL, a row of a connection-local temporary table on SQLite), and [`commit`] first checks
/// that the mark is still there: gone or unreadable means the work was rolled back, and the commit
/// fails instead of answering for it.
pub async fn begin(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    #[allow(clippy::disallowed_methods)] // the one place a transaction begins unmarked
    let txn = db.begin().await?;
    mark(&txn).await?;
    Ok(txn)
}

async fn mark(txn: &DatabaseTransaction) -> Result<(), DbErr> {
    match txn.get_database_backend() {
        DbBackend::Postgres => {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT set_config($1, $2, true)",
                [MARK_SETTING.into(), MARK.into()],
            ))
            .await?;
        }
        _ => {
            // Temporary tables are the connection's own; the row goes with a rollback.
            txn.execute_unprepared(
                "CREATE TEMP TABLE IF NOT EXISTS eh_txn_mark (mark TEXT NOT NULL);
                 INSERT INTO eh_txn_mark (mark) VALUES ('open');",
            )
            .await?;
        }
    }
    Ok(())
}

/// Commits a transaction begun by [`begin`] or [`begin_scoped`] — only if it is still that
/// transaction, alive and not aborted; otherwise an error, and nothing may be reported done.
/// A connection lost during the `COMMIT` itself also gives an error, although the commit may
/// have happened: callers retry, and the inbox recognises work already kept.
pub async fn commit(txn: DatabaseTransaction) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    let intact = match backend {
        DbBackend::Postgres => txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT current_setting($1, true) = $2",
                [MARK_SETTING.into(), MARK.into()],
            ))
            .await?
            .map(|r| r.try_get_by_index::<Option<bool>>(0))
            .transpose()?
            .flatten()
            .unwrap_or(false),
        _ => !txn
            .query_all_raw(Statement::from_string(
                backend,
                "DELETE FROM eh_txn_mark RETURNING mark",
            ))
            .await
            .map_err(|_| lost())?
            .is_empty(),
    };
    if !intact {
        return Err(lost());
    }
    #[allow(clippy::disallowed_methods)] // checked above
    txn.commit().await
}

/// Ends a transaction that only read (begun by [`begin_scoped`] for a read's row-level security
/// scope): a plain `ROLLBACK`, without [`commit`]'s check, which costs a round trip and guards
/// against losing writes a read has none of. Never use it after a write: what was written is
/// dropped.
///
/// A rollback, not a commit, because on SQLite the transaction's mark is a row of a
/// connection-local table: committed, it would outlive the read, and a later transaction whose
/// own mark had been lost would still find one and be vouched for by [`commit`].
pub async fn end_read(txn: DatabaseTransaction) -> Result<(), DbErr> {
    txn.rollback().await
}

fn lost() -> DbErr {
    DbErr::Custom(
        "the transaction was rolled back before its commit (its connection failed or was reset)"
            .into(),
    )
}

/// Whether `err` is worth waiting out rather than counting against the work: the database is
/// unreachable or restarting, the connection was lost or reset, the pool timed out, or the
/// server asked to try again (serialization failure, deadlock, too many connections).
pub fn is_transient(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    let runtime = match err {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(e) | DbErr::Exec(e) | DbErr::Query(e) => e,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(e) => sqlx_transient(e),
        RuntimeErr::Internal(_) => false,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

fn sqlx_transient(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match e {
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Tls(_) => true,
        E::Protocol(_) => true,
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 08: connection exception; 57P01-3: admin/crash shutdown, cannot connect now;
            // 53300: too many connections; 40001/40P01: serialization failure, deadlock;
            // SQLite's busy and locked.
            code.starts_with("08")
                || matches!(
                    &*code,
                    "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
                )
                || matches!(&*code, "5" | "6" | "261" | "262" | "517")
        }
        _ => false,
    }
}

/// A statement written with PostgreSQL placeholders (`$1`, `$2`…), made to run on either backend
/// (SQLite takes the numbered form `?1`).
pub fn stmt(backend: DbBackend, sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    let sql = match backend {
        DbBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_string(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Backend-specific spellings used in DDL: `{ts}` timestamp, `{bytes}` binary, `{bigint}`,
/// `{serial}` auto-increment key; for data migrations `{strpos}` (the position of a substring:
/// `{strpos}(haystack, needle)`, 0 when absent) and `{as_json}` after a text column holding JSON
/// (`headers{as_json} ->> 'key'`).
pub fn ddl(backend: DbBackend, sql: &str) -> String {
    let (ts, bytes, serial, strpos, as_json) = match backend {
        DbBackend::Postgres => (
            "TIMESTAMPTZ",
            "BYTEA",
            "BIGSERIAL PRIMARY KEY",
            "strpos",
            "::json",
        ),
        _ => (
            "TEXT",
            "BLOB",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "instr",
            "",
        ),
    };
    sql.replace("{ts}", ts)
        .replace("{bytes}", bytes)
        .replace("{bigint}", "BIGINT")
        .replace("{serial}", serial)
        .replace("{strpos}", strpos)
        .replace("{as_json}", as_json)
}

/// Rows for one table, written by as few multi-row `INSERT`s as the backends' bound-parameter
/// limits allow (one round trip per few thousand values instead of one per row).
#[derive(Debug, Clone)]
pub struct Rows {
    /// `INSERT INTO t (a, b, c)`: the values list is appended.
    head: &'static str,
    /// Appended after the values, e.g. `ON CONFLICT (…) DO NOTHING`.
    tail: &'static str,
    width: usize,
    values: Vec<Value>,
}

/// Bound parameters per statement: under SQLite's 32,766 and PostgreSQL's 65,535.
const MAX_PARAMS: usize = 30_000;

impl Rows {
    /// Rows of `width` values for `head` (`INSERT INTO t (a, b, c)`).
    pub fn new(head: &'static str, width: usize) -> Self {
        Self::with_tail(head, width, "")
    }

    /// As [`Rows::new`], with `tail` after the values (e.g. an `ON CONFLICT` clause).
    pub fn with_tail(head: &'static str, width: usize, tail: &'static str) -> Self {
        Self {
            head,
            tail,
            width: width.max(1),
            values: Vec::new(),
        }
    }

    /// Adds one row; it must have the width the rows were made with.
    pub fn push(&mut self, row: impl IntoIterator<Item = Value>) {
        let before = self.values.len();
        self.values.extend(row);
        debug_assert_eq!(self.values.len() - before, self.width, "{}", self.head);
    }

    /// Adds every row of `other`, which must be rows for the same statement.
    pub fn append(&mut self, other: &Rows) {
        debug_assert_eq!((self.head, self.width), (other.head, other.width));
        self.values.extend(other.values.iter().cloned());
    }

    pub fn len(&self) -> usize {
        self.values.len() / self.width
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The statements that write the rows, in order.
    pub fn statements(&self, backend: DbBackend) -> Vec<Statement> {
        let per = (MAX_PARAMS / self.width).max(1) * self.width;
        self.values
            .chunks(per)
            .map(|chunk| {
                let mut sql = format!(
                    "{} VALUES {}",
                    self.head,
                    tuples(1, chunk.len() / self.width, self.width)
                );
                if !self.tail.is_empty() {
                    sql.push(' ');
                    sql.push_str(self.tail);
                }
                stmt(backend, &sql, chunk.iter().cloned())
            })
            .collect()
    }

    /// Writes the rows; returns how many the database reports written.
    pub async fn write(&self, db: &impl ConnectionTrait) -> Result<u64, sea_orm::DbErr> {
        let mut written = 0;
        for s in self.statements(db.get_database_backend()) {
            written += db.execute_raw(s).await?.rows_affected();
        }
        Ok(written)
    }
}

/// `rows` tuples of `width` numbered placeholders from `$first` on: `($1, $2), ($3, $4)` — for a
/// multi-row `VALUES` list or a row-value `IN (…)` (both backends; see [`stmt`]).
pub fn tuples(first: usize, rows: usize, width: usize) -> String {
    let mut sql = String::with_capacity(rows * width * 6);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(first + r * width + c).to_string());
        }
        sql.push(')');
    }
    sql
}

/// Where a unit of work's transaction begins: the database itself, in one council's scope, or a
/// batch's transaction (in that council's scope) — then it is a savepoint of that, rolled back
/// alone and committed with the batch.
#[derive(Clone, Copy)]
pub enum Within<'a> {
    /// A transaction of its own, in the scope of the council named.
    Db(&'a DatabaseConnection, &'a str),
    Batch(&'a DatabaseTransaction),
}

impl Within<'_> {
    /// A transaction of its own ([`begin_scoped`]), or a savepoint of the batch's.
    pub async fn begin(&self) -> Result<DatabaseTransaction, sea_orm::DbErr> {
        match self {
            Within::Db(db, tenant) => begin_scoped(db, tenant).await,
            #[allow(clippy::disallowed_methods)] // a savepoint: the batch's commit vouches for it
            Within::Batch(txn) => txn.begin().await,
        }
    }

    /// Commits what [`Within::begin`] began: a transaction of its own by [`commit`]; a savepoint
    /// is released (an error if the batch's transaction is aborted), and only the batch's
    /// [`commit`] says whether any of it was kept.
    pub async fn commit(&self, txn: DatabaseTransaction) -> Result<(), sea_orm::DbErr> {
        match self {
            Within::Db(..) => commit(txn).await,
            #[allow(clippy::disallowed_methods)]
            Within::Batch(_) => txn.commit().await,
        }
    }
}

/// Work done for many jobs in one transaction by [`together`].
#[async_trait::async_trait]
pub trait Together<J: Sync>: Sync {
    type Output: Send;

    /// The council `job` is for: its work runs in that council's scope.
    fn tenant<'j>(&self, job: &'j J) -> &'j str;

    /// Runs in a batch's transaction before any job (e.g. to take the batch's locks in one order).
    async fn first(&self, _txn: &DatabaseTransaction, _jobs: &[J]) -> Result<(), DbErr> {
        Ok(())
    }

    /// Does one job; its transaction begins `within`.
    async fn each(&self, within: Within<'_>, job: &J) -> Self::Output;
}

/// Does `jobs` together, each in its council's scope ([`Together::tenant`]): a lone job within
/// `db` itself (its own scoped transaction, as if there were no batch); several of one council
/// within one scoped transaction of `db`, each in a savepoint of it — a job that fails is rolled
/// back alone and answered alone, the others commit together. Jobs of several councils (batch
/// them by council so it does not happen) are each done alone, as a lone job is. An `Err` means
/// the batch committed nothing.
pub async fn together<J: Sync, W: Together<J>>(
    db: &DatabaseConnection,
    jobs: &[J],
    worker: &W,
) -> Result<Vec<W::Output>, DbErr> {
    let Some(tenant) = jobs.first().map(|j| worker.tenant(j)) else {
        return Ok(Vec::new());
    };
    if jobs.len() == 1 || jobs.iter().any(|j| worker.tenant(j) != tenant) {
        let mut outputs = Vec::with_capacity(jobs.len());
        for job in jobs {
            outputs.push(worker.each(Within::Db(db, worker.tenant(job)), job).await);
        }
        return Ok(outputs);
    }
    let txn = begin_scoped(db, tenant).await?;
    worker.first(&txn, jobs).await?;
    let mut outputs = Vec::with_capacity(jobs.len());
    for job in jobs {
        outputs.push(worker.each(Within::Batch(&txn), job).await);
    }
    // A job's savepoint that could not be made (the server went away) can leave sqlx believing
    // the batch's transaction is over: `commit` finds out, so no job is answered for wrongly.
    commit(txn).await?;
    Ok(outputs)
}

/// A cheap round trip, for readiness.
pub async fn ping(db: &DatabaseConnection) -> Result<()> {
    db.execute_unprepared("SELECT 1").await?;
    Ok(())
}

/// Whether `err` is a unique-constraint violation (a duplicate insert), on either backend.
pub fn is_unique_violation(err: &sea_orm::DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_percent_encoded_into_the_url() {
        let u = with_password("postgres://eh@db:5432/x?sslmode=require", "p@ss:w/rd").unwrap();
        assert_eq!(u, "postgres://eh:p%40ss%3Aw%2Frd@db:5432/x?sslmode=require");
    }

    #[test]
    fn rows_are_written_in_chunks_under_the_parameter_limit() {
        let mut rows = Rows::with_tail("INSERT INTO t (a, b)", 2, "ON CONFLICT DO NOTHING");
        assert!(rows.is_empty());
        for i in 0..(MAX_PARAMS / 2 + 1) {
            rows.push([(i as i64).into(), "x".into()]);
        }
        assert_eq!(rows.len(), MAX_PARAMS / 2 + 1);
        let s = rows.statements(DbBackend::Postgres);
        assert_eq!(s.len(), 2);
        assert!(
            s[1].sql.ends_with("VALUES ($1, $2) ON CONFLICT DO NOTHING"),
            "{}",
            s[1].sql
        );
        assert_eq!(s[0].values.as_ref().map(|v| v.0.len()), Some(MAX_PARAMS));
        let sqlite = rows.statements(DbBackend::Sqlite);
        assert!(
            sqlite[0].sql.contains("(?1, ?2), (?3, ?4)"),
            "{}",
            &sqlite[0].sql[..60]
        );
    }

    #[tokio::test]
    async fn rows_round_trip_through_sqlite() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NULL)")
            .await
            .unwrap();
        let mut rows = Rows::with_tail("INSERT INTO t (a, b)", 2, "ON CONFLICT (a) DO NOTHING");
        for i in 0..20_000_i64 {
            let b: Option<String> = (i % 2 == 0).then(|| format!("v{i}"));
            rows.push([i.into(), b.into()]);
        }
        rows.push([0_i64.into(), "again".into()]);
        assert_eq!(rows.write(&db).await.unwrap(), 20_000);
        let r = db
            .query_one_raw(stmt(
                DbBackend::Sqlite,
                "SELECT COUNT(*), COUNT(b), MAX(a) FROM t",
                [],
            ))
            .await
            .unwrap()
            .unwrap();
        let counts: (i64, i64, i64) = (
            r.try_get_by_index(0).unwrap(),
            r.try_get_by_index(1).unwrap(),
            r.try_get_by_index(2).unwrap(),
        );
        assert_eq!(counts, (20_000, 10_000, 19_999));
    }

    /// On SQLite the urgent lane waits for the ordinary transaction in flight, never for the
    /// ordinary work queued behind it: with one ordinary transaction open and five more
    /// statements queued for the ordinary connection, an urgent insert is the next row written.
    #[tokio::test]
    async fn urgent_work_on_sqlite_goes_ahead_of_the_ordinary_queue() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location {
            url: format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("t.sqlite").display()
            ),
            schema: None,
            max_connections: 1,
        };
        let lanes = connect_lanes(&location).await.unwrap();
        let gate = lanes.gate.clone().expect("a gate on SQLite");
        lanes
            .ordinary
            .execute_unprepared("CREATE TABLE t (n INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT)")
            .await
            .unwrap();
        let insert = |db: DatabaseConnection, who: &'static str| async move {
            db.execute_raw(stmt(
                DbBackend::Sqlite,
                "INSERT INTO t (who) VALUES ($1)",
                [who.into()],
            ))
            .await
            .map(|_| ())
        };
        let first = begin(&lanes.ordinary).await.unwrap();
        first
            .execute_raw(stmt(
                DbBackend::Sqlite,
                "INSERT INTO t (who) VALUES ($1)",
                ["first".into()],
            ))
            .await
            .unwrap();
        let queued: Vec<_> = (0..5)
            .map(|_| tokio::spawn(insert(lanes.ordinary.clone(), "ordinary")))
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await; // the five are waiting for the ordinary connection
        }
        let urgent = tokio::spawn(insert(lanes.urgent.clone(), "urgent"));
        while gate.urgent() == 0 {
            tokio::task::yield_now().await;
        }
        commit(first).await.unwrap();
        urgent.await.unwrap().unwrap();
        for q in queued {
            q.await.unwrap().unwrap();
        }
        let rows = lanes
            .ordinary
            .query_all_raw(stmt(DbBackend::Sqlite, "SELECT who FROM t ORDER BY n", []))
            .await
            .unwrap();
        let order: Vec<String> = rows
            .iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "first", "urgent", "ordinary", "ordinary", "ordinary", "ordinary", "ordinary"
            ]
        );
        assert_eq!(gate.urgent(), 0, "the urgent turn was given back");
    }

    #[test]
    fn tuples_number_their_placeholders_from_the_first() {
        assert_eq!(tuples(2, 2, 2), "($2, $3), ($4, $5)");
        assert_eq!(tuples(1, 1, 3), "($1, $2, $3)");
        assert_eq!(tuples(1, 0, 3), "");
    }

    #[test]
    fn sqlite_placeholders_are_numbered() {
        let s = stmt(DbBackend::Sqlite, "SELECT $1, $2", [1.into(), 2.into()]);
        assert_eq!(s.sql, "SELECT ?1, ?2");
    }
}
