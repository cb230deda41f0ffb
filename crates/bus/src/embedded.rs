//! The embedded transport: JetStream's guarantees over one SQLite file, for one process (or a few
//! on one machine). Publish stores the message once per id and council (a duplicate id on the
//! same council's subjects is dropped, like `Nats-Msg-Id` in a council's inbound stream, for
//! good rather than for two minutes) and adds a pending delivery for every
//! durable consumer whose filter matches; a consumer leases deliveries for `ack_wait`, an ack
//! deletes the delivery, a nak makes it due again after the delay, an expired lease redelivers.
//!
//! Everything goes through one SQLite connection, so the transport keeps its statements few: a
//! publish wakes only the consumers it gave deliveries to (an idle consumer — the urgent lane's —
//! does not lease on every publish of the ordinary backlog), and acks are written together, every
//! ack waiting at that moment in one transaction ([`AckWriter`]), instead of one statement each in
//! front of everything else on the connection.
use crate::subjects::matches;
use crate::transport::{
    Acker, ConsumerSpec, Delivery, Retention, StoredMessage, StreamSpec, Subscription, Transport,
};
use crate::{Error, OutboundMessage, Received, Result};
use async_trait::async_trait;
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DatabaseConnection, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        owner: "bus",
        version: 1,
        name: "embedded bus",
        sql: "CREATE TABLE bus_messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            msg_id TEXT NOT NULL UNIQUE,
            subject TEXT NOT NULL,
            headers TEXT NOT NULL,
            payload BLOB NOT NULL,
            stored_at INTEGER NOT NULL
          );
          CREATE INDEX bus_messages_subject ON bus_messages (subject);
          CREATE TABLE bus_consumers (
            name TEXT PRIMARY KEY,
            filter TEXT NOT NULL
          );
          CREATE TABLE bus_deliveries (
            consumer TEXT NOT NULL,
            seq INTEGER NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 0,
            due_at INTEGER NOT NULL,
            PRIMARY KEY (consumer, seq)
          );
          CREATE INDEX bus_deliveries_due ON bus_deliveries (consumer, due_at, seq)",
    },
    // The subject filters of streams that keep their messages until they are removed (dead
    // letters): the retention sweep never deletes a message on one of them.
    Migration {
        owner: "bus",
        version: 2,
        name: "streams kept until removed",
        sql: "CREATE TABLE bus_retained (filter TEXT PRIMARY KEY)",
    },
];

/// The id a message is de-duplicated by: its `msg_id` within its council (`<tenant>:<msg_id>`,
/// the tenant being the subject's second token, `<ns>.<tenant>.…`), as NATS de-duplicates within
/// one council's inbound stream: two councils' upstream systems may both number a referral
/// `R-1001`. (Rows stored before ids were scoped hold the bare id, distinct from every new one.)
fn dedup_id(subject: &str, msg_id: &str) -> String {
    let tenant = subject.split('.').nth(1).unwrap_or("");
    format!("{tenant}:{msg_id}")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Each durable consumer's wake-up, rung after a publish gave it deliveries.
#[derive(Default)]
struct Wakes(Mutex<HashMap<String, Arc<Notify>>>);

impl Wakes {
    fn of(&self, consumer: &str) -> Arc<Notify> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(consumer.to_string())
            .or_default()
            .clone()
    }

    fn ring(&self, consumers: &HashSet<String>) {
        let wakes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for c in consumers {
            if let Some(w) = wakes.get(c) {
                w.notify_waiters();
            }
        }
    }
}

/// Most acks one transaction deletes.
const ACK_BATCH: usize = 512;

type AckRequest = (String, i64, oneshot::Sender<Result<()>>);

/// Writes acks together: one task takes every ack waiting, deletes their deliveries in one
/// transaction and answers each; an ack returns once its delivery is gone, as before.
#[derive(Clone)]
struct AckWriter(mpsc::UnboundedSender<AckRequest>);

impl AckWriter {
    fn start(db: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(Self::run(db, rx));
        Self(tx)
    }

    async fn ack(&self, consumer: &str, seq: i64) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.0
            .send((consumer.to_string(), seq, done))
            .map_err(|_| Error::Transport("the embedded bus has stopped".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(Error::Transport("the embedded bus has stopped".into())))
    }

    /// Until every sender (the transport and its ackers) has gone.
    async fn run(db: DatabaseConnection, mut rx: mpsc::UnboundedReceiver<AckRequest>) {
        let mut batch = Vec::new();
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < ACK_BATCH {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            let result = Self::delete(&db, &batch).await.map_err(|e| e.to_string());
            for (_, _, done) in batch.drain(..) {
                let _ = done.send(
                    result
                        .clone()
                        .map_err(|e| Error::Transport(format!("ack: {e}"))),
                );
            }
        }
    }

