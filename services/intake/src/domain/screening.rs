//! Screening a request for support against the council's threshold rules: accepted for Early
//! Help, advice and signposting, or more information needed.
//!
//! The rules are configuration, not code: each tenant holds a [`ScreeningRules`] document
//! (deserialised from JSON or any serde format, then [`ScreeningRules::validate`]d), and every
//! decision records the rules' version and the reasons it was reached, so it can be explained
//! later even after the rules change.
//!
//! Significant harm comes first and is not screening: a referral with
//! `significant_harm_risk = true` is a step-up to the front door whatever else it says or lacks.
//! Callers should check [`requires_step_up`] before anything else (consent, matching); [`screen`]
//! also refuses to screen such a referral and returns [`ScreeningOutcome::StepUpSignificantHarm`],
//! so forgetting the check cannot turn a safeguarding case into Early Help. Consent is not judged
//! here either: the consent service decides whether the request may progress.
use crate::domain::matching::{normalise_postcode, outward_code, postcode_area};
use chrono::{Datelike, NaiveDate};
use eh_proto::intake::v1::Referral;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The Supporting Families headline problems, as the referral contract spells them.
pub const HEADLINE_PROBLEMS: [&str; 10] = [
    "education",
    "early_years",
    "health",
    "mental_health",
    "substance_use",
    "domestic_abuse",
    "crime",
    "financial_stability",
    "housing",
    "safeguarding",
];

/// One council's screening rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScreeningRules {
    /// Stored with every decision (e.g. `"worcestershire-2026-04"`).
    pub version: String,
    /// Youngest age in completed years (default 0).
    pub min_age_years: u32,
    /// Oldest age in completed years, inclusive: 18 means up to the day before the 19th
    /// birthday, the "0 to 18" of the county threshold documents (default 18). A council that
    /// means "under 18" sets 17.
    pub max_age_years: u32,
    /// An unborn child (expected date of delivery, no date of birth) is in range (default true:
    /// Early Help runs "from pre-birth").
    pub unborn_accepted: bool,
    /// Postcode areas (`"WR"`) or outward codes (`"B60"`) that are in the council's area. Empty:
    /// every postcode is in area and none is needed.
    pub in_area_postcode_prefixes: Vec<String>,
    pub early_help_team: EarlyHelpTeamCriteria,
    /// Programmes identified at the point of request, such as BRFC / Supporting Families.
    pub programmes: Vec<Programme>,
    pub advice: AdviceRules,
}

/// When a request meets the Early Help Team's criteria.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyHelpTeamCriteria {
    /// At least this many distinct headline problems (default 2: a single need is signposted
    /// to Tier 2 support from 0-19 and community providers).
    pub min_needs: usize,
    /// At least one of these needs must be present (empty: any).
    pub required_any_of: Vec<String>,
}

impl Default for EarlyHelpTeamCriteria {
    fn default() -> Self {
        Self {
            min_needs: 2,
            required_any_of: Vec::new(),
        }
    }
}

/// A programme's criteria (e.g. Building Resilient Families and Communities).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Programme {
    /// Stable identifier recorded in decisions (`"brfc"`): lower case, digits, `_` or `-`.
    pub id: String,
    pub name: String,
    /// At least this many distinct headline problems among `counted_needs`.
    pub min_headline_problems: usize,
    /// Needs that count towards `min_headline_problems` (empty: all ten).
    pub counted_needs: Vec<String>,
    /// At least one of these must be present (empty: any).
    pub required_any_of: Vec<String>,
    /// Age range of at least one child, in completed years (unborn children count as 0).
    pub min_age_years: Option<u32>,
    pub max_age_years: Option<u32>,
    /// Meeting this programme is enough to accept the request for Early Help even when the
    /// Early Help Team criteria are not met (default true).
    pub qualifies_for_early_help: bool,
}

impl Default for Programme {
    fn default() -> Self {
        Self {
            id: "brfc".into(),
            name: "Building Resilient Families and Communities (Supporting Families)".into(),
            min_headline_problems: 3,
            counted_needs: Vec::new(),
            required_any_of: Vec::new(),
            min_age_years: None,
            max_age_years: None,
            qualifies_for_early_help: true,
        }
    }
}

/// The advice recorded and sent to the referrer when a request is not accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdviceRules {
    /// Always given when the request is below the Early Help threshold or advice was asked for.
    pub default_text: String,
    /// Added for each need the referral names, in the order of the headline problems.
    pub by_need: BTreeMap<String, String>,
    /// Given instead when the family lives outside the council's area.
    pub out_of_area_text: String,
    /// Given instead when no child is within the age range.
    pub out_of_age_text: String,
}

