//! Intake: takes requests for support (referrals) from upstream systems on
//! `<ns>.<tenant>.inbound.referral` (and significant-harm ones on the urgent lane's
//! `<ns>.<tenant>.inbound.referral.urgent`) and from practitioners over gRPC, validates them
//! against the published contract, stores each once, and announces `referral_received` (or
//! `referral_rejected` with every reason) — and for a significant-harm referral
//! `referral_received.urgent` too.
//!
//! ## Layers
//! The crate is four layers, each using only itself and the layers below it — never one above
//! (`tests/it/layering.rs` reads every source file and fails naming any import that breaks
//! this, any cycle between modules, and any SQL outside the store):
//!
//! 1. **`domain`** — the rules, pure: the contract, matching and merging, screening. No I/O,
//!    no database, no bus. Unit-tested beside the code.
//! 2. **`store`** — SQL and nothing else: the tables, their rows and the people lock. What to
//!    write comes from the caller.
//! 3. **`handlers`** — each one loads (store), decides (domain) and applies (store, outbox):
//!    taking a referral through either door in batches, holding each tenant's people for
//!    matching, resolving a match candidate, screening on command.
//! 4. **`grpc`** — the API: checks the caller and maps requests and errors onto handlers (and
//!    store reads).
//!
//! `settings` (intake's own configuration, read and checked at start) sits beside `domain`:
//! it uses only `domain`; handlers and grpc may use it. This file wires the layers together:
//! it may use every layer, and no layer uses it.
pub mod domain;
pub mod grpc;
pub mod handlers;
pub mod settings;
pub mod store;

/// Screening as other crates know it: the command handler, and the decisions it stored.
pub mod screening {
    pub use crate::handlers::screening::*;
    pub use crate::store::screening::{StoredDecision, decisions};
}

pub use handlers::CONSUMER_INBOUND;

use eh_auth::{Auditor, Authenticator};
use eh_bus::subjects;
use eh_service::{RoutesBuilder, ServiceContext};
use eh_store::Migration;
use std::sync::Arc;

pub const SERVICE: &str = "intake";
/// Inbound referrals handled at once by one replica; each tenant's waiting ones are stored
/// together (`handlers::batch`).
pub const INBOUND_CONCURRENCY: usize = 128;

/// Significant-harm referrals handled at once on the urgent lane.
pub const URGENT_CONCURRENCY: usize = 16;

/// Intake as the binary runs it (one line of its table).
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
        type Server =
            eh_proto::intake::v1::intake_service_server::IntakeServiceServer<grpc::IntakeApi>;
        const NAMES: &[&str] = &[<Server as NamedService>::NAME];
        NAMES
    }
    fn settings_keys(&self) -> eh_service::SettingsKeys {
        settings::KEYS
    }
    fn settings_json(
        &self,
        settings: &eh_platform::Settings,
    ) -> Vec<(&'static str, serde_json::Value)> {
        settings::IntakeSettings::from_settings(settings)
            .ok()
            .and_then(|s| serde_json::to_value(s).ok())
            .map(|v| vec![("intake", v)])
            .unwrap_or_default()
    }
    fn check_settings(&self, settings: &eh_platform::Settings) -> Result<Vec<String>, String> {
        settings::IntakeSettings::from_settings(settings)?;
        settings::rules_from_settings(settings)?;
        Ok(Vec::new())
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

/// Every migration of intake's database, in order.
pub fn migrations() -> Vec<Migration> {
    [
        eh_bus::outbox::MIGRATIONS,
        eh_auth::audit::MIGRATIONS,
        store::MIGRATIONS,
        store::screening::MIGRATIONS,
        store::rights::MIGRATIONS,
        store::RLS_MIGRATIONS,
    ]
    .concat()
}

/// The streams intake publishes to and reads from.
pub fn streams(ns: &str) -> Vec<eh_bus::StreamSpec> {
    vec![
        subjects::inbound_stream(ns),
        subjects::service_stream(ns, SERVICE),
        subjects::service_stream(ns, "records"),
        subjects::dead_letter_stream(ns),
    ]
}

/// Starts intake's relay and consumers; returns its gRPC service.
///
/// # Errors
/// When a tenant's screening rules are wrong (the message names the setting).
pub fn start(
    ctx: ServiceContext,
    auth: &Authenticator,
) -> Result<
    tonic::service::interceptor::InterceptedService<
        eh_proto::intake::v1::intake_service_server::IntakeServiceServer<grpc::IntakeApi>,
        eh_auth::AuthInterceptor,
    >,
    String,
> {
    let rules = settings::rules_from_settings(&ctx.settings)?;
    let intake = handlers::Intake::new(ctx.clone());
    ctx.spawn_relay();
    // The family's data rights: destruction ordered by records (rights.rs).
    eh_service::rights::spawn_destruction_with(
        &ctx,
        &eh_proto::catalogue::INTAKE_DESTRUCTION_ORDERED,
        handlers::rights::HOLDINGS,
        &eh_proto::catalogue::INTAKE_RECORDS_DESTROYED,
        Some(Arc::new(handlers::rights::PeopleLock)),
    );
    // Load each council's people for matching now, in the background, so the first referral
    // after a start does not wait for it (seconds at a million people held).
    {
        let (intake, shutdown) = (intake.clone(), ctx.shutdown.clone());
        let tenants: Vec<String> = ctx.settings.tenants.keys().cloned().collect();
        tokio::spawn(async move {
            for tenant in tenants {
                let reader = match intake.ctx.readers.of(&tenant).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(tenant, error = %e, "people not preloaded; the first referral will load them");
                        continue;
                    }
                };
                let load = intake.people.ensure_loaded(&reader, &tenant);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = load => if let Err(e) = r {
                        tracing::warn!(tenant, error = %e, "people not preloaded; the first referral will load them");
                    },
                }
            }
        });
    }
    ctx.spawn_subscription(
        &eh_proto::catalogue::INTAKE_INBOUND_REFERRAL,
        // Messages in hand at once: what one tenant's batch can hold (handlers::batch).
        INBOUND_CONCURRENCY,
        Arc::new(handlers::InboundReferral {
            intake: intake.clone(),
        }),
    );
    // The urgent lane: significant-harm referrals on a subject and consumer of their own, so no
    // backlog of ordinary referrals stands in front of them; stored in batches of their own.
    ctx.urgent().spawn_subscription(
        &eh_proto::catalogue::INTAKE_INBOUND_REFERRAL_URGENT,
        URGENT_CONCURRENCY,
        Arc::new(handlers::InboundReferral {
            intake: intake.clone(),
        }),
    );
    ctx.spawn_subscription(
        &eh_proto::catalogue::INTAKE_REFER_AGAIN,
        4,
        Arc::new(handlers::ReferAgainHandler {
            intake: intake.clone(),
        }),
    );
    ctx.spawn_subscription(
        &eh_proto::catalogue::INTAKE_SCREEN_REFERRAL,
        handlers::screening::MAX_BATCH,
        Arc::new(handlers::screening::ScreenReferralHandler::new(
            ctx.clone(),
            rules,
        )),
    );
    let api = grpc::IntakeApi {
        intake,
        auditor: Auditor::new(ctx.db.clone()),
    };
    Ok(
        eh_proto::intake::v1::intake_service_server::IntakeServiceServer::with_interceptor(
            api,
            auth.interceptor(),
        ),
    )
}
