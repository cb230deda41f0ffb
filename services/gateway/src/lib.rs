//! Gateway: the public HTTP/JSON API for upstream systems (school, health and police systems,
//! councils' integration hubs). A referral is submitted over HTTPS with the council's API key and
//! an `Idempotency-Key`, and its status read back; errors are problem documents listing every
//! field violation. The gateway holds no other service's tables: it reaches intake through
//! intake's gRPC API, with the caller's own credential. Its own table keeps idempotency keys.
//! Its routes are served on the platform's HTTP listener (`server.http_addr`, the port the chart's
//! Ingress reaches), beside `/healthz`, `/readyz` and `/metrics`.
pub mod api;
pub mod contract;
pub mod limit;
pub mod openapi;
pub mod problem;
pub mod settings;
pub mod store;

use eh_auth::Authenticator;
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
    fn streams(&self, _namespace: &str) -> Vec<eh_bus::StreamSpec> {
        Vec::new()
    }
    fn grpc_services(&self) -> &'static [&'static str] {
        &[]
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
        _auth: &Authenticator,
        _grpc: &mut RoutesBuilder,
    ) -> Result<(), String> {
        let s = settings::GatewaySettings::from_settings(&ctx.settings)?;
        spawn_purge(&ctx, s.idempotency_ttl());
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
            auth: auth.clone(),
            limiter: limit::RateLimiter::new(s.rate_limit.per_minute, s.rate_limit.burst),
            settings: s,
            clock: ctx.clock.clone(),
        };
        Ok(Some(api::router(Arc::new(api))))
    }
}

/// Every migration of the gateway's database, in order (the outbox is there for the shared
/// commands that read every service's, e.g. `republish`; the gateway publishes nothing yet).
pub fn migrations() -> Vec<Migration> {
    [eh_bus::outbox::MIGRATIONS, store::MIGRATIONS].concat()
}

/// Forgets idempotency keys past their time, hourly, until shutdown.
fn spawn_purge(ctx: &ServiceContext, ttl: chrono::Duration) {
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
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}