impl Default for AdviceRules {
    fn default() -> Self {
        Self {
            default_text: "The request does not meet the criteria for the Early Help Team. The \
                family can be supported at Tier 2 by the 0-19 service providers commissioned by \
                the council and by community and voluntary agencies; please discuss these \
                options with the family."
                .into(),
            by_need: BTreeMap::new(),
            out_of_area_text: "The family lives outside this council's area. Please send the \
                request to the council for the area where the family lives."
                .into(),
            out_of_age_text: "No child named in the request is within the age range for Early \
                Help. Please consider adult services or services for young adults."
                .into(),
        }
    }
}

impl Default for ScreeningRules {
    /// The defaults of the domain summary: ages 0 to 18 and unborn, EHT for two or more
    /// needs, BRFC for three or more headline problems, no area restriction configured.
    fn default() -> Self {
        Self {
            version: "default-1".into(),
            min_age_years: 0,
            max_age_years: 18,
            unborn_accepted: true,
            in_area_postcode_prefixes: Vec::new(),
            early_help_team: EarlyHelpTeamCriteria::default(),
            programmes: vec![Programme::default()],
            advice: AdviceRules::default(),
        }
    }
}

/// A rule that cannot be used, named by its path in the rules document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleViolation {
    pub field: String,
    pub message: String,
}

/// Why a rules document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("screening rules are not readable: {0}")]
    Unreadable(String),
    #[error("screening rules are invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<RuleViolation>),
}

fn is_need(s: &str) -> bool {
    HEADLINE_PROBLEMS.contains(&s)
}

/// A postcode area (`WR`) or an outward code (`B60`, `EC1A`), once upper-cased and trimmed.
fn prefix_well_formed(p: &str) -> bool {
    let b = p.as_bytes();
    let letters = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    let rest = &b[letters..];
    (1..=2).contains(&letters)
        && (rest.is_empty()
            || (rest[0].is_ascii_digit()
                && rest.len() <= 2
                && rest[1..].iter().all(u8::is_ascii_alphanumeric)))
}

impl ScreeningRules {
    /// Reads and validates a JSON rules document.
    pub fn from_json(text: &str) -> Result<Self, RulesError> {
        let rules: Self =
            serde_json::from_str(text).map_err(|e| RulesError::Unreadable(e.to_string()))?;
        rules.validate().map_err(RulesError::Invalid)?;
        Ok(rules)
    }

    /// Every problem with the rules, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<RuleViolation>> {
        let mut v = Vec::new();
        let mut bad = |field: String, message: &str| {
            v.push(RuleViolation {
                field,
                message: message.into(),
            })
        };
        let needs_ok = |field: &str, needs: &[String], bad: &mut dyn FnMut(String, &str)| {
            for (i, n) in needs.iter().enumerate() {
                if !is_need(n) {
                    bad(
                        format!("{field}[{i}]"),
                        "not a headline problem of the referral contract",
                    );
                }
            }
        };
        if self.version.trim().is_empty() {
            bad("version".into(), "must not be empty");
        }
        if self.min_age_years > self.max_age_years {
            bad("min_age_years".into(), "must not exceed max_age_years");
        }
        if self.max_age_years > 25 {
            bad("max_age_years".into(), "must be 25 or less");
        }
        for (i, p) in self.in_area_postcode_prefixes.iter().enumerate() {
            if !prefix_well_formed(&p.trim().to_ascii_uppercase()) {
                bad(
                    format!("in_area_postcode_prefixes[{i}]"),
                    "must be a postcode area (WR) or an outward code (B60)",
                );
            }
        }
        let eht = &self.early_help_team;
        if !(1..=HEADLINE_PROBLEMS.len()).contains(&eht.min_needs) {
            bad(
                "early_help_team.min_needs".into(),
                "must be between 1 and 10",
            );
        }
        needs_ok(
            "early_help_team.required_any_of",
            &eht.required_any_of,
            &mut bad,
        );
        let mut ids = BTreeSet::new();
        for (i, p) in self.programmes.iter().enumerate() {
            let f = |name: &str| format!("programmes[{i}].{name}");
            let id_ok = !p.id.is_empty()
                && p.id.bytes().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-'
                });
            if !id_ok {
                bad(f("id"), "must be lower case letters, digits, '_' or '-'");
            } else if !ids.insert(p.id.as_str()) {
                bad(f("id"), "is used by another programme");
            }
            if p.name.trim().is_empty() {
                bad(f("name"), "must not be empty");
            }
            if !(1..=HEADLINE_PROBLEMS.len()).contains(&p.min_headline_problems) {
                bad(f("min_headline_problems"), "must be between 1 and 10");
            }
            if !p.counted_needs.is_empty() && p.counted_needs.len() < p.min_headline_problems {
                bad(
                    f("counted_needs"),
                    "has fewer needs than min_headline_problems",
                );
            }
            needs_ok(&f("counted_needs"), &p.counted_needs, &mut bad);
            needs_ok(&f("required_any_of"), &p.required_any_of, &mut bad);
            if let (Some(lo), Some(hi)) = (p.min_age_years, p.max_age_years)
                && lo > hi
            {
                bad(f("min_age_years"), "must not exceed max_age_years");
            }
        }
        if self.advice.default_text.trim().is_empty() {
            bad("advice.default_text".into(), "must not be empty");
        }
        for need in self.advice.by_need.keys() {
            if !is_need(need) {
                bad(
                    format!("advice.by_need.{need}"),
                    "not a headline problem of the referral contract",
                );
            }
        }
        if v.is_empty() { Ok(()) } else { Err(v) }
    }

    fn in_area(&self, outward: &str) -> bool {
        self.in_area_postcode_prefixes.iter().any(|p| {
            let p = p.trim().to_ascii_uppercase();
            if p.bytes().all(|c| c.is_ascii_alphabetic()) {
                postcode_area(outward) == p
            } else {
                outward == p
            }
        })
    }
}

