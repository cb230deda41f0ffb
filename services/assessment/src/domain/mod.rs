//! The Early Help Assessment as the platform understands it, pure (no database, no clock):
//! the Signs of Safety structure of a contribution and its checks, who may do what to an
//! assessment and its versions, and what a reader is shown once the family's consent is applied.
//!
//! An assessment belongs to one case. Its versions are numbered from 1; at most one is `open`
//! (contributions may be added and edited, each by its author's agency only) and every earlier
//! one is `finalised` (locked, immutable, always readable). The lead practitioner finalises the
//! open version; a change after that is a new version, opened by the lead with a statement of
//! what changes, starting from the finalised version's contributions.
pub mod outcomes;
pub mod plan;
pub mod view;

use std::collections::BTreeSet;
use std::fmt;

/// One field of a request that is wrong, and why (never its value).
pub use eh_service::errors::Violation;

/// The Supporting Families headline problems, each with the information category consent is
/// asked about before a reader sees it (consent's vocabulary).
pub const HEADLINES: &[(&str, &str)] = &[
    ("education", "education"),
    ("early_years", "education"),
    ("health", "health"),
    ("mental_health", "mental_health"),
    ("substance_use", "substance_use"),
    ("domestic_abuse", "domestic_abuse"),
    ("crime", "police"),
    ("financial_stability", "finances"),
    ("housing", "housing"),
    ("safeguarding", "social_care"),
];

/// Consent's information categories a contribution may be filed under (`all` is consent's word
/// for every category at once, not a category of information).
pub const CATEGORIES: &[&str] = &[
    "health",
    "education",
    "police",
    "housing",
    "finances",
    "domestic_abuse",
    "mental_health",
    "substance_use",
    "social_care",
];

/// The information category of headline problem `headline`, when it is one.
pub fn headline_category(headline: &str) -> Option<&'static str> {
    HEADLINES
        .iter()
        .find(|(h, _)| *h == headline)
        .map(|(_, c)| *c)
}

/// The longest text a field holds (characters).
pub const MAX_TEXT: usize = 4000;
/// The most entries of one list.
pub const MAX_ITEMS: usize = 50;

/// A scaling question: where, from 0 (nothing can change) to 10 (the worries are gone), someone
/// puts the family's situation, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scaling {
    pub score: u32,
    /// Who gave the score (e.g. "mother", "school", "lead practitioner").
    pub scored_by: String,
    pub why: String,
}

/// A child's own words: their wishes and feelings, and how they were gathered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChildVoice {
    /// The child, as the case knows them (intake's person id).
    pub child_id: String,
    pub words: String,
    /// E.g. "talked at school with their teacher", "three houses drawing".
    pub how_gathered: String,
}

/// A need, coded to a headline problem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Need {
    pub headline: String,
    pub detail: String,
}

/// One agency's section of the assessment, in the Signs of Safety structure.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Contribution {
    /// The information category of the section as a whole (what a reader's agency must be
    /// allowed to see for any of it to be shown).
    pub category: String,
    /// What are we worried about?
    pub worries: Vec<String>,
    /// What is working well?
    pub working_well: Vec<String>,
    /// What needs to happen?
    pub next_steps: Vec<String>,
    pub scaling: Option<Scaling>,
    pub child_voices: Vec<ChildVoice>,
    /// Needs, each also shown only as consent allows for its headline's category.
    pub needs: Vec<Need>,
}

pub(crate) fn text(v: &mut Vec<Violation>, field: &str, value: &str, required: bool) {
    let n = value.trim().chars().count();
    if required && n == 0 {
        v.push(Violation::new(field, "is required"));
    } else if n > MAX_TEXT {
        v.push(Violation::new(
            field,
            format!("is longer than {MAX_TEXT} characters"),
        ));
    }
}

