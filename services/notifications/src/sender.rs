//! The sender: delivers queued messages, most urgent first (step-ups to the front door go before
//! any backlog), checking the suppression list at the point of send, retrying failures with
//! backoff and recording every attempt. Each message is claimed with a lease first, so several
//! replicas never send the same one at once.
use crate::mailer::{Email, Mailer};
use crate::store::{self, status};
use eh_bus::{Envelope, OutboundMessage, ServiceContext};
use eh_proto::notifications::v1::MessageSent;
use prost::Message;
use sea_orm::TransactionTrait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Attempts before a message is marked failed for good.
pub const MAX_ATTEMPTS: i32 = 8;
const LEASE_SECS: i64 = 120;
/// Messages in flight at once.
const SEND_CONCURRENCY: usize = 16;

pub struct Sender {
    ctx: ServiceContext,
    mailer: Arc<Mailer>,
    wake: Arc<Notify>,
}

impl Sender {
    pub fn new(ctx: ServiceContext, mailer: Arc<Mailer>) -> Self {
        Self {
            ctx,
            mailer,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let sent = match self.send_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "sender: cannot read due messages");
                    0
                }
            };
            if shutdown.is_cancelled() {
                return;
            }
            if sent > 0 {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    fn backoff(&self, attempts: i32) -> chrono::Duration {
        let base = self.ctx.settings.bus.retry_base_ms.max(1) as i64;
        let max = self
            .ctx
            .settings
            .bus
            .retry_max_ms
            .max(self.ctx.settings.bus.retry_base_ms) as i64;
        chrono::Duration::milliseconds((base << (attempts.clamp(1, 20) - 1)).min(max))
    }

    /// Sends what is due, up to `SEND_CONCURRENCY` at once over pooled SMTP connections; how many
    /// messages it settled.
    pub async fn send_due(&self) -> Result<usize, sea_orm::DbErr> {
        use futures::StreamExt;
        let now = self.ctx.clock.now();
        let due = store::due(&self.ctx.db, now, 64).await?;
        let results: Vec<Result<bool, sea_orm::DbErr>> = futures::stream::iter(due)
            .map(|m| self.send_one(m, now))
            .buffer_unordered(SEND_CONCURRENCY)
            .collect()
            .await;
        let mut settled = 0;
        for r in results {
            if r? {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// One message: claim, check suppression, send, record. False when another sender had it.
    async fn send_one(
        &self,
        m: store::MessageRow,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, sea_orm::DbErr> {
        let db = &self.ctx.db;
        if !store::claim(db, &m, now + chrono::Duration::seconds(LEASE_SECS)).await? {
            return Ok(false);
        }
        let attempts = m.attempts + 1;
        if let Some(reason) = store::is_suppressed(db, &m.tenant, &m.recipient).await? {
            tracing::warn!(message_id = %m.id, "recipient is marked unsafe; message suppressed");
            store::set_status(db, &m.id, status::SUPPRESSED, Some(&reason), now, None).await?;
            return Ok(true);
        }
        let from = self
            .ctx
            .settings
            .tenants
            .get(&m.tenant)
            .and_then(|t| t.mail_from.clone())
            .unwrap_or_else(|| self.ctx.settings.smtp.from.clone());
        let result = self
            .mailer
            .send(&Email {
                message_id: &m.id,
                template: &m.template,
                from: &from,
                to: &m.recipient,
                subject: &m.subject,
                body: &m.body,
            })
            .await;
        let now = self.ctx.clock.now();
        match result {
            Ok(()) => {
                let txn = db.begin().await?;
                store::set_status(&txn, &m.id, status::SENT, None, now, Some(now)).await?;
                let env = Envelope::new(
                    eh_proto::catalogue::MESSAGE_SENT.payload,
                    &m.tenant,
                    "service:notifications",
                    now,
                );
                let event = MessageSent {
                    message_id: m.id.clone(),
                    template: m.template.clone(),
                    channel: m.channel.clone(),
                    related_id: m.related_id.clone(),
                    sent_at: now.to_rfc3339(),
                };
                let subject =
                    eh_proto::catalogue::MESSAGE_SENT.subject(self.ctx.namespace(), &m.tenant);
                self.ctx
                    .outbox
                    .enqueue(
                        &txn,
                        &OutboundMessage::event(subject, &env, event.encode_to_vec()),
                    )
                    .await
                    .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
                txn.commit().await?;
                self.ctx.outbox.committed();
                tracing::info!(message_id = %m.id, template = %m.template, "message sent");
            }
            Err(error) if attempts >= MAX_ATTEMPTS => {
                tracing::error!(message_id = %m.id, %error, attempts, "message failed for good");
                store::set_status(db, &m.id, status::FAILED, Some(&error), now, None).await?;
            }
            Err(error) => {
                let next = now + self.backoff(attempts);
                tracing::warn!(message_id = %m.id, %error, attempts, "send failed; will retry");
                store::set_status(db, &m.id, status::QUEUED, Some(&error), next, None).await?;
            }
        }
        Ok(true)
    }
}
