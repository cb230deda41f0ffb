//! Real dependencies for tests: PostgreSQL and NATS from the environment (`EH_TEST_DATABASE_URL`,
//! `EH_TEST_NATS_URL`) or the default local ports, else throwaway servers started from installed
//! binaries in a temp dir; a fresh database and subject namespace per test so tests run in
//! parallel; a real SMTP server (mailin) that keeps what it receives. For fault tests: a
//! PostgreSQL cluster the test owns and may stop, start and cut ([`PostgresServer`]), a NATS
//! server it may kill ([`NatsServer`]), service processes it may stop or kill
//! ([`ServiceProcess`]), and a proxy that cuts one test's connections to a shared server
//! ([`Cuttable`]).
mod outage;

pub use outage::Cuttable;

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod pg_server;
mod process;
pub use pg_server::PostgresServer;
pub use process::{ServiceProcess, database_roles, http_ready, migrate_as_owner};

/// A unique, valid subject token / stream prefix for one test.
pub fn namespace() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn reachable(hostport: &str) -> bool {
    use std::net::ToSocketAddrs;
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for(hostport: &str, what: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if reachable(hostport) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not start listening on {hostport}")
}

/// The PostgreSQL server tests use: `EH_TEST_DATABASE_URL`, else 127.0.0.1:5432 (user postgres),
/// else a throwaway cluster from the installed `initdb`/`postgres` binaries.
pub fn postgres_admin_url() -> anyhow::Result<String> {
    static URL: Mutex<Option<String>> = Mutex::new(None);
    let mut guard = URL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(u) = guard.as_ref() {
        return Ok(u.clone());
    }
    let url = std::env::var("EH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = if reachable(&host_port(&url)) {
        url
    } else {
        start_throwaway_postgres().with_context(|| {
            format!(
                "no PostgreSQL at {url} and none could be started: set EH_TEST_DATABASE_URL, start \
                 the local server (pg_ctlcluster <version> main start), or install postgresql"
            )
        })?
    };
    *guard = Some(url.clone());
    Ok(url)
}

fn pg_bin() -> Option<PathBuf> {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(base)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    versions.sort();
    versions.pop().map(|v| v.join("bin"))
}

fn start_throwaway_postgres() -> anyhow::Result<String> {
    let bin = pg_bin().context("no /usr/lib/postgresql/*/bin")?;
    let dir = tempfile::Builder::new().prefix("eh-pg-").tempdir()?.keep();
    let port = free_port()?;
    let status = Command::new(bin.join("initdb"))
        .args(["-D"])
        .arg(dir.join("data"))
        .args(["-U", "postgres", "--auth=trust"])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "initdb failed");
    Command::new(bin.join("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_for(&format!("127.0.0.1:{port}"), "throwaway PostgreSQL")?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

/// The role every test database belongs to, and that migrations run as: a LOGIN role that is
/// neither SUPERUSER nor BYPASSRLS (row-level security is forced on its tables, so it is subject
/// to it too). Tests that migrate and run a service on one connection connect as it.
pub const OWNER_ROLE: &str = "eh_test_owner";

/// The services' role in tests that run the platform as production does ([`settings`],
/// [`fresh_database_split`]): a LOGIN role, neither SUPERUSER nor BYPASSRLS, that owns nothing
/// and is granted only `SELECT`/`INSERT`/`UPDATE`/`DELETE` and the sequences by the migrations —
/// so it cannot lift `FORCE ROW LEVEL SECURITY` or drop a policy.
pub const APP_ROLE: &str = "eh_test_app";

/// `url` with its user replaced by `user` (the password, host, database and parameters kept).
pub fn with_user(url: &str, user: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((_, password)) => format!("{scheme}://{user}:{password}@{host}"),
            None => format!("{scheme}://{user}@{host}"),
        },
        None => format!("{scheme}://{user}@{rest}"),
    }
}

/// The same database as `url`, as the superuser of [`postgres_admin_url`] (who bypasses row-level
/// security: for tests that look under it).
pub fn as_superuser(url: &str) -> anyhow::Result<String> {
    let admin = postgres_admin_url()?;
    let admin_user = admin
        .split_once("://")
        .and_then(|(_, r)| r.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo.split(':').next().unwrap_or(userinfo).to_string())
        .unwrap_or_else(|| "postgres".into());
    Ok(with_user(url, &admin_user))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Creates `role` (LOGIN, NOSUPERUSER, NOBYPASSRLS) when missing, on the server of `admin`
/// (a superuser). Parallel tests (threads or processes) may race to create it: the loser's
/// duplicate is ignored. When the admin URL carries a password the role gets the same one.
pub async fn ensure_role(admin: &str, role: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !role.is_empty()
            && role
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "role name {role:?}: lower case letters, digits and _ only"
    );
    let db = Database::connect(admin)
        .await
        .with_context(|| format!("connect {admin}"))?;
    // CREATE ROLE racing another raises duplicate_object, or unique_violation on pg_authid.
    db.execute_unprepared(&format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
             CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
           END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
         END $$"
    ))
    .await
    .with_context(|| format!("create role {role}"))?;
    let password = admin
        .split_once("://")
        .and_then(|(_, r)| r.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| percent_decode(p));
    if let Some(p) = password {
        db.execute_unprepared(&format!(
            "ALTER ROLE {role} PASSWORD '{}'",
            p.replace('\'', "''")
        ))
        .await
        .ok();
    }
    db.close().await.ok();
    Ok(())
}

