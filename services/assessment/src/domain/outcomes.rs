//! Outcome measures and closure, pure: distance-travelled scores per need on the council's scale
//! (at the start, at each review, at closure) and the change they show; the Supporting Families
//! outcome for each headline problem; what kind of closure a case has; and when its six-month
//! follow-up check falls due.
use super::{HEADLINES, Refusal, Violation, headline_category, text};
use chrono::{DateTime, Months, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// A council's distance-travelled scale (`tenants.<id>.assessment.score_min` / `score_max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scale {
    pub min: u32,
    pub max: u32,
}

impl Default for Scale {
    fn default() -> Self {
        Self { min: 1, max: 10 }
    }
}

impl std::fmt::Display for Scale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

/// When scores are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Start,
    Review,
    Closure,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Start => "start",
            Stage::Review => "review",
            Stage::Closure => "closure",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "start" => Some(Stage::Start),
            "review" => Some(Stage::Review),
            "closure" => Some(Stage::Closure),
            _ => None,
        }
    }
}

/// One need's score.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Score {
    pub headline: String,
    pub score: u32,
    pub note: String,
}

fn headline_ok(v: &mut Vec<Violation>, field: &str, headline: &str) -> bool {
    if headline_category(headline).is_some() {
        return true;
    }
    let all: Vec<&str> = HEADLINES.iter().map(|(h, _)| *h).collect();
    v.push(Violation::new(
        field,
        format!(
            "must be a Supporting Families headline problem: {}",
            all.join(", ")
        ),
    ));
    false
}

/// Checks scores against `scale` (fields under `field`): one per headline problem, each on the
/// scale. `required`: at least one.
pub fn check_scores(field: &str, scores: &[Score], scale: Scale, required: bool) -> Vec<Violation> {
    let mut v = Vec::new();
    if required && scores.is_empty() {
        v.push(Violation::new(field, "give at least one score"));
    }
    let mut seen = BTreeSet::new();
    for (i, s) in scores.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if headline_ok(&mut v, &format!("{f}.headline"), &s.headline)
            && !seen.insert(s.headline.as_str())
        {
            v.push(Violation::new(
                format!("{f}.headline"),
                "is given twice: one score per headline problem",
            ));
        }
        if s.score < scale.min || s.score > scale.max {
            v.push(Violation::new(
                format!("{f}.score"),
                format!("must be on the council's scale, {scale}"),
            ));
        }
        if s.note.chars().count() > 1000 {
            v.push(Violation::new(
                format!("{f}.note"),
                "is longer than 1000 characters",
            ));
        }
    }
    v
}

/// Per headline problem: the first score, the latest, and the change (scores in the order taken).
pub fn distance<'a>(
    sets: impl IntoIterator<Item = &'a [Score]>,
) -> BTreeMap<String, (u32, u32, i64)> {
    let mut out: BTreeMap<String, (u32, u32, i64)> = BTreeMap::new();
    for set in sets {
        for s in set {
            out.entry(s.headline.clone())
                .and_modify(|(first, latest, change)| {
                    *latest = s.score;
                    *change = i64::from(s.score) - i64::from(*first);
                })
                .or_insert((s.score, s.score, 0));
        }
    }
    out
}

/// The Supporting Families outcome for one headline problem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SfOutcome {
    pub headline: String,
    pub met: bool,
    pub evidence: String,
}

/// How a case closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosureKind {
    /// Every headline problem's outcome met.
    OutcomesMet,
    /// Closed with at least one outcome not met (and no step-down).
    OutcomesNotMet,
    /// Stepped down to universal or community ("earliest help") services.
    SteppedDown,
}

impl ClosureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClosureKind::OutcomesMet => "outcomes_met",
            ClosureKind::OutcomesNotMet => "outcomes_not_met",
            ClosureKind::SteppedDown => "stepped_down",
        }
    }
}

