//! `earlyhelp audit verify`: recomputes each council's audit chain of each service with the
//! audit key (`audit.hmac_key`) and reports, per service and council, the entries found (keyed,
//! and unkeyed ones written before the key) or the first entry that does not follow; then
//! compares each chain with its signed checkpoints, kept outside the database.
//!
//! **Checkpoints.** Every [`CHECKPOINT_INTERVAL`] (and on demand, `earlyhelp audit checkpoint`)
//! a running process signs the head of each council's chain of each of its services that
//! changed ([`eh_auth::audit::Checkpoint`]: service, council, entry, hash, time, HMAC under a key
//! derived from the audit key) and keeps it outside the database:
//! - distributed mode: the JetStream stream `<NS>_AUDIT` (subjects `<ns>.audit.<service>`),
//!   created with `deny_delete` and `deny_purge` and no age limit, so no one can remove a
//!   checkpoint through the API; the services' NATS users (`earlyhelp nats-config`) may create
//!   the stream and publish to their own subject, but not update, purge or delete it;
//! - embedded mode: the file `data_dir/audit-checkpoints.jsonl`, one checkpoint a line, appended
//!   only (on the same disk as the databases: it shows a rewrite made through the database, not
//!   one by someone who can also edit that file).
//!
//! Someone who rewrites a chain in the database consistently — even with the audit key — cannot
//! change what an earlier checkpoint says its entry hashed to: `verify` names the first
//! checkpoint the trail no longer matches. Someone who removes the checkpoints whole (deletes the
//! stream, empties the file) is caught too: `verify` fails for entries older than
//! [`UNCOVERED_AFTER`] that no checkpoint covers, and for a stream that allows removal.
use anyhow::Context;
use eh_auth::audit::{Checkpoint, CheckpointReport, VerifyReport};
use eh_auth::{AuditKey, Auditor};
use eh_platform::{Mode, Settings};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::Target;

/// Whether `target` keeps an audit trail (its migrations include the trail's).
pub fn has_trail(target: Target) -> bool {
    let first = &eh_auth::audit::MIGRATIONS[0];
    target
        .migrations()
        .iter()
        .any(|m| m.owner == first.owner && m.version == first.version)
}

/// One service's trail as verified.
#[derive(Debug)]
pub struct ServiceReport {
    pub service: Target,
    pub report: VerifyReport,
    /// The trail compared with its checkpoints.
    pub checkpoints: CheckpointReport,
    /// Per council, entries older than [`UNCOVERED_AFTER`] that no checkpoint covers: the
    /// checkpoints were removed (the stream deleted, the file truncated), or none was taken.
    pub uncovered: Vec<eh_auth::audit::Uncovered>,
    /// What is wrong with where the checkpoints are kept (a stream that allows deletes or
    /// purges), if anything.
    pub store: Option<String>,
}

impl ServiceReport {
    /// Whether every chain of the service follows and matches every checkpoint, and no
    /// checkpoint is unsigned.
    pub fn ok(&self) -> bool {
        self.report.first_break.is_none()
            && self.checkpoints.first_broken.is_none()
            && self.checkpoints.unsigned == 0
            && self.uncovered.is_empty()
            && self.store.is_none()
    }

    /// The report as lines for the operator: one per council, and the break if any.
    pub fn lines(&self) -> Vec<String> {
        let s = self.service;
        let mut out = Vec::new();
        if self.report.chains.is_empty() {
            out.push(format!("{s}: no audit entries"));
        }
        for c in &self.report.chains {
            let broken = self
                .report
                .first_break
                .as_ref()
                .is_some_and(|b| b.tenant == c.tenant);
            out.push(format!(
                "{s} {}: {}, {} keyed entries, {} unkeyed (written before the key){}, head {}",
                c.tenant,
                if broken { "BROKEN" } else { "OK" },
                c.keyed,
                c.unkeyed,
                if c.unkeyed > 0 {
                    " — a rewrite of unkeyed entries is not detected"
                } else {
                    ""
                },
                c.head,
            ));
        }
        if let Some(b) = &self.report.first_break {
            out.push(format!(
                "{s} {}: first break at entry {}: {}",
                b.tenant, b.seq, b.what
            ));
        }
        let c = &self.checkpoints;
        out.push(format!(
            "{s}: {} checkpoint(s) compared{}",
            c.checked,
            if c.latest.is_empty() {
                String::new()
            } else {
                let l: Vec<String> = c
                    .latest
                    .iter()
                    .map(|(t, seq)| format!("{t} to entry {seq}"))
                    .collect();
                format!(", matching {}", l.join(", "))
            }
        ));
        if let Some(b) = &c.first_broken {
            out.push(format!(
                "{s} {}: first checkpoint broken: #{} (entry {}, taken {}): {}",
                b.tenant, b.position, b.seq, b.at, b.what
            ));
        }
        for u in &self.uncovered {
            out.push(format!(
                "{s} {}: {} entries written over {} minutes ago are covered by no checkpoint (the first: entry {}, {}): the checkpoints were removed, or none was taken (`earlyhelp audit checkpoint` takes one)",
                u.tenant,
                u.entries,
                UNCOVERED_AFTER.as_secs() / 60,
                u.first_seq,
                u.first_at
            ));
        }
        if let Some(w) = &self.store {
            out.push(format!("{s}: {w}"));
        }
        if let Some(b) = &c.first_unsigned {
            out.push(format!(
                "{s} {}: {} checkpoint(s) not signed with the key, the first #{} (entry {}, dated {}): {}",
                b.tenant, c.unsigned, b.position, b.seq, b.at, b.what
            ));
        }
        out
    }
}

