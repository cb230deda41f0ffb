//! The first referral end to end: published by an upstream system, stored once, acknowledged to
//! the referrer by email through a real SMTP server — in both modes through the same code.
use eh_proto::intake::v1::{GetReferralRequest, ReferralReceived};
use eh_tests::{TestApp, WORCS_KEY, collect, referral, with_key};
use prost::Message;
use std::time::Duration;

async fn referral_end_to_end(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let ns = t.ns();
    let mut events = t
        .watch("intake", &format!("{ns}.worcs.intake.referral_received"))
        .await?;
    let doc = serde_json::to_vec(&referral("E2E-1", Some("Referrer@School.example")))?;
    // Three times, as an upstream system retrying would (each a new message).
    for i in 0..3 {
        t.publish_inbound("worcs", doc.clone(), &format!("e2e-{i}"))
            .await?;
    }
    let mails = t
        .smtp
        .wait_for_template(eh_tests::ACK, 1, Duration::from_secs(20))
        .await?;
    let got = collect(&mut events, 1, Duration::from_secs(10)).await?;
    assert_eq!(got.len(), 1);
    let event = ReferralReceived::decode(got[0].payload.as_ref())?;
    let envelope = got[0].envelope().expect("envelope headers");
    assert_eq!(envelope.tenant, "worcs");
    assert_eq!(envelope.event_type, "earlyhelp.intake.v1.ReferralReceived");
    assert!(
        got[0].headers.contains_key("traceparent"),
        "trace context travels with the event"
    );

    // Give any duplicate a chance to arrive, then count.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        t.referral_count("worcs").await?,
        1,
        "one referral for three publications"
    );
    assert_eq!(
        collect(&mut events, 1, Duration::from_millis(500))
            .await?
            .len(),
        0,
        "one event"
    );
    let mails = if t.smtp.of_template(eh_tests::ACK).len() > mails.len() {
        t.smtp.of_template(eh_tests::ACK)
    } else {
        mails
    };
    assert_eq!(mails.len(), 1, "one email");

    // The email, parsed back by an independent parser.
    let mail = &mails[0];
    assert_eq!(mail.to, vec!["referrer@school.example".to_string()]);
    let parsed = mail_parser::MessageParser::default()
        .parse(&mail.raw)
        .expect("RFC 5322 message");
    let subject = parsed.subject().unwrap_or_default().to_string();
    assert!(subject.contains("E2E-1"), "{subject}");
    assert!(
        subject.contains("Worcestershire County Council"),
        "{subject}"
    );
    let body = parsed.body_text(0).unwrap_or_default().to_string();
    assert!(body.contains(&event.referral_id), "{body}");
    assert!(!body.contains("Leo"), "no child's name in an email: {body}");

    // Stored with its people, readable by the tenant's own system.
    let mut client = t.intake().await?;
    let rec = client
        .get_referral(with_key(
            GetReferralRequest {
                tenant: "worcs".into(),
                referral_id: event.referral_id.clone(),
            },
            WORCS_KEY,
        ))
        .await?
        .into_inner();
    assert_eq!(rec.children.len(), 1);
    assert_eq!(rec.family_members.len(), 2);
    assert_eq!(
        rec.referral
            .and_then(|r| r.source)
            .map(|s| s.reference)
            .as_deref(),
        Some("E2E-1")
    );

    // The delivery status is recorded.
    let db = t.db("notifications").await?;
    // The acknowledgement, and (once casework had intake screen it) the screening outcome.
    let want = vec![
        ("referral_acknowledgement".to_string(), "sent".to_string()),
        ("screening_outcome".to_string(), "sent".to_string()),
    ];
    eh_testkit::eventually(Duration::from_secs(20), "both messages sent", || async {
        let msgs = eh_notifications::store::for_related(&db, "worcs", &event.referral_id).await?;
        let mut sent: Vec<(String, String)> = msgs
            .iter()
            .map(|m| (m.template.clone(), m.status.clone()))
            .collect();
        sent.sort();
        Ok((sent == want).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_referral_end_to_end() -> anyhow::Result<()> {
    referral_end_to_end(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_referral_end_to_end() -> anyhow::Result<()> {
    referral_end_to_end(false).await
}

async fn grpc_resubmission(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let mut client = t.intake().await?;
    let doc: eh_proto::intake::v1::Referral =
        serde_json::from_value(referral("G-1", Some("a@b.example")))?;
    let req = || eh_proto::intake::v1::SubmitReferralRequest {
        tenant: "worcs".into(),
        referral: Some(doc.clone()),
    };
    let first = client
        .submit_referral(with_key(req(), WORCS_KEY))
        .await?
        .into_inner();
    let second = client
        .submit_referral(with_key(req(), WORCS_KEY))
        .await?
        .into_inner();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.referral_id, second.referral_id);
    t.smtp
        .wait_for_template(eh_tests::ACK, 1, Duration::from_secs(20))
        .await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(t.smtp.of_template(eh_tests::ACK).len(), 1);
    assert_eq!(t.referral_count("worcs").await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_grpc_resubmission_is_one_referral() -> anyhow::Result<()> {
    grpc_resubmission(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_grpc_resubmission_is_one_referral() -> anyhow::Result<()> {
    grpc_resubmission(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_marked_unsafe_is_never_sent_to() -> anyhow::Result<()> {
    let t = TestApp::spawn(false).await?;
    // The referrer's address is also a family member's, marked unsafe in an earlier referral.
    let mut first = referral("U-1", None);
    first["family_members"][1]["email"] = serde_json::json!("shared@home.example");
    t.publish_inbound("worcs", serde_json::to_vec(&first)?, "u-1")
        .await?;
    let second = referral("U-2", Some("Shared@Home.example"));
    t.publish_inbound("worcs", serde_json::to_vec(&second)?, "u-2")
        .await?;
    let db = t.db("notifications").await?;
    let status = eh_testkit::eventually(
        Duration::from_secs(20),
        "the message to be settled",
        || async {
            let rows = sea_orm::ConnectionTrait::query_all_raw(
                &db,
                eh_store::stmt(db.get_database_backend(), "SELECT status FROM messages", []),
            )
            .await?;
            Ok(rows
                .first()
                .and_then(|r| r.try_get_by_index::<String>(0).ok())
                .filter(|s| s != "queued"))
        },
    )
    .await?;
    assert_eq!(status, "suppressed");
    assert!(
        t.smtp.messages().is_empty(),
        "nothing reached the SMTP server"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_failure_is_retried_then_sent_once() -> anyhow::Result<()> {
    let t = TestApp::spawn(false).await?;
    t.smtp.set_failing(true);
    t.publish_inbound(
        "worcs",
        serde_json::to_vec(&referral("S-1", Some("r@x.example")))?,
        "s-1",
    )
    .await?;
    let db = t.db("notifications").await?;
    eh_testkit::eventually(
        Duration::from_secs(20),
        "a failed attempt to be recorded",
        || async {
            let rows = sea_orm::ConnectionTrait::query_all_raw(
                &db,
                eh_store::stmt(
                    db.get_database_backend(),
                    "SELECT attempts, last_error FROM messages",
                    [],
                ),
            )
            .await?;
            Ok(rows
                .first()
                .and_then(|r| {
                    Some((
                        r.try_get_by_index::<i32>(0).ok()?,
                        r.try_get_by_index::<Option<String>>(1).ok()?,
                    ))
                })
                .filter(|(a, e)| *a >= 1 && e.is_some()))
        },
    )
    .await?;
    t.smtp.set_failing(false);
    t.smtp
        .wait_for_template(eh_tests::ACK, 1, Duration::from_secs(20))
        .await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(t.smtp.of_template(eh_tests::ACK).len(), 1);
    Ok(())
}