/// A closure as requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInput {
    pub outcomes: Vec<SfOutcome>,
    pub impact: String,
    pub support_given: String,
    pub step_down_to: Vec<String>,
}

/// What a closure settles: its kind and, when every outcome was met, when to follow up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub kind: ClosureKind,
    pub follow_up_due: Option<DateTime<Utc>>,
}

/// How long after a closure with every outcome met the follow-up check falls due.
pub const FOLLOW_UP_MONTHS: u32 = 6;

/// Checks a closure against the headline problems the finalised assessment identified
/// (`identified`): an outcome for each (others may be added), each headline once, evidence for
/// each, the impact and support given. Then its kind, and the follow-up check's date when every
/// outcome was met.
pub fn close(
    c: &CloseInput,
    identified: &BTreeSet<String>,
    at: DateTime<Utc>,
) -> Result<Closing, Vec<Violation>> {
    let mut v = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, o) in c.outcomes.iter().enumerate() {
        let f = format!("outcomes[{i}]");
        if headline_ok(&mut v, &format!("{f}.headline"), &o.headline)
            && !seen.insert(o.headline.clone())
        {
            v.push(Violation::new(
                format!("{f}.headline"),
                "is given twice: one outcome per headline problem",
            ));
        }
        text(&mut v, &format!("{f}.evidence"), &o.evidence, true);
    }
    let missing: Vec<&str> = identified
        .iter()
        .filter(|h| !seen.contains(*h))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        v.push(Violation::new(
            "outcomes",
            format!(
                "give the outcome of every headline problem the assessment identified; missing: {}",
                missing.join(", ")
            ),
        ));
    } else if c.outcomes.is_empty() {
        v.push(Violation::new(
            "outcomes",
            "give the outcome of at least one headline problem",
        ));
    }
    text(&mut v, "impact", &c.impact, true);
    text(&mut v, "support_given", &c.support_given, true);
    if c.step_down_to.len() > 20 {
        v.push(Violation::new("step_down_to", "has more than 20 entries"));
    }
    for (i, s) in c.step_down_to.iter().enumerate() {
        let n = s.trim().chars().count();
        if n == 0 || n > 200 {
            v.push(Violation::new(
                format!("step_down_to[{i}]"),
                "must name a service in 1 to 200 characters",
            ));
        }
    }
    if !v.is_empty() {
        return Err(v);
    }
    let all_met = c.outcomes.iter().all(|o| o.met);
    let kind = if !c.step_down_to.is_empty() {
        ClosureKind::SteppedDown
    } else if all_met {
        ClosureKind::OutcomesMet
    } else {
        ClosureKind::OutcomesNotMet
    };
    Ok(Closing {
        kind,
        follow_up_due: if all_met {
            at.checked_add_months(Months::new(FOLLOW_UP_MONTHS))
        } else {
            None
        },
    })
}

