//! Is this child or adult already known? Matches each person named in a referral against the
//! people one council (tenant) already holds.
//!
//! 1. **Identifiers first.** A valid NHS number (modulus 11 check digit) held by exactly one
//!    person is an exact match; then a valid UPN (DfE check letter) likewise — unless the held
//!    person's NHS number contradicts the referral's.
//! 2. **Otherwise scored.** Candidates come from blocking keys (date of birth, also with day and
//!    month swapped and the year one out; and Soundex of the family name with Soundex or the
//!    nickname group of the given name), so a query reads a few hundred records, not all of
//!    them. Each candidate gets points per field (see [`score`]): names after folding case,
//!    accents, hyphens and nicknames; date of birth allowing transposed day/month; postcode.
//! 3. **Decision.** At or above [`MatchPolicy::attach_at`], with a clear lead over the runner-up
//!    and no conflicting NHS number: attach to the held person and their family. Between
//!    [`MatchPolicy::candidate_at`] and that: candidates for a practitioner to confirm. Below:
//!    a new person. Every decision carries the score and the fields behind it.
//!
//! 4. **The referral as a whole** ([`match_referral`]): the held family it belongs to, the
//!    household rule and one held person per person named (see `referral.rs`).
//! 5. **Kept and answered**: the evidence kept with each decision (`evidence.rs`), and what a
//!    practitioner's answer to a candidate changes — the merge (`merge.rs`).
//!
//! Pure and deterministic: no I/O; ties are broken by person id.
mod evidence;
mod identifiers;
mod index;
mod merge;
mod normalise;
mod referral;
mod score;
mod similarity;

pub use evidence::DecisionEvidence;
pub use identifiers::{NhsNumber, nhs_number_valid, normalise_upn, upn_format_valid, upn_valid};
pub use index::PersonIndex;
pub use merge::{
    CandidateStatus, FamilyMove, MergeInput, MergePlan, ReferralFiling, Resolution,
    is_merged_already, plan_merge, re_referrals_after_move, resolved_status,
};
pub use normalise::{
    joined, nickname_equivalent, normalise_name, normalise_postcode, outward_code, postcode_area,
    soundex,
};
pub use referral::{
    PersonMatch, RE_REFERRAL_MONTHS, ReferralMatch, ReferralRole, match_referral,
    previous_referral_within_window, with_household,
};
pub use score::{
    Field, FieldMatch, MatchKind, MatchPolicy, MatchScore, MatchWeights, NormalisedPerson,
    compare_dob, score, score_normalised,
};
pub use similarity::jaro_winkler;

use chrono::NaiveDate;
use eh_proto::intake::v1::{Address, Child, FamilyMember};
use serde::{Deserialize, Serialize};

/// What is compared about a person, from a referral or from the people already held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonDetails {
    pub given_name: String,
    pub family_name: String,
    pub date_of_birth: Option<NaiveDate>,
    pub postcode: Option<String>,
    pub nhs_number: Option<String>,
    pub upn: Option<String>,
}

fn parse_date(s: Option<&String>) -> Option<NaiveDate> {
    s.and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
}

fn postcode_of(own: Option<&Address>, family: Option<&Address>) -> Option<String> {
    own.or(family)
        .map(|a| a.postcode.clone())
        .filter(|p| !p.trim().is_empty())
}

impl PersonDetails {
    /// A child from a referral; the referral's address stands in when the child has none. An
    /// unborn child (expected date of delivery only) has no date of birth to compare.
    pub fn from_child(child: &Child, family_address: Option<&Address>) -> Self {
        Self {
            given_name: child.given_name.clone(),
            family_name: child.family_name.clone(),
            date_of_birth: parse_date(child.date_of_birth.as_ref()),
            postcode: postcode_of(child.address.as_ref(), family_address),
            nhs_number: child.nhs_number.clone(),
            upn: child.upn.clone(),
        }
    }

    /// An adult from a referral; the referral's address stands in when they have none.
    pub fn from_family_member(member: &FamilyMember, family_address: Option<&Address>) -> Self {
        Self {
            given_name: member.given_name.clone(),
            family_name: member.family_name.clone(),
            date_of_birth: parse_date(member.date_of_birth.as_ref()),
            postcode: postcode_of(member.address.as_ref(), family_address),
            nhs_number: None,
            upn: None,
        }
    }
}

/// A person the tenant already holds, with the family they belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldPerson {
    pub person_id: String,
    pub family_id: String,
    pub details: PersonDetails,
}

/// The identifier an exact match was made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identifier {
    NhsNumber,
    Upn,
}

impl Identifier {
    /// The field name, as in the referral contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NhsNumber => "nhs_number",
            Self::Upn => "upn",
        }
    }
}

/// A held person scored against the person in the referral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub person_id: String,
    pub family_id: String,
    pub score: MatchScore,
}

/// What to do with a person named in a referral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum MatchDecision {
    /// The same valid national identifier: the held person.
    Exact {
        person_id: String,
        family_id: String,
        on: Identifier,
        score: MatchScore,
    },
    /// Scored at or above the attach threshold: the held person.
    Attach {
        person_id: String,
        family_id: String,
        score: MatchScore,
    },
    /// Possible matches for a practitioner to confirm, best first.
    Candidates { candidates: Vec<Candidate> },
    /// Nobody held is close enough: a new person.
    New,
}

impl MatchDecision {
    /// The held person the referral's person is attached to, when decided without a practitioner.
    pub fn person_id(&self) -> Option<&str> {
        match self {
            Self::Exact { person_id, .. } | Self::Attach { person_id, .. } => Some(person_id),
            _ => None,
        }
    }
}

/// The decision, the scored candidates behind it and anything a reviewer should know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchResult {
    pub decision: MatchDecision,
    /// Held people scoring at least `candidate_at` (and the exact match, if any), best first,
    /// at most `max_candidates`.
    pub candidates: Vec<Candidate>,
    /// E.g. an identifier in the referral that failed its check and was not used.
    pub notes: Vec<String>,
    /// For a new person: the held person who scored best below `candidate_at`, if any shared a
    /// blocking key — why nobody was close enough, kept with the decision.
    #[serde(default)]
    pub nearest: Option<Candidate>,
}
