//! Row-level security by tenant on real PostgreSQL, migrated as an ordinary role that owns the
//! database and used, as production does, by a role that owns nothing: a scoped transaction sees
//! and writes its tenant's rows only, even with no `WHERE tenant = …`; the pool is in no scope
//! and sees nothing; only the named system-scope workers see all, each use counted and named in
//! `pg_stat_activity`; the services' role cannot lift `FORCE` or drop a policy; a superuser
//! bypasses it all. `migrate` installs it idempotently, on tables added later too.
use eh_store::{
    Location, Migration, SystemWorker, TENANT_POLICY, TENANT_SETTING, begin_scoped, begin_system,
    connect, migrate, stmt,
};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use std::collections::BTreeSet;

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

/// A migrated database with two people of worcs and one of staffs, each written in its
/// council's scope.
async fn seeded() -> anyhow::Result<(String, DatabaseConnection)> {
    let url = eh_testkit::fresh_database().await?;
    let db = pool(&url).await?;
    migrate(&db, "svc", &[V1]).await?;
    for (id, tenant) in [("w1", "worcs"), ("w2", "worcs"), ("s1", "staffs")] {
        let txn = begin_scoped(&db, tenant).await?;
        insert(&txn, id, tenant).await?;
        eh_store::commit(txn).await?;
    }
    Ok((url, db))
}

/// As [`seeded`], migrated by the owner and granted to the services' role
/// ([`eh_testkit::APP_ROLE`]); the pool of that role (one connection).
async fn seeded_as_services() -> anyhow::Result<(String, DatabaseConnection)> {
    let (owner_url, service_url) = eh_testkit::fresh_database_split().await?;
    let owner = pool(&owner_url).await?;
    migrate(&owner, "svc", &[V1]).await?;
    eh_store::grant(&owner, eh_testkit::APP_ROLE).await?;
    for (id, tenant) in [("w1", "worcs"), ("w2", "worcs"), ("s1", "staffs")] {
        let txn = begin_scoped(&owner, tenant).await?;
        insert(&txn, id, tenant).await?;
        eh_store::commit(txn).await?;
    }
    owner.close().await?;
    Ok((service_url.clone(), pool(&service_url).await?))
}

