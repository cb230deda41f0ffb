//! The sender: delivers queued messages, most urgent first (step-ups to the front door go before
//! any backlog), checking the suppression list at the point of send, retrying failures with
//! backoff and recording every attempt. Each message is claimed with a lease first, so several
//! replicas never send the same one at once.
use crate::mailer::{Email, Mailer};
use crate::settings::NotificationsSettings;
use crate::store::{self, status};
use eh_bus::{Envelope, OutboundMessage, ServiceContext};
use eh_proto::notifications::v1::MessageSent;
use prost::Message;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A fail point (`Faults::hold`) between a round's claim and its suppression check, for tests.
pub const HOLD_AFTER_CLAIM: &str = "notifications_sender_after_claim";

/// Attempts before a message is marked failed for good.
pub const MAX_ATTEMPTS: i32 = 8;
/// How long a claim holds a message. A round renews its claims every [`RENEW_EVERY`] while it
/// works, so a round that takes longer keeps them; a sender that dies lets them go when this
/// ends, and another replica (or the restarted process) sends them within seconds.
pub const LEASE: chrono::Duration = chrono::Duration::seconds(10);
/// How often a working round renews its claims.
pub const RENEW_EVERY: Duration = Duration::from_secs(3);
/// Due messages read per round (a backlog larger than this waits a round; the most urgent first).
pub const DUE_BATCH: u32 = 256;

/// A message, how the attempt to send it ended, and when.
/// How many emails a round may have sent but not yet recorded: a few rounds of the connections'
/// worth, so recording in batches keeps up without sending waiting on each one.
fn unrecorded_limit(connections: usize) -> usize {
    (4 * connections).max(32)
}

/// The most emails a sender with `connections` SMTP connections can have had accepted by the SMTP
/// server but not yet recorded as sent when its process dies: those recorded in flight and those
/// waiting to be. Each is sent again after the crash, under the same Message-ID (at least once,
/// as SMTP allows).
pub fn resent_after_a_crash_at_most(connections: usize) -> usize {
    unrecorded_limit(connections) + connections
}

type Attempt = (
    store::MessageRow,
    Result<(), String>,
    chrono::DateTime<chrono::Utc>,
);

pub struct Sender {
    ctx: ServiceContext,
    /// Checked at start (`Service::check_settings`).
    settings: Arc<NotificationsSettings>,
    mailer: Arc<Mailer>,
    wake: Arc<Notify>,
    /// Cancelled when the process stops: the recorder then stops waiting for the database.
    shutdown: CancellationToken,
    /// Sends messages of this priority or above only (the urgent sender: `urgent.rs`).
    min_priority: i32,
}

impl Sender {
    pub fn new(ctx: ServiceContext, mailer: Arc<Mailer>) -> Self {
        Self {
            settings: Arc::new(
                NotificationsSettings::from_settings(&ctx.settings).unwrap_or_default(),
            ),
            ctx,
            mailer,
            wake: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
            min_priority: i32::MIN,
        }
    }

    /// A sender of urgent messages only (`urgent.rs`), ahead of any backlog.
    pub fn urgent(ctx: ServiceContext, mailer: Arc<Mailer>) -> Self {
        Self {
            min_priority: store::PRIORITY_URGENT,
            ..Self::new(ctx, mailer)
        }
    }

    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        self.shutdown = shutdown.clone();
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

