//! The consumer runner: receives from a durable consumer, runs the handler (which claims the
//! message in its inbox and applies effects in one transaction), then settles the delivery —
//! ack on success, nak with exponential backoff on a retryable failure, dead letter on a permanent
//! one or after `max_deliver` attempts. A dependency that is away (the database restarting, say)
//! is waited out: the message is kept — its delivery renewed, not counted as an attempt — and
//! handled again with a capped, jittered backoff for as long as the outage lasts, so an outage
//! never dead-letters anything. On shutdown it stops receiving and finishes what it holds.
//! A message whose envelope's `Eh-Tenant` is not its subject's council is dead-lettered unhandled
//! ([`crate::Received::tenant_mismatch`]), whatever the handler.
use crate::Received;
use crate::dlq;
use crate::faults::Faults;
use crate::transport::{ConsumerSpec, Delivery, Transport};
pub use async_trait::async_trait;
use eh_platform::Metrics;
use eh_platform::metrics::{ConsumerLabels, HandledLabels};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Why a handler did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again (a database or network hiccup).
    #[error("{0}")]
    Retryable(String),
    /// Will never succeed (the message itself is wrong): dead-letter it now.
    #[error("{0}")]
    Permanent(String),
    /// Something the handler needs is unreachable (the database is down or restarting, a
    /// connection was lost): wait it out and try again, however long it lasts. Not an attempt.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl HandlerError {
    /// A database error: [`HandlerError::Unavailable`] when it is the database being away or
    /// busy ([`eh_store::is_transient`]), else [`HandlerError::Retryable`].
    pub fn db(e: &sea_orm::DbErr) -> Self {
        if eh_store::is_transient(e) {
            Self::Unavailable(e.to_string())
        } else {
            Self::Retryable(e.to_string())
        }
    }

    /// An error of this crate (outbox, inbox, transport), classified as [`HandlerError::db`].
    pub fn bus(e: &crate::Error) -> Self {
        match e {
            crate::Error::Db(db) => Self::db(db),
            other => Self::Retryable(other.to_string()),
        }
    }
}

impl From<sea_orm::DbErr> for HandlerError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::db(&e)
    }
}

impl From<crate::Error> for HandlerError {
    fn from(e: crate::Error) -> Self {
        Self::bus(&e)
    }
}

impl From<crate::batch::Interrupted> for HandlerError {
    fn from(e: crate::batch::Interrupted) -> Self {
        Self::Retryable(e.to_string())
    }
}

/// What a handler reports when it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Effects applied.
    Done,
    /// The inbox already had it: nothing done.
    Duplicate,
}

/// Handles one kind of message. Implementations claim the message in their inbox and apply their
/// effects in one transaction.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError>;

    /// Starts handling `msg`. The consumer calls this in delivery order, in its receive loop,
    /// then awaits the answer in the message's own task: a handler whose messages must be taken
    /// up in order (one that queues them for batches) does that part here, at once, without
    /// waiting on anything. By default the whole of [`Handler::handle`] runs in the task.
    fn start(self: Arc<Self>, msg: &Received) -> Pending {
        let msg = msg.clone();
        Box::pin(async move { self.handle(&msg).await })
    }
}

/// The longest wait between two tries of a message whose dependency is unavailable.
const UNAVAILABLE_MAX_WAIT: Duration = Duration::from_secs(5);

/// A message's answer to come.
pub type Pending = futures::future::BoxFuture<'static, Result<Handled, HandlerError>>;

/// Implements [`Handler`] for a handler type with a method
/// `fn admit(&self, msg: &Received) -> Result<Pending, HandlerError>` that reads a message and
/// queues it for its batch without waiting on anything ([`crate::batch::Batcher::enqueue`]).
/// The consumer admits messages in delivery order ([`Handler::start`]), so batches keep the
/// order of the stream: what an earlier message changes, a later one sees.
#[macro_export]
macro_rules! admitted_in_order {
    ($name:ty) => {
        #[$crate::consumer::async_trait]
        impl $crate::Handler for $name {
            async fn handle(
                &self,
                msg: &$crate::Received,
            ) -> Result<$crate::Handled, $crate::HandlerError> {
                self.admit(msg)?.await
            }

            fn start(
                self: std::sync::Arc<Self>,
                msg: &$crate::Received,
            ) -> $crate::consumer::Pending {
                match self.admit(msg) {
                    Ok(pending) => pending,
                    Err(e) => Box::pin(std::future::ready(Err(e))),
                }
            }
        }
    };
}

/// How a consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub spec: ConsumerSpec,
    pub namespace: String,
    /// Messages handled at once.
    pub concurrency: usize,
    pub max_deliver: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// An urgent lane's consumer ([`Transport::subscribe_urgent`]).
    pub urgent: bool,
}

