//! Gateway: the public HTTP/JSON API for upstream systems (school, health and police systems,
//! councils' integration hubs). A referral is submitted over HTTPS with the council's API key and
//! an `Idempotency-Key`, and its status read back; errors are problem documents listing every
//! field violation. The gateway holds no other service's tables: it reaches intake through
//! intake's gRPC API, with the caller's own credential. Its own table keeps idempotency keys.
//! It takes part in the family's data rights like every service ([`rights`]): its gRPC listener
//! serves subject access (`ExportPersonData`) to records, and a destruction deletes its rows.
//! Its routes are served on the platform's HTTP listener (`server.http_addr`, the port the chart's
//! Ingress reaches), beside `/healthz`, `/readyz` and `/metrics`.
pub mod api;
pub mod console;
pub mod contract;
pub mod grpc;
pub mod limit;
pub mod oidc;
pub mod openapi;
pub mod problem;
pub mod rights;
pub mod session;
pub mod settings;
pub mod store;
pub mod webhook;

use eh_auth::Authenticator;
use eh_proto::gateway::v1::gateway_service_server::GatewayServiceServer;
use eh_service::{RoutesBuilder, ServiceContext};
use eh_store::Migration;
use std::sync::Arc;
use std::time::Duration;

pub const SERVICE: &str = "gateway";

/// The gateway as the binary runs it (one line of its table).
pub struct Service;