/// How many people a transaction of the system scope for `worker` sees.
async fn seen_by(db: &DatabaseConnection, worker: SystemWorker) -> anyhow::Result<i64> {
    let txn = begin_system(db, worker).await?;
    let n = count(&txn, "SELECT COUNT(*) FROM people").await?;
    eh_store::end_read(txn).await?;
    Ok(n)
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
        0,
        "the pool is in no scope: it sees nothing"
    );
    assert_eq!(seen_by(&db, SystemWorker::Relay).await?, 3);

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

    // The scope was transaction-local: the (single) connection is back in no scope, and so is
    // it after a system-scope transaction.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM people").await?, 0);
    assert_eq!(seen_by(&db, SystemWorker::Relay).await?, 3);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM people").await?, 0);
    let r = db
        .query_one_raw(stmt(
            DbBackend::Postgres,
            "SELECT COALESCE(current_setting($1, true), '')",
            [TENANT_SETTING.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    assert_eq!(r.try_get_by_index::<String>(0)?, "");
    let e = insert(&db, "x1", "worcs")
        .await
        .expect_err("no scope, no writes");
    assert!(e.to_string().contains("row-level security"), "{e}");

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
/// own; the main pool stays in no scope; no tenant and the system scope are refused.
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
    assert_eq!(count(&db, "SELECT COUNT(*) FROM people").await?, 0);

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

    // The same ordinary role on a plain connection: no rows, no writes.
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
    let txn = begin_system(&db, SystemWorker::Migrate).await?;
    txn.execute_unprepared(
        "INSERT INTO cases (id, tenant, person_id) VALUES ('c1', 'worcs', 'w1'), ('c2', 'staffs', 's1')",
    )
    .await?;
    eh_store::commit(txn).await?;
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

/// The services' role owns nothing: it cannot lift `FORCE ROW LEVEL SECURITY`, switch row-level
/// security off, drop or replace the policy, or alter the table — in a scoped transaction, a
/// system-scope one, or none. Its writes for another council are refused by the policy's
/// `WITH CHECK`, and what it can do it does only in a scope.
#[tokio::test]
async fn the_services_role_cannot_lift_row_level_security() -> anyhow::Result<()> {
    let (_url, db) = seeded_as_services().await?;
    let r = db
        .query_one_raw(stmt(
            DbBackend::Postgres,
            "SELECT current_user::text, r.rolsuper, r.rolbypassrls,
                    EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid AND c.relname = 'people')
             FROM pg_roles r WHERE r.rolname = current_user",
            [],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    let (user, superuser, bypass, owns): (String, bool, bool, bool) = (
        r.try_get_by_index(0)?,
        r.try_get_by_index(1)?,
        r.try_get_by_index(2)?,
        r.try_get_by_index(3)?,
    );
    assert_eq!(user, eh_testkit::APP_ROLE);
    assert!(
        !superuser && !bypass && !owns,
        "{superuser} {bypass} {owns}"
    );

    for attempt in [
        "ALTER TABLE people NO FORCE ROW LEVEL SECURITY".to_string(),
        "ALTER TABLE people DISABLE ROW LEVEL SECURITY".to_string(),
        format!("DROP POLICY {TENANT_POLICY} ON people"),
        format!("ALTER POLICY {TENANT_POLICY} ON people USING (true) WITH CHECK (true)"),
        "CREATE POLICY everything ON people USING (true)".to_string(),
        "ALTER TABLE people OWNER TO CURRENT_USER".to_string(),
        "ALTER TABLE people ADD COLUMN x TEXT".to_string(),
        "DROP TABLE people".to_string(),
        "TRUNCATE people".to_string(),
    ] {
        for scope in ["none", "worcs", "system"] {
            let txn = match scope {
                "none" => eh_store::begin(&db).await?,
                "worcs" => begin_scoped(&db, "worcs").await?,
                _ => begin_system(&db, SystemWorker::Migrate).await?,
            };
            let e = txn
                .execute_unprepared(&attempt)
                .await
                .expect_err(&format!("{attempt} ({scope})"));
            assert!(
                e.to_string().contains("must be owner")
                    || e.to_string().contains("permission denied"),
                "{attempt} ({scope}): {e}"
            );
            txn.rollback().await?;
        }
    }
    // Still forced, the one policy in place.
    assert_eq!(
        policies(&db).await?,
        [
            row("eh_migrations", false, 0),
            row("notes", false, 0),
            row("people", true, 1),
        ]
    );

    // What it may do, it does in a scope: worcs' rows only, and no row for staffs.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM people").await?, 0);
    let txn = begin_scoped(&db, "worcs").await?;
    assert_eq!(tenants(&txn).await?, ["worcs", "worcs"]);
    insert(&txn, "w3", "worcs").await?;
    let e = insert(&txn, "s2", "staffs")
        .await
        .expect_err("WITH CHECK refuses another council's row");
    assert!(
        e.to_string()
            .contains("new row violates row-level security policy"),
        "{e}"
    );
    txn.rollback().await?;
    let txn = begin_scoped(&db, "worcs").await?;
    let moved = txn
        .execute_unprepared("UPDATE people SET tenant = 'staffs'")
        .await
        .expect_err("a row given to another council");
    assert!(moved.to_string().contains("row-level security"), "{moved}");
    txn.rollback().await?;
    Ok(())
}

/// Migrations run by the owner grant the services' role what it needs and nothing more; a table
/// added by a later migration is granted at that run.
#[tokio::test]
async fn the_owner_grants_the_services_role_the_tables_of_each_run() -> anyhow::Result<()> {
    let (owner_url, service_url) = eh_testkit::fresh_database_split().await?;
    let owner = pool(&owner_url).await?;
    migrate(&owner, "svc", &[V1]).await?;
    eh_store::grant(&owner, eh_testkit::APP_ROLE).await?;
    let services = pool(&service_url).await?;
    let txn = begin_scoped(&services, "worcs").await?;
    assert!(
        txn.execute_unprepared("SELECT 1 FROM cases").await.is_err(),
        "no cases table yet"
    );
    txn.rollback().await?;
    // The services' role cannot migrate (it may not create in the database).
    assert!(migrate(&services, "svc", &[V1, V2]).await.is_err());
    migrate(&owner, "svc", &[V1, V2]).await?;
    eh_store::grant(&owner, eh_testkit::APP_ROLE).await?;
    let txn = begin_scoped(&services, "worcs").await?;
    txn.execute_unprepared(
        "INSERT INTO cases (id, tenant, person_id) VALUES ('c1', 'worcs', 'w1')",
    )
    .await?;
    assert_eq!(count(&txn, "SELECT COUNT(*) FROM cases").await?, 1);
    eh_store::commit(txn).await?;
    let privileges: Vec<String> = services
        .query_all_raw(stmt(
            DbBackend::Postgres,
            "SELECT DISTINCT privilege_type::text FROM information_schema.role_table_grants
             WHERE grantee = $1 AND table_schema = $2 ORDER BY 1",
            [eh_testkit::APP_ROLE.into(), SCHEMA.into()],
        ))
        .await?
        .iter()
        .map(|r| r.try_get_by_index(0))
        .collect::<Result<_, _>>()?;
    assert_eq!(privileges, ["DELETE", "INSERT", "SELECT", "UPDATE"]);
    assert!(eh_store::grant(&owner, "no such; role").await.is_err());
    Ok(())
}

/// A system-scope transaction is named: `eh.worker` and `application_name` (what
/// `pg_stat_activity` shows) say which worker holds it, and every use is counted. Both end with
/// the transaction.
#[tokio::test]
async fn a_system_scope_transaction_names_its_worker_and_is_counted() -> anyhow::Result<()> {
    let (url, db) = seeded().await?;
    let before = eh_platform::metrics::system_scope_uses("outbox_retention");
    let txn = begin_system(&db, SystemWorker::OutboxRetention).await?;
    let r = txn
        .query_one_raw(stmt(
            DbBackend::Postgres,
            "SELECT current_setting('eh.worker'), current_setting('application_name'), pg_backend_pid()",
            [],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    let (worker, app, pid): (String, String, i32) = (
        r.try_get_by_index(0)?,
        r.try_get_by_index(1)?,
        r.try_get_by_index(2)?,
    );
    assert_eq!(
        (worker.as_str(), app.as_str()),
        ("outbox_retention", "earlyhelp:outbox_retention")
    );
    // Seen from another session, as an operator would.
    let admin = Database::connect(eh_testkit::as_superuser(&url)?).await?;
    let seen: String = admin
        .query_one_raw(stmt(
            DbBackend::Postgres,
            "SELECT application_name FROM pg_stat_activity WHERE pid = $1",
            [pid.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no such backend"))?
        .try_get_by_index(0)?;
    assert_eq!(seen, "earlyhelp:outbox_retention");
    assert_eq!(count(&txn, "SELECT COUNT(*) FROM people").await?, 3);
    eh_store::end_read(txn).await?;
    assert!(eh_platform::metrics::system_scope_uses("outbox_retention") > before);
    let r = db
        .query_one_raw(stmt(
            DbBackend::Postgres,
            "SELECT COALESCE(current_setting('eh.worker', true), ''), current_setting('application_name')",
            [],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    assert_eq!(r.try_get_by_index::<String>(0)?, "");
    assert_ne!(
        r.try_get_by_index::<String>(1)?,
        "earlyhelp:outbox_retention"
    );

    // A worker's pool of its own (connections in its scope from their start): the same, each
    // hand-out counted.
    let readers = eh_store::TenantReaders::new(db.clone());
    let sender = readers.system(SystemWorker::Sender).await?;
    let before = eh_platform::metrics::system_scope_uses("sender");
    assert_eq!(count(&sender, "SELECT COUNT(*) FROM people").await?, 3);
    assert_eq!(count(&sender, "SELECT COUNT(*) FROM people").await?, 3);
    assert!(eh_platform::metrics::system_scope_uses("sender") >= before + 2);
    let app: String = sender
        .query_one_raw(stmt(
            DbBackend::Postgres,
            "SELECT current_setting('application_name')",
            [],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?
        .try_get_by_index(0)?;
    assert_eq!(app, "earlyhelp:sender");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM people").await?, 0);
    Ok(())
}

/// The workers that may see every council's rows, exactly: a new one is a change here, and every
/// use of one in the code is listed (file and worker), so none slips in unreviewed.
#[test]
fn the_system_scope_is_for_the_named_workers_only() {
    let names: Vec<&str> = SystemWorker::ALL.iter().map(|w| w.name()).collect();
    assert_eq!(
        names,
        [
            "migrate",
            "relay",
            "outbox_retention",
            "republish",
            "casework_clocks",
            "assessment_clocks",
            "sender",
            "urgent_watch",
            "audit_verify",
            "idempotency_purge",
            "audit_no_council",
            "console_sessions",
        ]
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut uses = BTreeSet::new();
    let mut stack: Vec<std::path::PathBuf> = ["src", "crates", "services"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source directory") {
            let path = entry.expect("an entry").path();
            let rel = path
                .strip_prefix(&root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            if path.is_dir() {
                // Tests may use any worker; production code is what is listed.
                if !["tests", "benches", "target"].contains(
                    &path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default(),
                ) {
                    stack.push(path);
                }
                continue;
            }
            if rel.ends_with(".rs") && rel != "crates/store/src/lib.rs" {
                let text = std::fs::read_to_string(&path).expect("a source file");
                let text = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (i, _) in text.match_indices("SystemWorker::") {
                    let name: String = text[i + "SystemWorker::".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric())
                        .collect();
                    uses.insert((rel.clone(), name));
                }
            }
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("crates/auth/src/audit.rs", "AuditNoCouncil"),
        ("crates/auth/src/audit.rs", "AuditVerify"),
        ("crates/bus/src/relay.rs", "OutboxRetention"),
        ("crates/bus/src/relay.rs", "Relay"),
        ("crates/bus/src/relay.rs", "Republish"),
        ("crates/store/src/migrate.rs", "Migrate"),
        ("services/assessment/src/clocks.rs", "AssessmentClocks"),
        ("services/casework/src/handlers.rs", "CaseworkClocks"),
        ("services/gateway/src/lib.rs", "IdempotencyPurge"),
        ("services/gateway/src/session.rs", "ConsoleSessions"),
        ("services/notifications/src/sender.rs", "Sender"),
        ("services/notifications/src/urgent.rs", "UrgentWatch"),
    ]
    .into_iter()
    .map(|(f, w)| (f.to_string(), w.to_string()))
    .collect();
    assert_eq!(
        uses, expected,
        "system-scope uses changed: review them, then list them here"
    );
}
