use super::view::{self, Answer, Section};
use super::*;
use std::collections::BTreeMap;

fn contribution(category: &str, needs: &[&str]) -> Contribution {
    Contribution {
        category: category.into(),
        worries: vec!["attendance has fallen to 70%".into()],
        working_well: vec!["mum asks for help".into()],
        next_steps: vec![],
        scaling: Some(Scaling {
            score: 4,
            scored_by: "school".into(),
            why: "attendance".into(),
        }),
        child_voices: vec![ChildVoice {
            child_id: "p-1".into(),
            words: "I like art".into(),
            how_gathered: "talked at school".into(),
        }],
        needs: needs
            .iter()
            .map(|h| Need {
                headline: (*h).into(),
                detail: String::new(),
            })
            .collect(),
    }
}

fn fields(v: &[Violation]) -> Vec<&str> {
    v.iter().map(|v| v.field.as_str()).collect()
}

#[test]
fn a_well_formed_contribution_passes() {
    assert_eq!(
        contribution("education", &["education", "mental_health"]).check(),
        []
    );
}

#[test]
fn every_wrong_field_is_named_never_its_value() {
    let mut c = contribution("gossip", &["education", "education", "astrology"]);
    c.scaling = Some(Scaling {
        score: 11,
        scored_by: " ".into(),
        why: "x".into(),
    });
    c.worries.push(String::new());
    c.child_voices[0].how_gathered = String::new();
    let v = c.check();
    assert_eq!(
        fields(&v),
        [
            "contribution.category",
            "contribution.worries[1]",
            "contribution.scaling.score",
            "contribution.scaling.scored_by",
            "contribution.child_voices[0].how_gathered",
            "contribution.needs[1].headline",
            "contribution.needs[2].headline",
        ]
    );
    assert!(
        v.iter()
            .all(|x| !x.reason.contains("gossip") && !x.reason.contains("astrology"))
    );
}

#[test]
fn an_empty_contribution_and_oversized_text_are_refused() {
    let empty = Contribution {
        category: "health".into(),
        ..Default::default()
    };
    assert_eq!(fields(&empty.check()), ["contribution"]);
    let mut long = contribution("health", &[]);
    long.working_well = vec!["x".repeat(MAX_TEXT + 1)];
    long.next_steps = vec!["y".into(); MAX_ITEMS + 1];
    assert_eq!(
        fields(&long.check()),
        ["contribution.working_well[0]", "contribution.next_steps"]
    );
}

#[test]
fn every_headline_problem_has_a_category_consent_knows() {
    assert_eq!(HEADLINES.len(), 10);
    for (h, c) in HEADLINES {
        assert!(CATEGORIES.contains(c), "{h} → {c}");
    }
    assert_eq!(headline_category("crime"), Some("police"));
    assert_eq!(headline_category("burglary"), None);
}

const LEAD: Lead<'static> = Lead {
    practitioner: "lead-1",
    organization: "org-1",
};

fn caller<'a>(id: &'a str, agency: Option<&'a str>, tm: bool) -> Caller<'a> {
    Caller {
        id,
        agency,
        team_manager: tm,
    }
}

#[test]
fn only_the_lead_or_a_team_manager_opens_finalises_and_amends() {
    let lead = caller("lead-1", Some("org-1"), false);
    let manager = caller("tm", None, true);
    let other = caller("someone", Some("org-1"), false);
    assert_eq!(may_open(&lead, &LEAD, false), Ok(()));
    assert_eq!(may_open(&manager, &LEAD, false), Ok(()));
    assert!(matches!(
        may_open(&other, &LEAD, false),
        Err(Refusal::Forbidden(_))
    ));
    assert!(matches!(
        may_open(&lead, &LEAD, true),
        Err(Refusal::Conflict(_))
    ));

    assert_eq!(may_finalise(&lead, &LEAD, Status::Open, 1), Ok(()));
    assert!(matches!(
        may_finalise(&other, &LEAD, Status::Open, 1),
        Err(Refusal::Forbidden(_))
    ));
    assert!(matches!(
        may_finalise(&lead, &LEAD, Status::Finalised, 1),
        Err(Refusal::Conflict(_))
    ));
    assert!(matches!(
        may_finalise(&lead, &LEAD, Status::Open, 0),
        Err(Refusal::Conflict(_))
    ));

    assert_eq!(
        may_amend(&lead, &LEAD, Status::Finalised, "new school"),
        Ok(Ok(()))
    );
    assert!(matches!(
        may_amend(&other, &LEAD, Status::Finalised, "x"),
        Ok(Err(Refusal::Forbidden(_)))
    ));
    assert!(matches!(
        may_amend(&lead, &LEAD, Status::Open, "x"),
        Ok(Err(Refusal::Conflict(_)))
    ));
    let missing = may_amend(&lead, &LEAD, Status::Finalised, "  ").unwrap_err();
    assert_eq!(fields(&missing), ["what_changes"]);
}

