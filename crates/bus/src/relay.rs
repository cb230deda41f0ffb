//! The relay: publishes committed outbox rows in id (time) order, marks them published, and keeps
//! published rows for a replay window. Several replicas may run it: on PostgreSQL each batch is
//! claimed with `FOR UPDATE SKIP LOCKED`.
use crate::faults::Faults;
use crate::outbox::Outbox;
use crate::{OutboundMessage, Result, Transport};
use eh_platform::Metrics;
use eh_platform::metrics::ServiceLabels;
use eh_store::stmt;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const BATCH: u64 = 256;

/// A fail point (`Faults::hold`): every ordinary relay of the process stands still, before its
/// next batch, until released; the urgent relays go on (tests of the urgent lane).
pub const HOLD_ORDINARY: &str = "ordinary_relay";

/// Publishes one service's outbox.
pub struct Relay {
    pub service: String,
    pub db: DatabaseConnection,
    pub transport: Arc<dyn Transport>,
    pub outbox: Outbox,
    pub metrics: Arc<Metrics>,
    pub faults: Arc<Faults>,
    pub retention: Duration,
    /// The urgent lane's relay: publishes the rows marked urgent alone (on the urgent lane's
    /// connections, woken by their commit), so they never wait behind the ordinary rows. The
    /// ordinary relay publishes every row in order, urgent ones too should it come to them
    /// first; a row published by both is dropped by the broker as a repeat (`Nats-Msg-Id`) and
    /// by consumers' inboxes.
    pub urgent_only: bool,
}

