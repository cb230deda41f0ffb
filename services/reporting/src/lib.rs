//! Reporting: a council's figures for its partnership board — timeliness (requests screened in
//! time, EHAs finalised in time, TAFs on time: not yet known), demand (requests by source system,
//! route, need and locality), outcomes (Supporting Families outcomes met, distance travelled,
//! outcomes sustained) and the waiting list — as a gRPC report and a CSV export.
//!
//! The figures come from the services' own events, kept in reporting's read model (one narrow fact
//! per event: ids, instants, codes), never from another service's tables. Layers, one way:
//! `domain` (pure: what each figure counts, the CSV) → `store` (the read model) → `handlers` (the
//! events) and `grpc` (the report, team managers of the council only, every call audited).
pub mod domain;
pub mod grpc;
pub mod handlers;
pub mod rights;
pub mod settings;
pub mod store;

use eh_auth::{Auditor, Authenticator};
use eh_bus::subjects;
use eh_service::{RoutesBuilder, ServiceContext};
use eh_store::Migration;
use std::sync::Arc;

pub const SERVICE: &str = "reporting";

type Server =
    eh_proto::reporting::v1::reporting_service_server::ReportingServiceServer<grpc::ReportingApi>;

/// Reporting as the binary runs it (one line of its table).
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
        settings::councils(settings).map(|_| Vec::new())
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

/// Every migration of reporting's database, in order (the bus's tables for its inbox).
pub fn migrations() -> Vec<Migration> {
    [
        eh_bus::outbox::MIGRATIONS,
        eh_auth::audit::MIGRATIONS,
        store::MIGRATIONS,
    ]
    .concat()
}

/// The streams reporting reads from (it publishes nothing).
pub fn streams(ns: &str) -> Vec<eh_bus::StreamSpec> {
    vec![
        subjects::service_stream(ns, "intake"),
        subjects::service_stream(ns, "casework"),
        subjects::service_stream(ns, "allocation"),
        subjects::service_stream(ns, "assessment"),
        subjects::service_stream(ns, SERVICE),
        subjects::service_stream(ns, "records"),
        subjects::dead_letter_stream(ns),
    ]
}

/// Starts reporting's consumers; returns its gRPC service.
///
/// # Errors
/// A council's calendar, service levels or localities are wrong (the message names the key).
pub fn start(
    ctx: ServiceContext,
    auth: &Authenticator,
) -> Result<tonic::service::interceptor::InterceptedService<Server, eh_auth::AuthInterceptor>, String>
{
    let councils = Arc::new(settings::councils(&ctx.settings)?);
    for (feed, sub) in handlers::Feed::ALL {
        ctx.spawn_subscription(
            sub,
            4,
            Arc::new(handlers::FactHandler {
                ctx: ctx.clone(),
                name: sub.consumer,
                feed: *feed,
                councils: councils.clone(),
            }),
        );
    }
    ctx.spawn_relay();
    // The family's data rights: destruction ordered by records (rights.rs).
    eh_service::rights::spawn_destruction(
        &ctx,
        &eh_proto::catalogue::REPORTING_DESTRUCTION_ORDERED,
        rights::HOLDINGS,
        &eh_proto::catalogue::REPORTING_RECORDS_DESTROYED,
    );
    let api = grpc::ReportingApi {
        ctx: ctx.clone(),
        auditor: Auditor::new(ctx.db.clone()),
        councils,
    };
    Ok(Server::with_interceptor(api, auth.interceptor()))
}
