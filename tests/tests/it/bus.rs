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
    };
    tokio::spawn(consumer::run(
        transport.clone(),
        opts,
        handler,
        Arc::new(Metrics::new()),
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
    let task = spawn_consumer(
        &transport,
        &ns,
        stream,
        "poison_test",
        4,
        handler.clone(),
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

    // Replay: delivered again to the consumer, removed from the dead letters.
    dlq::replay(transport.as_ref(), &ns, d.seq).await?;
    eh_testkit::eventually(Duration::from_secs(20), "the replayed message", || async {
        Ok((*handler.attempts.lock().expect("lock") > 3).then_some(()))
    })
    .await?;
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
