//! Versioned migrations, one list per service, recorded in `eh_migrations` by owner and version.
//! Each run is one transaction; on PostgreSQL an advisory lock lets several replicas start at once
//! safely.
//!
//! A service's database holds the tables of several owners — the bus's outbox (`bus`), the audit
//! trail (`auth`), the service's own — so a migration is keyed by `(owner, version)`: two owners
//! can never collide on a number, and a list that repeats a key or runs an owner's versions out of
//! order is refused before anything runs ([`check`]). Ledgers written before owners existed
//! (`version` alone) are converted in place on the first run: each row is given the owner of the
//! migration with its version and name, so nothing runs twice.
//!
//! On PostgreSQL every run then makes sure, in the same transaction, that every table of the
//! service's schema with a `tenant` column has row-level security enabled and forced (so the
//! owning role is subject too) and the [`TENANT_POLICY`] policy: tables added by later migrations
//! get it without anyone remembering to.
use crate::{Error, Result, ddl, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

/// One step of a service's schema. `sql` holds `;`-separated statements using the `ddl` spellings.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Whose tables these are: the crate or service that writes the migration (`bus`, `auth`,
    /// `intake`, …). Versions are numbered per owner.
    pub owner: &'static str,
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    /// `owner/version`, as the ledger, logs and errors name it.
    pub fn key(&self) -> (&'static str, i64) {
        (self.owner, self.version)
    }
}

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS eh_migrations (
    owner TEXT NOT NULL,
    version {bigint} NOT NULL,
    name TEXT NOT NULL,
    applied_at {ts} NOT NULL,
    PRIMARY KEY (owner, version)
)";

/// The owner given to a row of a pre-owner ledger that matches no migration of the list it was
/// converted with (kept, so the record of what ran is not lost).
pub const UNKNOWN_OWNER: &str = "unknown";

/// Refuses a list in which a key repeats or an owner's versions do not rise in list order.
///
/// # Errors
/// Names the owner and versions at fault.
pub fn check(migrations: &[Migration]) -> Result<()> {
    let mut last: Vec<(&str, i64)> = Vec::new();
    for m in migrations {
        if m.owner.is_empty() || m.owner == UNKNOWN_OWNER {
            return Err(Error::Config(format!(
                "migration {} ({}) has no owner",
                m.version, m.name
            )));
        }
        match last.iter_mut().find(|(o, _)| *o == m.owner) {
            Some((_, v)) if *v >= m.version => {
                return Err(Error::Config(format!(
                    "migrations of {}: version {} ({}) comes after version {v}; each owner's versions must be unique and rising",
                    m.owner, m.version, m.name
                )));
            }
            Some((_, v)) => *v = m.version,
            None => last.push((m.owner, m.version)),
        }
    }
    Ok(())
}

async fn applied(db: &impl ConnectionTrait) -> Result<Vec<(String, i64)>> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT owner, version FROM eh_migrations ORDER BY owner, version",
            [],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get_by_index::<String>(0)?,
                r.try_get_by_index::<i64>(1)?,
            ))
        })
        .collect()
}

fn is_applied(done: &[(String, i64)], m: &Migration) -> bool {
    done.iter().any(|(o, v)| o == m.owner && *v == m.version)
}

/// Whether `eh_migrations` exists without its `owner` column (a ledger from before owners).
async fn is_legacy_ledger(txn: &impl ConnectionTrait) -> Result<bool> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT COUNT(*) FILTER (WHERE column_name = 'owner'), COUNT(*)
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = 'eh_migrations'"
        }
        _ => {
            "SELECT COALESCE(SUM(CASE WHEN name = 'owner' THEN 1 ELSE 0 END), 0), COUNT(*)
             FROM pragma_table_info('eh_migrations')"
        }
    };
    let row = txn.query_one_raw(stmt(backend, sql, [])).await?;
    let Some(row) = row else { return Ok(false) };
    let owner: i64 = row.try_get_by_index(0)?;
    let columns: i64 = row.try_get_by_index(1)?;
    Ok(columns > 0 && owner == 0)
}

/// Converts a pre-owner ledger (`version` primary key) to the keyed one, giving each row the
/// owner of the migration in `migrations` with its version and name.
async fn convert_legacy_ledger(
    txn: &impl ConnectionTrait,
    service: &str,
    migrations: &[Migration],
) -> Result<()> {
    let backend = txn.get_database_backend();
    let rows = txn
        .query_all_raw(stmt(
            backend,
            "SELECT version, name FROM eh_migrations ORDER BY version",
            [],
        ))
        .await?;
    // Built beside the old one and renamed into place (on PostgreSQL the old table's primary-key
    // index keeps its name until dropped).
    txn.execute_unprepared(&ddl(backend, LEDGER).replace("eh_migrations", "eh_migrations_keyed"))
        .await?;
    for r in rows {
        let version: i64 = r.try_get_by_index(0)?;
        let name: String = r.try_get_by_index(1)?;
        let owner = migrations
            .iter()
            .find(|m| m.version == version && m.name == name)
            .or_else(|| migrations.iter().find(|m| m.version == version))
            .map_or(UNKNOWN_OWNER, |m| m.owner);
        txn.execute_raw(stmt(
            backend,
            "INSERT INTO eh_migrations_keyed (owner, version, name, applied_at)
             SELECT $1, version, name, applied_at FROM eh_migrations WHERE version = $2",
            [owner.into(), version.into()],
        ))
        .await?;
    }
    txn.execute_unprepared("DROP TABLE eh_migrations").await?;
    txn.execute_unprepared("ALTER TABLE eh_migrations_keyed RENAME TO eh_migrations")
        .await?;
    tracing::info!(service, "migration ledger keyed by owner");
    Ok(())
}

