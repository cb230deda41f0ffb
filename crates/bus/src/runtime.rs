//! What a service is given to run: its database, the transport, its outbox, metrics, the clock and
//! the shutdown token, plus helpers that start its relay and consumers as tracked tasks.
use crate::consumer::{self, ConsumerOptions, Handler};
use crate::outbox::Outbox;
use crate::relay::Relay;
use crate::transport::{ConsumerSpec, StreamSpec};
use crate::{Faults, Transport};
use eh_platform::{Clock, Metrics, Settings};
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
pub struct ServiceContext {
    pub service: &'static str,
    pub settings: Arc<Settings>,
    pub db: DatabaseConnection,
    /// The urgent lane's connections to the same database ([`eh_store::Lanes`]): its work takes
    /// them through [`ServiceContext::urgent`]. The same pool as `db` where there is no lane of
    /// its own (tests, one-off commands).
    pub urgent_db: DatabaseConnection,
    /// Connections held to one council each ([`eh_store::TenantReaders`] over `db`), for reads
    /// of one statement outside a transaction (e.g. before a batch's transaction begins): what
    /// they see is that council's rows alone. The urgent lane's over `urgent_db` through
    /// [`ServiceContext::urgent`].
    pub readers: eh_store::TenantReaders,
    pub urgent_readers: eh_store::TenantReaders,
    pub transport: Arc<dyn Transport>,
    pub outbox: Outbox,
    pub metrics: Arc<Metrics>,
    pub faults: Arc<Faults>,
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the process starts shutting down.
    pub shutdown: CancellationToken,
    /// Every background task of the service; the binary waits on it at shutdown.
    pub tasks: TaskTracker,
    /// Cancelled after `tasks` finished, so the relay publishes what they committed last.
    pub relay_shutdown: CancellationToken,
    pub relay_tasks: TaskTracker,
}

impl ServiceContext {
    /// A service on its own (tests, benches): fresh outbox, metrics, faults and shutdown tokens.
    pub fn new(
        service: &'static str,
        settings: Arc<Settings>,
        db: DatabaseConnection,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            service,
            settings,
            urgent_db: db.clone(),
            readers: eh_store::TenantReaders::new(db.clone()),
            urgent_readers: eh_store::TenantReaders::new(db.clone()),
            db,
            transport,
            outbox: Outbox::new(),
            metrics: Arc::new(Metrics::new()),
            faults: Arc::default(),
            clock,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            relay_shutdown: CancellationToken::new(),
            relay_tasks: TaskTracker::new(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.settings.bus.namespace
    }

    /// The same service as the urgent lane's work sees it: its database is the urgent lane's
    /// connections (`urgent_db`), and what it puts in the outbox is published by the urgent
    /// relay, ahead of the ordinary backlog ([`Outbox::urgent`]). Work done through it must not
    /// use the ordinary connections while it holds a transaction (on SQLite the two take turns).
    pub fn urgent(&self) -> ServiceContext {
        ServiceContext {
            db: self.urgent_db.clone(),
            readers: self.urgent_readers.clone(),
            outbox: self.outbox.urgent(),
            ..self.clone()
        }
    }

    /// Starts publishing this service's outbox: the relay, and the urgent lane's relay (its
    /// rows alone, on the urgent lane's connections, as soon as they are committed).
    pub fn spawn_relay(&self) {
        let relay = |db: &DatabaseConnection, urgent: bool| Relay {
            service: self.service.to_string(),
            db: db.clone(),
            transport: self.transport.clone(),
            outbox: self.outbox.clone(),
            metrics: self.metrics.clone(),
            faults: self.faults.clone(),
            retention: Duration::from_secs(self.settings.bus.outbox_retention_hours * 3600),
            urgent_only: urgent,
        };
        self.relay_tasks
            .spawn(relay(&self.db, false).run(self.relay_shutdown.clone()));
        self.relay_tasks
            .spawn(relay(&self.urgent_db, true).run(self.relay_shutdown.clone()));
    }

    /// Starts the durable consumer the catalogue describes. Started through
    /// [`ServiceContext::urgent`], it is an urgent lane's consumer: the broker delivers to it
    /// ahead of its ordinary work ([`Transport::subscribe_urgent`]).
    pub fn spawn_subscription(
        &self,
        sub: &eh_proto::catalogue::Subscription,
        concurrency: usize,
        handler: Arc<dyn Handler>,
    ) {
        let ns = self.namespace().to_string();
        let stream = match sub.source {
            eh_proto::catalogue::Source::Event(e) => {
                crate::subjects::service_stream(&ns, e.service)
            }
            // One stream per configured council (NATS de-duplicates within a stream).
            eh_proto::catalogue::Source::Inbound(_) => crate::subjects::inbound_streams(
                &ns,
                self.settings.tenants.keys().map(String::as_str),
            ),
        };
        self.spawn_consumer(sub.consumer, stream, sub.filter(&ns), concurrency, handler);
    }

    /// Starts a durable consumer of `filter_subject` in `stream`.
    pub fn spawn_consumer(
        &self,
        durable: &str,
        stream: StreamSpec,
        filter_subject: String,
        concurrency: usize,
        handler: Arc<dyn Handler>,
    ) {
        let bus = &self.settings.bus;
        let opts = ConsumerOptions {
            spec: ConsumerSpec {
                durable: durable.to_string(),
                stream,
                filter_subject,
                ack_wait: Duration::from_secs(bus.ack_wait_secs.max(1)),
            },
            namespace: bus.namespace.clone(),
            concurrency,
            max_deliver: bus.max_deliver,
            retry_base: Duration::from_millis(bus.retry_base_ms),
            retry_max: Duration::from_millis(bus.retry_max_ms.max(bus.retry_base_ms)),
            urgent: self.outbox.is_urgent(),
        };
        let handler = Arc::new(Holdable {
            inner: handler,
            faults: self.faults.clone(),
            durable: durable.to_string(),
        });
        // Its dead letters held, for the alert: counted from the stream, so replays and discards
        // by the operator's command show too.
        self.tasks.spawn(crate::dlq::watch_held(
            self.transport.clone(),
            bus.namespace.clone(),
            durable.to_string(),
            self.metrics.clone(),
            crate::dlq::HELD_REFRESH,
            self.shutdown.clone(),
        ));
        self.tasks.spawn(consumer::run(
            self.transport.clone(),
            opts,
            handler,
            self.metrics.clone(),
            self.faults.clone(),
            self.shutdown.clone(),
        ));
    }
}

/// A consumer's handler that a fault-injection test can hold ([`Faults::hold`]): while held, each
/// message it receives waits, unhandled, until released. Not held, it is the handler itself.
struct Holdable {
    inner: Arc<dyn Handler>,
    faults: Arc<Faults>,
    durable: String,
}

#[async_trait::async_trait]
impl Handler for Holdable {
    async fn handle(&self, msg: &crate::Received) -> Result<crate::Handled, crate::HandlerError> {
        self.faults.released(&self.durable).await;
        self.inner.handle(msg).await
    }

    fn start(self: Arc<Self>, msg: &crate::Received) -> consumer::Pending {
        if !self.faults.is_held(&self.durable) {
            return self.inner.clone().start(msg);
        }
        let msg = msg.clone();
        Box::pin(async move {
            self.faults.released(&self.durable).await;
            self.inner.clone().start(&msg).await
        })
    }
}
