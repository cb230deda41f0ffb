//! Records: the family's data rights. Subject access (everything every service holds about a
//! person, gathered from each service's own `ExportPersonData`, third parties' information flagged
//! for redaction, audited and logged), retention by council policy evaluated on a timer against
//! what records learns from events, legal holds that stop destruction, destruction as an event
//! every service acts on, and destruction certificates that hold no personal data.
//!
//! Records never reads another service's tables: its family index (ids and dates only) is built
//! from intake's and casework's events, and what each service holds is that service's to export
//! and to destroy (`eh_service::rights`). Layers, one way: `domain` (pure: when records fall due,
//! the readable report) → `store` → `handlers` (the events), `retention` (the sweep) and `grpc`.
pub mod domain;
pub mod grpc;
pub mod handlers;
pub mod retention;
pub mod settings;
pub mod store;

use eh_auth::{Auditor, Authenticator};
use eh_bus::subjects;
use eh_service::{RoutesBuilder, ServiceContext};
use eh_store::Migration;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const SERVICE: &str = "records";

type Server = eh_proto::records::v1::records_service_server::RecordsServiceServer<grpc::RecordsApi>;

/// Records as the binary runs it (one line of its table).
pub struct Service;

impl eh_service::Service for Service {
    fn name(&self) -> &'static str {
        SERVICE
    }
    fn migrations(&self) -> Vec<Migration> {
        migrations()
    }
    fn streams(&self, namespace: &str) -> Vec<eh_bus::StreamSpec> {
        streams(namespace)
    }
    fn grpc_services(&self) -> &'static [&'static str] {
        use tonic::server::NamedService;
        const NAMES: &[&str] = &[<Server as NamedService>::NAME];
        NAMES
    }
    fn settings_keys(&self) -> eh_service::SettingsKeys {
        settings::KEYS
    }
    fn check_settings(&self, settings: &eh_platform::Settings) -> Result<Vec<String>, String> {
        settings::records(settings)?;
        settings::policies(settings).map(|_| Vec::new())
    }
    fn settings_json(
        &self,
        settings: &eh_platform::Settings,
    ) -> Vec<(&'static str, serde_json::Value)> {
        settings::records(settings)
            .ok()
            .and_then(|s| serde_json::to_value(s).ok())
            .map(|v| vec![("records", v)])
            .unwrap_or_default()
    }
    fn start(
        &self,
        ctx: ServiceContext,
        auth: &Authenticator,
        grpc: &mut RoutesBuilder,
    ) -> Result<(), String> {
        grpc.add_service(start(ctx, auth)?);
        Ok(())
    }
}

/// Every migration of records' database, in order.
pub fn migrations() -> Vec<Migration> {
    [
        eh_bus::outbox::MIGRATIONS,
        eh_auth::audit::MIGRATIONS,
        store::MIGRATIONS,
    ]
    .concat()
}

/// The streams records publishes to and reads from.
pub fn streams(ns: &str) -> Vec<eh_bus::StreamSpec> {
    let mut out: Vec<eh_bus::StreamSpec> = settings::SERVICES
        .iter()
        .map(|s| subjects::service_stream(ns, s))
        .collect();
    out.push(subjects::service_stream(ns, SERVICE));
    out.push(subjects::dead_letter_stream(ns));
    out
}

/// Starts records' relay, consumers and retention sweep; returns its gRPC service.
///
/// # Errors
/// Its settings or a council's retention policy are wrong (the message names the key).
pub fn start(
    ctx: ServiceContext,
    auth: &Authenticator,
) -> Result<tonic::service::interceptor::InterceptedService<Server, eh_auth::AuthInterceptor>, String>
{
    let own = settings::records(&ctx.settings)?;
    let policies = Arc::new(settings::policies(&ctx.settings)?);
    ctx.spawn_relay();
    // The gateway's confirmation too (kept here while handlers.rs's list is being changed
    // elsewhere; it belongs with the others in `handlers::feeds`).
    let gateway = (
        handlers::Feed::Confirmation,
        &eh_proto::catalogue::RECORDS_GATEWAY_RECORDS_DESTROYED,
    );
    for (feed, sub) in handlers::feeds().into_iter().chain([gateway]) {
        ctx.spawn_subscription(
            sub,
            1,
            Arc::new(handlers::IndexHandler {
                ctx: ctx.clone(),
                name: sub.consumer,
                feed,
            }),
        );
    }
    ctx.tasks.spawn(retention::run(
        ctx.clone(),
        policies,
        Duration::from_millis(own.sweep_every_ms),
    ));
    let timeout = Duration::from_millis(own.timeout_ms);
    let mut channels = BTreeMap::new();
    for s in settings::SERVICES {
        let url = own
            .service_urls
            .get(*s)
            .cloned()
            .unwrap_or_else(|| ctx.settings.server.own_grpc_url());
        let channel = eh_platform::net::endpoint(url.clone())
            .map_err(|e| format!("records.service_urls.{s} {url}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        channels.insert(*s, channel);
    }
    let api = grpc::RecordsApi {
        ctx: ctx.clone(),
        auditor: Auditor::new(ctx.db.clone()),
        channels,
    };
    Ok(Server::with_interceptor(api, auth.interceptor()))
}
