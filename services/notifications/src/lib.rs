//! Notifications: turns events into messages for people — rendered from the council's templates,
//! recorded with their delivery status, sent by email over SMTP (or to a file sink in demo mode),
//! retried with backoff, never sent twice for one event and never to an address marked unsafe.
pub mod grpc;
pub mod handlers;
pub mod mailer;
pub mod sender;
pub mod store;
pub mod templates;

use eh_auth::{Auditor, Authenticator};
use eh_bus::{ServiceContext, subjects};
use eh_store::Migration;
use std::sync::Arc;

pub const SERVICE: &str = "notifications";
pub const CONSUMER_REFERRAL_RECEIVED: &str =
    eh_proto::catalogue::NOTIFICATIONS_REFERRAL_RECEIVED.consumer;

pub fn migrations() -> Vec<Migration> {
    [
        eh_bus::outbox::MIGRATIONS,
        eh_auth::audit::MIGRATIONS,
        store::MIGRATIONS,
    ]
    .concat()
}

pub fn streams(ns: &str) -> Vec<eh_bus::StreamSpec> {
    vec![
        subjects::service_stream(ns, "intake"),
        subjects::service_stream(ns, SERVICE),
        subjects::dead_letter_stream(ns),
    ]
}

/// Starts the relay, the consumer and the sender; returns the gRPC service.
pub fn start(
    ctx: ServiceContext,
    auth: &Authenticator,
) -> Result<
    tonic::service::interceptor::InterceptedService<
        eh_proto::notifications::v1::notifications_service_server::NotificationsServiceServer<
            grpc::NotificationsApi,
        >,
        eh_auth::AuthInterceptor,
    >,
    String,
> {
    let mailer = Arc::new(mailer::Mailer::from_settings(&ctx.settings)?);
    let sender = sender::Sender::new(ctx.clone(), mailer);
    let wake = sender.waker();
    ctx.spawn_relay();
    ctx.spawn_subscription(
        &eh_proto::catalogue::NOTIFICATIONS_REFERRAL_RECEIVED,
        16,
        Arc::new(handlers::ReferralReceivedHandler {
            ctx: ctx.clone(),
            wake,
        }),
    );
    ctx.tasks.spawn(sender.run(ctx.shutdown.clone()));
    let api = grpc::NotificationsApi {
        db: ctx.db.clone(),
        auditor: Auditor::new(ctx.db.clone()),
    };
    Ok(
        eh_proto::notifications::v1::notifications_service_server::NotificationsServiceServer::with_interceptor(
            api,
            auth.interceptor(),
        ),
    )
}
