//! The chaos harness: the platform as separate processes of the real binary, a steady stream of
//! referrals from an independent publisher, faults injected mid-stream, then a census of every
//! effect. See the crate documentation (main.rs) for what it proves.
use eh_proto::catalogue::{self, Source};
use eh_testkit::{NatsServer, PostgresServer, ServiceProcess, SmtpSink};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The services' role: every service process connects as it. An ordinary role that owns nothing
/// (not a superuser, no BYPASSRLS: row-level security applies, and it cannot lift it), granted
/// the use of the tables by the migrations, as in production.
pub const ROLE: &str = "eh_chaos_app";
/// The ordinary role that owns the database, its schemas and tables: `earlyhelp migrate` alone
/// connects as it (`database.migrate_url`), as the Helm chart's migration Job does.
pub const OWNER: &str = "eh_chaos_owner";
const TENANT: &str = "worcs";
const ACK: &str = "referral_acknowledgement";
const OUTCOME: &str = "screening_outcome";
/// Where a consented, in-area referral with two needs ends: consent held, screening accepted it
/// for the Early Help Team.
const EXPECTED_STATE: &str = "ready_for_allocation";
/// The target groups, one process each, as a distributed deployment runs them.
const GROUPS: [(&str, &str); 2] = [
    ("intake+notifications", "intake,notifications"),
    ("consent+casework", "consent,casework"),
];
/// Statuses after which the sender will not touch a message again.
const FINAL_STATUSES: &str = "('sent', 'failed', 'suppressed', 'undeliverable')";

/// The council the processes serve: screening in area for WR postcodes only, so every fixture is
/// in area by the council's own rule.
const COUNCIL: &str = "tenants:
  worcs:
    name: Worcestershire County Council
    contacts: { front_door_email: front-door@worcs.test, team_manager_email: eh-manager@worcs.test }
    screening:
      version: chaos-1
      in_area_postcode_prefixes: [WR]
";

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one run does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// Referrals published, each about a different family.
    pub referrals: usize,
    /// Published per second, steadily.
    pub rate: f64,
    /// From the first publish, when the services' sessions are terminated, each time as soon
    /// as one of them is in a transaction that has written (a batch mid-flight).
    pub cuts_before: Vec<Duration>,
    /// From the first publish to the moment PostgreSQL is stopped.
    pub outage_after: Duration,
    /// How long PostgreSQL stays stopped (`pg_ctl stop -m fast`); none: no outage.
    pub outage: Option<Duration>,
    /// Rounds of cut sessions (as above) once PostgreSQL is back, while the backlog is worked
    /// off, `cut_every` apart.
    pub cuts_after: usize,
    pub cut_every: Duration,
    /// From the first publish, when a target group's process (an index into the groups) is
    /// killed by SIGKILL, as a crashed container or an evicted pod; it is started again
    /// `restart_after` later, as Kubernetes restarts it.
    pub kills: Vec<(Duration, usize)>,
    pub restart_after: Duration,
    /// From the first publish, when the NATS server is killed by SIGKILL, and how long it stays
    /// down before it is started again on the same port and store.
    pub nats_outage: Option<(Duration, Duration)>,
    /// How long the platform may take to settle once the faults are over.
    pub settle_within: Duration,
}

impl Plan {
    /// The version `cargo test` runs (about two minutes when nothing is lost): 240 referrals
    /// at 15/s, and while they arrive: sessions cut once, PostgreSQL stopped for 6 s, each
    /// process killed by SIGKILL and restarted once, the NATS server killed and restarted; then
    /// sessions cut twice in the backlog.
    pub fn short() -> Self {
        Self {
            name: "short".into(),
            referrals: env_or("EH_CHAOS_SHORT_N", 240),
            rate: 15.0,
            cuts_before: vec![Duration::from_millis(1500)],
            outage_after: Duration::from_millis(2500),
            outage: Some(Duration::from_secs(6)),
            kills: vec![
                (Duration::from_millis(9500), 0),
                (Duration::from_secs(16), 1),
            ],
            restart_after: Duration::from_secs(1),
            nats_outage: Some((Duration::from_secs(12), Duration::from_secs(3))),
            cuts_after: 2,
            cut_every: Duration::from_secs(1),
            settle_within: Duration::from_secs(180),
        }
    }

    /// The version `just chaos` runs: issues 18 and 15's scenario, 1,000 referrals at ~15/s
    /// (about 67 s of load) and while they arrive: sessions cut once, PostgreSQL stopped for
    /// 30 s two seconds in, then each process killed by SIGKILL twice (restarted a second
    /// later each time) and the NATS server killed and restarted between; sessions cut three
    /// times in the backlog after it. `EH_CHAOS_N`, `EH_CHAOS_RATE` and `EH_CHAOS_OUTAGE_SECS`
    /// change it (the kills keep their times).
    pub fn long() -> Self {
        let outage = env_or("EH_CHAOS_OUTAGE_SECS", 30);
        let after = |s: u64| Duration::from_secs(2 + outage + s);
        Self {
            name: "long".into(),
            referrals: env_or("EH_CHAOS_N", 1000),
            rate: env_or("EH_CHAOS_RATE", 15.0),
            cuts_before: vec![Duration::from_secs(1)],
            outage_after: Duration::from_secs(2),
            outage: Some(Duration::from_secs(outage)),
            kills: vec![(after(3), 0), (after(8), 1), (after(21), 0), (after(26), 1)],
            restart_after: Duration::from_secs(1),
            nats_outage: Some((after(13), Duration::from_secs(5))),
            cuts_after: 3,
            cut_every: Duration::from_secs(1),
            settle_within: Duration::from_secs(420),
        }
    }

