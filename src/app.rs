//! Building and running the application: transport, one database per service, the services,
//! the gRPC and HTTP listeners, readiness, and graceful shutdown.
use crate::Target;
use anyhow::Context;
use eh_auth::Authenticator;
use eh_auth::demo::DemoIssuer;
use eh_bus::embedded::EmbeddedTransport;
use eh_bus::nats::{NatsOptions, NatsTransport};
use eh_bus::{Faults, Outbox, ServiceContext, Transport};
use eh_platform::config::{Section, TenantSettings};
use eh_platform::health::{self, Readiness};
use eh_platform::{Clock, Metrics, Mode, NoDelayListener, Settings, SystemClock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How to start.
pub struct AppOptions {
    pub settings: Settings,
    pub targets: Vec<Target>,
    pub faults: Arc<Faults>,
    pub clock: Arc<dyn Clock>,
    /// Listeners to use instead of binding the configured addresses (tests bind port 0).
    pub http_listener: Option<TcpListener>,
    pub grpc_listener: Option<TcpListener>,
}

impl AppOptions {
    pub fn new(settings: Settings, targets: Vec<Target>) -> Self {
        Self {
            settings,
            targets,
            faults: Arc::new(Faults::default()),
            clock: Arc::new(SystemClock),
            http_listener: None,
            grpc_listener: None,
        }
    }
}

/// A running application.
pub struct App {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub settings: Arc<Settings>,
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    pub transport: Arc<dyn Transport>,
    pub demo_issuer: Option<Arc<DemoIssuer>>,
    shutdown: CancellationToken,
    finished: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The demo council, added in demo mode when the settings do not name it.
pub fn with_demo_tenant(mut settings: Settings) -> Settings {
    if settings.demo_enabled() && !settings.tenants.contains_key(eh_auth::demo::DEMO_TENANT) {
        let mut demo = TenantSettings::named("Demo Borough Council");
        // Notifications' sections of the council, as a configuration file would write them.
        for (key, value) in [
            (
                "mail_from",
                serde_json::json!("Demo Borough Council Early Help <earlyhelp@demo.invalid>"),
            ),
            (
                "contacts",
                serde_json::json!({
                    "front_door_email": "front-door@demo.invalid",
                    "team_manager_email": "early-help-manager@demo.invalid",
                }),
            ),
            // Allocation's rules and directory (`earlyhelp demo` writes the directory file: an
            // Open Referral UK export of the borough's services, src/demo_directory.json).
            (
                "allocation",
                serde_json::json!({
                    "rule_version": "demo-allocation-1",
                    "programmes": [{"id": "brfc", "kind": "commissioned"}],
                    "localities": {"Demoton Central": ["DM1", "DM2"], "Eastfield": ["DM3", "DM4", "DM5"]},
                    "taxonomy_needs": [
                        {"need": "domestic_abuse", "terms": ["Domestic abuse support"]},
                        {"need": "housing", "terms": ["Housing advice"]}
                    ],
                    "directory": {"file": crate::demo::directory_file(&settings)},
                }),
            ),
        ] {
            let full = format!("tenants.{}.{key}", eh_auth::demo::DEMO_TENANT);
            if let Ok(section) = Section::from_json(full, value) {
                demo.sections.insert(key.into(), section);
            }
        }
        settings
            .tenants
            .insert(eh_auth::demo::DEMO_TENANT.into(), demo);
    }
    settings
}

/// How long the bus keeps messages: the outbox replay window, at least a day.
fn stream_max_age(settings: &Settings) -> Duration {
    Duration::from_secs(settings.bus.outbox_retention_hours.max(24) * 3600)
}

/// The transport the settings ask for. NATS is connected in the background: this returns at once.
/// With `retention`, the embedded transport's retention sweep runs until that token is cancelled
/// (the running platform); without, it does not run (one-off commands).
pub async fn transport(
    settings: &Settings,
    retention: Option<&CancellationToken>,
) -> anyhow::Result<Arc<dyn Transport>> {
    Ok(match settings.mode {
        Mode::Embedded => {
            let loc = eh_store::Location::for_service(settings, "bus")?;
            let lanes = eh_store::connect_lanes(&loc)
                .await
                .context("embedded bus database")?;
            let bus = Arc::new(EmbeddedTransport::open_lanes(lanes).await?);
            // The same window as the NATS streams' max_age: delivered messages older than the
            // outbox replay window are deleted, hourly (dead letters never).
            if let Some(stop) = retention {
                // Dead letters are kept until an operator replays or discards them.
                tokio::spawn(bus.clone().run_retention(
                    stream_max_age(settings),
                    Duration::from_secs(3600),
                    vec![eh_bus::subjects::dead_letter_stream(
                        &settings.bus.namespace,
                    )],
                    stop.clone(),
                ));
            }
            bus
        }
        Mode::Distributed => Arc::new(
            NatsTransport::connect(NatsOptions {
                url: settings.bus.nats_url.clone(),
                name: format!("earlyhelp-{}", std::process::id()),
                credentials_file: settings.bus.credentials_file.clone(),
                ca_file: settings.bus.ca_file.clone(),
                replicas: settings.bus.replicas,
                max_age: stream_max_age(settings),
            })
            .await?,
        ),
    })
}

/// Connects to `target`'s database as its owner (`database.migrate_url`, else `database.url`),
/// applies its migrations and grants the services' role (`database.url`'s) the use of its tables.
pub async fn migrate(settings: &Settings, target: Target) -> anyhow::Result<usize> {
    migrate_as_owner(settings, target)
        .await
        .with_context(|| format!("{target} database"))
}

async fn migrate_as_owner(settings: &Settings, target: Target) -> Result<usize, eh_store::Error> {
    let loc = eh_store::Location::for_migrations(settings, target.name())?;
    let db = eh_store::connect(&loc).await?;
    let n = eh_store::migrate(&db, target.name(), &target.migrations()).await;
    let granted = match (&n, eh_store::service_role(settings)) {
        (Ok(_), Some(role)) => eh_store::grant(&db, &role).await,
        (Ok(_), None) if settings.mode == Mode::Distributed => {
            tracing::warn!(
                service = %target,
                "database.migrate_url is not set apart from database.url: the services' role owns \
                 its tables and could lift their row-level security"
            );
            Ok(())
        }
        _ => Ok(()),
    };
    db.close().await.ok();
    let n = n?;
    granted?;
    Ok(n)
}

impl App {
    /// Starts the HTTP listener at once, then (in the background, retrying while the database or
    /// bus is down) the services and the gRPC listener. `/readyz` says when all is up.
    pub async fn start(opts: AppOptions) -> anyhow::Result<App> {
        let mut settings = with_demo_tenant(opts.settings);
        // Every service's settings are read and checked before anything starts.
        crate::targets::check_settings(&settings, &opts.targets).map_err(anyhow::Error::msg)?;
        // The audit trail's key (refused start without one in distributed mode), for every
        // service's `Auditor`.
        eh_auth::audit::install_key(
            eh_auth::AuditKey::from_settings(&settings).map_err(anyhow::Error::msg)?,
        );
        let demo_issuer = if settings.demo_enabled() {
            Some(Arc::new(
                DemoIssuer::load_or_create(&settings.data_dir).map_err(anyhow::Error::msg)?,
            ))
        } else {
            None
        };
        let auth = Authenticator::from_settings(&settings, demo_issuer.as_deref())
            .map_err(anyhow::Error::msg)?;
        let metrics = Arc::new(Metrics::new());
        let readiness = Readiness::default();
        let shutdown = CancellationToken::new();

        // Every connection either listener accepts has TCP_NODELAY set (eh_platform::net).
        let http: NoDelayListener = match opts.http_listener {
            Some(l) => l.into(),
            None => NoDelayListener::bind(settings.server.http_addr)
                .await
                .with_context(|| format!("server.http_addr {}", settings.server.http_addr))?,
        };
        let grpc: NoDelayListener = match opts.grpc_listener {
            Some(l) => l.into(),
            None => NoDelayListener::bind(settings.server.grpc_addr)
                .await
                .with_context(|| format!("server.grpc_addr {}", settings.server.grpc_addr))?,
        };
        let http_addr = http.local_addr()?;
        let grpc_addr = grpc.local_addr()?;
        // The address gRPC really listens on (a port 0 bound), for services that call this
        // process's gRPC APIs (the gateway).
        settings.server.grpc_addr = grpc_addr;
        let settings = Arc::new(settings);
        let transport = transport(&settings, Some(&shutdown)).await?;
        {
            let t = transport.clone();
            readiness.add("bus", move || {
                let t = t.clone();
                async move { t.ping().await.map_err(|e| e.to_string()) }
            });
        }
        let http_stop = CancellationToken::new();
        // The services' HTTP routes (the gateway's API) join once they have started.
        let service_routes = ServiceRoutes::default();
        let http_task = tokio::spawn(health::serve_http(
            http,
            health::router(readiness.clone(), metrics.clone()).fallback({
                let routes = service_routes.clone();
                move |req: axum::extract::Request| routes.clone().serve(req)
            }),
            http_stop.clone(),
        ));

        let booted = Arc::new(AtomicBool::new(false));
        {
            let b = booted.clone();
            readiness.add("services", move || {
                let ok = b.load(Ordering::SeqCst);
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err("starting: waiting for the database".into())
                    }
                }
            });
        }
        let boot = Boot {
            settings: settings.clone(),
            targets: opts.targets,
            transport: transport.clone(),
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            faults: opts.faults,
            clock: opts.clock,
            auth,
            shutdown: shutdown.clone(),
            booted,
            service_routes,
        };
        let grace = Duration::from_secs(settings.server.shutdown_grace_secs);
        let readiness_for_drain = readiness.clone();
        tokio::spawn(boot.auth.clone().run_refresher(shutdown.clone()));
        let finished = tokio::spawn(async move {
            let result = boot.run(grpc).await;
            readiness_for_drain.drain();
            http_stop.cancel();
            let _ = tokio::time::timeout(grace, http_task).await;
            result
        });
        tracing::info!(%http_addr, %grpc_addr, mode = ?settings.mode, "earlyhelp started");
        Ok(App {
            http_addr,
            grpc_addr,
            settings,
            readiness,
            metrics,
            transport,
            demo_issuer,
            shutdown,
            finished,
        })
    }

    /// Begins a graceful shutdown.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the application has stopped.
    pub async fn stopped(self) -> anyhow::Result<()> {
        self.finished.await.context("application task")?
    }

    /// Waits (up to `within`) until `/readyz` would say ready.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let failed = self.readiness.failures().await;
            if failed.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("not ready: {failed:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The HTTP routes of the services that have any (the gateway), set once they have started;
/// until then their paths answer 503.
#[derive(Clone, Default)]
struct ServiceRoutes(Arc<std::sync::OnceLock<axum::Router>>);

impl ServiceRoutes {
    async fn serve(self, req: axum::extract::Request) -> axum::response::Response {
        use axum::response::IntoResponse;
        use tower::ServiceExt;
        match self.0.get() {
            Some(router) => match router.clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
            None => (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "1")],
                "starting",
            )
                .into_response(),
        }
    }
}

