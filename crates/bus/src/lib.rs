//! Messaging with the platform's delivery guarantees, the same in both modes:
//! - the [`Envelope`] every message carries (in headers, so upstream JSON needs none);
//! - a transactional [`outbox`] written in the caller's transaction, and a [`relay`] that publishes
//!   it (message id = event id, so the broker drops a republish);
//! - an [`inbox`] so a consumer applies each message once, in the same transaction as its effects;
//! - a [`batch`]er, so many messages' effects share one transaction and one commit;
//! - a [`consumer`] runner: explicit acks, retries with backoff, dead-lettering with the reason;
//! - two [`Transport`]s: NATS JetStream ([`nats`]) and an embedded one over SQLite ([`embedded`]).
pub mod batch;
pub mod consumer;
pub mod dlq;
pub mod embedded;
pub mod envelope;
pub mod faults;
pub mod inbox;
pub mod nats;
pub mod outbox;
pub mod relay;
pub mod runtime;
pub mod subjects;
pub mod transport;

pub use consumer::Handled;
pub use consumer::{Handler, HandlerError};
pub use envelope::{Envelope, OutboundMessage, Received};
pub use faults::Faults;
pub use outbox::Outbox;
pub use runtime::ServiceContext;
pub use transport::{ConsumerSpec, Retention, StreamSpec, Transport};

/// Why the bus failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bus: {0}")]
    Transport(String),
    #[error("bus store: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("bus: {0}")]
    Store(#[from] eh_store::Error),
    #[error("bus: not found: {0}")]
    NotFound(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn transport(e: impl std::fmt::Display) -> Self {
        Self::Transport(e.to_string())
    }
}
