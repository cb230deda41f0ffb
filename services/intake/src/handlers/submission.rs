//! What became of a submission, whichever door it came through and whichever way it was
//! handled (stored in a batch, found a duplicate, rejected), and the inbox both doors claim in.
use crate::domain::contract::Rejection;
use crate::store::referrals::StoredReferral;
use eh_proto::catalogue::INTAKE_INBOUND_REFERRAL;

/// Both lanes claim inbound messages in this one inbox, so a message seen on both is stored once.
pub const CONSUMER_INBOUND: &str = INTAKE_INBOUND_REFERRAL.consumer;

/// What became of a submission.
#[derive(Debug)]
pub enum Outcome {
    Stored(Box<StoredReferral>),
    /// Held already under the same source reference.
    Duplicate {
        id: String,
        received_at: chrono::DateTime<chrono::Utc>,
    },
    Rejected(Rejection),
    /// The bus door only: this inbound message was handled before.
    AlreadyHandled,
}

/// Storing failed (the database, or the bus's tables in it); nothing was kept.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(#[from] pub sea_orm::DbErr);

/// A bus error met while storing, as the store's error.
pub(crate) fn bus_err(e: eh_bus::Error) -> StoreError {
    match e {
        eh_bus::Error::Db(d) => StoreError(d),
        other => StoreError(sea_orm::DbErr::Custom(other.to_string())),
    }
}
