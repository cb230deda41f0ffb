//! Bad input gets a clear rejection and changes nothing: malformed JSON, a schema violation, an
//! oversized payload, an unknown tenant — on the bus (a `referral_rejected` event with every
//! reason) and over gRPC (INVALID_ARGUMENT with field violations). The reasons name the path
//! and the rule broken, never the value refused.
use eh_proto::intake::v1::{ReferralRejected, SubmitReferralRequest};
use eh_tests::{TestApp, WORCS_KEY, collect, referral, with_key};
use prost::Message;
use std::time::Duration;
use tonic_types::StatusExt;

/// Personal values a document may carry, each breaking a different rule of the contract.
const VALUES: &[&str] = &[
    "Wilhelmina",
    "Quuxley",
    "94347X5819",
    "wilhelmina.quuxley-at-nowhere",
    "Auntie Zelda",
    "Zanzibar Lane",
];

/// Makes `doc` break the contract with [`VALUES`]: a child's name too long, an NHS number and
/// an email address malformed, a relationship not allowed, a postcode too long.
fn leak(doc: &mut serde_json::Value) {
    doc["children"][0]["given_name"] = serde_json::json!("Wilhelmina".repeat(11));
    doc["children"][0]["family_name"] = serde_json::json!("Quuxley");
    doc["children"][0]["nhs_number"] = serde_json::json!("94347X5819");
    doc["referrer"]["email"] = serde_json::json!("wilhelmina.quuxley-at-nowhere");
    doc["family_members"] = serde_json::json!([{"given_name": "Wilhelmina", "family_name": "Quuxley",
        "relationship": "Auntie Zelda", "address": {"postcode": "Zanzibar Lane"}}]);
}

fn assert_no_values(text: &str) {
    for v in VALUES {
        assert!(!text.contains(v), "{v:?} quoted: {text}");
    }
}

/// Each violation [`leak`] makes is reported at its path with its rule.
fn assert_rules_named(violations: impl Iterator<Item = (String, String)>) {
    let all: Vec<(String, String)> = violations.collect();
    for (path, rule) in [
        ("children[0].given_name", "at most 100 characters"),
        ("children[0].nhs_number", "^[0-9]{10}$"),
        ("referrer.email", "email"),
        ("family_members[0].relationship", "mother"),
        (
            "family_members[0].address.postcode",
            "at most 10 characters",
        ),
    ] {
        // The bus reports JSON pointers, gRPC field paths: compare both as field paths.
        let at_path = |p: &str| {
            eh_intake::domain::contract::field_path(p).ends_with(path) || p.ends_with(path)
        };
        assert!(
            all.iter().any(|(p, r)| at_path(p) && r.contains(rule)),
            "{path}: {rule} in {all:#?}"
        );
    }
}

async fn rejected_on_the_bus(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let ns = t.ns();
    let mut worcs = t
        .watch("intake", &format!("{ns}.worcs.intake.referral_rejected"))
        .await?;
    let mut bad = referral("BAD-1", None);
    bad["needs"] = serde_json::json!([]);
    bad["children"][0]["nhs_number"] = serde_json::json!("123");
    let mut leaky = referral("LEAK-1", None);
    leak(&mut leaky);
    let mut huge = referral("HUGE-1", None);
    huge["concerns"] = serde_json::json!("x".repeat(300 * 1024));
    t.publish_inbound("worcs", b"{not json".to_vec(), "r-1")
        .await?;
    t.publish_inbound("worcs", serde_json::to_vec(&bad)?, "r-2")
        .await?;
    t.publish_inbound("worcs", serde_json::to_vec(&huge)?, "r-3")
        .await?;
    t.publish_inbound("worcs", serde_json::to_vec(&leaky)?, "r-5")
        .await?;
    let got = collect(&mut worcs, 4, Duration::from_secs(20)).await?;
    assert_eq!(got.len(), 4);
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

    let leaked = events
        .iter()
        .find(|e| e.source_reference == "LEAK-1")
        .expect("the leaky document's event");
    assert_no_values(&format!("{leaked:?}"));
    assert_rules_named(
        leaked
            .violations
            .iter()
            .map(|v| (v.path.clone(), v.reason.clone())),
    );

    // An unknown tenant: on NATS there is no inbound stream but a configured council's (each
    // council has its own), so the publisher is refused at once; the embedded bus takes it and
    // intake rejects it the same way, on its own subject.
    let unknown_doc = serde_json::to_vec(&referral("U-1", None))?;
    if distributed {
        let refused = t.publish_inbound("nosuch", unknown_doc, "r-4").await;
        assert!(refused.is_err(), "an unknown council's referral was stored");
    } else {
        let mut unknown = t
            .watch("intake", &format!("{ns}.nosuch.intake.referral_rejected"))
            .await?;
        t.publish_inbound("nosuch", unknown_doc, "r-4").await?;
        let got = collect(&mut unknown, 1, Duration::from_secs(20)).await?;
        let e = ReferralRejected::decode(got[0].payload.as_ref())?;
        assert!(e.violations[0].reason.contains("unknown tenant"), "{e:?}");
    }

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

    // A document full of personal values: the status names paths and rules, never a value.
    let mut leaky = referral("LEAK-2", None);
    leak(&mut leaky);
    let err = client
        .submit_referral(with_key(
            SubmitReferralRequest {
                tenant: "worcs".into(),
                referral: Some(serde_json::from_value(leaky)?),
            },
            WORCS_KEY,
        ))
        .await
        .expect_err("invalid");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let details = err.get_details_bad_request().expect("BadRequest details");
    assert_no_values(&format!("{} {details:?}", err.message()));
    assert_rules_named(
        details
            .field_violations
            .iter()
            .map(|v| (v.field.clone(), v.description.clone())),
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