impl ConsumerOptions {
    /// The delay before delivery number `delivered + 1`.
    /// (The un-jittered step of [`eh_platform::Backoff`]: the broker redelivers on its own
    /// schedule, so replicas are already spread by when each message failed.)
    pub fn backoff(&self, delivered: u64) -> Duration {
        let exp = delivered.saturating_sub(1).min(30) as u32;
        eh_platform::Backoff::new(self.retry_base, self.retry_max).ceiling(exp)
    }
}

/// Runs one consumer until `shutdown`; resubscribes after transport errors (e.g. NATS down).
pub async fn run(
    transport: Arc<dyn Transport>,
    opts: ConsumerOptions,
    handler: Arc<dyn Handler>,
    metrics: Arc<Metrics>,
    faults: Arc<Faults>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    // Between attempts to subscribe (the broker away): capped, jittered.
    let mut retry = eh_platform::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    'outer: while !shutdown.is_cancelled() {
        let subscribed = if opts.urgent {
            transport.subscribe_urgent(&opts.spec).await
        } else {
            transport.subscribe(&opts.spec).await
        };
        let mut sub = match subscribed {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(consumer = %opts.spec.durable, error = %e, "cannot subscribe yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(retry.next_delay()) => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        retry.reset();
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break 'outer },
                _ = shutdown.cancelled() => break 'outer,
            };
            let next = tokio::select! {
                n = sub.next() => n,
                _ = shutdown.cancelled() => break 'outer,
            };
            match next {
                Ok(Some(delivery)) => {
                    let ctx = Settle {
                        transport: transport.clone(),
                        opts: opts.clone(),
                        metrics: metrics.clone(),
                        faults: faults.clone(),
                        handler: handler.clone(),
                        shutdown: shutdown.clone(),
                    };
                    // Taken up here, in delivery order; answered in the message's own task.
                    let span = ctx.span(&delivery.msg);
                    // A message whose envelope names another council than its subject is
                    // never handled: dead-lettered with the reason.
                    let pending: Pending =
                        span.in_scope(|| match delivery.msg.tenant_mismatch(&opts.namespace) {
                            Some(reason) => {
                                Box::pin(std::future::ready(Err(HandlerError::Permanent(reason))))
                            }
                            None => handler.clone().start(&delivery.msg),
                        });
                    tokio::spawn(
                        async move {
                            ctx.settle(&delivery, pending).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                Ok(None) => drop(permit),
                Err(e) => {
                    drop(permit);
                    tracing::warn!(consumer = %opts.spec.durable, error = %e, "receive failed; resubscribing");
                    tokio::select! {
                        _ = tokio::time::sleep(retry.next_delay()) => {}
                        _ = shutdown.cancelled() => break 'outer,
                    }
                    continue 'outer;
                }
            }
        }
    }
    // Wait for in-flight handlers: every permit back means none is running.
    let _ = permits.acquire_many(opts.concurrency.max(1) as u32).await;
    tracing::debug!(consumer = %opts.spec.durable, "consumer stopped");
}

struct Settle {
    transport: Arc<dyn Transport>,
    opts: ConsumerOptions,
    metrics: Arc<Metrics>,
    faults: Arc<Faults>,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
}

impl Settle {
    /// The span of handling `msg`, a child of the trace the message carries.
    fn span(&self, msg: &Received) -> tracing::Span {
        let span = tracing::info_span!(
            "process",
            otel.name = %format!("{} process", msg.subject),
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.destination.name = %msg.subject,
            messaging.consumer.group.name = %self.opts.spec.durable,
            messaging.message.id = %msg.key(),
            delivered = msg.delivered,
        );
        eh_platform::telemetry::set_parent_from(&span, |k| msg.headers.get(k).cloned());
        span
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .messages_handled
            .get_or_create(&HandledLabels {
                consumer: self.opts.spec.durable.clone(),
                outcome: outcome.into(),
            })
            .inc();
    }

    async fn settle(&self, delivery: &Delivery, pending: Pending) {
        let msg = &delivery.msg;
        let started = Instant::now();
        let result = self
            .renewing(delivery, self.outlasting_outages(delivery, pending))
            .await;
        self.metrics
            .handler_seconds
            .get_or_create(&ConsumerLabels {
                consumer: self.opts.spec.durable.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
        if result.is_ok() && Faults::trip(&self.faults.consumer_dies_after_commit) {
            tracing::warn!("fault injected: consumer dies after commit, before ack");
            return;
        }
        let settled = match result {
            Ok(Handled::Done) => {
                self.count("ok");
                delivery.acker.ack().await
            }
            Ok(Handled::Duplicate) => {
                self.count("duplicate");
                tracing::debug!(key = %msg.key(), "already handled; acknowledging");
                delivery.acker.ack().await
            }
            Err(HandlerError::Retryable(reason))
                if msg.delivered < self.opts.max_deliver as u64 =>
            {
                self.count("retry");
                let delay = self.opts.backoff(msg.delivered);
                tracing::warn!(%reason, attempt = msg.delivered, ?delay, "handler failed; will retry");
                delivery.acker.nak(delay).await
            }
            Err(HandlerError::Unavailable(reason)) => {
                // Only when shutting down: handled again after the restart.
                self.count("retry");
                tracing::warn!(%reason, "shutting down while unavailable; will be redelivered");
                delivery.acker.nak(self.opts.retry_base).await
            }
            Err(e) => {
                let reason = match &e {
                    HandlerError::Retryable(r) => {
                        format!("gave up after {} attempts: {r}", msg.delivered)
                    }
                    HandlerError::Permanent(r) => r.clone(),
                    HandlerError::Unavailable(r) => r.clone(),
                };
                self.dead_letter(delivery, &reason).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, "could not settle delivery; it will be redelivered");
        }
    }

    /// `work` on `delivery`, its lease renewed every third of `ack_wait` while it runs: the
    /// lease is short so that what a crashed process held is delivered again within seconds,
    /// and renewed so that work that takes longer (a batch, a slow database) is not handed to
    /// another consumer meanwhile.
    async fn renewing<T>(&self, delivery: &Delivery, work: impl Future<Output = T>) -> T {
        let every = (self.opts.spec.ack_wait / 3).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => {
                    if let Err(e) = delivery.acker.in_progress().await {
                        tracing::debug!(error = %e, "could not renew the delivery");
                    }
                }
            }
        }
    }

    /// The handler's answer for `delivery`, waiting out [`HandlerError::Unavailable`]: the
    /// message is kept (its delivery renewed so the broker does not hand it to anyone else) and
    /// handled again after a capped, jittered backoff, until the dependency is back or the
    /// process shuts down. The consumer's permits stay taken meanwhile, so it takes no new work.
    async fn outlasting_outages(
        &self,
        delivery: &Delivery,
        pending: Pending,
    ) -> Result<Handled, HandlerError> {
        let mut result = pending.await;
        let cap = UNAVAILABLE_MAX_WAIT.min(self.opts.spec.ack_wait / 3);
        let mut backoff = eh_platform::Backoff::new(self.opts.retry_base, cap);
        while let Err(HandlerError::Unavailable(reason)) = &result {
            if self.shutdown.is_cancelled() {
                break;
            }
            self.count("unavailable");
            let delay = backoff.next_delay();
            if backoff.attempts() == 1 || backoff.attempts().is_multiple_of(10) {
                tracing::warn!(%reason, waited = backoff.attempts(), ?delay, "a dependency is unavailable; keeping the message and trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => break,
            }
            if let Err(e) = delivery.acker.in_progress().await {
                tracing::debug!(error = %e, "could not renew the delivery");
            }
            result = self.handler.handle(&delivery.msg).await;
        }
        result
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> crate::Result<()> {
        let msg = &delivery.msg;
        let parked = dlq::park(
            self.transport.as_ref(),
            &self.opts.namespace,
            &self.opts.spec.durable,
            msg,
            reason,
        )
        .await;
        match parked {
            Ok(()) => {
                self.count("dead_letter");
                self.metrics
                    .dead_letters
                    .get_or_create(&ConsumerLabels {
                        consumer: self.opts.spec.durable.clone(),
                    })
                    .inc();
                if let Err(e) = dlq::report_held(
                    self.transport.as_ref(),
                    &self.opts.namespace,
                    &self.opts.spec.durable,
                    &self.metrics,
                )
                .await
                {
                    tracing::debug!(error = %e, "cannot count dead letters now");
                }
                tracing::error!(%reason, subject = %msg.subject, "message dead-lettered");
                delivery.acker.ack().await
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot park dead letter; retrying later");
                delivery.acker.nak(self.opts.retry_max).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::StreamSpec;

    #[test]
    fn backoff_doubles_and_caps() {
        let o = ConsumerOptions {
            spec: ConsumerSpec {
                durable: "c".into(),
                stream: StreamSpec {
                    name: "S".into(),
                    subjects: vec![],
                    retention: Default::default(),
                    partitions: vec![],
                },
                filter_subject: "x".into(),
                ack_wait: Duration::from_secs(30),
            },
            namespace: "eh".into(),
            concurrency: 1,
            max_deliver: 5,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(500),
            urgent: false,
        };
        assert_eq!(o.backoff(1), Duration::from_millis(100));
        assert_eq!(o.backoff(2), Duration::from_millis(200));
        assert_eq!(o.backoff(3), Duration::from_millis(400));
        assert_eq!(o.backoff(4), Duration::from_millis(500));
        assert_eq!(o.backoff(60), Duration::from_millis(500));
    }
}
