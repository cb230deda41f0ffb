//! Consent: the family's append-only consent ledger (who gave it, how, evidence, scope of purposes
//! and restrictions, expiry, withdrawal), the sharing decision every other service asks for
//! ("may agency A see category C of family F for purpose P?", each one kept), and safeguarding
//! overrides (sharing without consent on a recorded legal basis with a manager's authority).
//! Consent in a referral is recorded from `<ns>.<tenant>.intake.referral_received`; changes and
//! withdrawal come through gRPC. Events: `consent_recorded`, `consent_withdrawn`,
//! `safeguarding_override_granted`.
pub mod convert;
pub mod domain;
pub mod grpc;
pub mod handlers;
pub mod rights;
pub mod store;

use eh_auth::{Auditor, Authenticator};
use eh_bus::subjects;
use eh_service::{RoutesBuilder, ServiceContext};
use eh_store::Migration;
use std::sync::Arc;

pub const SERVICE: &str = "consent";
pub const CONSUMER_REFERRAL_RECEIVED: &str =
    eh_proto::catalogue::CONSENT_REFERRAL_RECEIVED.consumer;

/// Consent as the binary runs it (one line of its table).
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
            eh_proto::consent::v1::consent_service_server::ConsentServiceServer<grpc::ConsentApi>;
        const NAMES: &[&str] = &[<Server as NamedService>::NAME];
        NAMES
    }
    fn start(
        &self,
        ctx: ServiceContext,
        auth: &Authenticator,
        grpc: &mut RoutesBuilder,
    ) -> Result<(), String> {
        grpc.add_service(start(ctx, auth));
        Ok(())
    }
}

/// Every migration of consent's database, in order.
pub fn migrations() -> Vec<Migration> {
    [
        eh_bus::outbox::MIGRATIONS,
        eh_auth::audit::MIGRATIONS,
        store::MIGRATIONS,
    ]
    .concat()
}

/// The streams consent publishes to and reads from.
pub fn streams(ns: &str) -> Vec<eh_bus::StreamSpec> {
    vec![
        subjects::service_stream(ns, "intake"),
        subjects::service_stream(ns, SERVICE),
        subjects::service_stream(ns, "records"),
        subjects::dead_letter_stream(ns),
    ]
}

/// Starts consent's relay and consumer; returns its gRPC service.
pub fn start(
    ctx: ServiceContext,
    auth: &Authenticator,
) -> tonic::service::interceptor::InterceptedService<
    eh_proto::consent::v1::consent_service_server::ConsentServiceServer<grpc::ConsentApi>,
    eh_auth::AuthInterceptor,
> {
    let consent = handlers::Consent { ctx: ctx.clone() };
    ctx.spawn_relay();
    // The family's data rights: destruction ordered by records (rights.rs).
    eh_service::rights::spawn_destruction(
        &ctx,
        &eh_proto::catalogue::CONSENT_DESTRUCTION_ORDERED,
        rights::HOLDINGS,
        &eh_proto::catalogue::CONSENT_RECORDS_DESTROYED,
    );
    ctx.spawn_subscription(
        &eh_proto::catalogue::CONSENT_REFERRAL_RECEIVED,
        handlers::MAX_BATCH,
        Arc::new(handlers::ReferralReceivedHandler::new(consent.clone())),
    );
    let api = grpc::ConsentApi {
        consent,
        auditor: Auditor::new(ctx.db.clone()),
    };
    eh_proto::consent::v1::consent_service_server::ConsentServiceServer::with_interceptor(
        api,
        auth.interceptor(),
    )
}