/// May a follow-up answer be recorded now? Only once it is due (asked) and only once.
pub fn may_follow_up(asked: bool, answered: bool, scheduled: bool) -> Result<(), Refusal> {
    if !scheduled {
        return Err(Refusal::Conflict(
            "the case's closure scheduled no follow-up check (not every outcome was met)".into(),
        ));
    }
    if !asked {
        return Err(Refusal::Conflict(
            "the follow-up check is not due yet".into(),
        ));
    }
    if answered {
        return Err(Refusal::Conflict(
            "the follow-up check was already answered".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(h: &str, n: u32) -> Score {
        Score {
            headline: h.into(),
            score: n,
            note: String::new(),
        }
    }

    fn outcome(h: &str, met: bool) -> SfOutcome {
        SfOutcome {
            headline: h.into(),
            met,
            evidence: "School attendance 96% this term".into(),
        }
    }

    fn at() -> DateTime<Utc> {
        "2026-12-04T10:00:00Z".parse().unwrap()
    }

    fn identified(h: &[&str]) -> BTreeSet<String> {
        h.iter().map(|s| (*s).to_string()).collect()
    }

    fn input(outcomes: Vec<SfOutcome>, step_down: &[&str]) -> CloseInput {
        CloseInput {
            outcomes,
            impact: "Attending school, calmer at home".into(),
            support_given: "Parenting course, school liaison".into(),
            step_down_to: step_down.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    #[test]
    fn scores_are_on_the_councils_scale_once_per_headline() {
        let scale = Scale { min: 1, max: 10 };
        assert!(
            check_scores(
                "scores",
                &[score("health", 1), score("housing", 10)],
                scale,
                true
            )
            .is_empty()
        );
        let v = check_scores(
            "scores",
            &[score("health", 0), score("health", 5), score("weather", 3)],
            scale,
            true,
        );
        let f: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            f,
            [
                "scores[0].score",
                "scores[1].headline",
                "scores[2].headline"
            ]
        );
        assert_eq!(check_scores("scores", &[], scale, true).len(), 1);
        assert!(check_scores("scores", &[], scale, false).is_empty());
        let five = Scale { min: 0, max: 5 };
        assert_eq!(
            check_scores("s", &[score("health", 6)], five, true)[0].reason,
            "must be on the council's scale, 0-5"
        );
    }

    #[test]
    fn distance_travelled_is_first_to_latest_per_need() {
        let start = [score("health", 3), score("housing", 2)];
        let review = [score("health", 5)];
        let closure = [score("health", 8), score("housing", 1)];
        let d = distance([&start[..], &review[..], &closure[..]]);
        assert_eq!(d["health"], (3, 8, 5));
        assert_eq!(d["housing"], (2, 1, -1));
    }

    #[test]
    fn closure_kind_and_follow_up() {
        let c = close(
            &input(
                vec![outcome("education", true), outcome("health", true)],
                &[],
            ),
            &identified(&["education", "health"]),
            at(),
        )
        .unwrap();
        assert_eq!(c.kind, ClosureKind::OutcomesMet);
        assert_eq!(
            c.follow_up_due,
            Some("2027-06-04T10:00:00Z".parse().unwrap())
        );
        let c = close(
            &input(
                vec![outcome("education", true), outcome("health", false)],
                &[],
            ),
            &identified(&["education"]),
            at(),
        )
        .unwrap();
        assert_eq!(c.kind, ClosureKind::OutcomesNotMet);
        assert_eq!(
            c.follow_up_due, None,
            "no follow-up unless every outcome was met"
        );
        let c = close(
            &input(vec![outcome("education", true)], &["Family hub drop-in"]),
            &identified(&["education"]),
            at(),
        )
        .unwrap();
        assert_eq!(c.kind, ClosureKind::SteppedDown);
        assert!(
            c.follow_up_due.is_some(),
            "a step-down with every outcome met is followed up too"
        );
    }

    #[test]
    fn a_closure_must_account_for_every_identified_problem() {
        let v = close(
            &input(vec![outcome("education", true)], &[]),
            &identified(&["education", "housing"]),
            at(),
        )
        .unwrap_err();
        assert_eq!(v[0].field, "outcomes");
        assert!(v[0].reason.ends_with("missing: housing"), "{}", v[0].reason);
        let mut bad = input(
            vec![outcome("education", true), outcome("education", false)],
            &[""],
        );
        bad.outcomes[0].evidence = String::new();
        bad.impact = String::new();
        let v = close(&bad, &identified(&[]), at()).unwrap_err();
        let f: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            f,
            [
                "outcomes[0].evidence",
                "outcomes[1].headline",
                "impact",
                "step_down_to[0]"
            ]
        );
    }

    #[test]
    fn a_follow_up_is_answered_once_when_due() {
        assert!(may_follow_up(true, false, true).is_ok());
        assert!(may_follow_up(false, false, true).is_err());
        assert!(may_follow_up(true, true, true).is_err());
        assert!(may_follow_up(false, false, false).is_err());
    }
}
