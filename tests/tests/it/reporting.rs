//! The reporting read model end to end, in both modes: a hand-computed set of cases published as
//! the services publish their events (same subjects, same envelopes) onto the real bus — intake's
//! referrals and screening decisions, casework's transitions, allocation's waits and acceptances,
//! assessment's finalisations, scores, closures and follow-ups — and every figure of the report
//! and of its CSV checked against the hand count. The same events delivered a second time (same
//! event id, a new broker message id, so the broker does not drop them) count once; another
//! council's events are not this council's figures; only the council's team managers may ask, and
//! a bad period is INVALID_ARGUMENT naming the field.
//!
//! Spring 2026 in England: Good Friday 3 April, Easter Monday 6 April, bank holidays 4 and 25 May.
//! - A: received Mon 2 March 09:00, screened 15:00 (in time); allocated Wed 4 March; EHA finalised
//!   Fri 17 April (in time: the 30th working day, Easter not counted); closed with housing and
//!   education met; housing scored 3 → 7.
//! - B: received Fri 6 March 16:00, screened Tue 10 March 09:00 (late: the day was Monday);
//!   allocated Wed 11 March; EHA finalised Mon 27 April (late: due by Fri 24 April); closed with
//!   mental health not met, scored 2 → 2.
//! - C: received Wed 11 March, screened the same day (advice), in Malvern Hills.
//! - D: received Mon 16 March, no postcode, not screened yet.
//! - E: received in February, before the period (not counted).
//! - W1 waits from Mon 2 March (60 working days by 31 May), W2 from Wed 20 May (6); G waited from
//!   5 March until allocated on 20 March.
use chrono::Utc;
use earlyhelp::Target;
use eh_bus::{Envelope, OutboundMessage};
use eh_platform::config::Section;
use eh_proto::allocation::v1 as al;
use eh_proto::assessment::v1 as asm;
use eh_proto::casework::v1 as cw;
use eh_proto::catalogue::{self as c, EventSpec};
use eh_proto::intake::v1 as ik;
use eh_proto::reporting::v1 as pb;
use eh_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use eh_tests::{TestApp, with_token};
use prost::Message;
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(30);

struct Bus<'a> {
    t: &'a TestApp,
    /// Everything published, to deliver again.
    sent: Vec<OutboundMessage>,
}

impl Bus<'_> {
    async fn publish(
        &mut self,
        spec: &EventSpec,
        tenant: &str,
        payload: &impl Message,
    ) -> anyhow::Result<()> {
        let env = Envelope::new(
            spec.payload,
            tenant,
            &format!("service:{}", spec.publisher),
            Utc::now(),
        );
        let out = OutboundMessage::event(
            spec.subject(&self.t.ns(), tenant),
            &env,
            payload.encode_to_vec(),
        );
        self.t.app().transport.publish(&out).await?;
        self.sent.push(out);
        Ok(())
    }

    /// Every message again: the same event ids, new broker message ids.
    async fn deliver_again(&self) -> anyhow::Result<()> {
        for m in &self.sent {
            let mut again = m.clone();
            again.msg_id = uuid::Uuid::new_v4().to_string();
            self.t.app().transport.publish(&again).await?;
        }
        Ok(())
    }
}

