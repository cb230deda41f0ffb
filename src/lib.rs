//! The `earlyhelp` application: every service in one binary. [`App::start`] runs the chosen
//! targets (all by default) in embedded mode (SQLite + in-process transport) or distributed mode
//! (PostgreSQL + NATS JetStream) through the same code, serves gRPC (with health and reflection)
//! and HTTP (`/healthz`, `/readyz`, `/metrics`), and shuts down gracefully.
pub mod app;
pub mod asyncapi;
pub mod audit;
pub mod demo;
pub mod dlq;
pub mod natsconf;
pub mod sar;
pub mod targets;
pub mod webhook;

pub use app::{App, AppOptions};
pub use targets::Target;
