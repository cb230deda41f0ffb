//! The demo council: example requests for support submitted the way upstream systems and
//! practitioners do, and what became of each, read back from the platform's own events and APIs.
use crate::App;
use anyhow::Context;
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

/// The demo council's directory: an Open Referral UK export of the borough's services.
const DIRECTORY: &str = include_str!("demo_directory.json");

/// Where the demo council's directory file is (its allocation settings name it).
pub fn directory_file(settings: &eh_platform::Settings) -> std::path::PathBuf {
    settings.data_dir.join("demo-directory.json")
}

/// A gRPC channel to the app, and a demo token for `roles` (demo mode only).
async fn demo_client(
    app: &App,
    roles: &[&str],
) -> anyhow::Result<(
    tonic::transport::Channel,
    tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
)> {
    let issuer = app
        .demo_issuer
        .as_ref()
        .context("the demo calls the APIs with a demo token: demo mode only")?;
    let token = issuer
        .mint(
            &format!("demo-{}", roles.join("-")),
            roles,
            "early_help",
            600,
        )
        .map_err(anyhow::Error::msg)?;
    let bearer = format!("Bearer {token}").parse()?;
    let mut addr = app.grpc_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let channel = eh_platform::net::endpoint(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("connect to gRPC at {addr}"))?;
    Ok((channel, bearer))
}

/// Imports the demo council's directory (the file its settings name) and sets the council's terms
/// for its services, through allocation's API as a team manager would; returns a summary line.
async fn set_up_directory(app: &App, tenant: &str) -> anyhow::Result<String> {
    use eh_proto::allocation::v1 as apb;
    use eh_proto::allocation::v1::allocation_service_client::AllocationServiceClient;
    std::fs::write(directory_file(&app.settings), DIRECTORY)?;
    let (channel, bearer) = demo_client(app, &["team_manager"]).await?;
    let mut alloc = AllocationServiceClient::new(channel);
    fn authed<T>(
        msg: T,
        bearer: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    ) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert("authorization", bearer.clone());
        r
    }
    let import = alloc
        .import_directory(authed(
            apb::ImportDirectoryRequest {
                tenant: tenant.into(),
            },
            &bearer,
        ))
        .await?
        .into_inner();
    let terms = |kind: &str, coverage: &[&str], capacity: u32| apb::ServiceTerms {
        kind: kind.into(),
        coverage: coverage.iter().map(|s| s.to_string()).collect(),
        capacity,
        ..Default::default()
    };
    let mut brfc = terms("commissioned", &["DM"], 10);
    brfc.programmes = vec!["brfc".into()];
    brfc.contract_volume = 40;
    brfc.contract_period = "quarter".into();
    brfc.offer_email = "offers@family-matters.invalid".into();
    for (id, t) in [
        (
            "demo-eht-central",
            terms("early_help_team", &["Demoton Central"], 20),
        ),
        (
            "demo-eht-east",
            terms("early_help_team", &["Eastfield"], 15),
        ),
        ("demo-family-matters", brfc),
    ] {
        alloc
            .set_service_terms(authed(
                apb::SetServiceTermsRequest {
                    tenant: tenant.into(),
                    service_id: id.into(),
                    terms: Some(t),
                },
                &bearer,
            ))
            .await?;
    }
    Ok(format!(
        "directory imported from Open Referral UK JSON: {} services ({} new, {} updated, {} unchanged, \
         {} refused); the council's terms set for its two Early Help Teams and one BRFC provider",
        import.created + import.updated + import.unchanged,
        import.created,
        import.updated,
        import.unchanged,
        import.refused.len()
    ))
}

