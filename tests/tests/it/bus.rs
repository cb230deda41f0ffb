//! The bus on its own, in both transports: poison messages are dead-lettered after N attempts with
//! the reason while other messages keep flowing, and an operator can replay them.
use async_trait::async_trait;
use eh_bus::consumer::{self, ConsumerOptions, Handled, Handler, HandlerError};
use eh_bus::transport::ConsumerSpec;
use eh_bus::{Faults, OutboundMessage, Received, Transport, dlq, subjects};
use eh_platform::Metrics;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The NATS JetStream transport on the test server.
async fn nats() -> anyhow::Result<eh_bus::nats::NatsTransport> {
    Ok(
        eh_bus::nats::NatsTransport::connect(eh_bus::nats::NatsOptions {
            url: eh_testkit::nats_url()?,
            name: "test".into(),
            credentials_file: None,
            ca_file: None,
            replicas: 1,
            max_age: Duration::from_secs(3600),
        })
        .await?,
    )
}

/// The embedded transport on a SQLite file under `dir`.
async fn embedded(dir: &std::path::Path) -> anyhow::Result<eh_bus::embedded::EmbeddedTransport> {
    let db = eh_store::connect(&eh_testkit::sqlite(dir, "bus.sqlite")).await?;
    Ok(eh_bus::embedded::EmbeddedTransport::open(db).await?)
}

/// Runs `handler` as consumer `durable` of everything intake publishes in `ns`: `concurrency`
/// at once, three attempts with short backoffs.
fn spawn_consumer(
    transport: &Arc<dyn Transport>,
    ns: &str,
    stream: eh_bus::StreamSpec,
    durable: &str,
    concurrency: usize,
    handler: Arc<dyn Handler>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    spawn_consumer_with(
        transport,
        ns,
        stream,
        durable,
        concurrency,
        handler,
        Arc::new(Metrics::new()),
        stop,
    )
}

/// [`spawn_consumer`], counting in `metrics`.
#[allow(clippy::too_many_arguments)]
fn spawn_consumer_with(
    transport: &Arc<dyn Transport>,
    ns: &str,
    stream: eh_bus::StreamSpec,
    durable: &str,
    concurrency: usize,
    handler: Arc<dyn Handler>,
    metrics: Arc<Metrics>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let opts = ConsumerOptions {
        spec: ConsumerSpec {
            durable: durable.into(),
            stream,
            filter_subject: format!("{ns}.*.intake.>"),
            ack_wait: Duration::from_secs(5),
        },
        namespace: ns.into(),
        concurrency,
        max_deliver: 3,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(100),
        urgent: false,
    };
    tokio::spawn(consumer::run(
        transport.clone(),
        opts,
        handler,
        metrics,
        Arc::new(Faults::default()),
        stop.clone(),
    ))
}

/// An intake `thing_happened` event of worcs with id `id`.
fn thing(ns: &str, id: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        msg_id: id.into(),
        subject: subjects::event(ns, "worcs", "intake", "thing_happened"),
        headers: [("Eh-Id".to_string(), id.to_string())].into(),
        payload: body.as_bytes().to_vec(),
    }
}

/// Fails every message whose payload is "poison"; records the rest.
struct Picky {
    seen: Mutex<Vec<String>>,
    attempts: Mutex<u64>,
}

#[async_trait]
impl Handler for Picky {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError> {
        let body = String::from_utf8_lossy(&msg.payload).to_string();
        if body == "poison" {
            *self.attempts.lock().expect("lock") += 1;
            return Err(HandlerError::Retryable("cannot digest poison".into()));
        }
        self.seen.lock().expect("lock").push(body);
        Ok(Handled::Done)
    }
}

