//! An operator replays a dead webhook delivery (`earlyhelp webhook replay`, its library call):
//! refused by the receiver until dead, replayed once the receiver recovers, it arrives exactly once
//! more under the same `webhook-id`, validly signed; the other dead one is discarded and never
//! sent. Each is written to the gateway's audit trail first; a delivery that is not dead, an unknown
//! id and another council's id are refused, changing nothing.
use crate::gateway::{
    Captured, case_state, submit, switched_receiver, verify, verify_with_python, webhooks,
};
use earlyhelp::dlq::Action;
use eh_gateway::webhook::store;
use eh_tests::{TestApp, WORCS_KEY, referral};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// The status of each of Worcestershire's deliveries, by id.
async fn statuses(t: &TestApp) -> anyhow::Result<Vec<(String, String)>> {
    let list = earlyhelp::webhook::list(&t.settings, "worcs", None, 100).await?;
    Ok(list.into_iter().map(|d| (d.id, d.status)).collect())
}

fn attempts_of(seen: &Arc<Mutex<Vec<Captured>>>, id: &str) -> Vec<Captured> {
    seen.lock()
        .expect("lock")
        .iter()
        .filter(|c| c.id == id)
        .cloned()
        .collect()
}

async fn a_dead_delivery_is_replayed_once_the_receiver_recovers(
    distributed: bool,
) -> anyhow::Result<()> {
    let refusing = Arc::new(AtomicBool::new(true));
    let (url, seen) = switched_receiver(false, refusing.clone()).await?;
    let t = TestApp::spawn_configured(distributed, |s, _| webhooks(s, &url, 2)).await?;
    let referral_id = submit(&t, &referral("GW-WH-REPLAY", None)).await?;
    case_state(&t, WORCS_KEY, &referral_id, "waiting_for_provider").await?;
    // Both updates (received, screened) refused twice: dead.
    let t_ref = &t;
    let dead = eh_testkit::eventually(WAIT, "two deliveries dead", move || async move {
        let dead = earlyhelp::webhook::list(&t_ref.settings, "worcs", Some("dead"), 100).await?;
        Ok((dead.len() == 2).then_some(dead))
    })
    .await?;
    let (first, second) = (dead[0].id.clone(), dead[1].id.clone());
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].system, "test-hub");
    assert_eq!(dead[0].last_error.as_deref(), Some("answered HTTP 500"));
    assert_eq!(attempts_of(&seen, &first).len(), 2);
    let before = statuses(&t).await?;

    // Refused, nothing changed: an unknown id, another council's id, no operator, an unknown
    // status to list, a council the settings do not hold.
    let replay = |tenant: &'static str, id: String, by: &'static str| {
        let settings = t.settings.clone();
        async move {
            earlyhelp::webhook::act(
                &settings,
                tenant,
                &id,
                Action::Replay,
                by,
                "receiver fixed",
                None,
            )
            .await
        }
    };
    for (tenant, id, by, says) in [
        (
            "worcs",
            "no-such-delivery",
            "alice",
            "council worcs holds no webhook delivery",
        ),
        (
            "staffs",
            first.as_str(),
            "alice",
            "council staffs holds no webhook delivery",
        ),
        ("worcs", first.as_str(), " ", "--by"),
        ("nowhere", first.as_str(), "alice", "no council"),
    ] {
        let err = replay(tenant, id.to_string(), by).await.expect_err(says);
        assert!(err.to_string().contains(says), "{err}");
    }
    let err = earlyhelp::webhook::list(&t.settings, "worcs", Some("lost"), 10)
        .await
        .expect_err("an unknown status");
    assert!(err.to_string().contains("no status"), "{err}");
    assert_eq!(statuses(&t).await?, before);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(attempts_of(&seen, &first).len(), 2, "nothing sent");

    // The receiver recovers; the first is replayed: it arrives once more, same id, signed.
    refusing.store(false, Ordering::SeqCst);
    let was = replay("worcs", first.clone(), "alice").await?;
    assert_eq!(was.status, "dead");
    let seen_ref = &seen;
    let first_ref = &first;
    eh_testkit::eventually(WAIT, "the replayed delivery received", move || async move {
        Ok(attempts_of(seen_ref, first_ref)
            .iter()
            .any(|c| c.answered == 204)
            .then_some(()))
    })
    .await?;
    // Time for a wrong second sending (the sender polls every 50 ms).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts = attempts_of(&seen, &first);
    assert_eq!(
        attempts.iter().map(|c| c.answered).collect::<Vec<_>>(),
        [500, 500, 204],
        "{attempts:?}"
    );
    let delivered = &attempts[2];
    assert_eq!(delivered.body, attempts[0].body, "the same update");
    verify(delivered);
    verify_with_python(std::slice::from_ref(delivered))?;
    let body: serde_json::Value = serde_json::from_str(&delivered.body)?;
    assert_eq!(body["data"]["status"], "received");
    assert_eq!(body["data"]["source_reference"], "GW-WH-REPLAY");
    // The second, still dead, was not sent again.
    assert_eq!(attempts_of(&seen, &second).len(), 2);
    let now: std::collections::BTreeMap<_, _> = statuses(&t).await?.into_iter().collect();
    assert_eq!(now[&first], "delivered");
    assert_eq!(now[&second], "dead");

    // A delivered one is not replayed (nor discarded); the second is discarded: never sent.
    let err = replay("worcs", first.clone(), "alice")
        .await
        .expect_err("not dead");
    assert!(err.to_string().contains("is delivered, not dead"), "{err}");
    let discard = |id: String| {
        let settings = t.settings.clone();
        async move {
            earlyhelp::webhook::act(
                &settings,
                "worcs",
                &id,
                Action::Discard,
                "bob",
                "the hub rebuilt its records",
                None,
            )
            .await
        }
    };
    discard(second.clone()).await?;
    let err = discard(second.clone())
        .await
        .expect_err("discarded already");
    assert!(err.to_string().contains("is discarded, not dead"), "{err}");
    let err = discard(first.clone()).await.expect_err("delivered");
    assert!(err.to_string().contains("is delivered"), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        attempts_of(&seen, &second).len(),
        2,
        "a discarded one is not sent"
    );
    let db = t.db("gateway").await?;
    let txn = eh_store::begin_scoped(&db, "worcs").await?;
    for (status, n) in [
        ("delivered", 1),
        ("discarded", 1),
        ("dead", 0),
        ("pending", 0),
    ] {
        assert_eq!(store::count(&txn, "worcs", status).await?, n, "{status}");
    }
    eh_store::end_read(txn).await?;

    // In the gateway's audit trail: the replay and the discard, nothing of the refusals.
    let audit = eh_auth::Auditor::new(t.db("gateway").await?);
    let entries: Vec<_> = audit
        .entries("worcs")
        .await?
        .into_iter()
        .filter(|e| e.1.starts_with("webhook."))
        .collect();
    let summary: Vec<(&str, &str, String)> = entries
        .iter()
        .map(|(actor, action, record, _, _)| (actor.as_str(), action.as_str(), record.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "operator:alice",
                "webhook.replay",
                format!("webhook_delivery:test-hub:{first}")
            ),
            (
                "operator:bob",
                "webhook.discard",
                format!("webhook_delivery:test-hub:{second}")
            ),
        ]
    );
    assert!(
        entries[1].4.ends_with(": the hub rebuilt its records"),
        "{entries:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_delivery_is_replayed_once_the_receiver_recovers() -> anyhow::Result<()> {
    a_dead_delivery_is_replayed_once_the_receiver_recovers(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_delivery_is_replayed_once_the_receiver_recovers_distributed()
-> anyhow::Result<()> {
    a_dead_delivery_is_replayed_once_the_receiver_recovers(true).await
}
