//! The shared runtime every Early Help service stands on: layered configuration, telemetry (logs,
//! traces, W3C trace context), Prometheus metrics, health and readiness, the listeners' accept and
//! the gRPC clients' endpoint (both TCP_NODELAY), graceful shutdown and the clock services take as
//! a dependency.
pub mod backoff;
pub mod clock;
pub mod config;
pub mod health;
pub mod metrics;
pub mod net;
pub mod shutdown;
pub mod telemetry;

pub use backoff::Backoff;
pub use clock::{Clock, SystemClock};
pub use config::{Mode, Settings};
pub use health::Readiness;
pub use metrics::Metrics;
pub use net::NoDelayListener;
