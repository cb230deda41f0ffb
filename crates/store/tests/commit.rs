//! A commit is reported only for work that was kept. On real PostgreSQL (and SQLite), with the
//! failures an outage causes: a batch whose connection the server terminates between two jobs, a
//! batch whose transaction is aborted outside a job's savepoint, a transaction rolled back behind
//! the driver's back. In each, sqlx alone (under sea-orm) answers the commit with `Ok` although
//! nothing was kept — the control tests pin that — and `eh_store::commit` / `together` refuse.
#![allow(clippy::disallowed_methods)] // the control tests use the plain commit on purpose
use eh_store::{Location, Together, Within, connect, stmt, together};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, TransactionTrait,
};
use std::sync::Mutex;

async fn postgres() -> anyhow::Result<(String, DatabaseConnection)> {
    let url = eh_testkit::fresh_database().await?;
    let db = connect(&Location {
        url: url.clone(),
        schema: Some("svc".into()),
        max_connections: 2,
    })
    .await?;
    db.execute_unprepared("CREATE TABLE kept (k TEXT PRIMARY KEY)")
        .await?;
    Ok((url, db))
}

async fn sqlite(dir: &std::path::Path) -> anyhow::Result<DatabaseConnection> {
    let db = connect(&eh_testkit::sqlite(dir, "t.sqlite")).await?;
    db.execute_unprepared("CREATE TABLE kept (k TEXT PRIMARY KEY)")
        .await?;
    Ok(db)
}

async fn kept(db: &DatabaseConnection) -> anyhow::Result<i64> {
    let r = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM kept",
            [],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no count"))?;
    Ok(r.try_get_by_index(0)?)
}

async fn keep(db: &impl ConnectionTrait, k: &str) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "INSERT INTO kept (k) VALUES ($1)",
        [k.into()],
    ))
    .await
    .map(|_| ())
}

/// What goes wrong between two jobs of a batch.
#[derive(Clone, Copy)]
enum Fault {
    /// The server terminates the batch's connection (an outage, a failover).
    Terminated,
    /// A statement fails on the batch's transaction itself, outside any job's savepoint.
    Aborted,
}

/// Jobs that each keep one row in a savepoint; the job named "fault" first causes `fault`.
struct Keeper {
    fault: Fault,
    admin: String,
    pid: Mutex<Option<i32>>,
}

#[async_trait::async_trait]
impl Together<String> for Keeper {
    type Output = Result<(), DbErr>;

    fn tenant<'j>(&self, _job: &'j String) -> &'j str {
        "worcs"
    }

    async fn first(&self, txn: &DatabaseTransaction, _jobs: &[String]) -> Result<(), DbErr> {
        let r = txn
            .query_one_raw(stmt(DbBackend::Postgres, "SELECT pg_backend_pid()", []))
            .await?
            .ok_or_else(|| DbErr::Custom("no pid".into()))?;
        *self.pid.lock().unwrap() = Some(r.try_get_by_index(0)?);
        Ok(())
    }

    async fn each(&self, within: Within<'_>, job: &String) -> Result<(), DbErr> {
        if job == "fault" {
            match (self.fault, within) {
                (Fault::Terminated, _) => {
                    let pid = self.pid.lock().unwrap().expect("first ran");
                    let admin = sea_orm::Database::connect(self.admin.as_str()).await?;
                    admin
                        .execute_raw(stmt(
                            DbBackend::Postgres,
                            "SELECT pg_terminate_backend($1, 5000)",
                            [pid.into()],
                        ))
                        .await?;
                    admin.close().await?;
                }
                (Fault::Aborted, Within::Batch(txn)) => {
                    let _ = txn.execute_unprepared("SELECT 1/0").await;
                }
                (Fault::Aborted, Within::Db(..)) => {}
            }
        }
        let txn = within.begin().await?;
        keep(&txn, job).await?;
        within.commit(txn).await
    }
}

fn jobs() -> Vec<String> {
    ["a", "b", "fault", "c", "d"].map(String::from).to_vec()
}

