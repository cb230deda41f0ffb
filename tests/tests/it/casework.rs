//! The front-door journeys end to end: a request for support becomes a case, consent is awaited
//! (chased, then closed, in working days on a clock the test moves), screening decides, and the
//! case ends ready for allocation, closed with advice, stepped up, or closed on withdrawal. Both
//! modes, through the real bus, databases and gRPC.
use chrono::{TimeZone, Utc};
use eh_platform::clock::ManualClock;
use eh_proto::casework::v1 as pb;
use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
use eh_proto::consent::v1::consent_service_client::ConsentServiceClient;
use eh_tests::{STAFFS_KEY, TestApp, WORCS_KEY, collect, referral, with_key, with_token};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);
/// Where an accepted case settles in these councils: allocation runs too, and with no directory
/// (no allocation settings here) no service can take it, so it waits on the council's list.
const SETTLED: &str = "waiting_for_provider";

async fn casework(t: &TestApp) -> anyhow::Result<CaseworkServiceClient<tonic::transport::Channel>> {
    Ok(CaseworkServiceClient::new(t.channel().await?))
}

/// Waits for the case of `reference` to reach a state in `states`, as the council's front door
/// sees it (the whole case: an upstream system sees only its referral's status).
async fn case_reaching(
    t: &TestApp,
    tenant: &str,
    reference: &str,
    states: &[&str],
) -> anyhow::Result<pb::Case> {
    let cw = casework(t).await?;
    let token = t.token(tenant, "front-door-reader", &["front_door"]);
    eh_testkit::eventually(
        WAIT,
        &format!("case of {reference} to be {states:?}"),
        || {
            let mut cw = cw.clone();
            let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
            let reference = reference.to_string();
            let tenant = tenant.to_string();
            let token = token.clone();
            async move {
                let cases = cw
                    .list_cases(with_token(
                        pb::ListCasesRequest {
                            tenant: tenant.clone(),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await?
                    .into_inner()
                    .cases;
                Ok(cases
                    .into_iter()
                    .find(|c| c.source_reference == reference && states.contains(&c.state)))
            }
        },
    )
    .await
}

fn transitions(c: &pb::Case) -> Vec<(String, String)> {
    c.timeline
        .iter()
        .filter(|e| e.kind == "transition")
        .map(|e| (e.from_state.clone(), e.to_state.clone()))
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

async fn consented_referral_becomes_ready_for_allocation(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let mut ready = t
        .watch(
            "casework",
            &format!("{}.worcs.casework.case_ready_for_allocation", t.ns()),
        )
        .await?;
    let doc = referral("CW-1", Some("priya@school.test"));
    t.publish_inbound("worcs", serde_json::to_vec(&doc)?, "cw-1")
        .await?;
    let got = collect(&mut ready, 1, WAIT).await?;
    assert_eq!(got.len(), 1, "one case_ready_for_allocation");
    let ev = pb::CaseReadyForAllocation::decode(got[0].payload.as_ref())?;
    let case_ref = ev.case.clone().unwrap_or_default();
    assert_eq!(case_ref.source_reference, "CW-1");
    assert_eq!(ev.needs, vec!["education", "mental_health"]);
    assert_eq!(ev.postcode, "DM1 4AB");

    let case = case_reaching(&t, "worcs", "CW-1", &[SETTLED]).await?;
    assert_eq!(case.case_id, case_ref.case_id);
    assert_eq!(
        transitions(&case),
        vec![
            pair("requested", "screening"),
            pair("screening", "ready_for_allocation"),
            pair("ready_for_allocation", SETTLED)
        ]
    );
    let kinds: Vec<&str> = case.timeline.iter().map(|e| e.kind.as_str()).collect();
    for k in ["opened", "screening_requested", "screening_decided"] {
        assert!(kinds.contains(&k), "timeline has {k}: {kinds:?}");
    }
    let decided = case
        .timeline
        .iter()
        .find(|e| e.kind == "screening_decided")
        .expect("screening step");
    assert!(
        decided.reason.contains("accepted_for_early_help") && decided.reason.contains("default-1"),
        "the outcome and the rule version are on the timeline: {}",
        decided.reason
    );
    // The screening clock was settled when screening ended: no breach to come.
    let screening_clock = case
        .timers
        .iter()
        .find(|x| x.kind == "screening_decision")
        .expect("a screening clock");
    assert_eq!(screening_clock.status, "cancelled");
    // Intake stored the decision with its rule version and reasons.
    let intake_db = t.db("intake").await?;
    let decisions = eh_intake::screening::decisions(&intake_db, "worcs", &case.referral_id).await?;
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].outcome, "accepted_for_early_help");
    assert_eq!(decisions[0].rule_version, "default-1");
    assert!(!decisions[0].decision.reasons.is_empty());
    assert_eq!(decisions[0].case_id, case.case_id);

    // The same referral again opens nothing new.
    t.publish_inbound("worcs", serde_json::to_vec(&doc)?, "cw-1-again")
        .await?;
    let mut cw = casework(&t).await?;
    let listed = cw
        .list_cases(with_key(
            pb::ListCasesRequest {
                tenant: "worcs".into(),
                ..Default::default()
            },
            WORCS_KEY,
        ))
        .await?
        .into_inner()
        .cases;
    assert_eq!(listed.len(), 1, "one case for one referral");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consented_referral_becomes_ready_for_allocation_embedded() -> anyhow::Result<()> {
    consented_referral_becomes_ready_for_allocation(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consented_referral_becomes_ready_for_allocation_distributed() -> anyhow::Result<()> {
    consented_referral_becomes_ready_for_allocation(true).await
}

/// Monday 14 December 2026, 10:00 GMT: the chase falls before Christmas, the close after it.
fn monday_before_christmas() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 14, 10, 0, 0)
        .single()
        .expect("date")
}

async fn no_consent_is_chased_then_closed(distributed: bool) -> anyhow::Result<()> {
    let clock = Arc::new(ManualClock::new(monday_before_christmas()));
    let mut t = TestApp::spawn_with_clock(distributed, clock.clone()).await?;
    let mut doc = referral("CW-NC", Some("priya@school.test"));
    doc["consent"] = serde_json::json!({"obtained": false});
    t.publish_inbound("worcs", serde_json::to_vec(&doc)?, "cw-nc")
        .await?;
    let case = case_reaching(&t, "worcs", "CW-NC", &["awaiting_consent"]).await?;
    let due = |kind: &str| {
        case.timers
            .iter()
            .find(|x| x.kind == kind)
            .map(|x| x.due_at.clone())
            .unwrap_or_default()
    };
    // 5 working days from Mon 14 Dec end with Mon 21 Dec: chased from the midnight after.
    assert_eq!(due("consent_chase"), "2026-12-22T00:00:00+00:00");
    // 20 working days skip Christmas Day, the Boxing Day substitute (Mon 28 Dec) and New Year's
    // Day: the 20th is Thu 14 Jan 2027.
    assert_eq!(due("consent_close"), "2027-01-15T00:00:00+00:00");

    let mut asked = t
        .watch(
            "casework",
            &format!("{}.worcs.casework.consent_requested", t.ns()),
        )
        .await?;
    // The clocks live in the database: they survive a restart.
    t.stop().await?;
    clock.advance(chrono::Duration::days(7) + chrono::Duration::hours(15)); // Tue 22 Dec 01:00
    t.start().await?;
    let got = collect(&mut asked, 1, WAIT).await?;
    assert_eq!(got.len(), 1, "the family is asked for consent once");
    let ev = pb::ConsentRequested::decode(got[0].payload.as_ref())?;
    assert_eq!(ev.close_due_at, "2027-01-15T00:00:00+00:00");
    let names: Vec<(&str, bool)> = ev
        .family
        .iter()
        .map(|c| (c.relationship.as_str(), c.safe_to_contact))
        .collect();
    assert_eq!(names, vec![("mother", true), ("father", false)]);
    let chased = case_reaching(&t, "worcs", "CW-NC", &["awaiting_consent"]).await?;
    assert!(chased.timeline.iter().any(|e| e.kind == "consent_chased"));

    clock.advance(chrono::Duration::days(24)); // Sat 16 Jan 2027
    let closed = case_reaching(&t, "worcs", "CW-NC", &["closed_no_consent"]).await?;
    assert_eq!(
        transitions(&closed),
        vec![
            pair("requested", "awaiting_consent"),
            pair("awaiting_consent", "closed_no_consent")
        ]
    );
    // Each clock fired exactly once.
    let fired: Vec<(&str, &str)> = closed
        .timers
        .iter()
        .map(|x| (x.kind.as_str(), x.status.as_str()))
        .collect();
    assert!(fired.contains(&("consent_chase", "fired")));
    assert!(fired.contains(&("consent_close", "fired")));
    assert_eq!(
        closed
            .timeline
            .iter()
            .filter(|e| e.kind == "consent_chased")
            .count(),
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_consent_is_chased_then_closed_embedded() -> anyhow::Result<()> {
    no_consent_is_chased_then_closed(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_consent_is_chased_then_closed_distributed() -> anyhow::Result<()> {
    no_consent_is_chased_then_closed(true).await
}

async fn significant_harm_is_stepped_up(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let mut up = t
        .watch(
            "casework",
            &format!("{}.worcs.casework.case_stepped_up", t.ns()),
        )
        .await?;
    let mut doc = referral("CW-SH", Some("priya@school.test"));
    doc["significant_harm_risk"] = serde_json::json!(true);
    // Whatever else is missing: no consent either.
    doc["consent"] = serde_json::json!({"obtained": false});
    t.publish_inbound("worcs", serde_json::to_vec(&doc)?, "cw-sh")
        .await?;
    let got = collect(&mut up, 1, WAIT).await?;
    assert_eq!(got.len(), 1);
    let ev = pb::CaseSteppedUp::decode(got[0].payload.as_ref())?;
    assert!(ev.significant_harm_risk);
    let case = case_reaching(&t, "worcs", "CW-SH", &["stepped_up"]).await?;
    assert_eq!(transitions(&case), vec![pair("requested", "stepped_up")]);
    assert!(
        case.timers.is_empty(),
        "no consent clocks for a stepped-up case: {:?}",
        case.timers
    );
    // The front door is told at once, by email to the council's mailbox.
    let mail = eh_testkit::eventually(WAIT, "the front door's email", || {
        let m = t.smtp.messages();
        async move {
            Ok(m.into_iter()
                .find(|m| m.to.iter().any(|to| to == "front-door@worcs.test")))
        }
    })
    .await?;
    let text = String::from_utf8_lossy(&mail.raw);
    assert!(text.contains(&case.case_id), "the case is named: {text}");
    assert!(!text.contains("Leo"), "no child's name in an email");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn significant_harm_is_stepped_up_embedded() -> anyhow::Result<()> {
    significant_harm_is_stepped_up(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn significant_harm_is_stepped_up_distributed() -> anyhow::Result<()> {
    significant_harm_is_stepped_up(true).await
}

async fn out_of_criteria_gets_advice(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let mut doc = referral("CW-ADV", Some("priya@school.test"));
    doc["needs"] = serde_json::json!(["education"]);
    t.publish_inbound("worcs", serde_json::to_vec(&doc)?, "cw-adv")
        .await?;
    let case = case_reaching(&t, "worcs", "CW-ADV", &["closed_advice_given"]).await?;
    assert_eq!(
        transitions(&case),
        vec![
            pair("requested", "screening"),
            pair("screening", "closed_advice_given")
        ]
    );
    let closing = case.timeline.last().expect("a closing step");
    assert!(
        closing.reason.contains("Tier 2"),
        "the advice is recorded: {}",
        closing.reason
    );
    // ...and sent to the referrer.
    let mail = t
        .smtp
        .wait_for_template("screening_outcome", 1, WAIT)
        .await?
        .remove(0);
    assert_eq!(mail.to, vec!["priya@school.test".to_string()]);
    let parsed = mail_parser::MessageParser::default()
        .parse(&mail.raw)
        .expect("RFC 5322 message");
    let body = parsed
        .body_text(0)
        .unwrap_or_default()
        .replace(['\r', '\n'], " ");
    assert!(body.contains("Tier 2"), "{body}");
    assert!(!body.contains("Leo"), "no child's name in an email");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_criteria_gets_advice_embedded() -> anyhow::Result<()> {
    out_of_criteria_gets_advice(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_criteria_gets_advice_distributed() -> anyhow::Result<()> {
    out_of_criteria_gets_advice(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_down_with_consent_skips_screening() -> anyhow::Result<()> {
    let t = TestApp::spawn(false).await?;
    let mut doc = referral("CW-SD", None);
    doc["route"] = serde_json::json!("step_down");
    doc["referrer"]["agency"] = serde_json::json!("social_care");
    t.publish_inbound("worcs", serde_json::to_vec(&doc)?, "cw-sd")
        .await?;
    let case = case_reaching(&t, "worcs", "CW-SD", &[SETTLED]).await?;
    assert_eq!(case.route, "step_down");
    assert_eq!(
        transitions(&case),
        vec![
            pair("requested", "ready_for_allocation"),
            pair("ready_for_allocation", SETTLED)
        ]
    );
    assert!(
        !case
            .timeline
            .iter()
            .any(|e| e.kind == "screening_requested")
    );
    Ok(())
}

async fn withdrawal_closes_the_case(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    t.publish_inbound(
        "worcs",
        serde_json::to_vec(&referral("CW-WD", None))?,
        "cw-wd",
    )
    .await?;
    let case = case_reaching(&t, "worcs", "CW-WD", &[SETTLED]).await?;
    let mut consent = ConsentServiceClient::new(t.channel().await?);
    // A practitioner reads the family's consent (an upstream system may not).
    let reader = t.token("worcs", "eh-worker-1", &["practitioner"]);
    let ledger = eh_testkit::eventually(WAIT, "the referral's consent record", || {
        let mut c = consent.clone();
        let family = case.family_id.clone();
        let reader = reader.clone();
        async move {
            let l = c
                .list_consent(with_token(
                    eh_proto::consent::v1::ListConsentRequest {
                        tenant: "worcs".into(),
                        family_id: family,
                    },
                    &reader,
                ))
                .await?
                .into_inner();
            Ok((!l.records.is_empty()).then_some(l))
        }
    })
    .await?;
    let token = t.token("worcs", "eh-worker-1", &["practitioner"]);
    consent
        .withdraw_consent(with_token(
            eh_proto::consent::v1::WithdrawConsentRequest {
                tenant: "worcs".into(),
                record_id: ledger.records[0].record_id.clone(),
                reason: "the family no longer wants support".into(),
            },
            &token,
        ))
        .await?;
    let closed = case_reaching(&t, "worcs", "CW-WD", &["closed_withdrawn"]).await?;
    let last = transitions(&closed).pop().expect("a transition");
    assert_eq!(last, pair(SETTLED, "closed_withdrawn"));
    assert!(
        closed
            .timeline
            .last()
            .is_some_and(|e| e.reason.contains("no longer wants support"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_closes_the_case_embedded() -> anyhow::Result<()> {
    withdrawal_closes_the_case(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_closes_the_case_distributed() -> anyhow::Result<()> {
    withdrawal_closes_the_case(true).await
}

/// Practitioners' steps: roles, illegal transitions, other tenants — each refusal audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn practitioner_steps_are_checked() -> anyhow::Result<()> {
    let t = TestApp::spawn(true).await?;
    t.publish_inbound(
        "worcs",
        serde_json::to_vec(&referral("CW-ACT", None))?,
        "cw-act",
    )
    .await?;
    t.publish_inbound(
        "staffs",
        serde_json::to_vec(&referral("CW-ST", None))?,
        "cw-st",
    )
    .await?;
    let case = case_reaching(&t, "worcs", "CW-ACT", &[SETTLED]).await?;
    let theirs = case_reaching(&t, "staffs", "CW-ST", &[SETTLED]).await?;
    let mut cw = casework(&t).await?;
    let close = |outcome: &str, token: &str, tenant: &str, case_id: &str| {
        with_token(
            pb::CloseCaseRequest {
                tenant: tenant.into(),
                case_id: case_id.into(),
                outcome: outcome.into(),
                reason: "reviewed by the team".into(),
            },
            token,
        )
    };
    let manager = t.token("worcs", "manager-1", &["team_manager"]);
    let worker = t.token("worcs", "worker-1", &["practitioner"]);
    let staffs_manager = t.token("staffs", "manager-9", &["team_manager"]);

    // No principal.
    let e = cw
        .get_case(pb::GetCaseRequest {
            tenant: "worcs".into(),
            case_id: case.case_id.clone(),
        })
        .await
        .expect_err("no credentials");
    assert_eq!(e.code(), Code::Unauthenticated);
    // A practitioner may read but not close.
    let e = cw
        .close_case(close("closed_withdrawn", &worker, "worcs", &case.case_id))
        .await
        .expect_err("wrong role");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // An upstream system may read, never act.
    let by_key = with_key(
        pb::StepUpRequest {
            tenant: "worcs".into(),
            case_id: case.case_id.clone(),
            reason: "x".into(),
        },
        WORCS_KEY,
    );
    assert_eq!(
        cw.step_up(by_key).await.expect_err("system").code(),
        Code::PermissionDenied
    );
    // Another council's manager: refused, and neither reads nor lists the case.
    let e = cw
        .close_case(close(
            "closed_withdrawn",
            &staffs_manager,
            "worcs",
            &case.case_id,
        ))
        .await
        .expect_err("other tenant");
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = cw
        .get_case(with_token(
            pb::GetCaseRequest {
                tenant: "staffs".into(),
                case_id: case.case_id.clone(),
            },
            &staffs_manager,
        ))
        .await
        .expect_err("not theirs");
    assert_eq!(
        e.code(),
        Code::NotFound,
        "another tenant's case id finds nothing"
    );
    let listed = cw
        .list_cases(with_token(
            pb::ListCasesRequest {
                tenant: "staffs".into(),
                ..Default::default()
            },
            &staffs_manager,
        ))
        .await?
        .into_inner()
        .cases;
    let ids: Vec<&str> = listed.iter().map(|c| c.case_id.as_str()).collect();
    assert_eq!(ids, vec![theirs.case_id.as_str()]);
    // The state machine refuses what it must, naming both states.
    let e = cw
        .close_case(close("closed_no_consent", &manager, "worcs", &case.case_id))
        .await
        .expect_err("illegal");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains(SETTLED) && e.message().contains("closed_no_consent"),
        "{}",
        e.message()
    );
    // Bad arguments: field violations, nothing changed.
    let e = cw
        .get_case(with_token(
            pb::GetCaseRequest {
                tenant: "nosuch".into(),
                case_id: case.case_id.clone(),
            },
            &manager,
        ))
        .await
        .expect_err("unknown tenant");
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = cw
        .list_cases(with_token(
            pb::ListCasesRequest {
                tenant: "worcs".into(),
                state: "closed".into(),
                ..Default::default()
            },
            &manager,
        ))
        .await
        .expect_err("unknown state");
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = cw
        .step_up(with_token(
            pb::StepUpRequest {
                tenant: "worcs".into(),
                case_id: case.case_id.clone(),
                reason: "  ".into(),
            },
            &manager,
        ))
        .await
        .expect_err("no reason");
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = cw
        .step_up(with_token(
            pb::StepUpRequest {
                tenant: "worcs".into(),
                case_id: "no-such-case".into(),
                reason: "risk".into(),
            },
            &manager,
        ))
        .await
        .expect_err("unknown case");
    assert_eq!(e.code(), Code::NotFound);
    // Unknown outcome: a field violation.
    let e = cw
        .close_case(close("closed_forever", &manager, "worcs", &case.case_id))
        .await
        .expect_err("bad outcome");
    assert_eq!(e.code(), Code::InvalidArgument);
    // Allowed: the manager steps it up; then nothing more is possible.
    let up = cw
        .step_up(with_token(
            pb::StepUpRequest {
                tenant: "worcs".into(),
                case_id: case.case_id.clone(),
                reason: "new information from the school: risk has increased".into(),
            },
            &manager,
        ))
        .await?
        .into_inner();
    assert_eq!(up.state, "stepped_up");
    let last = up.timeline.last().expect("step");
    assert_eq!(last.actor, "person:manager-1");
    let e = cw
        .close_case(close("closed_withdrawn", &manager, "worcs", &case.case_id))
        .await
        .expect_err("stepped up is final here");
    assert_eq!(e.code(), Code::FailedPrecondition);
    // Every refusal is in the audit trail.
    let audit = eh_auth::Auditor::new(t.db("casework").await?);
    let entries = audit.entries("worcs").await?;
    let denied = entries.iter().filter(|e| e.3 == "denied").count();
    assert!(denied >= 3, "denials audited: {entries:?}");
    assert_eq!(audit.verify().await?, None, "the trail is intact");
    Ok(())
}

/// The demo council's examples, each ending where the front door sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_each_journey() -> anyhow::Result<()> {
    let t = TestApp::spawn(false).await?;
    let lines = earlyhelp::demo::run(t.app()).await?;
    let line = |starts: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(starts))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        line("a school's referral").ends_with("is allocating"),
        "{lines:#?}"
    );
    assert!(line("a step-down").ends_with("is allocating"), "{lines:#?}");
    assert!(
        lines[0].starts_with("directory imported") && lines[0].contains("5 services"),
        "{lines:#?}"
    );
    assert!(
        line("a nursery's referral").ends_with("is stepped_up"),
        "{lines:#?}"
    );
    assert!(line("a request with a single need").ends_with("is closed_advice_given"));
    assert!(line("a referral without consent").contains("rejected"));
    assert!(line("not JSON").contains("rejected"));
    Ok(())
}

/// Two councils side by side: the same source reference in each, each its own cases, events,
/// queries and mailboxes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_councils_side_by_side() -> anyhow::Result<()> {
    let t = TestApp::spawn(true).await?;
    let mut events = t
        .watch("casework", &format!("{}.*.casework.>", t.ns()))
        .await?;
    for (tenant, harm) in [
        ("worcs", false),
        ("staffs", false),
        ("worcs", true),
        ("staffs", true),
    ] {
        let reference = if harm { "TWIN-HARM" } else { "TWIN-1" };
        let mut doc = referral(reference, Some(&format!("referrer@{tenant}-school.test")));
        doc["significant_harm_risk"] = serde_json::json!(harm);
        if harm {
            // A different family, so it opens its own case.
            doc["children"] = serde_json::json!([{"given_name": "Ivy", "family_name": "Stone",
                "date_of_birth": "2019-01-09"}]);
            doc["family_members"] = serde_json::json!([]);
        }
        t.publish_inbound(
            tenant,
            serde_json::to_vec(&doc)?,
            &format!("{tenant}-{reference}"),
        )
        .await?;
    }
    let worcs_ready = case_reaching(&t, "worcs", "TWIN-1", &[SETTLED]).await?;
    let staffs_ready = case_reaching(&t, "staffs", "TWIN-1", &[SETTLED]).await?;
    let worcs_up = case_reaching(&t, "worcs", "TWIN-HARM", &["stepped_up"]).await?;
    let staffs_up = case_reaching(&t, "staffs", "TWIN-HARM", &["stepped_up"]).await?;
    assert_ne!(worcs_ready.case_id, staffs_ready.case_id);
    assert_ne!(worcs_ready.family_id, staffs_ready.family_id);
    // Queries: each council sees its own two cases only.
    let mut cw = casework(&t).await?;
    for (tenant, key, mine) in [
        ("worcs", WORCS_KEY, [&worcs_ready, &worcs_up]),
        ("staffs", STAFFS_KEY, [&staffs_ready, &staffs_up]),
    ] {
        let mut listed: Vec<String> = cw
            .list_cases(with_key(
                pb::ListCasesRequest {
                    tenant: tenant.into(),
                    ..Default::default()
                },
                key,
            ))
            .await?
            .into_inner()
            .cases
            .into_iter()
            .map(|c| c.case_id)
            .collect();
        listed.sort();
        let mut want: Vec<String> = mine.iter().map(|c| c.case_id.clone()).collect();
        want.sort();
        assert_eq!(listed, want, "{tenant}");
    }
    // Events: each on its council's subject, with its council's envelope, about its own cases.
    let got = collect(&mut events, 8, WAIT).await?;
    assert!(
        got.len() >= 8,
        "state changes, step-ups, readiness: {}",
        got.len()
    );
    for m in &got {
        let tenant = eh_bus::subjects::tenant_of(&t.ns(), &m.subject)
            .expect("tenant")
            .to_string();
        assert_eq!(m.envelope().expect("envelope").tenant, tenant);
        let case_id = pb::CaseStateChanged::decode(m.payload.as_ref())
            .ok()
            .and_then(|e| e.case)
            .map(|c| c.case_id)
            .unwrap_or_default();
        let theirs = if tenant == "worcs" {
            [&staffs_ready.case_id, &staffs_up.case_id]
        } else {
            [&worcs_ready.case_id, &worcs_up.case_id]
        };
        assert!(
            !theirs.contains(&&case_id),
            "{} carries another council's case",
            m.subject
        );
    }
    // Mail: each front door hears of its own step-up only.
    for (mailbox, mine, theirs) in [
        ("front-door@worcs.test", &worcs_up, &staffs_up),
        ("front-door@staffs.test", &staffs_up, &worcs_up),
    ] {
        let mails = eh_testkit::eventually(WAIT, mailbox, || {
            let m = t.smtp.messages();
            async move {
                let to_box: Vec<String> = m
                    .into_iter()
                    .filter(|m| m.to.iter().any(|to| to == mailbox))
                    .map(|m| String::from_utf8_lossy(&m.raw).to_string())
                    .collect();
                Ok((!to_box.is_empty()).then_some(to_box))
            }
        })
        .await?;
        assert_eq!(mails.len(), 1, "{mailbox}");
        assert!(mails[0].contains(&mine.case_id));
        assert!(!mails[0].contains(&theirs.case_id));
    }
    Ok(())
}
