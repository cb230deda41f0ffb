//! Notifications: turns events into messages for people — rendered from the council's templates,
//! recorded with their delivery status, sent by email over SMTP (or to a file sink in demo mode),
//! retried with backoff, never sent twice for one event and never to an address marked unsafe.
//! Step-ups go to the front door ahead of any backlog. No email carries a child's name.
pub mod domain;
pub mod grpc;
pub mod handlers;
pub mod mailer;
pub mod rights;
pub mod sender;
pub mod settings;
pub mod store;
pub mod templates;
pub mod urgent;

use eh_auth::{Auditor, Authenticator};
use eh_bus::subjects;
use eh_proto::catalogue as c;
use eh_service::{RoutesBuilder, ServiceContext};
use eh_store::Migration;
use std::sync::Arc;

pub const SERVICE: &str = "notifications";
pub const CONSUMER_REFERRAL_RECEIVED: &str =
    eh_proto::catalogue::NOTIFICATIONS_REFERRAL_RECEIVED.consumer;
pub const CONSUMER_REFERRAL_RECEIVED_URGENT: &str =
    eh_proto::catalogue::NOTIFICATIONS_REFERRAL_RECEIVED_URGENT.consumer;
pub const CONSUMER_SCREENING_DECIDED: &str =
    eh_proto::catalogue::NOTIFICATIONS_SCREENING_DECIDED.consumer;
pub const CONSUMER_CASE_STEPPED_UP: &str =
    eh_proto::catalogue::NOTIFICATIONS_CASE_STEPPED_UP.consumer;
pub const CONSUMER_CONSENT_REQUESTED: &str =
    eh_proto::catalogue::NOTIFICATIONS_CONSENT_REQUESTED.consumer;
pub const CONSUMER_LEAD_ASSIGNED: &str = eh_proto::catalogue::NOTIFICATIONS_LEAD_ASSIGNED.consumer;
pub const CONSUMER_PEOPLE_MERGED: &str = eh_proto::catalogue::NOTIFICATIONS_PEOPLE_MERGED.consumer;
pub const CONSUMER_SERVICE_LEVEL_BREACHED: &str =
    eh_proto::catalogue::NOTIFICATIONS_SERVICE_LEVEL_BREACHED.consumer;

pub const CONSUMER_OFFER_MADE: &str = eh_proto::catalogue::NOTIFICATIONS_OFFER_MADE.consumer;
pub const CONSUMER_OFFER_DECLINED: &str =
    eh_proto::catalogue::NOTIFICATIONS_OFFER_DECLINED.consumer;
pub const CONSUMER_LEAD_DECLINED: &str =
    eh_proto::catalogue::NOTIFICATIONS_LEAD_PRACTITIONER_DECLINED.consumer;
pub const CONSUMER_ACTION_OVERDUE: &str =
    eh_proto::catalogue::NOTIFICATIONS_ACTION_OVERDUE.consumer;
pub const CONSUMER_FOLLOW_UP_DUE: &str = eh_proto::catalogue::NOTIFICATIONS_FOLLOW_UP_DUE.consumer;
pub const CONSUMER_FOLLOW_UP_RECORDED: &str =
    eh_proto::catalogue::NOTIFICATIONS_FOLLOW_UP_RECORDED.consumer;

/// Notifications as the binary runs it (one line of its table).
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
            eh_proto::notifications::v1::notifications_service_server::NotificationsServiceServer<
                grpc::NotificationsApi,
            >;
        const NAMES: &[&str] = &[<Server as NamedService>::NAME];
        NAMES
    }
    fn settings_keys(&self) -> eh_service::SettingsKeys {
        settings::KEYS
    }
    fn check_settings(&self, settings: &eh_platform::Settings) -> Result<Vec<String>, String> {
        templates::check(settings)
    }
    fn settings_json(
        &self,
        settings: &eh_platform::Settings,
    ) -> Vec<(&'static str, serde_json::Value)> {
        settings::NotificationsSettings::from_settings(settings)
            .ok()
            .and_then(|s| serde_json::to_value(s.smtp).ok())
            .map(|smtp| vec![("smtp", smtp)])
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

/// Every migration of notifications' database, in order.
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
        subjects::service_stream(ns, "casework"),
        subjects::service_stream(ns, "allocation"),
        subjects::service_stream(ns, "assessment"),
        subjects::service_stream(ns, SERVICE),
        subjects::service_stream(ns, "records"),
        subjects::dead_letter_stream(ns),
    ]
}