/// Submits the examples, prints what happened to each, and returns the outcome lines.
pub async fn run(app: &App) -> anyhow::Result<Vec<String>> {
    let ns = app.settings.bus.namespace.clone();
    let tenant = eh_auth::demo::DEMO_TENANT;
    let directory = set_up_directory(app, tenant).await?;
    println!("  • {directory}");
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let r = |n: &str| format!("DEMO-{}-{n}", &run_id[20..]);
    let mut bad = example(&r("4"), None);
    bad["consent"] = json!({"given_by": "Dana Marsh"});
    bad["children"][0]["nhs_number"] = json!("94347659");
    let mut harm = another_family(
        example(&r("6"), Some("sam.okafor@little-acorns.example")),
        ("Noah", "Bell", "2022-08-19"),
        "Grace",
        "DM3 7QT",
    );
    harm["referrer"] = json!({"name": "Sam Okafor", "agency": "education",
        "organisation": "Little Acorns Nursery", "email": "sam.okafor@little-acorns.example",
        "phone": "01905 555 0100"});
    harm["significant_harm_risk"] = json!(true);
    let mut single_need = another_family(
        example(&r("7"), Some("priya.shah@hillside.example")),
        ("Ava", "Patel", "2013-11-30"),
        "Meera",
        "DM2 9LP",
    );
    single_need["needs"] = json!(["education"]);
    let mut step_down = another_family(
        example(&r("3"), None),
        ("Maya", "Evans", "2014-02-03"),
        "Kim",
        "DM5 1RS",
    );
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
        (
            r("6"),
            "a nursery's referral reporting a risk of significant harm".into(),
            serde_json::to_vec(&harm)?,
        ),
        (
            r("7"),
            "a request with a single need, below the Early Help Team threshold".into(),
            serde_json::to_vec(&single_need)?,
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
    let mut lines = vec![directory];
    let mut received: BTreeMap<String, String> = BTreeMap::new();
    let mut rejected: Vec<ReferralRejected> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while received.len() + rejected.len() < 6 && tokio::time::Instant::now() < deadline {
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
    let cases = case_states(app, tenant, &received).await?;
    for (reference, what, _) in inputs.iter().filter(|(r, _, _)| !r.is_empty()) {
        let line = if let Some(id) = received.get(reference) {
            let mail = std::fs::read_dir(&mail_dir)
                .map(|d| {
                    d.filter_map(|f| std::fs::read_to_string(f.ok()?.path()).ok())
                        .filter(|t| t.contains(id.as_str()))
                        .count()
                })
                .unwrap_or(0);
            let case = cases
                .get(reference)
                .map(|(id, state)| format!("; case {id} is {state}"))
                .unwrap_or_default();
            format!("{what}: stored as referral {id}; emails about it: {mail}{case}")
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

/// The case each stored referral opened, once it has left the states that pass in a moment:
/// reference → (case id, state). Asked of casework's gRPC API like any client, as a front-door
/// practitioner of the demo council (a demo token).
async fn case_states(
    app: &App,
    tenant: &str,
    received: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    use eh_proto::casework::v1::ListCasesRequest;
    use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
    let (channel, bearer) = demo_client(app, &["front_door"]).await?;
    let mut casework = CaseworkServiceClient::new(channel);
    // Allocation answers a ready case at once: wait for its answer.
    let passing = ["requested", "screening", "ready_for_allocation"];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut request = tonic::Request::new(ListCasesRequest {
            tenant: tenant.to_string(),
            limit: 1000,
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
        let cases = casework.list_cases(request).await?.into_inner().cases;
        // A referral may have joined the open case of a family already known.
        let mut by_referral = BTreeMap::new();
        for c in cases {
            for referral in c.referral_ids {
                by_referral.insert(referral, (c.case_id.clone(), c.state.clone()));
            }
        }
        let found: BTreeMap<String, (String, String)> = received
            .iter()
            .filter_map(|(reference, id)| Some((reference.clone(), by_referral.get(id)?.clone())))
            .collect();
        let settled = received.keys().all(|r| {
            found
                .get(r)
                .is_some_and(|(_, s)| !passing.contains(&s.as_str()))
        });
        if settled || tokio::time::Instant::now() > deadline {
            // Give the sender a moment to write the emails these steps caused.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `doc` about a different family: the child `(given, family name, date of birth)`, a mother
/// `parent` of the same family name, and `postcode`.
fn another_family(
    mut doc: Value,
    child: (&str, &str, &str),
    parent: &str,
    postcode: &str,
) -> Value {
    let (given, family, dob) = child;
    doc["children"] = json!([{"given_name": given, "family_name": family, "date_of_birth": dob}]);
    doc["family_members"] = json!([{"given_name": parent, "family_name": family,
        "relationship": "mother", "parental_responsibility": true, "safe_to_contact": true}]);
    doc["address"] = json!({"line1": "1 Demo Street", "town": "Demoton", "postcode": postcode});
    doc["consent"]["given_by"] = json!(format!("{parent} {family}"));
    doc
}

/// Makes `doc` (a referral like [`example`]'s) about family number `i` of a load or fault run:
/// the family name `<prefix><letters>`, a child and a mother of their own, a date of birth and an
/// in-area postcode that vary with `i`, and `parent_email` for the mother.
pub fn as_family(doc: &mut Value, i: usize, prefix: &str, parent_email: &str) {
    let family = format!("{prefix}{}", letters(i));
    let dob = chrono::NaiveDate::from_ymd_opt(2010, 1, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new((i % 4000) as u64)))
        .unwrap_or_default();
    doc["children"] = json!([{"given_name": format!("Ki{}", letters(i * 7)),
        "family_name": family, "date_of_birth": dob.to_string()}]);
    doc["family_members"] = json!([{"given_name": format!("Pa{}", letters(i * 11)),
        "family_name": family, "relationship": "mother", "parental_responsibility": true,
        "email": parent_email, "safe_to_contact": true}]);
    doc["address"]["postcode"] = json!(format!("WR{} {}AB", 1 + i % 15, i % 10));
}

/// `i` in base 26 as lower-case letters (0 → "a"): distinct names without digits.
pub fn letters(mut i: usize) -> String {
    let mut out = String::new();
    loop {
        out.insert(0, (b'a' + (i % 26) as u8) as char);
        i /= 26;
        if i == 0 {
            return out;
        }
    }
}
