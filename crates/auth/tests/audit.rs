//! The audit trail on both backends: one chain per council, every concurrent call recorded, and
//! an edited or deleted entry found by `verify`.
use eh_auth::{AuditEntry, Auditor, Decision};
use eh_store::stmt;
use sea_orm::{ConnectionTrait, DatabaseConnection};

async fn trail(postgres: bool, dir: &std::path::Path) -> anyhow::Result<DatabaseConnection> {
    let loc = eh_testkit::service_location(postgres, dir, "audit").await?;
    let db = eh_store::connect(&loc).await?;
    eh_store::migrate(&db, "audit", eh_auth::audit::MIGRATIONS).await?;
    Ok(db)
}

fn entry(tenant: &str, i: usize) -> AuditEntry {
    AuditEntry {
        tenant: tenant.into(),
        actor: format!("person:{i}"),
        role: "practitioner".into(),
        action: "get_case".into(),
        record: format!("case:{i}"),
        purpose: "casework".into(),
        decision: if i.is_multiple_of(5) {
            Decision::Denied
        } else {
            Decision::Allowed
        },
        reason: "same tenant".into(),
    }
}

/// (seq, prev_hash, hash) of `tenant`'s entries, in order.
async fn links(
    db: &DatabaseConnection,
    tenant: &str,
) -> anyhow::Result<Vec<(i64, String, String)>> {
    // The services' pool sees nothing outside a council's scope: the test looks in the system
    // scope.
    let db = eh_testkit::inspector_of(db).await?;
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT seq, prev_hash, hash FROM eh_audit WHERE tenant = $1 ORDER BY seq",
            [tenant.into()],
        ))
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get_by_index(0)?,
                r.try_get_by_index(1)?,
                r.try_get_by_index(2)?,
            ))
        })
        .collect::<Result<_, sea_orm::DbErr>>()?)
}

