//! The figures of a hand-computed set of cases (England and Wales, spring 2026: Good Friday
//! 3 April, Easter Monday 6 April, the early May bank holiday 4 May and the spring one 25 May).
use super::*;
use chrono::{DateTime, Utc};
use eh_workdays::Division;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn council() -> Council {
    Council {
        calendar: WorkingCalendar::new(Division::EnglandAndWales, []).unwrap(),
        screening_days: 1,
        assessment_days: 30,
        waiting_list_days: 20,
        localities: Localities(BTreeMap::from([
            (
                "Worcester City".to_string(),
                vec!["WR1".to_string(), "WR5".to_string()],
            ),
            ("Malvern Hills".to_string(), vec!["WR14".to_string()]),
        ])),
    }
}

fn spring() -> Period {
    Period::parse("2026-03-01", "2026-05-31").unwrap()
}

fn referral(id: &str, at: &str, system: &str, route: &str, loc: &str, needs: &[&str]) -> Referral {
    Referral {
        referral_id: id.into(),
        received_at: t(at),
        source_system: system.into(),
        route: route.into(),
        locality: loc.into(),
        needs: needs.iter().map(|n| n.to_string()).collect(),
    }
}

fn screening(referral: &str, at: &str) -> Screening {
    Screening {
        referral_id: referral.into(),
        case_id: format!("case-{referral}"),
        outcome: "accepted_for_early_help".into(),
        decided_at: t(at),
    }
}

fn at(case: &str, when: &str) -> CaseAt {
    CaseAt {
        case_id: case.into(),
        at: t(when),
    }
}

fn score(case: &str, stage: &str, headline: &str, score: u32, when: &str) -> Score {
    Score {
        case_id: case.into(),
        stage: stage.into(),
        headline: headline.into(),
        score,
        at: t(when),
    }
}

