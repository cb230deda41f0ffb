//! Row-level security by tenant on real PostgreSQL, connected as an ordinary role that owns the
//! database (as production must): a scoped transaction sees and writes its tenant's rows only,
//! even with no `WHERE tenant = …`; the pool's system scope sees all; a connection not made by the
//! store sees nothing; a superuser bypasses it all. `migrate` installs it idempotently, on tables
//! added later too.
use eh_store::{
    Location, Migration, SYSTEM_SCOPE, TENANT_POLICY, TENANT_SETTING, begin_scoped, connect,
    migrate, stmt,
};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};

const SCHEMA: &str = "svc";

const V1: Migration = Migration {
    owner: "svc",
    version: 1,
    name: "people and notes",
    sql: "CREATE TABLE people (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL);
          CREATE INDEX people_tenant ON people (tenant);
          CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
};

const V2: Migration = Migration {
    owner: "svc",
    version: 2,
    name: "cases",
    sql: "CREATE TABLE cases (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, person_id TEXT NOT NULL)",
};

/// A pool on a fresh database owned by (and connecting as) the tests' ordinary role. One
/// connection, so every statement runs on the connection a scoped transaction used before.
async fn pool(url: &str) -> anyhow::Result<DatabaseConnection> {
    Ok(connect(&Location {
        url: url.to_string(),
        schema: Some(SCHEMA.into()),
        max_connections: 1,
    })
    .await?)
}

async fn count(db: &impl ConnectionTrait, sql: &str) -> anyhow::Result<i64> {
    let r = db
        .query_one_raw(stmt(DbBackend::Postgres, sql, []))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    Ok(r.try_get_by_index(0)?)
}

async fn insert(db: &impl ConnectionTrait, id: &str, tenant: &str) -> Result<(), sea_orm::DbErr> {
    db.execute_raw(stmt(
        DbBackend::Postgres,
        "INSERT INTO people (id, tenant, name) VALUES ($1, $2, $3)",
        [id.into(), tenant.into(), format!("person {id}").into()],
    ))
    .await
    .map(|_| ())
}

/// A migrated database with two people of worcs and one of staffs, written in the system scope.
async fn seeded() -> anyhow::Result<(String, DatabaseConnection)> {
    let url = eh_testkit::fresh_database().await?;
    let db = pool(&url).await?;
    migrate(&db, "svc", &[V1]).await?;
    insert(&db, "w1", "worcs").await?;
    insert(&db, "w2", "worcs").await?;
    insert(&db, "s1", "staffs").await?;
    Ok((url, db))
}

async fn tenants(db: &impl ConnectionTrait) -> anyhow::Result<Vec<String>> {
    db.query_all_raw(stmt(
        DbBackend::Postgres,
        "SELECT tenant FROM people ORDER BY id",
        [],
    ))
    .await?
    .iter()
    .map(|r| r.try_get_by_index(0).map_err(anyhow::Error::from))
    .collect()
}