async fn batch_with(fault: Fault) -> anyhow::Result<(DatabaseConnection, Keeper)> {
    let (url, db) = postgres().await?;
    let keeper = Keeper {
        fault,
        admin: eh_testkit::as_superuser(&url)?,
        pid: Mutex::new(None),
    };
    Ok((db, keeper))
}

#[tokio::test]
async fn a_batch_whose_connection_is_terminated_mid_way_is_not_reported_committed()
-> anyhow::Result<()> {
    let (db, keeper) = batch_with(Fault::Terminated).await?;
    let answer = together(&db, &jobs(), &keeper).await;
    let rows = kept(&db).await?;
    assert!(
        answer.is_err(),
        "the batch was answered {answer:?} although {rows} of 5 rows were kept"
    );
    assert_eq!(rows, 0, "a failed batch keeps nothing");
    Ok(())
}

#[tokio::test]
async fn a_batch_aborted_outside_its_savepoints_is_not_reported_committed() -> anyhow::Result<()> {
    let (db, keeper) = batch_with(Fault::Aborted).await?;
    let answer = together(&db, &jobs(), &keeper).await;
    let rows = kept(&db).await?;
    assert!(
        answer.is_err(),
        "the batch was answered {answer:?} although {rows} rows were kept"
    );
    // The jobs after the fault may have run in transactions of their own (sqlx lost count of
    // the batch's): whatever they kept, they kept whole — and the batch answered for nothing.
    assert!(rows <= 2, "{rows} rows kept");
    Ok(())
}

/// The control: the same batch through sea-orm's plain commit answers `Ok` for jobs whose rows
/// are gone. If this starts failing, sqlx has fixed its savepoint bookkeeping — keep the check
/// anyway (PostgreSQL's `COMMIT` of an aborted transaction still answers without an error).
#[tokio::test]
async fn sqlx_alone_reports_a_terminated_batch_as_committed() -> anyhow::Result<()> {
    let (db, keeper) = batch_with(Fault::Terminated).await?;
    let txn = db.begin().await?;
    keeper.first(&txn, &[]).await?;
    let mut answers = Vec::new();
    for job in jobs() {
        answers.push(keeper.each(Within::Batch(&txn), &job).await.is_ok());
    }
    let committed = txn.commit().await;
    assert!(committed.is_ok(), "sqlx now refuses: {committed:?}");
    assert_eq!(answers, [true, true, false, false, false]);
    assert_eq!(kept(&db).await?, 0, "yet jobs a and b answered ok");
    Ok(())
}

async fn rolled_back_behind_the_drivers_back(db: &DatabaseConnection) -> anyhow::Result<()> {
    let txn = eh_store::begin(db).await?;
    keep(&txn, "x").await?;
    txn.execute_unprepared("ROLLBACK").await?;
    let answer = eh_store::commit(txn).await;
    assert!(answer.is_err(), "{answer:?}");
    assert_eq!(kept(db).await?, 0);
    // The connection is usable afterwards, and a sound transaction commits.
    let txn = eh_store::begin(db).await?;
    keep(&txn, "y").await?;
    eh_store::commit(txn).await?;
    assert_eq!(kept(db).await?, 1);
    Ok(())
}

#[tokio::test]
async fn postgres_a_transaction_rolled_back_behind_the_drivers_back_is_not_committed()
-> anyhow::Result<()> {
    let (_, db) = postgres().await?;
    rolled_back_behind_the_drivers_back(&db).await
}

#[tokio::test]
async fn sqlite_a_transaction_rolled_back_behind_the_drivers_back_is_not_committed()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = sqlite(dir.path()).await?;
    rolled_back_behind_the_drivers_back(&db).await
}