/// Checks the councils' template overrides, then starts the relay, the consumers and the sender;
/// returns the gRPC service.
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
    for warning in templates::check(&ctx.settings)? {
        tracing::warn!("{warning}");
    }
    let mailer = Arc::new(mailer::Mailer::from_settings(&ctx.settings)?);
    let sender = sender::Sender::new(ctx.clone(), mailer);
    // The urgent lane's sender: the front door's email, on SMTP connections of its own, ahead of
    // any backlog, retried without end; a watch raises it when a minute passes unsent (urgent.rs).
    // Its work is on the urgent lane's connections and relay (`ServiceContext::urgent`), as is
    // the urgent consumers' below: no ordinary backlog stands in front of it for either.
    let urgent_sender = sender::Sender::urgent(
        ctx.urgent(),
        Arc::new(mailer::Mailer::from_settings(&ctx.settings)?),
    );
    let mut notifier = handlers::Notifier::new(ctx.clone(), sender.waker());
    notifier.urgent_wake = urgent_sender.waker();
    let mut urgent_notifier = handlers::Notifier::new(ctx.urgent(), sender.waker());
    urgent_notifier.urgent_wake = urgent_sender.waker();
    ctx.spawn_relay();
    // The family's data rights: destruction ordered by records (rights.rs).
    eh_service::rights::spawn_destruction(
        &ctx,
        &eh_proto::catalogue::NOTIFICATIONS_DESTRUCTION_ORDERED,
        rights::HOLDINGS,
        &eh_proto::catalogue::NOTIFICATIONS_RECORDS_DESTROYED,
    );
    ctx.spawn_subscription(
        &eh_proto::catalogue::NOTIFICATIONS_PERSON_CORRECTED,
        1,
        Arc::new(rights::PersonCorrectedHandler { ctx: ctx.clone() }),
    );
    // One durable consumer per event kind, so a backlog of one kind never holds up a step-up.
    // The events a consumer has in hand are recorded together (handlers.rs), so the busy ones
    // hold many at once.
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_REFERRAL_RECEIVED,
        128,
        Arc::new(handlers::ReferralReceivedHandler(notifier.clone())),
    );
    // The urgent lane: a significant-harm referral's referrer details (which the front door's
    // email carries) and acknowledgement, recorded ahead of the referrals' backlog.
    ctx.urgent().spawn_subscription(
        &c::NOTIFICATIONS_REFERRAL_RECEIVED_URGENT,
        16,
        Arc::new(handlers::UrgentReferralReceivedHandler(
            urgent_notifier.clone(),
        )),
    );
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_SCREENING_DECIDED,
        64,
        Arc::new(handlers::ScreeningDecidedHandler(notifier.clone())),
    );
    ctx.urgent().spawn_subscription(
        &c::NOTIFICATIONS_CASE_STEPPED_UP,
        4,
        Arc::new(handlers::CaseSteppedUpHandler(urgent_notifier)),
    );
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_CONSENT_REQUESTED,
        64,
        Arc::new(handlers::ConsentRequestedHandler(notifier.clone())),
    );
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_LEAD_ASSIGNED,
        16,
        Arc::new(handlers::LeadAssignedHandler(notifier.clone())),
    );
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_PEOPLE_MERGED,
        16,
        Arc::new(handlers::PeopleMergedHandler(notifier.clone())),
    );
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_OFFER_MADE,
        16,
        Arc::new(handlers::OfferMadeHandler(notifier.clone())),
    );
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_OFFER_DECLINED,
        4,
        Arc::new(handlers::OfferDeclinedHandler(notifier.clone())),
    );
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_LEAD_PRACTITIONER_DECLINED,
        4,
        Arc::new(handlers::LeadDeclinedHandler(notifier.clone())),
    );
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_ACTION_OVERDUE,
        4,
        Arc::new(handlers::ActionOverdueHandler(notifier.clone())),
    );
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_FOLLOW_UP_DUE,
        4,
        Arc::new(handlers::FollowUpDueHandler(notifier.clone())),
    );
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_FOLLOW_UP_RECORDED,
        4,
        Arc::new(handlers::FollowUpRecordedHandler(notifier.clone())),
    );
    ctx.spawn_subscription(
        &c::NOTIFICATIONS_SERVICE_LEVEL_BREACHED,
        4,
        Arc::new(handlers::ServiceLevelBreachedHandler(notifier)),
    );
    ctx.tasks.spawn(sender.run(ctx.shutdown.clone()));
    ctx.tasks.spawn(urgent_sender.run(ctx.shutdown.clone()));
    ctx.tasks
        .spawn(urgent::watch_overdue(ctx.clone(), urgent::WATCH_EVERY));
    let api = grpc::NotificationsApi {
        db: ctx.db.clone(),
        auditor: Auditor::new(ctx.db.clone()),
        settings: ctx.settings.clone(),
    };
    Ok(
        eh_proto::notifications::v1::notifications_service_server::NotificationsServiceServer::with_interceptor(
            api,
            auth.interceptor(),
        ),
    )
}
