//! Shared test harness: an application started in either mode on port 0 with its own namespace,
//! database and SMTP server, plus helpers to publish, submit and observe.
use earlyhelp::{App, AppOptions, Target};
use eh_bus::transport::ConsumerSpec;
use eh_bus::{Faults, OutboundMessage, Received, subjects};
use eh_platform::Settings;
use eh_platform::config::ApiKeySettings;
use eh_proto::intake::v1::intake_service_client::IntakeServiceClient;
use eh_testkit::SmtpSink;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

/// The acknowledgement's template: each referral causes one (other messages follow it, e.g. the
/// screening outcome).
pub const ACK: &str = "referral_acknowledgement";

/// The upstream system of each test council (its API key's name, its referrals' `source.system`).
pub const TEST_HUB: &str = "test-hub";
pub const WORCS_KEY: &str = "worcs-hub-key-for-tests";
pub const STAFFS_KEY: &str = "staffs-hub-key-for-tests";

pub struct TestApp {
    pub app: Option<App>,
    pub settings: Settings,
    pub smtp: SmtpSink,
    pub faults: Arc<Faults>,
    /// The services' clock: the wall clock, or a manual one the test moves.
    pub clock: Arc<dyn eh_platform::Clock>,
    /// What [`TestApp::start`] runs (every target unless spawned with fewer).
    pub targets: Vec<Target>,
    pub dir: tempfile::TempDir,
}

/// Settings for a test, with API keys for the two test councils.
pub async fn test_settings(
    distributed: bool,
    dir: &std::path::Path,
    smtp_port: u16,
    nats: Option<String>,
) -> anyhow::Result<Settings> {
    let mut s = eh_testkit::settings(distributed, dir, Some(smtp_port), nats).await?;
    // Both councils' identity provider: one test issuer whose keys are published as a file.
    let idp =
        eh_auth::demo::DemoIssuer::load_or_create(&dir.join("idp")).map_err(anyhow::Error::msg)?;
    let jwks = dir.join("idp").join("jwks.json");
    std::fs::write(&jwks, serde_json::to_vec(&idp.jwks())?)?;
    for (tenant, key) in [("worcs", WORCS_KEY), ("staffs", STAFFS_KEY)] {
        if let Some(t) = s.tenants.get_mut(tenant) {
            // The upstream system is named as its referrals name it (`source.system` of
            // [`referral`]): a system submits and reads only the referrals it sent.
            t.api_keys.push(ApiKeySettings {
                name: TEST_HUB.into(),
                sha256: eh_auth::Authenticator::hash_key(key),
            });
            t.oidc = Some(eh_platform::config::OidcSettings {
                issuer: format!("https://idp.{tenant}.test"),
                audience: "earlyhelp".into(),
                jwks_url: jwks.display().to_string(),
                roles_claim: "roles".into(),
                agency_claim: "agency".into(),
                client: None,
            });
        }
    }
    Ok(s)
}

/// A practitioner's bearer token from the test councils' identity provider (see
/// [`test_settings`]): subject `subject` of `tenant` with `roles`.
pub fn person_token(dir: &std::path::Path, tenant: &str, subject: &str, roles: &[&str]) -> String {
    person_token_of(dir, tenant, subject, roles, "early_help")
}

/// A person's token whose agency claim is `agency` (for a provider: its ORUK organisation id).
pub fn person_token_of(
    dir: &std::path::Path,
    tenant: &str,
    subject: &str,
    roles: &[&str],
    agency: &str,
) -> String {
    let idp = eh_auth::demo::DemoIssuer::load_or_create(&dir.join("idp")).expect("test issuer");
    let now = chrono::Utc::now().timestamp();
    idp.mint_claims(serde_json::json!({
        "iss": format!("https://idp.{tenant}.test"), "aud": "earlyhelp", "sub": subject,
        "roles": roles, "agency": agency, "exp": now + 3600
    }))
    .expect("token")
}

/// A request carrying a bearer token.
pub fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    r
}