    /// The same load with no fault at all: the reference for throughput.
    pub fn without_faults(&self) -> Self {
        Self {
            name: format!("{} without faults", self.name),
            cuts_before: Vec::new(),
            outage: None,
            kills: Vec::new(),
            nats_outage: None,
            cuts_after: 0,
            ..self.clone()
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Referral number `i` of a run: a family of its own (names, date of birth, WR postcode), consent
/// obtained, two needs, its own referrer's address. (reference, referrer email, document.)
fn referral(tag: &str, i: usize) -> anyhow::Result<(String, String, Vec<u8>)> {
    let reference = format!("CH-{tag}-{i}");
    let email = format!("referrer{i}@school-{tag}.example");
    let mut doc = earlyhelp::demo::example(&reference, Some(&email));
    doc["source"]["system"] = serde_json::json!("chaos-hub");
    earlyhelp::demo::as_family(
        &mut doc,
        i,
        "Ch",
        &format!("parent{i}@family-{tag}.example"),
    );
    eh_intake::domain::contract::validate(&doc)
        .map_err(|r| anyhow::anyhow!("fixture {i} is not a valid referral.v1: {}", r.summary()))?;
    Ok((reference, email, serde_json::to_vec(&doc)?))
}

/// The platform under test: its own PostgreSQL cluster, its own NATS server (JetStream, file
/// store), an SMTP sink in this process, and the binary as one process per target group.
struct Platform {
    pg: Arc<PostgresServer>,
    nats: NatsServer,
    /// Each process's HTTP port (readiness), as `procs`.
    http_ports: Vec<u16>,
    /// As [`ROLE`].
    db_url: String,
    ns: String,
    nats_url: String,
    smtp: SmtpSink,
    dir: tempfile::TempDir,
    config: PathBuf,
    env: Vec<(String, String)>,
    procs: Vec<ServiceProcess>,
}

impl Platform {
    async fn start() -> anyhow::Result<Self> {
        let pg = Arc::new(tokio::task::spawn_blocking(PostgresServer::start).await??);
        let owner_url = pg.fresh_database(OWNER).await?;
        eh_testkit::ensure_role(&pg.admin_url(), ROLE).await?;
        let db_url = eh_testkit::with_user(&owner_url, ROLE);
        let nats = tokio::task::spawn_blocking(NatsServer::start).await??;
        let nats_url = nats.url();
        let ns = eh_testkit::namespace();
        let smtp = SmtpSink::start()?;
        let dir = tempfile::Builder::new().prefix("eh-chaos-").tempdir()?;
        let config = dir.path().join("council.yaml");
        std::fs::write(&config, COUNCIL)?;
        let env: Vec<(String, String)> = [
            ("EH__MODE", "distributed".to_string()),
            ("EH__DATABASE__URL", db_url.clone()),
            ("EH__AUDIT__HMAC_KEY", eh_testkit::AUDIT_KEY.into()),
            // Migrations run once, before the services start, as the Helm chart's hook Job does.
            ("EH__DATABASE__MIGRATE_ON_START", "false".into()),
            ("EH__BUS__NATS_URL", nats_url.clone()),
            ("EH__BUS__NAMESPACE", ns.clone()),
            ("EH__SMTP__HOST", "127.0.0.1".into()),
            ("EH__SMTP__PORT", smtp.port.to_string()),
            // The sink speaks plain SMTP on loopback: said explicitly, as an operator must.
            ("EH__SMTP__TLS", "none".into()),
            ("EH__SMTP__ALLOW_PLAINTEXT", "true".into()),
            ("EH__DATA_DIR", dir.path().display().to_string()),
            ("EH__TELEMETRY__LOG_FORMAT", "json".into()),
            (
                "EH__TELEMETRY__LOG_LEVEL",
                std::env::var("EH_CHAOS_LOG").unwrap_or_else(|_| "warn".into()),
            ),
            ("EH__SERVER__SHUTDOWN_GRACE_SECS", "20".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_earlyhelp"));
        let config_arg = config.display().to_string();
        eh_testkit::migrate_as_owner(&bin, &["--config", &config_arg], &env, &owner_url)?;
        let mut procs = Vec::new();
        let mut http_ports = Vec::new();
        for (name, targets) in GROUPS {
            let (http, grpc) = (free_port()?, free_port()?);
            let mut env = env.clone();
            env.push(("EH__SERVER__HTTP_ADDR".into(), format!("127.0.0.1:{http}")));
            env.push(("EH__SERVER__GRPC_ADDR".into(), format!("127.0.0.1:{grpc}")));
            let config = config.display().to_string();
            procs.push(ServiceProcess::spawn(
                name,
                &bin,
                &["--config", &config, "run", "--target", targets],
                &env,
                &dir.path().join(format!("{name}.log")),
            )?);
            http_ports.push(http);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for (p, http) in procs.iter_mut().zip(&http_ports) {
            while !eh_testkit::http_ready(*http).await {
                if let Some(status) = p.exited() {
                    anyhow::bail!(
                        "{} exited at start ({status}):\n{}",
                        p.name(),
                        p.log_tail(30)
                    );
                }
                if Instant::now() > deadline {
                    anyhow::bail!("{} never ready:\n{}", p.name(), p.log_tail(30));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // As production: the tables are the owner's, and the services are connected as their
        // own role only.
        let (sessions, owners) = eh_testkit::database_roles(&pg.admin_url(), &db_url).await?;
        anyhow::ensure!(
            owners == BTreeSet::from([OWNER.to_string()]),
            "the tables' owners: {owners:?}"
        );
        anyhow::ensure!(
            sessions == BTreeSet::from([ROLE.to_string()]),
            "the services' sessions are of {sessions:?}, not {ROLE} alone"
        );
        Ok(Self {
            pg,
            nats,
            http_ports,
            db_url,
            ns,
            nats_url,
            smtp,
            dir,
            config,
            env,
            procs,
        })
    }

    /// A connection as the cluster's superuser (row-level security does not hide rows from it),
    /// one connection at a time.
    async fn census_db(&self) -> anyhow::Result<DatabaseConnection> {
        let mut opts = sea_orm::ConnectOptions::new(self.pg.as_superuser(&self.db_url));
        opts.max_connections(1)
            .min_connections(0)
            .connect_timeout(Duration::from_secs(2))
            .acquire_timeout(Duration::from_secs(3))
            .sqlx_logging(false);
        Ok(sea_orm::Database::connect(opts).await?)
    }

    /// `earlyhelp dlq list`, as an operator runs it: one line per dead letter.
    fn dlq_list(&self) -> anyhow::Result<Vec<String>> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_earlyhelp"))
            .arg("--config")
            .arg(&self.config)
            .args(["dlq", "list"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "earlyhelp dlq list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Stops both processes (SIGTERM) and removes the run's streams from the shared NATS.
    async fn stop(&mut self, js: &async_nats::jetstream::Context) -> Vec<String> {
        let mut notes = Vec::new();
        for p in &mut self.procs {
            match p.terminate(Duration::from_secs(30)).await {
                Ok(Some(s)) if s.success() => {}
                Ok(s) => notes.push(format!("{} did not exit 0 on SIGTERM: {s:?}", p.name())),
                Err(e) => notes.push(format!("{}: {e}", p.name())),
            }
        }
        let prefix = format!("{}_", self.ns.to_uppercase());
        let mut names = js.stream_names();
        let mut ours = Vec::new();
        use futures::TryStreamExt;
        while let Ok(Some(name)) = names.try_next().await {
            if name.starts_with(&prefix) {
                ours.push(name);
            }
        }
        for name in ours {
            let _ = js.delete_stream(&name).await;
        }
        notes
    }
}

/// What the publisher did.
struct Published {
    references: Vec<String>,
    referrers: Vec<String>,
    msg_ids: Vec<String>,
    first_at: chrono::DateTime<chrono::Utc>,
    /// The first publish.
    started: Instant,
    secs: f64,
    /// Publishes that had to be tried again.
    retries: usize,
}

/// Publishes `n` referrals at `rate`/s as an upstream system does: JSON to
/// `<ns>.<tenant>.inbound.referral`, `Nats-Msg-Id` for de-duplication and `Eh-Actor` naming the
/// system, each waiting for JetStream's acknowledgement. A client of its own, none of the
/// platform's code.
async fn publish(
    nats_url: String,
    ns: String,
    n: usize,
    rate: f64,
    first: tokio::sync::oneshot::Sender<Instant>,
) -> anyhow::Result<Published> {
    let tag = ns.clone();
    let docs: Vec<_> = (0..n)
        .map(|i| referral(&tag, i))
        .collect::<anyhow::Result<_>>()?;
    let client = async_nats::connect(&nats_url).await?;
    let js = async_nats::jetstream::new(client);
    let subject = format!("{ns}.{TENANT}.inbound.referral");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let first_at = chrono::Utc::now();
    let start = Instant::now();
    let _ = first.send(start);
    let mut out = Published {
        references: Vec::new(),
        referrers: Vec::new(),
        msg_ids: Vec::new(),
        first_at,
        started: start,
        secs: 0.0,
        retries: 0,
    };
    for (i, (reference, email, payload)) in docs.into_iter().enumerate() {
        if i > 0 {
            tick.tick().await;
        }
        let msg_id = format!("chaos-{tag}-{i}");
        let mut attempt = 0;
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", msg_id.as_str());
            headers.insert("Eh-Actor", "chaos-hub");
            let sent = async {
                js.publish_with_headers(subject.clone(), headers, payload.clone().into())
                    .await?
                    .await?;
                Ok::<(), async_nats::Error>(())
            }
            .await;
            match sent {
                Ok(()) => break,
                // A NATS server down for a few seconds: as an upstream system would, try again.
                Err(e) if attempt < 120 => {
                    attempt += 1;
                    out.retries += 1;
                    eprintln!("publish {msg_id}: {e}; again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => anyhow::bail!("publish {msg_id}: {e}"),
            }
        }
        out.references.push(reference);
        out.referrers.push(email);
        out.msg_ids.push(msg_id);
    }
    out.secs = start.elapsed().as_secs_f64();
    Ok(out)
}

/// What was done, in seconds from the first publish.
#[derive(Debug, Default, Clone)]
pub struct FaultLog {
    /// PostgreSQL: (stop issued at, started again at).
    outage: Option<(f64, f64)>,
    /// (at, sessions terminated, of which inside a transaction that had written).
    cuts: Vec<(f64, i64, i64)>,
    /// Processes killed by SIGKILL: (process, killed at, ready again at).
    kills: Vec<(String, f64, f64)>,
    /// The NATS server: (killed at, accepting connections again at).
    nats: Option<(f64, f64)>,
}

/// One fault of a plan, at its time from the first publish.
enum Step {
    Cut,
    PgOutage(Duration),
    Kill(usize),
    NatsOutage(Duration),
}

/// Injects `plan`'s faults into `platform`, timed from the first publish (`first`); what was
/// done. Faults happen one after the other in time order (one that falls due while another is
/// under way waits for it).
async fn inject(
    platform: &mut Platform,
    plan: &Plan,
    first: tokio::sync::oneshot::Receiver<Instant>,
) -> anyhow::Result<FaultLog> {
    let mut log = FaultLog::default();
    let Ok(first) = first.await else {
        return Ok(log);
    };
    let start = first;
    let since = move || start.elapsed().as_secs_f64();
    let cut = |pg: Arc<PostgresServer>| async move {
        let (terminated, writing) = pg
            .terminate_backends_mid_write(ROLE, Duration::from_secs(10))
            .await?;
        Ok::<_, anyhow::Error>((since(), terminated, writing))
    };
    let mut steps: Vec<(Duration, Step)> =
        plan.cuts_before.iter().map(|at| (*at, Step::Cut)).collect();
    if let Some(outage) = plan.outage {
        steps.push((plan.outage_after, Step::PgOutage(outage)));
    }
    steps.extend(plan.kills.iter().map(|(at, g)| (*at, Step::Kill(*g))));
    if let Some((at, down)) = plan.nats_outage {
        steps.push((at, Step::NatsOutage(down)));
    }
    steps.sort_by_key(|(at, _)| *at);
    for (at, step) in steps {
        tokio::time::sleep_until((first + at).into()).await;
        match step {
            Step::Cut => log.cuts.push(cut(platform.pg.clone()).await?),
            Step::PgOutage(outage) => {
                let stopping = since();
                let p = platform.pg.clone();
                tokio::task::spawn_blocking(move || p.stop()).await??;
                tokio::time::sleep(outage).await;
                let p = platform.pg.clone();
                tokio::task::spawn_blocking(move || p.start_again()).await??;
                log.outage = Some((stopping, since()));
            }
            Step::Kill(g) => {
                let killed = since();
                let proc = &mut platform.procs[g];
                proc.kill();
                tokio::time::sleep(plan.restart_after).await;
                proc.restart()?;
                let http = platform.http_ports[g];
                let deadline = Instant::now() + Duration::from_secs(60);
                while !eh_testkit::http_ready(http).await {
                    if let Some(status) = proc.exited() {
                        anyhow::bail!(
                            "{} exited after its restart ({status}):\n{}",
                            proc.name(),
                            proc.log_tail(30)
                        );
                    }
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "{} not ready within 60 s of its restart:\n{}",
                        proc.name(),
                        proc.log_tail(30)
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                log.kills.push((proc.name().to_string(), killed, since()));
            }
            Step::NatsOutage(down) => {
                let killed = since();
                tokio::task::block_in_place(|| platform.nats.kill());
                tokio::time::sleep(down).await;
                tokio::task::block_in_place(|| platform.nats.restart())?;
                log.nats = Some((killed, since()));
            }
        }
    }
    for round in 0..plan.cuts_after {
        if round > 0 {
            tokio::time::sleep(plan.cut_every).await;
        }
        log.cuts.push(cut(platform.pg.clone()).await?);
    }
    Ok(log)
}

/// A glance at the platform while it settles.
#[derive(Debug, Clone, PartialEq, Default)]
struct Glance {
    stored: i64,
    cases: i64,
    ready: i64,
    emails: usize,
    /// Outbox rows not yet published, every service.
    unpublished: i64,
    /// Messages the sender has still to send or record.
    unsent: i64,
    /// JetStream messages not yet delivered or not yet acknowledged, every consumer.
    backlog: u64,
}

async fn scalar(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(eh_store::stmt(db.get_database_backend(), sql, values))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row: {sql}"))?;
    Ok(row.try_get_by_index(0)?)
}

const SERVICES: [&str; 4] = ["intake", "consent", "casework", "notifications"];

async fn glance(
    db: &DatabaseConnection,
    js: &async_nats::jetstream::Context,
    ns: &str,
    smtp: &SmtpSink,
) -> anyhow::Result<Glance> {
    let unpublished = SERVICES
        .iter()
        .map(|s| format!("(SELECT COUNT(*) FROM {s}.eh_outbox WHERE published_at IS NULL)"))
        .collect::<Vec<_>>()
        .join(" + ");
    let row = db
        .query_one_raw(eh_store::stmt(
            db.get_database_backend(),
            &format!(
                "SELECT (SELECT COUNT(*) FROM intake.referrals),
                        (SELECT COUNT(*) FROM casework.cases),
                        (SELECT COUNT(*) FROM casework.cases WHERE state = '{EXPECTED_STATE}'),
                        {unpublished},
                        (SELECT COUNT(*) FROM notifications.messages
                          WHERE status NOT IN {FINAL_STATUSES})"
            ),
            [],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    Ok(Glance {
        stored: row.try_get_by_index(0)?,
        cases: row.try_get_by_index(1)?,
        ready: row.try_get_by_index(2)?,
        unpublished: row.try_get_by_index(3)?,
        unsent: row.try_get_by_index(4)?,
        emails: smtp.messages().len(),
        backlog: consumers(js, ns)
            .await?
            .iter()
            .map(|c| c.pending + c.ack_pending)
            .sum(),
    })
}

/// The consumers of the services the processes run (those of services not run — allocation —
/// have no one to take their messages).
fn running_subscriptions() -> impl Iterator<Item = &'static catalogue::Subscription> {
    catalogue::SUBSCRIPTIONS.iter().copied().filter(|s| {
        GROUPS
            .iter()
            .any(|(_, targets)| targets.split(',').any(|t| t == s.service))
    })
}

/// One durable consumer as JetStream sees it.
#[derive(Debug, Clone)]
struct ConsumerState {
    name: &'static str,
    pending: u64,
    ack_pending: u64,
    /// Deliveries made, redeliveries included.
    deliveries: u64,
}

async fn consumers(
    js: &async_nats::jetstream::Context,
    ns: &str,
) -> anyhow::Result<Vec<ConsumerState>> {
    let mut out = Vec::new();
    for sub in running_subscriptions() {
        let stream = match sub.source {
            Source::Event(e) => eh_bus::subjects::service_stream(ns, e.service),
            // Kept per council: the council's own stream.
            Source::Inbound(_) => {
                eh_bus::subjects::inbound_streams(ns, [TENANT]).partitions[0].clone()
            }
        };
        let stream = js.get_stream(&stream.name).await?;
        let info = stream.consumer_info(sub.consumer).await?;
        out.push(ConsumerState {
            name: sub.consumer,
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            deliveries: info.delivered.consumer_sequence,
        });
    }
    Ok(out)
}

/// One consumer's inbox against what was published to it.
#[derive(Debug, Clone)]
struct InboxRow {
    consumer: &'static str,
    /// Messages published on its subject (events: outbox rows of the publisher).
    published: i64,
    /// Inbox entries: messages whose effects committed.
    handled: i64,
    /// Published and never handled.
    missing: i64,
}

/// How long one template's emails waited, recorded → sent, in seconds.
struct EmailWaits {
    template: String,
    sent: usize,
    p50: f64,
    p99: f64,
    max: f64,
    /// The longest wait of an email recorded while PostgreSQL was up.
    max_pg_up: f64,
}

/// Everything counted after a run.
pub struct Report {
    plan: Plan,
    published: usize,
    publish_secs: f64,
    publish_retries: usize,
    faults: FaultLog,
    /// How the wait for the platform to settle ended.
    settled: String,
    /// First publish → the last case ready (the database's time).
    last_ready_secs: Option<f64>,
    /// First publish → the last email sent (the database's time; a resend counts).
    last_sent_secs: Option<f64>,
    /// PostgreSQL back → the last case ready (a run with an outage).
    recovery_secs: Option<f64>,
    email_waits: Vec<EmailWaits>,
    stored: i64,
    never_stored: Vec<String>,
    cases_by_state: BTreeMap<String, i64>,
    cases: i64,
    without_case: Vec<String>,
    /// Referrals whose case is not in the expected state: (reference, state).
    not_expected: Vec<(String, String)>,
    /// Cases still in `screening` although intake stored a decision for their referral: when
    /// it was decided (seconds from the first publish).
    stuck_decided: Vec<f64>,
    consent_records: i64,
    outbox: Vec<(String, &'static str, i64, i64)>,
    inboxes: Vec<InboxRow>,
    screen_commands: i64,
    screen_taken: i64,
    decisions: i64,
    decided_twice: i64,
    decisions_announced: i64,
    dead_letters: u64,
    dlq_list: Result<Vec<String>, String>,
    messages: BTreeMap<(String, String), i64>,
    emails: usize,
    /// Per template: (expected, received, missing, resent with the same Message-ID, sent twice as
    /// different messages).
    emails_by_template: BTreeMap<String, [usize; 5]>,
    unexpected_emails: Vec<String>,
    /// Message-IDs received more than once, and how many copies beyond the first.
    repeated_message_ids: usize,
    js: Vec<ConsumerState>,
    process_notes: Vec<String>,
    log_tally: Vec<(String, usize)>,
    logs_kept: Option<PathBuf>,
}

/// Runs `plan` from start to census.
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    let mut platform = Platform::start().await?;
    let client = async_nats::connect(&platform.nats_url).await?;
    let js = async_nats::jetstream::new(client);
    let n = plan.referrals;
    println!(
        "[{}] {} referrals at {}/s; PostgreSQL on port {}, namespace {}, logs in {}",
        plan.name,
        n,
        plan.rate,
        platform.pg.port(),
        platform.ns,
        platform.dir.path().display()
    );
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let publisher = tokio::spawn(publish(
        platform.nats_url.clone(),
        platform.ns.clone(),
        n,
        plan.rate,
        first_tx,
    ));
    // The faults are injected from here while the publisher runs on its own task.
    let faults = inject(&mut platform, &plan, first_rx).await;
    let published = publisher.await??;
    let faults = faults?;
    // Times from here on count from the first publish.
    let start = published.started;
    let faults_over = start.elapsed();
    if let Some((stopped, back)) = faults.outage {
        println!(
            "[{}] PostgreSQL stopped at {stopped:.1}s, started again at {back:.1}s",
            plan.name
        );
    }
    for (at, terminated, in_txn) in &faults.cuts {
        println!(
            "[{}] at {at:.1}s: {terminated} session(s) terminated, {in_txn} inside a transaction that had written",
            plan.name
        );
    }

    // Settle: everything expected is there and nothing is in flight, or nothing has moved for a
    // while with nothing in flight (what is missing then will not come), or the time is up.
    let deadline = Instant::now() + plan.settle_within;
    let quiet_for = Duration::from_secs(10);
    let mut last: Option<(Glance, Instant)> = None;
    let mut last_print = Instant::now() - Duration::from_secs(60);
    let mut notes = Vec::new();
    let settled = loop {
        for p in &mut platform.procs {
            if let Some(status) = p.exited() {
                let note = format!("{} exited ({status}) while running", p.name());
                if !notes.contains(&note) {
                    eprintln!("{note}:\n{}", p.log_tail(20));
                    notes.push(note);
                }
            }
        }
        let g = match platform.census_db().await {
            Ok(db) => {
                let g = glance(&db, &js, &platform.ns, &platform.smtp).await;
                db.close().await.ok();
                g.ok()
            }
            Err(_) => None,
        };
        let now = Instant::now();
        if let Some(g) = &g {
            if now.duration_since(last_print) >= Duration::from_secs(5) {
                println!(
                    "[{}] {:>5.1}s stored {}/{n}, cases {} ({} ready), emails {}/{}, outbox unpublished {}, messages unsent {}, bus backlog {}",
                    plan.name,
                    start.elapsed().as_secs_f64(),
                    g.stored,
                    g.cases,
                    g.ready,
                    g.emails,
                    2 * n,
                    g.unpublished,
                    g.unsent,
                    g.backlog
                );
                last_print = now;
            }
            let idle = g.unpublished == 0 && g.unsent == 0 && g.backlog == 0;
            if idle && g.stored == n as i64 && g.ready == n as i64 && g.emails >= 2 * n {
                break format!(
                    "complete {:.1}s after the faults ended",
                    (start.elapsed() - faults_over).as_secs_f64()
                );
            }
            match &last {
                Some((prev, since)) if prev == g => {
                    if idle && now.duration_since(*since) >= quiet_for {
                        break format!(
                            "nothing moved for {}s with nothing in flight, {:.1}s after the faults ended",
                            quiet_for.as_secs(),
                            (start.elapsed() - faults_over).as_secs_f64()
                        );
                    }
                }
                _ => last = Some((g.clone(), now)),
            }
        }
        if now > deadline {
            break format!(
                "NOT settled within {}s after the faults ended",
                plan.settle_within.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!("[{}] {settled}", plan.name);

    let db = platform.census_db().await?;
    let report = census(&plan, &platform, &db, &js, published, faults, settled).await;
    db.close().await.ok();
    let mut report = report?;
    report.process_notes.extend(notes);
    report.log_tally = tally_logs(&platform.procs);
    report.process_notes.extend(platform.stop(&js).await);
    if !report.problems().is_empty() || std::env::var_os("EH_CHAOS_KEEP_LOGS").is_some() {
        // Keep the processes' logs and say where (always, with `EH_CHAOS_KEEP_LOGS`).
        let dir = std::mem::replace(&mut platform.dir, tempfile::tempdir()?);
        report.logs_kept = Some(dir.keep());
    }
    Ok(report)
}

/// WARN and ERROR lines of the processes' JSON logs, by process, level and message.
fn tally_logs(procs: &[ServiceProcess]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for p in procs {
        let text = std::fs::read_to_string(p.log_path()).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let level = v["level"].as_str().unwrap_or_default();
            if level != "WARN" && level != "ERROR" {
                continue;
            }
            let message = v["message"]
                .as_str()
                .or_else(|| v["fields"]["message"].as_str())
                .unwrap_or_default();
            *counts
                .entry(format!("{} {level} {message}", p.name()))
                .or_default() += 1;
        }
    }
    let mut out: Vec<_> = counts.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Strings of one column.
async fn strings(db: &DatabaseConnection, sql: &str) -> anyhow::Result<Vec<String>> {
    Ok(db
        .query_all_raw(eh_store::stmt(db.get_database_backend(), sql, []))
        .await?
        .iter()
        .map(|r| r.try_get_by_index::<String>(0))
        .collect::<Result<_, _>>()?)
}

async fn census(
    plan: &Plan,
    platform: &Platform,
    db: &DatabaseConnection,
    js: &async_nats::jetstream::Context,
    published: Published,
    faults: FaultLog,
    settled: String,
) -> anyhow::Result<Report> {
    let ns = &platform.ns;
    // Referrals: intake's store against what was published.
    let stored_refs: HashMap<String, String> = db
        .query_all_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT source_reference, id FROM intake.referrals",
            [],
        ))
        .await?
        .iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    let never_stored: Vec<String> = published
        .references
        .iter()
        .filter(|r| !stored_refs.contains_key(*r))
        .cloned()
        .collect();

    // Cases, by the referral they hold.
    let mut cases_by_state = BTreeMap::new();
    for r in db
        .query_all_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT state, COUNT(*) FROM casework.cases GROUP BY state",
            [],
        ))
        .await?
    {
        cases_by_state.insert(
            r.try_get_by_index::<String>(0)?,
            r.try_get_by_index::<i64>(1)?,
        );
    }
    let state_of: HashMap<String, String> = db
        .query_all_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT cr.referral_id, c.state FROM casework.case_referrals cr
               JOIN casework.cases c ON c.id = cr.case_id",
            [],
        ))
        .await?
        .iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    // When intake decided each referral (its first decision), in seconds from the first publish.
    let decided: HashMap<String, f64> = db
        .query_all_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT referral_id, MIN(decided_at) FROM intake.screening_decisions GROUP BY 1",
            [],
        ))
        .await?
        .iter()
        .map(|r| {
            let at: chrono::DateTime<chrono::Utc> = r.try_get_by_index(1)?;
            Ok((
                r.try_get_by_index(0)?,
                (at - published.first_at).num_milliseconds() as f64 / 1000.0,
            ))
        })
        .collect::<Result<_, sea_orm::DbErr>>()?;
    let mut without_case = Vec::new();
    let mut not_expected = Vec::new();
    let mut stuck_decided = Vec::new();
    for reference in &published.references {
        let Some(id) = stored_refs.get(reference) else {
            continue;
        };
        match state_of.get(id) {
            None => without_case.push(reference.clone()),
            Some(state) if state != EXPECTED_STATE => {
                if state == "screening"
                    && let Some(at) = decided.get(id)
                {
                    stuck_decided.push(*at);
                }
                not_expected.push((reference.clone(), state.clone()));
            }
            Some(_) => {}
        }
    }

    // Events: outbox rows per event, and each consumer's inbox against them.
    let mut outbox = Vec::new();
    for e in catalogue::EVENTS {
        let subject = e.subject(ns, TENANT);
        let sql = format!(
            "SELECT COUNT(*) FILTER (WHERE subject = $1) FROM {}.eh_outbox",
            e.publisher
        );
        let total = scalar(db, &sql, vec![subject.clone().into()]).await?;
        let sql = format!(
            "SELECT COUNT(*) FILTER (WHERE subject = $1 AND published_at IS NULL) FROM {}.eh_outbox",
            e.publisher
        );
        let unpublished = scalar(db, &sql, vec![subject.into()]).await?;
        if total > 0 {
            outbox.push((e.name.to_string(), e.publisher, total, unpublished));
        }
    }
    let mut inboxes = Vec::new();
    for sub in running_subscriptions() {
        let handled = scalar(
            db,
            &format!(
                "SELECT COUNT(*) FROM {}.eh_inbox WHERE consumer = $1",
                sub.service
            ),
            vec![sub.consumer.into()],
        )
        .await?;
        let (published_n, missing) = match sub.source {
            Source::Event(e) => {
                let sql = format!(
                    "SELECT COUNT(*) FROM {}.eh_outbox o WHERE o.subject = $1",
                    e.publisher
                );
                let total = scalar(db, &sql, vec![e.subject(ns, TENANT).into()]).await?;
                let sql = format!(
                    "SELECT COUNT(*) FROM {}.eh_outbox o WHERE o.subject = $1 AND NOT EXISTS
                       (SELECT 1 FROM {}.eh_inbox i WHERE i.consumer = $2 AND i.message_key = $3 || o.id)",
                    e.publisher, sub.service
                );
                let missing = scalar(
                    db,
                    &sql,
                    // Inbox keys are `<tenant>:<id>`.
                    vec![
                        e.subject(ns, TENANT).into(),
                        sub.consumer.into(),
                        format!("{TENANT}:").into(),
                    ],
                )
                .await?;
                (total, missing)
            }
            // The publisher uses the ordinary door only: nothing was sent to any other.
            Source::Inbound(door) if door.kind != catalogue::INBOUND_REFERRAL.kind => (0, 0),
            Source::Inbound(_) => {
                let keys: HashSet<String> = strings(
                    db,
                    &format!(
                        "SELECT message_key FROM {}.eh_inbox WHERE consumer = '{}'",
                        sub.service, sub.consumer
                    ),
                )
                .await?
                .into_iter()
                .collect();
                let missing = published
                    .msg_ids
                    .iter()
                    .filter(|k| !keys.contains(&format!("{TENANT}:{k}")))
                    .count();
                (published.msg_ids.len() as i64, missing as i64)
            }
        };
        if published_n > 0 || handled > 0 {
            inboxes.push(InboxRow {
                consumer: sub.consumer,
                published: published_n,
                handled,
                missing,
            });
        }
    }

    // Screening: casework's commands, intake's inbox, decisions stored and announced.
    let screen = catalogue::SCREEN_REFERRAL.subject(ns, TENANT);
    let screen_commands = scalar(
        db,
        "SELECT COUNT(*) FROM casework.eh_outbox WHERE subject = $1",
        vec![screen.into()],
    )
    .await?;
    let screen_taken = scalar(
        db,
        "SELECT COUNT(*) FROM intake.eh_inbox WHERE consumer = $1",
        vec![catalogue::INTAKE_SCREEN_REFERRAL.consumer.into()],
    )
    .await?;
    let decisions = scalar(
        db,
        "SELECT COUNT(*) FROM intake.screening_decisions",
        vec![],
    )
    .await?;
    let decided_twice = scalar(
        db,
        "SELECT COUNT(*) FROM (SELECT referral_id FROM intake.screening_decisions
           GROUP BY referral_id HAVING COUNT(*) > 1) d",
        vec![],
    )
    .await?;
    let decisions_announced = scalar(
        db,
        "SELECT COUNT(*) FROM intake.eh_outbox WHERE subject = $1",
        vec![catalogue::SCREENING_DECIDED.subject(ns, TENANT).into()],
    )
    .await?;
    let consent_records =
        scalar(db, "SELECT COUNT(*) FROM consent.consent_records", vec![]).await?;

    // Dead letters: the stream, and what an operator's `earlyhelp dlq list` shows.
    let dead_letters = match js
        .get_stream(&eh_bus::subjects::dead_letter_stream(ns).name)
        .await
    {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    };
    let dlq_list = platform.dlq_list().map_err(|e| e.to_string());

    // Messages notifications recorded, and the emails the SMTP server received.
    let mut messages = BTreeMap::new();
    for r in db
        .query_all_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT template, status, COUNT(*) FROM notifications.messages GROUP BY 1, 2",
            [],
        ))
        .await?
    {
        messages.insert(
            (
                r.try_get_by_index::<String>(0)?,
                r.try_get_by_index::<String>(1)?,
            ),
            r.try_get_by_index::<i64>(2)?,
        );
    }
    let mails = platform.smtp.messages();
    // (template, recipient) → the Message-ID of each copy received.
    let mut copies: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for m in &mails {
        let template = m
            .template()
            .unwrap_or_else(|| "(no template header)".into());
        let id = m.header("Message-ID").unwrap_or_default();
        *by_id.entry(id.clone()).or_default() += 1;
        for to in &m.to {
            let to = to
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_lowercase();
            copies
                .entry((template.clone(), to))
                .or_default()
                .push(id.clone());
        }
    }
    let repeated_message_ids = by_id.values().map(|c| c.saturating_sub(1)).sum();
    let expected: BTreeSet<(String, String)> = [ACK, OUTCOME]
        .iter()
        .flat_map(|t| {
            published
                .referrers
                .iter()
                .map(move |r| (t.to_string(), r.to_lowercase()))
        })
        .collect();
    let mut emails_by_template: BTreeMap<String, [usize; 5]> = BTreeMap::new();
    for (t, _) in &expected {
        emails_by_template.entry(t.clone()).or_default()[0] += 1;
    }
    for key in &expected {
        if !copies.contains_key(key) {
            emails_by_template.entry(key.0.clone()).or_default()[2] += 1;
        }
    }
    let mut unexpected_emails = Vec::new();
    for (key, ids) in &copies {
        let row = emails_by_template.entry(key.0.clone()).or_default();
        row[1] += ids.len();
        let distinct: BTreeSet<&String> = ids.iter().collect();
        if ids.len() > 1 && distinct.len() == 1 {
            row[3] += ids.len() - 1;
        } else if distinct.len() > 1 {
            row[4] += ids.len() - 1;
        }
        if !expected.contains(key) {
            unexpected_emails.push(format!("{} to {}", key.0, key.1));
        }
    }

    // The journey's end, from the database's own times.
    let last_ready = db
        .query_one_raw(eh_store::stmt(
            db.get_database_backend(),
            &format!("SELECT MAX(updated_at) FROM casework.cases WHERE state = '{EXPECTED_STATE}'"),
            [],
        ))
        .await?
        .and_then(|r| {
            r.try_get_by_index::<Option<chrono::DateTime<chrono::Utc>>>(0)
                .ok()
        })
        .flatten();
    let last_sent = db
        .query_one_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT MAX(sent_at) FROM notifications.messages WHERE status = 'sent'",
            [],
        ))
        .await?
        .and_then(|r| {
            r.try_get_by_index::<Option<chrono::DateTime<chrono::Utc>>>(0)
                .ok()
        })
        .flatten();
    let since_first = |t: chrono::DateTime<chrono::Utc>| {
        (t - published.first_at).num_milliseconds() as f64 / 1000.0
    };
    // How long each email waited between being recorded and being sent, by template; and the
    // longest wait of one recorded while PostgreSQL was up (a crashed sender's claims must be
    // taken over within seconds, not when a long lease ends).
    let pg_down = faults.outage;
    let mut waits: BTreeMap<String, (Vec<f64>, f64)> = BTreeMap::new();
    for r in db
        .query_all_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT template, created_at, sent_at FROM notifications.messages
              WHERE status = 'sent' AND sent_at IS NOT NULL",
            [],
        ))
        .await?
    {
        let template: String = r.try_get_by_index(0)?;
        let created: chrono::DateTime<chrono::Utc> = r.try_get_by_index(1)?;
        let sent: chrono::DateTime<chrono::Utc> = r.try_get_by_index(2)?;
        let wait = (sent - created).num_milliseconds() as f64 / 1000.0;
        let at = since_first(created);
        let during_outage = pg_down.is_some_and(|(a, b)| at >= a && at <= b);
        let entry = waits.entry(template).or_default();
        entry.0.push(wait);
        if !during_outage {
            entry.1 = entry.1.max(wait);
        }
    }
    let email_waits = waits
        .into_iter()
        .map(|(template, (mut w, outside))| {
            w.sort_by(f64::total_cmp);
            let q = |p: f64| w[((w.len() as f64 * p).ceil() as usize).clamp(1, w.len()) - 1];
            EmailWaits {
                template,
                sent: w.len(),
                p50: q(0.5),
                p99: q(0.99),
                max: q(1.0),
                max_pg_up: outside,
            }
        })
        .collect();
    let recovery_secs = match (faults.outage, last_ready) {
        (Some((_, back)), Some(r)) => Some(since_first(r) - back),
        _ => None,
    };
    Ok(Report {
        plan: plan.clone(),
        published: published.references.len(),
        publish_secs: published.secs,
        publish_retries: published.retries,
        faults,
        settled,
        last_ready_secs: last_ready.map(since_first),
        last_sent_secs: last_sent.map(since_first),
        recovery_secs,
        email_waits,
        stored: stored_refs.len() as i64,
        never_stored,
        cases: cases_by_state.values().sum(),
        cases_by_state,
        without_case,
        not_expected,
        stuck_decided,
        consent_records,
        outbox,
        inboxes,
        screen_commands,
        screen_taken,
        decisions,
        decided_twice,
        decisions_announced,
        dead_letters,
        dlq_list,
        messages,
        emails: mails.len(),
        emails_by_template,
        unexpected_emails,
        repeated_message_ids,
        js: consumers(js, ns).await.unwrap_or_default(),
        process_notes: Vec::new(),
        log_tally: Vec::new(),
        logs_kept: None,
    })
}

fn some(list: &[String]) -> String {
    let shown: Vec<&str> = list.iter().take(8).map(String::as_str).collect();
    if list.len() > shown.len() {
        format!("{} …", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

impl Report {
    /// Every way the run fell short of "0 lost, 0 duplicated, 0 dead letters, no email twice".
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let n = self.published;
        if self.settled.starts_with("NOT") {
            p.push(format!("the platform did not settle: {}", self.settled));
        }
        p.extend(self.process_notes.iter().cloned());
        if !self.never_stored.is_empty() {
            p.push(format!(
                "LOST: {} of {n} published referral(s) never stored: {}",
                self.never_stored.len(),
                some(&self.never_stored)
            ));
        }
        if self.stored > n as i64 {
            p.push(format!(
                "DUPLICATED: {} referrals stored for {n} published",
                self.stored
            ));
        }
        if !self.without_case.is_empty() {
            p.push(format!(
                "LOST: {} stored referral(s) never got a case: {}",
                self.without_case.len(),
                some(&self.without_case)
            ));
        }
        if !self.not_expected.is_empty() {
            let mut states: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, s) in &self.not_expected {
                *states.entry(s.as_str()).or_default() += 1;
            }
            let mut decided = self.stuck_decided.clone();
            decided.sort_by(f64::total_cmp);
            let decided: Vec<String> = decided.iter().map(|d| format!("{d:.2}s")).collect();
            let when = if decided.is_empty() {
                String::new()
            } else {
                let stop = self
                    .faults
                    .outage
                    .map(|(at, _)| format!("; PostgreSQL stop issued at {at:.2}s"))
                    .unwrap_or_default();
                format!(" (decided at {}{stop})", some(&decided))
            };
            p.push(format!(
                "LOST: {} case(s) not {EXPECTED_STATE} ({states:?}), of which {} stuck in screening \
                 although intake stored a decision{when}: {}",
                self.not_expected.len(),
                self.stuck_decided.len(),
                some(
                    &self
                        .not_expected
                        .iter()
                        .map(|(r, s)| format!("{r} ({s})"))
                        .collect::<Vec<_>>()
                )
            ));
        }
        if self.cases > n as i64 {
            p.push(format!(
                "DUPLICATED: {} cases for {n} referrals",
                self.cases
            ));
        }
        if self.consent_records != self.stored {
            p.push(format!(
                "{}: {} consent record(s) for {} stored referrals",
                if self.consent_records < self.stored {
                    "LOST"
                } else {
                    "DUPLICATED"
                },
                self.consent_records,
                self.stored
            ));
        }
        for i in &self.inboxes {
            if i.missing > 0 {
                let bus = match self.js.iter().find(|c| c.name == i.consumer) {
                    Some(c) if c.pending + c.ack_pending == 0 => format!(
                        "the bus holds none of them (0 pending, 0 unacknowledged, {} deliveries): \
                         acknowledged without their effects committed",
                        c.deliveries
                    ),
                    Some(c) => format!(
                        "the bus still holds {} pending and {} unacknowledged",
                        c.pending, c.ack_pending
                    ),
                    None => "the consumer's state on the bus is unknown".into(),
                };
                p.push(format!(
                    "LOST: consumer {} has {} inbox entries for {} published: {} never handled; {bus}",
                    i.consumer, i.handled, i.published, i.missing
                ));
            }
        }
        for (event, publisher, _, unpublished) in &self.outbox {
            if *unpublished > 0 {
                p.push(format!(
                    "{unpublished} {event} event(s) of {publisher} still unpublished in its outbox"
                ));
            }
        }
        if self.screen_taken != self.screen_commands
            || self.decisions != self.screen_commands
            || self.decisions_announced != self.decisions
        {
            p.push(format!(
                "LOST: screening: casework sent {} command(s), intake took {}, stored {} \
                 decision(s), announced {}",
                self.screen_commands, self.screen_taken, self.decisions, self.decisions_announced
            ));
        }
        if self.decided_twice > 0 {
            p.push(format!(
                "DUPLICATED: {} referral(s) screened more than once",
                self.decided_twice
            ));
        }
        if self.dead_letters > 0 {
            p.push(format!("{} dead letter(s)", self.dead_letters));
        }
        match &self.dlq_list {
            Ok(lines) if !lines.is_empty() => p.push(format!(
                "earlyhelp dlq list shows {}: {}",
                lines.len(),
                some(lines)
            )),
            Ok(_) => {}
            Err(e) => p.push(format!("earlyhelp dlq list failed: {e}")),
        }
        // A sender killed between the SMTP server's acceptance and its record of the send sends
        // those emails again under the same Message-ID (at least once, as SMTP allows): reported
        // in the figures, and a problem only beyond what its kills can explain. Without a kill of
        // the sending process, any is a problem.
        let resends_explained = self
            .faults
            .kills
            .iter()
            .filter(|(process, _, _)| process.contains("notifications"))
            .count()
            * eh_notifications::sender::resent_after_a_crash_at_most(
                eh_notifications::settings::NotificationsSettings::default()
                    .smtp
                    .max_connections as usize,
            );
        let same_id_total: usize = self.emails_by_template.values().map(|v| v[3]).sum();
        for (template, [_, _, missing, same_id, other_id]) in &self.emails_by_template {
            if *missing > 0 {
                p.push(format!(
                    "LOST: {missing} {template} email(s) never received"
                ));
            }
            if *same_id > 0 && same_id_total > resends_explained {
                p.push(format!(
                    "EMAIL TWICE: {same_id} {template} email(s) received again with the same \
                     Message-ID (sent, status not recorded, sent again), {same_id_total} in all: \
                     more than the sender's kills explain ({resends_explained})"
                ));
            }
            if *other_id > 0 {
                p.push(format!(
                    "EMAIL TWICE: {other_id} {template} email(s) received again as a different \
                     message (a different Message-ID)"
                ));
            }
        }
        if !self.unexpected_emails.is_empty() {
            p.push(format!(
                "{} unexpected email(s): {}",
                self.unexpected_emails.len(),
                some(&self.unexpected_emails)
            ));
        }
        let left: Vec<String> = self
            .js
            .iter()
            .filter(|c| c.pending + c.ack_pending > 0)
            .map(|c| {
                format!(
                    "{} ({} pending, {} unacknowledged)",
                    c.name, c.pending, c.ack_pending
                )
            })
            .collect();
        if !left.is_empty() {
            p.push(format!("left on the bus: {}", some(&left)));
        }
        p
    }

    /// Ok when nothing was lost, duplicated or dead-lettered and no email went twice; else an
    /// error saying precisely what.
    pub fn verdict(&self) -> anyhow::Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        let mut msg = format!(
            "[{}] {} referrals published; {} problem(s):\n  - {}",
            self.plan.name,
            self.published,
            problems.len(),
            problems.join("\n  - ")
        );
        if let Some(dir) = &self.logs_kept {
            let _ = write!(
                msg,
                "\n  (the processes' logs are kept in {})",
                dir.display()
            );
        }
        anyhow::bail!(msg)
    }

    /// The figures, as a table.
    pub fn print(&self) {
        let n = self.published;
        let mut t = String::new();
        let name = &self.plan.name;
        let _ = writeln!(t, "\n== chaos [{name}] ==");
        let faults = match self.faults.outage {
            Some((a, b)) => format!("PostgreSQL stopped {a:.1}s → {b:.1}s ({:.1}s)", b - a),
            None => "no outage".into(),
        };
        let cuts: Vec<String> = self
            .faults
            .cuts
            .iter()
            .map(|(at, t, x)| format!("{at:.1}s: {t} terminated ({x} mid-write)"))
            .collect();
        let _ = writeln!(
            t,
            "faults: {faults}; pg_terminate_backend rounds: {}",
            if cuts.is_empty() {
                "none".into()
            } else {
                cuts.join(", ")
            }
        );
        for (name, killed, ready) in &self.faults.kills {
            let _ = writeln!(
                t,
                "  SIGKILL {name} at {killed:.1}s, restarted {:.1}s later, ready again after {:.1}s",
                self.plan.restart_after.as_secs_f64(),
                ready - killed
            );
        }
        if let Some((killed, back)) = self.faults.nats {
            let _ = writeln!(
                t,
                "  SIGKILL nats-server at {killed:.1}s, accepting connections again at {back:.1}s ({:.1}s down)",
                back - killed
            );
        }
        let _ = writeln!(
            t,
            "published {n} in {:.1}s ({:.1}/s, {} retried); settled: {}",
            self.publish_secs,
            n as f64 / self.publish_secs.max(0.001),
            self.publish_retries,
            self.settled
        );
        let row = |t: &mut String, what: &str, value: String| {
            let _ = writeln!(t, "| {what:<58} | {value:>26} |");
        };
        let _ = writeln!(t, "| {:<58} | {:>26} |", "what", "counted");
        let _ = writeln!(t, "|{:-<60}|{:-<28}|", "", "");
        row(
            &mut t,
            "referrals stored (intake) / published",
            format!("{} / {n}", self.stored),
        );
        row(&mut t, "cases (casework)", self.cases.to_string());
        for (state, c) in &self.cases_by_state {
            row(&mut t, &format!("  cases {state}"), c.to_string());
        }
        row(
            &mut t,
            "  stored referrals without a case",
            self.without_case.len().to_string(),
        );
        row(
            &mut t,
            "  stuck in screening although a decision was stored",
            self.stuck_decided.len().to_string(),
        );
        row(
            &mut t,
            "consent records (consent)",
            self.consent_records.to_string(),
        );
        for (event, publisher, total, unpublished) in &self.outbox {
            row(
                &mut t,
                &format!("events {publisher}.{event} (outbox; unpublished)"),
                format!("{total} ({unpublished})"),
            );
        }
        for i in &self.inboxes {
            row(
                &mut t,
                &format!("inbox {} / published", i.consumer),
                format!("{} / {} (missing {})", i.handled, i.published, i.missing),
            );
        }
        row(
            &mut t,
            "screening: commands / taken / decisions / announced",
            format!(
                "{} / {} / {} / {}",
                self.screen_commands, self.screen_taken, self.decisions, self.decisions_announced
            ),
        );
        row(
            &mut t,
            "  referrals screened twice",
            self.decided_twice.to_string(),
        );
        row(
            &mut t,
            "dead letters (stream)",
            self.dead_letters.to_string(),
        );
        row(
            &mut t,
            "dead letters (earlyhelp dlq list)",
            match &self.dlq_list {
                Ok(l) => l.len().to_string(),
                Err(e) => format!("failed: {e}"),
            },
        );
        for ((template, status), c) in &self.messages {
            row(
                &mut t,
                &format!("messages {template} {status}"),
                c.to_string(),
            );
        }
        row(&mut t, "emails received (SMTP)", self.emails.to_string());
        for (template, [expected, received, missing, same, other]) in &self.emails_by_template {
            row(
                &mut t,
                &format!("emails {template}: received / expected (1 per recipient)"),
                format!("{received} / {expected}"),
            );
            row(
                &mut t,
                &format!("  {template} missing"),
                missing.to_string(),
            );
            row(
                &mut t,
                &format!("  {template} again, same Message-ID"),
                same.to_string(),
            );
            row(
                &mut t,
                &format!("  {template} again, different Message-ID"),
                other.to_string(),
            );
        }
        row(
            &mut t,
            "copies beyond the first of one Message-ID",
            self.repeated_message_ids.to_string(),
        );
        for c in &self.js {
            row(
                &mut t,
                &format!("bus {}: pending / unacked / deliveries", c.name),
                format!("{} / {} / {}", c.pending, c.ack_pending, c.deliveries),
            );
        }
        for (what, secs) in [
            ("first publish → last case ready", self.last_ready_secs),
            ("first publish → last email sent", self.last_sent_secs),
        ] {
            if let Some(s) = secs {
                row(
                    &mut t,
                    what,
                    format!("{s:.1}s = {:.1} referrals/s", n as f64 / s.max(0.001)),
                );
            }
        }
        if let Some(s) = self.recovery_secs {
            row(
                &mut t,
                "PostgreSQL back → last case ready",
                format!("{s:.1}s"),
            );
        }
        for w in &self.email_waits {
            row(
                &mut t,
                &format!("{} recorded → sent: p50 / p99 / max", w.template),
                format!("{:.1}s / {:.1}s / {:.1}s", w.p50, w.p99, w.max),
            );
            row(
                &mut t,
                &format!("  longest, recorded while PostgreSQL was up ({})", w.sent),
                format!("{:.1}s", w.max_pg_up),
            );
        }
        if !self.log_tally.is_empty() {
            let _ = writeln!(
                t,
                "warnings and errors logged (process level message: count):"
            );
            for (what, c) in self.log_tally.iter().take(12) {
                let _ = writeln!(t, "  {what}: {c}");
            }
        }
        if let Some(dir) = &self.logs_kept {
            let _ = writeln!(t, "the processes' logs are kept in {}", dir.display());
        }
        println!("{t}");
    }
}

/// The long run's throughput under faults beside the same run without them.
pub fn compare(calm: &Report, chaos: &Report) {
    let rate = |secs: Option<f64>, n: usize| {
        secs.map(|s| format!("{s:>6.1}s = {:>5.1} referrals/s", n as f64 / s.max(0.001)))
            .unwrap_or_else(|| "never".into())
    };
    println!(
        "throughput, {} referrals published at {}/s (from the first publish):",
        calm.published, calm.plan.rate
    );
    for r in [calm, chaos] {
        println!(
            "  {:<24} last case ready {}   last email sent {}",
            r.plan.name,
            rate(r.last_ready_secs, r.published),
            rate(r.last_sent_secs, r.published)
        );
    }
}
