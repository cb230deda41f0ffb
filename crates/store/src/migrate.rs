//! Versioned migrations, one list per service, recorded in `eh_migrations`. Each runs in a
//! transaction; on PostgreSQL an advisory lock lets several replicas start at once safely.
//!
//! On PostgreSQL every run then makes sure, in the same transaction, that every table of the
//! service's schema with a `tenant` column has row-level security enabled and forced (so the
//! owning role is subject too) and the [`TENANT_POLICY`] policy: tables added by later migrations
//! get it without anyone remembering to.
use crate::{Error, Result, SYSTEM_SCOPE, TENANT_SETTING, ddl, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

/// One step of a service's schema. `sql` holds `;`-separated statements using the `ddl` spellings.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS eh_migrations (
    version {bigint} PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at {ts} NOT NULL
)";

async fn applied(db: &impl ConnectionTrait) -> Result<Vec<i64>> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT version FROM eh_migrations ORDER BY version",
            [],
        ))
        .await?;
    rows.iter()
        .map(|r| r.try_get_by_index::<i64>(0).map_err(Error::from))
        .collect()
}

/// Applies every migration not yet applied; returns how many ran.
pub async fn migrate(
    db: &DatabaseConnection,
    service: &str,
    migrations: &[Migration],
) -> Result<usize> {
    let backend = db.get_database_backend();
    db.execute_unprepared(&ddl(backend, LEDGER)).await?;
    let txn = crate::begin(db).await?;
    if backend == DbBackend::Postgres {
        let key = service
            .bytes()
            .fold(7_i64, |h, b| h.wrapping_mul(31).wrapping_add(b as i64));
        txn.execute_raw(stmt(
            backend,
            "SELECT pg_advisory_xact_lock($1)",
            [key.into()],
        ))
        .await?;
    }
    if backend == DbBackend::Postgres {
        // Migrations act for every tenant (a data migration must see all rows), whatever the
        // connection they were given.
        txn.execute_raw(stmt(
            backend,
            "SELECT set_config($1, $2, true)",
            [TENANT_SETTING.into(), SYSTEM_SCOPE.into()],
        ))
        .await?;
    }
    let done = applied(&txn).await?;
    let mut ran = 0;
    for m in migrations.iter().filter(|m| !done.contains(&m.version)) {
        for part in ddl(backend, m.sql)
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            txn.execute_unprepared(part)
                .await
                .map_err(|source| Error::Migration {
                    version: m.version,
                    name: m.name,
                    source,
                })?;
        }
        txn.execute_raw(stmt(
            backend,
            "INSERT INTO eh_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            [m.version.into(), m.name.into(), chrono::Utc::now().into()],
        ))
        .await?;
        tracing::info!(
            service,
            version = m.version,
            name = m.name,
            "migration applied"
        );
        ran += 1;
    }
    if backend == DbBackend::Postgres {
        isolate_tenants(&txn, service).await?;
    }
    crate::commit(txn).await?;
    Ok(ran)
}

/// The name of the row-level security policy on every table with a `tenant` column: a row is
/// visible and writable when its tenant is the `eh.tenant` setting, or the setting is the system
/// scope `*`. Unset (NULL or empty) matches nothing.
pub const TENANT_POLICY: &str = "eh_tenant_isolation";

const TENANT_PREDICATE: &str = "tenant = current_setting('eh.tenant', true) \
     OR current_setting('eh.tenant', true) = '*'";

/// Enables and forces row-level security, and creates [`TENANT_POLICY`], on each table of the
/// current schema that has a `tenant` column and lacks them. Only what is missing is changed, so
/// a start with nothing to do takes no table locks.
async fn isolate_tenants(txn: &impl ConnectionTrait, service: &str) -> Result<()> {
    let backend = txn.get_database_backend();
    let rows = txn
        .query_all_raw(stmt(
            backend,
            "SELECT format('%I.%I', n.nspname, c.relname), c.relrowsecurity, c.relforcerowsecurity,
                    EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $1)
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid
             WHERE n.nspname = current_schema()
               AND c.relkind IN ('r', 'p')
               AND a.attname = 'tenant' AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.relname",
            [TENANT_POLICY.into()],
        ))
        .await?;
    for r in rows {
        let table: String = r.try_get_by_index(0)?;
        let enabled: bool = r.try_get_by_index(1)?;
        let forced: bool = r.try_get_by_index(2)?;
        let has_policy: bool = r.try_get_by_index(3)?;
        let mut steps = Vec::new();
        if !enabled {
            steps.push(format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"));
        }
        if !forced {
            steps.push(format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"));
        }
        if !has_policy {
            steps.push(format!(
                "CREATE POLICY {TENANT_POLICY} ON {table} USING ({TENANT_PREDICATE}) \
                 WITH CHECK ({TENANT_PREDICATE})"
            ));
        }
        for sql in &steps {
            txn.execute_unprepared(sql).await?;
        }
        if !steps.is_empty() {
            tracing::info!(service, table, "row-level security by tenant ensured");
        }
    }
    Ok(())
}

/// Versions not yet applied (readiness reports not ready while any are).
pub async fn pending(db: &DatabaseConnection, migrations: &[Migration]) -> Result<Vec<i64>> {
    // No ledger yet (or the database unreachable): report everything pending, so not ready.
    let done = applied(db).await.unwrap_or_default();
    Ok(migrations
        .iter()
        .map(|m| m.version)
        .filter(|v| !done.contains(v))
        .collect())
}
