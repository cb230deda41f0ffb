//! The plan, outcomes, closure and follow-up end to end, in both modes, on a clock the test moves:
//! from a case allocated through the real journey (allocation's test), the lead opens the
//! assessment, the school, the police and CAMHS contribute, the lead finalises it; the lead sets
//! the plan (a practitioner's action, the family's own, CAMHS's mental-health action), which the
//! police read without the mental-health action (withheld, with the reason); the owner updates
//! their action; two weeks on both unfinished actions are overdue and reminded once each (the
//! teacher at their work mailbox, the family's through the lead's), never twice; version 2 of the
//! plan re-dates the family's action and version 1 stays readable; start scores, a review (the case
//! is in review), the closure with every Supporting Families outcome met (the case is
//! `closed_outcomes_met`, distance travelled shown); six months on, the lead is asked, answers that
//! the family needs help again, and the front door is told. Every denial path on the way: another
//! council, a practitioner who is not the lead, an action's non-owner, bad input field by field,
//! anything after closure, a follow-up before it is due or twice.
use eh_platform::Clock;
use eh_platform::clock::ManualClock;
use eh_proto::assessment::v1 as pb;
use eh_proto::assessment::v1::assessment_service_client::AssessmentServiceClient;
use eh_proto::casework::v1 as cw;
use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
use eh_proto::reporting::v1 as rp;
use eh_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use eh_tests::{TestApp, with_token};
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);

