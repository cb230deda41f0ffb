//! Assessment: the Early Help Assessment (EHA) of each case, its plan and its outcomes. Once
//! casework names the case's lead practitioner (`lead_assigned`), the lead (or a team manager)
//! opens the EHA; every involved agency adds its own section in the Signs of Safety structure
//! (worries, what is working well, what needs to happen, a 0–10 scaling question, each child's own
//! words, needs coded to the Supporting Families headline problems), attributed and editable only
//! by its agency while the version is open; the lead finalises it (locked for ever) and a later
//! change is a new version that says what changes.
//!
//! Then the plan: the outcomes the family wants and the actions (owner, what, by when — a date or
//! working days on the council's calendar), versioned like the EHA; an action past its due date is
//! overdue and its owner is reminded once for that date. Distance-travelled scores per need at the
//! start, at each review and at closure (the council's scale); reviews; the closure with the
//! Supporting Families outcome of every headline problem the EHA identified, the impact, the
//! support given and any step-down; six months after a closure with every outcome met, the
//! follow-up check.
//!
//! Every read applies the family's consent for the reader's agency, item by item (a section, a
//! plan's outcome or action, a score, a review, the closure), and is audited with what was shown
//! and withheld.
//!
//! Layers, one way: `domain` (pure: the structure and its checks, who may do what, the reader's
//! view, the plan, outcomes and closure) → `store` (SQL) → `handlers` (casework's events),
//! `clocks` (overdue actions, follow-ups due) and `grpc`. Events: `assessment_opened`,
//! `assessment_finalised`, `plan_agreed`, `action_overdue`, `review_recorded`, `scores_recorded`,
//! `case_closure_recorded`, `follow_up_due`, `follow_up_recorded`. Casework follows them on the
//! case (`assessment_open`, `assessed`, `plan_agreed`, `in_review`, `closed_*`).
//!
//! A case stepped down from social care may start from the most recent assessment there: its
//! sections are carried over into version 1 (`OpenAssessment.carried_over`), attributed to social
//! care and saying where they came from.
pub mod clocks;
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

pub const SERVICE: &str = "assessment";

type Server = eh_proto::assessment::v1::assessment_service_server::AssessmentServiceServer<
    grpc::AssessmentApi,
>;

/// Assessment as the binary runs it (one line of its table).
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
        eh_service::consent::ConsentSettings::from_settings(settings, settings::SECTION)?;
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

/// Every migration of assessment's database, in order.
pub fn migrations() -> Vec<Migration> {
    [
        eh_bus::outbox::MIGRATIONS,
        eh_auth::audit::MIGRATIONS,
        store::MIGRATIONS,
    ]
    .concat()
}

/// The streams assessment publishes to and reads from.
pub fn streams(ns: &str) -> Vec<eh_bus::StreamSpec> {
    vec![
        subjects::service_stream(ns, "casework"),
        subjects::service_stream(ns, SERVICE),
        subjects::service_stream(ns, "records"),
        subjects::dead_letter_stream(ns),
    ]
}

/// Starts assessment's relay and consumer; returns its gRPC service.
///
/// # Errors
/// The `assessment` section is wrong (the message names the key).
pub fn start(
    ctx: ServiceContext,
    auth: &Authenticator,
) -> Result<tonic::service::interceptor::InterceptedService<Server, eh_auth::AuthInterceptor>, String>
{
    let consent =
        eh_service::consent::ConsentSettings::from_settings(&ctx.settings, settings::SECTION)?
            .client(&ctx.settings, settings::SECTION)?;
    let councils = Arc::new(settings::councils(&ctx.settings)?);
    ctx.spawn_relay();
    // The family's data rights: destruction ordered by records (rights.rs).
    eh_service::rights::spawn_destruction(
        &ctx,
        &eh_proto::catalogue::ASSESSMENT_DESTRUCTION_ORDERED,
        rights::HOLDINGS,
        &eh_proto::catalogue::ASSESSMENT_RECORDS_DESTROYED,
    );
    for (sub, ending) in [
        (
            &eh_proto::catalogue::ASSESSMENT_CASE_CLOSED,
            handlers::Ending::Closed,
        ),
        (
            &eh_proto::catalogue::ASSESSMENT_CASE_STEPPED_UP,
            handlers::Ending::SteppedUp,
        ),
    ] {
        ctx.spawn_subscription(
            sub,
            8,
            Arc::new(handlers::CaseEndedHandler {
                ctx: ctx.clone(),
                name: sub.consumer,
                ending,
            }),
        );
    }
    clocks::spawn(&ctx);
    let sub = &eh_proto::catalogue::ASSESSMENT_LEAD_ASSIGNED;
    ctx.spawn_subscription(
        sub,
        8,
        Arc::new(handlers::LeadAssignedHandler {
            ctx: ctx.clone(),
            name: sub.consumer,
        }),
    );
    let api = grpc::AssessmentApi {
        ctx: ctx.clone(),
        auditor: Auditor::new(ctx.db.clone()),
        consent,
        councils,
    };
    Ok(Server::with_interceptor(api, auth.interceptor()))
}
