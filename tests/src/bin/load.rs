//! Load harness (`just bench`): publishes N consented referrals as an upstream system would and
//! measures, in both modes, throughput and per-referral latency p50/p99 for two journeys: publish
//! → acknowledgement email sent, publish → case `allocated` (a provider in the harness accepting
//! every offer), and publish → case `ready_for_allocation` (intake → casework →
//! screening command → intake → casework) — beside two baselines measured in the same run: raw
//! JetStream publish-with-ack and raw single-row PostgreSQL inserts. Prints figures; asserts
//! nothing about time. N from EH_BENCH_N (default 2000); EH_BENCH_RUNS picks runs (e.g.
//! `distributed-slice,embedded-all`, or `urgent` for both modes' urgent runs).
//!
//! The urgent runs (issue 17) publish the N ordinary referrals at once with EH_BENCH_URGENT
//! (default 20) significant-harm referrals spread evenly through the burst, on the urgent lane's
//! subject (`eh.<tenant>.inbound.referral.urgent`, as the README asks of upstream systems), and
//! report publish → front-door email sent for those (p50, p99, max) beside the ordinary journeys.
use earlyhelp::Target;
use eh_tests::TestApp;
use sea_orm::ConnectionTrait;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn urgent_n() -> usize {
    std::env::var("EH_BENCH_URGENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

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

/// A consented referral about family number `i`: its own names, dates of birth and postcode.
fn family_referral(reference: &str, i: usize) -> serde_json::Value {
    let mut doc = eh_tests::referral(reference, Some("load@school.example"));
    earlyhelp::demo::as_family(&mut doc, i, "Lo", &format!("parent{i}@example.org"));
    doc
}

/// An outbox row as the harness reads it: id, payload, written, published.
type OutboxRow = (
    String,
    Vec<u8>,
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// Throughput (per second) and p50/p99/max latency (ms) of one journey.
struct Journey {
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
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
        max: hist.max() as f64 / 1000.0,
    })
}

/// The figures of one run.
struct Run {
    /// Publish → acknowledgement email sent, ordinary referrals.
    sent: Journey,
    /// Publish → ready_for_allocation, when casework runs.
    ready: Option<Journey>,
    /// Publish → case `allocated` (the harness's provider accepting every offer), when casework
    /// and allocation run.
    allocated: Option<Journey>,
    /// Publish → front-door email sent, significant-harm referrals (urgent runs).
    front_door: Option<Journey>,
    /// How long after the last front-door email the last ordinary acknowledgement went (s):
    /// positive when the urgent ones overtook the backlog.
    backlog_after: Option<f64>,
}

/// Runs `targets` (every service, or the first slice alone: intake and notifications) and
/// publishes `n` referrals, with `urgent` significant-harm ones spread through them on the urgent
/// lane's subject; returns the journeys publish → email sent and, when casework runs,
/// publish → ready_for_allocation and publish → front-door email sent.
async fn platform(
    distributed: bool,
    targets: &[Target],
    n: usize,
    urgent: usize,
) -> anyhow::Result<Run> {
    let whole = targets.contains(&Target::named("casework").map_err(anyhow::Error::msg)?);
    // With allocation: a directory of one Early Help Team covering every family (WR…), with a
    // place for each, and a provider that accepts every offer as it comes.
    let mut t = TestApp::spawn_targets_configured(distributed, targets, |s, dir| {
        if !whole {
            return;
        }
        let file = dir.join("load-directory.json");
        let services = serde_json::json!([{
            "id": "load-eht", "name": "Load Early Help Team", "status": "active",
            "organization": {"id": "worcs-cc", "name": "Worcestershire County Council"}
        }]);
        if let Err(e) = std::fs::write(&file, services.to_string()) {
            eprintln!("cannot write the load directory: {e}");
        }
        if let Some(w) = s.tenants.get_mut("worcs")
            && let Ok(section) = eh_platform::config::Section::from_json(
                "tenants.worcs.allocation",
                serde_json::json!({"rule_version": "load-1", "directory": {"file": file}}),
            )
        {
            w.sections.insert("allocation".into(), section);
        }
    })
    .await?;
    let accepter = if whole {
        Some(auto_accepting_provider(&t, (n + urgent + 10) as u32).await?)
    } else {
        None
    };
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
    let mut msgs: Vec<(String, eh_bus::OutboundMessage)> = docs
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            (
                format!("L-{tag}-{i}"),
                eh_bus::OutboundMessage {
                    msg_id: format!("load-{tag}-{i}"),
                    subject: eh_bus::subjects::inbound(&ns, "worcs", "referral"),
                    headers: Default::default(),
                    payload,
                },
            )
        })
        .collect();
    // The significant-harm referrals, spread evenly through the burst (each its own family),
    // on the urgent lane's subject; inserted from the back so the positions hold.
    let mut urgent_published: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    for j in (0..urgent).rev() {
        let reference = format!("U-{tag}-{j}");
        let mut doc = family_referral(&reference, n + j);
        doc["significant_harm_risk"] = serde_json::json!(true);
        let at = (j * n + n / 2) / urgent.max(1);
        msgs.insert(
            at.min(msgs.len()),
            (
                reference,
                eh_bus::OutboundMessage {
                    msg_id: format!("load-{tag}-u{j}"),
                    subject: eh_proto::catalogue::INBOUND_REFERRAL_URGENT.subject(&ns, "worcs"),
                    headers: Default::default(),
                    payload: serde_json::to_vec(&doc)?,
                },
            ),
        );
    }
    // Published as an upstream system's async publisher would: in flight, acknowledged per batch.
    for chunk in msgs.chunks(256) {
        let now = chrono::Utc::now();
        for (reference, msg) in chunk {
            if msg.subject.ends_with(".urgent") {
                urgent_published.insert(reference.clone(), now);
            } else {
                published.insert(reference.clone(), now);
            }
        }
        let batch: Vec<eh_bus::OutboundMessage> = chunk.iter().map(|(_, m)| m.clone()).collect();
        for r in t.app().transport.publish_batch(&batch).await {
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
    let mut allocated_at = None;
    let mut front_door_at = None;
    let all = n + urgent;
    loop {
        if stored_at.is_none()
            && count(&intake, "SELECT COUNT(*) FROM referrals").await? as usize >= all
        {
            stored_at = Some(start.elapsed().as_secs_f64());
        }
        if queued_at.is_none()
            && count(
                &notifications,
                "SELECT COUNT(*) FROM messages WHERE template = 'referral_acknowledgement'",
            )
            .await? as usize
                >= all
        {
            queued_at = Some(start.elapsed().as_secs_f64());
        }
        if urgent > 0
            && front_door_at.is_none()
            && count(
                &notifications,
                "SELECT COUNT(*) FROM messages WHERE status = 'sent' AND template = 'step_up_front_door'",
            )
            .await? as usize
                >= urgent
        {
            front_door_at = Some(start.elapsed().as_secs_f64());
        }
        if whole
            && ready_at.is_none()
            && count(
                &casework,
                // Reached it (allocation may have moved the case on since).
                "SELECT COUNT(*) FROM timeline WHERE kind = 'transition' AND to_state = 'ready_for_allocation'",
            )
            .await? as usize
                >= n
        {
            ready_at = Some(start.elapsed().as_secs_f64());
        }
        if whole
            && allocated_at.is_none()
            && count(
                &casework,
                "SELECT COUNT(*) FROM timeline WHERE kind = 'transition' AND to_state = 'allocated'",
            )
            .await? as usize
                >= n
        {
            allocated_at = Some(start.elapsed().as_secs_f64());
        }
        if sent_at.is_none()
            && count(
                &notifications,
                "SELECT COUNT(*) FROM messages WHERE status = 'sent' AND template = 'referral_acknowledgement'",
            )
            .await? as usize
                >= all
        {
            sent_at = Some(start.elapsed().as_secs_f64());
        }
        let front_door_done = urgent == 0 || !whole || front_door_at.is_some();
        // An urgent run ends once the backlog of acknowledgements has drained: what it measures
        // is the front door's email against that backlog, not allocation (minutes at this N).
        if ((allocated_at.is_some() || !whole || urgent > 0)
            && sent_at.is_some()
            && front_door_done)
            || Instant::now() > deadline
        {
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
        "  {} stages (cumulative from first publish): published {:.0}/s, stored {}, acknowledgement queued {}, email sent {}, ready for allocation {}, allocated {}",
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
        rate(allocated_at),
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
    // Publish → front-door email sent, for the significant-harm referrals: the case's id is the
    // message's related id.
    let mut to_front_door = Vec::with_capacity(urgent);
    let mut last_front_door = None;
    if urgent > 0 && whole {
        let case_refs: HashMap<String, String> = casework
            .query_all_raw(eh_store::stmt(
                casework.get_database_backend(),
                "SELECT id, source_reference FROM cases WHERE state = 'stepped_up'",
                [],
            ))
            .await?
            .iter()
            .filter_map(|r| Some((r.try_get_by_index(0).ok()?, r.try_get_by_index(1).ok()?)))
            .collect();
        // Where the time went, stage by stage (cumulative from publish): admitted by intake
        // (the referral's received_at), case opened by casework, front-door email queued, sent.
        let admitted: HashMap<String, chrono::DateTime<chrono::Utc>> = intake
            .query_all_raw(eh_store::stmt(
                intake.get_database_backend(),
                "SELECT source_reference, received_at FROM referrals WHERE significant_harm_risk",
                [],
            ))
            .await?
            .iter()
            .filter_map(|r| Some((r.try_get_by_index(0).ok()?, r.try_get_by_index(1).ok()?)))
            .collect();
        let opened: HashMap<String, chrono::DateTime<chrono::Utc>> = casework
            .query_all_raw(eh_store::stmt(
                casework.get_database_backend(),
                "SELECT id, opened_at FROM cases WHERE state = 'stepped_up'",
                [],
            ))
            .await?
            .iter()
            .filter_map(|r| Some((r.try_get_by_index(0).ok()?, r.try_get_by_index(1).ok()?)))
            .collect();
        // Each hop's moment per referral (by its source reference), read from what the services
        // recorded: intake's outbox row of `referral_received.urgent` (written just before its
        // commit; marked when the relay published it), casework's inbox claim of it (its
        // transaction begun), casework's outbox row of `case_stepped_up` (written, published),
        // notifications' inbox claim of that, the front-door email queued and sent.
        type Times = HashMap<String, chrono::DateTime<chrono::Utc>>;
        let outbox = |db: sea_orm::DatabaseConnection, subject: String| async move {
            let rows = db
                .query_all_raw(eh_store::stmt(
                    db.get_database_backend(),
                    "SELECT id, payload, created_at, published_at FROM eh_outbox WHERE subject = $1",
                    [subject.into()],
                ))
                .await?;
            let mut out: Vec<OutboxRow> = Vec::new();
            for r in rows {
                out.push((
                    r.try_get_by_index(0)?,
                    r.try_get_by_index(1)?,
                    r.try_get_by_index(2)?,
                    r.try_get_by_index(3)?,
                ));
            }
            Ok::<_, anyhow::Error>(out)
        };
        let inbox = |db: sea_orm::DatabaseConnection, consumer: &'static str| async move {
            let rows = db
                .query_all_raw(eh_store::stmt(
                    db.get_database_backend(),
                    "SELECT message_key, handled_at FROM eh_inbox WHERE consumer = $1",
                    [consumer.into()],
                ))
                .await?;
            let mut out: Times = HashMap::new();
            for r in rows {
                // Inbox keys are `<council>:<event id>` (councils apart on the bus).
                let key: String = r.try_get_by_index(0)?;
                let id = key.strip_prefix("worcs:").unwrap_or(&key).to_string();
                out.insert(id, r.try_get_by_index(1)?);
            }
            Ok::<_, anyhow::Error>(out)
        };
        use prost::Message as _;
        let (mut intake_written, mut intake_published) = (Times::new(), Times::new());
        let mut by_intake_id: HashMap<String, String> = HashMap::new();
        for (id, payload, created, published) in outbox(
            intake.clone(),
            eh_proto::catalogue::REFERRAL_RECEIVED_URGENT.subject(&ns, "worcs"),
        )
        .await?
        {
            let ev = eh_proto::intake::v1::ReferralReceived::decode(payload.as_slice())?;
            let reference = ev
                .referral
                .and_then(|r| r.source)
                .map(|s| s.reference)
                .unwrap_or_default();
            intake_written.insert(reference.clone(), created);
            if let Some(p) = published {
                intake_published.insert(reference.clone(), p);
            }
            by_intake_id.insert(id, reference);
        }
        let casework_claimed: Times = inbox(
            casework.clone(),
            eh_proto::catalogue::CASEWORK_REFERRAL_RECEIVED_URGENT.consumer,
        )
        .await?
        .into_iter()
        .filter_map(|(k, at)| Some((by_intake_id.get(&k)?.clone(), at)))
        .collect();
        let (mut casework_written, mut casework_published) = (Times::new(), Times::new());
        let mut by_casework_id: HashMap<String, String> = HashMap::new();
        for (id, payload, created, published) in outbox(
            casework.clone(),
            eh_proto::catalogue::CASE_STEPPED_UP.subject(&ns, "worcs"),
        )
        .await?
        {
            let ev = eh_proto::casework::v1::CaseSteppedUp::decode(payload.as_slice())?;
            let reference = ev.case.map(|c| c.source_reference).unwrap_or_default();
            casework_written.insert(reference.clone(), created);
            if let Some(p) = published {
                casework_published.insert(reference.clone(), p);
            }
            by_casework_id.insert(id, reference);
        }
        let notifications_claimed: Times = inbox(
            notifications.clone(),
            eh_proto::catalogue::NOTIFICATIONS_CASE_STEPPED_UP.consumer,
        )
        .await?
        .into_iter()
        .filter_map(|(k, at)| Some((by_casework_id.get(&k)?.clone(), at)))
        .collect();
        const STAGES: [&str; 10] = [
            "admitted by intake",
            "intake committed",
            "intake published",
            "casework began",
            "case stepped up",
            "casework committed",
            "casework published",
            "notifications began",
            "email queued",
            "sent",
        ];
        let mut stages: [Vec<i64>; 10] = Default::default();
        for r in notifications
            .query_all_raw(eh_store::stmt(
                notifications.get_database_backend(),
                "SELECT related_id, sent_at, created_at FROM messages WHERE status = 'sent' AND template = 'step_up_front_door'",
                [],
            ))
            .await?
        {
            let related: String = r.try_get_by_index(0)?;
            let sent: chrono::DateTime<chrono::Utc> = r.try_get_by_index(1)?;
            let queued: chrono::DateTime<chrono::Utc> = r.try_get_by_index(2)?;
            let Some(reference) = case_refs.get(&related) else {
                continue;
            };
            if let Some(p) = urgent_published.get(reference) {
                last_front_door = last_front_door.max(Some(sent));
                let since = |t: chrono::DateTime<chrono::Utc>| (t - *p).num_microseconds().unwrap_or(0);
                to_front_door.push(since(sent));
                let at = [
                    admitted.get(reference).copied(),
                    intake_written.get(reference).copied(),
                    intake_published.get(reference).copied(),
                    casework_claimed.get(reference).copied(),
                    opened.get(&related).copied(),
                    casework_written.get(reference).copied(),
                    casework_published.get(reference).copied(),
                    notifications_claimed.get(reference).copied(),
                    Some(queued),
                    Some(sent),
                ];
                for (stage, at) in stages.iter_mut().zip(at) {
                    if let Some(at) = at {
                        stage.push(since(at));
                    }
                }
            }
        }
        let median = |v: &mut Vec<i64>| {
            v.sort_unstable();
            v.get(v.len() / 2).map_or(0.0, |us| *us as f64 / 1000.0)
        };
        let figures: Vec<String> = STAGES
            .iter()
            .zip(stages.iter_mut())
            .map(|(what, v)| format!("{what} {:.0}", median(v)))
            .collect();
        println!(
            "  front door, median ms from publish: {}",
            figures.join(", ")
        );
    }
    let mut to_ready = Vec::with_capacity(n);
    let mut last_ready = None;
    for r in if whole {
        casework
            .query_all_raw(eh_store::stmt(
                casework.get_database_backend(),
                "SELECT c.source_reference, t.at FROM cases c JOIN timeline t ON t.case_id = c.id
             WHERE t.kind = 'transition' AND t.to_state = 'ready_for_allocation'",
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
    let mut to_allocated = Vec::with_capacity(n);
    let mut last_allocated = None;
    for r in if whole {
        casework
            .query_all_raw(eh_store::stmt(
                casework.get_database_backend(),
                "SELECT c.source_reference, t.at FROM cases c JOIN timeline t ON t.case_id = c.id
             WHERE t.kind = 'transition' AND t.to_state = 'allocated'",
                [],
            ))
            .await?
    } else {
        Vec::new()
    } {
        let reference: String = r.try_get_by_index(0)?;
        let at: chrono::DateTime<chrono::Utc> = r.try_get_by_index(1)?;
        if let Some(p) = published.get(&reference) {
            last_allocated = last_allocated.max(Some(at));
            to_allocated.push((at - *p).num_microseconds().unwrap_or(0));
        }
    }
    if let Some(a) = accepter {
        a.abort();
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
    let allocated_secs = secs(last_allocated, allocated_at);
    if to_front_door.len() < urgent && whole {
        println!(
            "  only {} of {urgent} front-door emails were sent within the run",
            to_front_door.len()
        );
    }
    let front_door = (urgent > 0 && whole && !to_front_door.is_empty())
        .then(|| {
            let span = secs(last_front_door, front_door_at);
            journey(to_front_door.len(), span, to_front_door)
        })
        .transpose()?;
    let backlog_after = match (last_sent, last_front_door) {
        (Some(s), Some(f)) if urgent > 0 => {
            Some((s - f).num_microseconds().unwrap_or(0) as f64 / 1e6)
        }
        _ => None,
    };
    Ok(Run {
        sent: journey(n, sent_secs, to_sent)?,
        ready: (whole && (urgent == 0 || ready_at.is_some()))
            .then(|| journey(n, ready_secs, to_ready))
            .transpose()?,
        allocated: (whole && !to_allocated.is_empty() && (urgent == 0 || allocated_at.is_some()))
            .then(|| journey(to_allocated.len(), allocated_secs, to_allocated))
            .transpose()?,
        front_door,
        backlog_after,
    })
}

/// Imports the load directory, gives its team a place for every case, and starts a provider that
/// accepts every open offer as soon as it sees it (polling every 20 ms, as the team manager).
async fn auto_accepting_provider(
    t: &TestApp,
    capacity: u32,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use eh_proto::allocation::v1 as apb;
    use eh_proto::allocation::v1::allocation_service_client::AllocationServiceClient;
    let manager = t.token("worcs", "load-manager", &["team_manager"]);
    let mut alloc = AllocationServiceClient::new(t.channel().await?);
    alloc
        .import_directory(eh_tests::with_token(
            apb::ImportDirectoryRequest {
                tenant: "worcs".into(),
            },
            &manager,
        ))
        .await?;
    alloc
        .set_service_terms(eh_tests::with_token(
            apb::SetServiceTermsRequest {
                tenant: "worcs".into(),
                service_id: "load-eht".into(),
                terms: Some(apb::ServiceTerms {
                    kind: "early_help_team".into(),
                    coverage: vec!["WR".into()],
                    capacity,
                    ..Default::default()
                }),
            },
            &manager,
        ))
        .await?;
    Ok(tokio::spawn(async move {
        loop {
            let open = alloc
                .list_offers(eh_tests::with_token(
                    apb::ListOffersRequest {
                        tenant: "worcs".into(),
                        status: "offered".into(),
                        ..Default::default()
                    },
                    &manager,
                ))
                .await
                .map(|r| r.into_inner().offers)
                .unwrap_or_default();
            for o in open {
                let _ = alloc
                    .accept_offer(eh_tests::with_token(
                        apb::AcceptOfferRequest {
                            tenant: "worcs".into(),
                            offer_id: o.offer_id,
                        },
                        &manager,
                    ))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }))
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
    // The urgent runs: the whole platform with significant-harm referrals in the burst.
    let slice: &[Target] = &[
        Target(&eh_intake::Service),
        Target(&eh_notifications::Service),
    ];
    let urgent = urgent_n();
    let runs: [(&str, bool, &[Target], usize); 6] = [
        ("distributed slice ", true, slice, 0),
        ("distributed all   ", true, Target::ALL, 0),
        ("distributed urgent", true, Target::ALL, urgent),
        ("embedded slice    ", false, slice, 0),
        ("embedded all      ", false, Target::ALL, 0),
        ("embedded urgent   ", false, Target::ALL, urgent),
    ];
    // EH_BENCH_RUNS=distributed-slice,embedded-all… picks runs (all by default); a word alone
    // (`urgent`, `slice`, `all`) picks it in both modes.
    let picked = std::env::var("EH_BENCH_RUNS").unwrap_or_default();
    let picked = |mode: &str| {
        let name = mode.trim().replace(' ', "-");
        picked.is_empty()
            || picked.split(',').any(|p| {
                let p = p.trim();
                p == name || name.ends_with(&format!("-{p}"))
            })
    };
    for (mode, distributed, targets, urgent) in runs.into_iter().filter(|r| picked(r.0)) {
        if urgent > 0 {
            println!(
                "{mode}: {n} ordinary referrals with {urgent} significant-harm ones spread through the burst"
            );
        }
        let run = platform(distributed, targets, n, urgent).await?;
        if let Some(f) = &run.front_door {
            println!(
                "{mode} publish → front-door email sent (significant harm, {urgent}): p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms",
                f.p50, f.p99, f.max
            );
        }
        if let Some(after) = run.backlog_after {
            println!(
                "{mode} the last ordinary acknowledgement was sent {after:.1} s after the last front-door email"
            );
        }
        let journeys = std::iter::once(("publish → email sent          ", run.sent))
            .chain(run.ready.map(|r| ("publish → ready_for_allocation", r)))
            .chain(run.allocated.map(|r| ("publish → allocated           ", r)));
        for (what, j) in journeys {
            println!(
                "{mode} {what}: {:>7.0} referrals/s  p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  \
                 = {:.3}× JetStream baseline, {:.3}× PostgreSQL baseline",
                j.rate,
                j.p50,
                j.p99,
                j.max,
                j.rate / js,
                j.rate / pg
            );
        }
    }
    Ok(())
}