    async fn delete(db: &DatabaseConnection, batch: &[AckRequest]) -> Result<()> {
        let b = db.get_database_backend();
        let mut by_consumer: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (consumer, seq, _) in batch {
            by_consumer.entry(consumer).or_default().push(*seq);
        }
        let txn = eh_store::begin(db).await?;
        for (consumer, seqs) in by_consumer {
            let mut values: Vec<Value> = vec![consumer.into()];
            values.extend(seqs.iter().map(|s| Value::from(*s)));
            let placeholders: Vec<String> =
                (2..values.len() + 1).map(|i| format!("${i}")).collect();
            txn.execute_raw(stmt(
                b,
                &format!(
                    "DELETE FROM bus_deliveries WHERE consumer = $1 AND seq IN ({})",
                    placeholders.join(", ")
                ),
                values,
            ))
            .await?;
        }
        eh_store::commit(txn).await?;
        Ok(())
    }
}

/// The embedded broker.
pub struct EmbeddedTransport {
    db: DatabaseConnection,
    /// The urgent lane's connection to the same file ([`eh_store::Lanes`]): the urgent relays'
    /// publishes and the urgent consumers' leases go through it, ahead of the ordinary work
    /// queued for `db`. The same as `db` when opened with [`EmbeddedTransport::open`].
    urgent_db: DatabaseConnection,
    wakes: Arc<Wakes>,
    acks: AckWriter,
}

impl EmbeddedTransport {
    /// Over a migrated bus database.
    pub async fn open(db: DatabaseConnection) -> Result<Self> {
        Self::open_lanes(eh_store::Lanes {
            urgent: db.clone(),
            ordinary: db,
            gate: None,
        })
        .await
    }

    /// Over a migrated bus database, with an urgent lane of its own ([`eh_store::connect_lanes`]).
    pub async fn open_lanes(lanes: eh_store::Lanes) -> Result<Self> {
        eh_store::migrate(&lanes.ordinary, "bus", MIGRATIONS).await?;
        Ok(Self {
            acks: AckWriter::start(lanes.ordinary.clone()),
            db: lanes.ordinary,
            urgent_db: lanes.urgent,
            wakes: Arc::default(),
        })
    }

    async fn store(&self, db: &DatabaseConnection, msgs: &[OutboundMessage]) -> Result<()> {
        let b = db.get_database_backend();
        let txn = eh_store::begin(db).await?;
        // The consumers are read after the first write (see `lease`: write first).
        let mut consumers: Option<Vec<(String, String)>> = None;
        let now = now_ms();
        let mut woken = HashSet::new();
        for m in msgs {
            let mut headers = m.headers.clone();
            headers.insert(crate::envelope::H_MSG_ID.into(), m.msg_id.clone());
            let headers = serde_json::to_string(&headers).unwrap_or_else(|_| "{}".into());
            let res = txn
                .execute_raw(stmt(
                    b,
                    "INSERT INTO bus_messages (msg_id, subject, headers, payload, stored_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (msg_id) DO NOTHING",
                    [
                        dedup_id(&m.subject, &m.msg_id).into(),
                        m.subject.clone().into(),
                        headers.into(),
                        m.payload.clone().into(),
                        now.into(),
                    ],
                ))
                .await?;
            if res.rows_affected() == 0 {
                continue; // duplicate id: dropped
            }
            let seq = res.last_insert_id() as i64;
            if consumers.is_none() {
                let rows = txn
                    .query_all_raw(stmt(b, "SELECT name, filter FROM bus_consumers", []))
                    .await?;
                consumers = Some(
                    rows.iter()
                        .filter_map(|r| {
                            Some((r.try_get_by_index(0).ok()?, r.try_get_by_index(1).ok()?))
                        })
                        .collect(),
                );
            }
            let consumers = consumers.as_deref().unwrap_or_default();
            for (name, _) in consumers.iter().filter(|(_, f)| matches(f, &m.subject)) {
                txn.execute_raw(stmt(
                    b,
                    "INSERT INTO bus_deliveries (consumer, seq, due_at) VALUES ($1, $2, $3)",
                    [name.clone().into(), seq.into(), now.into()],
                ))
                .await?;
                woken.insert(name.clone());
            }
        }
        eh_store::commit(txn).await?;
        self.wakes.ring(&woken);
        Ok(())
    }