/// A new, empty database for one test, owned by [`OWNER_ROLE`]; its URL, connecting as that
/// role.
pub async fn fresh_database() -> anyhow::Result<String> {
    Ok(fresh_database_split().await?.0)
}

/// A new, empty database for one test, owned by [`OWNER_ROLE`]: its URL as the owner (for
/// migrations) and as [`APP_ROLE`] (for the services; granted the use of the tables by the
/// migrations). Both roles are created once per process when missing, safely with tests in
/// parallel processes.
pub async fn fresh_database_split() -> anyhow::Result<(String, String)> {
    static ROLES_READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let admin = postgres_admin_url()?;
    ROLES_READY
        .get_or_try_init(|| async {
            ensure_role(&admin, OWNER_ROLE).await?;
            ensure_role(&admin, APP_ROLE).await
        })
        .await?;
    let name = format!("eh_test_{}", uuid::Uuid::new_v4().simple());
    let db = Database::connect(&admin)
        .await
        .with_context(|| format!("connect {admin}"))?;
    db.execute_unprepared(&format!("CREATE DATABASE {name} OWNER {OWNER_ROLE}"))
        .await?;
    db.close().await.ok();
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .unwrap_or(admin);
    let url = format!("{base}/{name}");
    Ok((with_user(&url, OWNER_ROLE), with_user(&url, APP_ROLE)))
}

/// A connection to `location` in the system scope (every council's rows, `eh.tenant = *` from
/// its start), for a test's own look at what the services wrote: the services' pools see
/// nothing outside a scoped transaction. On SQLite, a connection to the same file.
pub async fn inspector(
    location: &eh_store::Location,
) -> anyhow::Result<sea_orm::DatabaseConnection> {
    let mut opts = sea_orm::ConnectOptions::new(location.url.clone());
    opts.max_connections(2).sqlx_logging(false);
    if let Some(schema) = &location.schema {
        opts.set_schema_search_path(format!("\"{schema}\""));
        opts.map_sqlx_postgres_opts(|o| {
            o.options([
                (eh_store::TENANT_SETTING, eh_store::SYSTEM_SCOPE),
                ("application_name", "earlyhelp:test-inspector"),
            ])
        });
    }
    Ok(Database::connect(opts).await?)
}

/// A connection beside `db` (a service's pool) in the system scope — same server, role and
/// schema, `eh.tenant = *` from its start — for a test's own look at what the service wrote: the
/// service's pool sees nothing outside a scoped transaction. On SQLite, `db` itself.
pub async fn inspector_of(
    db: &sea_orm::DatabaseConnection,
) -> anyhow::Result<sea_orm::DatabaseConnection> {
    use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(db.clone());
    }
    let search_path: String = db
        .query_one_raw(eh_store::stmt(
            sea_orm::DbBackend::Postgres,
            "SELECT current_setting('search_path')",
            [],
        ))
        .await?
        .context("no search_path")?
        .try_get_by_index(0)?;
    let own = db.get_postgres_connection_pool();
    let options: PgConnectOptions = (*own.connect_options()).clone().options([
        (eh_store::TENANT_SETTING, eh_store::SYSTEM_SCOPE),
        ("application_name", "earlyhelp:test-inspector"),
        ("search_path", search_path.as_str()),
    ]);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy_with(options);
    Ok(sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(
        pool,
    ))
}

