//! Bad input gets a clear rejection and changes nothing: malformed JSON, a schema violation, an
//! oversized payload, an unknown tenant — on the bus (a `referral_rejected` event with every
//! reason) and over gRPC (INVALID_ARGUMENT with field violations).
use eh_proto::intake::v1::{ReferralRejected, SubmitReferralRequest};
use eh_tests::{TestApp, WORCS_KEY, collect, referral, with_key};
use prost::Message;
use std::time::Duration;
use tonic_types::StatusExt;

async fn rejected_on_the_bus(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let ns = t.ns();
    let mut worcs = t
        .watch("intake", &format!("{ns}.worcs.intake.referral_rejected"))
        .await?;
    let mut bad = referral("BAD-1", None);
    bad["needs"] = serde_json::json!([]);
    bad["children"][0]["nhs_number"] = serde_json::json!("123");
    let mut huge = referral("HUGE-1", None);
    huge["concerns"] = serde_json::json!("x".repeat(300 * 1024));
    t.publish_inbound("worcs", b"{not json".to_vec(), "r-1")
        .await?;
    t.publish_inbound("worcs", serde_json::to_vec(&bad)?, "r-2")
        .await?;
    t.publish_inbound("worcs", serde_json::to_vec(&huge)?, "r-3")
        .await?;
    let got = collect(&mut worcs, 3, Duration::from_secs(20)).await?;
    assert_eq!(got.len(), 3);
    let events: Vec<ReferralRejected> = got
        .iter()
        .map(|m| ReferralRejected::decode(m.payload.as_ref()))
        .collect::<Result<_, _>>()?;
    let all: Vec<String> = events
        .iter()
        .map(|e| {
            e.violations
                .iter()
                .map(|v| format!("{} {}", v.path, v.reason))
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect();
    assert!(all.iter().any(|r| r.contains("not valid JSON")), "{all:?}");
    assert!(
        all.iter().any(|r| r.contains("exceeds the limit")),
        "{all:?}"
    );
    let schema = events
        .iter()
        .find(|e| e.source_reference == "BAD-1")
        .expect("schema violation event");
    let paths: Vec<&str> = schema.violations.iter().map(|v| v.path.as_str()).collect();
    assert!(
        paths.contains(&"/needs") && paths.contains(&"/children/0/nhs_number"),
        "every violation listed: {paths:?}"
    );

    // An unknown tenant: rejected the same way, on its own subject.
    let mut unknown = t
        .watch("intake", &format!("{ns}.nosuch.intake.referral_rejected"))
        .await?;
    t.publish_inbound("nosuch", serde_json::to_vec(&referral("U-1", None))?, "r-4")
        .await?;
    let got = collect(&mut unknown, 1, Duration::from_secs(20)).await?;
    let e = ReferralRejected::decode(got[0].payload.as_ref())?;
    assert!(e.violations[0].reason.contains("unknown tenant"), "{e:?}");

    assert_eq!(t.referral_count("worcs").await?, 0, "nothing stored");
    assert_eq!(t.referral_count("nosuch").await?, 0, "nothing stored");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_bad_input_is_rejected_with_reasons() -> anyhow::Result<()> {
    rejected_on_the_bus(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_bad_input_is_rejected_with_reasons() -> anyhow::Result<()> {
    rejected_on_the_bus(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_violations_are_field_violations() -> anyhow::Result<()> {
    let t = TestApp::spawn(false).await?;
    let mut client = t.intake().await?;
    let mut doc: eh_proto::intake::v1::Referral = serde_json::from_value(referral("F-1", None))?;
    doc.children[0].given_name = String::new();
    doc.significant_harm_risk = None;
    let err = client
        .submit_referral(with_key(
            SubmitReferralRequest {
                tenant: "worcs".into(),
                referral: Some(doc),
            },
            WORCS_KEY,
        ))
        .await
        .expect_err("invalid");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let details = err.get_details_bad_request().expect("BadRequest details");
    let fields: Vec<&str> = details
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert!(
        fields.contains(&"referral.children[0].given_name"),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"referral"),
        "the missing significant_harm_risk is reported on its parent: {fields:?}"
    );
    assert!(
        err.message().contains("significant_harm_risk"),
        "{}",
        err.message()
    );

    let err = client
        .submit_referral(with_key(
            SubmitReferralRequest {
                tenant: "nosuch".into(),
                referral: None,
            },
            WORCS_KEY,
        ))
        .await
        .expect_err("unknown tenant");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request()
            .expect("details")
            .field_violations[0]
            .field,
        "tenant"
    );
    assert_eq!(t.referral_count("worcs").await?, 0);
    Ok(())
}
