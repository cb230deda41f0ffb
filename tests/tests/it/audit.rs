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