/// The NATS server tests share: `EH_TEST_NATS_URL`, else 127.0.0.1:4222, else a throwaway one.
pub fn nats_url() -> anyhow::Result<String> {
    static URL: Mutex<Option<(String, Option<NatsServer>)>> = Mutex::new(None);
    let mut guard = URL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((u, _)) = guard.as_ref() {
        return Ok(u.clone());
    }
    let url = std::env::var("EH_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let (url, server) = if reachable(&host_port(&url)) {
        (url, None)
    } else {
        let s = NatsServer::start().with_context(|| {
            format!("no NATS at {url} and nats-server could not be started: set EH_TEST_NATS_URL or install nats-server")
        })?;
        (s.url(), Some(s))
    };
    *guard = Some((url.clone(), server));
    Ok(url)
}

/// A throwaway `nats-server -js` the test owns (and may stop and restart on the same port and
/// store, as a crash and recovery would).
pub struct NatsServer {
    port: u16,
    store: PathBuf,
    child: Option<Child>,
    /// A configuration file (accounts, users), written into the store directory.
    config: Option<PathBuf>,
    /// The server's environment (the passwords a configuration names).
    env: Vec<(String, String)>,
}

impl NatsServer {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_configured(None, Vec::new())
    }

    /// A throwaway server with configuration `config` (e.g. `accounts { … }`), its variables
    /// (`$EH_NATS_PASSWORD_…`) taken from `env`.
    pub fn start_with_config(config: &str, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        Self::start_configured(Some(config), env)
    }

    fn start_configured(config: Option<&str>, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let store = tempfile::Builder::new()
            .prefix("eh-nats-")
            .tempdir()?
            .keep();
        let config = match config {
            Some(text) => {
                let path = store.join("nats-server.conf");
                std::fs::write(&path, text)?;
                Some(path)
            }
            None => None,
        };
        let mut s = Self {
            port: free_port()?,
            store,
            child: None,
            config,
            env,
        };
        s.spawn()?;
        Ok(s)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| {
            if Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".into()
            } else {
                "nats-server".into()
            }
        });
        let mut cmd = Command::new(&bin);
        if let Some(c) = &self.config {
            cmd.arg("-c").arg(c);
        }
        let child = cmd
            .envs(self.env.iter().cloned())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.store.join("nats-server.log"))?)
            .spawn()
            .with_context(|| format!("start {bin}"))?;
        self.child = Some(child);
        wait_for(&format!("127.0.0.1:{}", self.port), "nats-server").with_context(|| {
            std::fs::read_to_string(self.store.join("nats-server.log")).unwrap_or_default()
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// A message the SMTP server received.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub raw: Vec<u8>,
}

impl ReceivedMail {
    /// The first value of header `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.raw);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line.trim_start());
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_string());
            }
        }
        value
    }

    /// The template the platform rendered it from.
    pub fn template(&self) -> Option<String> {
        self.header("X-Earlyhelp-Template")
    }
}

/// mailin clones the handler for each connection: `current` is that connection's message in
/// progress; `store` and `failing` are shared.
#[derive(Clone, Default)]
struct SinkHandler {
    store: Arc<Mutex<Vec<ReceivedMail>>>,
    current: Option<ReceivedMail>,
    /// While true the server answers 451 to DATA (a temporary failure).
    failing: Arc<Mutex<bool>>,
}

impl mailin_embedded::Handler for SinkHandler {
    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        if *self.failing.lock().unwrap_or_else(|e| e.into_inner()) {
            return mailin_embedded::response::INTERNAL_ERROR;
        }
        self.current = Some(ReceivedMail {
            from: from.to_string(),
            to: to.to_vec(),
            raw: Vec::new(),
        });
        mailin_embedded::response::OK
    }
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(m) = self.current.as_mut() {
            m.raw.extend_from_slice(buf);
        }
        Ok(())
    }
    fn data_end(&mut self) -> mailin_embedded::Response {
        if let Some(m) = self.current.take() {
            self.store.lock().unwrap_or_else(|e| e.into_inner()).push(m);
        }
        mailin_embedded::response::OK
    }
}