    /// Deletes messages stored longer than `keep` that no consumer still has to settle — the
    /// embedded counterpart of a JetStream stream's `max_age` (the outbox replay window). A message
    /// with a delivery pending is kept however old, and so is every message of a stream kept
    /// until removed ([`Retention::UntilRemoved`]: dead letters), whose subject filters
    /// [`Transport::ensure_streams`] recorded. Duplicate ids are recognised for as long as the
    /// message is kept. Returns how many were deleted.
    pub async fn sweep(&self, keep: Duration) -> Result<u64> {
        let b = self.db.get_database_backend();
        let cutoff = now_ms() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let retained: Vec<String> = self
            .db
            .query_all_raw(stmt(b, "SELECT filter FROM bus_retained", []))
            .await?
            .iter()
            .map(|r| r.try_get_by_index(0))
            .collect::<Result<_, _>>()?;
        let old = self
            .db
            .query_all_raw(stmt(
                b,
                "SELECT seq, subject FROM bus_messages WHERE stored_at <= $1
                 AND NOT EXISTS (SELECT 1 FROM bus_deliveries d WHERE d.seq = bus_messages.seq)
                 ORDER BY seq",
                [cutoff.into()],
            ))
            .await?;
        let mut expired = Vec::new();
        for r in &old {
            let subject: String = r.try_get_by_index(1)?;
            if !retained.iter().any(|f| matches(f, &subject)) {
                expired.push(r.try_get_by_index::<i64>(0)?);
            }
        }
        let mut deleted = 0;
        for chunk in expired.chunks(500) {
            let values: Vec<Value> = chunk.iter().map(|s| Value::from(*s)).collect();
            let placeholders: Vec<String> =
                (1..values.len() + 1).map(|i| format!("${i}")).collect();
            // Still without a delivery: a consumer created since the read gets every message.
            deleted += self
                .db
                .execute_raw(stmt(
                    b,
                    &format!(
                        "DELETE FROM bus_messages WHERE seq IN ({})
                         AND NOT EXISTS (SELECT 1 FROM bus_deliveries d WHERE d.seq = bus_messages.seq)",
                        placeholders.join(", ")
                    ),
                    values,
                ))
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }

    /// Sweeps every `every` until `stop`, keeping messages for `keep`. `kept` are the streams
    /// kept until removed (the dead letters): recorded before the first sweep, so a sweep at
    /// start never races the services' own [`Transport::ensure_streams`].
    pub async fn run_retention(
        self: Arc<Self>,
        keep: Duration,
        every: Duration,
        kept: Vec<StreamSpec>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let swept = match self.ensure_streams(&kept).await {
                Ok(()) => self.sweep(keep).await,
                Err(e) => Err(e),
            };
            match swept {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "embedded bus retention sweep"),
                Err(e) => tracing::warn!(error = %e, "embedded bus retention sweep failed"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[async_trait]
impl Transport for EmbeddedTransport {
    async fn ensure_streams(&self, streams: &[StreamSpec]) -> Result<()> {
        // One table holds every subject; what the sweep must leave alone is recorded.
        for s in streams
            .iter()
            .filter(|s| s.retention == Retention::UntilRemoved)
        {
            for filter in &s.subjects {
                self.db
                    .execute_raw(stmt(
                        self.db.get_database_backend(),
                        "INSERT INTO bus_retained (filter) VALUES ($1) ON CONFLICT (filter) DO NOTHING",
                        [filter.clone().into()],
                    ))
                    .await?;
            }
        }
        Ok(())
    }

    async fn publish_batch(&self, msgs: &[OutboundMessage]) -> Vec<Result<()>> {
        self.publish_on(&self.db, msgs).await
    }

    async fn publish_batch_urgent(&self, msgs: &[OutboundMessage]) -> Vec<Result<()>> {
        self.publish_on(&self.urgent_db, msgs).await
    }

    async fn subscribe(&self, spec: &ConsumerSpec) -> Result<Box<dyn Subscription>> {
        self.subscribe_on(self.db.clone(), spec).await
    }

    async fn subscribe_urgent(&self, spec: &ConsumerSpec) -> Result<Box<dyn Subscription>> {
        self.subscribe_on(self.urgent_db.clone(), spec).await
    }
    async fn ping(&self) -> Result<()> {
        eh_store::ping(&self.db).await?;
        Ok(())
    }

    async fn list(&self, spec: &StreamSpec, limit: usize) -> Result<Vec<StoredMessage>> {
        self.scan(spec, ">", 0, limit).await
    }

    /// A page of rows at a time, in sequence order (one file holds every stream: each row is
    /// kept when its subject is the stream's and matches `filter`).
    async fn scan(
        &self,
        spec: &StreamSpec,
        filter: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        const PAGE: i64 = 500;
        let b = self.db.get_database_backend();
        let mut out = Vec::new();
        let mut next = i64::try_from(from).unwrap_or(i64::MAX);
        while out.len() < limit {
            let rows = self
                .db
                .query_all_raw(stmt(
                    b,
                    "SELECT seq, subject, headers, payload FROM bus_messages WHERE seq >= $1 \
                     ORDER BY seq LIMIT $2",
                    [next.into(), PAGE.into()],
                ))
                .await?;
            let done = (rows.len() as i64) < PAGE;
            for r in rows {
                let seq: i64 = r.try_get_by_index(0)?;
                next = seq + 1;
                let subject: String = r.try_get_by_index(1)?;
                if !(matches(filter, &subject)
                    && spec.subjects.iter().any(|f| matches(f, &subject)))
                {
                    continue;
                }
                let headers: String = r.try_get_by_index(2)?;
                out.push(StoredMessage {
                    seq: seq as u64,
                    subject,
                    headers: serde_json::from_str(&headers).unwrap_or_default(),
                    payload: r.try_get_by_index(3)?,
                });
                if out.len() >= limit {
                    break;
                }
            }
            if done {
                break;
            }
        }
        Ok(out)
    }

    async fn delete(&self, _spec: &StreamSpec, seq: u64) -> Result<()> {
        let b = self.db.get_database_backend();
        let txn = eh_store::begin(&self.db).await?;
        txn.execute_raw(stmt(
            b,
            "DELETE FROM bus_deliveries WHERE seq = $1",
            [(seq as i64).into()],
        ))
        .await?;
        txn.execute_raw(stmt(
            b,
            "DELETE FROM bus_messages WHERE seq = $1",
            [(seq as i64).into()],
        ))
        .await?;
        eh_store::commit(txn).await?;
        Ok(())
    }

    async fn count(&self, _spec: &StreamSpec, subject: &str) -> Result<u64> {
        let row = self
            .db
            .query_one_raw(stmt(
                self.db.get_database_backend(),
                "SELECT COUNT(*) FROM bus_messages WHERE subject = $1",
                [subject.into()],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get_by_index::<i64>(0)?.max(0) as u64,
            None => 0,
        })
    }
}

impl EmbeddedTransport {
    async fn publish_on(
        &self,
        db: &DatabaseConnection,
        msgs: &[OutboundMessage],
    ) -> Vec<Result<()>> {
        match self.store(db, msgs).await {
            Ok(()) => msgs.iter().map(|_| Ok(())).collect(),
            Err(e) => {
                let text = e.to_string();
                msgs.iter()
                    .map(|_| Err(Error::Transport(text.clone())))
                    .collect()
            }
        }
    }

    /// Creates the durable consumer if missing; its deliveries are leased through `leases`.
    async fn subscribe_on(
        &self,
        leases: DatabaseConnection,
        spec: &ConsumerSpec,
    ) -> Result<Box<dyn Subscription>> {
        let b = self.db.get_database_backend();
        let txn = eh_store::begin(&self.db).await?;
        let created = txn
            .execute_raw(stmt(
                b,
                "INSERT INTO bus_consumers (name, filter) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                [spec.durable.clone().into(), spec.filter_subject.clone().into()],
            ))
            .await?
            .rows_affected()
            == 1;
        if created {
            // A new durable consumer starts from the beginning of what is stored, as JetStream's
            // DeliverPolicy::All does.
            let rows = txn
                .query_all_raw(stmt(
                    b,
                    "SELECT seq, subject FROM bus_messages ORDER BY seq",
                    [],
                ))
                .await?;
            let now = now_ms();
            for r in rows {
                let seq: i64 = r.try_get_by_index(0)?;
                let subject: String = r.try_get_by_index(1)?;
                if matches(&spec.filter_subject, &subject) {
                    txn.execute_raw(stmt(
                        b,
                        "INSERT INTO bus_deliveries (consumer, seq, due_at) VALUES ($1, $2, $3)",
                        [spec.durable.clone().into(), seq.into(), now.into()],
                    ))
                    .await?;
                }
            }
        }
        eh_store::commit(txn).await?;
        Ok(Box::new(EmbeddedSubscription {
            db: leases,
            consumer: spec.durable.clone(),
            ack_wait: spec.ack_wait,
            published: self.wakes.of(&spec.durable),
            acks: self.acks.clone(),
            buffer: VecDeque::new(),
        }))
    }
}

struct EmbeddedSubscription {
    db: DatabaseConnection,
    consumer: String,
    ack_wait: Duration,
    published: Arc<Notify>,
    acks: AckWriter,
    buffer: VecDeque<Delivery>,
}

impl EmbeddedSubscription {
    /// Leases up to 64 due deliveries.
    async fn lease(&mut self) -> Result<()> {
        let b = self.db.get_database_backend();
        let now = now_ms();
        let lease_until = now + self.ack_wait.as_millis() as i64;
        let txn = eh_store::begin(&self.db).await?;
        // Write first: a transaction that reads and then writes fails at once (SQLITE_BUSY_SNAPSHOT,
        // not waited out) when another connection to the file — another process of the
        // installation — committed in between; one that starts with its write waits its turn.
        let leased = txn
            .query_all_raw(stmt(
                b,
                "UPDATE bus_deliveries SET delivered = delivered + 1, due_at = $1
                 WHERE consumer = $2 AND seq IN (
                   SELECT seq FROM bus_deliveries WHERE consumer = $2 AND due_at <= $3
                   ORDER BY seq LIMIT 64)
                 RETURNING seq, delivered",
                [lease_until.into(), self.consumer.clone().into(), now.into()],
            ))
            .await?;
        if leased.is_empty() {
            eh_store::commit(txn).await?;
            return Ok(());
        }
        let mut delivered: BTreeMap<i64, i64> = BTreeMap::new();
        for r in &leased {
            delivered.insert(r.try_get_by_index(0)?, r.try_get_by_index(1)?);
        }
        let values: Vec<Value> = delivered.keys().map(|s| Value::from(*s)).collect();
        let placeholders: Vec<String> = (1..values.len() + 1).map(|i| format!("${i}")).collect();
        let rows = txn
            .query_all_raw(stmt(
                b,
                &format!(
                    "SELECT seq, subject, headers, payload FROM bus_messages
                     WHERE seq IN ({}) ORDER BY seq",
                    placeholders.join(", ")
                ),
                values,
            ))
            .await?;
        eh_store::commit(txn).await?;
        for r in &rows {
            let seq: i64 = r.try_get_by_index(0)?;
            let headers: String = r.try_get_by_index(2)?;
            let payload: Vec<u8> = r.try_get_by_index(3)?;
            self.buffer.push_back(Delivery {
                msg: Received {
                    subject: r.try_get_by_index(1)?,
                    headers: serde_json::from_str::<BTreeMap<String, String>>(&headers)
                        .unwrap_or_default(),
                    payload: payload.into(),
                    delivered: delivered.get(&seq).copied().unwrap_or(1) as u64,
                    stream_seq: seq as u64,
                },
                acker: Box::new(EmbeddedAcker {
                    db: self.db.clone(),
                    acks: self.acks.clone(),
                    consumer: self.consumer.clone(),
                    seq,
                    ack_wait: self.ack_wait,
                }),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        if let Some(d) = self.buffer.pop_front() {
            return Ok(Some(d));
        }
        let published = self.published.clone();
        let notified = published.notified();
        self.lease().await?;
        if let Some(d) = self.buffer.pop_front() {
            return Ok(Some(d));
        }
        // Nothing due: wait for a publish, or poll again for naks and expired leases.
        let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
        self.lease().await?;
        Ok(self.buffer.pop_front())
    }
}

struct EmbeddedAcker {
    db: DatabaseConnection,
    acks: AckWriter,
    consumer: String,
    seq: i64,
    ack_wait: Duration,
}

#[async_trait]
impl Acker for EmbeddedAcker {
    async fn ack(&self) -> Result<()> {
        self.acks.ack(&self.consumer, self.seq).await
    }
    async fn in_progress(&self) -> Result<()> {
        self.nak(self.ack_wait).await
    }
    async fn nak(&self, delay: Duration) -> Result<()> {
        self.db
            .execute_raw(stmt(
                self.db.get_database_backend(),
                "UPDATE bus_deliveries SET due_at = $1 WHERE consumer = $2 AND seq = $3",
                [
                    (now_ms() + delay.as_millis() as i64).into(),
                    self.consumer.clone().into(),
                    self.seq.into(),
                ],
            ))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::dedup_id;

    #[test]
    fn message_ids_are_de_duplicated_within_a_council() {
        assert_eq!(
            dedup_id("eh.worcs.inbound.referral", "R-1001"),
            "worcs:R-1001"
        );
        assert_ne!(
            dedup_id("eh.worcs.inbound.referral", "R-1001"),
            dedup_id("eh.staffs.inbound.referral", "R-1001")
        );
        // The urgent subject of the same council shares its ids, as its stream does.
        assert_eq!(
            dedup_id("eh.worcs.inbound.referral.urgent", "R-1001"),
            dedup_id("eh.worcs.inbound.referral", "R-1001")
        );
    }
}
