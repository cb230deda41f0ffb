//! The urgent lane (issue 17): a referral reporting a risk of significant harm reaches the
//! council's front door while the ordinary lane stands still — intake's, casework's and
//! notifications' ordinary consumers and every ordinary outbox relay held (`Faults::hold`), as a
//! backlog would hold them — and is
//! still stored once, stepped up once and emailed once when the ordinary lane catches up with it.
//! Both modes, through the real bus, databases and an SMTP server.
use eh_bus::OutboundMessage;
use eh_proto::casework::v1 as pb;
use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
use eh_proto::catalogue as c;
use eh_tests::{ACK, TestApp, referral, with_token};
use sea_orm::ConnectionTrait;
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const FRONT_DOOR: &str = "step_up_front_door";

/// Publishes `doc` for worcs on the urgent lane's subject, as an upstream system should publish a
/// significant-harm referral.
async fn publish_urgent(t: &TestApp, doc: &serde_json::Value, msg_id: &str) -> anyhow::Result<()> {
    t.app()
        .transport
        .publish(&OutboundMessage {
            msg_id: msg_id.to_string(),
            subject: c::INBOUND_REFERRAL_URGENT.subject(&t.ns(), "worcs"),
            headers: BTreeMap::from([("Eh-Actor".to_string(), "worcs-hub".to_string())]),
            payload: serde_json::to_vec(doc)?,
        })
        .await?;
    Ok(())
}

/// A consented referral about a family of its own (`family` names it), its referrer at
/// `<reference>@school.test`.
fn family_referral(reference: &str, family: &str, dob: &str) -> serde_json::Value {
    let email = format!("{}@school.test", reference.to_lowercase());
    let mut doc = referral(reference, Some(&email));
    doc["children"] = serde_json::json!([{"given_name": "Kit", "family_name": family,
        "date_of_birth": dob}]);
    doc["family_members"] = serde_json::json!([{"given_name": "Jo", "family_name": family,
        "relationship": "mother", "parental_responsibility": true, "safe_to_contact": true}]);
    doc["consent"]["given_by"] = serde_json::json!(format!("Jo {family}"));
    doc
}

fn harm(reference: &str, family: &str, dob: &str) -> serde_json::Value {
    let mut doc = family_referral(reference, family, dob);
    doc["significant_harm_risk"] = serde_json::json!(true);
    doc
}

/// Every case of the council, as its front door sees them.
async fn cases(t: &TestApp) -> anyhow::Result<Vec<pb::Case>> {
    let token = t.token("worcs", "front-door-reader", &["front_door"]);
    Ok(CaseworkServiceClient::new(t.channel().await?)
        .list_cases(with_token(
            pb::ListCasesRequest {
                tenant: "worcs".into(),
                ..Default::default()
            },
            &token,
        ))
        .await?
        .into_inner()
        .cases)
}

/// The front door's emails received so far, each with the text it carries.
fn front_door_mail(t: &TestApp) -> Vec<String> {
    t.smtp
        .of_template(FRONT_DOOR)
        .iter()
        .map(|m| String::from_utf8_lossy(&m.raw).to_string())
        .collect()
}

async fn count(t: &TestApp, service: &str, sql: &str) -> anyhow::Result<i64> {
    let db = t.db(service).await?;
    let row = db
        .query_one_raw(eh_store::stmt(db.get_database_backend(), sql, []))
        .await?;
    Ok(row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0))
}