fn list(v: &mut Vec<Violation>, field: &str, items: &[String]) {
    if items.len() > MAX_ITEMS {
        v.push(Violation::new(
            field,
            format!("has more than {MAX_ITEMS} entries"),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        text(v, &format!("{field}[{i}]"), item, true);
    }
}

impl Contribution {
    /// Every violation, by field (`contribution.<field>`), never the value.
    pub fn check(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        if !CATEGORIES.contains(&self.category.as_str()) {
            v.push(Violation::new(
                "contribution.category",
                format!("must be one of {}", CATEGORIES.join(", ")),
            ));
        }
        list(&mut v, "contribution.worries", &self.worries);
        list(&mut v, "contribution.working_well", &self.working_well);
        list(&mut v, "contribution.next_steps", &self.next_steps);
        if let Some(s) = &self.scaling {
            if s.score > 10 {
                v.push(Violation::new(
                    "contribution.scaling.score",
                    "must be from 0 to 10",
                ));
            }
            text(&mut v, "contribution.scaling.scored_by", &s.scored_by, true);
            text(&mut v, "contribution.scaling.why", &s.why, true);
        }
        if self.child_voices.len() > MAX_ITEMS {
            v.push(Violation::new(
                "contribution.child_voices",
                format!("has more than {MAX_ITEMS} entries"),
            ));
        }
        for (i, c) in self.child_voices.iter().enumerate() {
            let f = format!("contribution.child_voices[{i}]");
            text(&mut v, &format!("{f}.child_id"), &c.child_id, true);
            text(&mut v, &format!("{f}.words"), &c.words, true);
            text(&mut v, &format!("{f}.how_gathered"), &c.how_gathered, true);
        }
        let mut seen = BTreeSet::new();
        if self.needs.len() > MAX_ITEMS {
            v.push(Violation::new(
                "contribution.needs",
                format!("has more than {MAX_ITEMS} entries"),
            ));
        }
        for (i, n) in self.needs.iter().enumerate() {
            let f = format!("contribution.needs[{i}]");
            if headline_category(&n.headline).is_none() {
                let all: Vec<&str> = HEADLINES.iter().map(|(h, _)| *h).collect();
                v.push(Violation::new(
                    format!("{f}.headline"),
                    format!(
                        "must be a Supporting Families headline problem: {}",
                        all.join(", ")
                    ),
                ));
            } else if !seen.insert(n.headline.as_str()) {
                v.push(Violation::new(
                    format!("{f}.headline"),
                    "is given twice: one entry per headline problem",
                ));
            }
            text(&mut v, &format!("{f}.detail"), &n.detail, false);
        }
        let empty = self.worries.is_empty()
            && self.working_well.is_empty()
            && self.next_steps.is_empty()
            && self.scaling.is_none()
            && self.child_voices.is_empty()
            && self.needs.is_empty();
        if empty {
            v.push(Violation::new(
                "contribution",
                "says nothing: give at least one worry, strength, next step, score, child's words or need",
            ));
        }
        v
    }
}

/// A version's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Contributions may be added and edited.
    Open,
    /// Locked: immutable, readable for ever.
    Finalised,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Finalised => "finalised",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Status::Open),
            "finalised" => Some(Status::Finalised),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is asking, as far as the rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller<'a> {
    /// Their principal id (a person's subject).
    pub id: &'a str,
    /// Their agency (their token's `agency`); none for a caller without one.
    pub agency: Option<&'a str>,
    pub team_manager: bool,
}

/// The case as assessment knows it: who leads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lead<'a> {
    pub practitioner: &'a str,
    /// The lead's organisation (allocation's ORUK organisation id).
    pub organization: &'a str,
}

/// Why something may not be done: `Forbidden` (the caller's role or agency), `Conflict` (the
/// assessment's state does not allow it now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Forbidden(String),
    Conflict(String),
}

/// Only the lead practitioner (or a team manager) opens, finalises and amends.
pub(crate) fn lead_only(caller: &Caller<'_>, lead: &Lead<'_>, what: &str) -> Result<(), Refusal> {
    if caller.id == lead.practitioner || caller.team_manager {
        Ok(())
    } else {
        Err(Refusal::Forbidden(format!(
            "only the case's lead practitioner or a team manager may {what}"
        )))
    }
}