/// Verifies the trail of `service` (every service with one when `None`), of `tenant` only when
/// given, with the key of `settings`.
///
/// # Errors
/// No key (distributed mode without `audit.hmac_key`); a service without a trail; a database
/// that cannot be reached or read (not migrated: run `earlyhelp migrate` first).
pub async fn verify(
    settings: &Settings,
    service: Option<&str>,
    tenant: Option<&str>,
) -> anyhow::Result<Vec<ServiceReport>> {
    verify_at(settings, service, tenant, chrono::Utc::now()).await
}

/// [`verify`] as at `now` (entries written before `now` − [`UNCOVERED_AFTER`] must be covered by
/// a checkpoint).
///
/// # Errors
/// As [`verify`].
pub async fn verify_at(
    settings: &Settings,
    service: Option<&str>,
    tenant: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<ServiceReport>> {
    let key = AuditKey::from_settings(settings).map_err(anyhow::Error::msg)?;
    let targets: Vec<Target> = match service {
        Some(s) => {
            let t = Target::named(s).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(has_trail(t), "{t} keeps no audit trail");
            vec![t]
        }
        None => Target::ALL
            .iter()
            .copied()
            .filter(|t| has_trail(*t))
            .collect(),
    };
    let store = CheckpointStore::open(settings)
        .await
        .context("the audit checkpoints")?;
    let kept = store
        .read_all()
        .await
        .context("reading the audit checkpoints")?;
    let store_problem = store
        .unprotected()
        .await
        .context("reading the audit checkpoints")?;
    let before = now
        - chrono::Duration::from_std(UNCOVERED_AFTER).unwrap_or_else(|_| chrono::Duration::zero());
    let mut reports = Vec::new();
    for t in targets {
        let loc = eh_store::Location::for_service(settings, t.name())?;
        let db = eh_store::connect(&loc)
            .await
            .with_context(|| format!("{t} database"))?;
        let auditor = Auditor::with_key(db.clone(), key.clone());
        let report = auditor
            .verify_report(tenant)
            .await
            .with_context(|| format!("{t}: reading the audit trail (is it migrated?)"))?;
        let own: Vec<(u64, Checkpoint)> = kept
            .iter()
            .filter(|(_, c)| c.service == t.name())
            .cloned()
            .collect();
        let checkpoints = auditor.check_checkpoints(&own, tenant).await?;
        let councils: Vec<String> = report.chains.iter().map(|c| c.tenant.clone()).collect();
        let uncovered = auditor
            .uncovered(&councils, &checkpoints.latest, before)
            .await?;
        db.close().await.ok();
        reports.push(ServiceReport {
            service: t,
            report,
            checkpoints,
            uncovered,
            store: store_problem.clone(),
        });
    }
    Ok(reports)
}

/// How often a running process checkpoints the heads that changed.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);

/// How old an entry may be before `verify` expects a checkpoint to cover it: two intervals.
pub const UNCOVERED_AFTER: Duration = Duration::from_secs(2 * 300);

/// The embedded mode's checkpoint file under `data_dir`.
pub const CHECKPOINT_FILE: &str = "audit-checkpoints.jsonl";

/// The stream of the checkpoints in namespace `ns`: `<NS>_AUDIT`.
pub fn checkpoint_stream(ns: &str) -> String {
    let token: String = ns
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{token}_AUDIT")
}

/// The subject of `service`'s checkpoints: `<ns>.audit.<service>` (three tokens, so no
/// service's stream, `<ns>.*.<service>.>`, takes it).
pub fn checkpoint_subject(ns: &str, service: &str) -> String {
    format!("{ns}.audit.{service}")
}

/// Whether `e` says the stream does not exist (none was created yet).
fn no_stream(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Where checkpoints are kept (see the module's documentation).
pub enum CheckpointStore {
    Nats {
        // Kept for its connection.
        _transport: Box<eh_bus::nats::NatsTransport>,
        js: Box<async_nats::jetstream::Context>,
        stream: String,
        ns: String,
        replicas: usize,
    },
    File(PathBuf),
}

impl CheckpointStore {
    /// The store of `settings`' mode (for NATS, connecting as `bus.nats_url`'s user).
    ///
    /// # Errors
    /// NATS cannot be connected to.
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        Ok(match settings.mode {
            Mode::Embedded => Self::File(settings.data_dir.join(CHECKPOINT_FILE)),
            Mode::Distributed => {
                let transport = eh_bus::nats::NatsTransport::connect(eh_bus::nats::NatsOptions {
                    url: settings.bus.nats_url.clone(),
                    name: format!("earlyhelp-audit-{}", std::process::id()),
                    credentials_file: settings.bus.credentials_file.clone(),
                    ca_file: settings.bus.ca_file.clone(),
                    replicas: settings.bus.replicas,
                    max_age: Duration::ZERO,
                })
                .await?;
                let mut js = async_nats::jetstream::new(transport.client().clone());
                js.set_timeout(Duration::from_secs(10));
                Self::Nats {
                    _transport: Box::new(transport),
                    js: Box::new(js),
                    stream: checkpoint_stream(&settings.bus.namespace),
                    ns: settings.bus.namespace.clone(),
                    replicas: settings.bus.replicas.max(1),
                }
            }
        })
    }

    /// Keeps `checkpoints` (the stream is created at the first, with deletes and purges denied).
    ///
    /// # Errors
    /// The stream or file cannot be written.
    pub async fn publish(&self, checkpoints: &[Checkpoint]) -> anyhow::Result<()> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        match self {
            Self::Nats {
                js,
                stream,
                ns,
                replicas,
                ..
            } => {
                use async_nats::jetstream::stream;
                js.get_or_create_stream(stream::Config {
                    name: stream.clone(),
                    subjects: vec![format!("{ns}.audit.*")],
                    storage: stream::StorageType::File,
                    num_replicas: *replicas,
                    deny_delete: true,
                    deny_purge: true,
                    allow_rollup: false,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("stream {stream}: {e}"))?;
                for c in checkpoints {
                    let mut h = async_nats::HeaderMap::new();
                    // Replicas of a service checkpoint the same head: kept once.
                    h.insert(
                        "Nats-Msg-Id",
                        format!("{}:{}:{}", c.service, c.tenant, c.seq).as_str(),
                    );
                    js.publish_with_headers(
                        checkpoint_subject(ns, &c.service),
                        h,
                        serde_json::to_vec(c)?.into(),
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
            }
            Self::File(path) => {
                use std::io::Write as _;
                let mut text = String::new();
                for c in checkpoints {
                    text.push_str(&serde_json::to_string(c)?);
                    text.push('\n');
                }
                let path = path.clone();
                tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .with_context(|| path.display().to_string())?;
                    f.write_all(text.as_bytes())?;
                    f.sync_data()?;
                    Ok(())
                })
                .await??;
            }
        }
        Ok(())
    }

    /// What is wrong with the stream the checkpoints are kept in, if anything: one that allows
    /// deletes or purges, or removes checkpoints for age or number (none for the file, or a
    /// stream not created yet).
    ///
    /// # Errors
    /// The stream cannot be read.
    pub async fn unprotected(&self) -> anyhow::Result<Option<String>> {
        let Self::Nats { js, stream, .. } = self else {
            return Ok(None);
        };
        let mut s = match js.get_stream(stream).await {
            Ok(s) => s,
            Err(e) if no_stream(&e) => return Ok(None),
            Err(e) => anyhow::bail!("stream {stream}: {e}"),
        };
        let c = s
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .config
            .clone();
        let mut wrong = Vec::new();
        if !c.deny_delete {
            wrong.push("deletes");
        }
        if !c.deny_purge {
            wrong.push("purges");
        }
        if c.allow_rollup {
            wrong.push("roll-ups");
        }
        if !c.max_age.is_zero() || c.max_messages > 0 || c.max_bytes > 0 {
            wrong.push("removal for age or size");
        }
        Ok((!wrong.is_empty()).then(|| {
            format!(
                "the checkpoint stream {stream} allows {}: checkpoints can be removed",
                wrong.join(", ")
            )
        }))
    }

    /// Every checkpoint kept, with its position (stream sequence, or line); one that cannot be
    /// read as a checkpoint is kept as one no key signed (so it is reported).
    ///
    /// # Errors
    /// The stream or file cannot be read.
    pub async fn read_all(&self) -> anyhow::Result<Vec<(u64, Checkpoint)>> {
        let unreadable = |pos: u64| Checkpoint {
            service: String::new(),
            tenant: String::new(),
            seq: 0,
            hash: String::new(),
            at: format!("(unreadable, #{pos})"),
            signature: String::new(),
        };
        let mut out = Vec::new();
        match self {
            Self::Nats { js, stream, .. } => {
                let mut s = match js.get_stream(stream).await {
                    Ok(s) => s,
                    Err(e) if no_stream(&e) => {
                        return Ok(out);
                    }
                    Err(e) => anyhow::bail!("stream {stream}: {e}"),
                };
                let info = s.info().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let (first, last) = (info.state.first_sequence, info.state.last_sequence);
                if info.state.messages == 0 {
                    return Ok(out);
                }
                for seq in first..=last {
                    let m = s
                        .get_raw_message(seq)
                        .await
                        .map_err(|e| anyhow::anyhow!("{stream} #{seq}: {e}"))?;
                    out.push((
                        seq,
                        serde_json::from_slice(&m.payload).unwrap_or_else(|_| unreadable(seq)),
                    ));
                }
            }
            Self::File(path) => {
                let text = match tokio::fs::read_to_string(path).await {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(e).context(path.display().to_string()),
                };
                for (i, line) in text.lines().enumerate() {
                    let pos = i as u64 + 1;
                    if line.trim().is_empty() {
                        continue;
                    }
                    out.push((
                        pos,
                        serde_json::from_str(line).unwrap_or_else(|_| unreadable(pos)),
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Checkpoints the trails of a process's services: each council's head that changed since its
/// last checkpoint.
pub struct Checkpointer {
    key: AuditKey,
    store: CheckpointStore,
    trails: Vec<(Target, Auditor)>,
    done: HashMap<(Target, String), i64>,
}

impl Checkpointer {
    /// For the trails of `trails` (the databases of services that keep one), with the key and
    /// store of `settings`.
    ///
    /// # Errors
    /// No key; NATS cannot be connected to.
    pub async fn new(
        settings: &Settings,
        trails: Vec<(Target, sea_orm::DatabaseConnection)>,
    ) -> anyhow::Result<Self> {
        let key = AuditKey::from_settings(settings).map_err(anyhow::Error::msg)?;
        let store = CheckpointStore::open(settings).await?;
        let trails = trails
            .into_iter()
            .filter(|(t, _)| has_trail(*t))
            .map(|(t, db)| (t, Auditor::with_key(db, key.clone())))
            .collect();
        Ok(Self {
            key,
            store,
            trails,
            done: HashMap::new(),
        })
    }

    /// For `targets`' trails, connecting to their databases (`earlyhelp audit checkpoint`).
    ///
    /// # Errors
    /// As [`Checkpointer::new`]; a database that cannot be connected to.
    pub async fn connect(settings: &Settings, targets: &[Target]) -> anyhow::Result<Self> {
        let mut trails = Vec::new();
        for t in targets.iter().copied().filter(|t| has_trail(*t)) {
            let loc = eh_store::Location::for_service(settings, t.name())?;
            let db = eh_store::connect(&loc)
                .await
                .with_context(|| format!("{t} database"))?;
            trails.push((t, db));
        }
        Self::new(settings, trails).await
    }

    /// Signs and keeps the heads that moved since the last checkpoint; what it kept.
    ///
    /// # Errors
    /// A trail cannot be read or the store written (nothing is marked done then).
    pub async fn run_once(&mut self) -> anyhow::Result<Vec<Checkpoint>> {
        let mut new = Vec::new();
        for (t, auditor) in &self.trails {
            for (tenant, seq, hash) in auditor.heads().await? {
                if self.done.get(&(*t, tenant.clone())) != Some(&seq) {
                    new.push(Checkpoint::new(&self.key, t.name(), &tenant, seq, &hash));
                }
            }
        }
        self.store.publish(&new).await?;
        for c in &new {
            if let Ok(t) = Target::named(&c.service) {
                self.done.insert((t, c.tenant.clone()), c.seq);
            }
        }
        Ok(new)
    }

    /// Checkpoints every `interval` until `stop`; a failure is logged and tried again at the
    /// next tick.
    pub async fn run(mut self, interval: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => return,
            }
            match self.run_once().await {
                Ok(c) if !c.is_empty() => {
                    tracing::info!(checkpoints = c.len(), "audit heads checkpointed");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "audit checkpoint failed; trying again"),
            }
        }
    }
}