/// The set: A screened in time, its EHA in time only because Easter is not counted; B screened
/// late (a Friday-afternoon referral decided on Tuesday) and its EHA late across Easter; C advice;
/// D not screened yet, no postcode; E before the period; waiting cases W1 (since March), W2 (since
/// 20 May) and G (allocated from the list in March).
fn facts() -> Facts {
    Facts {
        referrals: vec![
            referral(
                "a",
                "2026-03-02T09:00:00Z",
                "hub-a",
                "practitioner",
                "Worcester City",
                &["housing", "education"],
            ),
            referral(
                "b",
                "2026-03-06T16:00:00Z",
                "hub-a",
                "practitioner",
                "Worcester City",
                &["mental_health"],
            ),
            referral(
                "c",
                "2026-03-11T10:00:00Z",
                "school-mis",
                "front_door",
                "Malvern Hills",
                &["housing", "housing"],
            ),
            referral(
                "d",
                "2026-03-16T10:00:00Z",
                "school-mis",
                "practitioner",
                locality::UNKNOWN,
                &["education"],
            ),
            referral(
                "e",
                "2026-02-20T10:00:00Z",
                "hub-a",
                "practitioner",
                "Worcester City",
                &["crime"],
            ),
        ],
        screenings: vec![
            screening("a", "2026-03-02T15:00:00Z"),
            screening("b", "2026-03-10T09:00:00Z"),
            screening("c", "2026-03-11T14:00:00Z"),
            // A later decision of the same referral does not make it later.
            screening("a", "2026-03-20T09:00:00Z"),
        ],
        transitions: vec![
            Transition {
                referral_id: String::new(),
                case_id: "case-a".into(),
                from_state: "allocating".into(),
                to_state: "allocated".into(),
                at: t("2026-03-04T10:00:05Z"),
            },
            Transition {
                referral_id: String::new(),
                case_id: "w1".into(),
                from_state: "allocating".into(),
                to_state: "waiting_for_provider".into(),
                at: t("2026-03-02T10:00:01Z"),
            },
            Transition {
                referral_id: String::new(),
                case_id: "g".into(),
                from_state: "waiting_for_provider".into(),
                to_state: "allocated".into(),
                at: t("2026-03-20T10:00:01Z"),
            },
        ],
        offers_accepted: vec![
            at("case-a", "2026-03-04T10:00:00Z"),
            at("case-b", "2026-03-11T10:00:00Z"),
            at("g", "2026-03-20T10:00:00Z"),
        ],
        waits: vec![
            at("w1", "2026-03-02T10:00:00Z"),
            at("w2", "2026-05-20T10:00:00Z"),
            at("g", "2026-03-05T10:00:00Z"),
        ],
        finalised: vec![
            Finalised {
                case_id: "case-a".into(),
                version: 1,
                at: t("2026-04-17T15:00:00Z"),
            },
            Finalised {
                case_id: "case-b".into(),
                version: 1,
                at: t("2026-04-27T09:00:00Z"),
            },
            // An amendment is not a second assessment.
            Finalised {
                case_id: "case-a".into(),
                version: 2,
                at: t("2026-05-05T09:00:00Z"),
            },
        ],
        scores: vec![
            score("case-a", "start", "housing", 3, "2026-04-17T15:00:00Z"),
            score("case-a", "closure", "housing", 7, "2026-05-20T10:00:00Z"),
            score("case-a", "start", "education", 5, "2026-04-17T15:00:00Z"),
            score("case-a", "review", "education", 4, "2026-05-01T10:00:00Z"),
            score(
                "case-b",
                "start",
                "mental_health",
                2,
                "2026-04-27T09:00:00Z",
            ),
            score(
                "case-b",
                "closure",
                "mental_health",
                2,
                "2026-05-28T10:00:00Z",
            ),
            // One score alone is no change.
            score("case-c", "start", "housing", 1, "2026-05-01T10:00:00Z"),
        ],
        closures: vec![
            Closure {
                case_id: "case-a".into(),
                kind: "outcomes_met".into(),
                outcomes: vec![("housing".into(), true), ("education".into(), true)],
                at: t("2026-05-20T10:00:00Z"),
            },
            Closure {
                case_id: "case-b".into(),
                kind: "outcomes_not_met".into(),
                outcomes: vec![("mental_health".into(), false)],
                at: t("2026-05-28T10:00:00Z"),
            },
            // After the period.
            Closure {
                case_id: "x".into(),
                kind: "outcomes_met".into(),
                outcomes: vec![("crime".into(), true)],
                at: t("2026-06-02T10:00:00Z"),
            },
        ],
        follow_ups: vec![
            FollowUp {
                case_id: "x".into(),
                sustained: true,
                at: t("2026-05-10T10:00:00Z"),
            },
            FollowUp {
                case_id: "y".into(),
                sustained: false,
                at: t("2026-04-10T10:00:00Z"),
            },
        ],
    }
}

/// (measure, dimension) → (value, numerator, denominator).
fn table(figures: &[Figure]) -> BTreeMap<(String, String), (Option<f64>, i64, i64)> {
    figures
        .iter()
        .map(|f| {
            (
                (f.measure.to_string(), f.dimension.clone()),
                (f.value, f.numerator, f.denominator),
            )
        })
        .collect()
}

fn get(figures: &[Figure], measure: &str, dimension: &str) -> (Option<f64>, i64, i64) {
    table(figures)
        .get(&(measure.to_string(), dimension.to_string()))
        .copied()
        .unwrap_or_else(|| panic!("no figure {measure} {dimension}"))
}

fn now() -> DateTime<Utc> {
    t("2026-11-29T09:00:00Z")
}