impl TestApp {
    pub async fn spawn(distributed: bool) -> anyhow::Result<Self> {
        Self::spawn_on(distributed, None).await
    }

    /// Starts the application on a manual clock the test moves (no sleeping).
    pub async fn spawn_with_clock(
        distributed: bool,
        clock: Arc<eh_platform::clock::ManualClock>,
    ) -> anyhow::Result<Self> {
        Self::spawn_full(distributed, None, clock).await
    }

    pub async fn spawn_on(distributed: bool, nats: Option<String>) -> anyhow::Result<Self> {
        Self::spawn_full(distributed, nats, Arc::new(eh_platform::SystemClock)).await
    }

    /// Starts only `targets` (e.g. the first slice's intake and notifications).
    pub async fn spawn_targets(distributed: bool, targets: &[Target]) -> anyhow::Result<Self> {
        Self::spawn_with(
            distributed,
            None,
            Arc::new(eh_platform::SystemClock),
            targets.to_vec(),
        )
        .await
    }

    /// Starts every target on settings `configure` adjusts first (it is given the test's
    /// directory, e.g. to write a file a setting names).
    pub async fn spawn_configured(
        distributed: bool,
        configure: impl FnOnce(&mut Settings, &std::path::Path),
    ) -> anyhow::Result<Self> {
        Self::spawn_targets_configured(distributed, Target::ALL, configure).await
    }

    /// Starts `targets` on settings `configure` adjusts first.
    pub async fn spawn_targets_configured(
        distributed: bool,
        targets: &[Target],
        configure: impl FnOnce(&mut Settings, &std::path::Path),
    ) -> anyhow::Result<Self> {
        init_telemetry();
        let dir = tempfile::tempdir()?;
        let smtp = SmtpSink::start()?;
        let mut settings = test_settings(distributed, dir.path(), smtp.port, None).await?;
        configure(&mut settings, dir.path());
        let mut t = Self {
            app: None,
            settings,
            smtp,
            faults: Arc::new(Faults::default()),
            clock: Arc::new(eh_platform::SystemClock),
            targets: targets.to_vec(),
            dir,
        };
        t.start().await?;
        Ok(t)
    }

    async fn spawn_full(
        distributed: bool,
        nats: Option<String>,
        clock: Arc<dyn eh_platform::Clock>,
    ) -> anyhow::Result<Self> {
        Self::spawn_with(distributed, nats, clock, Target::ALL.to_vec()).await
    }

    async fn spawn_with(
        distributed: bool,
        nats: Option<String>,
        clock: Arc<dyn eh_platform::Clock>,
        targets: Vec<Target>,
    ) -> anyhow::Result<Self> {
        init_telemetry();
        let dir = tempfile::tempdir()?;
        let smtp = SmtpSink::start()?;
        let settings = test_settings(distributed, dir.path(), smtp.port, nats).await?;
        let mut t = Self {
            app: None,
            settings,
            smtp,
            faults: Arc::new(Faults::default()),
            clock,
            targets,
            dir,
        };
        t.start().await?;
        Ok(t)
    }

