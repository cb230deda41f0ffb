//! The Early Help Assessment end to end, in both modes, from a case allocated through the real
//! journey (allocation's test) with its lead named: the lead opens the assessment; the school,
//! CAMHS and the police each add their section; only an agency edits its own; the lead finalises
//! (v1, locked) and amends (v2, saying what changes; v1 still readable as it was). Reads apply the
//! family's consent — which does not let the police see mental-health information — section by
//! section: the police see the school's section without its mental-health need and not CAMHS's
//! at all, told what was withheld and why; CAMHS sees all; a safeguarding override shows the
//! police what it covers; once consent is withdrawn, the next read shows an agency only its own
//! section. Casework follows (`assessment_open`, `assessed`, the assessment clock stopped).
//! Every denial path: another council, a
//! role without the method, a practitioner who is not the lead, an agency with no part in the
//! case, bad input (field by field, nothing written).
use eh_proto::assessment::v1 as pb;
use eh_proto::assessment::v1::assessment_service_client::AssessmentServiceClient;
use eh_proto::casework::v1 as cw;
use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
use eh_proto::consent::v1 as cp;
use eh_proto::consent::v1::consent_service_client::ConsentServiceClient;
use eh_tests::{TestApp, with_token};
use tonic::Code;
use tonic::transport::Channel;

fn section(category: &str, worry: &str, needs: &[&str]) -> pb::SignsOfSafety {
    pb::SignsOfSafety {
        category: category.into(),
        worries: vec![worry.into()],
        working_well: vec!["mum asks for help when she needs it".into()],
        next_steps: vec!["a weekly check-in".into()],
        scaling: Some(pb::Scaling {
            score: 4,
            scored_by: "the family".into(),
            why: "things are better than in the spring".into(),
        }),
        child_voices: vec![],
        needs: needs
            .iter()
            .map(|h| pb::Need {
                headline: (*h).into(),
                detail: String::new(),
            })
            .collect(),
    }
}

async fn add(
    api: &mut AssessmentServiceClient<Channel>,
    token: &str,
    assessment_id: &str,
    body: pb::SignsOfSafety,
) -> Result<pb::Contribution, tonic::Status> {
    api.add_contribution(with_token(
        pb::AddContributionRequest {
            tenant: "worcs".into(),
            assessment_id: assessment_id.into(),
            body: Some(body),
        },
        token,
    ))
    .await
    .map(tonic::Response::into_inner)
}

async fn read(
    api: &mut AssessmentServiceClient<Channel>,
    token: &str,
    assessment_id: &str,
    version: u32,
) -> Result<pb::Assessment, tonic::Status> {
    api.get_assessment(with_token(
        pb::GetAssessmentRequest {
            tenant: "worcs".into(),
            assessment_id: assessment_id.into(),
            case_id: String::new(),
            version,
        },
        token,
    ))
    .await
    .map(tonic::Response::into_inner)
}

/// Waits until casework has the case in `state`; the case.
async fn case_in(t: &TestApp, case_id: &str, state: &str) -> anyhow::Result<cw::Case> {
    let client = CaseworkServiceClient::new(t.channel().await?);
    let manager = t.token("worcs", "tm-1", &["team_manager"]);
    eh_testkit::eventually(
        std::time::Duration::from_secs(30),
        &format!("the case {state}"),
        || {
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
        },
    )
    .await
}

