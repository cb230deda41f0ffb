//! A bus door's events arriving together are handled in one transaction, each in a savepoint:
//! 30 referrals of 30 families, five of them delivered twice at the same moment, and one for a
//! council casework has no settings for (it fails after writing its case, at the service levels).
//! Each family gets one case, the duplicates are recognised, the bad event fails alone with
//! nothing of it kept, and the batch-mates commit — on SQLite and on PostgreSQL.
mod common;

use anyhow::Context;
use eh_bus::embedded::EmbeddedTransport;
use eh_bus::{Handled, Handler, Received, ServiceContext};
use eh_casework::handlers::{Casework, ReferralReceivedDoor};
use eh_casework::migrations;
use eh_platform::clock::SystemClock;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::sync::Arc;

async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<(i64, i64)> {
    let row = db
        .query_one_raw(eh_store::stmt(db.get_database_backend(), sql, []))
        .await?
        .context("a row")?;
    Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?))
}

async fn referrals_arriving_together(postgres: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let settings = Arc::new(eh_testkit::settings(false, dir.path(), None, None).await?);
    let location = eh_testkit::service_location(postgres, dir.path(), "casework").await?;
    let db = eh_store::connect(&location).await?;
    eh_store::migrate(&db, "casework", &migrations()).await?;
    let bus_db = eh_store::connect(&eh_testkit::sqlite(dir.path(), "bus.sqlite")).await?;
    let ctx = ServiceContext::new(
        eh_casework::SERVICE,
        settings.clone(),
        db.clone(),
        Arc::new(EmbeddedTransport::open(bus_db).await?),
        Arc::new(SystemClock),
    );
    let ns = ctx.namespace().to_string();
    let calendars = Casework::calendars(&settings).map_err(anyhow::Error::msg)?;
    let door = ReferralReceivedDoor(Casework::new(ctx, calendars));
    if postgres {
        // The top-level transaction each case was opened in (a savepoint reports its parent's).
        db.execute_unprepared(
            "CREATE TABLE cases_opened_in (top_xid TEXT NOT NULL);
             CREATE FUNCTION note_top_xid() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO cases_opened_in VALUES (pg_current_xact_id()::text); RETURN NEW; END $$;
             CREATE TRIGGER note_top_xid AFTER INSERT ON cases
               FOR EACH ROW EXECUTE FUNCTION note_top_xid()",
        )
        .await?;
    }

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
    let (mut done, mut duplicates, mut errors) = (0, 0, Vec::new());
    for r in results {
        match r {
            Ok(Handled::Done) => done += 1,
            Ok(Handled::Duplicate) => duplicates += 1,
            Err(e) => errors.push(e.to_string()),
        }
    }
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
    if postgres {
        let (cases, transactions) = count(
            &db,
            "SELECT COUNT(*), COUNT(DISTINCT top_xid) FROM cases_opened_in",
        )
        .await?;
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