    /// Sends what is due, up to `smtp.max_connections` at once over pooled SMTP connections; how many
    /// messages it settled. A round reads up to `DUE_BATCH` due messages, claims them and checks
    /// their recipients against the suppression lists in one statement each, then records the
    /// results as they come in, every result ready at that moment in one transaction.
    pub async fn send_due(&self) -> Result<usize, sea_orm::DbErr> {
        use futures::StreamExt;
        // Every council's messages due: the sender's connections are in the system scope for it
        // alone (a named worker); what it records, it records in one system-scope transaction.
        let db = &self
            .ctx
            .readers
            .system(eh_store::SystemWorker::Sender)
            .await?;
        let now = self.ctx.clock.now();
        let due = store::due_at_least(db, now, self.min_priority, DUE_BATCH).await?;
        if due.is_empty() {
            return Ok(0);
        }
        // Whole milliseconds, so the lease reads back exactly as written (renewal matches it).
        let lease =
            |at: chrono::DateTime<chrono::Utc>| chrono::SubsecRound::trunc_subsecs(at + LEASE, 3);
        let mut held = lease(now);
        let claimed = store::claim(db, &due, held).await?;
        // Another sender had the rest.
        let due: Vec<store::MessageRow> = due
            .into_iter()
            .filter(|m| claimed.contains(&m.id))
            .collect();
        if self.ctx.faults.is_held(HOLD_AFTER_CLAIM) {
            self.ctx.faults.released(HOLD_AFTER_CLAIM).await;
        }
        // Claimed now: the round keeps these messages through an outage rather than leave them
        // leased (and unsent) until the lease ends. Checked at the moment of sending, whatever
        // was known when the message was queued: its address, its person, and every other
        // address held for a person marked unsafe.
        let withheld_now = self.while_away(|| store::withheld(db, &due)).await?;
        let reason_to_withhold = |m: &store::MessageRow| withheld_now.get(&m.id).cloned();
        let mut settled = 0;
        let mut to_send = Vec::with_capacity(due.len());
        let mut withheld = Vec::new();
        for m in due {
            match reason_to_withhold(&m) {
                Some(reason) => withheld.push((m, reason)),
                None => to_send.push(m),
            }
        }
        if !withheld.is_empty() {
            let changes: Vec<store::StatusChange> = withheld
                .iter()
                .map(|(m, reason)| {
                    tracing::warn!(message_id = %m.id, "recipient is marked unsafe; message suppressed");
                    store::StatusChange {
                        id: &m.id,
                        status: status::SUPPRESSED,
                        error: Some(reason),
                        next_attempt_at: now,
                        sent_at: None,
                    }
                })
                .collect();
            self.while_away(|| store::set_statuses(db, &changes))
                .await?;
            settled += withheld.len();
        }
        // Sending and recording run side by side: the emails in flight keep going while the
        // attempts finished so far are recorded, every one finished at that moment together.
        // Sending never runs more than `ahead` emails past what is recorded (each email holds a
        // permit until its attempt is recorded), so a slow database slows sending rather than
        // leaving a growing number of emails out but not on record (sent again after a crash).
        // Should recording fail, no further email is started (those not started stay leased,
        // and go out once the lease ends), what finished is recorded again after a pause, and
        // the round ends (with the error if recording never succeeded).
        // The claims this round still holds (not yet recorded), renewed while it works.
        let outstanding = std::sync::Mutex::new(
            to_send
                .iter()
                .map(|m| m.id.clone())
                .collect::<HashSet<String>>(),
        );
        let round_done = CancellationToken::new();
        let renewing = async {
            loop {
                tokio::select! {
                    () = round_done.cancelled() => break,
                    () = tokio::time::sleep(RENEW_EVERY) => {}
                }
                let ids: Vec<String> = outstanding
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let until = lease(self.ctx.clock.now());
                match store::renew(db, &ids, held, until).await {
                    Ok(_) => held = until,
                    // The claims run out at the old time: another sender may take them then
                    // (at least once, as SMTP allows; the same Message-ID).
                    Err(e) => tracing::warn!(error = %e, "sender: cannot renew its claims"),
                }
            }
        };
        let in_flight = self.settings.smtp.max_connections.max(1) as usize;
        let ahead = std::sync::Arc::new(tokio::sync::Semaphore::new(unrecorded_limit(in_flight)));
        let stop = std::sync::atomic::AtomicBool::new(false);
        let unstarted = std::sync::Mutex::new(Vec::new());
        let not_started = &unstarted;
        let (finished, mut to_record) = tokio::sync::mpsc::unbounded_channel();
        let sending = futures::stream::iter(to_send)
            .map(|m| {
                let (stop, ahead) = (&stop, ahead.clone());
                async move {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return Err(m);
                    }
                    // Never closed: a permit always comes, once recording has caught up.
                    let Ok(permit) = ahead.acquire_owned().await else {
                        return Err(m);
                    };
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return Err(m);
                    }
                    let result = self.deliver(&m).await;
                    Ok(((m, result, self.ctx.clock.now()), permit))
                }
            })
            .buffer_unordered(in_flight)
            .for_each(move |attempt| {
                match attempt {
                    // The receiver is kept until the channel closes: this cannot fail.
                    Ok(attempt) => drop(finished.send(attempt)),
                    Err(m) => not_started
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(m),
                }
                async {}
            });
        let recording = async {
            let mut recorded = 0;
            let mut failure = None;
            let mut done: Vec<(Attempt, tokio::sync::OwnedSemaphorePermit)> =
                Vec::with_capacity(DUE_BATCH as usize);
            while to_record.recv_many(&mut done, DUE_BATCH as usize).await > 0 {
                // Each permit is held until its attempt is recorded (or given up), then frees a
                // waiting sender.
                let (attempts, permits): (Vec<Attempt>, Vec<_>) = done.drain(..).unzip();
                if failure.is_none() {
                    match self.record_retrying(&attempts, &stop).await {
                        Ok(()) => {
                            recorded += attempts.len();
                            let mut held = outstanding.lock().unwrap_or_else(|e| e.into_inner());
                            for (m, _, _) in &attempts {
                                held.remove(&m.id);
                            }
                        }
                        Err(e) => failure = Some(e),
                    }
                }
                drop(permits);
            }
            failure.map_or(Ok(recorded), Err)
        };
        let working = async {
            let done = tokio::join!(sending, recording);
            round_done.cancel();
            done
        };
        let (((), recorded), ()) = tokio::join!(working, renewing);
        let recorded = recorded?;
        // Recording failed for a while (the database was away) and has caught up: the emails
        // not started meanwhile are due again now, rather than when their lease ends.
        let unstarted = unstarted.into_inner().unwrap_or_else(|e| e.into_inner());
        if !unstarted.is_empty() {
            let again = self.ctx.clock.now();
            let changes: Vec<store::StatusChange> = unstarted
                .iter()
                .map(|m| store::StatusChange {
                    id: &m.id,
                    status: status::QUEUED,
                    error: None,
                    next_attempt_at: again,
                    sent_at: None,
                })
                .collect();
            self.while_away(|| store::set_statuses(db, &changes))
                .await?;
            self.wake.notify_one();
        }
        Ok(settled + recorded)
    }

    /// [`Sender::record`]; after a failure it raises `stop` (no further email of the round is
    /// started) and tries again after a pause: the emails are out, and an attempt not recorded
    /// is sent again once its lease ends. While the database is away (a transient error) it
    /// keeps trying, with a capped, jittered backoff, until the database is back or the process
    /// stops — an outage must not double an email. Any other error is tried a few times only.
    async fn record_retrying(
        &self,
        attempts: &[Attempt],
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<(), sea_orm::DbErr> {
        let mut backoff =
            eh_platform::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let e = match self.record(attempts).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let transient = eh_store::is_transient(&e);
            if (!transient && backoff.attempts() >= 3) || self.shutdown.is_cancelled() {
                tracing::error!(error = %e, attempts = attempts.len(), "cannot record sent messages; they will be sent again when their lease ends");
                return Err(e);
            }
            if backoff.attempts() == 0 || (backoff.attempts() + 1).is_multiple_of(10) {
                tracing::warn!(error = %e, transient, attempts = attempts.len(), "cannot record sent messages; trying again");
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    /// `op`, tried again while the database is away (a transient error), with a capped, jittered
    /// backoff, until it answers or the process stops; any other error at once.
    async fn while_away<T, F, Fut>(&self, mut op: F) -> Result<T, sea_orm::DbErr>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sea_orm::DbErr>>,
    {
        let mut backoff =
            eh_platform::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            match op().await {
                Err(e) if eh_store::is_transient(&e) && !self.shutdown.is_cancelled() => {
                    if backoff.attempts() == 0 {
                        tracing::warn!(error = %e, "sender: the database is away; keeping the claimed messages");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = self.shutdown.cancelled() => {}
                    }
                }
                answer => return answer,
            }
        }
    }

    /// One attempt to deliver `m`; the error text is what its record shows.
    async fn deliver(&self, m: &store::MessageRow) -> Result<(), String> {
        let from = self
            .settings
            .council(&m.tenant)
            .and_then(|t| t.mail_from.clone())
            .unwrap_or_else(|| self.settings.smtp.from.clone());
        self.mailer
            .send(&Email {
                message_id: &m.id,
                template: &m.template,
                from: &from,
                to: &m.recipient,
                subject: &m.subject,
                body: &m.body,
            })
            .await
    }

    /// Records attempts in one transaction: sent (and `message_sent` in the outbox), queued again
    /// with backoff, or failed for good after `MAX_ATTEMPTS`.
    async fn record(&self, attempts: &[Attempt]) -> Result<(), sea_orm::DbErr> {
        let mut events = Vec::new();
        let mut failed = Vec::new();
        let mut changes = Vec::with_capacity(attempts.len());
        for (m, result, at) in attempts {
            let tries = m.attempts + 1;
            let change = |status, error, next_attempt_at, sent_at| store::StatusChange {
                id: &m.id,
                status,
                error,
                next_attempt_at,
                sent_at,
            };
            match result {
                Ok(()) => {
                    changes.push(change(status::SENT, None, *at, Some(*at)));
                    let env = Envelope::new(
                        eh_proto::catalogue::MESSAGE_SENT.payload,
                        &m.tenant,
                        "service:notifications",
                        *at,
                    );
                    let event = MessageSent {
                        message_id: m.id.clone(),
                        template: m.template.clone(),
                        channel: m.channel.clone(),
                        related_id: m.related_id.clone(),
                        sent_at: at.to_rfc3339(),
                    };
                    let subject =
                        eh_proto::catalogue::MESSAGE_SENT.subject(self.ctx.namespace(), &m.tenant);
                    events.push(OutboundMessage::event(subject, &env, event.encode_to_vec()));
                    tracing::info!(message_id = %m.id, template = %m.template, "message sent");
                }
                // An urgent message (the front door's) is never given up: `urgent.rs` raises it.
                // A task for the team manager, in the same transaction.
                Err(error) if tries >= MAX_ATTEMPTS && m.priority < store::PRIORITY_URGENT => {
                    tracing::error!(message_id = %m.id, attempts = tries, "message failed for good; a task for the team manager");
                    changes.push(change(status::FAILED, Some(error), *at, None));
                    failed.push((m, *at));
                }
                Err(error) => {
                    let next = *at + self.backoff(tries);
                    tracing::warn!(message_id = %m.id, %error, attempts = tries, "send failed; will retry");
                    changes.push(change(status::QUEUED, Some(error), next, None));
                }
            }
        }
        let txn = eh_store::begin_system(&self.ctx.db, eh_store::SystemWorker::Sender).await?;
        store::set_statuses(&txn, &changes).await?;
        for (m, at) in failed {
            store::open_failed_task(&txn, m, at).await?;
        }
        self.ctx
            .outbox
            .enqueue_all(&txn, &events)
            .await
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
        eh_store::commit(txn).await?;
        if !events.is_empty() {
            self.ctx.outbox.committed();
        }
        Ok(())
    }
}