async fn poison(transport: Arc<dyn Transport>) -> anyhow::Result<()> {
    let ns = eh_testkit::namespace();
    let stream = subjects::service_stream(&ns, "intake");
    transport
        .ensure_streams(&[stream.clone(), subjects::dead_letter_stream(&ns)])
        .await?;
    let handler = Arc::new(Picky {
        seen: Mutex::new(vec![]),
        attempts: Mutex::new(0),
    });
    let stop = CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let task = spawn_consumer_with(
        &transport,
        &ns,
        stream,
        "poison_test",
        4,
        handler.clone(),
        metrics.clone(),
        &stop,
    );
    transport.publish(&thing(&ns, "m-0", "poison")).await?;
    for i in 1..=5 {
        transport
            .publish(&thing(&ns, &format!("m-{i}"), &format!("good-{i}")))
            .await?;
    }
    let letters = eh_testkit::eventually(Duration::from_secs(20), "a dead letter", || async {
        let l = dlq::list(transport.as_ref(), &ns, 10).await?;
        Ok((!l.is_empty()).then_some(l))
    })
    .await?;
    eh_testkit::eventually(Duration::from_secs(10), "the good messages", || async {
        Ok((handler.seen.lock().expect("lock").len() == 5).then_some(()))
    })
    .await?;
    assert_eq!(letters.len(), 1);
    let d = &letters[0];
    assert_eq!(
        d.original_subject,
        subjects::event(&ns, "worcs", "intake", "thing_happened")
    );
    assert_eq!(d.consumer, "poison_test");
    assert_eq!(d.attempts, 3);
    assert!(d.reason.contains("cannot digest poison"), "{}", d.reason);
    assert_eq!(
        d.headers.get("Eh-Id").map(String::as_str),
        Some("m-0"),
        "original headers kept"
    );
    assert_eq!(
        *handler.attempts.lock().expect("lock"),
        3,
        "tried exactly max_deliver times"
    );

    // The consumer's gauge of what it has held: set as it parked.
    eh_testkit::eventually(Duration::from_secs(5), "the held gauge", || async {
        Ok((held_gauge(&metrics, "poison_test") == Some(1)).then_some(()))
    })
    .await?;

    // Replay: delivered again to the consumer, removed from the dead letters. It fails again
    // (at once: well inside NATS's two-minute de-duplication window) and is parked again — kept,
    // not dropped as a duplicate of its first parking.
    dlq::replay(transport.as_ref(), &ns, d.seq).await?;
    let again = eh_testkit::eventually(Duration::from_secs(20), "parked again", || async {
        let l = dlq::list(transport.as_ref(), &ns, 10).await?;
        Ok(l.into_iter().find(|l| l.seq != d.seq))
    })
    .await?;
    assert_eq!(*handler.attempts.lock().expect("lock"), 6);
    assert_eq!(again.headers.get("Eh-Id").map(String::as_str), Some("m-0"));
    assert_eq!(dlq::list(transport.as_ref(), &ns, 10).await?.len(), 1);
    stop.cancel();
    task.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_poison_message_is_dead_lettered_and_others_flow() -> anyhow::Result<()> {
    poison(Arc::new(nats().await?)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_poison_message_is_dead_lettered_and_others_flow() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    poison(Arc::new(embedded(dir.path()).await?)).await
}

/// Takes up messages in `start` (recording their order), then answers each after a pause that
/// varies, so they finish out of order.
struct Ordered {
    started: Mutex<Vec<String>>,
    finished: Mutex<usize>,
}

#[async_trait]
impl Handler for Ordered {
    async fn handle(&self, _msg: &Received) -> Result<Handled, HandlerError> {
        unreachable!("the consumer starts messages")
    }

    fn start(self: Arc<Self>, msg: &Received) -> consumer::Pending {
        let body = String::from_utf8_lossy(&msg.payload).to_string();
        let pause = Duration::from_millis(body.len() as u64 % 3 * 7);
        self.started.lock().expect("lock").push(body);
        Box::pin(async move {
            tokio::time::sleep(pause).await;
            *self.finished.lock().expect("lock") += 1;
            Ok(Handled::Done)
        })
    }
}

/// A consumer handling up to 64 messages at once still takes them up in delivery order (what
/// a batching handler relies on to keep the stream's order).
async fn delivery_order(transport: Arc<dyn Transport>) -> anyhow::Result<()> {
    let ns = eh_testkit::namespace();
    let stream = subjects::service_stream(&ns, "intake");
    transport
        .ensure_streams(std::slice::from_ref(&stream))
        .await?;
    let handler = Arc::new(Ordered {
        started: Mutex::new(vec![]),
        finished: Mutex::new(0),
    });
    let n = 300;
    let bodies: Vec<String> = (0..n)
        .map(|i| format!("m{}{i}", "x".repeat(i % 5)))
        .collect();
    let msgs: Vec<OutboundMessage> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| thing(&ns, &format!("o-{i}"), body))
        .collect();
    for r in transport.publish_batch(&msgs).await {
        r?;
    }
    let stop = CancellationToken::new();
    let task = spawn_consumer(
        &transport,
        &ns,
        stream,
        "order_test",
        64,
        handler.clone(),
        &stop,
    );
    eh_testkit::eventually(Duration::from_secs(20), "every message handled", || async {
        Ok((*handler.finished.lock().expect("lock") == n).then_some(()))
    })
    .await?;
    stop.cancel();
    task.await?;
    assert_eq!(*handler.started.lock().expect("lock"), bodies);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_messages_are_taken_up_in_delivery_order() -> anyhow::Result<()> {
    delivery_order(Arc::new(nats().await?)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_messages_are_taken_up_in_delivery_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    delivery_order(Arc::new(embedded(dir.path()).await?)).await
}

/// The embedded bus keeps messages for the retention window only, and never drops one a consumer
/// has still to settle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_retention_deletes_settled_messages_only() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let embedded = Arc::new(embedded(dir.path()).await?);
    let bus: Arc<dyn Transport> = embedded.clone();
    let ns = eh_testkit::namespace();
    let stream = subjects::service_stream(&ns, "intake");
    let mut sub = bus
        .subscribe(&ConsumerSpec {
            durable: "keeper".into(),
            stream: stream.clone(),
            filter_subject: format!("{ns}.*.intake.settled"),
            ack_wait: Duration::from_secs(30),
        })
        .await?;
    for (id, event) in [("m-1", "settled"), ("m-2", "settled"), ("m-3", "pending")] {
        bus.publish(&OutboundMessage {
            msg_id: id.into(),
            subject: subjects::event(&ns, "worcs", "intake", event),
            headers: Default::default(),
            payload: id.as_bytes().to_vec(),
        })
        .await?;
    }
    // A second consumer still has m-3 to settle (and the settled ones, until it acks them).
    let mut late = bus
        .subscribe(&ConsumerSpec {
            durable: "late".into(),
            stream: stream.clone(),
            filter_subject: format!("{ns}.*.intake.pending"),
            ack_wait: Duration::from_secs(30),
        })
        .await?;
    let got = eh_tests::collect(&mut sub, 2, Duration::from_secs(5)).await?;
    assert_eq!(got.len(), 2);
    // Inside the window nothing goes.
    assert_eq!(embedded.sweep(Duration::from_secs(3600)).await?, 0);
    // Past it, the two settled messages go; the pending one stays.
    assert_eq!(embedded.sweep(Duration::ZERO).await?, 2);
    let left: Vec<String> = bus
        .list(&stream, 100)
        .await?
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m.payload).to_string())
        .collect();
    assert_eq!(left, vec!["m-3"]);
    let got = eh_tests::collect(&mut late, 1, Duration::from_secs(5)).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(embedded.sweep(Duration::ZERO).await?, 1);
    assert!(bus.list(&stream, 100).await?.is_empty());
    Ok(())
}