/// On SQLite a transaction's mark is a row of a connection-local table. A read ended by
/// `end_read` must not leave its mark behind: a later transaction that lost its own (rolled back
/// behind the driver's back, another begun in its place) would find the read's and be vouched for.
#[tokio::test]
async fn sqlite_a_read_leaves_no_mark_to_vouch_for_a_later_transaction() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = sqlite(dir.path()).await?;
    let read = eh_store::begin_scoped(&db, "worcs").await?;
    read.query_one_raw(stmt(DbBackend::Sqlite, "SELECT COUNT(*) FROM kept", []))
        .await?;
    eh_store::end_read(read).await?;

    let txn = eh_store::begin(&db).await?;
    txn.execute_unprepared("ROLLBACK").await?;
    txn.execute_unprepared("BEGIN").await?;
    keep(&txn, "x").await?;
    let answer = eh_store::commit(txn).await;
    assert!(answer.is_err(), "{answer:?}");
    assert_eq!(kept(&db).await?, 0);
    Ok(())
}

/// PostgreSQL answers `COMMIT` in an aborted transaction with `ROLLBACK`, no error: a statement
/// whose error was swallowed must not let the commit answer for the rest.
#[tokio::test]
async fn postgres_an_aborted_transaction_is_not_reported_committed() -> anyhow::Result<()> {
    let (_, db) = postgres().await?;
    let plain = db.begin().await?;
    keep(&plain, "x").await?;
    assert!(keep(&plain, "x").await.is_err(), "a duplicate key");
    assert!(plain.commit().await.is_ok(), "the control: COMMIT says ok");
    assert_eq!(kept(&db).await?, 0, "…and kept nothing");

    let txn = eh_store::begin(&db).await?;
    keep(&txn, "x").await?;
    assert!(keep(&txn, "x").await.is_err());
    assert!(eh_store::commit(txn).await.is_err());
    assert_eq!(kept(&db).await?, 0);
    Ok(())
}

/// Sound work commits as before, on both backends, scoped or not, in a batch or alone.
#[tokio::test]
async fn sound_transactions_and_batches_commit() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_, pg) = postgres().await?;
    for db in [pg, sqlite(dir.path()).await?] {
        struct Plain;
        #[async_trait::async_trait]
        impl Together<String> for Plain {
            type Output = Result<(), DbErr>;
            fn tenant<'j>(&self, _job: &'j String) -> &'j str {
                "worcs"
            }
            async fn each(&self, within: Within<'_>, job: &String) -> Result<(), DbErr> {
                let txn = within.begin().await?;
                keep(&txn, job).await?;
                within.commit(txn).await
            }
        }
        let jobs: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        let answers = together(&db, &jobs, &Plain).await?;
        assert!(answers.iter().all(Result::is_ok));
        together(&db, &["alone".to_string()], &Plain).await?[0].clone()?;
        let txn = eh_store::begin_scoped(&db, "worcs").await?;
        keep(&txn, "scoped").await?;
        eh_store::commit(txn).await?;
        assert_eq!(kept(&db).await?, 7);
    }
    Ok(())
}

/// An outage's errors are told apart from the work's own: connection lost, server unreachable.
#[tokio::test]
async fn errors_of_an_unreachable_database_are_transient() -> anyhow::Result<()> {
    let (url, db) = postgres().await?;
    let duplicate = {
        keep(&db, "d").await?;
        keep(&db, "d").await.expect_err("duplicate")
    };
    assert!(!eh_store::is_transient(&duplicate), "{duplicate}");

    let (proxy, via) = eh_testkit::Cuttable::in_front_of(&url).await?;
    let through = connect(&Location {
        url: via,
        schema: Some("svc".into()),
        max_connections: 1,
    })
    .await?;
    keep(&through, "through").await?;
    let txn = eh_store::begin(&through).await?;
    proxy.cut();
    let lost = keep(&txn, "lost")
        .await
        .expect_err("the connection is gone");
    assert!(eh_store::is_transient(&lost), "{lost:?}");
    drop(txn);
    let unreachable = keep(&through, "later").await.expect_err("nothing answers");
    assert!(eh_store::is_transient(&unreachable), "{unreachable:?}");
    proxy.mend();
    keep(&through, "back").await?;
    assert_eq!(kept(&db).await?, 3);
    Ok(())
}