fn referral(
    id: &str,
    at: &str,
    system: &str,
    route: &str,
    postcode: Option<&str>,
    needs: &[&str],
) -> ik::ReferralReceived {
    ik::ReferralReceived {
        referral_id: id.into(),
        family_id: format!("fam-{id}"),
        received_at: at.into(),
        referral: Some(ik::Referral {
            source: Some(ik::Source {
                system: system.into(),
                reference: format!("ref-{id}"),
            }),
            route: route.into(),
            // Reporting keeps none of this, only the locality the postcode is in.
            children: vec![ik::Child {
                given_name: "Kit".into(),
                family_name: "Example".into(),
                date_of_birth: Some("2016-04-01".into()),
                ..Default::default()
            }],
            address: postcode.map(|p| ik::Address {
                line1: Some("1 High Street".into()),
                postcode: p.into(),
                ..Default::default()
            }),
            needs: needs.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn screened(referral: &str, outcome: &str, at: &str) -> ik::ScreeningDecided {
    ik::ScreeningDecided {
        case_id: format!("case-{referral}"),
        referral_id: referral.into(),
        family_id: format!("fam-{referral}"),
        outcome: outcome.into(),
        decided_at: at.into(),
        ..Default::default()
    }
}

fn moved(case: &str, from: &str, to: &str, at: &str) -> cw::CaseStateChanged {
    cw::CaseStateChanged {
        case: Some(cw::CaseRef {
            case_id: case.into(),
            family_id: format!("fam-{case}"),
            ..Default::default()
        }),
        from_state: from.into(),
        to_state: to.into(),
        reason: String::new(),
        at: at.into(),
    }
}

fn accepted(case: &str, at: &str) -> al::OfferAccepted {
    al::OfferAccepted {
        case_id: case.into(),
        at: at.into(),
        ..Default::default()
    }
}

fn waiting(case: &str, at: &str) -> al::CaseWaiting {
    al::CaseWaiting {
        case_id: case.into(),
        position: 1,
        at: at.into(),
        ..Default::default()
    }
}

fn finalised(case: &str, version: u32, at: &str) -> asm::AssessmentFinalised {
    asm::AssessmentFinalised {
        assessment_id: format!("eha-{case}"),
        case_id: case.into(),
        version,
        at: at.into(),
        ..Default::default()
    }
}

fn scores(case: &str, stage: &str, values: &[(&str, u32)], at: &str) -> asm::ScoresRecorded {
    asm::ScoresRecorded {
        case_id: case.into(),
        family_id: String::new(),
        stage: stage.into(),
        scores: values
            .iter()
            .map(|(h, s)| asm::ScoreValue {
                headline: (*h).into(),
                score: *s,
            })
            .collect(),
        at: at.into(),
    }
}

fn closure(
    case: &str,
    kind: &str,
    outcomes: &[(&str, bool)],
    at: &str,
) -> asm::CaseClosureRecorded {
    asm::CaseClosureRecorded {
        case_id: case.into(),
        kind: kind.into(),
        outcomes: outcomes
            .iter()
            .map(|(h, met)| asm::OutcomeValue {
                headline: (*h).into(),
                met: *met,
            })
            .collect(),
        at: at.into(),
        ..Default::default()
    }
}

fn follow_up(case: &str, sustained: bool, at: &str) -> asm::FollowUpRecorded {
    asm::FollowUpRecorded {
        case_id: case.into(),
        sustained,
        at: at.into(),
        ..Default::default()
    }
}

/// Publishes the set; how many events that was.
async fn publish_the_set(bus: &mut Bus<'_>) -> anyhow::Result<usize> {
    let w = "worcs";
    for r in [
        referral(
            "a",
            "2026-03-02T09:00:00Z",
            "hub-a",
            "practitioner",
            Some("wr1 2ab"),
            &["housing", "education"],
        ),
        referral(
            "b",
            "2026-03-06T16:00:00Z",
            "hub-a",
            "practitioner",
            Some("WR5 1AA"),
            &["mental_health"],
        ),
        referral(
            "c",
            "2026-03-11T10:00:00Z",
            "school-mis",
            "front_door",
            Some("WR14 3XY"),
            &["housing"],
        ),
        referral(
            "d",
            "2026-03-16T10:00:00Z",
            "school-mis",
            "practitioner",
            None,
            &["education"],
        ),
        referral(
            "e",
            "2026-02-20T10:00:00Z",
            "hub-a",
            "practitioner",
            Some("WR1 1AA"),
            &["crime"],
        ),
    ] {
        bus.publish(&c::REFERRAL_RECEIVED, w, &r).await?;
    }
    for s in [
        screened("a", "accepted_for_early_help", "2026-03-02T15:00:00Z"),
        screened("b", "accepted_for_early_help", "2026-03-10T09:00:00Z"),
        screened("c", "advice_and_signpost", "2026-03-11T14:00:00Z"),
    ] {
        bus.publish(&c::SCREENING_DECIDED, w, &s).await?;
    }
    for m in [
        moved("case-a", "allocating", "allocated", "2026-03-04T10:00:05Z"),
        moved("case-b", "allocating", "allocated", "2026-03-11T10:00:05Z"),
        moved(
            "case-c",
            "screening",
            "closed_advice_given",
            "2026-03-11T14:00:05Z",
        ),
        moved(
            "w1",
            "allocating",
            "waiting_for_provider",
            "2026-03-02T10:00:01Z",
        ),
        moved(
            "g",
            "waiting_for_provider",
            "allocated",
            "2026-03-20T10:00:01Z",
        ),
    ] {
        bus.publish(&c::CASE_STATE_CHANGED, w, &m).await?;
    }
    for a in [
        accepted("case-a", "2026-03-04T10:00:00Z"),
        accepted("case-b", "2026-03-11T10:00:00Z"),
        accepted("g", "2026-03-20T10:00:00Z"),
    ] {
        bus.publish(&c::OFFER_ACCEPTED, w, &a).await?;
    }
    for x in [
        waiting("w1", "2026-03-02T10:00:00Z"),
        waiting("w2", "2026-05-20T10:00:00Z"),
        waiting("g", "2026-03-05T10:00:00Z"),
    ] {
        bus.publish(&c::CASE_WAITING, w, &x).await?;
    }
    for f in [
        finalised("case-a", 1, "2026-04-17T15:00:00Z"),
        finalised("case-b", 1, "2026-04-27T09:00:00Z"),
        finalised("case-a", 2, "2026-05-05T09:00:00Z"),
    ] {
        bus.publish(&c::ASSESSMENT_FINALISED, w, &f).await?;
    }
    for s in [
        scores(
            "case-a",
            "start",
            &[("housing", 3), ("education", 5)],
            "2026-04-17T15:00:00Z",
        ),
        scores(
            "case-a",
            "review",
            &[("education", 4)],
            "2026-05-01T10:00:00Z",
        ),
        scores(
            "case-a",
            "closure",
            &[("housing", 7)],
            "2026-05-20T10:00:00Z",
        ),
        scores(
            "case-b",
            "start",
            &[("mental_health", 2)],
            "2026-04-27T09:00:00Z",
        ),
        scores(
            "case-b",
            "closure",
            &[("mental_health", 2)],
            "2026-05-28T10:00:00Z",
        ),
    ] {
        bus.publish(&c::SCORES_RECORDED, w, &s).await?;
    }
    for x in [
        closure(
            "case-a",
            "outcomes_met",
            &[("housing", true), ("education", true)],
            "2026-05-20T10:00:00Z",
        ),
        closure(
            "case-b",
            "outcomes_not_met",
            &[("mental_health", false)],
            "2026-05-28T10:00:00Z",
        ),
    ] {
        bus.publish(&c::CASE_CLOSURE_RECORDED, w, &x).await?;
    }
    for f in [
        follow_up("x", true, "2026-05-10T10:00:00Z"),
        follow_up("y", false, "2026-04-10T10:00:00Z"),
    ] {
        bus.publish(&c::FOLLOW_UP_RECORDED, w, &f).await?;
    }
    // Another council's referral, in the period and in a Worcester postcode.
    bus.publish(
        &c::REFERRAL_RECEIVED,
        "staffs",
        &referral(
            "s1",
            "2026-03-03T09:00:00Z",
            "hub-a",
            "practitioner",
            Some("WR1 2AB"),
            &["housing"],
        ),
    )
    .await?;
    Ok(bus.sent.len())
}

fn handled(t: &TestApp, outcome: &str) -> f64 {
    t.metric(
        "earlyhelp_messages_handled_total",
        &["consumer=\"reporting_", &format!("outcome=\"{outcome}\"")],
    )
}

/// Waits until reporting's consumers have handled `ok` events and absorbed `duplicate` repeats.
async fn settled(t: &TestApp, ok: usize, duplicate: usize) -> anyhow::Result<()> {
    #[allow(clippy::cast_precision_loss)]
    let (ok, duplicate) = (ok as f64, duplicate as f64);
    eh_testkit::eventually(WAIT, "reporting to take every event", || async {
        let (o, d) = (handled(t, "ok"), handled(t, "duplicate"));
        anyhow::ensure!(o <= ok, "more events kept ({o}) than were sent ({ok})");
        Ok((o == ok && d >= duplicate).then_some(()))
    })
    .await
}

fn request(tenant: &str, from: &str, to: &str) -> pb::GetReportRequest {
    pb::GetReportRequest {
        tenant: tenant.into(),
        from: from.into(),
        to: to.into(),
    }
}

type Row = (Option<f64>, i64, i64);

fn rows(figures: &[pb::Figure]) -> BTreeMap<(String, String), Row> {
    figures
        .iter()
        .map(|f| {
            (
                (f.measure.clone(), f.dimension.clone()),
                (f.value, f.numerator, f.denominator),
            )
        })
        .collect()
}

fn expect(pairs: &[(&str, &str, Option<f64>, i64, i64)]) -> BTreeMap<(String, String), Row> {
    pairs
        .iter()
        .map(|(m, d, v, n, of)| ((m.to_string(), d.to_string()), (*v, *n, *of)))
        .collect()
}

fn check_report(r: &pb::Report) {
    assert_eq!(r.waiting_list_as_at, "2026-05-31T23:00:00+00:00");
    let timeliness: Vec<&pb::Figure> = r.timeliness.iter().filter(|f| f.available).collect();
    assert_eq!(
        rows(&timeliness.into_iter().cloned().collect::<Vec<_>>()),
        expect(&[
            (
                "screened_in_time",
                "within_working_days=1",
                Some(2.0 / 3.0),
                2,
                3
            ),
            ("awaiting_screening", "", Some(1.0), 1, 4),
            (
                "eha_finalised_in_time",
                "within_working_days=30",
                Some(0.5),
                1,
                2
            ),
        ])
    );
    let taf = r
        .timeliness
        .iter()
        .find(|f| f.measure == "taf_on_time")
        .expect("TAF timeliness is reported as unavailable");
    assert!(!taf.available);
    assert_eq!(taf.value, None, "not a zero");
    assert!(
        taf.unavailable_reason.contains("no meetings service"),
        "{taf:?}"
    );
    assert_eq!(
        rows(&r.demand),
        expect(&[
            ("referrals", "", Some(4.0), 4, 4),
            ("referrals", "source_system=hub-a", Some(2.0), 2, 4),
            ("referrals", "source_system=school-mis", Some(2.0), 2, 4),
            ("referrals", "route=practitioner", Some(3.0), 3, 4),
            ("referrals", "route=front_door", Some(1.0), 1, 4),
            ("referrals", "need=housing", Some(2.0), 2, 4),
            ("referrals", "need=education", Some(2.0), 2, 4),
            ("referrals", "need=mental_health", Some(1.0), 1, 4),
            ("referrals", "locality=Worcester City", Some(2.0), 2, 4),
            ("referrals", "locality=Malvern Hills", Some(1.0), 1, 4),
            ("referrals", "locality=unknown", Some(1.0), 1, 4),
        ])
    );
    assert_eq!(
        rows(&r.outcomes),
        expect(&[
            ("closures", "", Some(2.0), 2, 2),
            ("closures", "kind=outcomes_met", Some(1.0), 1, 2),
            ("closures", "kind=outcomes_not_met", Some(1.0), 1, 2),
            ("all_outcomes_met", "", Some(0.5), 1, 2),
            ("outcome_met", "headline=housing", Some(1.0), 1, 1),
            ("outcome_met", "headline=education", Some(1.0), 1, 1),
            ("outcome_met", "headline=mental_health", Some(0.0), 0, 1),
            ("score_change", "headline=housing", Some(4.0), 4, 1),
            ("score_improved", "headline=housing", Some(1.0), 1, 1),
            ("score_change", "headline=education", Some(-1.0), -1, 1),
            ("score_improved", "headline=education", Some(0.0), 0, 1),
            ("score_change", "headline=mental_health", Some(0.0), 0, 1),
            ("score_improved", "headline=mental_health", Some(0.0), 0, 1),
            ("outcomes_sustained", "", Some(0.5), 1, 2),
        ])
    );
    assert_eq!(
        rows(&r.waiting_list),
        expect(&[
            ("waiting", "", Some(2.0), 2, 2),
            ("wait_working_days", "", Some(33.0), 66, 2),
            ("longest_wait_working_days", "", Some(60.0), 60, 2),
            (
                "waiting_beyond_limit",
                "limit_working_days=20",
                Some(0.5),
                1,
                2
            ),
        ])
    );
}

/// The CSV export, line by line.
const CSV: &str = "section,measure,dimension,value,numerator,denominator,kind,note\r
timeliness,screened_in_time,within_working_days=1,0.6667,2,3,rate,\r
timeliness,awaiting_screening,,1,1,4,count,\r
timeliness,eha_finalised_in_time,within_working_days=30,0.5,1,2,rate,\r
timeliness,taf_on_time,,,,,rate,\"not recorded yet: the platform has no meetings service, so TAF meetings and their dates are not known to it\"\r
demand,referrals,,4,4,4,count,\r
demand,referrals,source_system=hub-a,2,2,4,count,\r
demand,referrals,source_system=school-mis,2,2,4,count,\r
demand,referrals,route=front_door,1,1,4,count,\r
demand,referrals,route=practitioner,3,3,4,count,\r
demand,referrals,need=education,2,2,4,count,\r
demand,referrals,need=housing,2,2,4,count,\r
demand,referrals,need=mental_health,1,1,4,count,\r
demand,referrals,locality=Malvern Hills,1,1,4,count,\r
demand,referrals,locality=Worcester City,2,2,4,count,\r
demand,referrals,locality=unknown,1,1,4,count,\r
outcomes,closures,,2,2,2,count,\r
outcomes,closures,kind=outcomes_met,1,1,2,count,\r
outcomes,closures,kind=outcomes_not_met,1,1,2,count,\r
outcomes,all_outcomes_met,,0.5,1,2,rate,\r
outcomes,outcome_met,headline=education,1,1,1,rate,\r
outcomes,outcome_met,headline=housing,1,1,1,rate,\r
outcomes,outcome_met,headline=mental_health,0,0,1,rate,\r
outcomes,score_change,headline=education,-1,-1,1,mean,\r
outcomes,score_improved,headline=education,0,0,1,rate,\r
outcomes,score_change,headline=housing,4,4,1,mean,\r
outcomes,score_improved,headline=housing,1,1,1,rate,\r
outcomes,score_change,headline=mental_health,0,0,1,mean,\r
outcomes,score_improved,headline=mental_health,0,0,1,rate,\r
outcomes,outcomes_sustained,,0.5,1,2,rate,\r
waiting_list,waiting,,2,2,2,count,\r
waiting_list,wait_working_days,,33,66,2,mean,\r
waiting_list,longest_wait_working_days,,60,60,2,max,\r
waiting_list,waiting_beyond_limit,limit_working_days=20,0.5,1,2,rate,\r
";

/// Every text value of every table of the read model: none is a name, a date of birth, an
/// address, a postcode or a mailbox the events carried; the locality is there instead.
async fn no_personal_data_is_kept(t: &TestApp) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let db = t.db("reporting").await?;
    let b = db.get_database_backend();
    let mut texts = Vec::new();
    for table in [
        "referrals",
        "screenings",
        "case_transitions",
        "case_moments",
        "assessments_finalised",
        "scores",
        "closures",
        "follow_ups",
    ] {
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                b,
                format!("SELECT * FROM {table}"),
            ))
            .await?;
        assert!(!rows.is_empty(), "{table} holds the set");
        for r in rows {
            // Columns that are not text are skipped (their type does not read as one).
            texts.extend(
                (0..12).filter_map(|i| r.try_get_by_index::<Option<String>>(i).ok().flatten()),
            );
        }
    }
    assert!(texts.iter().any(|v| v == "Worcester City"), "{texts:?}");
    for held in [
        "Kit",
        "Example",
        "High Street",
        "2016-04-01",
        "WR1",
        "wr1",
        "WR5",
        "WR14",
        "lead@worcs.test",
    ] {
        assert!(
            !texts.iter().any(|v| v.contains(held)),
            "{held} is kept: {texts:?}"
        );
    }
    Ok(())
}

async fn report_is_hand_computed(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn_targets_configured(
        distributed,
        &[Target::named("reporting").map_err(anyhow::Error::msg)?],
        |s, _| {
            let section = serde_json::json!({"localities": {
                "Worcester City": ["WR1", "WR5"],
                "Malvern Hills": ["WR14"],
            }});
            if let Some(w) = s.tenants.get_mut("worcs") {
                w.sections.insert(
                    "allocation".into(),
                    Section::from_json("tenants.worcs.allocation", section).expect("section"),
                );
            }
        },
    )
    .await?;
    let mut bus = Bus {
        t: &t,
        sent: Vec::new(),
    };
    let n = publish_the_set(&mut bus).await?;
    settled(&t, n, 0).await?;
    // Every event again: the inbox absorbs each one.
    bus.deliver_again().await?;
    settled(&t, n, n).await?;
    no_personal_data_is_kept(&t).await?;

    let mut api = ReportingServiceClient::new(t.channel().await?);
    let manager = t.token("worcs", "tm-1", &["team_manager"]);
    let report = api
        .get_report(with_token(
            request("worcs", "2026-03-01", "2026-05-31"),
            &manager,
        ))
        .await?
        .into_inner();
    assert_eq!(report.tenant, "worcs");
    assert_eq!(
        (report.from.as_str(), report.to.as_str()),
        ("2026-03-01", "2026-05-31")
    );
    check_report(&report);

    let csv = api
        .export_report_csv(with_token(
            request("worcs", "2026-03-01", "2026-05-31"),
            &manager,
        ))
        .await?
        .into_inner();
    assert_eq!(csv.csv, CSV);
    assert_eq!(csv.filename, "earlyhelp-worcs-2026-03-01-2026-05-31.csv");

    // Staffordshire's figures are its own: its one referral, in its own locality-less council.
    let staffs = t.token("staffs", "tm-9", &["team_manager"]);
    let theirs = api
        .get_report(with_token(
            request("staffs", "2026-03-01", "2026-05-31"),
            &staffs,
        ))
        .await?
        .into_inner();
    assert_eq!(
        rows(&theirs.demand)[&(
            "referrals".to_string(),
            "locality=outside_localities".to_string()
        )],
        (Some(1.0), 1, 1)
    );

    // Who may ask.
    let denied = |token: String, tenant: &'static str| {
        let mut api = api.clone();
        async move {
            api.get_report(with_token(
                request(tenant, "2026-03-01", "2026-05-31"),
                &token,
            ))
            .await
            .expect_err("refused")
            .code()
        }
    };
    assert_eq!(
        denied(staffs.clone(), "worcs").await,
        Code::PermissionDenied,
        "another council's manager"
    );
    assert_eq!(
        denied(t.token("worcs", "fsw-1", &["practitioner"]), "worcs").await,
        Code::PermissionDenied,
        "a practitioner"
    );
    let mut no_token = api.clone();
    assert_eq!(
        no_token
            .export_report_csv(request("worcs", "2026-03-01", "2026-05-31"))
            .await
            .expect_err("refused")
            .code(),
        Code::Unauthenticated
    );
    // A bad period names the field.
    for (from, to, field) in [
        ("2026-06-01", "2026-05-31", "to"),
        ("31/03/2026", "2026-05-31", "from"),
        ("2026-03-01", "", "to"),
    ] {
        let e = api
            .get_report(with_token(request("worcs", from, to), &manager))
            .await
            .expect_err("invalid");
        assert_eq!(e.code(), Code::InvalidArgument, "{from}..{to}");
        assert!(
            e.message().contains(&format!("{field}:")),
            "{}",
            e.message()
        );
    }
    // Every call is on the audit trail, the refusals as refusals.
    let trail = eh_auth::Auditor::new(t.db("reporting").await?)
        .entries("worcs")
        .await?;
    let audited = |actor: &str, action: &str, decision: &str| {
        trail
            .iter()
            .any(|e| e.0 == actor && e.1 == action && e.3 == decision)
    };
    assert!(audited("person:tm-1", "GetReport", "allowed"), "{trail:?}");
    assert!(
        audited("person:tm-1", "ExportReportCsv", "allowed"),
        "{trail:?}"
    );
    assert!(audited("person:fsw-1", "GetReport", "denied"), "{trail:?}");
    assert!(audited("person:tm-9", "GetReport", "denied"), "{trail:?}");
    Ok(())
}