/// What screening decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScreeningOutcome {
    AcceptedForEarlyHelp,
    /// Closed with advice recorded and sent to the referrer.
    AdviceAndSignpost,
    MoreInformationNeeded,
    /// Not screened: significant harm goes to the front door at once.
    StepUpSignificantHarm,
}

impl ScreeningOutcome {
    /// As stored (`screening_decisions.outcome`) and announced (`screening_decided.outcome`):
    /// the name it serialises to.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AcceptedForEarlyHelp => "accepted_for_early_help",
            Self::AdviceAndSignpost => "advice_and_signpost",
            Self::MoreInformationNeeded => "more_information_needed",
            Self::StepUpSignificantHarm => "step_up_significant_harm",
        }
    }
}

/// A screening decision, kept with the referral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreeningDecision {
    pub outcome: ScreeningOutcome,
    /// Why, one line per criterion considered.
    pub reasons: Vec<String>,
    pub rule_version: String,
    /// Ids of the programmes whose criteria are met.
    pub programmes_met: Vec<String>,
    /// The advice for the referrer, when the outcome is advice and signposting.
    pub advice: Option<String>,
    /// JSON pointers of the information to ask for, when more information is needed.
    pub missing: Vec<String>,
}

/// True when the referrer believes a child may be at risk of significant harm: step up to the
/// front door immediately, before consent, matching or screening.
pub fn requires_step_up(referral: &Referral) -> bool {
    referral.significant_harm_risk == Some(true)
}

/// Age in completed years on `today` (a 29 February birthday falls on 1 March in other years).
pub fn age_in_years(dob: NaiveDate, today: NaiveDate) -> i32 {
    let before_birthday = (today.month(), today.day()) < (dob.month(), dob.day());
    today.year() - dob.year() - i32::from(before_birthday)
}

