//! The NATS JetStream transport: file-backed streams created idempotently at start, publish with
//! `Nats-Msg-Id` and wait for the stream's acknowledgement, durable pull consumers with explicit
//! acks. A stream kept per council ([`StreamSpec::partitions`]: the inbound one) is one stream per
//! council, so `Nats-Msg-Id` de-duplicates within a council; a consumer of it is one durable
//! consumer per council's stream, their deliveries merged. The first connection is retried in the
//! background, so a service starts (not ready) while NATS is down and becomes ready when it comes
//! back.
use crate::transport::{
    Acker, ConsumerSpec, Delivery, Retention, StoredMessage, StreamSpec, Subscription, Transport,
};
use crate::{Error, OutboundMessage, Received, Result};
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    pub url: String,
    pub name: String,
    pub credentials_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub replicas: usize,
    /// How long streams keep messages (the replay window).
    pub max_age: Duration,
}

pub struct NatsTransport {
    client: async_nats::Client,
    js: jetstream::Context,
    replicas: usize,
    max_age: Duration,
}

impl NatsTransport {
    /// Starts connecting; returns at once even when the server is down.
    pub async fn connect(opts: NatsOptions) -> Result<Self> {
        let mut co = async_nats::ConnectOptions::new()
            .name(&opts.name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(10)))
            .event_callback(|ev| async move {
                match ev {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            });
        if let Some(creds) = &opts.credentials_file {
            co = co.credentials_file(creds).await.map_err(|e| {
                Error::Transport(format!("bus.credentials_file {}: {e}", creds.display()))
            })?;
        }
        // `nats://user:password@host` (or `nats://token@host`): the server's users
        // (`earlyhelp nats-config`); async-nats does not read them from the URL itself.
        if opts.credentials_file.is_none()
            && let Some(first) = opts.url.split(',').next()
            && let Ok(addr) = first.trim().parse::<async_nats::ServerAddr>()
            && let Some(user) = addr.username()
        {
            co = match addr.password() {
                Some(pass) => co.user_and_password(user.to_string(), pass.to_string()),
                None => co.token(user.to_string()),
            };
        }
        if let Some(ca) = &opts.ca_file {
            co = co.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = co.connect(&opts.url).await.map_err(Error::transport)?;
        let js = jetstream::new(client.clone());
        Ok(Self {
            client,
            js,
            replicas: opts.replicas.max(1),
            max_age: opts.max_age,
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// How long `spec` keeps a message: the replay window, or for ever (`max_age` 0).
    fn max_age(&self, spec: &StreamSpec) -> Duration {
        match spec.retention {
            Retention::ReplayWindow => self.max_age,
            Retention::UntilRemoved => Duration::ZERO,
        }
    }

    /// The stream, created when missing. An existing stream whose `max_age` is not the one
    /// `spec` asks for (a dead-letter stream created when dead letters still expired; a changed
    /// replay window) is updated to it, its other settings kept.
    async fn stream(&self, spec: &StreamSpec) -> Result<stream::Stream> {
        let max_age = self.max_age(spec);
        let stream = self
            .js
            .get_or_create_stream(stream::Config {
                name: spec.name.clone(),
                subjects: spec.subjects.clone(),
                storage: stream::StorageType::File,
                num_replicas: self.replicas,
                max_age,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(Error::transport)?;
        let config = &stream.cached_info().config;
        if config.max_age == max_age {
            return Ok(stream);
        }
        tracing::info!(stream = %spec.name, from = ?config.max_age, to = ?max_age, "updating the stream's max_age");
        let mut config = config.clone();
        config.max_age = max_age;
        if !max_age.is_zero() && config.duplicate_window > max_age {
            config.duplicate_window = max_age;
        }
        self.js
            .update_stream(config)
            .await
            .map_err(Error::transport)?;
        self.js
            .get_stream(&spec.name)
            .await
            .map_err(Error::transport)
    }

    /// The streams that hold `spec`'s messages, each with its spec: its per-council partitions
    /// ([`StreamSpec::partitions`]), created when missing; else the stream itself. A stream kept
    /// whole from before it was split (the single inbound stream on `<ns>.*.inbound.>`, whose
    /// subjects overlap every partition's) is used as it is, with a warning: de-duplication is
    /// then across councils until an operator removes it (once its consumers have caught up) and
    /// the services restart.
    async fn stores(&self, spec: &StreamSpec) -> Result<Vec<(StreamSpec, stream::Stream)>> {
        if spec.partitions.is_empty() {
            return Ok(vec![(spec.clone(), self.stream(spec).await?)]);
        }
        if let Ok(whole) = self.js.get_stream(&spec.name).await {
            tracing::warn!(stream = %spec.name, "a stream across councils exists: message ids are de-duplicated across councils until it is removed");
            return Ok(vec![(spec.clone(), whole)]);
        }
        let mut out = Vec::with_capacity(spec.partitions.len());
        for p in &spec.partitions {
            out.push((p.clone(), self.stream(p).await?));
        }
        Ok(out)
    }
}

impl NatsTransport {
    /// The one stream `spec` names: a stream kept per council is read or changed only through
    /// one council's spec (a sequence names a message in one stream).
    async fn one_store(&self, spec: &StreamSpec, what: &str) -> Result<stream::Stream> {
        let mut stores = self.stores(spec).await?;
        if stores.len() != 1 {
            return Err(Error::Transport(format!(
                "{} is kept per council: {what} one council's stream",
                spec.name
            )));
        }
        Ok(stores.remove(0).1)
    }
}

/// `h` as NATS headers. A name NATS cannot carry (empty, or with a space, a control or non-ASCII
/// character or `:`) is an error naming it; a line break in a value (which would end the header
/// on the wire) is sent as a space. Never panics, whatever the map holds.
pub fn header_map(h: &BTreeMap<String, String>) -> Result<async_nats::HeaderMap> {
    use std::str::FromStr;
    let mut map = async_nats::HeaderMap::new();
    for (k, v) in h {
        let name = async_nats::header::HeaderName::from_str(k)
            .ok()
            .filter(|_| !k.is_empty())
            .ok_or_else(|| {
                Error::Transport(format!(
                    "header name {:?} cannot be sent over NATS",
                    k.chars().take(64).collect::<String>()
                ))
            })?;
        let value: String = v
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        map.insert(name, value.as_str());
    }
    Ok(map)
}

/// NATS headers as a map (the first value of each name).
pub fn from_header_map(h: Option<&async_nats::HeaderMap>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(h) = h {
        for (k, vs) in h.iter() {
            if let Some(v) = vs.first() {
                out.insert(k.to_string(), v.as_str().to_string());
            }
        }
    }
    out
}

#[async_trait]
impl Transport for NatsTransport {
    async fn ensure_streams(&self, streams: &[StreamSpec]) -> Result<()> {
        for s in streams {
            self.stores(s).await?;
        }
        Ok(())
    }

    async fn publish_batch(&self, msgs: &[OutboundMessage]) -> Vec<Result<()>> {
        // Send them all (in order, on one connection), then wait for every acknowledgement.
        let mut pending = Vec::with_capacity(msgs.len());
        for m in msgs {
            let mut headers = match header_map(&m.headers) {
                Ok(h) => h,
                Err(e) => {
                    pending.push(Err(e));
                    continue;
                }
            };
            let id: String = m
                .msg_id
                .chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                .collect();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            let sent = self
                .js
                .publish_with_headers(m.subject.clone(), headers, m.payload.clone().into())
                .await
                .map_err(Error::transport);
            pending.push(sent);
        }
        let mut results = Vec::with_capacity(msgs.len());
        for p in pending {
            results.push(match p {
                Ok(ack) => ack.await.map(|_| ()).map_err(Error::transport),
                Err(e) => Err(e),
            });
        }
        results
    }

    /// One durable consumer of that name in each stream holding the messages (each council's,
    /// for a stream kept per council), its filter narrowed to the stream's council, their
    /// deliveries merged.
    async fn subscribe(&self, spec: &ConsumerSpec) -> Result<Box<dyn Subscription>> {
        let mut merged = futures::stream::SelectAll::new();
        for (part, stream) in self.stores(&spec.stream).await? {
            let filter_subject = if part == spec.stream {
                spec.filter_subject.clone()
            } else {
                match crate::subjects::narrow_to(&spec.filter_subject, &part) {
                    Some(f) => f,
                    None => continue,
                }
            };
            let consumer: jetstream::consumer::Consumer<pull::Config> = stream
                .get_or_create_consumer(
                    &spec.durable,
                    pull::Config {
                        durable_name: Some(spec.durable.clone()),
                        filter_subject,
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ack_wait: spec.ack_wait,
                        // The runner dead-letters after its own limit, with the reason.
                        max_deliver: -1,
                        max_ack_pending: 1024,
                        ..Default::default()
                    },
                )
                .await
                .map_err(Error::transport)?;
            let messages = consumer
                .stream()
                .max_messages_per_batch(128)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
                .map_err(Error::transport)?;
            merged.push(Box::pin(messages));
        }
        Ok(Box::new(NatsSubscription { messages: merged }))
    }

    async fn ping(&self) -> Result<()> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => {
                tokio::time::timeout(Duration::from_secs(2), self.client.flush())
                    .await
                    .map_err(|_| Error::Transport("NATS flush timed out".into()))?
                    .map_err(Error::transport)
            }
            other => Err(Error::Transport(format!("NATS {other}"))),
        }
    }

    /// Of a stream kept per council, each council's in turn (sequences are per stream).
    async fn list(&self, spec: &StreamSpec, limit: usize) -> Result<Vec<StoredMessage>> {
        let mut out = Vec::new();
        for (_, mut stream) in self.stores(spec).await? {
            let info = stream.info().await.map_err(Error::transport)?;
            let (first, last) = (info.state.first_sequence, info.state.last_sequence);
            if info.state.messages == 0 {
                continue;
            }
            for seq in first..=last {
                if out.len() >= limit {
                    return Ok(out);
                }
                match stream.get_raw_message(seq).await {
                    Ok(m) => out.push(StoredMessage {
                        seq: m.sequence,
                        subject: m.subject.to_string(),
                        headers: from_header_map(Some(&m.headers)),
                        payload: m.payload.to_vec(),
                    }),
                    Err(_) => continue, // deleted
                }
            }
        }
        Ok(out)
    }

    /// Message by message (`STREAM.MSG.GET` with `next_by_subj`: the server skips what does not
    /// match, so only the council's messages cross the wire).
    async fn scan(
        &self,
        spec: &StreamSpec,
        filter: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        if !spec.partitions.is_empty() {
            return Err(Error::Transport(format!(
                "{} is kept per council: scan one council's stream",
                spec.name
            )));
        }
        // Never created here: a stream nobody has published to holds nothing to scan (and the
        // scanning user may not create other services' streams).
        let stream = match self.js.get_stream(&spec.name).await {
            Ok(s) => s,
            Err(e) => {
                return match e.kind() {
                    jetstream::context::GetStreamErrorKind::JetStream(j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                    {
                        Ok(Vec::new())
                    }
                    _ => Err(Error::transport(e)),
                };
            }
        };
        let mut out = Vec::new();
        let mut seq = from.max(1);
        while out.len() < limit {
            match stream.get_first_raw_message_by_subject(filter, seq).await {
                Ok(m) => {
                    seq = m.sequence + 1;
                    out.push(StoredMessage {
                        seq: m.sequence,
                        subject: m.subject.to_string(),
                        headers: from_header_map(Some(&m.headers)),
                        payload: m.payload.to_vec(),
                    });
                }
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(Error::transport(e)),
            }
        }
        Ok(out)
    }

    /// Of a stream kept per council, only by the council's own spec (a sequence names a message
    /// in one stream).
    async fn delete(&self, spec: &StreamSpec, seq: u64) -> Result<()> {
        let stream = self.one_store(spec, "delete").await?;
        stream.delete_message(seq).await.map_err(Error::transport)?;
        Ok(())
    }

    async fn count(&self, spec: &StreamSpec, subject: &str) -> Result<u64> {
        let mut n = 0;
        for (_, stream) in self.stores(spec).await? {
            let mut subjects = stream
                .info_with_subjects(subject)
                .await
                .map_err(Error::transport)?;
            while let Some((s, count)) = subjects.try_next().await.map_err(Error::transport)? {
                if s == subject {
                    n += count as u64;
                }
            }
        }
        Ok(n)
    }
}

struct NatsSubscription {
    /// Every stream's deliveries (one stream's, unless it is kept per council).
    messages: futures::stream::SelectAll<std::pin::Pin<Box<pull::Stream>>>,
}

#[async_trait]
impl Subscription for NatsSubscription {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        match tokio::time::timeout(Duration::from_secs(1), self.messages.next()).await {
            Err(_) => Ok(None),
            Ok(None) => Err(Error::Transport("consumer stream ended".into())),
            Ok(Some(Err(e))) => Err(Error::transport(e)),
            Ok(Some(Ok(m))) => {
                let (delivered, stream_seq) = match m.info() {
                    Ok(i) => (i.delivered.max(1) as u64, i.stream_sequence),
                    Err(_) => (1, 0),
                };
                let msg = Received {
                    subject: m.subject.to_string(),
                    headers: from_header_map(m.headers.as_ref()),
                    payload: m.payload.clone(),
                    delivered,
                    stream_seq,
                };
                Ok(Some(Delivery {
                    msg,
                    acker: Box::new(NatsAcker(m)),
                }))
            }
        }
    }
}

struct NatsAcker(jetstream::Message);

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<()> {
        self.0
            .ack()
            .await
            .map_err(|e| Error::Transport(e.to_string()))
    }
    async fn nak(&self, delay: Duration) -> Result<()> {
        self.0
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| Error::Transport(e.to_string()))
    }
    async fn in_progress(&self) -> Result<()> {
        self.0
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| Error::Transport(e.to_string()))
    }
}
