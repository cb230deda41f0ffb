//! The audit trail end to end: a list's entry names the records it returned (ids only), and
//! `earlyhelp audit verify` finds every council's chain whole under the key, then finds an entry
//! rewritten in the database.
use eh_proto::casework::v1 as cw;
use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
use eh_proto::intake::v1::SubmitReferralRequest;
use eh_store::stmt;
use eh_tests::{TestApp, WORCS_KEY, referral, with_key, with_token};
use sea_orm::ConnectionTrait;

async fn a_list_names_what_it_returned_and_verify_finds_a_rewrite(
    distributed: bool,
) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let doc = referral("AUDIT-1", None);
    let family_name = doc["children"][0]["family_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!family_name.is_empty());
    let doc: eh_proto::intake::v1::Referral = serde_json::from_value(doc)?;
    t.intake()
        .await?
        .submit_referral(with_key(
            SubmitReferralRequest {
                tenant: "worcs".into(),
                referral: Some(doc),
            },
            WORCS_KEY,
        ))
        .await?;
    let front_door = t.token("worcs", "fd-audit", &["front_door"]);
    let casework = CaseworkServiceClient::new(t.channel().await?);
    let list = || {
        with_token(
            cw::ListCasesRequest {
                tenant: "worcs".into(),
                ..Default::default()
            },
            &front_door,
        )
    };
    let cases = eh_testkit::eventually(
        std::time::Duration::from_secs(30),
        "the referral's case",
        || {
            let mut c = casework.clone();
            let r = list();
            async move {
                let cases = c.list_cases(r).await?.into_inner().cases;
                Ok((!cases.is_empty()).then_some(cases))
            }
        },
    )
    .await?;
    assert_eq!(cases.len(), 1);

    // The last ListCases entry names the case it returned, and nothing of the family.
    let db = t.db("casework").await?;
    let trail = eh_auth::Auditor::new(db.clone()).entries("worcs").await?;
    let (_, _, _, decision, reason) = trail
        .iter()
        .rev()
        .find(|e| e.1 == "ListCases")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no ListCases entry"))?;
    assert_eq!(decision, "allowed");
    assert!(
        reason.ends_with(&format!("returned 1: case:{}", cases[0].case_id)),
        "{reason}"
    );
    assert!(!reason.contains(&family_name), "ids only: {reason}");

    // Every service's trail verifies under the key: keyed entries only.
    let reports = earlyhelp::audit::verify(&t.settings, None, None).await?;
    assert!(reports.len() >= 6, "every service with a trail");
    for r in &reports {
        assert!(r.ok(), "{:?}", r.lines());
        assert!(r.report.chains.iter().all(|c| c.unkeyed == 0));
    }
    let casework_report = reports
        .iter()
        .find(|r| r.service.name() == "casework")
        .ok_or_else(|| anyhow::anyhow!("no casework report"))?;
    assert!(
        casework_report
            .report
            .chains
            .iter()
            .any(|c| c.tenant == "worcs" && c.keyed >= 1)
    );

    // Someone with database access shortens what the list returned: found, at that entry.
    let b = db.get_database_backend();
    let row = db
        .query_one_raw(stmt(
            b,
            "SELECT MAX(seq) FROM eh_audit WHERE tenant = $1 AND action = $2",
            ["worcs".into(), "ListCases".into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    let seq: i64 = row.try_get_by_index(0)?;
    db.execute_raw(stmt(
        b,
        "UPDATE eh_audit SET reason = $1 WHERE seq = $2",
        ["same council; returned 0".into(), seq.into()],
    ))
    .await?;
    let reports = earlyhelp::audit::verify(&t.settings, Some("casework"), None).await?;
    let r = &reports[0];
    assert!(!r.ok());
    let found = r
        .report
        .first_break
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no break"))?;
    assert_eq!((found.seq, found.tenant.as_str()), (seq, "worcs"));
    let lines = r.lines().join("\n");
    assert!(
        lines.contains(&format!("first break at entry {seq}")),
        "{lines}"
    );
    // The other council's chain is not the broken one.
    let staffs = earlyhelp::audit::verify(&t.settings, Some("casework"), Some("staffs")).await?;
    assert!(staffs[0].ok(), "{:?}", staffs[0].lines());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_names_what_it_returned_and_verify_finds_a_rewrite_embedded() -> anyhow::Result<()> {
    a_list_names_what_it_returned_and_verify_finds_a_rewrite(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_names_what_it_returned_and_verify_finds_a_rewrite_distributed() -> anyhow::Result<()>
{
    a_list_names_what_it_returned_and_verify_finds_a_rewrite(true).await
}

/// Every worcs entry of casework's trail: (seq, at, entry, prev_hash).
async fn worcs_entries(
    db: &sea_orm::DatabaseConnection,
) -> anyhow::Result<Vec<(i64, String, eh_auth::AuditEntry, String)>> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT seq, at, tenant, actor, role, action, record, purpose, decision, reason, prev_hash
             FROM eh_audit WHERE tenant = $1 ORDER BY seq",
            ["worcs".into()],
        ))
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let decision: String = r.try_get_by_index(8)?;
        out.push((
            r.try_get_by_index(0)?,
            r.try_get_by_index(1)?,
            eh_auth::AuditEntry {
                tenant: r.try_get_by_index(2)?,
                actor: r.try_get_by_index(3)?,
                role: r.try_get_by_index(4)?,
                action: r.try_get_by_index(5)?,
                record: r.try_get_by_index(6)?,
                purpose: r.try_get_by_index(7)?,
                decision: if decision == "allowed" {
                    eh_auth::audit::Decision::Allowed
                } else {
                    eh_auth::audit::Decision::Denied
                },
                reason: r.try_get_by_index(9)?,
            },
            r.try_get_by_index(10)?,
        ));
    }
    Ok(out)
}

/// Signed checkpoints of each council's head, kept outside the database (a JetStream stream no
/// service may delete from; a file in embedded mode): someone with the database *and the audit
/// key* rewrites casework's worcs chain consistently — the chain verifies — and `audit verify`
/// names the first checkpoint the trail no longer matches.
async fn checkpoints_find_a_consistent_rewrite(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let front_door = t.token("worcs", "fd-checkpoint", &["front_door"]);
    let mut casework = CaseworkServiceClient::new(t.channel().await?);
    let list = || {
        with_token(
            cw::ListCasesRequest {
                tenant: "worcs".into(),
                ..Default::default()
            },
            &front_door,
        )
    };
    casework.list_cases(list()).await?;
    casework.list_cases(list()).await?;
    let mut checkpointer =
        earlyhelp::audit::Checkpointer::connect(&t.settings, earlyhelp::Target::ALL).await?;
    let first = checkpointer.run_once().await?;
    let worcs_first = first
        .iter()
        .find(|c| c.service == "casework" && c.tenant == "worcs")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no casework worcs checkpoint: {first:?}"))?;
    // Nothing moved: nothing new. Then one more read: its council's head again.
    assert!(checkpointer.run_once().await?.is_empty());
    casework.list_cases(list()).await?;
    let second = checkpointer.run_once().await?;
    assert!(
        second
            .iter()
            .any(|c| c.service == "casework" && c.tenant == "worcs" && c.seq > worcs_first.seq),
        "{second:?}"
    );
    let reports = earlyhelp::audit::verify(&t.settings, Some("casework"), None).await?;
    assert!(reports[0].ok(), "{:?}", reports[0].lines());
    assert!(reports[0].checkpoints.checked >= 2);
    // Where they are kept.
    let kept = earlyhelp::audit::CheckpointStore::open(&t.settings)
        .await?
        .read_all()
        .await?;
    let position = kept
        .iter()
        .find(|(_, c)| *c == worcs_first)
        .map(|(p, _)| *p)
        .ok_or_else(|| anyhow::anyhow!("the first checkpoint is not kept"))?;
    if !distributed {
        assert!(
            t.settings
                .data_dir
                .join(earlyhelp::audit::CHECKPOINT_FILE)
                .exists()
        );
    }

    // The rewrite: the first worcs entry's reason changed, every later one re-chained under the
    // key, the head moved along.
    let key = eh_auth::AuditKey::from_settings(&t.settings).map_err(anyhow::Error::msg)?;
    let db = t.db("casework").await?;
    let b = db.get_database_backend();
    let entries = worcs_entries(&db).await?;
    assert!(entries.len() >= 3);
    let mut prev = entries[0].3.clone();
    for (i, (seq, at, entry, _)) in entries.iter().enumerate() {
        let mut e = entry.clone();
        if i == 0 {
            e.reason = "nothing to see".into();
        }
        let hash = key.hash_entry(&prev, at, &e);
        db.execute_raw(stmt(
            b,
            "UPDATE eh_audit SET reason = $1, prev_hash = $2, hash = $3 WHERE seq = $4",
            [
                e.reason.clone().into(),
                prev.clone().into(),
                hash.clone().into(),
                (*seq).into(),
            ],
        ))
        .await?;
        prev = hash;
    }
    db.execute_raw(stmt(
        b,
        "UPDATE eh_audit_head SET hash = $1 WHERE tenant = $2",
        [prev.into(), "worcs".into()],
    ))
    .await?;

    let reports = earlyhelp::audit::verify(&t.settings, Some("casework"), None).await?;
    let r = &reports[0];
    assert_eq!(r.report.first_break, None, "the chain itself is consistent");
    assert!(!r.ok(), "the rewrite went unnoticed: {:?}", r.lines());
    let broken = r
        .checkpoints
        .first_broken
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no checkpoint broken"))?;
    assert_eq!(
        (broken.position, broken.tenant.as_str(), broken.seq),
        (position, "worcs", worcs_first.seq)
    );
    let lines = r.lines().join("\n");
    assert!(
        lines.contains(&format!("first checkpoint broken: #{position}")),
        "{lines}"
    );
    // Staffordshire's chain and checkpoints are untouched.
    let staffs = earlyhelp::audit::verify(&t.settings, Some("casework"), Some("staffs")).await?;
    assert!(staffs[0].ok(), "{:?}", staffs[0].lines());
    Ok(())
}

/// Checkpoints removed whole — the stream deleted by someone allowed the JetStream API, the
/// file emptied — are missed: `verify` fails naming each council whose entries older than
/// [`earlyhelp::audit::UNCOVERED_AFTER`] no checkpoint covers, instead of comparing none; and a
/// checkpoint stream that would let them be removed is named.
async fn removed_checkpoints_are_missed(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let front_door = t.token("worcs", "fd-removed", &["front_door"]);
    let mut casework = CaseworkServiceClient::new(t.channel().await?);
    casework
        .list_cases(with_token(
            cw::ListCasesRequest {
                tenant: "worcs".into(),
                ..Default::default()
            },
            &front_door,
        ))
        .await?;
    let casework_only = Some("casework");
    let now = chrono::Utc::now();
    let later = now + chrono::Duration::hours(1);
    let verify_at = |at| earlyhelp::audit::verify_at(&t.settings, casework_only, None, at);
    let uncovered = |r: &earlyhelp::audit::ServiceReport| -> Vec<String> {
        r.uncovered.iter().map(|u| u.tenant.clone()).collect()
    };
    // Fresh entries need no checkpoint yet; an hour on, they do.
    let r = verify_at(now).await?;
    assert!(r[0].ok(), "{:?}", r[0].lines());
    let r = verify_at(later).await?;
    assert!(!r[0].ok());
    assert!(
        uncovered(&r[0]).contains(&"worcs".to_string()),
        "{:?}",
        r[0].lines()
    );
    // Checkpointed: covered, however late it is asked.
    let casework_target = earlyhelp::Target::named("casework").map_err(anyhow::Error::msg)?;
    earlyhelp::audit::Checkpointer::connect(&t.settings, &[casework_target])
        .await?
        .run_once()
        .await?;
    let r = verify_at(later).await?;
    assert!(r[0].ok(), "{:?}", r[0].lines());
    // Removed whole.
    if distributed {
        let client = async_nats::connect(&t.settings.bus.nats_url).await?;
        let js = async_nats::jetstream::new(client);
        let stream = earlyhelp::audit::checkpoint_stream(&t.ns());
        js.delete_stream(&stream).await?;
        let r = verify_at(later).await?;
        assert!(!r[0].ok());
        assert_eq!(r[0].checkpoints.checked, 0);
        let lines = r[0].lines().join("\n");
        assert!(lines.contains("covered by no checkpoint"), "{lines}");
        // Made again without its protections: named, whatever the entries.
        js.create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{}.audit.*", t.ns())],
            ..Default::default()
        })
        .await?;
        let r = verify_at(now).await?;
        assert!(!r[0].ok());
        let lines = r[0].lines().join("\n");
        assert!(lines.contains("allows deletes, purges"), "{lines}");
    } else {
        let file = t.settings.data_dir.join(earlyhelp::audit::CHECKPOINT_FILE);
        std::fs::write(&file, "")?;
        let r = verify_at(later).await?;
        assert!(!r[0].ok());
        assert_eq!(r[0].checkpoints.checked, 0);
        assert!(
            uncovered(&r[0]).contains(&"worcs".to_string()),
            "{:?}",
            r[0].lines()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_checkpoints_are_missed_embedded() -> anyhow::Result<()> {
    removed_checkpoints_are_missed(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_checkpoints_are_missed_distributed() -> anyhow::Result<()> {
    removed_checkpoints_are_missed(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_find_a_consistent_rewrite_embedded() -> anyhow::Result<()> {
    checkpoints_find_a_consistent_rewrite(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_find_a_consistent_rewrite_distributed() -> anyhow::Result<()> {
    checkpoints_find_a_consistent_rewrite(true).await
}

/// Every `$EH_NATS_PASSWORD_…` a generated configuration names, with a fresh password each
/// (starting with a letter: nats-server reads a variable's value as a configuration value).
fn nats_passwords(conf: &str) -> std::collections::BTreeMap<String, String> {
    conf.split('$')
        .skip(1)
        .filter(|s| s.starts_with("EH_NATS_PASSWORD_"))
        .map(|s| {
            let var: String = s
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (var, format!("pw{}", uuid::Uuid::new_v4().simple()))
        })
        .collect()
}

/// On a nats-server configured with the accounts `earlyhelp nats-config` generates: casework's
/// own user keeps casework's checkpoints, but neither it nor the operator can remove one — the
/// stream denies deletes and purges, and a service's user may not update, purge or delete it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_on_the_generated_nats_accounts_cannot_be_removed() -> anyhow::Result<()> {
    use earlyhelp::natsconf::{OPERATOR_USER, PLATFORM_USER, password_var};
    let mut server = None;
    let mut pw = std::collections::BTreeMap::new();
    let t = TestApp::spawn_configured(true, |s, _| {
        let conf = earlyhelp::natsconf::for_settings(s);
        pw = nats_passwords(&conf);
        let srv = eh_testkit::NatsServer::start_with_config(
            &conf,
            pw.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        )
        .expect("nats-server with the generated accounts");
        s.bus.nats_url = format!(
            "nats://{PLATFORM_USER}:{}@127.0.0.1:{}",
            pw[&password_var(PLATFORM_USER)],
            srv.port()
        );
        server = Some(srv);
    })
    .await?;
    let port = server.as_ref().expect("server").port();
    let as_user = |user: &str| {
        let mut s = t.settings.clone();
        s.bus.nats_url = format!("nats://{user}:{}@127.0.0.1:{port}", pw[&password_var(user)]);
        s
    };
    let front_door = t.token("worcs", "fd-nats-checkpoint", &["front_door"]);
    let mut casework = CaseworkServiceClient::new(t.channel().await?);
    casework
        .list_cases(with_token(
            cw::ListCasesRequest {
                tenant: "worcs".into(),
                ..Default::default()
            },
            &front_door,
        ))
        .await?;
    // casework's own user creates the stream and keeps its checkpoints.
    let casework_target = earlyhelp::Target::named("casework").map_err(anyhow::Error::msg)?;
    let kept = earlyhelp::audit::Checkpointer::connect(&as_user("casework"), &[casework_target])
        .await?
        .run_once()
        .await?;
    assert!(kept.iter().any(|c| c.tenant == "worcs"), "{kept:?}");
    // intake's user may not publish casework's checkpoints.
    let intake_target = earlyhelp::Target::named("intake").map_err(anyhow::Error::msg)?;
    let mut intake =
        earlyhelp::audit::Checkpointer::connect(&as_user("intake"), &[intake_target]).await?;
    let forged = eh_auth::audit::Checkpoint::new(
        &eh_auth::AuditKey::from_settings(&t.settings).map_err(anyhow::Error::msg)?,
        "casework",
        "worcs",
        1,
        "0000",
    );
    let store = earlyhelp::audit::CheckpointStore::open(&as_user("intake")).await?;
    assert!(
        store.publish(&[forged]).await.is_err(),
        "intake published on casework's subject"
    );
    // Its own checkpoints it may keep.
    intake.run_once().await?;

    let stream = earlyhelp::audit::checkpoint_stream(&t.ns());
    let js_as = |user: &str| {
        let pass = pw[&password_var(user)].clone();
        let user = user.to_string();
        async move {
            let client = async_nats::ConnectOptions::with_user_and_password(user, pass)
                .connect(format!("nats://127.0.0.1:{port}"))
                .await?;
            let mut js = async_nats::jetstream::new(client);
            js.set_timeout(std::time::Duration::from_secs(2));
            anyhow::Ok(js)
        }
    };
    // The service's user: no update, purge, message delete or stream delete.
    let js = js_as("casework").await?;
    let mut s = js.get_stream(&stream).await?;
    let info = s.info().await?.clone();
    assert!(info.config.deny_delete && info.config.deny_purge);
    let first = info.state.first_sequence;
    assert!(
        s.delete_message(first).await.is_err(),
        "casework deleted a checkpoint"
    );
    assert!(s.purge().await.is_err(), "casework purged the checkpoints");
    let mut looser = info.config.clone();
    looser.max_messages = 1;
    assert!(
        js.update_stream(looser).await.is_err(),
        "casework changed the stream's limits"
    );
    assert!(
        js.delete_stream(&stream).await.is_err(),
        "casework deleted the stream"
    );
    // The operator, allowed the whole API, still cannot remove one: the stream denies it.
    let ops = js_as(OPERATOR_USER).await?;
    let mut s = ops.get_stream(&stream).await?;
    assert!(
        s.delete_message(first).await.is_err(),
        "a checkpoint was deleted"
    );
    assert!(s.purge().await.is_err(), "the checkpoints were purged");
    assert_eq!(s.info().await?.state.messages, info.state.messages);
    // And verify, as the operator, compares them.
    let reports = earlyhelp::audit::verify(&as_user(OPERATOR_USER), Some("casework"), None).await?;
    assert!(reports[0].ok(), "{:?}", reports[0].lines());
    assert!(reports[0].checkpoints.checked >= 1);
    drop(t);
    drop(server);
    Ok(())
}