async fn urgent_referral_passes_the_held_ordinary_lane(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    // The ordinary lane stands still from casework on; intake's ordinary consumer still runs.
    t.faults.hold(c::CASEWORK_REFERRAL_RECEIVED.consumer);
    t.faults.hold(c::NOTIFICATIONS_REFERRAL_RECEIVED.consumer);

    // A: a significant-harm referral published on the ordinary subject, behind an ordinary one:
    // intake recognises it when it reads it and puts it on the urgent lane from there.
    t.publish_inbound(
        "worcs",
        serde_json::to_vec(&family_referral("ORD-A", "Alder", "2015-01-02"))?,
        "ord-a",
    )
    .await?;
    t.publish_inbound(
        "worcs",
        serde_json::to_vec(&harm("SH-A", "Birch", "2016-03-04"))?,
        "sh-a",
    )
    .await?;
    let mail = t.smtp.wait_for_template(FRONT_DOOR, 1, WAIT).await?;
    assert!(mail[0].to.iter().any(|to| to == "front-door@worcs.test"));
    assert!(
        front_door_mail(&t)[0].contains("SH-A"),
        "the front door's email names the referral's reference"
    );

    // B: intake's ordinary consumer held too, and every service's ordinary outbox relay; a
    // significant-harm referral on the urgent subject passes all three held consumers and the
    // held relays (the urgent lane's relays publish its events).
    t.faults.hold(c::INTAKE_INBOUND_REFERRAL.consumer);
    t.faults.hold(eh_bus::relay::HOLD_ORDINARY);
    t.publish_inbound(
        "worcs",
        serde_json::to_vec(&family_referral("ORD-B", "Cedar", "2017-05-06"))?,
        "ord-b",
    )
    .await?;
    publish_urgent(&t, &harm("SH-B", "Damson", "2018-07-08"), "sh-b").await?;
    t.smtp.wait_for_template(FRONT_DOOR, 2, WAIT).await?;
    assert!(front_door_mail(&t).iter().any(|m| m.contains("SH-B")));

    // The ordinary lane did stand still: casework has opened no case for the ordinary referrals,
    // and intake has not stored the one behind its held consumer.
    let refs: Vec<String> = cases(&t)
        .await?
        .into_iter()
        .map(|c| c.source_reference)
        .collect();
    assert!(
        !refs.iter().any(|r| r.starts_with("ORD")),
        "no ordinary case while the lane is held: {refs:?}"
    );
    assert_eq!(
        count(
            &t,
            "intake",
            "SELECT COUNT(*) FROM referrals WHERE source_reference = 'ORD-B'"
        )
        .await?,
        0
    );
    assert!(
        t.smtp
            .of_template(ACK)
            .iter()
            .all(|m| !m.to.iter().any(|to| to.starts_with("ord-"))),
        "no ordinary referral acknowledged while the lane is held"
    );

    // Released, the ordinary lane catches up: every ordinary referral is handled, and the two
    // urgent ones, which it sees again (their ordinary referral_received), are not handled twice.
    t.faults.release_all();
    for consumer in [
        c::CASEWORK_REFERRAL_RECEIVED.consumer,
        c::NOTIFICATIONS_REFERRAL_RECEIVED.consumer,
    ] {
        let label = format!("consumer=\"{consumer}\"");
        eh_testkit::eventually(WAIT, &format!("{consumer} to handle all four"), || {
            let n = t.metric(
                "earlyhelp_messages_handled_total",
                &[label.as_str(), "outcome=\"ok\""],
            );
            async move { Ok((n >= 4.0).then_some(())) }
        })
        .await?;
    }
    t.smtp.wait_for_template(ACK, 4, WAIT).await?;
    let all = cases(&t).await?;
    for reference in ["SH-A", "SH-B"] {
        let of: Vec<&pb::Case> = all
            .iter()
            .filter(|c| c.source_reference == reference)
            .collect();
        assert_eq!(of.len(), 1, "one case for {reference}: {all:?}");
        assert_eq!(of[0].state, "stepped_up");
        let steps: Vec<(&str, &str)> = of[0]
            .timeline
            .iter()
            .filter(|e| e.kind == "transition")
            .map(|e| (e.from_state.as_str(), e.to_state.as_str()))
            .collect();
        assert_eq!(
            steps,
            vec![("requested", "stepped_up")],
            "{reference} stepped up once"
        );
        assert_eq!(
            count(
                &t,
                "intake",
                &format!("SELECT COUNT(*) FROM referrals WHERE source_reference = '{reference}'")
            )
            .await?,
            1,
            "{reference} stored once"
        );
    }
    for reference in ["ORD-A", "ORD-B"] {
        assert_eq!(
            all.iter()
                .filter(|c| c.source_reference == reference)
                .count(),
            1
        );
    }
    // One front-door email per step-up, one acknowledgement per referral, though both of
    // notifications' lanes saw each significant-harm referral.
    assert_eq!(
        count(
            &t,
            "notifications",
            "SELECT COUNT(*) FROM messages WHERE template = 'step_up_front_door'"
        )
        .await?,
        2
    );
    assert_eq!(
        count(
            &t,
            "notifications",
            "SELECT COUNT(*) FROM messages WHERE template = 'referral_acknowledgement'"
        )
        .await?,
        4
    );
    assert_eq!(t.smtp.of_template(FRONT_DOOR).len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_referral_passes_the_held_ordinary_lane_embedded() -> anyhow::Result<()> {
    urgent_referral_passes_the_held_ordinary_lane(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_referral_passes_the_held_ordinary_lane_distributed() -> anyhow::Result<()> {
    urgent_referral_passes_the_held_ordinary_lane(true).await
}
