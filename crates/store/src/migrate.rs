//! Versioned migrations, one list per service, recorded in `eh_migrations`. Each runs in a
//! transaction; on PostgreSQL an advisory lock lets several replicas start at once safely.
use crate::{Error, Result, ddl, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, TransactionTrait};

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
    let txn = db.begin().await?;
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
    txn.commit().await?;
    Ok(ran)
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