fn section(category: &str, needs: &[&str]) -> pb::SignsOfSafety {
    pb::SignsOfSafety {
        category: category.into(),
        worries: vec!["what worries us".into()],
        needs: needs
            .iter()
            .map(|h| pb::Need {
                headline: (*h).into(),
                detail: String::new(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Waits until casework has the case in `state`; the case.
async fn case_in(t: &TestApp, case_id: &str, state: &str) -> anyhow::Result<cw::Case> {
    let client = CaseworkServiceClient::new(t.channel().await?);
    let manager = t.token("worcs", "tm-1", &["team_manager"]);
    eh_testkit::eventually(WAIT, &format!("the case {state}"), || {
        let (mut client, manager) = (client.clone(), manager.clone());
        let req = cw::GetCaseRequest {
            tenant: "worcs".into(),
            case_id: case_id.into(),
        };
        async move {
            let c = client
                .get_case(with_token(req, &manager))
                .await?
                .into_inner();
            Ok((c.state == state).then_some(c))
        }
    })
    .await
}

fn action(
    what: &str,
    kind: &str,
    owner: &str,
    email: &str,
    headline: &str,
    due: (&str, u32),
) -> pb::PlannedAction {
    pb::PlannedAction {
        action_id: String::new(),
        what: what.into(),
        owner_kind: kind.into(),
        owner: owner.into(),
        owner_email: email.into(),
        due_date: due.0.into(),
        due_in_working_days: due.1,
        category: String::new(),
        headline: headline.into(),
    }
}

fn outcome(headline: &str, words: &str) -> pb::PlannedOutcome {
    pb::PlannedOutcome {
        headline: headline.into(),
        outcome: words.into(),
        category: String::new(),
    }
}

fn score(headline: &str, n: u32) -> pb::Score {
    pb::Score {
        headline: headline.into(),
        score: n,
        note: String::new(),
    }
}

/// The assessment, opened by the lead once assessment knows them, with three agencies'
/// sections, finalised.
async fn assessed(
    t: &TestApp,
    api: &mut AssessmentServiceClient<Channel>,
    case_id: &str,
) -> anyhow::Result<()> {
    let lead = t.token_of("worcs", "fsw-7", &["practitioner"], "worcs-cc");
    // Only a step-down carries an assessment over: this case came by another route.
    let refused = eh_testkit::eventually(WAIT, "the lead known", || {
        let mut api = api.clone();
        let req = pb::OpenAssessmentRequest {
            tenant: "worcs".into(),
            case_id: case_id.into(),
            carried_over: vec![pb::CarriedSection {
                body: Some(section("social_care", &["education"])),
                source_reference: "CIN-1".into(),
                assessed_on: "2026-10-01".into(),
                assessed_by: "social worker".into(),
            }],
        };
        let lead = lead.clone();
        async move {
            match api.open_assessment(with_token(req, &lead)).await {
                Err(s) if s.message().contains("no lead practitioner") => Ok(None),
                other => Ok(Some(other)),
            }
        }
    })
    .await?;
    let refused = refused.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("stepped down"),
        "{}",
        refused.message()
    );
    let opened = eh_testkit::eventually(WAIT, "the lead known", || {
        let mut api = api.clone();
        let req = pb::OpenAssessmentRequest {
            tenant: "worcs".into(),
            case_id: case_id.into(),
            carried_over: vec![],
        };
        let lead = lead.clone();
        async move {
            match api.open_assessment(with_token(req, &lead)).await {
                Ok(a) => Ok(Some(a.into_inner())),
                Err(s) if s.code() == Code::FailedPrecondition => Ok(None),
                Err(s) => Err(s.into()),
            }
        }
    })
    .await?;
    for (who, agency, body) in [
        (
            "teacher-1",
            "education",
            section("education", &["education"]),
        ),
        ("pc-1", "police", section("police", &["crime"])),
        (
            "camhs-1",
            "health",
            section("mental_health", &["mental_health"]),
        ),
    ] {
        let token = t.token_of("worcs", who, &["practitioner"], agency);
        api.add_contribution(with_token(
            pb::AddContributionRequest {
                tenant: "worcs".into(),
                assessment_id: opened.assessment_id.clone(),
                body: Some(body),
            },
            &token,
        ))
        .await?;
    }
    api.finalise_assessment(with_token(
        pb::FinaliseAssessmentRequest {
            tenant: "worcs".into(),
            assessment_id: opened.assessment_id.clone(),
        },
        &lead,
    ))
    .await?;
    case_in(t, case_id, "assessed").await?;
    Ok(())
}

async fn plan_to_follow_up(distributed: bool) -> anyhow::Result<()> {
    let (mut t, case_id) = crate::allocation::journey(distributed).await?;
    // From here on the clock is the test's.
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    t.stop().await?;
    t.clock = clock.clone();
    t.start().await?;
    let api = AssessmentServiceClient::new(t.channel().await?);
    let lead = t.token_of("worcs", "fsw-7", &["practitioner"], "worcs-cc");
    let teacher = t.token_of("worcs", "teacher-1", &["practitioner"], "education");
    let police = t.token_of("worcs", "pc-1", &["practitioner"], "police");
    let staffs = t.token("staffs", "tm-9", &["team_manager"]);
    let today = eh_workdays::uk_local_date(clock.now());
    let in_three_days = (today + chrono::Days::new(3)).to_string();

    let plan_v1 = |what_changes: &str| pb::SetPlanRequest {
        tenant: "worcs".into(),
        case_id: case_id.clone(),
        outcomes: vec![
            outcome("education", "Sam goes to school every day"),
            outcome("crime", "No more police call-outs"),
        ],
        actions: vec![
            action(
                "Weekly attendance check-in",
                "practitioner",
                "teacher-1",
                "teacher-1@school.example",
                "education",
                ("", 5),
            ),
            action(
                "Agree a morning routine",
                "family",
                "person-mother",
                "",
                "crime",
                (&in_three_days, 0),
            ),
            action(
                "CAMHS assessment appointment",
                "practitioner",
                "camhs-1",
                "camhs-1@nhs.example",
                "mental_health",
                ("", 20),
            ),
        ],
        what_changes: what_changes.into(),
        lead_email: "fsw-7@fsn.example".into(),
    };
    let set = |req: pb::SetPlanRequest, token: String| {
        let mut api = api.clone();
        async move {
            api.set_plan(with_token(req, &token))
                .await
                .map(tonic::Response::into_inner)
        }
    };

    // The plan follows the assessment: refused before it is finalised.
    let early = eh_testkit::eventually(WAIT, "the lead known", || {
        let set = set(plan_v1(""), lead.clone());
        async move {
            match set.await {
                Err(s) if s.message().contains("no lead practitioner") => Ok(None),
                other => Ok(Some(other)),
            }
        }
    })
    .await?;
    assert_eq!(early.unwrap_err().code(), Code::FailedPrecondition);
    assessed(&t, &mut api.clone(), &case_id).await?;

    // Bad input, field by field, nothing written.
    let mut bad = plan_v1("");
    bad.outcomes[0].headline = "weather".into();
    bad.actions[0].owner_email = "not-a-mailbox".into();
    bad.actions[1].due_date = "tomorrow".into();
    bad.actions[2].due_in_working_days = 0;
    bad.lead_email = "lead".into();
    let e = set(bad, lead.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    for field in [
        "outcomes[0].headline",
        "actions[0].owner_email",
        "actions[1].due_date",
        "actions[2].due_date",
        "lead_email",
    ] {
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    // Only the lead (or a team manager) sets it; never another council.
    assert_eq!(
        set(plan_v1(""), teacher.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        set(plan_v1(""), staffs.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let v1 = set(plan_v1(""), lead.clone()).await?;
    assert_eq!(v1.version.as_ref().map(|v| v.version), Some(1));
    assert_eq!(v1.actions.len(), 3);
    assert!(v1.actions.iter().all(|a| a.status == "open" && !a.overdue));
    let family_action = v1
        .actions
        .iter()
        .find(|a| a.owner_kind == "family")
        .expect("the family's action")
        .clone();
    assert_eq!(family_action.due_date, in_three_days);
    assert_eq!(family_action.category, "police", "crime's category");
    let teacher_action = v1.actions[0].clone();
    case_in(&t, &case_id, "plan_agreed").await?;

    // The police read the plan without the mental-health action, told what and why; audited.
    let mut read = api.clone();
    let seen = read
        .get_plan(with_token(
            pb::GetPlanRequest {
                tenant: "worcs".into(),
                case_id: case_id.clone(),
                version: 0,
            },
            &police,
        ))
        .await?
        .into_inner();
    let headlines: Vec<&str> = seen.actions.iter().map(|a| a.headline.as_str()).collect();
    assert_eq!(headlines, ["education", "crime"]);
    assert_eq!(seen.withheld.len(), 1, "{:?}", seen.withheld);
    assert_eq!(seen.withheld[0].what, "an action of the plan");
    assert!(seen.withheld[0].reason.contains("police"));
    let trail = eh_auth::Auditor::new(t.db("assessment").await?)
        .entries("worcs")
        .await?;
    assert!(
        trail.iter().any(|e| e.0 == "person:pc-1"
            && e.1 == "GetPlan"
            && e.3 == "allowed"
            && e.4.contains("withheld [")),
        "the read is on the audit trail"
    );
    // An agency with no part in the case: not found, on the record.
    let housing = t.token_of("worcs", "ho-1", &["practitioner"], "housing");
    let e = read
        .get_plan(with_token(
            pb::GetPlanRequest {
                tenant: "worcs".into(),
                case_id: case_id.clone(),
                version: 0,
            },
            &housing,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Progress: the owner moves their action on; someone else may not.
    let update = |token: String, id: String, status: &str| {
        let mut api = api.clone();
        let req = pb::UpdateActionRequest {
            tenant: "worcs".into(),
            action_id: id,
            status: status.into(),
            note: "started".into(),
        };
        async move {
            api.update_action(with_token(req, &token))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    assert_eq!(
        update(police.clone(), teacher_action.action_id.clone(), "done")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        update(
            teacher.clone(),
            teacher_action.action_id.clone(),
            "finished"
        )
        .await
        .unwrap_err()
        .code(),
        Code::InvalidArgument
    );
    let moved = update(
        teacher.clone(),
        teacher_action.action_id.clone(),
        "in_progress",
    )
    .await?;
    assert_eq!(moved.status, "in_progress");

    // Two weeks on: both unfinished actions of the teacher's and the family's are overdue; each
    // owner is reminded once (the family's through the lead), CAMHS's is not due yet.
    clock.advance(chrono::Duration::days(14));
    let reminders = t.smtp.wait_for_template("action_overdue", 2, WAIT).await?;
    let mut to: Vec<&str> = reminders.iter().map(|m| m.to[0].as_str()).collect();
    to.sort_unstable();
    assert_eq!(to, ["fsw-7@fsn.example", "teacher-1@school.example"]);
    for m in &reminders {
        let text = String::from_utf8_lossy(&m.raw).to_string();
        assert!(text.contains(&case_id), "{text}");
        for private in ["routine", "attendance", "Dana", "Marsh"] {
            assert!(!text.contains(private), "{private} in {text}");
        }
    }
    let mine = api
        .clone()
        .list_actions(with_token(
            pb::ListActionsRequest {
                tenant: "worcs".into(),
                case_id: String::new(),
                overdue_only: false,
            },
            &teacher,
        ))
        .await?
        .into_inner();
    assert_eq!(mine.actions.len(), 1);
    assert!(mine.actions[0].overdue && !mine.actions[0].reminded_at.is_empty());
    let overdue = api
        .clone()
        .list_actions(with_token(
            pb::ListActionsRequest {
                tenant: "worcs".into(),
                case_id: case_id.clone(),
                overdue_only: true,
            },
            &lead,
        ))
        .await?
        .into_inner();
    assert_eq!(overdue.actions.len(), 2, "{:?}", overdue.actions);
    clock.advance(chrono::Duration::days(1));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        t.smtp.of_template("action_overdue").len(),
        2,
        "reminded once per due date"
    );

    // Version 2 re-dates the family's action; version 1 stays as it was.
    let mut v2 = plan_v1(" ");
    assert_eq!(
        set(v2.clone(), lead.clone()).await.unwrap_err().code(),
        Code::InvalidArgument,
        "version 2 says what changes"
    );
    let new_date = (eh_workdays::uk_local_date(clock.now()) + chrono::Days::new(10)).to_string();
    for (a, was) in v2.actions.iter_mut().zip(&v1.actions) {
        a.action_id.clone_from(&was.action_id);
    }
    v2.actions[1].due_date.clone_from(&new_date);
    v2.what_changes = "more time for the morning routine".into();
    let v2 = set(v2, lead.clone()).await?;
    assert_eq!(v2.versions.len(), 2);
    assert_eq!(v2.actions[0].status, "in_progress", "progress carries over");
    assert_eq!(v2.actions[1].due_date, new_date);
    assert!(!v2.actions[1].overdue);
    let v1_again = read
        .get_plan(with_token(
            pb::GetPlanRequest {
                tenant: "worcs".into(),
                case_id: case_id.clone(),
                version: 1,
            },
            &lead,
        ))
        .await?
        .into_inner();
    assert_eq!(v1_again.actions[1].due_date, in_three_days);

    // Scores at the start and at a review; the case is in review.
    let mut out = api.clone();
    let e = out
        .record_scores(with_token(
            pb::RecordScoresRequest {
                tenant: "worcs".into(),
                case_id: case_id.clone(),
                stage: "start".into(),
                scores: vec![score("education", 11)],
            },
            &lead,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("scores[0].score"), "{}", e.message());
    out.record_scores(with_token(
        pb::RecordScoresRequest {
            tenant: "worcs".into(),
            case_id: case_id.clone(),
            stage: "start".into(),
            scores: vec![
                score("education", 3),
                score("crime", 2),
                score("mental_health", 4),
            ],
        },
        &lead,
    ))
    .await?;
    out.record_review(with_token(
        pb::RecordReviewRequest {
            tenant: "worcs".into(),
            case_id: case_id.clone(),
            summary: "Attendance up; no call-outs this month".into(),
            category: "education".into(),
            scores: vec![score("education", 6)],
        },
        &lead,
    ))
    .await?;
    case_in(&t, &case_id, "in_review").await?;

    // Only the lead (or a team manager) records scores and reviews; an agency with no part in
    // the case reads neither the outcomes nor the case's actions (not found, on the record).
    let e = out
        .record_scores(with_token(
            pb::RecordScoresRequest {
                tenant: "worcs".into(),
                case_id: case_id.clone(),
                stage: "review".into(),
                scores: vec![score("education", 5)],
            },
            &teacher,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = out
        .record_review(with_token(
            pb::RecordReviewRequest {
                tenant: "worcs".into(),
                case_id: case_id.clone(),
                summary: "from someone else".into(),
                category: "education".into(),
                scores: vec![],
            },
            &staffs,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = out
        .get_outcomes(with_token(
            pb::GetOutcomesRequest {
                tenant: "worcs".into(),
                case_id: case_id.clone(),
            },
            &housing,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = out
        .list_actions(with_token(
            pb::ListActionsRequest {
                tenant: "worcs".into(),
                case_id: case_id.clone(),
                overdue_only: false,
            },
            &housing,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let trail = eh_auth::Auditor::new(t.db("assessment").await?)
        .entries("worcs")
        .await?;
    for method in ["RecordScores", "GetOutcomes", "ListActions"] {
        assert!(
            trail.iter().any(|e| e.1 == method && e.3 == "denied"),
            "{method}: the refusal is on the record"
        );
    }

    // Closing: every headline problem the assessment identified needs its outcome.
    let close = |outcomes: Vec<(&str, bool)>| pb::CloseWithOutcomesRequest {
        tenant: "worcs".into(),
        case_id: case_id.clone(),
        outcomes: outcomes
            .into_iter()
            .map(|(h, met)| pb::SupportingFamiliesOutcome {
                headline: h.into(),
                met,
                evidence: "school records; police log".into(),
            })
            .collect(),
        impact: "Sam is in school every day and the house is calmer".into(),
        support_given: "Parenting course, school liaison, CAMHS".into(),
        step_down_to: vec![],
        scores: vec![score("education", 9), score("crime", 8)],
    };
    let e = out
        .close_with_outcomes(with_token(close(vec![("education", true)]), &lead))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("crime") && e.message().contains("mental_health"),
        "{}",
        e.message()
    );
    assert_eq!(
        out.close_with_outcomes(with_token(
            close(vec![
                ("education", true),
                ("crime", true),
                ("mental_health", true)
            ]),
            &teacher
        ))
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    let closed = out
        .close_with_outcomes(with_token(
            close(vec![
                ("education", true),
                ("crime", true),
                ("mental_health", true),
            ]),
            &lead,
        ))
        .await?
        .into_inner();
    let c = closed.closure.as_ref().expect("the closure");
    assert_eq!(c.kind, "outcomes_met");
    assert!(!c.follow_up_due.is_empty() && !c.follow_up_asked);
    let education = closed
        .distance
        .iter()
        .find(|d| d.headline == "education")
        .expect("education's distance travelled");
    assert_eq!(
        (education.first, education.latest, education.change),
        (3, 9, 6)
    );
    let case = case_in(&t, &case_id, "closed_outcomes_met").await?;
    let states: Vec<&str> = case
        .timeline
        .iter()
        .filter(|e| e.kind == "transition")
        .map(|e| e.to_state.as_str())
        .collect();
    for s in ["plan_agreed", "in_review", "closed_outcomes_met"] {
        assert!(states.contains(&s), "{s} in {states:?}");
    }
    // The council's report counts the closure and the distance travelled, from the events alone.
    let reports = ReportingServiceClient::new(t.channel().await?);
    let manager = t.token("worcs", "tm-1", &["team_manager"]);
    let today = eh_workdays::uk_local_date(clock.now());
    let report = eh_testkit::eventually(WAIT, "the closure reported", || {
        let mut reports = reports.clone();
        let req = rp::GetReportRequest {
            tenant: "worcs".into(),
            from: (today - chrono::Days::new(60)).to_string(),
            to: today.to_string(),
        };
        let manager = manager.clone();
        async move {
            let r = reports
                .get_report(with_token(req, &manager))
                .await?
                .into_inner();
            let closed = r.outcomes.iter().any(|f| {
                f.measure == "closures" && f.dimension == "kind=outcomes_met" && f.numerator == 1
            });
            Ok(closed.then_some(r))
        }
    })
    .await?;
    assert!(
        report
            .outcomes
            .iter()
            .any(|f| f.dimension.contains("education") && f.numerator >= 1),
        "{:?}",
        report.outcomes
    );
    // The police read the outcomes without the mental-health score.
    let seen = out
        .get_outcomes(with_token(
            pb::GetOutcomesRequest {
                tenant: "worcs".into(),
                case_id: case_id.clone(),
            },
            &police,
        ))
        .await?
        .into_inner();
    assert!(
        seen.scores
            .iter()
            .flat_map(|s| &s.scores)
            .all(|s| s.headline != "mental_health")
    );
    assert!(
        seen.withheld.iter().any(|w| w.what == "a start score"),
        "{:?}",
        seen.withheld
    );
    // Nothing more is recorded on a closed case; the follow-up is not due yet.
    assert_eq!(
        set(plan_v1("after closing"), lead.clone())
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    let follow = |needs_help_again: bool| pb::RecordFollowUpRequest {
        tenant: "worcs".into(),
        case_id: case_id.clone(),
        sustained: !needs_help_again,
        needs_help_again,
        note: "mum called: things slipped after the summer".into(),
    };
    assert_eq!(
        out.record_follow_up(with_token(follow(true), &lead))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );

    // Six months on, the lead is asked; the family needs help again: the front door is told.
    clock.advance(chrono::Duration::days(184));
    let asked = t.smtp.wait_for_template("follow_up_due", 1, WAIT).await?;
    assert_eq!(asked[0].to, ["fsw-7@fsn.example"]);
    case_in(&t, &case_id, "closed_outcomes_met").await?;
    let answered = eh_testkit::eventually(WAIT, "the follow-up due", || {
        let mut out = out.clone();
        let req = follow(true);
        let lead = lead.clone();
        async move {
            match out.record_follow_up(with_token(req, &lead)).await {
                Ok(o) => Ok(Some(o.into_inner())),
                Err(s) if s.message().contains("not due yet") => Ok(None),
                Err(s) => Err(s.into()),
            }
        }
    })
    .await?;
    let f = answered
        .closure
        .as_ref()
        .and_then(|c| c.follow_up.as_ref())
        .expect("the answer");
    assert!(f.needs_help_again && !f.sustained);
    assert_eq!(
        out.record_follow_up(with_token(follow(true), &lead))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition,
        "answered once"
    );
    assert_eq!(
        out.record_follow_up(with_token(follow(false), &teacher))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied,
        "only the lead or a team manager answers"
    );
    let told = t
        .smtp
        .wait_for_template("follow_up_front_door", 1, WAIT)
        .await?;
    let text = String::from_utf8_lossy(&told[0].raw).to_string();
    assert!(text.contains(&case_id), "{text}");
    assert!(!text.contains("summer"), "the note stays in assessment");
    let case = eh_testkit::eventually(WAIT, "the answer on the timeline", || {
        let t = &t;
        let case_id = case_id.clone();
        async move {
            let c = case_in(t, &case_id, "closed_outcomes_met").await?;
            Ok(c.timeline
                .iter()
                .any(|e| e.kind == "follow_up_recorded")
                .then_some(c))
        }
    })
    .await?;
    assert!(case.timeline.iter().any(|e| e.kind == "follow_up_due"));
    // ... and a new request for support for the family goes through the front door: a new case,
    // made from the closed case's referral.
    let cw = CaseworkServiceClient::new(t.channel().await?);
    let family_id = case.family_id.clone();
    let again = eh_testkit::eventually(WAIT, "the new request's case", || {
        let mut cw = cw.clone();
        let req = cw::ListCasesRequest {
            tenant: "worcs".into(),
            state: String::new(),
            family_id: family_id.clone(),
            limit: 10,
            referral_id: String::new(),
        };
        let manager = manager.clone();
        let closed = case_id.clone();
        async move {
            let cases = cw
                .list_cases(with_token(req, &manager))
                .await?
                .into_inner()
                .cases;
            Ok(cases.into_iter().find(|c| c.case_id != closed))
        }
    })
    .await?;
    assert_eq!(
        (
            again.source_system.as_str(),
            again.source_reference.as_str(),
            again.route.as_str()
        ),
        (
            "earlyhelp-follow-up",
            format!("follow-up:{case_id}").as_str(),
            "front_door"
        )
    );
    // The family's consent on record still holds, so it goes straight to the front door's
    // screening (without it, casework would ask for consent first).
    assert!(
        [
            "screening",
            "ready_for_allocation",
            "allocating",
            "waiting_for_provider"
        ]
        .contains(&again.state.as_str()),
        "{}",
        again.state
    );
    Ok(())
}

#[tokio::test]
async fn a_plan_is_followed_to_closure_and_the_six_month_check_embedded() -> anyhow::Result<()> {
    plan_to_follow_up(false).await
}

#[tokio::test]
async fn a_plan_is_followed_to_closure_and_the_six_month_check_distributed() -> anyhow::Result<()> {
    plan_to_follow_up(true).await
}