impl Relay {
    /// Runs until `shutdown`, then drains what is committed (bounded by the caller's grace period).
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.outbox.waker(self.urgent_only);
        // The urgent relay is woken by every urgent commit of this replica; it looks on its
        // own less often (another replica's rows: the ordinary relay publishes them too).
        let idle = if self.urgent_only {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(500)
        };
        let mut last_housekeeping = Instant::now() - Duration::from_secs(3600);
        // After a failed publish the relay waits longer each time (jittered, at most 5 s); the
        // idle poll stays every 500 ms.
        let mut backoff =
            eh_platform::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let pause = match self.publish_once().await {
                Ok(n) if n > 0 => {
                    backoff.reset();
                    continue;
                }
                Ok(_) => {
                    backoff.reset();
                    Duration::ZERO
                }
                Err(e) => {
                    tracing::warn!(service = %self.service, error = %e, "outbox relay: publish failed, will retry");
                    backoff.next_delay()
                }
            };
            if !self.urgent_only && last_housekeeping.elapsed() > Duration::from_secs(30) {
                last_housekeeping = Instant::now();
                self.housekeeping().await;
            }
            if shutdown.is_cancelled() {
                // Final drain: publish whatever committed before shutdown.
                for _ in 0..20 {
                    match self.publish_once().await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                return;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(pause.max(idle)) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// Publishes one batch; how many rows it published.
    pub async fn publish_once(&self) -> Result<usize> {
        if !self.urgent_only && self.faults.is_held(HOLD_ORDINARY) {
            self.faults.released(HOLD_ORDINARY).await;
        }
        let backend = self.db.get_database_backend();
        // The relay publishes every council's rows, in order: a named system-scope worker.
        let txn = eh_store::begin_system(&self.db, eh_store::SystemWorker::Relay).await?;
        let lock = if backend == DbBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        let lane = if self.urgent_only { " AND urgent" } else { "" };
        let rows = txn
            .query_all_raw(stmt(
                backend,
                &format!(
                    "SELECT id, subject, headers, payload FROM eh_outbox
                     WHERE published_at IS NULL{lane} ORDER BY id LIMIT {BATCH}{lock}"
                ),
                [],
            ))
            .await?;
        if rows.is_empty() {
            eh_store::commit(txn).await?;
            return Ok(0);
        }
        let mut msgs = Vec::with_capacity(rows.len());
        for r in &rows {
            let headers: String = r.try_get_by_index(2)?;
            msgs.push(OutboundMessage {
                msg_id: r.try_get_by_index(0)?,
                subject: r.try_get_by_index(1)?,
                headers: serde_json::from_str::<BTreeMap<String, String>>(&headers)
                    .unwrap_or_default(),
                payload: r.try_get_by_index(3)?,
            });
        }
        let results = if self.urgent_only {
            self.transport.publish_batch_urgent(&msgs).await
        } else {
            self.transport.publish_batch(&msgs).await
        };
        if Faults::trip(&self.faults.relay_dies_after_publish) {
            tracing::warn!("fault injected: relay dies after publishing, before marking rows");
            drop(txn);
            return Err(crate::Error::Transport(
                "relay died (fault injection)".into(),
            ));
        }
        // Mark the published prefix; stop at the first failure to keep order.
        let published: Vec<&OutboundMessage> = msgs
            .iter()
            .zip(&results)
            .take_while(|(_, r)| r.is_ok())
            .map(|(m, _)| m)
            .collect();
        let first_error = results.into_iter().find_map(|r| r.err());
        if !published.is_empty() {
            let now = chrono::Utc::now();
            for chunk in published.chunks(100) {
                let placeholders: Vec<String> =
                    (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
                let mut values: Vec<Value> = vec![now.into()];
                values.extend(chunk.iter().map(|m| Value::from(m.msg_id.clone())));
                txn.execute_raw(stmt(
                    backend,
                    &format!(
                        "UPDATE eh_outbox SET published_at = $1 WHERE id IN ({})",
                        placeholders.join(", ")
                    ),
                    values,
                ))
                .await?;
            }
        }
        eh_store::commit(txn).await?;
        self.metrics
            .outbox_published
            .get_or_create(&ServiceLabels {
                service: self.service.clone(),
            })
            .inc_by(published.len() as u64);
        match first_error {
            Some(e) if published.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(service = %self.service, error = %e, "outbox relay: part of a batch failed");
                Ok(published.len())
            }
            None => Ok(published.len()),
        }
    }

    async fn housekeeping(&self) {
        if let Err(e) = self.sweep().await {
            tracing::warn!(error = %e, "outbox retention sweep failed");
        }
    }

    /// Deletes published rows past the replay window and counts the backlog, every council's.
    async fn sweep(&self) -> Result<()> {
        let backend = self.db.get_database_backend();
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::hours(72));
        let txn = eh_store::begin_system(&self.db, eh_store::SystemWorker::OutboxRetention).await?;
        txn.execute_raw(stmt(
            backend,
            "DELETE FROM eh_outbox WHERE published_at IS NOT NULL AND published_at < $1",
            [cutoff.into()],
        ))
        .await?;
        let backlog = txn
            .query_one_raw(stmt(
                backend,
                "SELECT COUNT(*) FROM eh_outbox WHERE published_at IS NULL",
                [],
            ))
            .await?;
        eh_store::commit(txn).await?;
        if let Some(row) = backlog {
            let n: i64 = row.try_get_by_index(0).unwrap_or(0);
            self.metrics
                .outbox_backlog
                .get_or_create(&ServiceLabels {
                    service: self.service.clone(),
                })
                .set(n);
        }
        Ok(())
    }
}

/// Marks published rows in `[from, to)` unpublished again, so the relay re-publishes them (after a
/// broker loss). Consumers' inboxes absorb the repeats. Returns how many rows.
pub async fn republish_range(
    db: &DatabaseConnection,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    let txn = eh_store::begin_system(db, eh_store::SystemWorker::Republish).await?;
    let res = txn
        .execute_raw(stmt(
            db.get_database_backend(),
            "UPDATE eh_outbox SET published_at = NULL WHERE published_at >= $1 AND published_at < $2",
            [from.into(), to.into()],
        ))
        .await?;
    eh_store::commit(txn).await?;
    Ok(res.rows_affected())
}
