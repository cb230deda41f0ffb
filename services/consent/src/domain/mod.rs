//! Consent rules, pure (no I/O): the vocabulary of the referral contract, the effective consent of a
//! family or person at an instant, the sharing decision, and the safeguarding override rules.
//!
//! **Which record governs** (the issue was silent on the details):
//! - Only records entered in the ledger at or before `now` count, in ledger order
//!   (`recorded_at`, then id).
//! - For a check about person P: if any record names P, the latest of those governs
//!   (person-specific beats family-wide, whatever their dates — a competent young person's own
//!   consent or withdrawal is theirs). Otherwise the latest family-wide record governs.
//!   A check about the family as a whole (no person) is governed by the latest family-wide record.
//! - The governing record is the latest one, withdrawn or not: a withdrawal or expiry of it is
//!   NOT undone by falling back to an older record (that would revive consent the family has
//!   withdrawn). Newer records supersede older ones; new consent after a withdrawal is a new record.
//! - A record is expired once the (UTC) date of `now` is after `expires_on` (it is valid through
//!   that day).
pub mod overrides;
pub mod sharing;

use chrono::{DateTime, NaiveDate, Utc};
use std::fmt;

macro_rules! vocabulary {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
            /// The accepted spellings, for error messages.
            pub fn spellings() -> String {
                [$($text),+].join(", ")
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

vocabulary!(
    /// What consent is given for.
    Purpose { Assessment => "assessment", Sharing => "sharing", Contacting => "contacting" }
);
vocabulary!(
    /// How consent was given.
    Method { Signed => "signed", Verbal => "verbal", Electronic => "electronic" }
);
vocabulary!(
    /// Information categories, as the referral contract spells them (`All` = every category).
    Category {
        Health => "health",
        Education => "education",
        Police => "police",
        Housing => "housing",
        Finances => "finances",
        DomesticAbuse => "domestic_abuse",
        MentalHealth => "mental_health",
        SubstanceUse => "substance_use",
        SocialCare => "social_care",
        All => "all",
    }
);
vocabulary!(
    /// Agencies information may be shared with, as the referral contract spells them.
    Agency {
        Health => "health",
        Education => "education",
        Police => "police",
        Housing => "housing",
        SocialCare => "social_care",
        YouthSupport => "youth_support",
        Jobcentre => "jobcentre",
        Voluntary => "voluntary",
        Other => "other",
    }
);

/// Every purpose: what consent taken with a referral covers.
pub const REFERRAL_PURPOSES: [Purpose; 3] =
    [Purpose::Assessment, Purpose::Sharing, Purpose::Contacting];

/// What the family does NOT agree to share: `category` (or every category) with `agency`
/// (or, when absent, with every agency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restriction {
    pub category: Category,
    pub agency: Option<Agency>,
}

impl Restriction {
    /// Does this restriction forbid sharing `category` with `agency`? The categories meet when
    /// they are equal or either is `all` (asking for "all" includes the restricted category).
    pub fn forbids(&self, category: Category, agency: Agency) -> bool {
        let category_meets = self.category == category
            || self.category == Category::All
            || category == Category::All;
        let agency_meets = self.agency.is_none_or(|a| a == agency);
        category_meets && agency_meets
    }
}

impl fmt::Display for Restriction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.agency {
            Some(a) => write!(f, "no {} with {a}", self.category),
            None => write!(f, "no {} with any agency", self.category),
        }
    }
}

/// One entry of the ledger, with its withdrawal (if any) joined in.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRecord {
    pub id: String,
    pub family_id: String,
    /// `None`: the whole family.
    pub person_id: Option<String>,
    pub given_by: String,
    pub giver_relationship: String,
    pub parental_responsibility: bool,
    pub competent_young_person: bool,
    /// `None` only for referral consent that did not say.
    pub method: Option<Method>,
    pub evidence_ref: String,
    pub given_on: NaiveDate,
    pub expires_on: Option<NaiveDate>,
    pub purposes: Vec<Purpose>,
    pub restrictions: Vec<Restriction>,
    pub recorded_at: DateTime<Utc>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

impl ConsentRecord {
    pub fn is_withdrawn(&self, now: DateTime<Utc>) -> bool {
        self.withdrawn_at.is_some_and(|w| w <= now)
    }
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_on.is_some_and(|e| now.date_naive() > e)
    }
}

/// A field that is wrong, and why (becomes a gRPC field violation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub reason: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Parses a list of tokens, reporting each unknown one under `field[i]`.
pub fn parse_list<T>(
    field: &str,
    items: &[String],
    parse: impl Fn(&str) -> Option<T>,
    spellings: &str,
    out: &mut Vec<Violation>,
) -> Vec<T> {
    let mut parsed = Vec::new();
    for (i, s) in items.iter().enumerate() {
        match parse(s) {
            Some(v) => parsed.push(v),
            None => out.push(Violation::new(
                format!("{field}[{i}]"),
                format!("unknown value {s:?}; expected one of {spellings}"),
            )),
        }
    }
    parsed
}

/// An ISO date (`YYYY-MM-DD`).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}