impl eh_service::Service for Service {
    fn name(&self) -> &'static str {
        SERVICE
    }
    fn migrations(&self) -> Vec<Migration> {
        migrations()
    }
    fn streams(&self, namespace: &str) -> Vec<eh_bus::StreamSpec> {
        // casework's events, for the webhooks' status updates; records' destruction orders,
        // and its own stream for its confirmations.
        vec![
            eh_bus::subjects::service_stream(namespace, "casework"),
            eh_bus::subjects::service_stream(namespace, "records"),
            eh_bus::subjects::service_stream(namespace, SERVICE),
            eh_bus::subjects::dead_letter_stream(namespace),
        ]
    }
    fn grpc_services(&self) -> &'static [&'static str] {
        use tonic::server::NamedService;
        type Server = GatewayServiceServer<grpc::GatewayApi>;
        const NAMES: &[&str] = &[<Server as NamedService>::NAME];
        NAMES
    }
    fn settings_keys(&self) -> eh_service::SettingsKeys {
        settings::KEYS
    }
    fn check_settings(&self, settings: &eh_platform::Settings) -> Result<Vec<String>, String> {
        settings::GatewaySettings::from_settings(settings)?;
        Ok(Vec::new())
    }
    fn settings_json(
        &self,
        settings: &eh_platform::Settings,
    ) -> Vec<(&'static str, serde_json::Value)> {
        settings::GatewaySettings::from_settings(settings)
            .ok()
            .and_then(|s| serde_json::to_value(s).ok())
            .map(|v| vec![("gateway", v)])
            .unwrap_or_default()
    }
    fn start(
        &self,
        ctx: ServiceContext,
        auth: &Authenticator,
        grpc: &mut RoutesBuilder,
    ) -> Result<(), String> {
        let s = settings::GatewaySettings::from_settings(&ctx.settings)?;
        ctx.spawn_relay();
        // The family's data rights: destruction ordered by records, subject access over gRPC.
        eh_service::rights::spawn_destruction(
            &ctx,
            &eh_proto::catalogue::GATEWAY_DESTRUCTION_ORDERED,
            rights::HOLDINGS,
            &eh_proto::catalogue::GATEWAY_RECORDS_DESTROYED,
        );
        spawn_purge(&ctx, s.idempotency_ttl(), timeouts(&s));
        spawn_webhooks(&ctx, &s)?;
        let api = grpc::GatewayApi {
            db: ctx.db.clone(),
            auditor: eh_auth::Auditor::new(ctx.db.clone()),
            settings: ctx.settings.clone(),
        };
        grpc.add_service(GatewayServiceServer::with_interceptor(
            api,
            auth.interceptor(),
        ));
        Ok(())
    }
    fn http_routes(
        &self,
        ctx: &ServiceContext,
        auth: &Authenticator,
    ) -> Result<Option<axum::Router>, String> {
        let s = settings::GatewaySettings::from_settings(&ctx.settings)?;
        let endpoint = s.intake_endpoint(&ctx.settings);
        let channel = eh_platform::net::endpoint(endpoint.clone())
            .map_err(|e| format!("gateway.intake_url {endpoint}: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_millis(s.call_timeout_ms))
            .connect_lazy();
        let api = api::Api {
            db: ctx.db.clone(),
            intake: eh_proto::intake::v1::intake_service_client::IntakeServiceClient::new(channel),
            casework: eh_proto::casework::v1::casework_service_client::CaseworkServiceClient::new(
                self::channel(&s, &ctx.settings, &s.casework_url, "casework_url")?,
            ),
            consent: eh_proto::consent::v1::consent_service_client::ConsentServiceClient::new(
                self::channel(&s, &ctx.settings, &s.consent_url, "consent_url")?,
            ),
            allocation:
                eh_proto::allocation::v1::allocation_service_client::AllocationServiceClient::new(
                    self::channel(&s, &ctx.settings, &s.allocation_url, "allocation_url")?,
                ),
            auth: auth.clone(),
            limiter: limit::RateLimiter::new(s.rate_limit.per_minute, s.rate_limit.burst),
            settings: s.clone(),
            clock: ctx.clock.clone(),
        };
        let mut router = api::router(Arc::new(api));
        if s.console.enabled {
            router = console_router(ctx, auth, &s)?.merge(router);
        }
        Ok(Some(router))
    }
}

/// Every migration of the gateway's database, in order (the outbox carries its confirmations of
/// destructions; the audit trail, every subject access).
pub fn migrations() -> Vec<Migration> {
    [
        eh_bus::outbox::MIGRATIONS,
        eh_auth::audit::MIGRATIONS,
        store::MIGRATIONS,
        session::MIGRATIONS,
        console::requests::MIGRATIONS,
        webhook::store::MIGRATIONS,
    ]
    .concat()
}

/// The console's session timeouts.
pub fn timeouts(s: &settings::GatewaySettings) -> session::Timeouts {
    session::Timeouts {
        idle: chrono::Duration::minutes(
            i64::try_from(s.console.idle_timeout_minutes).unwrap_or(30),
        ),
        absolute: chrono::Duration::hours(
            i64::try_from(s.console.absolute_timeout_hours).unwrap_or(10),
        ),
    }
}

fn channel(
    s: &settings::GatewaySettings,
    settings: &eh_platform::Settings,
    url: &str,
    key: &str,
) -> Result<tonic::transport::Channel, String> {
    let endpoint = s.endpoint(url, settings);
    Ok(eh_platform::net::endpoint(endpoint.clone())
        .map_err(|e| format!("gateway.{key} {endpoint}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_millis(s.call_timeout_ms))
        .connect_lazy())
}

/// The web console's routes ([`console`]).
fn console_router(
    ctx: &ServiceContext,
    auth: &Authenticator,
    s: &settings::GatewaySettings,
) -> Result<axum::Router, String> {
    use eh_proto::{allocation, assessment, casework, consent, intake, notifications};
    let settings = &ctx.settings;
    let clients = console::Clients {
        casework: casework::v1::casework_service_client::CaseworkServiceClient::new(channel(
            s,
            settings,
            &s.casework_url,
            "casework_url",
        )?),
        intake: intake::v1::intake_service_client::IntakeServiceClient::new(channel(
            s,
            settings,
            &s.intake_url,
            "intake_url",
        )?),
        consent: consent::v1::consent_service_client::ConsentServiceClient::new(channel(
            s,
            settings,
            &s.consent_url,
            "consent_url",
        )?),
        notifications:
            notifications::v1::notifications_service_client::NotificationsServiceClient::new(
                channel(s, settings, &s.notifications_url, "notifications_url")?,
            ),
        allocation: allocation::v1::allocation_service_client::AllocationServiceClient::new(
            channel(s, settings, &s.allocation_url, "allocation_url")?,
        ),
        assessment: assessment::v1::assessment_service_client::AssessmentServiceClient::new(
            channel(s, settings, &s.assessment_url, "assessment_url")?,
        ),
    };
    let oidc = oidc::Oidc::from_settings(settings)?;
    let demo = if settings.demo_enabled() {
        Some(eh_auth::demo::DemoIssuer::load_or_create(
            &settings.data_dir,
        )?)
    } else {
        None
    };
    let assets = std::path::PathBuf::from(&s.console.assets_dir);
    let assets = if assets.join("govuk-frontend.min.css").is_file() {
        Some(assets)
    } else {
        tracing::warn!(
            assets_dir = %s.console.assets_dir,
            "GOV.UK Frontend is not installed: the console's pages work unstyled; install it with `tools/console/install.sh` (or set gateway.console.assets_dir)"
        );
        None
    };
    let mut origins = vec!["'self'".to_string()];
    for r in oidc.registrations() {
        if let Some(o) = r.origin() {
            origins.push(o);
        }
    }
    let token_key = session::TokenKey::from_settings(settings, &s.console)?;
    let c = console::Console {
        db: ctx.db.clone(),
        token_key,
        clock: ctx.clock.clone(),
        auth: auth.clone(),
        oidc,
        demo,
        cookie: session::CookieSpec {
            tls: s.console_tls(),
        },
        timeouts: timeouts(s),
        assets,
        clients,
        councils: settings
            .tenants
            .iter()
            .map(|(id, t)| (id.clone(), t.name.clone()))
            .collect(),
        form_origins: origins.join(" "),
    };
    Ok(console::router(Arc::new(c)))
}

/// The webhooks' consumer of casework's state changes and their sender ([`webhook`]).
fn spawn_webhooks(ctx: &ServiceContext, s: &settings::GatewaySettings) -> Result<(), String> {
    let endpoints = Arc::new(s.webhooks.endpoints(&ctx.settings)?);
    let wake = Arc::new(tokio::sync::Notify::new());
    ctx.spawn_subscription(
        &eh_proto::catalogue::GATEWAY_CASE_STATE_CHANGED,
        // One at a time, in the stream's order: a system hears a case's statuses in order.
        1,
        Arc::new(webhook::handler::CaseStateChangedHandler {
            ctx: ctx.clone(),
            endpoints: endpoints.clone(),
            wake: wake.clone(),
        }),
    );
    let sender = webhook::sender::Sender {
        ctx: ctx.clone(),
        endpoints,
        settings: s.webhooks.clone(),
        wake,
    };
    ctx.tasks.spawn(sender.run(ctx.shutdown.clone()));
    Ok(())
}

/// Forgets idempotency keys past their time, and console sessions past theirs, hourly, until
/// shutdown.
fn spawn_purge(ctx: &ServiceContext, ttl: chrono::Duration, t: session::Timeouts) {
    let db = ctx.db.clone();
    let clock = ctx.clock.clone();
    let stop = ctx.shutdown.clone();
    ctx.tasks.spawn(async move {
        loop {
            // Every council's keys past their time: a named system-scope worker.
            let purged = async {
                let txn =
                    eh_store::begin_system(&db, eh_store::SystemWorker::IdempotencyPurge).await?;
                let n = store::purge(&txn, clock.now() - ttl).await?;
                eh_store::commit(txn).await?;
                Ok::<_, sea_orm::DbErr>(n)
            };
            match purged.await {
                Ok(n) if n > 0 => tracing::info!(keys = n, "idempotency keys expired"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot expire idempotency keys yet"),
            }
            let now = clock.now();
            match session::purge(&db, now, now - t.idle).await {
                Ok(n) if n > 0 => tracing::info!(sessions = n, "console sessions expired"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot expire console sessions yet"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}
