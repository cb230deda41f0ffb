//! A bus door's events arriving together are handled in one transaction, each in a savepoint:
//! 30 referrals of 30 families, five of them delivered twice at the same moment, and one for a
//! council casework has no settings for (it fails after writing its case, at the service levels).
//! Each family gets one case, the duplicates are recognised, the bad event fails alone with
//! nothing of it kept, and the batch-mates commit — on SQLite and on PostgreSQL.
mod common;

use anyhow::Context;
use eh_bus::{Handled, Handler, Received};
use eh_casework::handlers::ReferralReceivedDoor;
use sea_orm::{ConnectionTrait, DatabaseConnection};

async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<(i64, i64)> {
    let row = db
        .query_one_raw(eh_store::stmt(db.get_database_backend(), sql, []))
        .await?
        .context("a row")?;
    Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?))
}

async fn referrals_arriving_together(postgres: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let casework = common::casework(postgres, dir.path()).await?;
    // The test looks in the system scope: the service's pool sees nothing outside a council's.
    let (db, ns) = (
        eh_testkit::inspector_of(&casework.ctx.db).await?,
        casework.ctx.namespace().to_string(),
    );
    let door = ReferralReceivedDoor(casework);
    let opened_in = match postgres {
        true => Some(eh_testkit::TopTransactions::watch(&db, "cases").await?),
        false => None,
    };

    let events: Vec<Received> = (0..30)
        .map(|i| common::referral(&ns, &format!("b{i}"), &format!("fam-b{i}"), false))
        .collect();
    let mut stranger = common::referral(&ns, "x1", "fam-x1", false);
    stranger.subject = format!("{ns}.nowhere.intake.referral_received");
    let deliveries: Vec<&Received> = events
        .iter()
        .chain(&events[..5])
        .chain(std::iter::once(&stranger))
        .collect();
    let results = futures::future::join_all(deliveries.iter().map(|m| door.handle(m))).await;
    let (done, duplicates, errors) =
        eh_testkit::tally(results, &Handled::Done, &Handled::Duplicate);
    assert_eq!((done, duplicates), (30, 5));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("nowhere"), "{errors:?}");

    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*), COUNT(DISTINCT family_id) FROM cases WHERE state = 'awaiting_consent'"
        )
        .await?,
        (30, 30)
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*), COUNT(*) FROM cases WHERE tenant = 'nowhere'"
        )
        .await?,
        (0, 0),
        "the failed event kept nothing"
    );
    let (claimed, _) = count(
        &db,
        &format!(
            "SELECT COUNT(*), COUNT(*) FROM eh_inbox WHERE consumer = '{}'",
            eh_casework::CONSUMER_REFERRAL_RECEIVED
        ),
    )
    .await?;
    assert_eq!(
        claimed, 30,
        "the failed event is not claimed: it is retried"
    );
    if let Some(opened_in) = opened_in {
        let (cases, transactions) = opened_in.count(&db).await?;
        assert_eq!(cases, 30, "the failed event's case went with its savepoint");
        assert!(
            transactions < 30,
            "{transactions} transactions for 30 events: not batched"
        );
    }
    // Every case's opening was announced, once.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*), COUNT(DISTINCT payload) FROM eh_outbox WHERE subject LIKE '%case_state_changed'"
        )
        .await?,
        (30, 30)
    );
    Ok(())
}

#[tokio::test]
async fn sqlite_referrals_arriving_together() -> anyhow::Result<()> {
    referrals_arriving_together(false).await
}

#[tokio::test]
async fn postgres_referrals_arriving_together() -> anyhow::Result<()> {
    referrals_arriving_together(true).await
}
