//! What casework's integration tests share: the start instant and bus messages as intake and
//! consent would send them.
#![allow(dead_code)] // each test binary uses its own part

use chrono::{DateTime, TimeZone, Utc};
use eh_bus::Received;
use eh_proto::intake::v1 as intake;
use prost::Message;
use std::collections::BTreeMap;

/// Casework on its own database (PostgreSQL, or a SQLite file under `dir`), migrated, with the
/// testkit's councils, an embedded bus and the system clock.
pub async fn casework(
    postgres: bool,
    dir: &std::path::Path,
) -> anyhow::Result<eh_casework::handlers::Casework> {
    use eh_casework::handlers::Casework;
    let settings = std::sync::Arc::new(eh_testkit::settings(false, dir, None, None).await?);
    let location = eh_testkit::service_location(postgres, dir, "casework").await?;
    let db = eh_store::connect(&location).await?;
    eh_store::migrate(&db, "casework", &eh_casework::migrations()).await?;
    let bus_db = eh_store::connect(&eh_testkit::sqlite(dir, "bus.sqlite")).await?;
    let ctx = eh_bus::ServiceContext::new(
        eh_casework::SERVICE,
        settings.clone(),
        db,
        std::sync::Arc::new(eh_bus::embedded::EmbeddedTransport::open(bus_db).await?),
        std::sync::Arc::new(eh_platform::clock::SystemClock),
    );
    let calendars = Casework::calendars(&settings).map_err(anyhow::Error::msg)?;
    Ok(Casework::new(ctx, calendars))
}

/// Monday 2 March 2026, 09:00.
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
        .single()
        .expect("date")
}

pub fn received(subject: String, id: &str, payload: Vec<u8>) -> Received {
    let mut headers = BTreeMap::new();
    headers.insert("Eh-Id".to_string(), id.to_string());
    Received {
        subject,
        headers,
        payload: payload.into(),
        delivered: 1,
        stream_seq: 1,
    }
}

pub fn referral(ns: &str, id: &str, family: &str, consent: bool) -> Received {
    let event = intake::ReferralReceived {
        referral_id: format!("ref-{id}"),
        family_id: family.into(),
        received_at: start().to_rfc3339(),
        referral: Some(intake::Referral {
            route: "practitioner".into(),
            source: Some(intake::Source {
                system: "hub".into(),
                reference: id.into(),
            }),
            family_members: vec![intake::FamilyMember {
                given_name: "Jo".into(),
                family_name: "Bloggs".into(),
                relationship: "mother".into(),
                parental_responsibility: Some(true),
                email: Some("jo@example.org".into()),
                ..Default::default()
            }],
            consent: Some(intake::Consent {
                obtained: Some(consent),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    received(
        format!("{ns}.worcs.intake.referral_received"),
        &format!("evt-{id}"),
        event.encode_to_vec(),
    )
}
