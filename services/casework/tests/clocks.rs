//! Casework's clocks against real databases (a SQLite file, and PostgreSQL from `eh_testkit`),
//! with two "replicas" — two independent Casework instances on their own connections to the same
//! database — firing at the same moment. Time is a ManualClock; the outbox is read straight from
//! the database.
mod common;

use chrono::{DateTime, TimeZone, Utc};
use common::{received, referral, start};
use eh_bus::embedded::EmbeddedTransport;
use eh_bus::{Handled, Handler, ServiceContext};
use eh_casework::domain::State;
use eh_casework::handlers::{Casework, ConsentRecordedDoor, ReferralReceivedDoor};
use eh_casework::{migrations, store};
use eh_platform::clock::ManualClock;
use eh_proto::consent::v1 as consent;
use eh_proto::intake::v1 as intake;
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::sync::Arc;

struct Env {
    replicas: Vec<Casework>,
    clock: Arc<ManualClock>,
    ns: String,
    _dir: tempfile::TempDir,
}

async fn env(postgres: bool) -> anyhow::Result<Env> {
    env_closed_on(postgres, &[]).await
}

/// An environment whose council (worcs) is also closed on `closures`.
async fn env_closed_on(postgres: bool, closures: &[chrono::NaiveDate]) -> anyhow::Result<Env> {
    let dir = tempfile::tempdir()?;
    let mut settings = eh_testkit::settings(false, dir.path(), None, None).await?;
    if let Some(w) = settings.tenants.get_mut("worcs") {
        w.sections.insert(
            "calendar".into(),
            eh_platform::config::Section::from_json(
                "tenants.worcs.calendar",
                serde_json::json!({ "closure_days": closures }),
            )?,
        );
    }
    let settings = Arc::new(settings);
    let location = eh_testkit::service_location(postgres, dir.path(), "casework").await?;
    let clock = Arc::new(ManualClock::new(start()));
    let bus_db = eh_store::connect(&eh_testkit::sqlite(dir.path(), "bus.sqlite")).await?;
    let transport = Arc::new(EmbeddedTransport::open(bus_db).await?);
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let db = eh_store::connect(&location).await?;
        eh_store::migrate(&db, "casework", &migrations()).await?;
        let ctx = ServiceContext::new(
            eh_casework::SERVICE,
            settings.clone(),
            db,
            transport.clone(),
            clock.clone(),
        );
        let calendars = Casework::calendars(&ctx.settings).map_err(anyhow::Error::msg)?;
        replicas.push(Casework::new(ctx, calendars));
    }
    let ns = settings.bus.namespace.clone();
    Ok(Env {
        replicas,
        clock,
        ns,
        _dir: dir,
    })
}

async fn outbox_count(db: &DatabaseConnection, suffix: &str) -> anyhow::Result<usize> {
    let rows = db
        .query_all_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT subject FROM eh_outbox",
            [],
        ))
        .await?;
    let mut n = 0;
    for r in rows {
        let s: String = r.try_get_by_index(0)?;
        if s.ends_with(suffix) {
            n += 1;
        }
    }
    Ok(n)
}

async fn only_case(cw: &Casework) -> anyhow::Result<store::CaseRow> {
    let cases = store::list_cases(
        &eh_testkit::inspector_of(&cw.ctx.db).await?,
        "worcs",
        None,
        None,
        10,
    )
    .await?;
    assert_eq!(cases.len(), 1);
    Ok(cases.into_iter().next().expect("one case"))
}

async fn due(cw: &Casework, case_id: &str, kind: &str) -> anyhow::Result<DateTime<Utc>> {
    let t = store::timers(&eh_testkit::inspector_of(&cw.ctx.db).await?, case_id)
        .await?
        .into_iter()
        .find(|t| t.kind == kind)
        .expect("timer");
    Ok(DateTime::parse_from_rfc3339(&t.due_at)?.with_timezone(&Utc))
}

/// Both replicas fire at once; returns how many fired in all.
async fn fire_both(e: &Env) -> anyhow::Result<usize> {
    let (a, b) = tokio::join!(e.replicas[0].fire_due(100), e.replicas[1].fire_due(100));
    Ok(a? + b?)
}