#[test]
fn timeliness_counts_working_days_on_the_councils_calendar() {
    let r = report(&facts(), &spring(), &council(), now());
    let f = &r.timeliness;
    // A (decided the same day) and C in time; B (Friday 16:00 → Tuesday) late; D not screened.
    assert_eq!(
        get(f, "screened_in_time", "within_working_days=1"),
        (Some(2.0 / 3.0), 2, 3)
    );
    assert_eq!(get(f, "awaiting_screening", ""), (Some(1.0), 1, 4));
    // A: allocated Wed 4 March, 30 working days (Easter skipped) end Fri 17 April: in time.
    // B: allocated Wed 11 March, due by Fri 24 April, finalised Mon 27 April: late.
    assert_eq!(
        get(f, "eha_finalised_in_time", "within_working_days=30"),
        (Some(0.5), 1, 2)
    );
    let taf = f.iter().find(|f| f.measure == "taf_on_time").unwrap();
    assert_eq!(taf.value, None, "not shown as zero");
    assert_eq!(taf.unavailable, Some(TAF_UNAVAILABLE));
}

#[test]
fn a_bank_holiday_is_not_a_working_day_for_the_clocks() {
    let cal = council().calendar;
    // 30 working days from Wed 4 March 2026: Friday 17 April with Easter skipped.
    assert_eq!(
        in_time(
            &cal,
            t("2026-03-04T10:00:00Z"),
            30,
            t("2026-04-17T22:59:59Z")
        ),
        Some(true)
    );
    assert_eq!(
        in_time(
            &cal,
            t("2026-03-04T10:00:00Z"),
            30,
            t("2026-04-17T23:00:00Z")
        ),
        Some(false),
        "BST midnight ends Friday"
    );
    // Thursday before Easter + 1 working day is Tuesday.
    assert_eq!(
        in_time(
            &cal,
            t("2026-04-02T09:00:00Z"),
            1,
            t("2026-04-07T20:00:00Z")
        ),
        Some(true)
    );
    // Outside the calendar's years: not counted, not guessed.
    assert_eq!(
        in_time(
            &cal,
            t("2030-12-30T09:00:00Z"),
            5,
            t("2031-01-10T09:00:00Z")
        ),
        None
    );
}

#[test]
fn demand_by_source_route_need_and_locality() {
    let r = report(&facts(), &spring(), &council(), now());
    let f = &r.demand;
    assert_eq!(get(f, "referrals", ""), (Some(4.0), 4, 4));
    assert_eq!(
        get(f, "referrals", "source_system=hub-a"),
        (Some(2.0), 2, 4)
    );
    assert_eq!(
        get(f, "referrals", "source_system=school-mis"),
        (Some(2.0), 2, 4)
    );
    assert_eq!(get(f, "referrals", "route=practitioner"), (Some(3.0), 3, 4));
    assert_eq!(get(f, "referrals", "route=front_door"), (Some(1.0), 1, 4));
    // C names housing twice: one referral.
    assert_eq!(get(f, "referrals", "need=housing"), (Some(2.0), 2, 4));
    assert_eq!(get(f, "referrals", "need=education"), (Some(2.0), 2, 4));
    assert_eq!(get(f, "referrals", "need=mental_health"), (Some(1.0), 1, 4));
    assert_eq!(
        get(f, "referrals", "locality=Worcester City"),
        (Some(2.0), 2, 4)
    );
    assert_eq!(
        get(f, "referrals", "locality=Malvern Hills"),
        (Some(1.0), 1, 4)
    );
    assert_eq!(get(f, "referrals", "locality=unknown"), (Some(1.0), 1, 4));
    assert!(
        !table(f).contains_key(&("referrals".into(), "need=crime".into())),
        "E arrived before the period"
    );
    assert_eq!(f.len(), 1 + 2 + 2 + 3 + 3);
}

