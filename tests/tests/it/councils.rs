//! Councils apart on the bus (issue 14): a message id is unique within one council only, so two
//! councils' upstream systems that number their referrals alike both have them stored; a message
//! whose envelope names another council than its subject is dead-lettered, never handled; and on a
//! real nats-server configured with the accounts `earlyhelp nats-config` generates, a council's
//! credential is refused on another council's subjects and on the platform's events, and an
//! upstream message's actor is the credential's upstream system, whatever its header claims.
use eh_bus::envelope::{H_ACTOR, H_TENANT};
use eh_bus::{Envelope, OutboundMessage, dlq, subjects};
use eh_proto::catalogue as c;
use eh_tests::{TestApp, referral};
use sea_orm::ConnectionTrait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Waits until `f` holds, or fails naming `what`.
async fn until<F, Fut>(what: &str, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if f().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

async fn count(t: &TestApp, service: &str, sql: &str) -> anyhow::Result<i64> {
    let db = t.db(service).await?;
    let row = db
        .query_one_raw(eh_store::stmt(db.get_database_backend(), sql, []))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    Ok(row.try_get_by_index(0)?)
}

/// Every case row of casework, as text: what a forged event must not change.
async fn cases_snapshot(t: &TestApp) -> anyhow::Result<Vec<String>> {
    let db = t.db("casework").await?;
    let rows = db
        .query_all_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT id, tenant, state FROM cases ORDER BY id",
            [],
        ))
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let (id, tenant, state): (String, String, String) = (
            r.try_get_by_index(0)?,
            r.try_get_by_index(1)?,
            r.try_get_by_index(2)?,
        );
        out.push(format!("{tenant}/{id}/{state}"));
    }
    Ok(out)
}

/// The cases once each of `tenants` has one and none is still being moved on by the platform
/// itself (each waits for a person: a provider, consent, a practitioner). A snapshot taken
/// earlier would see the platform's own work still under way — a case moving on to allocation —
/// and call it the forged messages' doing.
async fn cases_at_rest(t: &TestApp, tenants: &[&str]) -> anyhow::Result<Vec<String>> {
    let in_motion = |line: &String| {
        matches!(
            line.rsplit('/').next().unwrap_or_default(),
            "requested" | "screening" | "ready_for_allocation" | "allocating"
        )
    };
    until("the councils' cases at rest", || async {
        let snap = cases_snapshot(t).await?;
        Ok(tenants
            .iter()
            .all(|p| snap.iter().any(|c| c.starts_with(&format!("{p}/"))))
            && !snap.iter().any(in_motion))
    })
    .await?;
    cases_snapshot(t).await
}

fn doc(reference: &str) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&referral(reference, None))?)
}