async fn assessment(t: &TestApp, case_id: &str) -> anyhow::Result<()> {
    let mut api = AssessmentServiceClient::new(t.channel().await?);
    let base = api.clone();
    let lead = t.token_of("worcs", "fsw-7", &["practitioner"], "worcs-cc");
    let school = t.token_of("worcs", "teacher-1", &["practitioner"], "education");
    let camhs = t.token_of("worcs", "camhs-1", &["practitioner"], "health");
    let police = t.token_of("worcs", "pc-1", &["practitioner"], "police");
    let open = |token: String| {
        let mut api = base.clone();
        let req = pb::OpenAssessmentRequest {
            tenant: "worcs".into(),
            case_id: case_id.into(),
            carried_over: vec![],
        };
        async move { api.open_assessment(with_token(req, &token)).await }
    };
    // No case named: the field is named.
    let mut unnamed = api.clone();
    let e = unnamed
        .open_assessment(with_token(
            pb::OpenAssessmentRequest {
                tenant: "worcs".into(),
                case_id: " ".into(),
                carried_over: vec![],
            },
            &lead,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("case_id"), "{}", e.message());
    // Only the lead (or a team manager) opens it; another council never does.
    assert_eq!(
        open(school.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let staffs = t.token("staffs", "tm-9", &["team_manager"]);
    assert_eq!(
        open(staffs.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // The lead is known to assessment once casework has told it (lead_assigned): wait for it.
    let opened =
        eh_testkit::eventually(std::time::Duration::from_secs(30), "the lead known", || {
            let open = open(lead.clone());
            async move {
                match open.await {
                    Ok(a) => Ok(Some(a.into_inner())),
                    Err(s) if s.code() == Code::FailedPrecondition => Ok(None),
                    Err(s) => Err(s.into()),
                }
            }
        })
        .await?;
    let id = opened.assessment_id.clone();
    assert_eq!(
        opened.version.as_ref().map(|v| v.status.as_str()),
        Some("open")
    );
    assert_eq!(
        open(lead.clone()).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    // Casework follows: the case is being assessed, its assessment clock (started at allocation)
    // still running.
    let assessing = case_in(t, case_id, "assessment_open").await?;
    let clock = assessing
        .timers
        .iter()
        .find(|c| c.kind == "assessment")
        .expect("the assessment clock");
    assert_eq!(clock.status, "pending");

    // Three agencies contribute; bad input is refused field by field and writes nothing.
    let mut bad = section("gossip", "", &["astrology"]);
    bad.scaling = Some(pb::Scaling {
        score: 12,
        scored_by: "x".into(),
        why: "y".into(),
    });
    let refused = add(&mut api, &school, &id, bad).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    for field in [
        "contribution.category",
        "contribution.worries[0]",
        "contribution.scaling.score",
        "contribution.needs[0].headline",
    ] {
        assert!(
            refused.message().contains(field),
            "{field}: {}",
            refused.message()
        );
    }
    assert!(!refused.message().contains("astrology"), "never the value");
    let school_part = add(
        &mut api,
        &school,
        &id,
        section(
            "education",
            "attendance has fallen to 70%",
            &["education", "mental_health"],
        ),
    )
    .await?;
    assert_eq!(school_part.agency, "education");
    assert_eq!(school_part.author, "person:teacher-1");
    let camhs_part = add(
        &mut api,
        &camhs,
        &id,
        section(
            "mental_health",
            "low mood since the move",
            &["mental_health"],
        ),
    )
    .await?;
    add(
        &mut api,
        &police,
        &id,
        section("police", "two call-outs to the address", &["crime"]),
    )
    .await?;
    // Only the school edits the school's section.
    let edit = |token: String, body: pb::SignsOfSafety| {
        let mut api = base.clone();
        let req = pb::EditContributionRequest {
            tenant: "worcs".into(),
            contribution_id: school_part.contribution_id.clone(),
            body: Some(body),
        };
        async move { api.edit_contribution(with_token(req, &token)).await }
    };
    assert_eq!(
        edit(police.clone(), section("police", "overwritten", &[]))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let edited = edit(
        school.clone(),
        section(
            "education",
            "attendance has fallen to 68%",
            &["education", "mental_health"],
        ),
    )
    .await?
    .into_inner();
    assert!(!edited.edited_at.is_empty());

    // Only the lead finalises; after that nobody adds or edits.
    let finalise = |token: String| {
        let mut api = base.clone();
        let req = pb::FinaliseAssessmentRequest {
            tenant: "worcs".into(),
            assessment_id: id.clone(),
        };
        async move { api.finalise_assessment(with_token(req, &token)).await }
    };
    assert_eq!(
        finalise(camhs.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let v1 = finalise(lead.clone()).await?.into_inner();
    assert_eq!(
        v1.version.as_ref().map(|v| (v.version, v.status.as_str())),
        Some((1, "finalised"))
    );
    let assessed = case_in(t, case_id, "assessed").await?;
    let clock = assessed
        .timers
        .iter()
        .find(|c| c.kind == "assessment")
        .expect("the assessment clock");
    assert_eq!(clock.status, "cancelled", "finalising stops the clock");
    assert_eq!(
        add(&mut api, &camhs, &id, section("health", "late", &[]))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        edit(school.clone(), section("education", "after", &[]))
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );

    // Consent on every read: the police see neither CAMHS's section nor the school's
    // mental-health need, and are told so; CAMHS sees everything.
    let seen_by_police = read(&mut api, &police, &id, 0).await?;
    let agencies: Vec<&str> = seen_by_police
        .contributions
        .iter()
        .map(|c| c.agency.as_str())
        .collect();
    assert_eq!(agencies, ["education", "police"]);
    let school_seen = seen_by_police.contributions[0].body.as_ref().expect("body");
    let needs: Vec<&str> = school_seen
        .needs
        .iter()
        .map(|n| n.headline.as_str())
        .collect();
    assert_eq!(needs, ["education"]);
    assert_eq!(school_seen.worries, ["attendance has fallen to 68%"]);
    let withheld: Vec<(&str, &str)> = seen_by_police
        .withheld
        .iter()
        .map(|w| (w.contribution_id.as_str(), w.what.as_str()))
        .collect();
    assert_eq!(
        withheld,
        [
            (school_part.contribution_id.as_str(), "1 of its needs"),
            (
                camhs_part.contribution_id.as_str(),
                "the contribution of a health agency"
            ),
        ]
    );
    for w in &seen_by_police.withheld {
        assert!(w.reason.contains("police"), "{}", w.reason);
        assert!(!w.decision_ids.is_empty(), "consent's decision is cited");
    }
    // The read is on the audit trail: who, which version, what was shown and withheld (ids).
    let trail = eh_auth::Auditor::new(t.db("assessment").await?)
        .entries("worcs")
        .await?;
    let entry = trail
        .iter()
        .rev()
        .find(|e| e.0 == "person:pc-1" && e.1 == "GetAssessment" && e.3 == "allowed")
        .expect("the police's read audited");
    assert_eq!(entry.2, format!("assessment:{id}:v1"));
    assert!(
        entry.4.contains(&format!(
            "withheld [{}, {}]",
            school_part.contribution_id, camhs_part.contribution_id
        )),
        "{}",
        entry.4
    );
    let seen_by_camhs = read(&mut api, &camhs, &id, 0).await?;
    assert_eq!(seen_by_camhs.contributions.len(), 3);
    assert!(
        seen_by_camhs.withheld.is_empty(),
        "{:?}",
        seen_by_camhs.withheld
    );
    // An agency with no part in the case, a role without the method, another council: refused.
    let housing = t.token_of("worcs", "ho-1", &["practitioner"], "housing");
    assert_eq!(
        read(&mut api, &housing, &id, 0).await.unwrap_err().code(),
        Code::NotFound
    );
    let trail = eh_auth::Auditor::new(t.db("assessment").await?)
        .entries("worcs")
        .await?;
    assert!(
        trail
            .iter()
            .any(|e| e.0 == "person:ho-1" && e.1 == "GetAssessment" && e.3 == "denied"),
        "an agency with no part in the case is refused on the record"
    );
    let clerk = t.token_of("worcs", "bs-1", &["business_support"], "education");
    assert_eq!(
        read(&mut api, &clerk, &id, 0).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        read(&mut api, &staffs, &id, 0).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // A change after finalising is a new version that says what changes; v1 stays as it was.
    let amend = |token: String, what: &str| {
        let mut api = base.clone();
        let req = pb::AmendAssessmentRequest {
            tenant: "worcs".into(),
            assessment_id: id.clone(),
            what_changes: what.into(),
        };
        async move { api.amend_assessment(with_token(req, &token)).await }
    };
    assert_eq!(
        amend(lead.clone(), " ").await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        amend(school.clone(), "new school")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let v2 = amend(lead.clone(), "moved to a new school in January")
        .await?
        .into_inner();
    assert_eq!(
        v2.version
            .as_ref()
            .map(|v| (v.version, v.status.as_str(), v.what_changes.as_str())),
        Some((2, "open", "moved to a new school in January"))
    );
    assert_eq!(v2.contributions.len(), 3, "v2 starts from v1's sections");
    let v2_school = v2
        .contributions
        .iter()
        .find(|c| c.agency == "education")
        .expect("the school's section")
        .contribution_id
        .clone();
    let mut api2 = api.clone();
    api2.edit_contribution(with_token(
        pb::EditContributionRequest {
            tenant: "worcs".into(),
            contribution_id: v2_school,
            body: Some(section(
                "education",
                "settled at the new school",
                &["education"],
            )),
        },
        &school,
    ))
    .await?;
    let v1_again = read(&mut api, &camhs, &id, 1).await?;
    let v1_school = v1_again
        .contributions
        .iter()
        .find(|c| c.agency == "education")
        .and_then(|c| c.body.as_ref())
        .expect("v1's school section");
    assert_eq!(v1_school.worries, ["attendance has fallen to 68%"]);
    let latest = read(&mut api, &camhs, &id, 0).await?;
    assert_eq!(latest.version.as_ref().map(|v| v.version), Some(2));
    assert_eq!(latest.versions.len(), 2);
    assert_eq!(
        read(&mut api, &camhs, &id, 7).await.unwrap_err().code(),
        Code::NotFound
    );

    // A safeguarding override (a team manager's, on a practitioner's request) lets the police see
    // the mental-health information after all.
    let family_id = assessed.family_id.clone();
    let mut consent = ConsentServiceClient::new(t.channel().await?);
    let manager = t.token("worcs", "tm-1", &["team_manager"]);
    consent
        .grant_override(with_token(
            cp::GrantOverrideRequest {
                tenant: "worcs".into(),
                family_id: family_id.clone(),
                person_id: String::new(),
                requested_by: "pc-1".into(),
                legal_basis: "Children Act 1989 s47 / DfE information sharing advice 2024".into(),
                reasoning: "the children's safety depends on what CAMHS knows".into(),
                agencies: vec!["police".into()],
                categories: vec!["mental_health".into()],
                purposes: vec!["sharing".into()],
                expires_at: (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339(),
            },
            &manager,
        ))
        .await?;
    let overridden = read(&mut api, &police, &id, 0).await?;
    assert_eq!(overridden.contributions.len(), 3);
    assert!(overridden.withheld.is_empty(), "{:?}", overridden.withheld);

    // Consent withdrawn: from the next read, CAMHS sees only what it wrote.
    let ledger = consent
        .list_consent(with_token(
            cp::ListConsentRequest {
                tenant: "worcs".into(),
                family_id: family_id.clone(),
            },
            &manager,
        ))
        .await?
        .into_inner();
    for r in &ledger.records {
        consent
            .withdraw_consent(with_token(
                cp::WithdrawConsentRequest {
                    tenant: "worcs".into(),
                    record_id: r.record_id.clone(),
                    reason: "the family no longer agrees to share".into(),
                },
                &manager,
            ))
            .await?;
    }
    let after = read(&mut api, &camhs, &id, 0).await?;
    let agencies: Vec<&str> = after
        .contributions
        .iter()
        .map(|c| c.agency.as_str())
        .collect();
    assert_eq!(agencies, ["health"]);
    assert_eq!(after.withheld.len(), 2, "{:?}", after.withheld);
    Ok(())
}

#[tokio::test]
async fn an_allocated_case_is_assessed_by_every_agency_as_consent_allows_embedded()
-> anyhow::Result<()> {
    let (t, case_id) = crate::allocation::journey(false).await?;
    assessment(&t, &case_id).await
}

#[tokio::test]
async fn an_allocated_case_is_assessed_by_every_agency_as_consent_allows_distributed()
-> anyhow::Result<()> {
    let (t, case_id) = crate::allocation::journey(true).await?;
    assessment(&t, &case_id).await
}

/// A case stepped down from social care starts from the most recent assessment there: its
/// sections are carried over into version 1, attributed to social care and saying where they came
/// from; bad carried sections are refused field by field (a case by any other route carries
/// nothing over: `tests/it/plan.rs`).
async fn step_down_carries_over(distributed: bool) -> anyhow::Result<()> {
    let (t, case_id) = crate::allocation::journey_via(distributed, Some("step_down")).await?;
    let api = AssessmentServiceClient::new(t.channel().await?);
    let lead = t.token_of("worcs", "fsw-7", &["practitioner"], "worcs-cc");
    let carried = |on: &str| pb::CarriedSection {
        body: Some(section(
            "social_care",
            "neglect concerns now reduced",
            &["education", "safeguarding"],
        )),
        source_reference: "CIN-2026-0457".into(),
        assessed_on: on.into(),
        assessed_by: "social worker, CiN team North".into(),
    };
    let open = |sections: Vec<pb::CarriedSection>| {
        let mut api = api.clone();
        let req = pb::OpenAssessmentRequest {
            tenant: "worcs".into(),
            case_id: case_id.clone(),
            carried_over: sections,
        };
        let lead = lead.clone();
        async move { api.open_assessment(with_token(req, &lead)).await }
    };
    let e = open(vec![carried("last week")]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("carried_over[0].assessed_on"),
        "{}",
        e.message()
    );
    let opened =
        eh_testkit::eventually(std::time::Duration::from_secs(30), "the lead known", || {
            let open = open(vec![carried("2026-10-01")]);
            async move {
                match open.await {
                    Ok(a) => Ok(Some(a.into_inner())),
                    Err(s) if s.code() == Code::FailedPrecondition => Ok(None),
                    Err(s) => Err(s.into()),
                }
            }
        })
        .await?;
    assert_eq!(opened.contributions.len(), 1);
    let c = &opened.contributions[0];
    assert_eq!(c.agency, "social_care");
    assert_eq!(c.author, "person:fsw-7");
    assert_eq!(
        c.carried_from,
        "carried over from CIN-2026-0457 (assessed 2026-10-01 by social worker, CiN team North)"
    );
    let needs: Vec<&str> = c
        .body
        .as_ref()
        .map(|b| b.needs.iter().map(|n| n.headline.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(needs, ["education", "safeguarding"]);
    case_in(&t, &case_id, "assessment_open").await?;
    Ok(())
}

#[tokio::test]
async fn a_step_down_carries_its_assessment_over_embedded() -> anyhow::Result<()> {
    step_down_carries_over(false).await
}

#[tokio::test]
async fn a_step_down_carries_its_assessment_over_distributed() -> anyhow::Result<()> {
    step_down_carries_over(true).await
}
