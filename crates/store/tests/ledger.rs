//! The migration ledger keyed by (owner, version): a database migrated by the binary before
//! owners existed (`eh_migrations` keyed by version alone) is converted in place and nothing runs
//! again; after that, two owners may use the same number. On real PostgreSQL and on SQLite.
use eh_store::{Location, Migration, connect, migrate, pending, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

/// The shape of a service's list as it was: the bus's outbox at 1, the audit trail at 2 and 3,
/// the service's own tables from 10.
const LIST: &[Migration] = &[
    Migration {
        owner: "bus",
        version: 1,
        name: "outbox",
        sql: "CREATE TABLE outbox (id TEXT PRIMARY KEY)",
    },
    Migration {
        owner: "auth",
        version: 2,
        name: "audit",
        sql: "CREATE TABLE audit (id TEXT PRIMARY KEY)",
    },
    Migration {
        owner: "auth",
        version: 3,
        name: "audit chain",
        sql: "ALTER TABLE audit ADD COLUMN hash TEXT",
    },
    Migration {
        owner: "svc",
        version: 10,
        name: "cases",
        sql: "CREATE TABLE cases (id TEXT PRIMARY KEY, tenant TEXT NOT NULL)",
    },
];

/// A later migration of the service numbered 1 — the bus's number, once a collision.
const SVC_1: Migration = Migration {
    owner: "svc",
    version: 1,
    name: "notes",
    sql: "CREATE TABLE notes (id TEXT PRIMARY KEY)",
};

/// What the binary did before owners: the tables, and a ledger keyed by version alone.
async fn old_style(db: &DatabaseConnection, list: &[Migration]) -> anyhow::Result<()> {
    let backend = db.get_database_backend();
    db.execute_unprepared(&eh_store::ddl(
        backend,
        "CREATE TABLE eh_migrations (version {bigint} PRIMARY KEY, name TEXT NOT NULL, applied_at {ts} NOT NULL)",
    ))
    .await?;
    for m in list {
        db.execute_unprepared(m.sql).await?;
        db.execute_raw(stmt(
            backend,
            "INSERT INTO eh_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            [m.version.into(), m.name.into(), chrono::Utc::now().into()],
        ))
        .await?;
    }
    Ok(())
}

async fn ledger(db: &DatabaseConnection) -> anyhow::Result<Vec<(String, i64, String)>> {
    db.query_all_raw(stmt(
        db.get_database_backend(),
        "SELECT owner, version, name FROM eh_migrations ORDER BY version, owner",
        [],
    ))
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.try_get_by_index(0)?,
            r.try_get_by_index(1)?,
            r.try_get_by_index(2)?,
        ))
    })
    .collect()
}

async fn an_old_ledger_is_converted_and_nothing_runs_again(
    db: &DatabaseConnection,
) -> anyhow::Result<()> {
    old_style(db, LIST).await?;
    assert_eq!(
        pending(db, LIST).await?.len(),
        LIST.len(),
        "old ledger: not ready until converted"
    );
    // Had anything run again, its CREATE TABLE would fail on the existing table.
    assert_eq!(migrate(db, "svc", LIST).await?, 0);
    assert!(pending(db, LIST).await?.is_empty());
    let rows = ledger(db).await?;
    let want: Vec<(String, i64, String)> = LIST
        .iter()
        .map(|m| (m.owner.to_string(), m.version, m.name.to_string()))
        .collect();
    assert_eq!(rows, want);
    assert_eq!(migrate(db, "svc", LIST).await?, 0, "idempotent");

    // Keyed by owner now: the service's own version 1 is not the bus's, so it runs.
    let mut more = LIST.to_vec();
    more.insert(3, SVC_1);
    assert_eq!(migrate(db, "svc", &more).await?, 1);
    assert_eq!(migrate(db, "svc", &more).await?, 0);
    assert!(
        ledger(db)
            .await?
            .contains(&("svc".to_string(), 1, "notes".to_string()))
    );
    Ok(())
}

#[tokio::test]
async fn postgres_old_ledger() -> anyhow::Result<()> {
    let url = eh_testkit::fresh_database().await?;
    let db = connect(&Location {
        url,
        schema: Some("svc".into()),
        max_connections: 2,
    })
    .await?;
    an_old_ledger_is_converted_and_nothing_runs_again(&db).await
}

#[tokio::test]
async fn sqlite_old_ledger() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = connect(&Location {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("svc.sqlite").display()
        ),
        schema: None,
        max_connections: 1,
    })
    .await?;
    assert_eq!(db.get_database_backend(), DbBackend::Sqlite);
    an_old_ledger_is_converted_and_nothing_runs_again(&db).await
}

#[tokio::test]
async fn two_owners_may_share_a_number_on_a_fresh_database() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = connect(&Location {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("svc.sqlite").display()
        ),
        schema: None,
        max_connections: 1,
    })
    .await?;
    let list = [LIST[0], SVC_1];
    assert_eq!(migrate(&db, "svc", &list).await?, 2);
    assert_eq!(migrate(&db, "svc", &list).await?, 0);
    let e = migrate(&db, "svc", &[LIST[0], SVC_1, SVC_1])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("migrations of svc: version 1"), "{e}");
    Ok(())
}
