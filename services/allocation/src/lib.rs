//! Allocation: the council's directory of its own Early Help Teams and the providers it
//! commissions — imported from Open Referral UK (HSDS 3.0 UK profile), with what ORUK does not
//! carry added per council (kind, coverage, needs, programmes, capacity, contract volume) — and the
//! matcher that ranks them for a family, every decision explained with the rule version.
//!
//! Layers, one way: `domain` (pure: ORUK records, the matcher) → `store` (SQL) → `import` and
//! `handlers` (load, decide, apply) → `grpc`. Events: `directory_imported`.
//!
//! A case `ready_for_allocation` (casework's event) is matched and offered to the service ranked
//! first, or put on the council's waiting list ([`offers`]); the service accepts or declines over
//! gRPC; a decline, a case closed or stepped up, frees a place and the waiting cases are tried
//! again in order. An offer not answered in the council's provider response time lapses and the
//! case goes to the next service; a case waiting too long is reported (`offers::run_clocks`).
//! Once a service accepts, its staff ask a practitioner to lead, who accepts or declines with a
//! reason (`leads`); a provider's view of an offer shows only what the family's consent lets its
//! agency see (`sharing`). Events: `directory_imported`, `offer_made`, `offer_accepted`,
//! `offer_declined`, `offer_expired`, `case_waiting`, `waiting_limit_breached`,
//! `lead_practitioner_named`, `lead_practitioner_declined`.
pub mod domain;
pub mod grpc;
pub mod handlers;
pub mod import;
pub mod leads;
pub mod offers;
pub mod rights;
pub mod settings;
pub mod sharing;
pub mod store;

use eh_auth::{Auditor, Authenticator};
use eh_bus::subjects;
use eh_service::{RoutesBuilder, ServiceContext};
use eh_store::Migration;

pub const SERVICE: &str = "allocation";

/// Allocation as the binary runs it (one line of its table).
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
        type Server = eh_proto::allocation::v1::allocation_service_server::AllocationServiceServer<
            grpc::AllocationApi,
        >;
        const NAMES: &[&str] = &[<Server as NamedService>::NAME];
        NAMES
    }
    fn settings_keys(&self) -> eh_service::SettingsKeys {
        settings::KEYS
    }
    fn check_settings(&self, settings: &eh_platform::Settings) -> Result<Vec<String>, String> {
        settings::GlobalSettings::from_settings(settings, settings::SECTION)?;
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

/// Every migration of allocation's database, in order.
pub fn migrations() -> Vec<Migration> {
    [
        eh_bus::outbox::MIGRATIONS,
        eh_auth::audit::MIGRATIONS,
        store::MIGRATIONS,
    ]
    .concat()
}

/// The streams allocation publishes to and reads from.
pub fn streams(ns: &str) -> Vec<eh_bus::StreamSpec> {
    vec![
        subjects::service_stream(ns, "intake"),
        subjects::service_stream(ns, "casework"),
        subjects::service_stream(ns, SERVICE),
        subjects::service_stream(ns, "records"),
        subjects::dead_letter_stream(ns),
    ]
}

/// Starts allocation's relay, consumers and scheduled imports; returns its gRPC service.
///
/// # Errors
/// A council's allocation settings are wrong (the message names the key).
pub fn start(
    ctx: ServiceContext,
    auth: &Authenticator,
) -> Result<
    tonic::service::interceptor::InterceptedService<
        eh_proto::allocation::v1::allocation_service_server::AllocationServiceServer<
            grpc::AllocationApi,
        >,
        eh_auth::AuthInterceptor,
    >,
    String,
> {
    let allocation = handlers::Allocation::new(ctx.clone())?;
    ctx.spawn_relay();
    // The family's data rights: destruction ordered by records (rights.rs).
    eh_service::rights::spawn_destruction(
        &ctx,
        &eh_proto::catalogue::ALLOCATION_DESTRUCTION_ORDERED,
        rights::HOLDINGS,
        &eh_proto::catalogue::ALLOCATION_RECORDS_DESTROYED,
    );
    use eh_proto::catalogue as cat;
    for (sub, door, concurrency) in [
        (
            &cat::ALLOCATION_REFERRAL_RECEIVED,
            handlers::Door::ReferralReceived,
            8,
        ),
        (&cat::ALLOCATION_CASE_READY, handlers::Door::CaseReady, 4),
        (&cat::ALLOCATION_CASE_CLOSED, handlers::Door::CaseLeft, 4),
        (
            &cat::ALLOCATION_CASE_STEPPED_UP,
            handlers::Door::CaseLeft,
            4,
        ),
    ] {
        ctx.spawn_subscription(
            sub,
            concurrency,
            std::sync::Arc::new(handlers::Consumer {
                allocation: allocation.clone(),
                door,
                name: sub.consumer,
            }),
        );
    }
    allocation.spawn_schedules();
    allocation.spawn_clocks();
    let api = grpc::AllocationApi {
        allocation,
        auditor: Auditor::new(ctx.db.clone()),
    };
    Ok(
        eh_proto::allocation::v1::allocation_service_server::AllocationServiceServer::with_interceptor(
            api,
            auth.interceptor(),
        ),
    )
}