/// May `caller` open the case's assessment? Only the lead (or a team manager), and only once.
pub fn may_open(caller: &Caller<'_>, lead: &Lead<'_>, exists: bool) -> Result<(), Refusal> {
    lead_only(caller, lead, "open the assessment")?;
    if exists {
        return Err(Refusal::Conflict(
            "the case already has an assessment: amend it to change it".into(),
        ));
    }
    Ok(())
}

/// The agency a section carried over from a step-down's assessment is attributed to.
pub const CARRIED_AGENCY: &str = "social_care";

/// A section of a step-down's most recent assessment, carried over into version 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    pub body: Contribution,
    pub source_reference: String,
    pub assessed_on: chrono::NaiveDate,
    pub assessed_by: String,
}

impl Carried {
    /// Where it came from, as the section shows it.
    pub fn from(&self) -> String {
        format!(
            "carried over from {} (assessed {} by {})",
            self.source_reference, self.assessed_on, self.assessed_by
        )
    }
}

/// May a case that came by `route` start with `n` sections carried over? Only a step-down from
/// social care brings its most recent assessment.
pub fn may_carry_over(route: &str, n: usize) -> Result<(), Refusal> {
    if n > 0 && route != "step_down" {
        return Err(Refusal::Conflict(
            "only a case stepped down from social care carries an assessment over; open it empty"
                .into(),
        ));
    }
    Ok(())
}

/// May `caller` add a section to a version in `status`? Anyone with an agency, while it is open.
pub fn may_contribute(caller: &Caller<'_>, status: Status) -> Result<(), Refusal> {
    if caller.agency.is_none_or(|a| a.trim().is_empty()) {
        return Err(Refusal::Forbidden(
            "a contribution is attributed to an agency: the caller's credential names none".into(),
        ));
    }
    if status != Status::Open {
        return Err(Refusal::Conflict(
            "the assessment is finalised: the lead must amend it (a new version) first".into(),
        ));
    }
    Ok(())
}

/// May `caller` edit a section written by `author_agency` in a version in `status`? Only its
/// author's agency, while the version is open.
pub fn may_edit(caller: &Caller<'_>, author_agency: &str, status: Status) -> Result<(), Refusal> {
    may_contribute(caller, status)?;
    if caller.agency != Some(author_agency) {
        return Err(Refusal::Forbidden(
            "only the agency that wrote a contribution may edit it".into(),
        ));
    }
    Ok(())
}

/// May `caller` finalise a version in `status` holding `contributions` sections?
pub fn may_finalise(
    caller: &Caller<'_>,
    lead: &Lead<'_>,
    status: Status,
    contributions: usize,
) -> Result<(), Refusal> {
    lead_only(caller, lead, "finalise the assessment")?;
    if status != Status::Open {
        return Err(Refusal::Conflict(
            "the assessment is already finalised".into(),
        ));
    }
    if contributions == 0 {
        return Err(Refusal::Conflict(
            "the assessment has no contribution yet: there is nothing to finalise".into(),
        ));
    }
    Ok(())
}

/// May `caller` open a new version of a finalised assessment, saying `what_changes`?
///
/// # Errors
/// A violation when `what_changes` is missing (checked before anything else is).
pub fn may_amend(
    caller: &Caller<'_>,
    lead: &Lead<'_>,
    latest: Status,
    what_changes: &str,
) -> Result<Result<(), Refusal>, Vec<Violation>> {
    let mut v = Vec::new();
    text(&mut v, "what_changes", what_changes, true);
    if !v.is_empty() {
        return Err(v);
    }
    Ok(
        lead_only(caller, lead, "amend the assessment").and_then(|()| {
            if latest == Status::Open {
                Err(Refusal::Conflict(
                    "the latest version is still open: change it, then finalise it".into(),
                ))
            } else {
                Ok(())
            }
        }),
    )
}

#[cfg(test)]
mod tests;