#[test]
fn outcomes_met_score_change_and_sustained() {
    let r = report(&facts(), &spring(), &council(), now());
    let f = &r.outcomes;
    assert_eq!(get(f, "closures", ""), (Some(2.0), 2, 2));
    assert_eq!(get(f, "closures", "kind=outcomes_met"), (Some(1.0), 1, 2));
    assert_eq!(
        get(f, "closures", "kind=outcomes_not_met"),
        (Some(1.0), 1, 2)
    );
    assert_eq!(get(f, "all_outcomes_met", ""), (Some(0.5), 1, 2));
    assert_eq!(get(f, "outcome_met", "headline=housing"), (Some(1.0), 1, 1));
    assert_eq!(
        get(f, "outcome_met", "headline=education"),
        (Some(1.0), 1, 1)
    );
    assert_eq!(
        get(f, "outcome_met", "headline=mental_health"),
        (Some(0.0), 0, 1)
    );
    // 3 → 7; 5 → 4; 2 → 2.
    assert_eq!(
        get(f, "score_change", "headline=housing"),
        (Some(4.0), 4, 1)
    );
    assert_eq!(
        get(f, "score_change", "headline=education"),
        (Some(-1.0), -1, 1)
    );
    assert_eq!(
        get(f, "score_change", "headline=mental_health"),
        (Some(0.0), 0, 1)
    );
    assert_eq!(
        get(f, "score_improved", "headline=housing"),
        (Some(1.0), 1, 1)
    );
    assert_eq!(
        get(f, "score_improved", "headline=education"),
        (Some(0.0), 0, 1)
    );
    assert_eq!(get(f, "outcomes_sustained", ""), (Some(0.5), 1, 2));
}

#[test]
fn the_waiting_list_at_the_end_of_the_period_in_working_days() {
    let r = report(&facts(), &spring(), &council(), now());
    assert_eq!(r.waiting_list_as_at, t("2026-05-31T23:00:00Z"));
    let f = &r.waiting_list;
    // W1 since Mon 2 March: 60 working days to Sun 31 May (Easter, 4 and 25 May skipped);
    // W2 since Wed 20 May: 6 (21, 22, 26–29 May). G left the list when allocated.
    assert_eq!(get(f, "waiting", ""), (Some(2.0), 2, 2));
    assert_eq!(get(f, "wait_working_days", ""), (Some(33.0), 66, 2));
    assert_eq!(get(f, "longest_wait_working_days", ""), (Some(60.0), 60, 2));
    assert_eq!(
        get(f, "waiting_beyond_limit", "limit_working_days=20"),
        (Some(0.5), 1, 2)
    );
    // In the middle of March G was waiting too.
    let mid = waiting_at(&facts(), t("2026-03-10T12:00:00Z"));
    assert_eq!(mid.keys().collect::<Vec<_>>(), ["g", "w1"]);
    // A wait ended by a closure.
    let mut f2 = facts();
    f2.transitions.push(Transition {
        referral_id: String::new(),
        case_id: "w2".into(),
        from_state: "waiting_for_provider".into(),
        to_state: "closed_withdrawn".into(),
        at: t("2026-05-22T10:00:00Z"),
    });
    assert_eq!(
        waiting_at(&f2, t("2026-05-31T23:00:00Z"))
            .keys()
            .collect::<Vec<_>>(),
        ["w1"]
    );
}

#[test]
fn an_empty_period_shows_rates_without_a_value_not_zero() {
    let p = Period::parse("2029-01-01", "2029-01-31").unwrap();
    let r = report(&facts(), &p, &council(), now());
    assert_eq!(get(&r.demand, "referrals", ""), (Some(0.0), 0, 0));
    assert_eq!(
        get(&r.timeliness, "screened_in_time", "within_working_days=1"),
        (None, 0, 0)
    );
    // A period after now: the waiting list is as at now.
    assert_eq!(r.waiting_list_as_at, now());
}