async fn clocks_fire_once_and_never_early(postgres: bool) -> anyhow::Result<()> {
    let e = env(postgres).await?;
    let a = &e.replicas[0];
    let door = ReferralReceivedDoor(a.clone());
    assert_eq!(
        door.handle(&referral(&e.ns, "R1", "fam-1", false)).await?,
        Handled::Done
    );
    // Redelivered: absorbed by the inbox.
    assert_eq!(
        door.handle(&referral(&e.ns, "R1", "fam-1", false)).await?,
        Handled::Duplicate
    );
    let case = only_case(a).await?;
    assert_eq!(case.state, State::AwaitingConsent);
    let chase = due(a, &case.id, "consent_chase").await?;
    let close = due(a, &case.id, "consent_close").await?;
    // 5 working days from Mon 2 March: the 5th is Mon 9 March; overdue from the midnight after.
    assert_eq!(
        chase,
        Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 0)
            .single()
            .expect("d")
    );
    // 20 working days: the 20th is Mon 30 March; overdue from midnight, UK time — British
    // Summer Time since Sun 29 March, so 23:00 UTC.
    assert_eq!(
        close,
        Utc.with_ymd_and_hms(2026, 3, 30, 23, 0, 0)
            .single()
            .expect("d")
    );

    // A second before: nothing fires, on either replica.
    e.clock
        .advance(chase - start() - chrono::Duration::seconds(1));
    assert_eq!(fire_both(&e).await?, 0);
    assert_eq!(
        outbox_count(
            &eh_testkit::inspector_of(&a.ctx.db).await?,
            ".casework.consent_requested"
        )
        .await?,
        0
    );
    // Due: both replicas try at once; exactly one chase.
    e.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(fire_both(&e).await?, 1);
    assert_eq!(fire_both(&e).await?, 0, "fired already");
    assert_eq!(
        outbox_count(
            &eh_testkit::inspector_of(&a.ctx.db).await?,
            ".casework.consent_requested"
        )
        .await?,
        1
    );
    assert_eq!(only_case(a).await?.state, State::AwaitingConsent);
    // Close: once, and the case is closed for lack of consent.
    e.clock.advance(close - chase);
    assert_eq!(fire_both(&e).await?, 1);
    assert_eq!(fire_both(&e).await?, 0);
    assert_eq!(
        outbox_count(
            &eh_testkit::inspector_of(&a.ctx.db).await?,
            ".casework.case_closed"
        )
        .await?,
        1
    );
    let closed = only_case(a).await?;
    assert_eq!(closed.state, State::ClosedNoConsent);
    let timeline = store::timeline(&eh_testkit::inspector_of(&a.ctx.db).await?, &closed.id).await?;
    assert_eq!(
        timeline
            .iter()
            .filter(|s| s.kind == "consent_chased")
            .count(),
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_fire_once_and_never_early_sqlite() -> anyhow::Result<()> {
    clocks_fire_once_and_never_early(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clocks_fire_once_and_never_early_postgres() -> anyhow::Result<()> {
    clocks_fire_once_and_never_early(true).await
}

async fn consent_cancels_the_consent_clocks(postgres: bool) -> anyhow::Result<()> {
    let e = env(postgres).await?;
    let a = &e.replicas[0];
    ReferralReceivedDoor(a.clone())
        .handle(&referral(&e.ns, "R2", "fam-2", false))
        .await?;
    // Consent arrives on the other replica.
    let rec = consent::ConsentRecorded {
        record: Some(consent::ConsentRecord {
            record_id: "rec-1".into(),
            tenant: "worcs".into(),
            consent: Some(consent::Consent {
                family_id: "fam-2".into(),
                given_by: "Jo Bloggs".into(),
                method: "signed".into(),
                purposes: vec!["assessment".into(), "sharing".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let msg = received(
        format!("{}.worcs.consent.consent_recorded", e.ns),
        "evt-rec-1",
        rec.encode_to_vec(),
    );
    assert_eq!(
        ConsentRecordedDoor(e.replicas[1].clone())
            .handle(&msg)
            .await?,
        Handled::Done
    );
    let case = only_case(a).await?;
    assert_eq!(case.state, State::Screening);
    assert_eq!(
        outbox_count(
            &eh_testkit::inspector_of(&a.ctx.db).await?,
            ".intake.cmd.screen_referral"
        )
        .await?,
        1
    );
    let timers = store::timers(&eh_testkit::inspector_of(&a.ctx.db).await?, &case.id).await?;
    let status = |k: &str| {
        timers
            .iter()
            .find(|t| t.kind == k)
            .map(|t| t.status.clone())
            .unwrap_or_default()
    };
    assert_eq!(status("consent_chase"), "cancelled");
    assert_eq!(status("consent_close"), "cancelled");
    assert_eq!(status("screening_decision"), "pending");
    // Weeks later: only the screening clock is left to run out — a breach, not a closure.
    e.clock.advance(chrono::Duration::days(40));
    assert_eq!(fire_both(&e).await?, 1);
    assert_eq!(
        outbox_count(
            &eh_testkit::inspector_of(&a.ctx.db).await?,
            ".casework.service_level_breached"
        )
        .await?,
        1
    );
    assert_eq!(
        outbox_count(
            &eh_testkit::inspector_of(&a.ctx.db).await?,
            ".casework.case_closed"
        )
        .await?,
        0
    );
    assert_eq!(only_case(a).await?.state, State::Screening);
    assert!(
        a.ctx.metrics.encode().contains(
            "service_level_breaches_total{tenant=\"worcs\",clock=\"screening_decision\"} 1"
        ) || e.replicas[1].ctx.metrics.encode().contains(
            "service_level_breaches_total{tenant=\"worcs\",clock=\"screening_decision\"} 1"
        ),
        "the breach is counted"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_cancels_the_consent_clocks_sqlite() -> anyhow::Result<()> {
    consent_cancels_the_consent_clocks(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_cancels_the_consent_clocks_postgres() -> anyhow::Result<()> {
    consent_cancels_the_consent_clocks(true).await
}

/// A consent record seen before the referral (events travel on different streams) still counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_before_the_referral_is_not_missed() -> anyhow::Result<()> {
    let e = env(true).await?;
    let a = &e.replicas[0];
    let rec = consent::ConsentRecorded {
        record: Some(consent::ConsentRecord {
            record_id: "rec-early".into(),
            consent: Some(consent::Consent {
                family_id: "fam-3".into(),
                purposes: vec!["assessment".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    ConsentRecordedDoor(a.clone())
        .handle(&received(
            format!("{}.worcs.consent.consent_recorded", e.ns),
            "evt-early",
            rec.encode_to_vec(),
        ))
        .await?;
    ReferralReceivedDoor(e.replicas[1].clone())
        .handle(&referral(&e.ns, "R3", "fam-3", false))
        .await?;
    assert_eq!(only_case(a).await?.state, State::Screening);
    Ok(())
}

/// The council's own closure days push its clocks back; another council's are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closure_days_move_the_clocks() -> anyhow::Result<()> {
    let d = |day| chrono::NaiveDate::from_ymd_opt(2026, 3, day).expect("date");
    let e = env_closed_on(false, &[d(3), d(4)]).await?;
    let a = &e.replicas[0];
    ReferralReceivedDoor(a.clone())
        .handle(&referral(&e.ns, "R4", "fam-4", false))
        .await?;
    let case = only_case(a).await?;
    // Closed Tue 3 and Wed 4 March: counted from Mon 2 March, the working days are 5, 6, 9, 10
    // and 11 — the 5th is Wed 11 March, overdue from the midnight after.
    assert_eq!(
        due(a, &case.id, "consent_chase").await?,
        Utc.with_ymd_and_hms(2026, 3, 12, 0, 0, 0)
            .single()
            .expect("d")
    );
    Ok(())
}

async fn rows(db: &DatabaseConnection, table: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(eh_store::stmt(
            db.get_database_backend(),
            &format!("SELECT COUNT(*) FROM {table}"),
            [],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    Ok(row.try_get_by_index(0)?)
}

/// Messages casework can never act on are refused for good (so they are dead-lettered with the
/// reason), and leave nothing behind: no case, no event, no inbox entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_refused_and_change_nothing() -> anyhow::Result<()> {
    use eh_bus::consumer::HandlerError;
    use eh_casework::handlers::ScreeningDecidedDoor;
    let e = env(true).await?;
    let a = &e.replicas[0];
    let not_protobuf = received(
        format!("{}.worcs.intake.referral_received", e.ns),
        "evt-bad-1",
        b"{\"referral_id\": 1}".to_vec(),
    );
    let err = ReferralReceivedDoor(a.clone())
        .handle(&not_protobuf)
        .await
        .expect_err("not a ReferralReceived");
    assert!(
        matches!(&err, HandlerError::Permanent(r) if r.contains("ReferralReceived")),
        "{err}"
    );
    let decided = |case_id: &str, outcome: &str| {
        received(
            format!("{}.worcs.intake.screening_decided", e.ns),
            &format!("evt-{case_id}-{outcome}"),
            intake::ScreeningDecided {
                case_id: case_id.into(),
                outcome: outcome.into(),
                ..Default::default()
            }
            .encode_to_vec(),
        )
    };
    let err = ScreeningDecidedDoor(a.clone())
        .handle(&decided("no-such-case", "accepted_for_early_help"))
        .await
        .expect_err("unknown case");
    assert!(
        matches!(&err, HandlerError::Permanent(r) if r.contains("no-such-case")),
        "{err}"
    );
    let err = ScreeningDecidedDoor(a.clone())
        .handle(&decided("no-such-case", "probably_fine"))
        .await
        .expect_err("unknown outcome");
    assert!(
        matches!(&err, HandlerError::Permanent(r) if r.contains("probably_fine")),
        "{err}"
    );
    // No tenant in the subject.
    let err = ReferralReceivedDoor(a.clone())
        .handle(&received("elsewhere".into(), "evt-bad-2", vec![]))
        .await
        .expect_err("no tenant");
    assert!(matches!(err, HandlerError::Permanent(_)));
    for table in ["cases", "timeline", "timers", "eh_outbox", "eh_inbox"] {
        assert_eq!(
            rows(&eh_testkit::inspector_of(&a.ctx.db).await?, table).await?,
            0,
            "{table}"
        );
    }
    Ok(())
}
