//! The one seam between the platform and a message broker.
use crate::{OutboundMessage, Received, Result};
use async_trait::async_trait;
use std::time::Duration;

/// A stream: where messages on some subjects are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    pub subjects: Vec<String>,
    /// How long it keeps what it stores.
    pub retention: Retention,
    /// Where a broker that de-duplicates per stream (NATS) keeps the messages instead: one
    /// stream per council, so that a message id is unique within one council only (two councils'
    /// upstream systems may number their messages alike). Empty: the stream itself. The
    /// embedded transport, which de-duplicates per council anyway, ignores it.
    pub partitions: Vec<StreamSpec>,
}

/// How long a stream keeps a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// For the transport's replay window (NATS `max_age`; the embedded sweep), then deleted.
    #[default]
    ReplayWindow,
    /// Until someone removes it ([`Transport::delete`]): never deleted for its age (dead
    /// letters, which wait for an operator however long that takes).
    UntilRemoved,
}

/// A durable consumer: a named position in a stream, filtered to a subject.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub durable: String,
    pub stream: StreamSpec,
    pub filter_subject: String,
    /// Unacknowledged for this long → delivered again.
    pub ack_wait: Duration,
}

/// A delivered message and the means to settle it.
pub struct Delivery {
    pub msg: Received,
    pub acker: Box<dyn Acker>,
}

/// Settles one delivery.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Done: never deliver again.
    async fn ack(&self) -> Result<()>;
    /// Not now: deliver again after `delay`.
    async fn nak(&self, delay: Duration) -> Result<()>;
    /// Still working on it: do not deliver it to anyone else for another `ack_wait`.
    async fn in_progress(&self) -> Result<()>;
}

/// Deliveries of one durable consumer.
#[async_trait]
pub trait Subscription: Send {
    /// The next delivery, or `None` when nothing came within about a second.
    async fn next(&mut self) -> Result<Option<Delivery>>;
}

/// A message held in a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub seq: u64,
    pub subject: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

/// A message broker with JetStream's guarantees: durable publish acknowledged after storage,
/// de-duplication by message id, durable consumers with explicit acknowledgement.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Creates the streams if missing (idempotent).
    async fn ensure_streams(&self, streams: &[StreamSpec]) -> Result<()>;
    /// Publishes and waits for the broker's acknowledgement of each; results in order.
    /// A message whose id was seen before is acknowledged and dropped by the broker.
    async fn publish_batch(&self, msgs: &[OutboundMessage]) -> Vec<Result<()>>;
    /// Creates the durable consumer if missing and starts receiving.
    async fn subscribe(&self, spec: &ConsumerSpec) -> Result<Box<dyn Subscription>>;
    /// [`Transport::publish_batch`] for the urgent lane's messages: a broker with a lane of its
    /// own (the embedded one) stores them ahead of its ordinary work.
    async fn publish_batch_urgent(&self, msgs: &[OutboundMessage]) -> Vec<Result<()>> {
        self.publish_batch(msgs).await
    }
    /// [`Transport::subscribe`] for an urgent lane's consumer: a broker with a lane of its own
    /// (the embedded one) delivers to it ahead of its ordinary work.
    async fn subscribe_urgent(&self, spec: &ConsumerSpec) -> Result<Box<dyn Subscription>> {
        self.subscribe(spec).await
    }
    /// Whether the broker is reachable now.
    async fn ping(&self) -> Result<()>;
    /// Messages held in `stream`, oldest first, at most `limit`.
    async fn list(&self, stream: &StreamSpec, limit: usize) -> Result<Vec<StoredMessage>>;
    /// Messages held in `stream` on subjects matching `filter` (wildcards allowed), oldest
    /// first, from sequence `from` on, at most `limit`: one page; the next starts after the last
    /// one's `seq`. A stream kept per council is scanned by one council's spec (a sequence names a
    /// message in one stream).
    async fn scan(
        &self,
        stream: &StreamSpec,
        filter: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        Ok(self
            .list(stream, usize::MAX)
            .await?
            .into_iter()
            .filter(|m| m.seq >= from && crate::subjects::matches(filter, &m.subject))
            .take(limit)
            .collect())
    }
    /// Removes message `seq` from `stream` (on NATS, erased: its bytes overwritten on disk).
    async fn delete(&self, stream: &StreamSpec, seq: u64) -> Result<()>;
    /// How many messages `stream` holds on exactly `subject` (no wildcards).
    async fn count(&self, stream: &StreamSpec, subject: &str) -> Result<u64>;
}

impl dyn Transport {
    pub async fn publish(&self, msg: &OutboundMessage) -> Result<()> {
        self.publish_batch(std::slice::from_ref(msg))
            .await
            .into_iter()
            .next()
            .unwrap_or(Ok(()))
    }
}
