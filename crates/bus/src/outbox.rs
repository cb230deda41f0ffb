//! The transactional outbox: a service writes the events a change causes in the same database
//! transaction as the change; the relay publishes them afterwards.
use crate::{OutboundMessage, Result};
use eh_store::{Migration, Rows};
use sea_orm::ConnectionTrait;
use std::sync::Arc;
use tokio::sync::Notify;

/// Tables every service database has: the outbox and the inbox. Services include these in their
/// migration lists.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        owner: "bus",
        version: 1,
        name: "bus outbox and inbox",
        sql: "CREATE TABLE eh_outbox (
            id TEXT PRIMARY KEY,
            subject TEXT NOT NULL,
            headers TEXT NOT NULL,
            payload {bytes} NOT NULL,
            created_at {ts} NOT NULL,
            published_at {ts} NULL
          );
          CREATE INDEX eh_outbox_unpublished ON eh_outbox (id) WHERE published_at IS NULL;
          CREATE INDEX eh_outbox_published_at ON eh_outbox (published_at);
          CREATE TABLE eh_inbox (
            consumer TEXT NOT NULL,
            message_key TEXT NOT NULL,
            handled_at {ts} NOT NULL,
            PRIMARY KEY (consumer, message_key)
          )",
    },
    Migration {
        owner: "bus",
        version: 3,
        name: "outbox urgent lane",
        sql: "ALTER TABLE eh_outbox ADD COLUMN urgent BOOLEAN NOT NULL DEFAULT FALSE;
          CREATE INDEX eh_outbox_urgent_unpublished ON eh_outbox (id)
            WHERE published_at IS NULL AND urgent",
    },
    // Both carry personal data (payloads; message ids of a council's referrals): each row is a
    // council's, under row-level security like every table with a `tenant` column. Existing
    // rows are given the council of their envelope (outbox) or of their key (inbox,
    // `<tenant>:<id>`); a row with neither keeps '' (no council sees it; the relay, in the
    // system scope, still publishes it).
    Migration {
        owner: "bus",
        version: 4,
        name: "outbox and inbox rows by council",
        sql: "ALTER TABLE eh_outbox ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
          UPDATE eh_outbox SET tenant = COALESCE(headers{as_json} ->> 'Eh-Tenant', '');
          ALTER TABLE eh_inbox ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
          UPDATE eh_inbox SET tenant = substr(message_key, 1, {strpos}(message_key, ':') - 1)
            WHERE {strpos}(message_key, ':') > 1",
    },
    // The ids of the families a service has destroyed (no names, no data: ids only, as the
    // audit trail keeps them), so an event about one that arrives late — in flight at the
    // destruction, parked and replayed, sent by a timer — recreates nothing
    // ([`crate::inbox::claim_live`]).
    Migration {
        owner: "bus",
        version: 5,
        name: "destroyed ids",
        sql: "CREATE TABLE eh_destroyed (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            destroyed_at {ts} NOT NULL,
            PRIMARY KEY (tenant, id)
          )",
    },
];

/// Writes outbox rows and wakes the relay once they are committed.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
    /// Wakes the urgent lane's relay.
    urgent_wake: Arc<Notify>,
    /// Rows written through this outbox are the urgent lane's: the urgent relay publishes them
    /// as soon as they are committed, ahead of the ordinary rows waiting.
    urgent: bool,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same outbox, for the urgent lane's work: its rows are marked urgent.
    pub fn urgent(&self) -> Self {
        Self {
            urgent: true,
            ..self.clone()
        }
    }

    /// Whether this is the urgent lane's outbox ([`Outbox::urgent`]).
    pub fn is_urgent(&self) -> bool {
        self.urgent
    }

    /// Adds `msg` to the outbox inside the caller's transaction.
    pub async fn enqueue(&self, txn: &impl ConnectionTrait, msg: &OutboundMessage) -> Result<()> {
        self.enqueue_all(txn, std::slice::from_ref(msg)).await
    }

    /// Adds every message of `msgs` to the outbox inside the caller's transaction, in one round
    /// trip per few thousand values.
    pub async fn enqueue_all(
        &self,
        txn: &impl ConnectionTrait,
        msgs: &[OutboundMessage],
    ) -> Result<()> {
        let mut rows = Rows::new(
            "INSERT INTO eh_outbox (id, subject, headers, payload, created_at, urgent, tenant)",
            7,
        );
        let now = chrono::Utc::now();
        for msg in msgs {
            let headers = serde_json::to_string(&msg.headers).unwrap_or_else(|_| "{}".into());
            rows.push([
                msg.msg_id.clone().into(),
                msg.subject.clone().into(),
                headers.into(),
                msg.payload.clone().into(),
                now.into(),
                self.urgent.into(),
                // The council of its envelope: row-level security refuses one of another
                // council than the transaction's.
                msg.headers
                    .get(crate::envelope::H_TENANT)
                    .cloned()
                    .unwrap_or_default()
                    .into(),
            ]);
        }
        rows.write(txn).await?;
        Ok(())
    }

    /// Call after the transaction that enqueued has committed: the relay publishes at once.
    pub fn committed(&self) {
        if self.urgent {
            self.urgent_wake.notify_one();
        } else {
            self.wake.notify_one();
        }
    }

    /// What wakes the relay: the urgent lane's (`urgent`), or the ordinary one.
    pub(crate) fn waker(&self, urgent: bool) -> Arc<Notify> {
        if urgent {
            self.urgent_wake.clone()
        } else {
            self.wake.clone()
        }
    }
}
