//! Intake against real databases: a SQLite file and a fresh PostgreSQL database from
//! `eh_testkit` for every scenario. Time is a ManualClock; events are read from the outbox.
mod batch;
mod layering;
mod matching;
mod screening;

use chrono::{TimeZone, Utc};
use eh_auth::{Auditor, Principal};
use eh_bus::ServiceContext;
use eh_bus::embedded::EmbeddedTransport;
use eh_intake::domain::contract;
use eh_intake::grpc::IntakeApi;
use eh_intake::handlers::{Door, Intake, Outcome};
use eh_intake::migrations;
use eh_platform::clock::ManualClock;
use eh_proto::intake::v1::ReferralReceived;
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::sync::Arc;
use tonic::Request;

pub struct Env {
    pub ctx: ServiceContext,
    pub intake: Intake,
    pub api: IntakeApi,
    pub clock: Arc<ManualClock>,
    location: eh_store::Location,
    /// The test's own look at what was written, in the system scope: the service's pool sees
    /// nothing outside a council's scope.
    inspect: DatabaseConnection,
    _dir: tempfile::TempDir,
}

pub async fn env(postgres: bool) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let settings = eh_testkit::settings(false, dir.path(), None, None)
        .await
        .unwrap();
    let location = eh_testkit::service_location(postgres, dir.path(), "intake")
        .await
        .unwrap();
    let db = eh_store::connect(&location).await.unwrap();
    eh_store::migrate(&db, "intake", &migrations())
        .await
        .unwrap();
    let bus_db = eh_store::connect(&eh_testkit::sqlite(dir.path(), "bus.sqlite"))
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
    ));
    let ctx = ServiceContext::new(
        eh_intake::SERVICE,
        Arc::new(settings),
        db.clone(),
        Arc::new(EmbeddedTransport::open(bus_db).await.unwrap()),
        clock.clone(),
    );
    let intake = Intake::new(ctx.clone());
    let inspect = eh_testkit::inspector_of(&ctx.db).await.unwrap();
    Env {
        api: IntakeApi {
            intake: intake.clone(),
            auditor: Auditor::new(db),
        },
        intake,
        ctx,
        clock,
        location,
        inspect,
        _dir: dir,
    }
}

impl Env {
    /// Another replica of intake on the same database: its own connection pool and its own
    /// in-memory indexes.
    pub async fn replica(&self) -> Intake {
        let db = eh_store::connect(&self.location).await.unwrap();
        let mut ctx = self.ctx.clone();
        ctx.db = db;
        Intake::new(ctx)
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inspect
    }

    pub fn postgres(&self) -> bool {
        self.location.schema.is_some()
    }
}

/// Submits a referral document through `intake` (the gRPC door's path, without the transport).
pub async fn submit_to(intake: &Intake, tenant: &str, doc: serde_json::Value) -> Outcome {
    let typed = contract::validate(&doc).unwrap_or_else(|r| panic!("invalid: {}", r.summary()));
    intake
        .submit(
            tenant,
            Ok((doc, typed)),
            Door {
                actor: "person:test",
                inbound: None,
            },
        )
        .await
        .unwrap()
}

/// Submits and expects it stored.
pub async fn stored(
    intake: &Intake,
    tenant: &str,
    doc: serde_json::Value,
) -> eh_intake::store::StoredReferral {
    match submit_to(intake, tenant, doc).await {
        Outcome::Stored(s) => *s,
        other => panic!("not stored: {other:?}"),
    }
}

pub fn person(tenant: &str, subject: &str, roles: &[&str]) -> Principal {
    Principal::Person {
        tenant: tenant.into(),
        subject: subject.into(),
        agency: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

pub fn req<T>(p: &Principal, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.extensions_mut().insert(p.clone());
    r
}

/// Every `referral_received` event in the outbox, oldest first.
pub async fn received_events(db: &DatabaseConnection) -> Vec<ReferralReceived> {
    let rows = db
        .query_all_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT subject, payload FROM eh_outbox ORDER BY id",
            [],
        ))
        .await
        .unwrap();
    rows.iter()
        .filter(|r| {
            r.try_get_by_index::<String>(0)
                .unwrap()
                .ends_with(".intake.referral_received")
        })
        .map(|r| {
            ReferralReceived::decode(r.try_get_by_index::<Vec<u8>>(1).unwrap().as_slice()).unwrap()
        })
        .collect()
}

/// Each scenario on SQLite and on PostgreSQL.
macro_rules! both {
    ($($module:ident :: $name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$module::$name(super::env(false).await).await })+
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$module::$name(super::env(true).await).await })+
        }
    };
}

both!(
    matching::a_known_family_referred_again_is_attached_not_duplicated,
    matching::identifiers_match_exactly_whatever_else_is_typed,
    matching::a_grey_zone_match_is_listed_and_confirmed_into_one_person,
    matching::an_unsafe_flag_follows_the_person_through_referrals_and_merges,
    matching::a_grey_zone_match_rejected_keeps_the_people_apart,
    matching::a_re_referral_is_flagged_within_twelve_months_only,
    matching::a_person_held_by_one_council_is_never_matched_for_another,
    matching::another_replica_sees_every_change,
    matching::two_replicas_taking_one_new_family_at_once_create_it_once,
    matching::match_candidates_are_for_people_roles_of_the_tenant_only,
    batch::referrals_arriving_together_are_stored_as_one_after_another,
    batch::a_message_delivered_twice_into_one_batch_is_handled_once,
    batch::a_referral_the_database_refuses_fails_alone,
    screening::screening_commands_arriving_together_are_screened_once_each,
);