/// A criterion's verdict.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Met,
    NotMet,
    Unknown,
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Screens a referral against a council's rules on `today`.
pub fn screen(rules: &ScreeningRules, referral: &Referral, today: NaiveDate) -> ScreeningDecision {
    let mut reasons = Vec::new();
    let mut missing = Vec::new();
    if requires_step_up(referral) {
        return ScreeningDecision {
            outcome: ScreeningOutcome::StepUpSignificantHarm,
            reasons: vec![
                "significant_harm_risk: the referrer believes a child may be at risk of \
                 significant harm; stepped up to the front door, not screened for Early Help"
                    .into(),
            ],
            rule_version: rules.version.clone(),
            programmes_met: Vec::new(),
            advice: None,
            missing,
        };
    }

    // Needs: distinct headline problems, in the contract's order.
    let needs: Vec<&str> = HEADLINE_PROBLEMS
        .iter()
        .copied()
        .filter(|p| referral.needs.iter().any(|n| n == p))
        .collect();
    for n in referral.needs.iter().filter(|n| !is_need(n)) {
        reasons.push(format!("needs: '{n}' is not a headline problem; ignored"));
    }
    let needs_verdict = if needs.is_empty() {
        missing.push("/needs".to_string());
        reasons.push("needs: no headline problem named".into());
        Verdict::Unknown
    } else {
        Verdict::Met
    };

    // Age: at least one child in range.
    let (lo, hi) = (rules.min_age_years, rules.max_age_years);
    let mut ages_in_range: Vec<u32> = Vec::new();
    let mut unknown_ages = 0;
    if referral.children.is_empty() {
        missing.push("/children".into());
        reasons.push("age: no child named".into());
    }
    for (i, child) in referral.children.iter().enumerate() {
        let who = format!("child {} ({})", i + 1, child.given_name);
        let dob = child.date_of_birth.as_deref().filter(|s| !s.is_empty());
        let edd = child
            .expected_date_of_delivery
            .as_deref()
            .filter(|s| !s.is_empty());
        let age = match (dob.map(parse_date), edd.map(parse_date)) {
            (Some(Some(d)), _) if d > today => {
                reasons.push(format!(
                    "age: {who} has a date of birth in the future ({d})"
                ));
                missing.push(format!("/children/{i}/date_of_birth"));
                None
            }
            (Some(Some(d)), _) => Some(age_in_years(d, today)),
            (Some(None), _) => {
                reasons.push(format!("age: {who} has an unreadable date of birth"));
                missing.push(format!("/children/{i}/date_of_birth"));
                None
            }
            (None, Some(Some(e))) if e >= today => {
                if rules.unborn_accepted {
                    reasons.push(format!("age: {who} is unborn (expected {e}); in range"));
                    ages_in_range.push(0);
                } else {
                    reasons.push(format!(
                        "age: {who} is unborn (expected {e}); unborn children are not in range"
                    ));
                }
                continue;
            }
            (None, Some(Some(e))) => {
                reasons.push(format!(
                    "age: {who}'s expected date of delivery ({e}) has passed; taken as age 0, date of birth to be confirmed"
                ));
                Some(0)
            }
            (None, Some(None)) => {
                reasons.push(format!(
                    "age: {who} has an unreadable expected date of delivery"
                ));
                missing.push(format!("/children/{i}/expected_date_of_delivery"));
                None
            }
            (None, None) => {
                reasons.push(format!(
                    "age: {who} has neither a date of birth nor an expected date of delivery"
                ));
                missing.push(format!("/children/{i}/date_of_birth"));
                None
            }
        };
        match age.and_then(|a| u32::try_from(a).ok()) {
            Some(a) if (lo..=hi).contains(&a) => {
                reasons.push(format!("age: {who} is {a}; in range {lo}-{hi}"));
                ages_in_range.push(a);
            }
            Some(a) => reasons.push(format!("age: {who} is {a}; outside {lo}-{hi}")),
            None => unknown_ages += 1,
        }
    }
    let age_verdict = if !ages_in_range.is_empty() {
        Verdict::Met
    } else if unknown_ages > 0 || referral.children.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::NotMet
    };

    // Area: the family's postcode, else the first child's.
    let area_verdict = if rules.in_area_postcode_prefixes.is_empty() {
        Verdict::Met
    } else {
        let family = referral
            .address
            .as_ref()
            .map(|a| ("/address/postcode".to_string(), a.postcode.as_str()));
        let child = referral.children.iter().enumerate().find_map(|(i, c)| {
            c.address.as_ref().map(|a| {
                (
                    format!("/children/{i}/address/postcode"),
                    a.postcode.as_str(),
                )
            })
        });
        match family.filter(|(_, p)| !p.trim().is_empty()).or(child) {
            None => {
                missing.push("/address/postcode".into());
                reasons.push("area: no postcode to check the family lives in the area".into());
                Verdict::Unknown
            }
            Some((path, raw)) => match normalise_postcode(raw) {
                None => {
                    missing.push(path);
                    reasons.push(format!("area: '{raw}' is not a UK postcode"));
                    Verdict::Unknown
                }
                Some(pc) if rules.in_area(outward_code(&pc)) => {
                    reasons.push(format!(
                        "area: {} is in the council's area",
                        outward_code(&pc)
                    ));
                    Verdict::Met
                }
                Some(pc) => {
                    reasons.push(format!(
                        "area: {} is outside the council's area",
                        outward_code(&pc)
                    ));
                    Verdict::NotMet
                }
            },
        }
    };

    let eligible = age_verdict == Verdict::Met && area_verdict == Verdict::Met;
    let eht = &rules.early_help_team;
    let eht_met = needs.len() >= eht.min_needs
        && (eht.required_any_of.is_empty()
            || needs
                .iter()
                .any(|n| eht.required_any_of.iter().any(|r| r == n)));
    if needs_verdict == Verdict::Met {
        reasons.push(format!(
            "early_help_team: {} need(s) ({}); {} (at least {}{})",
            needs.len(),
            needs.join(", "),
            if eht_met {
                "criteria met"
            } else {
                "criteria not met"
            },
            eht.min_needs,
            if eht.required_any_of.is_empty() {
                String::new()
            } else {
                format!(", including one of {}", eht.required_any_of.join(", "))
            }
        ));
    }

    let mut programmes_met = Vec::new();
    let mut programme_qualifies = false;
    if eligible && needs_verdict == Verdict::Met {
        for p in &rules.programmes {
            let counted = needs
                .iter()
                .filter(|n| p.counted_needs.is_empty() || p.counted_needs.iter().any(|c| c == *n))
                .count();
            let required = p.required_any_of.is_empty()
                || needs
                    .iter()
                    .any(|n| p.required_any_of.iter().any(|r| r == n));
            let age_ok = ages_in_range.iter().any(|a| {
                p.min_age_years.is_none_or(|lo| *a >= lo)
                    && p.max_age_years.is_none_or(|hi| *a <= hi)
            });
            if counted >= p.min_headline_problems && required && age_ok {
                reasons.push(format!(
                    "programme {}: criteria met ({counted} headline problems, at least {})",
                    p.id, p.min_headline_problems
                ));
                programmes_met.push(p.id.clone());
                programme_qualifies |= p.qualifies_for_early_help;
            } else {
                reasons.push(format!(
                    "programme {}: criteria not met ({counted} headline problems, at least {}{}{})",
                    p.id,
                    p.min_headline_problems,
                    if required {
                        ""
                    } else {
                        "; none of the required needs"
                    },
                    if age_ok {
                        ""
                    } else {
                        "; no child in the programme's age range"
                    }
                ));
            }
        }
    }

    let advice_requested = referral.requested_support.as_deref() == Some("advice");
    if advice_requested {
        reasons.push("requested_support: the referrer asked for advice only".into());
    }

    let not_met =
        age_verdict == Verdict::NotMet || area_verdict == Verdict::NotMet || advice_requested;
    let unknown = [needs_verdict, age_verdict, area_verdict].contains(&Verdict::Unknown);
    let outcome = if not_met {
        ScreeningOutcome::AdviceAndSignpost
    } else if unknown {
        ScreeningOutcome::MoreInformationNeeded
    } else if eht_met || programme_qualifies {
        ScreeningOutcome::AcceptedForEarlyHelp
    } else {
        ScreeningOutcome::AdviceAndSignpost
    };

    let advice = (outcome == ScreeningOutcome::AdviceAndSignpost).then(|| {
        let mut texts = Vec::new();
        if area_verdict == Verdict::NotMet {
            texts.push(rules.advice.out_of_area_text.clone());
        } else {
            if age_verdict == Verdict::NotMet {
                texts.push(rules.advice.out_of_age_text.clone());
            } else {
                texts.push(rules.advice.default_text.clone());
            }
            texts.extend(
                needs
                    .iter()
                    .filter_map(|n| rules.advice.by_need.get(*n))
                    .cloned(),
            );
        }
        texts.retain(|t| !t.trim().is_empty());
        texts.join("\n\n")
    });
    if outcome != ScreeningOutcome::MoreInformationNeeded {
        missing.clear();
    }

    ScreeningDecision {
        outcome,
        reasons,
        rule_version: rules.version.clone(),
        programmes_met,
        advice,
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eh_proto::intake::v1::{Address, Child};

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
    }

    #[test]
    fn an_outcome_is_stored_by_the_name_it_serialises_to() {
        for o in [
            ScreeningOutcome::AcceptedForEarlyHelp,
            ScreeningOutcome::AdviceAndSignpost,
            ScreeningOutcome::MoreInformationNeeded,
            ScreeningOutcome::StepUpSignificantHarm,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str(), "{o:?}");
        }
    }

    fn child(dob: Option<&str>, edd: Option<&str>) -> Child {
        Child {
            given_name: "Sam".into(),
            family_name: "Smith".into(),
            date_of_birth: dob.map(Into::into),
            expected_date_of_delivery: edd.map(Into::into),
            ..Default::default()
        }
    }

    fn referral(needs: &[&str], postcode: Option<&str>, children: Vec<Child>) -> Referral {
        Referral {
            schema: "earlyhelp.referral.v1".into(),
            route: "practitioner".into(),
            children,
            needs: needs.iter().map(|s| (*s).into()).collect(),
            significant_harm_risk: Some(false),
            address: postcode.map(|p| Address {
                postcode: p.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn worcs() -> ScreeningRules {
        ScreeningRules {
            version: "worcs-2026-11".into(),
            in_area_postcode_prefixes: vec!["WR".into(), "B60".into(), "b61".into()],
            ..ScreeningRules::default()
        }
    }

    #[test]
    fn two_needs_in_area_and_in_age_are_accepted() {
        let r = referral(
            &["education", "housing"],
            Some("wr1 2ab"),
            vec![child(Some("2015-04-01"), None)],
        );
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::AcceptedForEarlyHelp, "{d:?}");
        assert_eq!(d.rule_version, "worcs-2026-11");
        assert!(d.programmes_met.is_empty());
        assert!(d.advice.is_none());
        assert!(
            d.reasons
                .iter()
                .any(|r| r.contains("WR1 is in the council's area")),
            "{:?}",
            d.reasons
        );
    }

    #[test]
    fn brfc_is_met_with_three_headline_problems() {
        let r = referral(
            &["education", "domestic_abuse", "financial_stability"],
            Some("B60 1AA"),
            vec![child(Some("2015-04-01"), None)],
        );
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::AcceptedForEarlyHelp);
        assert_eq!(d.programmes_met, vec!["brfc".to_string()]);
        let r = referral(
            &["education", "domestic_abuse"],
            Some("B60 1AA"),
            vec![child(Some("2015-04-01"), None)],
        );
        assert!(screen(&worcs(), &r, today()).programmes_met.is_empty());
    }

    #[test]
    fn a_programme_alone_can_qualify() {
        let mut rules = worcs();
        rules.early_help_team.min_needs = 5;
        let r = referral(
            &["education", "crime", "housing"],
            Some("WR5 3XY"),
            vec![child(Some("2010-01-01"), None)],
        );
        let d = screen(&rules, &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::AcceptedForEarlyHelp, "{d:?}");
        rules.programmes[0].qualifies_for_early_help = false;
        assert_eq!(
            screen(&rules, &r, today()).outcome,
            ScreeningOutcome::AdviceAndSignpost
        );
    }

    #[test]
    fn a_single_need_is_advised_with_need_specific_signposting() {
        let mut rules = worcs();
        rules
            .advice
            .by_need
            .insert("housing".into(), "Contact the housing options team.".into());
        let r = referral(
            &["housing"],
            Some("WR1 2AB"),
            vec![child(Some("2015-04-01"), None)],
        );
        let d = screen(&rules, &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::AdviceAndSignpost);
        let advice = d.advice.unwrap();
        assert!(advice.starts_with("The request does not meet"), "{advice}");
        assert!(
            advice.ends_with("Contact the housing options team."),
            "{advice}"
        );
    }

    #[test]
    fn required_needs_gate_the_early_help_team() {
        let mut rules = worcs();
        rules.early_help_team.required_any_of =
            vec!["domestic_abuse".into(), "mental_health".into()];
        let r = referral(
            &["education", "housing"],
            Some("WR1 2AB"),
            vec![child(Some("2015-04-01"), None)],
        );
        assert_eq!(
            screen(&rules, &r, today()).outcome,
            ScreeningOutcome::AdviceAndSignpost
        );
        let r = referral(
            &["education", "mental_health"],
            Some("WR1 2AB"),
            vec![child(Some("2015-04-01"), None)],
        );
        assert_eq!(
            screen(&rules, &r, today()).outcome,
            ScreeningOutcome::AcceptedForEarlyHelp
        );
    }

    #[test]
    fn out_of_area_is_advised_to_go_to_the_right_council() {
        let r = referral(
            &["education", "housing", "crime"],
            Some("M1 1AE"),
            vec![child(Some("2015-04-01"), None)],
        );
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::AdviceAndSignpost);
        assert!(d.advice.unwrap().contains("outside this council's area"));
        assert!(
            d.programmes_met.is_empty(),
            "programmes are for families in the area"
        );
        // Area prefixes: "B60" is a district, not every B postcode; "WR" is the area, not W.
        for (pc, inside) in [
            ("B61 0AA", true),
            ("B6 4AA", false),
            ("B601 0AA", false),
            ("W1A 1AA", false),
            ("WR15 8AA", true),
        ] {
            let r = referral(
                &["education", "housing"],
                Some(pc),
                vec![child(Some("2015-04-01"), None)],
            );
            let d = screen(&worcs(), &r, today());
            let accepted = d.outcome == ScreeningOutcome::AcceptedForEarlyHelp;
            assert_eq!(accepted, inside, "{pc}: {d:?}");
        }
    }

    #[test]
    fn the_childs_own_address_stands_in_for_the_familys() {
        let mut c = child(Some("2015-04-01"), None);
        c.address = Some(Address {
            postcode: "WR2 4AA".into(),
            ..Default::default()
        });
        let r = referral(&["education", "housing"], None, vec![c]);
        assert_eq!(
            screen(&worcs(), &r, today()).outcome,
            ScreeningOutcome::AcceptedForEarlyHelp
        );
    }

    #[test]
    fn missing_or_unreadable_postcode_needs_more_information() {
        let r = referral(
            &["education", "housing"],
            None,
            vec![child(Some("2015-04-01"), None)],
        );
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::MoreInformationNeeded);
        assert_eq!(d.missing, vec!["/address/postcode".to_string()]);
        let r = referral(
            &["education", "housing"],
            Some("nowhere"),
            vec![child(Some("2015-04-01"), None)],
        );
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::MoreInformationNeeded);
        // With no area rule configured, no postcode is needed.
        let r = referral(
            &["education", "housing"],
            None,
            vec![child(Some("2015-04-01"), None)],
        );
        assert_eq!(
            screen(&ScreeningRules::default(), &r, today()).outcome,
            ScreeningOutcome::AcceptedForEarlyHelp
        );
    }

    #[test]
    fn an_unborn_child_is_in_range_unless_the_council_says_otherwise() {
        let r = referral(
            &["health", "domestic_abuse"],
            Some("WR1 2AB"),
            vec![child(None, Some("2027-02-01"))],
        );
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::AcceptedForEarlyHelp, "{d:?}");
        assert!(d.reasons.iter().any(|r| r.contains("unborn")));
        let rules = ScreeningRules {
            unborn_accepted: false,
            ..worcs()
        };
        let d = screen(&rules, &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::AdviceAndSignpost);
        assert!(d.advice.unwrap().contains("age range"));
        // A due date already passed: the baby is taken as 0 while the date of birth is confirmed.
        let r = referral(
            &["health", "domestic_abuse"],
            Some("WR1 2AB"),
            vec![child(None, Some("2026-11-01"))],
        );
        assert_eq!(
            screen(&worcs(), &r, today()).outcome,
            ScreeningOutcome::AcceptedForEarlyHelp
        );
    }

    #[test]
    fn eighteen_is_in_range_until_the_nineteenth_birthday() {
        let needs = ["education", "mental_health"];
        // 18 today.
        let r = referral(
            &needs,
            Some("WR1 2AB"),
            vec![child(Some("2008-11-20"), None)],
        );
        assert_eq!(
            screen(&worcs(), &r, today()).outcome,
            ScreeningOutcome::AcceptedForEarlyHelp
        );
        // 18, nineteenth birthday tomorrow.
        let r = referral(
            &needs,
            Some("WR1 2AB"),
            vec![child(Some("2007-11-21"), None)],
        );
        assert_eq!(
            screen(&worcs(), &r, today()).outcome,
            ScreeningOutcome::AcceptedForEarlyHelp
        );
        // 19 today.
        let r = referral(
            &needs,
            Some("WR1 2AB"),
            vec![child(Some("2007-11-20"), None)],
        );
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::AdviceAndSignpost);
        assert!(
            d.reasons.iter().any(|r| r.contains("is 19; outside 0-18")),
            "{:?}",
            d.reasons
        );
        // A council whose range is "under 18".
        let rules = ScreeningRules {
            max_age_years: 17,
            ..worcs()
        };
        let r = referral(
            &needs,
            Some("WR1 2AB"),
            vec![child(Some("2008-11-20"), None)],
        );
        assert_eq!(
            screen(&rules, &r, today()).outcome,
            ScreeningOutcome::AdviceAndSignpost
        );
    }

    #[test]
    fn one_child_in_range_is_enough() {
        let r = referral(
            &["education", "housing"],
            Some("WR1 2AB"),
            vec![
                child(Some("2000-01-01"), None),
                child(Some("2016-01-01"), None),
            ],
        );
        assert_eq!(
            screen(&worcs(), &r, today()).outcome,
            ScreeningOutcome::AcceptedForEarlyHelp
        );
    }

    #[test]
    fn missing_dates_and_needs_need_more_information() {
        let r = referral(
            &["education", "housing"],
            Some("WR1 2AB"),
            vec![child(None, None)],
        );
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::MoreInformationNeeded);
        assert_eq!(d.missing, vec!["/children/0/date_of_birth".to_string()]);
        let r = referral(
            &["education", "housing"],
            Some("WR1 2AB"),
            vec![child(Some("2030-01-01"), None)],
        );
        assert_eq!(
            screen(&worcs(), &r, today()).outcome,
            ScreeningOutcome::MoreInformationNeeded
        );
        let r = referral(&[], Some("WR1 2AB"), vec![child(Some("2015-01-01"), None)]);
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::MoreInformationNeeded);
        assert_eq!(d.missing, vec!["/needs".to_string()]);
        let r = referral(&["education"], Some("WR1 2AB"), vec![]);
        assert_eq!(
            screen(&worcs(), &r, today()).outcome,
            ScreeningOutcome::MoreInformationNeeded
        );
    }

    #[test]
    fn a_known_reason_to_signpost_wins_over_missing_information() {
        // Out of area is decidable even though the child's age is not.
        let r = referral(
            &["education", "housing"],
            Some("M1 1AE"),
            vec![child(None, None)],
        );
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::AdviceAndSignpost);
        assert!(d.missing.is_empty());
    }

    #[test]
    fn advice_only_requests_are_advised() {
        let mut r = referral(
            &["education", "housing"],
            Some("WR1 2AB"),
            vec![child(Some("2015-01-01"), None)],
        );
        r.requested_support = Some("advice".into());
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::AdviceAndSignpost);
        assert!(d.advice.is_some());
    }

    #[test]
    fn significant_harm_skips_everything_else() {
        let mut r = referral(&[], None, vec![]);
        r.significant_harm_risk = Some(true);
        assert!(requires_step_up(&r));
        let d = screen(&worcs(), &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::StepUpSignificantHarm);
        assert!(d.missing.is_empty() && d.advice.is_none());
        r.significant_harm_risk = None;
        assert!(!requires_step_up(&r));
    }

    #[test]
    fn ages() {
        let d = |s: &str| parse_date(s).unwrap();
        assert_eq!(age_in_years(d("2008-11-20"), d("2026-11-20")), 18);
        assert_eq!(age_in_years(d("2008-11-21"), d("2026-11-20")), 17);
        assert_eq!(age_in_years(d("2008-02-29"), d("2026-02-28")), 17);
        assert_eq!(age_in_years(d("2008-02-29"), d("2026-03-01")), 18);
    }

    #[test]
    fn rules_are_configuration() {
        let rules = ScreeningRules::from_json(
            r#"{
                "version": "staffs-3",
                "max_age_years": 17,
                "in_area_postcode_prefixes": ["ST", "WS", "DE13"],
                "early_help_team": {"min_needs": 1},
                "programmes": [{"id": "sf", "name": "Supporting Families", "min_headline_problems": 3}],
                "advice": {"default_text": "Try the Staffordshire Connects directory.",
                           "by_need": {"housing": "Call housing options."}}
            }"#,
        )
        .unwrap();
        assert_eq!(rules.version, "staffs-3");
        assert!(rules.unborn_accepted, "unset fields take the defaults");
        assert!(rules.programmes[0].qualifies_for_early_help);
        let r = referral(
            &["housing"],
            Some("DE13 0AA"),
            vec![child(Some("2015-01-01"), None)],
        );
        let d = screen(&rules, &r, today());
        assert_eq!(d.outcome, ScreeningOutcome::AcceptedForEarlyHelp);
        assert_eq!(d.rule_version, "staffs-3");
    }

    #[test]
    fn invalid_rules_name_their_fields() {
        assert!(ScreeningRules::default().validate().is_ok());
        assert!(matches!(
            ScreeningRules::from_json(r#"{"versoin": "x"}"#),
            Err(RulesError::Unreadable(_))
        ));
        let err = ScreeningRules::from_json(
            r#"{
                "version": "",
                "min_age_years": 19,
                "in_area_postcode_prefixes": ["WR", "not a postcode"],
                "early_help_team": {"min_needs": 0, "required_any_of": ["flying"]},
                "programmes": [
                    {"id": "brfc", "name": "BRFC", "min_headline_problems": 3},
                    {"id": "brfc", "name": "", "min_headline_problems": 11, "counted_needs": ["crime"]}
                ],
                "advice": {"default_text": " ", "by_need": {"pets": "no"}}
            }"#,
        )
        .unwrap_err();
        let RulesError::Invalid(v) = &err else {
            panic!("{err}")
        };
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        for f in [
            "version",
            "min_age_years",
            "in_area_postcode_prefixes[1]",
            "early_help_team.min_needs",
            "early_help_team.required_any_of[0]",
            "programmes[1].id",
            "programmes[1].name",
            "programmes[1].min_headline_problems",
            "programmes[1].counted_needs",
            "advice.default_text",
            "advice.by_need.pets",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        assert!(
            err.to_string().contains("version: must not be empty"),
            "{err}"
        );
    }

    #[test]
    fn decisions_serialise_for_storage() {
        let r = referral(
            &["education", "housing", "crime"],
            Some("WR1 2AB"),
            vec![child(Some("2015-04-01"), None)],
        );
        let json = serde_json::to_value(screen(&worcs(), &r, today())).unwrap();
        assert_eq!(json["outcome"], "accepted_for_early_help");
        assert_eq!(json["rule_version"], "worcs-2026-11");
        assert_eq!(json["programmes_met"][0], "brfc");
    }
}
