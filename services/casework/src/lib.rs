//! Casework: the workflow orchestrator. It owns the case — one per family episode, opened from
//! `<ns>.<tenant>.intake.referral_received` — and drives it through the front door: significant
//! harm → stepped up at once; no consent → awaiting consent (chased, then closed, in working
//! days); consent → screening (a command to intake) → ready for allocation, or closed with advice;
//! withdrawal → closed. A step-down from social care skips screening. Every step is on the case's
//! timeline (gRPC `GetCase`), and service-level clocks survive restarts and fire once across
//! replicas.
pub mod contacts;
pub mod decide;
pub mod domain;
pub mod grpc;
pub mod handlers;
pub mod rights;
pub mod settings;
pub mod store;

use eh_auth::{Auditor, Authenticator};
use eh_bus::subjects;
use eh_proto::catalogue;
use eh_service::{RoutesBuilder, ServiceContext};
use eh_store::Migration;
use std::sync::Arc;
use std::time::Duration;

pub const SERVICE: &str = "casework";
pub const CONSUMER_REFERRAL_RECEIVED: &str = catalogue::CASEWORK_REFERRAL_RECEIVED.consumer;
pub const CONSUMER_REFERRAL_RECEIVED_URGENT: &str =
    catalogue::CASEWORK_REFERRAL_RECEIVED_URGENT.consumer;
pub const CONSUMER_CONSENT_RECORDED: &str = catalogue::CASEWORK_CONSENT_RECORDED.consumer;
pub const CONSUMER_CONSENT_WITHDRAWN: &str = catalogue::CASEWORK_CONSENT_WITHDRAWN.consumer;
pub const CONSUMER_SCREENING_DECIDED: &str = catalogue::CASEWORK_SCREENING_DECIDED.consumer;

/// Significant-harm referrals handled at once on the urgent lane.
pub const URGENT_CONCURRENCY: usize = 16;

/// How often the clocks are checked.
pub const TIMER_POLL: Duration = Duration::from_millis(250);