/// Applies every migration not yet applied; returns how many ran.
///
/// # Errors
/// A list [`check`] refuses, or a failed statement (nothing of the run is kept).
pub async fn migrate(
    db: &DatabaseConnection,
    service: &str,
    migrations: &[Migration],
) -> Result<usize> {
    check(migrations)?;
    let backend = db.get_database_backend();
    // Migrations act for every tenant (a data migration must see and backfill every row).
    let txn = crate::begin_system(db, crate::SystemWorker::Migrate).await?;
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
    // Under the lock, so two replicas never both create or convert the ledger.
    if is_legacy_ledger(&txn).await? {
        convert_legacy_ledger(&txn, service, migrations).await?;
    } else {
        txn.execute_unprepared(&ddl(backend, LEDGER)).await?;
    }
    let done = applied(&txn).await?;
    let mut ran = 0;
    for m in migrations.iter().filter(|m| !is_applied(&done, m)) {
        for part in ddl(backend, m.sql)
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            txn.execute_unprepared(part)
                .await
                .map_err(|source| Error::Migration {
                    owner: m.owner,
                    version: m.version,
                    name: m.name,
                    source,
                })?;
        }
        txn.execute_raw(stmt(
            backend,
            "INSERT INTO eh_migrations (owner, version, name, applied_at) VALUES ($1, $2, $3, $4)",
            [
                m.owner.into(),
                m.version.into(),
                m.name.into(),
                chrono::Utc::now().into(),
            ],
        ))
        .await?;
        tracing::info!(
            service,
            owner = m.owner,
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

/// Lets `role` — the services' login role, which owns nothing — use the tables of the current
/// schema: `SELECT`, `INSERT`, `UPDATE`, `DELETE` on every table and the use of every sequence,
/// nothing more. Not being their owner it cannot lift `FORCE ROW LEVEL SECURITY`, drop or change
/// a policy, or alter a table. Run by the owner after [`migrate`] (idempotent: tables added by
/// later migrations are granted at the next run). Nothing to do on SQLite.
///
/// # Errors
/// A role name that is not a plain identifier, or a grant the database refuses (the role does
/// not exist, or the connection is not the owner's).
pub async fn grant(db: &DatabaseConnection, role: &str) -> Result<()> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    if role.is_empty()
        || !role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(Error::Config(format!(
            "database role {role:?}: letters, digits, '_', '-' or '.' only"
        )));
    }
    let txn = crate::begin(db).await?;
    let schema: String = txn
        .query_one_raw(stmt(
            DbBackend::Postgres,
            "SELECT quote_ident(current_schema())",
            [],
        ))
        .await?
        .ok_or_else(|| Error::Config("no current schema".into()))?
        .try_get_by_index(0)?;
    for sql in [
        "GRANT USAGE ON SCHEMA {schema} TO {role}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
    ] {
        txn.execute_unprepared(
            &sql.replace("{schema}", &schema)
                .replace("{role}", &format!("\"{role}\"")),
        )
        .await?;
    }
    crate::commit(txn).await?;
    Ok(())
}

/// Migrations not yet applied, as `owner/version` (readiness reports not ready while any are).
pub async fn pending(db: &DatabaseConnection, migrations: &[Migration]) -> Result<Vec<String>> {
    // No ledger yet, a pre-owner one, or the database unreachable: report everything pending,
    // so not ready (the next migrate converts an old ledger).
    let done = applied(db).await.unwrap_or_default();
    Ok(migrations
        .iter()
        .filter(|m| !is_applied(&done, m))
        .map(|m| format!("{}/{}", m.owner, m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn m(owner: &'static str, version: i64) -> Migration {
        Migration {
            owner,
            version,
            name: "m",
            sql: "",
        }
    }

    #[test]
    fn owners_may_share_numbers_but_not_repeat_or_go_back() {
        assert!(check(&[m("bus", 1), m("auth", 1), m("auth", 2), m("intake", 1)]).is_ok());
        let e = check(&[m("bus", 1), m("auth", 2), m("bus", 1)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("migrations of bus: version 1"), "{e}");
        let e = check(&[m("intake", 20), m("intake", 10)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("migrations of intake: version 10"), "{e}");
        assert!(check(&[m("", 1)]).is_err());
    }
}
