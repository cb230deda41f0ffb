//! The sender: posts each system's pending deliveries, oldest first, signed per the Standard
//! Webhooks convention (`webhook-id`, `webhook-timestamp`, `webhook-signature`). A delivery is
//! claimed before it is sent (its attempt counted, its next try put past the call's timeout), so
//! two gateway replicas never post the same one at once and one that dies mid-call lets it go.
//! A 2xx answer delivers it; anything else is retried after the platform's backoff
//! ([`eh_platform::Backoff`]) — the system's later deliveries wait behind it, so they arrive in
//! order — and after `max_attempts` it is dead-lettered (kept as `dead`, with the reason).
use super::{Endpoint, WebhookSettings, sign, store};
use eh_bus::ServiceContext;
use eh_platform::Backoff;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub struct Sender {
    pub ctx: ServiceContext,
    pub endpoints: Arc<Vec<Endpoint>>,
    pub settings: WebhookSettings,
    pub wake: Arc<Notify>,
}

/// How one endpoint's turn ended.
enum Turn {
    /// Delivered one: try its next.
    Again,
    /// Nothing due (or it failed, or another replica has it): the next is due at this time, if any.
    Wait(Option<chrono::DateTime<chrono::Utc>>),
}

impl Sender {
    pub async fn run(self, stop: CancellationToken) {
        let client = match reqwest::Client::builder()
            .timeout(Duration::from_millis(self.settings.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhook sender cannot start: no HTTP client");
                return;
            }
        };
        let poll = Duration::from_millis(self.settings.poll_ms);
        while !stop.is_cancelled() {
            let mut wait = poll;
            for e in self.endpoints.iter() {
                loop {
                    match self.turn(&client, e).await {
                        Ok(Turn::Again) if !stop.is_cancelled() => {}
                        Ok(Turn::Again) => break,
                        Ok(Turn::Wait(due)) => {
                            if let Some(due) = due {
                                let until = (due - self.ctx.clock.now())
                                    .to_std()
                                    .unwrap_or(Duration::ZERO);
                                wait = wait.min(until.max(Duration::from_millis(10)));
                            }
                            break;
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, tenant = %e.tenant, system = %e.system, "webhook deliveries cannot be read or recorded yet");
                            break;
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn turn(&self, client: &reqwest::Client, e: &Endpoint) -> Result<Turn, sea_orm::DbErr> {
        let db = &self.ctx.db;
        let now = self.ctx.clock.now();
        let txn = eh_store::begin_scoped(db, &e.tenant).await?;
        let d = store::oldest_pending(&txn, &e.tenant, &e.system).await?;
        let Some(d) = d else {
            eh_store::end_read(txn).await?;
            return Ok(Turn::Wait(None));
        };
        if d.next_attempt_at > now {
            eh_store::end_read(txn).await?;
            return Ok(Turn::Wait(Some(d.next_attempt_at)));
        }
        let lease = chrono::Duration::milliseconds(
            i64::try_from(self.settings.timeout_ms).unwrap_or(10_000) + 5_000,
        );
        let claimed = store::claim(&txn, &d, now + lease).await?;
        eh_store::commit(txn).await?;
        if !claimed {
            return Ok(Turn::Wait(Some(now + lease)));
        }
        let attempt = d.attempts + 1;
        let sent = post(client, e, &d).await;
        let now = self.ctx.clock.now();
        let outcome = match &sent {
            Ok(()) => Ok(()),
            Err(reason) if attempt < i32::try_from(self.settings.max_attempts).unwrap_or(10) => {
                let backoff = Backoff::new(
                    Duration::from_millis(self.settings.retry_base_ms),
                    Duration::from_millis(self.settings.retry_max_ms),
                );
                let delay = backoff.delay(u32::try_from(attempt - 1).unwrap_or(0));
                let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
                tracing::info!(tenant = %e.tenant, system = %e.system, delivery = %d.id, attempt, %reason, "webhook delivery failed; retrying");
                Err((reason.as_str(), Some(at)))
            }
            Err(reason) => {
                tracing::warn!(tenant = %e.tenant, system = %e.system, delivery = %d.id, attempt, %reason, "webhook delivery dead-lettered after its last attempt");
                Err((reason.as_str(), None))
            }
        };
        let txn = eh_store::begin_scoped(db, &e.tenant).await?;
        store::settle(&txn, &e.tenant, &d.id, attempt, outcome, now).await?;
        eh_store::commit(txn).await?;
        Ok(if sent.is_ok() {
            Turn::Again
        } else {
            Turn::Wait(None)
        })
    }
}

/// Posts one delivery; why it failed (never the URL or the body).
async fn post(client: &reqwest::Client, e: &Endpoint, d: &store::Delivery) -> Result<(), String> {
    let timestamp = chrono::Utc::now().timestamp();
    let signature = sign(&e.key, &d.id, timestamp, d.payload.as_bytes());
    let resp = client
        .post(&e.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.payload.clone())
        .send()
        .await
        .map_err(|err| {
            if err.is_timeout() {
                "no answer within the timeout".to_string()
            } else if err.is_connect() {
                "cannot connect".to_string()
            } else {
                "the request failed".to_string()
            }
        })?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered HTTP {}", status.as_u16()))
    }
}
