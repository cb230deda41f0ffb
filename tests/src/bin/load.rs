//! Load harness (`just bench`): publishes N consented referrals as an upstream system would and
//! measures, in both modes, throughput and per-referral latency p50/p99 for two journeys: publish
//! → acknowledgement email sent, and publish → case `ready_for_allocation` (intake → casework →
//! screening command → intake → casework) — beside two baselines measured in the same run: raw
//! JetStream publish-with-ack and raw single-row PostgreSQL inserts. Prints figures; asserts
//! nothing about time. N from EH_BENCH_N (default 2000); EH_BENCH_RUNS picks runs (e.g.
//! `distributed-slice,embedded-all`).
use earlyhelp::Target;
use eh_tests::TestApp;
use sea_orm::ConnectionTrait;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn n() -> usize {
    std::env::var("EH_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

async fn jetstream_baseline(n: usize) -> anyhow::Result<f64> {
    let client = async_nats::connect(eh_testkit::nats_url()?).await?;
    let js = async_nats::jetstream::new(client);
    let name = format!("BENCH_{}", eh_testkit::namespace().to_uppercase());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    })
    .await?;
    let payload = serde_json::to_vec(&eh_tests::referral("B", Some("b@x.example")))?;
    let start = Instant::now();
    let mut acks = Vec::with_capacity(n);
    for i in 0..n {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", i.to_string().as_str());
        acks.push(
            js.publish_with_headers(format!("{name}.x"), h, payload.clone().into())
                .await?,
        );
        if acks.len() >= 256 {
            for a in acks.drain(..) {
                a.await?;
            }
        }
    }
    for a in acks {
        a.await?;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    js.delete_stream(&name).await?;
    Ok(rate)
}

async fn postgres_baseline(n: usize) -> anyhow::Result<f64> {
    let db = sea_orm::Database::connect(eh_testkit::fresh_database().await?).await?;
    db.execute_unprepared("CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        .await?;
    let start = Instant::now();
    for i in 0..n {
        db.execute_raw(eh_store::stmt(
            db.get_database_backend(),
            "INSERT INTO t (id, body) VALUES ($1, $2)",
            [i.to_string().into(), "x".repeat(200).into()],
        ))
        .await?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// `i` spelled in letters (names rarely hold digits).
fn letters(mut i: usize) -> String {
    let mut out = String::new();
    loop {
        out.insert(0, (b'a' + (i % 26) as u8) as char);
        i /= 26;
        if i == 0 {
            return out;
        }
    }
}

/// A consented referral about family number `i`: its own names, dates of birth and postcode.
fn family_referral(reference: &str, i: usize) -> serde_json::Value {
    let mut doc = eh_tests::referral(reference, Some("load@school.example"));
    let family = format!("Lo{}", letters(i));
    let dob = chrono::NaiveDate::from_ymd_opt(2010, 1, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new((i % 4000) as u64)))
        .unwrap_or_default();
    doc["children"] = serde_json::json!([{"given_name": format!("Ch{}", letters(i * 7)),
        "family_name": family, "date_of_birth": dob.to_string()}]);
    doc["family_members"] = serde_json::json!([{"given_name": format!("Pa{}", letters(i * 11)),
        "family_name": family, "relationship": "mother", "parental_responsibility": true,
        "email": format!("parent{i}@example.org"), "safe_to_contact": true}]);
    doc["address"]["postcode"] = serde_json::json!(format!("WR{} {}AB", 1 + i % 15, i % 10));
    doc
}

/// Throughput (per second) and p50/p99 latency (ms) of one journey.
struct Journey {
    rate: f64,
    p50: f64,
    p99: f64,
}

fn journey(
    n: usize,
    secs: f64,
    latencies: impl IntoIterator<Item = i64>,
) -> anyhow::Result<Journey> {
    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    for us in latencies {
        hist.record(us.max(0) as u64)?;
    }
    Ok(Journey {
        rate: n as f64 / secs,
        p50: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99: hist.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// Runs `targets` (every service, or the first slice alone: intake and notifications) and
/// publishes `n` referrals; returns the journeys publish → email sent and, when casework runs,
/// publish → ready_for_allocation.
async fn platform(
    distributed: bool,
    targets: &[Target],
    n: usize,
) -> anyhow::Result<(Journey, Option<Journey>)> {
    let mut t = TestApp::spawn_targets(distributed, targets).await?;
    let whole = targets.contains(&Target::Casework);
    use sea_orm::ConnectionTrait as _;
    let tag = eh_testkit::namespace();
    // Every referral about a different family, so each is matched against the people held so far
    // and opens its own case.
    let docs: Vec<Vec<u8>> = (0..n)
        .map(|i| serde_json::to_vec(&family_referral(&format!("L-{tag}-{i}"), i)))
        .collect::<Result<_, _>>()?;
    let mut published: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    let start = Instant::now();
    let first_publish = chrono::Utc::now();
    let ns = t.ns();
    let msgs: Vec<eh_bus::OutboundMessage> = docs
        .into_iter()
        .enumerate()
        .map(|(i, payload)| eh_bus::OutboundMessage {
            msg_id: format!("load-{tag}-{i}"),
            subject: eh_bus::subjects::inbound(&ns, "worcs", "referral"),
            headers: Default::default(),
            payload,
        })
        .collect();
    // Published as an upstream system's async publisher would: in flight, acknowledged per batch.
    for (c, chunk) in msgs.chunks(256).enumerate() {
        let now = chrono::Utc::now();
        for i in 0..chunk.len() {
            published.insert(format!("L-{tag}-{}", c * 256 + i), now);
        }
        for r in t.app().transport.publish_batch(chunk).await {
            r?;
        }
    }
    let published_in = start.elapsed().as_secs_f64();
    let notifications = t.db("notifications").await?;
    let intake = t.db("intake").await?;
    let casework = t.db("casework").await?;
    let count = |db: &sea_orm::DatabaseConnection, sql: &'static str| {
        let db = db.clone();
        async move {
            let row = db
                .query_one_raw(eh_store::stmt(db.get_database_backend(), sql, []))
                .await?;
            Ok::<i64, anyhow::Error>(row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0))
        }
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut stored_at, mut queued_at, mut ready_at, mut sent_at) = (None, None, None, None);
    loop {
        if stored_at.is_none()
            && count(&intake, "SELECT COUNT(*) FROM referrals").await? as usize >= n
        {
            stored_at = Some(start.elapsed().as_secs_f64());
        }
        if queued_at.is_none()
            && count(
                &notifications,
                "SELECT COUNT(*) FROM messages WHERE template = 'referral_acknowledgement'",
            )
            .await? as usize
                >= n
        {
            queued_at = Some(start.elapsed().as_secs_f64());
        }
        if whole
            && ready_at.is_none()
            && count(
                &casework,
                "SELECT COUNT(*) FROM cases WHERE state = 'ready_for_allocation'",
            )
            .await? as usize
                >= n
        {
            ready_at = Some(start.elapsed().as_secs_f64());
        }
        if sent_at.is_none()
            && count(
                &notifications,
                "SELECT COUNT(*) FROM messages WHERE status = 'sent' AND template = 'referral_acknowledgement'",
            )
            .await? as usize
                >= n
        {
            sent_at = Some(start.elapsed().as_secs_f64());
        }
        if ((ready_at.is_some() || !whole) && sent_at.is_some()) || Instant::now() > deadline {
            break;
        }
        // Polling scans tables the platform writes; rarely, so the harness costs the machine
        // little. The stage rates have this resolution; the journeys' figures come from the
        // times the platform recorded (below).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = |secs: Option<f64>| {
        secs.map(|s| format!("{:.0}/s", n as f64 / s))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "  {} stages (cumulative from first publish): published {:.0}/s, stored {}, acknowledgement queued {}, email sent {}, ready for allocation {}",
        if distributed {
            "distributed"
        } else {
            "embedded"
        },
        n as f64 / published_in,
        rate(stored_at),
        rate(queued_at),
        rate(sent_at),
        rate(ready_at),
    );
    let ids: HashMap<String, String> = intake
        .query_all_raw(eh_store::stmt(
            intake.get_database_backend(),
            "SELECT id, source_reference FROM referrals",
            [],
        ))
        .await?
        .iter()
        .filter_map(|r| Some((r.try_get_by_index(0).ok()?, r.try_get_by_index(1).ok()?)))
        .collect();
    let mut to_sent = Vec::with_capacity(n);
    let mut last_sent = None;
    for r in notifications
        .query_all_raw(eh_store::stmt(
            notifications.get_database_backend(),
            "SELECT related_id, sent_at FROM messages WHERE status = 'sent' AND template = 'referral_acknowledgement'",
            [],
        ))
        .await?
    {
        let related: String = r.try_get_by_index(0)?;
        let sent: chrono::DateTime<chrono::Utc> = r.try_get_by_index(1)?;
        last_sent = last_sent.max(Some(sent));
        if let Some(p) = ids
            .get(&related)
            .and_then(|reference| published.get(reference))
        {
            to_sent.push((sent - *p).num_microseconds().unwrap_or(0));
        }
    }
    let mut to_ready = Vec::with_capacity(n);
    let mut last_ready = None;
    for r in if whole {
        casework.query_all_raw(eh_store::stmt(
            casework.get_database_backend(),
            "SELECT source_reference, updated_at FROM cases WHERE state = 'ready_for_allocation'",
            [],
        ))
        .await?
    } else {
        Vec::new()
    } {
        let reference: String = r.try_get_by_index(0)?;
        let ready: chrono::DateTime<chrono::Utc> = r.try_get_by_index(1)?;
        last_ready = last_ready.max(Some(ready));
        if let Some(p) = published.get(&reference) {
            to_ready.push((ready - *p).num_microseconds().unwrap_or(0));
        }
    }
    t.stop().await?;
    // Throughput: n over the time from the first publish to the last one recorded (sent, ready).
    let secs = |last: Option<chrono::DateTime<chrono::Utc>>, done: Option<f64>| match (last, done) {
        (Some(last), Some(_)) => {
            (last - first_publish).num_microseconds().unwrap_or(0) as f64 / 1e6
        }
        _ => elapsed,
    };
    let (sent_secs, ready_secs) = (secs(last_sent, sent_at), secs(last_ready, ready_at));
    Ok((
        journey(n, sent_secs, to_sent)?,
        whole
            .then(|| journey(n, ready_secs, to_ready))
            .transpose()?,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = n();
    println!(
        "load harness: {n} referrals per mode, {} cores",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1)
    );
    let js = jetstream_baseline(n).await?;
    let pg = postgres_baseline(n).await?;
    println!("baseline  raw JetStream publish-with-ack : {js:>9.0} msg/s");
    println!("baseline  raw PostgreSQL single-row insert: {pg:>9.0} rows/s");
    // The first slice alone (intake and notifications, as issue 2 defines it), then the whole
    // platform: every service, each referral also opening a case, consented and screened.
    let runs: [(&str, bool, &[Target]); 4] = [
        (
            "distributed slice",
            true,
            &[Target::Intake, Target::Notifications],
        ),
        ("distributed all  ", true, Target::ALL),
        (
            "embedded slice   ",
            false,
            &[Target::Intake, Target::Notifications],
        ),
        ("embedded all     ", false, Target::ALL),
    ];
    // EH_BENCH_RUNS=distributed-slice,embedded-all… picks runs (all four by default).
    let picked = std::env::var("EH_BENCH_RUNS").unwrap_or_default();
    let picked = |mode: &str| {
        let name = mode.trim().replace(' ', "-");
        picked.is_empty() || picked.split(',').any(|p| p.trim() == name)
    };
    for (mode, distributed, targets) in runs.into_iter().filter(|r| picked(r.0)) {
        let (sent, ready) = platform(distributed, targets, n).await?;
        let journeys = std::iter::once(("publish → email sent          ", sent))
            .chain(ready.map(|r| ("publish → ready_for_allocation", r)));
        for (what, j) in journeys {
            println!(
                "{mode} {what}: {:>7.0} referrals/s  p50 {:>8.1} ms  p99 {:>8.1} ms  \
                 = {:.3}× JetStream baseline, {:.3}× PostgreSQL baseline",
                j.rate,
                j.p50,
                j.p99,
                j.rate / js,
                j.rate / pg
            );
        }
    }
    Ok(())
}
