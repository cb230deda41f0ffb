//! Crashes between steps lose nothing and duplicate nothing: a consumer dying between its commit
//! and its ack, the relay dying between publishing and marking, NATS restarted mid-run.
use eh_bus::Faults;
use eh_tests::{TestApp, WORCS_KEY, referral, with_key};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_dying_after_commit_is_redelivered_and_handled_once() -> anyhow::Result<()> {
    let mut t = TestApp::spawn(true).await?;
    Faults::arm(&t.faults.consumer_dies_after_commit);
    t.publish_inbound(
        "worcs",
        serde_json::to_vec(&referral("C-1", Some("r@x.example")))?,
        "c-1",
    )
    .await?;
    // The first handler to finish commits and "dies" without acking. Restart the whole app.
    eh_testkit::eventually(Duration::from_secs(20), "the fault to trip", || async {
        Ok((!t
            .faults
            .consumer_dies_after_commit
            .load(std::sync::atomic::Ordering::SeqCst))
        .then_some(()))
    })
    .await?;
    t.stop().await?;
    t.start().await?;
    // Redelivered after ack_wait (2 s in tests): the inbox recognises it.
    t.smtp
        .wait_for_template(eh_tests::ACK, 1, Duration::from_secs(30))
        .await?;
    eh_testkit::eventually(
        Duration::from_secs(20),
        "the redelivery to be absorbed",
        || async {
            let dup = t.metric(
                "earlyhelp_messages_handled_total",
                &["outcome=\"duplicate\""],
            );
            Ok((dup >= 1.0).then_some(()))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(t.referral_count("worcs").await?, 1);
    assert_eq!(
        t.smtp.of_template(eh_tests::ACK).len(),
        1,
        "handled once: one email"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_dying_after_publish_is_deduplicated_by_jetstream() -> anyhow::Result<()> {
    let t = TestApp::spawn(true).await?;
    Faults::arm(&t.faults.relay_dies_after_publish);
    let mut client = t.intake().await?;
    let doc: eh_proto::intake::v1::Referral =
        serde_json::from_value(referral("D-1", Some("r@x.example")))?;
    client
        .submit_referral(with_key(
            eh_proto::intake::v1::SubmitReferralRequest {
                tenant: "worcs".into(),
                referral: Some(doc),
            },
            WORCS_KEY,
        ))
        .await?;
    t.smtp
        .wait_for_template(eh_tests::ACK, 1, Duration::from_secs(20))
        .await?;
    assert!(
        !t.faults
            .relay_dies_after_publish
            .load(std::sync::atomic::Ordering::SeqCst),
        "the fault tripped"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The row was published twice; JetStream dropped the second, so notifications saw it once.
    let ok = t.metric(
        "earlyhelp_messages_handled_total",
        &["notifications_referral_received", "outcome=\"ok\""],
    );
    let dup = t.metric(
        "earlyhelp_messages_handled_total",
        &["notifications_referral_received", "outcome=\"duplicate\""],
    );
    assert_eq!((ok, dup), (1.0, 0.0));
    assert_eq!(t.smtp.of_template(eh_tests::ACK).len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_run_loses_nothing() -> anyhow::Result<()> {
    let mut nats = eh_testkit::NatsServer::start()?;
    let t = TestApp::spawn_on(true, Some(nats.url())).await?;
    let mut client = t.intake().await?;
    let submit = |r: String| {
        let doc: eh_proto::intake::v1::Referral = serde_json::from_value(referral(
            &r,
            Some(&format!("{}@x.example", r.to_lowercase())),
        ))
        .expect("valid");
        with_key(
            eh_proto::intake::v1::SubmitReferralRequest {
                tenant: "worcs".into(),
                referral: Some(doc),
            },
            WORCS_KEY,
        )
    };
    for i in 0..5 {
        client.submit_referral(submit(format!("N-{i}"))).await?;
    }
    t.smtp
        .wait_for_template(eh_tests::ACK, 5, Duration::from_secs(20))
        .await?;
    nats.kill();
    // While the bus is down, referrals are still taken (stored with their events in the outbox).
    for i in 5..10 {
        client.submit_referral(submit(format!("N-{i}"))).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart()?;
    let mails = t
        .smtp
        .wait_for_template(eh_tests::ACK, 10, Duration::from_secs(60))
        .await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut to: Vec<String> = t
        .smtp
        .messages()
        .iter()
        .flat_map(|m| m.to.clone())
        .collect();
    to.sort();
    to.dedup();
    assert_eq!(
        mails.len().max(t.smtp.of_template(eh_tests::ACK).len()),
        10,
        "each referral acknowledged exactly once"
    );
    assert_eq!(to.len(), 10);
    Ok(())
}
