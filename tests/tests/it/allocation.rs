//! Allocation end to end, in both modes through the real bus, databases and gRPC: a council's
//! directory imported from a file, its Early Help Team given terms, a consented referral screened
//! and ready for allocation, offered to that team, accepted, a lead practitioner named, first
//! contact recorded by them — and casework following every step (ready_for_allocation →
//! allocating → allocated, the lead, the first-contact clock started and stopped) on the case.
use eh_platform::config::Section;
use eh_proto::allocation::v1 as apb;
use eh_proto::allocation::v1::allocation_service_client::AllocationServiceClient;
use eh_proto::casework::v1 as pb;
use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
use eh_tests::{TestApp, referral, with_token};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn case_in(t: &TestApp, reference: &str, state: &str) -> anyhow::Result<pb::Case> {
    let cw = CaseworkServiceClient::new(t.channel().await?);
    // The front door sees the whole case (an upstream system only its referral's status).
    let token = t.token("worcs", "front-door-reader", &["front_door"]);
    eh_testkit::eventually(WAIT, &format!("case of {reference} to be {state}"), || {
        let mut cw = cw.clone();
        let (reference, state) = (reference.to_string(), state.to_string());
        let token = token.clone();
        async move {
            let cases = cw
                .list_cases(with_token(
                    pb::ListCasesRequest {
                        tenant: "worcs".into(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await?
                .into_inner()
                .cases;
            Ok(cases
                .into_iter()
                .find(|c| c.source_reference == reference && c.state == state))
        }
    })
    .await
}

/// The journey up to first contact; the app and the case, with its lead named (the assessment
/// tests go on from here).
pub async fn journey(distributed: bool) -> anyhow::Result<(TestApp, String)> {
    journey_via(distributed, None).await
}

/// The journey of a referral by `route` (the example referral's own when `None`).
pub async fn journey_via(
    distributed: bool,
    route: Option<&str>,
) -> anyhow::Result<(TestApp, String)> {
    let t = TestApp::spawn_configured(distributed, |s, dir| {
        let file = dir.join("directory.json");
        let services = json!([
            {"id": "eht-north", "name": "Early Help Team North", "status": "active",
             "organization": {"id": "worcs-cc", "name": "Worcestershire County Council"},
             "minimum_age": 0, "maximum_age": 18},
            {"id": "eht-south", "name": "Early Help Team South", "status": "active",
             "organization": {"id": "worcs-cc", "name": "Worcestershire County Council"}},
            {"id": "old-service", "name": "Closed service", "status": "defunct"}
        ]);
        std::fs::write(&file, serde_json::to_vec(&services).expect("json")).expect("write");
        let section = json!({"rule_version": "worcs-journey-1", "directory": {"file": file}});
        if let Some(w) = s.tenants.get_mut("worcs") {
            w.sections.insert(
                "allocation".into(),
                Section::from_json("tenants.worcs.allocation", section).expect("section"),
            );
        }
    })
    .await?;
    let manager = t.token("worcs", "tm-1", &["team_manager"]);
    let mut alloc = AllocationServiceClient::new(t.channel().await?);
    let imported = alloc
        .import_directory(with_token(
            apb::ImportDirectoryRequest {
                tenant: "worcs".into(),
            },
            &manager,
        ))
        .await?
        .into_inner();
    assert_eq!(
        (imported.outcome.as_str(), imported.created),
        ("completed", 3)
    );
    // The referral's family lives in DM1 (the example referral): the northern team covers it.
    // The northern team is run for the council by a voluntary organisation: consent is asked as a
    // voluntary agency for what its staff see.
    for (id, coverage) in [("eht-north", "DM1"), ("eht-south", "DM9")] {
        alloc
            .set_service_terms(with_token(
                apb::SetServiceTermsRequest {
                    tenant: "worcs".into(),
                    service_id: id.into(),
                    terms: Some(apb::ServiceTerms {
                        kind: "early_help_team".into(),
                        coverage: vec![coverage.into()],
                        capacity: 10,
                        agency: "voluntary".into(),
                        offer_email: format!("offers@{id}.example"),
                        ..Default::default()
                    }),
                },
                &manager,
            ))
            .await?;
    }

    // Needs education and mental health; the family does not agree to share mental health with
    // voluntary agencies.
    let mut doc = referral("AL-1", Some("priya@school.test"));
    // Nor with the police (the assessment tests read as them).
    doc["consent"]["restrictions"] = json!([
        {"category": "mental_health", "agency": "voluntary"},
        {"category": "mental_health", "agency": "police"}
    ]);
    if let Some(route) = route {
        doc["route"] = json!(route);
    }
    t.publish_inbound("worcs", serde_json::to_vec(&doc)?, "al-1")
        .await?;
    let case = case_in(&t, "AL-1", "allocating").await?;
    let offers = alloc
        .list_offers(with_token(
            apb::ListOffersRequest {
                tenant: "worcs".into(),
                case_id: case.case_id.clone(),
                ..Default::default()
            },
            &manager,
        ))
        .await?
        .into_inner()
        .offers;
    assert_eq!(offers.len(), 1, "{offers:?}");
    assert_eq!(offers[0].service_id, "eht-north");
    assert_eq!(offers[0].rule_version, "worcs-journey-1");
    // The example child was born in 2016.
    assert_eq!(offers[0].children_ages.len(), 1);
    assert_eq!(offers[0].needs, ["education", "mental_health"]);
    // The team is told at its offer mailbox, with nothing of the family in the email.
    let mails = t
        .smtp
        .wait_for_template("offer_to_provider", 1, WAIT)
        .await?;
    assert_eq!(mails[0].to, ["offers@eht-north.example"]);
    let text = String::from_utf8_lossy(&mails[0].raw).to_string();
    assert!(text.contains(&case.case_id), "{text}");
    for private in ["Dana", "Marsh", "mental"] {
        assert!(!text.contains(private), "{private} in {text}");
    }
    // The provider's staff see what consent allows a voluntary agency: not the mental-health need,
    // and that one need was withheld and why (never which).
    let provider = t.token_of("worcs", "worker-1", &["provider"], "worcs-cc");
    let theirs = alloc
        .list_offers(with_token(
            apb::ListOffersRequest {
                tenant: "worcs".into(),
                case_id: case.case_id.clone(),
                ..Default::default()
            },
            &provider,
        ))
        .await?
        .into_inner()
        .offers;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].needs, ["education"]);
    assert_eq!(theirs[0].withheld.len(), 1, "{:?}", theirs[0].withheld);
    let w = &theirs[0].withheld[0];
    assert_eq!(w.what, "1 of the family's needs");
    assert!(w.reason.contains("consent does not allow"), "{}", w.reason);
    assert!(!w.reason.contains("mental"), "{}", w.reason);
    assert_eq!(w.decision_ids.len(), 1);
    alloc
        .accept_offer(with_token(
            apb::AcceptOfferRequest {
                tenant: "worcs".into(),
                offer_id: offers[0].offer_id.clone(),
            },
            &manager,
        ))
        .await?;
    let case = case_in(&t, "AL-1", "allocated").await?;
    let moves: Vec<(String, String)> = case
        .timeline
        .iter()
        .filter(|e| e.kind == "transition")
        .map(|e| (e.from_state.clone(), e.to_state.clone()))
        .collect();
    let tail: Vec<(&str, &str)> = moves
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        tail,
        [
            ("ready_for_allocation", "allocating"),
            ("allocating", "allocated")
        ]
    );
    let offered = case
        .timeline
        .iter()
        .find(|e| e.to_state == "allocating")
        .expect("the offer on the timeline");
    assert!(
        offered.reason.contains("Early Help Team North") && offered.actor == "service:allocation",
        "{offered:?}"
    );

    // The team manager asks a practitioner to lead; they accept.
    let asked = alloc
        .ask_lead_practitioner(with_token(
            apb::AskLeadPractitionerRequest {
                tenant: "worcs".into(),
                case_id: case.case_id.clone(),
                practitioner: "fsw-7".into(),
                note: String::new(),
            },
            &manager,
        ))
        .await?
        .into_inner();
    let lead = t.token("worcs", "fsw-7", &["practitioner"]);
    alloc
        .answer_lead_request(with_token(
            apb::AnswerLeadRequestRequest {
                tenant: "worcs".into(),
                request_id: asked.request_id.clone(),
                accept: true,
                ..Default::default()
            },
            &lead,
        ))
        .await?;
    let cw = CaseworkServiceClient::new(t.channel().await?);
    let case_id = case.case_id.clone();
    let led = eh_testkit::eventually(WAIT, "the lead on the case", || {
        let (mut cw, case_id, lead) = (cw.clone(), case_id.clone(), lead.clone());
        async move {
            let c = cw
                .get_case(with_token(
                    pb::GetCaseRequest {
                        tenant: "worcs".into(),
                        case_id,
                    },
                    &lead,
                ))
                .await?
                .into_inner();
            Ok((c.lead_practitioner == "fsw-7").then_some(c))
        }
    })
    .await?;
    assert_eq!(led.lead_organization, "worcs-cc");
    // The family (the mother, who holds parental responsibility; never the father, whose address
    // is unsafe) and the referrer are told who will help, and by when; no name in either.
    let told = t
        .smtp
        .wait_for_template("lead_assigned_family", 1, WAIT)
        .await?;
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].to, ["dana.marsh@example.org"]);
    let referrer = t
        .smtp
        .wait_for_template("lead_assigned_referrer", 1, WAIT)
        .await?;
    assert_eq!(referrer[0].to, ["priya@school.test"]);
    for mail in told.iter().chain(&referrer) {
        let parsed = mail_parser::MessageParser::default()
            .parse(&mail.raw)
            .expect("a message");
        let text = format!(
            "{}\n{}",
            parsed.subject().unwrap_or_default(),
            parsed.body_text(0).unwrap_or_default()
        );
        assert!(text.contains("Early Help Team North"), "{text}");
        assert!(text.contains(&case.case_id), "{text}");
        for never in ["Marsh", "Dana", "fsw-7", "mental"] {
            assert!(!text.contains(never), "{never} in {text}");
        }
    }
    assert!(
        t.smtp
            .messages()
            .iter()
            .all(|m| !m.to.iter().any(|a| a == "rob.marsh@example.org")),
        "nothing is ever sent to an address marked unsafe"
    );
    let clock = led
        .timers
        .iter()
        .find(|t| t.kind == "first_contact")
        .expect("the first-contact clock");
    assert_eq!(clock.status, "pending");
    // Only the lead (or a team manager) records first contact.
    let someone = t.token("worcs", "fsw-8", &["practitioner"]);
    let mut cw = cw.clone();
    let denied = cw
        .record_first_contact(with_token(
            pb::RecordFirstContactRequest {
                tenant: "worcs".into(),
                case_id: case.case_id.clone(),
                method: "home_visit".into(),
            },
            &someone,
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    // A role that may not, and another council's team manager: refused too.
    let first_contact = |token: String, tenant: &str, method: &str| {
        let mut cw = cw.clone();
        let req = pb::RecordFirstContactRequest {
            tenant: tenant.into(),
            case_id: case.case_id.clone(),
            method: method.into(),
        };
        async move { cw.record_first_contact(with_token(req, &token)).await }
    };
    let clerk = t.token("worcs", "bs-1", &["business_support"]);
    assert_eq!(
        first_contact(clerk, "worcs", "home_visit")
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    let staffs = t.token("staffs", "tm-9", &["team_manager"]);
    assert_eq!(
        first_contact(staffs, "worcs", "home_visit")
            .await
            .unwrap_err()
            .code(),
        tonic::Code::PermissionDenied
    );
    // A method not on the list: refused, naming the field.
    let bad = first_contact(lead.clone(), "worcs", "carrier_pigeon")
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("method"), "{}", bad.message());
    let contacted = cw
        .record_first_contact(with_token(
            pb::RecordFirstContactRequest {
                tenant: "worcs".into(),
                case_id: case.case_id.clone(),
                method: "home_visit".into(),
            },
            &lead,
        ))
        .await?
        .into_inner();
    let clock = contacted
        .timers
        .iter()
        .find(|t| t.kind == "first_contact")
        .expect("the first-contact clock");
    assert_eq!(clock.status, "cancelled");
    let entry = contacted
        .timeline
        .iter()
        .find(|e| e.kind == "first_contact")
        .expect("first contact on the timeline");
    assert_eq!(entry.actor, "person:fsw-7");
    Ok((t, case.case_id))
}

#[tokio::test]
async fn a_ready_case_is_offered_accepted_and_allocated_embedded() -> anyhow::Result<()> {
    journey(false).await.map(drop)
}

#[tokio::test]
async fn a_ready_case_is_offered_accepted_and_allocated_distributed() -> anyhow::Result<()> {
    journey(true).await.map(drop)
}