/// Worcestershire's and Staffordshire's hubs both send a referral numbered `R-1001`: both are
/// stored. A true repeat within one council is still dropped.
async fn same_message_id_in_two_councils(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    t.publish_inbound("worcs", doc("W-1")?, "R-1001").await?;
    t.publish_inbound("staffs", doc("S-1")?, "R-1001").await?;
    until("both councils' R-1001 stored", || async {
        Ok(t.referral_count("worcs").await? == 1 && t.referral_count("staffs").await? == 1)
    })
    .await?;
    // The same id again in worcs (another document even): dropped; the next id is not.
    t.publish_inbound("worcs", doc("W-2")?, "R-1001").await?;
    t.publish_inbound("worcs", doc("W-3")?, "R-1002").await?;
    until("worcs R-1002 stored", || async {
        Ok(t.referral_count("worcs").await? >= 2)
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        t.referral_count("worcs").await?,
        2,
        "R-1001 repeated in worcs"
    );
    assert_eq!(t.referral_count("staffs").await?, 1);
    // Each council's inbox holds its own key.
    let keys = count(
        &t,
        "intake",
        "SELECT COUNT(*) FROM eh_inbox WHERE message_key IN ('worcs:R-1001', 'staffs:R-1001')",
    )
    .await?;
    assert_eq!(keys, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_same_message_id_in_two_councils_both_stored() -> anyhow::Result<()> {
    same_message_id_in_two_councils(true).await
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_same_message_id_in_two_councils_both_stored() -> anyhow::Result<()> {
    same_message_id_in_two_councils(false).await
}

/// The referral_received worcs published for `reference`, as it travelled.
async fn referral_received(t: &TestApp, tenant: &str) -> anyhow::Result<eh_bus::Received> {
    let mut sub = t
        .watch("intake", &c::REFERRAL_RECEIVED.subject(&t.ns(), tenant))
        .await?;
    let got = eh_tests::collect(&mut sub, 1, WAIT).await?;
    got.into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no referral_received for {tenant}"))
}

/// A message on Staffordshire's subjects whose envelope says Worcestershire — an inbound referral
/// and a referral_received that casework (and others) consume — is dead-lettered with the reason
/// by every consumer, and changes no case and stores no referral.
async fn forged_council_is_dead_lettered(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let ns = t.ns();
    // A real referral of worcs, its case opened: what the forgery copies.
    t.publish_inbound("worcs", doc("W-1")?, "R-1").await?;
    let real = referral_received(&t, "worcs").await?;
    let before = cases_at_rest(&t, &["worcs"]).await?;

    let transport = &t.app().transport;
    let mut headers = BTreeMap::from([(H_TENANT.to_string(), "worcs".to_string())]);
    headers.insert(H_ACTOR.into(), "worcs-hub".into());
    transport
        .publish(&OutboundMessage {
            msg_id: "F-1".into(),
            subject: subjects::inbound(&ns, "staffs", "referral"),
            headers,
            payload: doc("F-1")?,
        })
        .await?;
    let forged = Envelope::new(
        c::REFERRAL_RECEIVED.payload,
        "worcs",
        "service:intake",
        chrono::Utc::now(),
    );
    transport
        .publish(&OutboundMessage::event(
            c::REFERRAL_RECEIVED.subject(&ns, "staffs"),
            &forged,
            real.payload.to_vec(),
        ))
        .await?;

    let parked = |consumer: &'static str| {
        let transport = transport.clone();
        let ns = ns.clone();
        async move {
            Ok::<_, anyhow::Error>(
                dlq::list(transport.as_ref(), &ns, 100)
                    .await?
                    .into_iter()
                    .find(|d| d.consumer == consumer),
            )
        }
    };
    for consumer in [
        c::INTAKE_INBOUND_REFERRAL.consumer,
        c::CASEWORK_REFERRAL_RECEIVED.consumer,
    ] {
        until(&format!("{consumer}'s dead letter"), || async {
            Ok(parked(consumer).await?.is_some())
        })
        .await?;
        let d = parked(consumer).await?.expect("parked");
        assert!(
            d.reason.contains(
                "envelope tenant \"worcs\" does not match the subject's tenant \"staffs\""
            ),
            "{consumer}: {}",
            d.reason
        );
        assert_eq!(d.attempts, 1, "{consumer}: dead-lettered at once");
    }
    assert_eq!(t.referral_count("staffs").await?, 0);
    assert_eq!(t.referral_count("worcs").await?, 1);
    assert_eq!(
        cases_snapshot(&t).await?,
        before,
        "a forged event changed a case"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn distributed_a_forged_council_is_dead_lettered_and_changes_nothing() -> anyhow::Result<()> {
    forged_council_is_dead_lettered(true).await
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_a_forged_council_is_dead_lettered_and_changes_nothing() -> anyhow::Result<()> {
    forged_council_is_dead_lettered(false).await
}

/// Every `$EH_NATS_PASSWORD_…` the configuration names, with a fresh password each.
fn passwords(conf: &str) -> BTreeMap<String, String> {
    conf.split('$')
        .skip(1)
        .filter(|s| s.starts_with("EH_NATS_PASSWORD_"))
        .map(|s| {
            let var: String = s
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // nats-server reads a variable's value as a configuration value: a password that
            // starts with a digit would be a number.
            (var, format!("pw{}", uuid::Uuid::new_v4().simple()))
        })
        .collect()
}

/// A client of the test's server as `user`, noting the errors the server reports to it.
async fn client_as(
    port: u16,
    pw: &BTreeMap<String, String>,
    user: &str,
) -> anyhow::Result<(async_nats::jetstream::Context, Arc<Mutex<Vec<String>>>)> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let noted = errors.clone();
    let client = async_nats::ConnectOptions::with_user_and_password(
        user.to_string(),
        pw[&earlyhelp::natsconf::password_var(user)].clone(),
    )
    .event_callback(move |ev| {
        let noted = noted.clone();
        async move {
            if let async_nats::Event::ServerError(e) = ev {
                noted.lock().unwrap().push(e.to_string());
            }
        }
    })
    .connect(format!("nats://127.0.0.1:{port}"))
    .await?;
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(Duration::from_secs(2));
    Ok((js, errors))
}

/// Publishes `payload` on `subject` with `msg_id` through JetStream, waiting for the ack.
async fn js_publish(
    js: &async_nats::jetstream::Context,
    subject: String,
    msg_id: &str,
    claimed_actor: &str,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", msg_id);
    h.insert("Eh-Actor", claimed_actor);
    js.publish_with_headers(subject, h, payload.into())
        .await?
        .await?;
    Ok(())
}

/// The platform on a nats-server configured with the generated accounts: the services as the
/// `earlyhelp` user (every service's rights, no more), each council's hub as its upstream user.
#[tokio::test(flavor = "multi_thread")]
async fn a_nats_server_with_the_generated_accounts_keeps_councils_apart() -> anyhow::Result<()> {
    let mut server = None;
    let mut pw = BTreeMap::new();
    let t = TestApp::spawn_configured(true, |s, _| {
        let conf = earlyhelp::natsconf::for_settings(s);
        pw = passwords(&conf);
        let srv = eh_testkit::NatsServer::start_with_config(
            &conf,
            pw.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        )
        .expect("nats-server with the generated accounts");
        s.bus.nats_url = format!(
            "nats://{}:{}@127.0.0.1:{}",
            earlyhelp::natsconf::PLATFORM_USER,
            pw[&earlyhelp::natsconf::password_var(earlyhelp::natsconf::PLATFORM_USER)],
            srv.port()
        );
        server = Some(srv);
    })
    .await?;
    let port = server.as_ref().expect("server").port();
    let ns = t.ns();
    let (worcs, worcs_errors) = client_as(port, &pw, "worcs-upstream").await?;
    let (staffs, _) = client_as(port, &pw, "staffs-upstream").await?;

    // Both hubs number their referral R-1001, each claiming to be someone else: both stored,
    // each recorded as its own council's upstream system.
    js_publish(
        &worcs,
        c::INBOUND_REFERRAL.subject(&ns, "worcs"),
        "R-1001",
        "staffs-hub",
        doc("W-1")?,
    )
    .await?;
    js_publish(
        &staffs,
        c::INBOUND_REFERRAL.subject(&ns, "staffs"),
        "R-1001",
        "admin",
        doc("S-1")?,
    )
    .await?;
    until("both councils' R-1001 stored", || async {
        Ok(t.referral_count("worcs").await? == 1 && t.referral_count("staffs").await? == 1)
    })
    .await?;
    for tenant in ["worcs", "staffs"] {
        let env = referral_received(&t, tenant)
            .await?
            .envelope()
            .expect("envelope");
        assert_eq!(env.actor, format!("system:{tenant}-upstream"));
    }
    let before = cases_at_rest(&t, &["worcs", "staffs"]).await?;

    // Worcestershire's credential on Staffordshire's inbound subject, on a casework-consumed
    // event of either council, on a casework event: refused by the server.
    let forged = referral_received(&t, "worcs").await?;
    for subject in [
        c::INBOUND_REFERRAL.subject(&ns, "staffs"),
        c::REFERRAL_RECEIVED.subject(&ns, "staffs"),
        c::REFERRAL_RECEIVED.subject(&ns, "worcs"),
        c::CASE_STATE_CHANGED.subject(&ns, "worcs"),
    ] {
        let sent = js_publish(
            &worcs,
            subject.clone(),
            "X-1",
            "worcs-hub",
            forged.payload.to_vec(),
        )
        .await;
        assert!(sent.is_err(), "{subject} accepted from worcs's credential");
    }
    // Nor may it read a stream.
    assert!(
        worcs
            .get_stream(subjects::service_stream(&ns, "intake").name)
            .await
            .is_err()
    );
    until("the server's permission errors", || async {
        Ok(worcs_errors
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("Permissions Violation") && e.contains(".staffs.inbound.referral")))
    })
    .await?;
    // A service's user may publish its own events only.
    let (intake, _) = client_as(port, &pw, "intake").await?;
    assert!(
        js_publish(
            &intake,
            c::CASE_STATE_CHANGED.subject(&ns, "worcs"),
            "X-2",
            "service:intake",
            forged.payload.to_vec(),
        )
        .await
        .is_err(),
        "intake may publish casework's events"
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(t.referral_count("staffs").await?, 1);
    assert_eq!(t.referral_count("worcs").await?, 1);
    assert_eq!(
        cases_snapshot(&t).await?,
        before,
        "a refused message changed a case"
    );
    drop(t);
    drop(server);
    Ok(())
}