async fn concurrent_calls_of_two_councils_each_form_one_unbroken_chain(
    postgres: bool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = trail(postgres, dir.path()).await?;
    // Two auditors on one database stand for two replicas of a service.
    let replicas = [Auditor::new(db.clone()), Auditor::new(db.clone())];
    let calls = (0..240).map(|i| {
        let auditor = replicas[i % 2].clone();
        let tenant = if i.is_multiple_of(3) {
            "staffs"
        } else {
            "worcs"
        };
        tokio::spawn(async move { auditor.record(entry(tenant, i)).await })
    });
    for call in futures::future::join_all(calls).await {
        call??;
    }
    for (tenant, n) in [("worcs", 160), ("staffs", 80)] {
        let chain = links(&db, tenant).await?;
        assert_eq!(chain.len(), n, "{tenant}: every call recorded");
        assert_eq!(chain[0].1, "genesis", "{tenant}'s chain starts on its own");
        for pair in chain.windows(2) {
            assert_eq!(
                pair[1].1, pair[0].2,
                "{tenant}: seq {} links to its council's previous entry",
                pair[1].0
            );
        }
    }
    assert_eq!(replicas[0].verify().await?, None);
    let denied = replicas[1]
        .entries("worcs")
        .await?
        .into_iter()
        .filter(|e| e.3 == "denied")
        .count();
    assert_eq!(
        denied,
        (0..240_usize)
            .filter(|i| !i.is_multiple_of(3) && i.is_multiple_of(5))
            .count()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_of_two_councils_each_form_one_unbroken_chain_on_sqlite()
-> anyhow::Result<()> {
    concurrent_calls_of_two_councils_each_form_one_unbroken_chain(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_of_two_councils_each_form_one_unbroken_chain_on_postgres()
-> anyhow::Result<()> {
    concurrent_calls_of_two_councils_each_form_one_unbroken_chain(true).await
}

async fn an_edited_or_deleted_entry_is_found(postgres: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = trail(postgres, dir.path()).await?;
    let auditor = Auditor::new(db.clone());
    for i in 0..6 {
        auditor.record(entry("worcs", i)).await?;
        auditor.record(entry("staffs", i)).await?;
    }
    assert_eq!(auditor.verify().await?, None);
    let staffs = links(&db, "staffs").await?;
    let worcs = links(&db, "worcs").await?;
    let b = db.get_database_backend();
    // Someone with write access to the database, under no council's scope.
    let db = eh_testkit::inspector_of(&db).await?;

    // A denial rewritten as allowed.
    let edited = staffs[0].0;
    db.execute_raw(stmt(
        b,
        "UPDATE eh_audit SET decision = 'allowed' WHERE seq = $1",
        [edited.into()],
    ))
    .await?;
    assert_eq!(auditor.verify().await?, Some(edited), "the edited entry");
    db.execute_raw(stmt(
        b,
        "UPDATE eh_audit SET decision = 'denied' WHERE seq = $1",
        [edited.into()],
    ))
    .await?;
    assert_eq!(auditor.verify().await?, None, "restored");

    // An entry moved to another council's chain: it does not link there.
    let moved = staffs[5].0;
    db.execute_raw(stmt(
        b,
        "UPDATE eh_audit SET tenant = 'worcs' WHERE seq = $1",
        [moved.into()],
    ))
    .await?;
    assert_eq!(auditor.verify().await?, Some(moved), "the moved entry");
    db.execute_raw(stmt(
        b,
        "UPDATE eh_audit SET tenant = 'staffs' WHERE seq = $1",
        [moved.into()],
    ))
    .await?;
    assert_eq!(auditor.verify().await?, None, "restored");

    // An entry removed from the middle of a council's chain: the council's next entry no longer
    // links, though entries of the other council lie between them.
    db.execute_raw(stmt(
        b,
        "DELETE FROM eh_audit WHERE seq = $1",
        [worcs[2].0.into()],
    ))
    .await?;
    assert_eq!(
        auditor.verify().await?,
        Some(worcs[3].0),
        "the entry after the gap"
    );
    Ok(())
}

#[tokio::test]
async fn an_edited_or_deleted_entry_is_found_on_sqlite() -> anyhow::Result<()> {
    an_edited_or_deleted_entry_is_found(false).await
}

#[tokio::test]
async fn an_edited_or_deleted_entry_is_found_on_postgres() -> anyhow::Result<()> {
    an_edited_or_deleted_entry_is_found(true).await
}

/// Councils never wait on each other: while another replica holds council A's chain (its head
/// row, mid-append), council B's entries are written at once; A's wait, and follow when it is
/// released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_council_held_mid_append_does_not_hold_up_another_on_postgres() -> anyhow::Result<()> {
    use std::time::Duration;
    let dir = tempfile::tempdir()?;
    let db = trail(true, dir.path()).await?;
    let auditor = Auditor::new(db.clone());
    auditor.record(entry("worcs", 1)).await?;
    auditor.record(entry("staffs", 1)).await?;
    let b = db.get_database_backend();
    let held = eh_store::begin_scoped(&db, "worcs").await?;
    held.query_one_raw(stmt(
        b,
        "SELECT hash FROM eh_audit_head WHERE tenant = $1 FOR UPDATE",
        ["worcs".into()],
    ))
    .await?;
    tokio::time::timeout(Duration::from_secs(5), auditor.record(entry("staffs", 2)))
        .await
        .map_err(|_| anyhow::anyhow!("staffs waited on worcs's chain"))??;
    let worcs = tokio::spawn({
        let auditor = auditor.clone();
        async move { auditor.record(entry("worcs", 2)).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!worcs.is_finished(), "worcs's append waits for its chain");
    eh_store::commit(held).await?;
    tokio::time::timeout(Duration::from_secs(5), worcs).await???;
    assert_eq!(auditor.verify().await?, None);
    assert_eq!(links(&db, "worcs").await?.len(), 2);
    assert_eq!(links(&db, "staffs").await?.len(), 2);
    Ok(())
}
