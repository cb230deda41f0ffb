//! The demo council: example requests for support submitted the way upstream systems and
//! practitioners do, and what became of each, read back from the platform's own events and APIs.
use crate::App;
use eh_bus::transport::ConsumerSpec;
use eh_bus::{OutboundMessage, subjects};
use eh_proto::intake::v1::{ReferralReceived, ReferralRejected};
use prost::Message;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// An example referral document of the demo council.
pub fn example(reference: &str, email: Option<&str>) -> Value {
    let mut doc = json!({
        "schema": "earlyhelp.referral.v1",
        "source": {"system": "demo-school-mis", "reference": reference},
        "submitted_at": "2026-11-23T09:30:00Z",
        "route": "practitioner",
        "referrer": {"name": "Priya Shah", "role": "Designated safeguarding lead", "agency": "education",
                     "organisation": "Hillside Primary"},
        "children": [{"given_name": "Leo", "family_name": "Marsh", "date_of_birth": "2016-05-14",
                      "nhs_number": "9434765919"}],
        "family_members": [
            {"given_name": "Dana", "family_name": "Marsh", "relationship": "mother",
             "parental_responsibility": true, "email": "dana.marsh@example.org", "safe_to_contact": true},
            {"given_name": "Rob", "family_name": "Marsh", "relationship": "father",
             "email": "rob.marsh@example.org", "safe_to_contact": false}
        ],
        "address": {"line1": "4 Mill Lane", "town": "Demoton", "postcode": "DM1 4AB"},
        "needs": ["education", "mental_health"],
        "concerns": "Attendance has fallen to 72% this term; Leo seems withdrawn.",
        "significant_harm_risk": false,
        "requested_support": "early_help_team",
        "consent": {"obtained": true, "given_by": "Dana Marsh", "method": "signed", "date": "2026-11-20",
                    "evidence_ref": "DOC-77812", "restrictions": [{"category": "health", "agency": "police"}]}
    });
    if let Some(e) = email {
        doc["referrer"]["email"] = json!(e);
    }
    doc
}

/// Submits the examples, prints what happened to each, and returns the outcome lines.
pub async fn run(app: &App) -> anyhow::Result<Vec<String>> {
    let ns = app.settings.bus.namespace.clone();
    let tenant = eh_auth::demo::DEMO_TENANT;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let r = |n: &str| format!("DEMO-{}-{n}", &run_id[20..]);
    let mut bad = example(&r("4"), None);
    bad["consent"] = json!({"given_by": "Dana Marsh"});
    bad["children"][0]["nhs_number"] = json!("94347659");
    let mut step_down = example(&r("3"), None);
    step_down["route"] = json!("step_down");
    step_down["referrer"]["agency"] = json!("social_care");
    let inputs: Vec<(String, String, Vec<u8>)> = vec![
        (
            r("1"),
            "a school's referral, with the referrer's email".into(),
            serde_json::to_vec(&example(&r("1"), Some("priya.shah@hillside.example")))?,
        ),
        (
            r("1"),
            "the same referral published again".into(),
            serde_json::to_vec(&example(&r("1"), Some("priya.shah@hillside.example")))?,
        ),
        (
            r("3"),
            "a step-down from social care, no referrer email".into(),
            serde_json::to_vec(&step_down)?,
        ),
        (
            r("4"),
            "a referral without consent recorded and a short NHS number".into(),
            serde_json::to_vec(&bad)?,
        ),
        (
            r("5"),
            "not JSON at all".into(),
            b"referral: yes please".to_vec(),
        ),
    ];
    // Watch intake's events as any downstream system would.
    let mut watch = app
        .transport
        .subscribe(&ConsumerSpec {
            durable: format!("demo_{run_id}"),
            stream: subjects::service_stream(&ns, "intake"),
            filter_subject: format!("{ns}.{tenant}.intake.>"),
            ack_wait: Duration::from_secs(30),
        })
        .await?;
    for (i, (_, _, payload)) in inputs.iter().enumerate() {
        app.transport
            .publish(&OutboundMessage {
                msg_id: format!("demo-{run_id}-{i}"),
                subject: subjects::inbound(&ns, tenant, "referral"),
                headers: BTreeMap::from([("Eh-Actor".to_string(), "demo-school-mis".to_string())]),
                payload: payload.clone(),
            })
            .await?;
    }
    let mut lines = Vec::new();
    let mut received: BTreeMap<String, String> = BTreeMap::new();
    let mut rejected: Vec<ReferralRejected> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while received.len() + rejected.len() < 4 && tokio::time::Instant::now() < deadline {
        if let Some(d) = watch.next().await? {
            if d.msg.subject.ends_with(".referral_received") {
                let e = ReferralReceived::decode(d.msg.payload.as_ref())?;
                let reference = e
                    .referral
                    .and_then(|r| r.source)
                    .map(|s| s.reference)
                    .unwrap_or_default();
                received.insert(reference, e.referral_id);
            } else if d.msg.subject.ends_with(".referral_rejected") {
                rejected.push(ReferralRejected::decode(d.msg.payload.as_ref())?);
            }
            d.acker.ack().await?;
        }
    }
    let mail_dir = app.settings.data_dir.join("mail");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (reference, what, _) in inputs.iter().filter(|(r, _, _)| !r.is_empty()) {
        let line = if let Some(id) = received.get(reference) {
            let mail = std::fs::read_dir(&mail_dir)
                .map(|d| {
                    d.filter_map(|f| std::fs::read_to_string(f.ok()?.path()).ok())
                        .filter(|t| t.contains(id.as_str()))
                        .count()
                })
                .unwrap_or(0);
            format!("{what}: stored as referral {id}; acknowledgements emailed: {mail}")
        } else if let Some(rej) = rejected.iter().find(|x| &x.source_reference == reference) {
            let reasons: Vec<String> = rej
                .violations
                .iter()
                .map(|v| format!("{} {}", v.path, v.reason))
                .collect();
            format!("{what}: rejected — {}", reasons.join("; "))
        } else if reference == &r("5") {
            match rejected.iter().find(|x| x.source_reference.is_empty()) {
                Some(rej) => format!("{what}: rejected — {}", rej.violations[0].reason),
                None => format!("{what}: no outcome yet"),
            }
        } else {
            format!("{what}: no outcome yet")
        };
        println!("  • {line}");
        lines.push(line);
    }
    println!(
        "  Emails (demo mode writes them as files): {}",
        mail_dir.display()
    );
    Ok(lines)
}