/// A real SMTP server on 127.0.0.1 (the mailin library), keeping every message it accepts.
pub struct SmtpSink {
    pub port: u16,
    handler: SinkHandler,
}

impl SmtpSink {
    pub fn start() -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let handler = SinkHandler::default();
        let mut server = mailin_embedded::Server::new(handler.clone());
        server
            .with_name("smtp-sink.test")
            .with_tcp_listener(listener)
            // A thread per connection: room for several senders' pools (smtp.max_connections each).
            .with_num_threads(64);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Ok(Self { port, handler })
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.handler
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The messages rendered from `template` (their `X-Earlyhelp-Template` header).
    pub fn of_template(&self, template: &str) -> Vec<ReceivedMail> {
        self.messages()
            .into_iter()
            .filter(|m| m.template().as_deref() == Some(template))
            .collect()
    }

    /// Waits until at least `n` messages of `template` arrived; all of them.
    pub async fn wait_for_template(
        &self,
        template: &str,
        n: usize,
        within: Duration,
    ) -> anyhow::Result<Vec<ReceivedMail>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = self.of_template(template);
            if m.len() >= n {
                return Ok(m);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "expected {n} message(s) of template {template}, the SMTP server has {} ({} in all)",
                    m.len(),
                    self.messages().len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes the server refuse mail (451) until set back.
    pub fn set_failing(&self, failing: bool) {
        *self
            .handler
            .failing
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = failing;
    }

    /// Waits until at least `n` messages arrived; all of them.
    pub async fn wait_for(&self, n: usize, within: Duration) -> anyhow::Result<Vec<ReceivedMail>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = self.messages();
            if m.len() >= n {
                return Ok(m);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("expected {n} message(s), the SMTP server has {}", m.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `check` until it yields `Some`, or fails after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A SQLite file `file` under `dir` (one connection, as the embedded mode uses).
pub fn sqlite(dir: &Path, file: &str) -> eh_store::Location {
    eh_store::Location {
        url: format!("sqlite://{}?mode=rwc", dir.join(file).display()),
        schema: None,
        max_connections: 1,
    }
}

/// Where `service`'s tables live in a test: schema `service` of a fresh PostgreSQL database, or
/// `<service>.sqlite` under `dir`.
pub async fn service_location(
    postgres: bool,
    dir: &Path,
    service: &str,
) -> anyhow::Result<eh_store::Location> {
    Ok(if postgres {
        eh_store::Location {
            url: fresh_database().await?,
            schema: Some(service.into()),
            max_connections: 4,
        }
    } else {
        sqlite(dir, &format!("{service}.sqlite"))
    })
}

/// The audit trail's key in every test's settings (one for all: the auditors of a process
/// share the key it installed last).
pub const AUDIT_KEY: &str = "test-audit-hmac-key-0123456789abcdef0123456789";

/// Settings for a test: embedded under `data_dir`, or distributed on a fresh database and the
/// shared NATS, always in its own namespace; SMTP to `smtp_port` when given.
pub async fn settings(
    distributed: bool,
    data_dir: &Path,
    smtp_port: Option<u16>,
    nats: Option<String>,
) -> anyhow::Result<eh_platform::Settings> {
    let mut env: Vec<(String, String)> = vec![
        ("EH__BUS__NAMESPACE".into(), namespace()),
        ("EH__DATA_DIR".into(), data_dir.display().to_string()),
        ("EH__BUS__ACK_WAIT_SECS".into(), "2".into()),
        ("EH__BUS__RETRY_BASE_MS".into(), "50".into()),
        ("EH__BUS__RETRY_MAX_MS".into(), "200".into()),
        ("EH__BUS__MAX_DELIVER".into(), "3".into()),
        ("EH__SERVER__SHUTDOWN_GRACE_SECS".into(), "10".into()),
        ("EH__AUDIT__HMAC_KEY".into(), AUDIT_KEY.into()),
        (
            "EH__TENANTS__WORCS__NAME".into(),
            "Worcestershire County Council".into(),
        ),
        (
            "EH__TENANTS__STAFFS__NAME".into(),
            "Staffordshire County Council".into(),
        ),
        (
            "EH__TENANTS__WORCS__CONTACTS__FRONT_DOOR_EMAIL".into(),
            "front-door@worcs.test".into(),
        ),
        (
            "EH__TENANTS__WORCS__CONTACTS__TEAM_MANAGER_EMAIL".into(),
            "eh-manager@worcs.test".into(),
        ),
        (
            "EH__TENANTS__STAFFS__CONTACTS__FRONT_DOOR_EMAIL".into(),
            "front-door@staffs.test".into(),
        ),
        (
            "EH__TENANTS__STAFFS__CONTACTS__TEAM_MANAGER_EMAIL".into(),
            "eh-manager@staffs.test".into(),
        ),
    ];
    if distributed {
        env.push(("EH__MODE".into(), "distributed".into()));
        // As production: migrations as the owner, the services as a role that owns nothing.
        let (owner, service) = fresh_database_split().await?;
        env.push(("EH__DATABASE__URL".into(), service));
        env.push(("EH__DATABASE__MIGRATE_URL".into(), owner));
        env.push((
            "EH__BUS__NATS_URL".into(),
            match nats {
                Some(u) => u,
                None => nats_url()?,
            },
        ));
    } else {
        env.push(("EH__DEMO".into(), "true".into()));
    }
    if let Some(p) = smtp_port {
        env.push(("EH__SMTP__HOST".into(), "127.0.0.1".into()));
        env.push(("EH__SMTP__PORT".into(), p.to_string()));
        // The sink speaks plain SMTP on loopback: said explicitly, as an operator must.
        env.push(("EH__SMTP__TLS".into(), "none".into()));
        env.push(("EH__SMTP__ALLOW_PLAINTEXT".into(), "true".into()));
    }
    eh_platform::Settings::load(&[], env).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Evidence of batching on PostgreSQL: from now on, every row inserted into `table` notes the
/// top-level transaction it was written in (a savepoint reports its parent's). See
/// [`TopTransactions::count`].
pub struct TopTransactions {
    log: String,
}

impl TopTransactions {
    /// Starts noting inserts into `table` (PostgreSQL only).
    pub async fn watch(db: &sea_orm::DatabaseConnection, table: &str) -> anyhow::Result<Self> {
        use sea_orm::ConnectionTrait;
        let log = format!("{table}_top_transactions");
        db.execute_unprepared(&format!(
            "CREATE TABLE {log} (top_xid TEXT NOT NULL);
             CREATE FUNCTION {log}_note() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN INSERT INTO {log} VALUES (pg_current_xact_id()::text); RETURN NEW; END $$;
             CREATE TRIGGER {log} AFTER INSERT ON {table}
               FOR EACH ROW EXECUTE FUNCTION {log}_note()"
        ))
        .await?;
        Ok(Self { log })
    }

    /// (rows inserted and kept, distinct top-level transactions they were written in). A row
    /// rolled back with its savepoint takes its note with it.
    pub async fn count(&self, db: &sea_orm::DatabaseConnection) -> anyhow::Result<(i64, i64)> {
        use sea_orm::ConnectionTrait;
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*), COUNT(DISTINCT top_xid) FROM {}", self.log),
            ))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no count from {}", self.log))?;
        Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?))
    }
}

/// Handlers' answers to many messages at once: how many were `done`, how many `duplicate`, and
/// the texts of the errors.
pub fn tally<T: PartialEq, E: std::fmt::Display>(
    answers: impl IntoIterator<Item = Result<T, E>>,
    done: &T,
    duplicate: &T,
) -> (usize, usize, Vec<String>) {
    let (mut d, mut dup, mut errors) = (0, 0, Vec::new());
    for a in answers {
        match a {
            Ok(h) if &h == done => d += 1,
            Ok(h) if &h == duplicate => dup += 1,
            Ok(_) => errors.push("neither done nor a duplicate".into()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (d, dup, errors)
}