/// Says the database is away for its first `away` tries, then handles the message; notes which
/// delivery of the message each try saw.
struct Outage {
    away: usize,
    tries: Mutex<Vec<u64>>,
    done: Mutex<usize>,
}

#[async_trait]
impl Handler for Outage {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError> {
        let mut tries = self.tries.lock().expect("lock");
        tries.push(msg.delivered);
        if tries.len() <= self.away {
            return Err(HandlerError::Unavailable("connection refused".into()));
        }
        *self.done.lock().expect("lock") += 1;
        Ok(Handled::Done)
    }
}

/// A dependency away for longer than every attempt the consumer allows (and than its ack wait)
/// is waited out: the message is kept — never redelivered, never dead-lettered — and handled once
/// when the dependency is back.
async fn outage_is_waited_out(transport: Arc<dyn Transport>) -> anyhow::Result<()> {
    let ns = eh_testkit::namespace();
    let stream = subjects::service_stream(&ns, "intake");
    transport
        .ensure_streams(&[stream.clone(), subjects::dead_letter_stream(&ns)])
        .await?;
    // max_deliver is 3 and ack_wait 5 s: ten tries at backoffs of up to 1.6 s outlast both.
    let handler = Arc::new(Outage {
        away: 10,
        tries: Mutex::new(vec![]),
        done: Mutex::new(0),
    });
    let stop = CancellationToken::new();
    let task = spawn_consumer(
        &transport,
        &ns,
        stream,
        "outage_test",
        2,
        handler.clone(),
        &stop,
    );
    transport.publish(&thing(&ns, "o-1", "kept")).await?;
    eh_testkit::eventually(
        Duration::from_secs(60),
        "handled after the outage",
        || async { Ok((*handler.done.lock().expect("lock") == 1).then_some(())) },
    )
    .await?;
    // Long enough for a wrongly settled delivery to come back.
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.cancel();
    task.await?;
    let tries = handler.tries.lock().expect("lock").clone();
    assert_eq!(tries.len(), 11, "{tries:?}");
    assert!(tries.iter().all(|&d| d == 1), "redelivered: {tries:?}");
    assert_eq!(*handler.done.lock().expect("lock"), 1);
    assert!(dlq::list(transport.as_ref(), &ns, 10).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_an_outage_is_waited_out_not_dead_lettered() -> anyhow::Result<()> {
    outage_is_waited_out(Arc::new(nats().await?)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_an_outage_is_waited_out_not_dead_lettered() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    outage_is_waited_out(Arc::new(embedded(dir.path()).await?)).await
}

/// Two processes of one installation share the embedded bus's file (two connections): while one
/// publishes in batches, the other's consumer leases and acks between those commits. Every
/// message arrives, and no lease or publish fails with SQLite's "database is locked" (a
/// transaction that reads and then writes cannot wait for the other connection's commit; the
/// transport's transactions write first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_two_connections_to_one_bus_file_publish_and_consume_together()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let publisher: Arc<dyn Transport> = Arc::new(embedded(dir.path()).await?);
    let reader: Arc<dyn Transport> = Arc::new(embedded(dir.path()).await?);
    let ns = eh_testkit::namespace();
    let mut sub = reader
        .subscribe(&ConsumerSpec {
            durable: "reader".into(),
            stream: subjects::service_stream(&ns, "intake"),
            filter_subject: format!("{ns}.*.intake.>"),
            ack_wait: Duration::from_secs(30),
        })
        .await?;
    const BATCHES: usize = 400;
    const PER_BATCH: usize = 2;
    let publishing = {
        let ns = ns.clone();
        tokio::spawn(async move {
            for b in 0..BATCHES {
                let msgs: Vec<OutboundMessage> = (0..PER_BATCH)
                    .map(|i| thing(&ns, &format!("m-{b}-{i}"), "x"))
                    .collect();
                for r in publisher.publish_batch(&msgs).await {
                    r?;
                }
            }
            anyhow::Ok(())
        })
    };
    let got = eh_tests::collect(&mut sub, BATCHES * PER_BATCH, Duration::from_secs(60)).await?;
    publishing.await??;
    let ids: std::collections::HashSet<String> = got
        .iter()
        .filter_map(|m| m.headers.get("Eh-Id").cloned())
        .collect();
    assert_eq!(got.len(), BATCHES * PER_BATCH);
    assert_eq!(ids.len(), BATCHES * PER_BATCH, "each message once");
    Ok(())
}

/// `earlyhelp_dead_letters_held{consumer}` as `metrics` exports it.
fn held_gauge(metrics: &Metrics, consumer: &str) -> Option<i64> {
    let line = format!("earlyhelp_dead_letters_held{{consumer=\"{consumer}\"}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&line).and_then(|v| v.trim().parse().ok()))
}

/// A delivery of `event` (stream position `stream_seq`) of worcs's intake commands.
fn delivery(ns: &str, event: &str, stream_seq: u64) -> Received {
    Received {
        subject: format!("{ns}.worcs.intake.cmd.screen_referral"),
        headers: [
            ("Eh-Id".to_string(), event.to_string()),
            ("Eh-Tenant".to_string(), "worcs".to_string()),
        ]
        .into(),
        payload: b"not a command".to_vec().into(),
        delivered: 5,
        stream_seq,
    }
}

/// The same message parked twice (delivered twice from the stream: published again, or replayed
/// and failing again) is kept twice; the same parking published twice (a retried park of one
/// delivery) is kept once. Held counts follow, per consumer.
async fn parked_twice(transport: Arc<dyn Transport>) -> anyhow::Result<()> {
    let ns = eh_testkit::namespace();
    let consumer = "intake_screen_referral";
    dlq::park(
        transport.as_ref(),
        &ns,
        consumer,
        &delivery(&ns, "e-1", 7),
        "bad",
    )
    .await?;
    // The retry of that very park: dropped.
    dlq::park(
        transport.as_ref(),
        &ns,
        consumer,
        &delivery(&ns, "e-1", 7),
        "bad",
    )
    .await?;
    // The same event from another position in the stream: a second parking, kept.
    dlq::park(
        transport.as_ref(),
        &ns,
        consumer,
        &delivery(&ns, "e-1", 9),
        "bad",
    )
    .await?;
    // Another consumer's parking of the same delivery: its own.
    dlq::park(
        transport.as_ref(),
        &ns,
        "other",
        &delivery(&ns, "e-1", 7),
        "bad",
    )
    .await?;
    let letters = dlq::list(transport.as_ref(), &ns, 10).await?;
    assert_eq!(letters.len(), 3, "{letters:?}");
    let mine: Vec<_> = letters.iter().filter(|l| l.consumer == consumer).collect();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|l| l.headers["Eh-Id"] == "e-1"));
    assert_eq!(
        mine.iter()
            .map(|l| l.headers[dlq::H_STREAM_SEQ].as_str())
            .collect::<Vec<_>>(),
        ["7", "9"]
    );
    assert_eq!(dlq::held(transport.as_ref(), &ns, consumer).await?, 2);
    assert_eq!(dlq::held(transport.as_ref(), &ns, "other").await?, 1);
    assert_eq!(dlq::held(transport.as_ref(), &ns, "nobody").await?, 0);
    let metrics = Metrics::new();
    dlq::report_held(transport.as_ref(), &ns, consumer, &metrics).await?;
    assert_eq!(held_gauge(&metrics, consumer), Some(2));
    // Discarded: gone, and the gauge follows at its next refresh.
    dlq::discard(transport.as_ref(), &ns, mine[0].seq).await?;
    dlq::report_held(transport.as_ref(), &ns, consumer, &metrics).await?;
    assert_eq!(held_gauge(&metrics, consumer), Some(1));
    let left = dlq::list(transport.as_ref(), &ns, 10).await?;
    assert!(left.iter().all(|l| l.seq != mine[0].seq), "{left:?}");
    assert_eq!(left.len(), 2);
    assert!(matches!(
        dlq::discard(transport.as_ref(), &ns, mine[0].seq).await,
        Err(eh_bus::Error::NotFound(_))
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_message_parked_twice_is_kept_twice() -> anyhow::Result<()> {
    parked_twice(Arc::new(nats().await?)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_message_parked_twice_is_kept_twice() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    parked_twice(Arc::new(embedded(dir.path()).await?)).await
}

/// The dead-letter stream has no `max_age`, while the event streams keep the replay window; a
/// dead-letter stream created when dead letters still expired is updated to keep them, with
/// what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_dead_letters_never_expire_and_an_old_stream_is_updated() -> anyhow::Result<()> {
    let ns = eh_testkit::namespace();
    let client = async_nats::connect(eh_testkit::nats_url()?).await?;
    let js = async_nats::jetstream::new(client);
    let spec = subjects::dead_letter_stream(&ns);
    // As the platform created it before: the replay window of 72 hours.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        max_age: Duration::from_secs(72 * 3600),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    js.publish(format!("{ns}.dlq.old"), "parked before".into())
        .await?
        .await?;
    let transport: Arc<dyn Transport> = Arc::new(nats().await?);
    dlq::park(
        transport.as_ref(),
        &ns,
        "c",
        &delivery(&ns, "e-1", 3),
        "bad",
    )
    .await?;
    let mut dlq_stream = js.get_stream(&spec.name).await?;
    let info = dlq_stream.info().await?;
    assert_eq!(info.config.max_age, Duration::ZERO, "dead letters expire");
    assert_eq!(info.state.messages, 2, "the earlier dead letter kept");
    assert_eq!(dlq::list(transport.as_ref(), &ns, 10).await?.len(), 2);
    // A fresh dead-letter stream is made without one too; the event streams keep the window.
    let ns2 = eh_testkit::namespace();
    let intake = subjects::service_stream(&ns2, "intake");
    transport
        .ensure_streams(&[intake.clone(), subjects::dead_letter_stream(&ns2)])
        .await?;
    let mut fresh = js
        .get_stream(&subjects::dead_letter_stream(&ns2).name)
        .await?;
    assert_eq!(fresh.info().await?.config.max_age, Duration::ZERO);
    let mut events = js.get_stream(&intake.name).await?;
    assert_eq!(
        events.info().await?.config.max_age,
        Duration::from_secs(3600)
    );
    Ok(())
}

/// The embedded retention sweep deletes settled messages past the window but never a dead
/// letter, however old — also when run by a process that has not declared the streams itself
/// (the kept streams are recorded in the bus file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sweep_never_deletes_dead_letters() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = Arc::new(embedded(dir.path()).await?);
    let bus: Arc<dyn Transport> = first.clone();
    let ns = eh_testkit::namespace();
    dlq::park(bus.as_ref(), &ns, "c", &delivery(&ns, "e-1", 3), "bad").await?;
    bus.publish(&thing(&ns, "m-1", "settled")).await?;
    assert_eq!(first.sweep(Duration::ZERO).await?, 1, "the event goes");
    assert_eq!(dlq::list(bus.as_ref(), &ns, 10).await?.len(), 1);
    let another = embedded(dir.path()).await?;
    assert_eq!(another.sweep(Duration::ZERO).await?, 0);
    assert_eq!(dlq::list(bus.as_ref(), &ns, 10).await?.len(), 1);
    // run_retention records the kept streams before its first sweep, so a dead letter parked by
    // a version that did not record them is kept too.
    let ns3 = eh_testkit::namespace();
    bus.publish(&OutboundMessage {
        msg_id: "old-park".into(),
        subject: subjects::dead_letter(&ns3, "c"),
        headers: Default::default(),
        payload: b"parked before".to_vec(),
    })
    .await?;
    let stop = CancellationToken::new();
    let sweeper = tokio::spawn(Arc::new(another).run_retention(
        Duration::ZERO,
        Duration::from_secs(3600),
        vec![subjects::dead_letter_stream(&ns3)],
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    sweeper.await?;
    assert_eq!(dlq::list(bus.as_ref(), &ns3, 10).await?.len(), 1);
    Ok(())
}

/// An operator discards one dead letter and replays another (`earlyhelp dlq discard|replay`):
/// each is written to the audit trail of the service whose consumer parked it — who, which
/// consumer, event, subject and sequence, and why — before it is done; wrong input does nothing
/// and writes nothing.
async fn operator_settles_dead_letters(distributed: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let settings = eh_testkit::settings(distributed, dir.path(), None, None).await?;
    let ns = settings.bus.namespace.clone();
    let transport = earlyhelp::app::transport(&settings, None).await?;
    let intake = earlyhelp::Target::named("intake").map_err(anyhow::Error::msg)?;
    let consumer = "intake_screen_referral";
    dlq::park(
        transport.as_ref(),
        &ns,
        consumer,
        &delivery(&ns, "e-1", 7),
        "bad",
    )
    .await?;
    dlq::park(
        transport.as_ref(),
        &ns,
        consumer,
        &delivery(&ns, "e-2", 8),
        "bad",
    )
    .await?;
    let letters = dlq::list(transport.as_ref(), &ns, 10).await?;
    let (first, second) = (letters[0].seq, letters[1].seq);
    use earlyhelp::dlq::{Action, act};

    // The service's audit trail is not there yet: refused, nothing done.
    let e = act(
        &settings,
        transport.as_ref(),
        first,
        Action::Discard,
        "alice",
        "dup",
        None,
    )
    .await
    .expect_err("no audit trail")
    .to_string();
    assert!(e.contains("earlyhelp migrate --target intake"), "{e}");
    earlyhelp::app::migrate(&settings, intake).await?;
    // Wrong input: refused, nothing done.
    for (seq, by, reason, service, says) in [
        (first, "alice", " ", None, "reason"),
        (first, "", "dup", None, "operator"),
        (first, "alice", "two\nlines", None, "one line"),
        (999_999, "alice", "dup", None, "no dead letter 999999"),
        (first, "alice", "dup", Some("nosuch"), "unknown target"),
    ] {
        let e = act(
            &settings,
            transport.as_ref(),
            seq,
            Action::Discard,
            by,
            reason,
            service,
        )
        .await
        .expect_err("refused")
        .to_string();
        assert!(e.contains(says), "{e}");
    }
    assert_eq!(dlq::held(transport.as_ref(), &ns, consumer).await?, 2);
    let loc = eh_store::Location::for_service(&settings, "intake")?;
    let db = eh_store::connect(&loc).await?;
    // Keyed as the operator's command keys its entries (the settings' key), not with whatever
    // key another test of this process may have installed.
    let key = eh_auth::audit::AuditKey::from_settings(&settings).map_err(anyhow::Error::msg)?;
    let auditor = eh_auth::Auditor::with_key(db, key);
    assert!(auditor.entries("worcs").await?.is_empty());

    let d = act(
        &settings,
        transport.as_ref(),
        first,
        Action::Discard,
        "alice",
        "duplicate of a referral handled by hand",
        None,
    )
    .await?;
    assert_eq!(d.headers["Eh-Id"], "e-1");
    transport
        .ensure_streams(&[subjects::service_stream(&ns, "intake")])
        .await?;
    act(
        &settings,
        transport.as_ref(),
        second,
        Action::Replay,
        "bob",
        "fixed",
        None,
    )
    .await?;
    assert!(dlq::list(transport.as_ref(), &ns, 10).await?.is_empty());
    assert_eq!(dlq::held(transport.as_ref(), &ns, consumer).await?, 0);
    let back = transport
        .list(&subjects::service_stream(&ns, "intake"), 10)
        .await?;
    assert!(
        back.iter().any(
            |m| m.headers.get("Eh-Id").map(String::as_str) == Some("e-2")
                && m.subject == format!("{ns}.worcs.intake.cmd.screen_referral")
        ),
        "{back:?}"
    );
    let entries = auditor.entries("worcs").await?;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let (actor, action, record, decision, reason) = &entries[0];
    assert_eq!(actor, "operator:alice");
    assert_eq!(action, "dlq.discard");
    assert_eq!(record, "dead_letter:intake_screen_referral:e-1");
    assert_eq!(decision, "allowed");
    assert!(
        reason.contains(&format!("dead letter {first} of intake_screen_referral"))
            && reason.contains(&format!("{ns}.worcs.intake.cmd.screen_referral"))
            && reason.ends_with(": duplicate of a referral handled by hand"),
        "{reason}"
    );
    assert_eq!(entries[1].0, "operator:bob");
    assert_eq!(entries[1].1, "dlq.replay");
    assert_eq!(entries[1].2, "dead_letter:intake_screen_referral:e-2");
    assert_eq!(auditor.verify().await?, None, "the chain holds");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_an_operator_discards_and_replays_dead_letters_audited() -> anyhow::Result<()> {
    operator_settles_dead_letters(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_an_operator_discards_and_replays_dead_letters_audited() -> anyhow::Result<()> {
    operator_settles_dead_letters(false).await
}