    /// Starts (or starts again, after [`TestApp::stop`]) the application on the same settings.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let mut opts = AppOptions::new(self.settings.clone(), self.targets.clone());
        opts.faults = self.faults.clone();
        opts.clock = self.clock.clone();
        opts.http_listener = Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
        opts.grpc_listener = Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
        let app = App::start(opts).await?;
        app.wait_ready(Duration::from_secs(30)).await?;
        self.app = Some(app);
        Ok(())
    }

    /// Graceful stop.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(app) = self.app.take() {
            app.shutdown();
            app.stopped().await?;
        }
        Ok(())
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("app running")
    }

    pub fn ns(&self) -> String {
        self.settings.bus.namespace.clone()
    }

    /// A practitioner's token for this app's councils.
    pub fn token(&self, tenant: &str, subject: &str, roles: &[&str]) -> String {
        person_token(self.dir.path(), tenant, subject, roles)
    }

    /// A token of `agency`'s staff (a provider's: its ORUK organisation id).
    pub fn token_of(&self, tenant: &str, subject: &str, roles: &[&str], agency: &str) -> String {
        person_token_of(self.dir.path(), tenant, subject, roles, agency)
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(
            Channel::from_shared(format!("http://{}", self.app().grpc_addr))?
                .connect()
                .await?,
        )
    }

    pub async fn intake(&self) -> anyhow::Result<IntakeServiceClient<Channel>> {
        let ch = Channel::from_shared(format!("http://{}", self.app().grpc_addr))?
            .connect()
            .await?;
        Ok(IntakeServiceClient::new(ch))
    }

    /// Publishes raw bytes as an upstream system does.
    pub async fn publish_inbound(
        &self,
        tenant: &str,
        payload: Vec<u8>,
        msg_id: &str,
    ) -> anyhow::Result<()> {
        self.app()
            .transport
            .publish(&OutboundMessage {
                msg_id: msg_id.to_string(),
                subject: subjects::inbound(&self.ns(), tenant, "referral"),
                headers: BTreeMap::from([("Eh-Actor".to_string(), format!("{tenant}-hub"))]),
                payload,
            })
            .await?;
        Ok(())
    }

    /// A fresh durable consumer of `filter` from the start of the stream of `service`.
    pub async fn watch(
        &self,
        service: &str,
        filter: &str,
    ) -> anyhow::Result<Box<dyn eh_bus::transport::Subscription>> {
        Ok(self
            .app()
            .transport
            .subscribe(&ConsumerSpec {
                durable: format!("watch_{}", uuid::Uuid::new_v4().simple()),
                stream: subjects::service_stream(&self.ns(), service),
                filter_subject: filter.to_string(),
                ack_wait: Duration::from_secs(30),
            })
            .await?)
    }

    /// Connects to one service's database, as the services do, but in the system scope (every
    /// council's rows) for the test's own look at what was written: the services' pools see
    /// nothing outside a council's scope.
    pub async fn db(&self, service: &str) -> anyhow::Result<sea_orm::DatabaseConnection> {
        let loc = eh_store::Location::for_service(&self.settings, service)?;
        eh_testkit::inspector(&loc).await
    }

    pub async fn referral_count(&self, tenant: &str) -> anyhow::Result<i64> {
        let db = self.db("intake").await?;
        Ok(eh_intake::store::count(&db, tenant).await?)
    }

    /// Value of a Prometheus counter line that contains every one of `parts`.
    pub fn metric(&self, name: &str, parts: &[&str]) -> f64 {
        self.app()
            .metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Installs the binary's telemetry (tracing + OpenTelemetry + W3C propagation) once per process.
pub fn init_telemetry() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let settings = eh_platform::config::TelemetrySettings {
            log_level: std::env::var("EH_TEST_LOG").unwrap_or_else(|_| "error".into()),
            ..Default::default()
        };
        if let Ok(guard) = eh_platform::telemetry::init(&settings) {
            std::mem::forget(guard);
        }
    });
}

/// Collects deliveries from `sub` until `n` arrived or `within` passed.
pub async fn collect(
    sub: &mut Box<dyn eh_bus::transport::Subscription>,
    n: usize,
    within: Duration,
) -> anyhow::Result<Vec<Received>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < n && tokio::time::Instant::now() < deadline {
        if let Some(d) = sub.next().await? {
            d.acker.ack().await?;
            out.push(d.msg);
        }
    }
    Ok(out)
}

/// A valid referral document for `reference`.
pub fn referral(reference: &str, referrer_email: Option<&str>) -> serde_json::Value {
    let mut doc = earlyhelp::demo::example(reference, referrer_email);
    doc["source"]["system"] = serde_json::json!(TEST_HUB);
    doc
}

/// An API-key authenticated request.
pub fn with_key<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("x-api-key", key.parse().expect("ascii key"));
    r
}