#[tokio::test]
async fn the_report_matches_a_hand_computed_set_of_cases_embedded() -> anyhow::Result<()> {
    report_is_hand_computed(false).await
}

#[tokio::test]
async fn the_report_matches_a_hand_computed_set_of_cases_distributed() -> anyhow::Result<()> {
    report_is_hand_computed(true).await
}

/// The real journey, every service running: a referral from an upstream system is received,
/// consented, screened and (no service in the council's directory) put on the waiting list — and
/// reporting counts it from the services' own events: the day's demand by source, route, need and
/// the locality of its postcode, screened in time, waiting.
async fn a_real_referral_is_counted(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn_configured(distributed, |s, _| {
        let section = serde_json::json!({"localities": {"Demoton": ["DM1"]}});
        if let Some(w) = s.tenants.get_mut("worcs") {
            w.sections.insert(
                "allocation".into(),
                Section::from_json("tenants.worcs.allocation", section).expect("section"),
            );
        }
    })
    .await?;
    let doc = serde_json::to_vec(&eh_tests::referral("REP-1", None))?;
    t.publish_inbound("worcs", doc, "rep-1").await?;
    // A period around today, whatever the UK's date is.
    let day = |d: i64| {
        (Utc::now() + chrono::TimeDelta::days(d))
            .date_naive()
            .to_string()
    };
    let (from, to) = (day(-1), day(1));
    let api = ReportingServiceClient::new(t.channel().await?);
    let manager = t.token("worcs", "tm-1", &["team_manager"]);
    let report = eh_testkit::eventually(WAIT, "the referral screened and waiting", || {
        let (mut api, manager, from, to) = (api.clone(), manager.clone(), from.clone(), to.clone());
        async move {
            let r = api
                .get_report(with_token(request("worcs", &from, &to), &manager))
                .await?
                .into_inner();
            let screened = rows(&r.timeliness)
                .get(&(
                    "screened_in_time".to_string(),
                    "within_working_days=1".to_string(),
                ))
                .copied();
            let waiting = rows(&r.waiting_list)
                .get(&("waiting".to_string(), String::new()))
                .copied();
            Ok(
                (screened == Some((Some(1.0), 1, 1)) && waiting == Some((Some(1.0), 1, 1)))
                    .then_some(r),
            )
        }
    })
    .await?;
    assert_eq!(
        rows(&report.demand),
        expect(&[
            ("referrals", "", Some(1.0), 1, 1),
            ("referrals", "source_system=test-hub", Some(1.0), 1, 1),
            ("referrals", "route=practitioner", Some(1.0), 1, 1),
            ("referrals", "need=education", Some(1.0), 1, 1),
            ("referrals", "need=mental_health", Some(1.0), 1, 1),
            ("referrals", "locality=Demoton", Some(1.0), 1, 1),
        ])
    );
    Ok(())
}

#[tokio::test]
async fn a_real_referral_is_counted_embedded() -> anyhow::Result<()> {
    a_real_referral_is_counted(false).await
}

#[tokio::test]
async fn a_real_referral_is_counted_distributed() -> anyhow::Result<()> {
    a_real_referral_is_counted(true).await
}
