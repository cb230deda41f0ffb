//! Prometheus metrics: messages handled, handler latency, outbox backlog, dead letters (parked,
//! and held now), service-level breaches.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandledLabels {
    pub consumer: String,
    /// ok | duplicate | retry | dead_letter
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClockLabels {
    pub tenant: String,
    /// The service-level clock (e.g. screening_decision).
    pub clock: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub worker: String,
}

/// Transactions begun in the system scope (every council's rows), by named worker: counted by
/// `eh_store::begin_system` for the whole process, exported by every [`Metrics`].
static SYSTEM_SCOPE_USES: std::sync::LazyLock<Family<WorkerLabels, Counter>> =
    std::sync::LazyLock::new(Family::default);

/// Counts one system-scope transaction of `worker`.
pub fn system_scope_used(worker: &str) {
    SYSTEM_SCOPE_USES
        .get_or_create(&WorkerLabels {
            worker: worker.to_string(),
        })
        .inc();
}

/// How many system-scope transactions `worker` began in this process.
pub fn system_scope_uses(worker: &str) -> u64 {
    SYSTEM_SCOPE_USES
        .get_or_create(&WorkerLabels {
            worker: worker.to_string(),
        })
        .get()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

/// Every metric the platform exports, registered once per process.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub messages_handled: Family<HandledLabels, Counter>,
    pub handler_seconds: Family<ConsumerLabels, Histogram>,
    pub outbox_backlog: Family<ServiceLabels, Gauge>,
    pub outbox_published: Family<ServiceLabels, Counter>,
    pub dead_letters: Family<ConsumerLabels, Counter>,
    /// Dead letters waiting for an operator now, by consumer (refreshed from the stream).
    pub dead_letters_held: Family<ConsumerLabels, Gauge>,
    pub service_level_breaches: Family<ClockLabels, Counter>,
    /// Urgent emails (to a council's front door) not sent within a minute, each counted once.
    pub front_door_overdue: Family<TenantLabels, Counter>,
    /// Urgent emails queued for over a minute and still not sent, now.
    pub front_door_unsent: Family<TenantLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("earlyhelp");
        let messages_handled = Family::<HandledLabels, Counter>::default();
        let handler_seconds: Family<ConsumerLabels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        let outbox_backlog = Family::<ServiceLabels, Gauge>::default();
        let outbox_published = Family::<ServiceLabels, Counter>::default();
        let dead_letters = Family::<ConsumerLabels, Counter>::default();
        let dead_letters_held = Family::<ConsumerLabels, Gauge>::default();
        let service_level_breaches = Family::<ClockLabels, Counter>::default();
        let front_door_overdue = Family::<TenantLabels, Counter>::default();
        let front_door_unsent = Family::<TenantLabels, Gauge>::default();
        registry.register(
            "front_door_overdue",
            "Emails to a council's front door not sent within a minute (each counted once; still retried)",
            front_door_overdue.clone(),
        );
        registry.register(
            "front_door_unsent",
            "Emails to a council's front door queued over a minute ago and not sent yet",
            front_door_unsent.clone(),
        );
        registry.register(
            "service_level_breaches",
            "Service-level clocks of cases that ran out, by tenant and clock",
            service_level_breaches.clone(),
        );
        registry.register(
            "messages_handled",
            "Messages handled by bus consumers, by outcome",
            messages_handled.clone(),
        );
        registry.register(
            "handler_seconds",
            "Time spent handling one message",
            handler_seconds.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Outbox rows not yet published",
            outbox_backlog.clone(),
        );
        registry.register(
            "outbox_published",
            "Outbox rows published",
            outbox_published.clone(),
        );
        registry.register(
            "dead_letters",
            "Messages parked on a dead-letter subject",
            dead_letters.clone(),
        );
        registry.register(
            "system_scope_uses",
            "Transactions begun in the system scope (every council's rows), by named worker",
            SYSTEM_SCOPE_USES.clone(),
        );
        registry.register(
            "dead_letters_held",
            "Dead letters of a consumer waiting for an operator to replay or discard them",
            dead_letters_held.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            messages_handled,
            handler_seconds,
            outbox_backlog,
            outbox_published,
            dead_letters,
            dead_letters_held,
            service_level_breaches,
            front_door_overdue,
            front_door_unsent,
        }
    }

    /// Counts one breached service level.
    pub fn service_level_breached(&self, tenant: &str, clock: &str) {
        self.service_level_breaches
            .get_or_create(&ClockLabels {
                tenant: tenant.to_string(),
                clock: clock.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