struct Boot {
    settings: Arc<Settings>,
    targets: Vec<Target>,
    transport: Arc<dyn Transport>,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    faults: Arc<Faults>,
    clock: Arc<dyn Clock>,
    auth: Authenticator,
    shutdown: CancellationToken,
    booted: Arc<AtomicBool>,
    service_routes: ServiceRoutes,
}

impl Boot {
    /// Connects and migrates every target's database (retrying until they answer), starts the
    /// services and serves gRPC until shutdown; then drains in order.
    async fn run(self, grpc: NoDelayListener) -> anyhow::Result<()> {
        let tasks = TaskTracker::new();
        let relay_tasks = TaskTracker::new();
        let relay_shutdown = CancellationToken::new();
        let mut contexts = Vec::new();
        for &target in &self.targets {
            let Some(eh_store::Lanes {
                ordinary: db,
                urgent: urgent_db,
                ..
            }) = self.connect(target).await?
            else {
                return Ok(()); // shut down while waiting
            };
            {
                let db = db.clone();
                let migrations = target.migrations();
                self.readiness.add(format!("{target}.database"), move || {
                    let db = db.clone();
                    let migrations = migrations.clone();
                    async move {
                        eh_store::ping(&db).await.map_err(|e| e.to_string())?;
                        let pending = eh_store::pending(&db, &migrations)
                            .await
                            .map_err(|e| e.to_string())?;
                        if pending.is_empty() {
                            Ok(())
                        } else {
                            Err(format!("migrations pending: {pending:?}"))
                        }
                    }
                });
            }
            contexts.push((
                target,
                ServiceContext {
                    service: target.name(),
                    settings: self.settings.clone(),
                    readers: eh_store::TenantReaders::new(db.clone()),
                    urgent_readers: eh_store::TenantReaders::new(urgent_db.clone()),
                    db,
                    urgent_db,
                    transport: self.transport.clone(),
                    outbox: Outbox::new(),
                    metrics: self.metrics.clone(),
                    faults: self.faults.clone(),
                    clock: self.clock.clone(),
                    shutdown: self.shutdown.clone(),
                    tasks: tasks.clone(),
                    relay_shutdown: relay_shutdown.clone(),
                    relay_tasks: relay_tasks.clone(),
                },
            ));
        }
        // The audit trails' heads, signed and kept outside the database (src/audit.rs).
        {
            let trails: Vec<_> = contexts
                .iter()
                .map(|(t, ctx)| (*t, ctx.db.clone()))
                .collect();
            let settings = self.settings.clone();
            let stop = self.shutdown.clone();
            tasks.spawn(async move {
                match crate::audit::Checkpointer::new(&settings, trails).await {
                    Ok(c) => c.run(crate::audit::CHECKPOINT_INTERVAL, stop).await,
                    Err(e) => tracing::warn!(error = %e, "audit checkpoints not kept"),
                }
            });
        }
        // Streams: created in the background, retried while NATS is down.
        let streams: Vec<_> = {
            let mut all = Vec::new();
            for t in &self.targets {
                for s in t.streams(&self.settings.bus.namespace) {
                    if !all.contains(&s) {
                        all.push(s);
                    }
                }
            }
            // The inbound stream kept per council (NATS de-duplicates within a stream).
            eh_bus::subjects::per_council(
                &self.settings.bus.namespace,
                all,
                self.settings.tenants.keys().map(String::as_str),
            )
        };
        {
            let transport = self.transport.clone();
            let stop = self.shutdown.clone();
            // Ready once they exist: an upstream system's first publish finds its stream.
            let created = Arc::new(AtomicBool::new(false));
            let done = created.clone();
            self.readiness.add("bus.streams", move || {
                let ok = created.load(Ordering::SeqCst);
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err("creating the streams".into())
                    }
                }
            });
            tasks.spawn(async move {
                let mut backoff =
                    eh_platform::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
                while !stop.is_cancelled() {
                    match transport.ensure_streams(&streams).await {
                        Ok(()) => {
                            done.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot create streams yet; retrying"),
                    }
                    tokio::select! { _ = tokio::time::sleep(backoff.next_delay()) => {}, _ = stop.cancelled() => return }
                }
            });
        }