#[tokio::test]
async fn the_tests_connect_as_an_ordinary_role_that_owns_the_database() -> anyhow::Result<()> {
    let url = eh_testkit::fresh_database().await?;
    let db = pool(&url).await?;
    let r = db
        .query_one_raw(stmt(
            DbBackend::Postgres,
            "SELECT r.rolsuper, r.rolbypassrls, d.datdba = r.oid
             FROM pg_roles r, pg_database d
             WHERE r.rolname = current_user AND d.datname = current_database()",
            [],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    let (superuser, bypass, owner): (bool, bool, bool) = (
        r.try_get_by_index(0)?,
        r.try_get_by_index(1)?,
        r.try_get_by_index(2)?,
    );
    assert!(
        !superuser && !bypass && owner,
        "{superuser} {bypass} {owner}"
    );
    Ok(())
}

#[tokio::test]
async fn a_scoped_transaction_sees_and_writes_its_tenants_rows_only() -> anyhow::Result<()> {
    let (_url, db) = seeded().await?;
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM people").await?,
        3,
        "the pool is in the system scope"
    );

    let txn = begin_scoped(&db, "worcs").await?;
    // No WHERE tenant = … anywhere below.
    assert_eq!(tenants(&txn).await?, ["worcs", "worcs"]);
    assert_eq!(
        count(&txn, "SELECT COUNT(*) FROM people WHERE id = 's1'").await?,
        0
    );
    let e = insert(&txn, "s2", "staffs")
        .await
        .expect_err("another tenant's row in worcs' scope");
    assert!(e.to_string().contains("row-level security"), "{e}");
    txn.rollback().await?;

    let txn = begin_scoped(&db, "worcs").await?;
    insert(&txn, "w3", "worcs").await?;
    let updated = txn
        .execute_unprepared("UPDATE people SET name = 'renamed'")
        .await?
        .rows_affected();
    assert_eq!(updated, 3, "worcs' three rows, not staffs'");
    let moved = txn
        .execute_unprepared("UPDATE people SET tenant = 'staffs' WHERE id = 'w1'")
        .await;
    assert!(moved.is_err(), "a row cannot be given to another tenant");
    txn.rollback().await?;

    let txn = begin_scoped(&db, "worcs").await?;
    let deleted = txn
        .execute_unprepared("DELETE FROM people WHERE id = 's1'")
        .await?
        .rows_affected();
    assert_eq!(deleted, 0);
    eh_store::commit(txn).await?;

    let txn = begin_scoped(&db, "staffs").await?;
    assert_eq!(tenants(&txn).await?, ["staffs"]);
    eh_store::commit(txn).await?;

    // The scope was transaction-local: the (single) connection is back in the system scope.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM people").await?, 3);
    let r = db
        .query_one_raw(stmt(
            DbBackend::Postgres,
            "SELECT current_setting($1)",
            [TENANT_SETTING.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    assert_eq!(r.try_get_by_index::<String>(0)?, SYSTEM_SCOPE);

    // A table without a tenant column is left alone.
    let txn = begin_scoped(&db, "worcs").await?;
    txn.execute_unprepared("INSERT INTO notes (id, body) VALUES ('n1', 'x')")
        .await?;
    assert_eq!(count(&txn, "SELECT COUNT(*) FROM notes").await?, 1);
    eh_store::commit(txn).await?;
    Ok(())
}

#[tokio::test]
async fn begin_scoped_refuses_no_tenant_and_the_system_scope() -> anyhow::Result<()> {
    let (_url, db) = seeded().await?;
    for bad in ["", " ", "*", "worcs,*"] {
        assert!(begin_scoped(&db, bad).await.is_err(), "{bad:?}");
    }
    // And a scope that is no tenant at all sees nothing.
    let txn = begin_scoped(&db, "nobody").await?;
    assert_eq!(count(&txn, "SELECT COUNT(*) FROM people").await?, 0);
    Ok(())
}

/// A tenant's readers (connections held to it from their start) see and write its rows only,
/// with no transaction and no `WHERE tenant = …`, in the service's schema; each tenant has its
/// own; the main pool stays in the system scope; no tenant and the system scope are refused.
#[tokio::test]
async fn a_tenants_readers_see_and_write_its_rows_only() -> anyhow::Result<()> {
    let (_url, db) = seeded().await?;
    let readers = eh_store::TenantReaders::new(db.clone());
    for bad in ["", " ", "*", "worcs,*"] {
        assert!(readers.of(bad).await.is_err(), "{bad:?}");
    }
    let worcs = readers.of("worcs").await?;
    let staffs = readers.of("staffs").await?;
    assert_eq!(tenants(&worcs).await?, ["worcs", "worcs"]);
    assert_eq!(tenants(&staffs).await?, ["staffs"]);
    // Again, through the pool made the first time (and its connection, reused).
    assert_eq!(
        tenants(&readers.of("worcs").await?).await?,
        ["worcs", "worcs"]
    );
    let r = worcs
        .query_one_raw(stmt(
            DbBackend::Postgres,
            "SELECT current_setting($1), current_schema()",
            [TENANT_SETTING.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    assert_eq!(
        (
            r.try_get_by_index::<String>(0)?,
            r.try_get_by_index::<String>(1)?
        ),
        ("worcs".to_string(), SCHEMA.to_string())
    );
    let e = insert(&worcs, "s9", "staffs")
        .await
        .expect_err("another tenant's row through worcs' readers");
    assert!(e.to_string().contains("row-level security"), "{e}");
    // Setting the scope for one transaction on a reader does not widen it afterwards.
    let txn = eh_store::begin(&worcs).await?;
    txn.execute_unprepared("SELECT set_config('eh.tenant', '*', true)")
        .await?;
    eh_store::commit(txn).await?;
    assert_eq!(tenants(&worcs).await?, ["worcs", "worcs"]);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM people").await?, 3);

    // A tenant nobody holds rows of sees none.
    assert_eq!(
        count(&readers.of("nobody").await?, "SELECT COUNT(*) FROM people").await?,
        0
    );
    Ok(())
}

#[tokio::test]
async fn a_connection_not_made_by_the_store_sees_nothing_and_a_superuser_sees_all()
-> anyhow::Result<()> {
    let (url, _db) = seeded().await?;

    // The same ordinary role, without the store's system scope: no rows, no writes.
    let mut opts = ConnectOptions::new(url.clone());
    opts.max_connections(1).set_schema_search_path(SCHEMA);
    let plain = Database::connect(opts).await?;
    assert_eq!(count(&plain, "SELECT COUNT(*) FROM people").await?, 0);
    let e = insert(&plain, "x1", "worcs")
        .await
        .expect_err("no scope, no writes");
    assert!(e.to_string().contains("row-level security"), "{e}");
    // Even after a transaction-local scope ended (the setting then reads as empty, not NULL).
    let txn = eh_store::begin(&plain).await?;
    txn.execute_unprepared("SELECT set_config('eh.tenant', 'worcs', true)")
        .await?;
    assert_eq!(count(&txn, "SELECT COUNT(*) FROM people").await?, 2);
    eh_store::commit(txn).await?;
    assert_eq!(count(&plain, "SELECT COUNT(*) FROM people").await?, 0);

    // A superuser (or a BYPASSRLS role) is never subject to row-level security: production must
    // not connect as one.
    let admin = Database::connect(eh_testkit::as_superuser(&url)?).await?;
    assert_eq!(
        count(&admin, &format!("SELECT COUNT(*) FROM {SCHEMA}.people")).await?,
        3
    );
    Ok(())
}

async fn policies(db: &impl ConnectionTrait) -> anyhow::Result<Vec<(String, bool, bool, i64)>> {
    db.query_all_raw(stmt(
        DbBackend::Postgres,
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                (SELECT COUNT(*) FROM pg_policies p
                 WHERE p.schemaname = n.nspname AND p.tablename = c.relname AND p.policyname = $1)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $2 AND c.relkind = 'r'
         ORDER BY c.relname",
        [TENANT_POLICY.into(), SCHEMA.into()],
    ))
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.try_get_by_index(0)?,
            r.try_get_by_index(1)?,
            r.try_get_by_index(2)?,
            r.try_get_by_index(3)?,
        ))
    })
    .collect()
}

fn row(t: &str, on: bool, n: i64) -> (String, bool, bool, i64) {
    (t.to_string(), on, on, n)
}

#[tokio::test]
async fn migrate_is_idempotent_and_isolates_tables_added_later() -> anyhow::Result<()> {
    let url = eh_testkit::fresh_database().await?;
    let db = pool(&url).await?;
    assert_eq!(migrate(&db, "svc", &[V1]).await?, 1);
    assert_eq!(migrate(&db, "svc", &[V1]).await?, 0);
    assert_eq!(
        policies(&db).await?,
        [
            row("eh_migrations", false, 0),
            row("notes", false, 0),
            row("people", true, 1),
        ]
    );

    // Two replicas starting at once with a new migration: it runs once, one policy per table.
    let other = pool(&url).await?;
    let (a, b) = tokio::join!(
        migrate(&db, "svc", &[V1, V2]),
        migrate(&other, "svc", &[V1, V2])
    );
    assert_eq!(a? + b?, 1);
    assert_eq!(migrate(&db, "svc", &[V1, V2]).await?, 0);
    assert_eq!(
        policies(&db).await?,
        [
            row("cases", true, 1),
            row("eh_migrations", false, 0),
            row("notes", false, 0),
            row("people", true, 1),
        ]
    );

    // The new table is held to the scope like the first.
    db.execute_unprepared(
        "INSERT INTO cases (id, tenant, person_id) VALUES ('c1', 'worcs', 'w1'), ('c2', 'staffs', 's1')",
    )
    .await?;
    let txn = begin_scoped(&db, "staffs").await?;
    assert_eq!(count(&txn, "SELECT COUNT(*) FROM cases").await?, 1);
    eh_store::commit(txn).await?;
    Ok(())
}

/// A policy dropped by hand (or a table that had RLS switched off) is put back at the next start.
#[tokio::test]
async fn migrate_restores_isolation_that_was_removed() -> anyhow::Result<()> {
    let (_url, db) = seeded().await?;
    db.execute_unprepared(&format!(
        "DROP POLICY {TENANT_POLICY} ON people; ALTER TABLE people NO FORCE ROW LEVEL SECURITY"
    ))
    .await?;
    assert_eq!(migrate(&db, "svc", &[V1]).await?, 0);
    assert_eq!(
        policies(&db).await?,
        [
            row("eh_migrations", false, 0),
            row("notes", false, 0),
            row("people", true, 1),
        ]
    );
    Ok(())
}

/// Embedded mode: SQLite has no row-level security; a scoped transaction is a plain one.
#[tokio::test]
async fn on_sqlite_a_scoped_transaction_is_a_plain_one() -> anyhow::Result<()> {
    let db = connect(&Location {
        url: "sqlite::memory:".into(),
        schema: None,
        max_connections: 1,
    })
    .await?;
    migrate(&db, "svc", &[V1]).await?;
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO people (id, tenant, name) VALUES ($1, $2, 'x'), ($3, $4, 'y')",
        ["w1".into(), "worcs".into(), "s1".into(), "staffs".into()],
    ))
    .await?;
    let txn = begin_scoped(&db, "worcs").await?;
    let n: i64 = txn
        .query_one_raw(stmt(
            b,
            "SELECT COUNT(*) FROM people WHERE tenant = $1",
            ["worcs".into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?
        .try_get_by_index(0)?;
    assert_eq!(n, 1);
    eh_store::commit(txn).await?;
    assert!(begin_scoped(&db, "*").await.is_err());
    Ok(())
}
