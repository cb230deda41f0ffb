//! Connections held to one tenant from their start, for a request's reads of one statement each.
//!
//! Why: a read scoped by [`crate::begin_scoped`] costs four round trips before its rows arrive
//! (`BEGIN`, the scope, the query, `COMMIT`), and a read path runs at several thousand a second.
//! A connection whose startup packet already says `eh.tenant = <tenant>` (as the main pool's says
//! `*`) is held to that tenant by the same row-level security for its whole life, with no
//! transaction to scope: a read of one statement is one round trip, and what it can see is no
//! wider than a scoped transaction's.
//!
//! One pool per tenant, made on first use from the service's own pool's connection options (same
//! server, credentials, TLS and schema), sized like it; a connection idle for a minute is closed,
//! so councils that are not being read hold none. On SQLite (embedded mode: one process, one
//! connection, no row-level security) every tenant's reads use the service's own pool.
use crate::{SYSTEM_SCOPE, SystemWorker, TENANT_SETTING, WORKER_SETTING, stmt};
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, SqlxPostgresConnector};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A reader connection that sat idle this long is pinged before use (as the main pool does).
const PING_IF_IDLE: Duration = Duration::from_secs(30);
/// A reader connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Pools of connections each held to one tenant (see the module note). Cheap to clone.
#[derive(Clone)]
pub struct TenantReaders {
    db: DatabaseConnection,
    pools: Arc<RwLock<HashMap<String, DatabaseConnection>>>,
    system: Arc<RwLock<HashMap<SystemWorker, DatabaseConnection>>>,
}

impl std::fmt::Debug for TenantReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantReaders")
    }
}

impl TenantReaders {
    /// Readers beside `db`, a pool made by [`crate::connect`].
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            pools: Arc::default(),
            system: Arc::default(),
        }
    }

    /// A pool whose every connection is in the system scope for `worker` from its start
    /// (`eh.tenant = *`, `eh.worker` and `application_name` naming it), for a named cross-council
    /// worker whose work is many statements of their own (the sender's claim loop): no
    /// transaction to scope, and every hand-out of a connection counted as a use
    /// (`earlyhelp_system_scope_uses_total{worker}`). The service's own pool on SQLite.
    pub async fn system(&self, worker: SystemWorker) -> Result<DatabaseConnection, DbErr> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Ok(self.db.clone());
        }
        if let Some(pool) = self
            .system
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&worker)
        {
            return Ok(pool.clone());
        }
        let made = self
            .pool_with(
                &[
                    (TENANT_SETTING, SYSTEM_SCOPE),
                    (WORKER_SETTING, worker.name()),
                    ("application_name", &format!("earlyhelp:{}", worker.name())),
                ],
                Some(worker),
            )
            .await?;
        let mut pools = self.system.write().unwrap_or_else(|e| e.into_inner());
        Ok(pools.entry(worker).or_insert(made).clone())
    }

    /// A pool whose every connection sees and writes `tenant`'s rows only (PostgreSQL); the
    /// service's own pool on SQLite. Refuses an empty tenant and the system scope, as
    /// [`crate::begin_scoped`] does. Pass the tenant of the authenticated principal.
    ///
    /// Use it for reads of one statement: two statements on it may run on two connections and
    /// see two moments (a read that needs one moment across statements takes a transaction).
    pub async fn of(&self, tenant: &str) -> Result<DatabaseConnection, DbErr> {
        if tenant.trim().is_empty() || tenant.contains(SYSTEM_SCOPE) {
            return Err(DbErr::Custom(format!(
                "tenant readers: {tenant:?} is not a tenant"
            )));
        }
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Ok(self.db.clone());
        }
        if let Some(pool) = self
            .pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
        {
            return Ok(pool.clone());
        }
        let made = self.pool_of(tenant).await?;
        let mut pools = self.pools.write().unwrap_or_else(|e| e.into_inner());
        // Another request may have made one meanwhile; keep the first (ours has not connected).
        Ok(pools.entry(tenant.to_string()).or_insert(made).clone())
    }

    /// A lazily connecting pool like the service's own, with `tenant` in every startup packet.
    async fn pool_of(&self, tenant: &str) -> Result<DatabaseConnection, DbErr> {
        self.pool_with(&[(TENANT_SETTING, tenant)], None).await
    }

    /// A lazily connecting pool like the service's own, with `settings` in every startup packet;
    /// each hand-out counted for `worker` when there is one.
    async fn pool_with(
        &self,
        settings: &[(&str, &str)],
        worker: Option<SystemWorker>,
    ) -> Result<DatabaseConnection, DbErr> {
        let own = self.db.get_postgres_connection_pool();
        // The main pool sets its schema after connecting; a reader says it at startup instead.
        let search_path: String = self
            .db
            .query_one_raw(stmt(
                DbBackend::Postgres,
                "SELECT current_setting('search_path')",
                [],
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("no search_path".into()))?
            .try_get_by_index(0)?;
        let options: PgConnectOptions = (*own.connect_options())
            .clone()
            .options(settings.iter().copied())
            .options([("search_path", search_path.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(own.options().get_max_connections())
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(IDLE_TIMEOUT)
            .test_before_acquire(false)
            // A new connection is handed out without `before_acquire`: counted here instead.
            .after_connect(move |_, _| {
                Box::pin(async move {
                    if let Some(w) = worker {
                        eh_platform::metrics::system_scope_used(w.name());
                    }
                    Ok(())
                })
            })
            .before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if let Some(w) = worker {
                        eh_platform::metrics::system_scope_used(w.name());
                    }
                    if meta.idle_for >= PING_IF_IDLE {
                        sea_orm::sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
    }
}