        let (reporter, health_service) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(eh_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("gRPC reflection")?;
        // Health and reflection, then each service's gRPC services: one router for all.
        let mut routes = tonic::service::RoutesBuilder::default();
        routes.add_service(health_service).add_service(reflection);
        let mut http_routes = axum::Router::new();
        for (target, ctx) in contexts {
            if let Some(r) = target
                .service()
                .http_routes(&ctx, &self.auth)
                .map_err(anyhow::Error::msg)?
            {
                http_routes = http_routes.merge(r);
            }
            target
                .service()
                .start(ctx, &self.auth, &mut routes)
                .map_err(anyhow::Error::msg)?;
            for name in target.service().grpc_services() {
                reporter
                    .set_service_status(*name, tonic_health::ServingStatus::Serving)
                    .await;
            }
        }
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let _ = self.service_routes.0.set(http_routes);
        self.booted.store(true, Ordering::SeqCst);

        let stop = self.shutdown.clone();
        let readiness = self.readiness.clone();
        let serve = tonic::transport::Server::builder()
            // A span per call, continuing the caller's W3C trace context from the metadata, so the
            // events a call causes carry the caller's trace.
            .trace_fn(|req| {
                let span = tracing::info_span!(
                    "grpc",
                    otel.name = %req.uri().path(),
                    otel.kind = "server",
                    rpc.system = "grpc",
                );
                eh_platform::telemetry::set_parent_from(&span, |k| {
                    req.headers()
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .map(String::from)
                });
                span
            })
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(grpc.incoming(), async move {
                stop.cancelled().await;
                // Report not ready first, so load balancers stop routing here.
                readiness.drain();
                reporter
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            });
        let served = serve.await;

        // Shutdown: gRPC has finished its in-flight calls; now consumers and senders finish theirs,
        // then the relays publish what was committed, all within the grace period.
        let grace = Duration::from_secs(self.settings.server.shutdown_grace_secs);
        let deadline = tokio::time::Instant::now() + grace;
        tasks.close();
        if tokio::time::timeout_at(deadline, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period over with handlers still running");
        }
        relay_shutdown.cancel();
        relay_tasks.close();
        if tokio::time::timeout_at(deadline, relay_tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "grace period over before the outbox was flushed; the relay resumes at next start"
            );
        }
        tracing::info!("earlyhelp stopped");
        served.context("gRPC server")
    }

    async fn connect(&self, target: Target) -> anyhow::Result<Option<eh_store::Lanes>> {
        let loc = eh_store::Location::for_service(&self.settings, target.name())?;
        let mut backoff =
            eh_platform::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let attempt = async {
                if self.settings.database.migrate_on_start || self.settings.mode == Mode::Embedded {
                    // As the owner, on a connection of its own; the services then connect as
                    // their role.
                    migrate_as_owner(&self.settings, target).await?;
                }
                eh_store::connect_lanes(&loc).await
            };
            match attempt.await {
                Ok(db) => return Ok(Some(db)),
                Err(e) => {
                    tracing::warn!(service = %target, error = %e, "database not available yet; retrying")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = self.shutdown.cancelled() => return Ok(None),
            }
        }
    }
}