/// Casework as the binary runs it (one line of its table).
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
        type Server = eh_proto::casework::v1::casework_service_server::CaseworkServiceServer<
            grpc::CaseworkApi,
        >;
        const NAMES: &[&str] = &[<Server as NamedService>::NAME];
        NAMES
    }
    fn settings_keys(&self) -> eh_service::SettingsKeys {
        settings::KEYS
    }
    fn check_settings(&self, settings: &eh_platform::Settings) -> Result<Vec<String>, String> {
        handlers::Casework::calendars(settings)?;
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

/// Every migration of casework's database, in order.
pub fn migrations() -> Vec<Migration> {
    [
        eh_bus::outbox::MIGRATIONS,
        eh_auth::audit::MIGRATIONS,
        store::MIGRATIONS,
    ]
    .concat()
}

/// The streams casework publishes to and reads from (intake's carries the screening command).
pub fn streams(ns: &str) -> Vec<eh_bus::StreamSpec> {
    vec![
        subjects::service_stream(ns, "intake"),
        subjects::service_stream(ns, "consent"),
        subjects::service_stream(ns, "allocation"),
        subjects::service_stream(ns, "assessment"),
        subjects::service_stream(ns, SERVICE),
        subjects::service_stream(ns, "records"),
        subjects::dead_letter_stream(ns),
    ]
}

/// Starts casework's relay, consumers and clocks; returns its gRPC service.
///
/// # Errors
/// When a tenant's calendar is wrong (the message names the setting).
pub fn start(
    ctx: ServiceContext,
    auth: &Authenticator,
) -> Result<
    tonic::service::interceptor::InterceptedService<
        eh_proto::casework::v1::casework_service_server::CaseworkServiceServer<grpc::CaseworkApi>,
        eh_auth::AuthInterceptor,
    >,
    String,
> {
    let casework =
        handlers::Casework::new(ctx.clone(), handlers::Casework::calendars(&ctx.settings)?);
    ctx.spawn_relay();
    // The family's data rights: destruction ordered by records (rights.rs).
    eh_service::rights::spawn_destruction(
        &ctx,
        &eh_proto::catalogue::CASEWORK_DESTRUCTION_ORDERED,
        rights::HOLDINGS,
        &eh_proto::catalogue::CASEWORK_RECORDS_DESTROYED,
    );
    ctx.spawn_subscription(
        &eh_proto::catalogue::CASEWORK_PERSON_CORRECTED,
        1,
        Arc::new(rights::PersonCorrectedHandler { ctx: ctx.clone() }),
    );
    // The events a door has in hand are handled together (handlers.rs), so the busy doors hold
    // as many as a batch takes.
    ctx.spawn_subscription(
        &catalogue::CASEWORK_REFERRAL_RECEIVED,
        handlers::MAX_BATCH,
        Arc::new(handlers::ReferralReceivedDoor(casework.clone())),
    );
    // The urgent lane: significant-harm referrals on their own consumer, handled at once.
    ctx.urgent().spawn_subscription(
        &catalogue::CASEWORK_REFERRAL_RECEIVED_URGENT,
        URGENT_CONCURRENCY,
        Arc::new(handlers::UrgentReferralDoor(casework.urgent())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_CONSENT_RECORDED,
        handlers::MAX_BATCH,
        Arc::new(handlers::ConsentRecordedDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_CONSENT_WITHDRAWN,
        8,
        Arc::new(handlers::ConsentWithdrawnDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_SCREENING_DECIDED,
        handlers::MAX_BATCH,
        Arc::new(handlers::ScreeningDecidedDoor(casework.clone())),
    );
    // Allocation's answers about cases.
    ctx.spawn_subscription(
        &catalogue::CASEWORK_OFFER_MADE,
        handlers::MAX_BATCH,
        Arc::new(handlers::OfferMadeDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_OFFER_ACCEPTED,
        handlers::MAX_BATCH,
        Arc::new(handlers::OfferAcceptedDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_OFFER_DECLINED,
        handlers::MAX_BATCH,
        Arc::new(handlers::OfferDeclinedDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_CASE_WAITING,
        handlers::MAX_BATCH,
        Arc::new(handlers::CaseWaitingDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_OFFER_EXPIRED,
        handlers::MAX_BATCH,
        Arc::new(handlers::OfferExpiredDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_LEAD_PRACTITIONER_NAMED,
        handlers::MAX_BATCH,
        Arc::new(handlers::LeadNamedDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_LEAD_PRACTITIONER_DECLINED,
        handlers::MAX_BATCH,
        Arc::new(handlers::LeadDeclinedDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_ASSESSMENT_OPENED,
        handlers::MAX_BATCH,
        Arc::new(handlers::AssessmentOpenedDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_ASSESSMENT_FINALISED,
        handlers::MAX_BATCH,
        Arc::new(handlers::AssessmentFinalisedDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_PLAN_AGREED,
        handlers::MAX_BATCH,
        Arc::new(handlers::PlanAgreedDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_REVIEW_RECORDED,
        handlers::MAX_BATCH,
        Arc::new(handlers::ReviewRecordedDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_CASE_CLOSURE_RECORDED,
        handlers::MAX_BATCH,
        Arc::new(handlers::ClosureRecordedDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_FOLLOW_UP_DUE,
        handlers::MAX_BATCH,
        Arc::new(handlers::FollowUpDueDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_FOLLOW_UP_RECORDED,
        handlers::MAX_BATCH,
        Arc::new(handlers::FollowUpRecordedDoor(casework.clone())),
    );
    ctx.spawn_subscription(
        &catalogue::CASEWORK_WAITING_LIMIT_BREACHED,
        handlers::MAX_BATCH,
        Arc::new(handlers::WaitingLimitBreachedDoor(casework.clone())),
    );
    ctx.tasks
        .spawn(handlers::run_timers(casework.clone(), TIMER_POLL));
    let api = grpc::CaseworkApi {
        casework,
        auditor: Auditor::new(ctx.db.clone()),
        readers: eh_store::TenantReaders::new(ctx.db.clone()),
    };
    Ok(
        eh_proto::casework::v1::casework_service_server::CaseworkServiceServer::with_interceptor(
            api,
            auth.interceptor(),
        ),
    )
}
