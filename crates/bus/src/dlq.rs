//! Dead letters: a message that cannot be handled is parked on `<ns>.dlq.<consumer>` with the
//! reason and its original subject and headers; an operator lists them and replays or discards
//! each. They are kept until then, however long that is (the stream is
//! [`crate::Retention::UntilRemoved`]: no `max_age`, never swept), and how many each consumer has
//! waiting is the gauge `earlyhelp_dead_letters_held{consumer}`, refreshed from the stream.
use crate::envelope::H_MSG_ID;
use crate::subjects;
use crate::transport::{StoredMessage, Transport};
use crate::{OutboundMessage, Received, Result};
use eh_platform::Metrics;
use eh_platform::metrics::ConsumerLabels;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const H_REASON: &str = "Eh-Dlq-Reason";
pub const H_SUBJECT: &str = "Eh-Dlq-Subject";
pub const H_CONSUMER: &str = "Eh-Dlq-Consumer";
pub const H_ATTEMPTS: &str = "Eh-Dlq-Attempts";
pub const H_PARKED_AT: &str = "Eh-Dlq-Parked-At";
/// The parked message's sequence in the stream it was delivered from.
pub const H_STREAM_SEQ: &str = "Eh-Dlq-Stream-Seq";

/// How often a running consumer refreshes its `dead_letters_held` gauge from the stream.
pub const HELD_REFRESH: Duration = Duration::from_secs(15);

/// A parked message.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub seq: u64,
    pub consumer: String,
    pub original_subject: String,
    pub reason: String,
    pub attempts: u64,
    pub parked_at: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl DeadLetter {
    fn from_stored(m: StoredMessage) -> Self {
        let h = |k: &str| m.headers.get(k).cloned().unwrap_or_default();
        Self {
            seq: m.seq,
            consumer: h(H_CONSUMER),
            original_subject: h(H_SUBJECT),
            reason: h(H_REASON),
            attempts: h(H_ATTEMPTS).parse().unwrap_or(0),
            parked_at: h(H_PARKED_AT),
            headers: m.headers,
            payload: m.payload,
        }
    }
}

/// Header values must be one line.
fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    flat.chars().take(2000).collect()
}

/// The broker message id of parking `msg` for `consumer`: one per delivery of one stored message
/// to one consumer. A retry of the same park (its publish acknowledged but the delivery's ack
/// lost, so the message came back and failed again) is the same stored message and drops as a
/// duplicate; the same event parked again later — replayed and failing again, or published
/// again — is another stored message, so it is kept beside the first. Without a stream
/// position (never on either transport) every parking is kept.
pub fn park_id(consumer: &str, msg: &Received) -> String {
    if msg.stream_seq == 0 {
        format!("dlq:{consumer}:{}:{}", msg.key(), uuid::Uuid::now_v7())
    } else {
        format!("dlq:{consumer}:{}:{}", msg.key(), msg.stream_seq)
    }
}

/// Parks `msg` for `consumer` with `reason`.
pub async fn park(
    transport: &dyn Transport,
    ns: &str,
    consumer: &str,
    msg: &Received,
    reason: &str,
) -> Result<()> {
    // The stream as it must be (created, or updated to keep its messages) before anything goes in.
    transport
        .ensure_streams(&[subjects::dead_letter_stream(ns)])
        .await?;
    let mut headers = msg.headers.clone();
    headers.insert(H_REASON.into(), one_line(reason));
    headers.insert(H_SUBJECT.into(), msg.subject.clone());
    headers.insert(H_CONSUMER.into(), consumer.into());
    headers.insert(H_ATTEMPTS.into(), msg.delivered.to_string());
    headers.insert(H_STREAM_SEQ.into(), msg.stream_seq.to_string());
    headers.insert(H_PARKED_AT.into(), chrono::Utc::now().to_rfc3339());
    let msg_id = park_id(consumer, msg);
    headers.insert(H_MSG_ID.into(), msg_id.clone());
    transport
        .publish(&OutboundMessage {
            msg_id,
            subject: subjects::dead_letter(ns, consumer),
            headers,
            payload: msg.payload.to_vec(),
        })
        .await
}

/// Parked messages, oldest first.
pub async fn list(transport: &dyn Transport, ns: &str, limit: usize) -> Result<Vec<DeadLetter>> {
    transport
        .ensure_streams(&[subjects::dead_letter_stream(ns)])
        .await?;
    Ok(transport
        .list(&subjects::dead_letter_stream(ns), limit)
        .await?
        .into_iter()
        .map(DeadLetter::from_stored)
        .collect())
}

/// Parked message `seq`; [`crate::Error::NotFound`] when there is none.
pub async fn get(transport: &dyn Transport, ns: &str, seq: u64) -> Result<DeadLetter> {
    list(transport, ns, usize::MAX)
        .await?
        .into_iter()
        .find(|d| d.seq == seq)
        .ok_or_else(|| crate::Error::NotFound(format!("dead letter {seq}")))
}

/// Publishes parked message `seq` again on its original subject (under a fresh broker message id,
/// keeping its event id, so the consumer's inbox still recognises it), then removes it.
pub async fn replay(transport: &dyn Transport, ns: &str, seq: u64) -> Result<DeadLetter> {
    let dl = get(transport, ns, seq).await?;
    let mut headers = dl.headers.clone();
    for k in [
        H_REASON,
        H_SUBJECT,
        H_CONSUMER,
        H_ATTEMPTS,
        H_PARKED_AT,
        H_STREAM_SEQ,
    ] {
        headers.remove(k);
    }
    let msg_id = format!("replay:{}:{}", seq, uuid::Uuid::now_v7());
    headers.insert(H_MSG_ID.into(), msg_id.clone());
    transport
        .publish(&OutboundMessage {
            msg_id,
            subject: dl.original_subject.clone(),
            headers,
            payload: dl.payload.clone(),
        })
        .await?;
    transport
        .delete(&subjects::dead_letter_stream(ns), seq)
        .await?;
    Ok(dl)
}

/// Removes parked message `seq` for good, without handling it; returns what it was.
pub async fn discard(transport: &dyn Transport, ns: &str, seq: u64) -> Result<DeadLetter> {
    let dl = get(transport, ns, seq).await?;
    transport
        .delete(&subjects::dead_letter_stream(ns), seq)
        .await?;
    Ok(dl)
}

/// How many dead letters `consumer` has waiting.
pub async fn held(transport: &dyn Transport, ns: &str, consumer: &str) -> Result<u64> {
    transport
        .count(
            &subjects::dead_letter_stream(ns),
            &subjects::dead_letter(ns, consumer),
        )
        .await
}

/// Sets `consumer`'s `dead_letters_held` gauge to what the stream holds now; returns it.
pub async fn report_held(
    transport: &dyn Transport,
    ns: &str,
    consumer: &str,
    metrics: &Metrics,
) -> Result<u64> {
    let n = held(transport, ns, consumer).await?;
    metrics
        .dead_letters_held
        .get_or_create(&ConsumerLabels {
            consumer: consumer.to_string(),
        })
        .set(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(n)
}

/// Refreshes `consumer`'s `dead_letters_held` gauge every `every` until `stop`, so it follows
/// parkings, replays and discards made by any process (the operator's `earlyhelp dlq`). While
/// the broker is away the gauge keeps its last value.
pub async fn watch_held(
    transport: std::sync::Arc<dyn Transport>,
    ns: String,
    consumer: String,
    metrics: std::sync::Arc<Metrics>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        if let Err(e) = report_held(transport.as_ref(), &ns, &consumer, &metrics).await {
            tracing::debug!(%consumer, error = %e, "cannot count dead letters yet");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