#[test]
fn a_contribution_is_edited_only_by_its_agency_while_open() {
    let school = caller("t-1", Some("education"), false);
    let police = caller("pc-1", Some("police"), false);
    let nobody = caller("x", None, false);
    assert_eq!(may_contribute(&school, Status::Open), Ok(()));
    assert!(matches!(
        may_contribute(&nobody, Status::Open),
        Err(Refusal::Forbidden(_))
    ));
    assert!(matches!(
        may_contribute(&school, Status::Finalised),
        Err(Refusal::Conflict(_))
    ));
    assert_eq!(may_edit(&school, "education", Status::Open), Ok(()));
    assert!(matches!(
        may_edit(&police, "education", Status::Open),
        Err(Refusal::Forbidden(_))
    ));
    assert!(matches!(
        may_edit(&school, "education", Status::Finalised),
        Err(Refusal::Conflict(_))
    ));
}

fn section(id: &str, agency: &str, c: Contribution) -> Section {
    Section {
        id: id.into(),
        author_agency: agency.into(),
        body: c,
    }
}

fn answers(pairs: &[(&str, Answer)]) -> BTreeMap<String, Answer> {
    pairs
        .iter()
        .map(|(c, a)| ((*c).to_string(), a.clone()))
        .collect()
}

#[test]
fn consent_withholds_exactly_what_it_does_not_allow_and_says_so() {
    let sections = vec![
        section(
            "c-school",
            "education",
            contribution("education", &["education", "mental_health"]),
        ),
        section(
            "c-camhs",
            "health",
            contribution("mental_health", &["mental_health"]),
        ),
        section("c-police", "police", contribution("police", &["crime"])),
    ];
    assert_eq!(
        view::categories_to_ask(&sections, "police"),
        ["education", "mental_health"]
    );
    let yes = |id: &str| Some((true, id.to_string()));
    let no = |id: &str| Some((false, id.to_string()));
    let v = view::apply(
        sections,
        "police",
        &answers(&[("education", yes("d-1")), ("mental_health", no("d-2"))]),
    );
    // The police see the school's section without its mental-health need, not CAMHS's at all,
    // and their own in full.
    let shown: Vec<&str> = v.shown.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(shown, ["c-school", "c-police"]);
    assert_eq!(v.shown[0].body.needs.len(), 1);
    assert_eq!(v.shown[0].body.needs[0].headline, "education");
    assert_eq!(v.shown[1].body.needs[0].headline, "crime");
    let withheld: Vec<(&str, &str)> = v
        .withheld
        .iter()
        .map(|w| (w.contribution_id.as_str(), w.what.as_str()))
        .collect();
    assert_eq!(
        withheld,
        [
            ("c-school", "1 of its needs"),
            ("c-camhs", "the contribution of a health agency")
        ]
    );
    for w in &v.withheld {
        assert_eq!(w.decision_ids, ["d-2"]);
        assert!(w.reason.contains("police agency"), "{}", w.reason);
        assert!(
            !w.reason.contains("mental"),
            "never the category: {}",
            w.reason
        );
    }
}

#[test]
fn what_consent_could_not_be_asked_about_is_withheld() {
    let sections = vec![section(
        "c-1",
        "health",
        contribution("health", &["housing"]),
    )];
    let all_unasked = view::apply(sections.clone(), "education", &BTreeMap::new());
    assert!(all_unasked.shown.is_empty());
    assert!(
        all_unasked.withheld[0]
            .reason
            .contains("could not be checked")
    );
    let need_unasked = view::apply(
        sections,
        "education",
        &answers(&[("health", Some((true, "d".into()))), ("housing", None)]),
    );
    assert_eq!(need_unasked.shown[0].body.needs, []);
    assert_eq!(need_unasked.withheld[0].what, "1 of its needs");
    assert!(need_unasked.withheld[0].decision_ids.is_empty());
}