#[test]
fn periods_are_checked_naming_the_field() {
    let fields = |from: &str, to: &str| -> Vec<&'static str> {
        Period::parse(from, to)
            .unwrap_err()
            .into_iter()
            .map(|v| v.field)
            .collect()
    };
    assert_eq!(fields("2026-05-01", "2026-04-30"), ["to"]);
    assert_eq!(fields("", "2026-04-30"), ["from"]);
    assert_eq!(fields("2026-02-30", "nope"), ["from", "to"]);
    assert_eq!(fields("2026-01-01", "2035-01-01"), ["to"]);
    let one = Period::parse("2026-06-01", "2026-06-01").unwrap();
    // 1 June is in BST: 23:30 UTC on 31 May is already 1 June in the UK.
    assert!(one.contains(t("2026-05-31T23:30:00Z")));
    assert!(!one.contains(t("2026-06-01T23:00:00Z")));
}

#[test]
fn a_postcode_is_in_its_most_specific_locality() {
    let mut l = council().localities;
    l.0.insert("Warndon".into(), vec!["WR5 1".into()]);
    assert_eq!(l.of(Some("wr1 2ab")), "Worcester City");
    assert_eq!(
        l.of(Some("WR51AA")),
        "Warndon",
        "the sector over the district"
    );
    assert_eq!(l.of(Some("WR5 2AA")), "Worcester City");
    assert_eq!(l.of(Some("WR14 3XY")), "Malvern Hills", "WR14 is not WR1");
    assert_eq!(l.of(Some("B1 1AA")), locality::OUTSIDE);
    assert_eq!(l.of(Some("not a postcode")), locality::UNKNOWN);
    assert_eq!(l.of(None), locality::UNKNOWN);
}

#[test]
fn csv_rows_quote_what_rfc_4180_says_to() {
    assert_eq!(csv::field("plain"), "plain");
    assert_eq!(csv::field("a,b"), "\"a,b\"");
    assert_eq!(csv::field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv::field("two\nlines"), "\"two\nlines\"");
    assert_eq!(csv::number(2.0 / 3.0), "0.6667");
    assert_eq!(csv::number(33.0), "33");
    assert_eq!(csv::number(-1.0), "-1");
    let r = report(&facts(), &spring(), &council(), now());
    let text = csv::render(&r);
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "section,measure,dimension,value,numerator,denominator,kind,note"
    );
    assert_eq!(lines.last(), Some(&""), "every line ends with CRLF");
    assert!(lines.contains(&"timeliness,screened_in_time,within_working_days=1,0.6667,2,3,rate,"));
    assert!(lines.contains(&"outcomes,score_change,headline=education,-1,-1,1,mean,"));
    let taf = format!("timeliness,taf_on_time,,,,,rate,\"{TAF_UNAVAILABLE}\"");
    assert!(lines.contains(&taf.as_str()), "{text}");
    let figures: usize = r.sections().iter().map(|(_, f)| f.len()).sum();
    assert_eq!(lines.len(), 1 + figures + 1);
}

#[test]
fn a_referral_whose_case_ended_without_a_decision_is_not_awaiting_screening() {
    let mut f = facts();
    // F: significant harm, stepped up at once; never screened, and not waiting to be.
    f.referrals.push(referral(
        "f",
        "2026-04-01T09:00:00Z",
        "hub-a",
        "front_door",
        "Worcester City",
        &["safeguarding"],
    ));
    f.transitions.push(Transition {
        case_id: "case-f".into(),
        referral_id: "f".into(),
        from_state: "requested".into(),
        to_state: "stepped_up".into(),
        at: t("2026-04-01T09:00:01Z"),
    });
    let r = report(&f, &spring(), &council(), now());
    assert_eq!(
        get(&r.timeliness, "awaiting_screening", ""),
        (Some(1.0), 1, 5)
    );
    // D's case closing for want of consent takes it off too.
    f.transitions.push(Transition {
        case_id: "case-d".into(),
        referral_id: "d".into(),
        from_state: "awaiting_consent".into(),
        to_state: "closed_no_consent".into(),
        at: t("2026-04-14T09:00:00Z"),
    });
    let r = report(&f, &spring(), &council(), now());
    assert_eq!(
        get(&r.timeliness, "awaiting_screening", ""),
        (Some(0.0), 0, 5)
    );
}
