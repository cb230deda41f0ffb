//! Allocation's rules, with no I/O: the directory as the council sees it, reading Open Referral UK
//! records ([`oruk`]) and ranking services for a family ([`matching`]).
pub mod matching;
pub mod oruk;

use std::fmt;
use std::str::FromStr;

/// The Supporting Families headline needs, as the referral contract names them.
pub const NEEDS: &[&str] = &[
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

/// Is `need` one of [`NEEDS`]?
pub fn is_need(need: &str) -> bool {
    NEEDS.contains(&need)
}

/// Who a service is to the council.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One of the council's own Early Help Teams.
    EarlyHelpTeam,
    /// A provider the council commissions (e.g. Tier 2 family support under BRFC).
    Commissioned,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::EarlyHelpTeam => "early_help_team",
            Kind::Commissioned => "commissioned",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "early_help_team" => Ok(Kind::EarlyHelpTeam),
            "commissioned" => Ok(Kind::Commissioned),
            _ => Err("must be early_help_team or commissioned".into()),
        }
    }
}

/// The period a contract volume counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Month,
    Quarter,
    Year,
}

impl Period {
    pub const fn as_str(self) -> &'static str {
        match self {
            Period::Month => "month",
            Period::Quarter => "quarter",
            Period::Year => "year",
        }
    }

    /// The first day of the period `day` falls in (years and quarters are calendar ones).
    pub fn start(self, day: chrono::NaiveDate) -> chrono::NaiveDate {
        use chrono::Datelike;
        let month = match self {
            Period::Month => day.month(),
            Period::Quarter => (day.month0() / 3) * 3 + 1,
            Period::Year => 1,
        };
        chrono::NaiveDate::from_ymd_opt(day.year(), month, 1).unwrap_or(day)
    }
}

impl FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "month" => Ok(Period::Month),
            "quarter" => Ok(Period::Quarter),
            "year" => Ok(Period::Year),
            _ => Err("must be month, quarter or year".into()),
        }
    }
}

/// What the council adds to a directory service (ORUK does not carry it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub kind: Kind,
    /// Postcode areas, districts, sectors, or the council's localities by name.
    pub coverage: Vec<String>,
    /// Needs it covers; empty: every need.
    pub needs: Vec<String>,
    pub programmes: Vec<String>,
    /// Open cases it can hold at once.
    pub capacity: u32,
    /// Cases per period; `None`: not counted (the council's own teams).
    pub contract_volume: Option<u32>,
    pub contract_period: Period,
    pub offer_email: String,
    /// The kind of agency it is in the family's consent (`voluntary`, `health`, …): what a
    /// provider of this service sees is what consent lets that agency see. Empty: by its kind
    /// (commissioned → `voluntary`, Early Help Team → `other`).
    pub agency: String,
}

/// The agencies of the consent vocabulary (the referral contract's restrictions).
pub const AGENCIES: &[&str] = &[
    "health",
    "education",
    "police",
    "housing",
    "social_care",
    "youth_support",
    "jobcentre",
    "voluntary",
    "other",
];

impl Terms {
    /// The agency consent is asked about for this service.
    pub fn consent_agency(&self) -> &str {
        if !self.agency.is_empty() {
            return &self.agency;
        }
        match self.kind {
            Kind::Commissioned => "voluntary",
            Kind::EarlyHelpTeam => "other",
        }
    }
}

/// The information category of consent a headline need belongs to: what is asked before a need
/// is shown to a provider.
pub fn need_category(need: &str) -> &'static str {
    match need {
        "education" | "early_years" => "education",
        "health" => "health",
        "mental_health" => "mental_health",
        "substance_use" => "substance_use",
        "domestic_abuse" => "domestic_abuse",
        "crime" => "police",
        "financial_stability" => "finances",
        "housing" => "housing",
        // Safeguarding, and anything else: social care's.
        _ => "social_care",
    }
}

/// One field of a request that is wrong, and why (never its value).
pub use eh_service::errors::Violation;

impl Terms {
    /// Checks terms as a council sets them: every violation, by field.
    pub fn check(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        for (i, n) in self.needs.iter().enumerate() {
            if !is_need(n) {
                v.push(Violation::new(
                    format!("terms.needs[{i}]"),
                    format!("not a headline need (one of {})", NEEDS.join(", ")),
                ));
            }
        }
        for (i, c) in self.coverage.iter().enumerate() {
            if c.trim().is_empty() || c.len() > 100 {
                v.push(Violation::new(
                    format!("terms.coverage[{i}]"),
                    "must be a postcode area, district, sector or locality name (1-100 characters)",
                ));
            }
        }
        if self.coverage.is_empty() {
            v.push(Violation::new(
                "terms.coverage",
                "at least one postcode area, district, sector or locality is required",
            ));
        }
        for (i, p) in self.programmes.iter().enumerate() {
            if !eh_platform::config::is_token(p) {
                v.push(Violation::new(
                    format!("terms.programmes[{i}]"),
                    "must be a programme id (lower-case letters, digits, - and _)",
                ));
            }
        }
        if !self.agency.is_empty() && !AGENCIES.contains(&self.agency.as_str()) {
            v.push(Violation::new(
                "terms.agency",
                format!("must be one of {} (or empty)", AGENCIES.join(", ")),
            ));
        }
        if self.capacity == 0 {
            v.push(Violation::new(
                "terms.capacity",
                "must be at least 1 (a service that can take no case is withdrawn, not given no capacity)",
            ));
        }
        if self.kind == Kind::Commissioned && self.contract_volume.is_none() {
            v.push(Violation::new(
                "terms.contract_volume",
                "a commissioned provider needs its contract volume (cases per period)",
            ));
        }
        if !self.offer_email.is_empty() && !plausible_email(&self.offer_email) {
            v.push(Violation::new(
                "terms.offer_email",
                "must be an email address",
            ));
        }
        v
    }
}

fn plausible_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.len() <= 254
        && !s.chars().any(char::is_whitespace)
}

/// A UK postcode, as far as coverage needs it: area ("WR"), district ("WR1"), sector ("WR1 2").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postcode {
    /// The whole postcode, upper case, one space ("WR1 2AB").
    pub full: String,
    pub area: String,
    pub district: String,
    pub sector: String,
}

impl Postcode {
    /// Reads a postcode written any usual way ("wr1 2ab", "WR12AB"); `None` when it is not one.
    pub fn parse(s: &str) -> Option<Self> {
        let compact: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        if !(5..=7).contains(&compact.len()) || !compact.is_ascii() {
            return None;
        }
        let (outward, inward) = compact.split_at(compact.len() - 3);
        let inward_ok = inward.as_bytes()[0].is_ascii_digit()
            && inward.as_bytes()[1..].iter().all(u8::is_ascii_alphabetic);
        let outward_ok = outward.as_bytes()[0].is_ascii_alphabetic()
            && outward.bytes().all(|b| b.is_ascii_alphanumeric())
            && outward.bytes().any(|b| b.is_ascii_digit());
        if !inward_ok || !outward_ok {
            return None;
        }
        let area: String = outward
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        Some(Self {
            full: format!("{outward} {inward}"),
            area,
            district: outward.to_string(),
            sector: format!("{outward} {}", &inward[..1]),
        })
    }

    /// Does a coverage entry (area, district or sector) include this postcode?
    pub fn within(&self, entry: &str) -> bool {
        let e = entry.trim().to_ascii_uppercase();
        let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
        e == self.area || e == self.district || e == self.sector
    }
}

/// Why a service may decline an offer (`other` needs words of its own).
pub const DECLINE_REASONS: &[&str] = &[
    "no_capacity",
    "outside_area",
    "needs_not_met",
    "age_range",
    "conflict_of_interest",
    "other",
];

/// A decline's reason and detail, checked: every violation by field (never quoting the detail).
pub fn check_decline(reason: &str, detail: &str) -> Vec<Violation> {
    let mut v = Vec::new();
    if !DECLINE_REASONS.contains(&reason) {
        v.push(Violation::new(
            "reason",
            format!("must be one of {}", DECLINE_REASONS.join(", ")),
        ));
    }
    if reason == "other" && detail.trim().is_empty() {
        v.push(Violation::new(
            "detail",
            "required when the reason is other: say why",
        ));
    }
    if detail.chars().count() > 2_000 {
        v.push(Violation::new("detail", "at most 2,000 characters"));
    }
    v
}

/// Why a practitioner asked to lead a case may decline.
pub const LEAD_DECLINE_REASONS: &[&str] = &[
    "caseload_full",
    "conflict_of_interest",
    "skills_not_matched",
    "family_preference",
    "absence",
    "other",
];

/// A practitioner's answer to a request to lead, checked: declining needs a reason from the list
/// and words saying why (a clear reason, recorded); every violation by field, never quoting.
pub fn check_lead_answer(accept: bool, reason: &str, detail: &str) -> Vec<Violation> {
    let mut v = Vec::new();
    if accept {
        if !reason.is_empty() || !detail.trim().is_empty() {
            v.push(Violation::new(
                "reason",
                "only a decline gives a reason; leave reason and detail empty to accept",
            ));
        }
        return v;
    }
    if !LEAD_DECLINE_REASONS.contains(&reason) {
        v.push(Violation::new(
            "reason",
            format!("must be one of {}", LEAD_DECLINE_REASONS.join(", ")),
        ));
    }
    if detail.trim().is_empty() {
        v.push(Violation::new(
            "detail",
            "required: say why you cannot lead this case",
        ));
    }
    if detail.chars().count() > 2_000 {
        v.push(Violation::new("detail", "at most 2,000 characters"));
    }
    v
}

/// A practitioner's user id as a request names them: 1-200 characters, no control characters or
/// spaces at either end.
pub fn check_practitioner(id: &str) -> Option<Violation> {
    let ok = !id.is_empty()
        && id.chars().count() <= 200
        && id.trim() == id
        && !id.chars().any(char::is_control);
    (!ok).then(|| {
        Violation::new(
            "practitioner",
            "required: the practitioner's user id (1-200 characters, no control characters)",
        )
    })
}

/// Free text the council keeps (a family's preference, a note): at most 1,000 characters, no
/// control characters other than line breaks.
pub fn check_text(field: &str, text: &str) -> Option<Violation> {
    if text.chars().count() > 1_000 {
        return Some(Violation::new(field, "at most 1,000 characters"));
    }
    text.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
        .then(|| Violation::new(field, "must not contain control characters"))
}

/// Is a case of significant need (it goes ahead of others on the waiting list)? The council's rule:
/// at least `min_needs` headline needs, or any of `needs` (e.g. domestic abuse, safeguarding).
pub fn significant_need(case_needs: &[String], min_needs: usize, needs: &[String]) -> bool {
    case_needs.len() >= min_needs.max(1) || case_needs.iter().any(|n| needs.contains(n))
}

/// Whole years from `born` to `on` (0 for a date of birth in the future).
pub fn age_on(born: chrono::NaiveDate, on: chrono::NaiveDate) -> u32 {
    on.years_since(born).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declines_need_a_listed_reason_and_words_for_other() {
        assert!(check_decline("no_capacity", "").is_empty());
        let f =
            |r, d| -> Vec<String> { check_decline(r, d).into_iter().map(|v| v.field).collect() };
        assert_eq!(f("busy", ""), ["reason"]);
        assert_eq!(f("other", "  "), ["detail"]);
        assert!(f("other", "The family is known to our trustee").is_empty());
    }

    #[test]
    fn a_lead_decline_needs_a_listed_reason_and_words() {
        let f = |a, r, d| -> Vec<String> {
            check_lead_answer(a, r, d)
                .into_iter()
                .map(|v| v.field)
                .collect()
        };
        assert!(f(true, "", "").is_empty());
        assert_eq!(f(true, "absence", ""), ["reason"]);
        assert_eq!(f(false, "caseload_full", " "), ["detail"]);
        assert_eq!(f(false, "busy", "I have 30 families"), ["reason"]);
        assert!(f(false, "caseload_full", "I hold 30 families now").is_empty());
        assert!(check_practitioner("").is_some());
        assert!(check_practitioner(" jdoe").is_some());
        assert!(check_practitioner("jdoe@worcs").is_none());
        assert!(check_text("note", "line one\nline two").is_none());
        assert!(check_text("note", "bell\u{7}").is_some());
        assert!(check_text("note", &"x".repeat(1_001)).is_some());
    }

    #[test]
    fn significant_need_by_count_or_by_kind() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let heavy = n(&["domestic_abuse", "safeguarding"]);
        assert!(significant_need(&n(&["a", "b", "c"]), 3, &heavy));
        assert!(significant_need(&n(&["domestic_abuse"]), 3, &heavy));
        assert!(!significant_need(&n(&["education", "health"]), 3, &heavy));
    }

    #[test]
    fn ages_are_whole_years() {
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(age_on(d("2016-05-14"), d("2026-05-13")), 9);
        assert_eq!(age_on(d("2016-05-14"), d("2026-05-14")), 10);
        assert_eq!(age_on(d("2027-01-01"), d("2026-05-14")), 0);
    }

    #[test]
    fn postcodes_are_read_however_written() {
        let p = Postcode::parse("wr1 2ab").unwrap();
        assert_eq!(
            (
                p.full.as_str(),
                p.area.as_str(),
                p.district.as_str(),
                p.sector.as_str()
            ),
            ("WR1 2AB", "WR", "WR1", "WR1 2")
        );
        let p = Postcode::parse("SW1A1AA").unwrap();
        assert_eq!((p.area.as_str(), p.district.as_str()), ("SW", "SW1A"));
        assert_eq!(Postcode::parse("B1 1AA").unwrap().area, "B");
        for bad in ["", "WR1", "12345", "WR1 2A1", "WR1 ÄAB", "ABCDEFGHI"] {
            assert!(Postcode::parse(bad).is_none(), "{bad:?} read as a postcode");
        }
    }

    #[test]
    fn coverage_matches_area_district_or_sector_but_not_a_prefix() {
        let p = Postcode::parse("WR10 4XY").unwrap();
        assert!(p.within("WR"));
        assert!(p.within("wr10"));
        assert!(p.within("WR10  4"));
        assert!(!p.within("WR1"), "WR1 is not a prefix match for WR10");
        assert!(!p.within("WR10 5"));
    }

    #[test]
    fn terms_are_checked_field_by_field() {
        let t = Terms {
            kind: Kind::Commissioned,
            coverage: vec![],
            needs: vec!["housing".into(), "knitting".into()],
            programmes: vec!["BRFC!".into()],
            capacity: 0,
            contract_volume: None,
            contract_period: Period::Quarter,
            offer_email: "not an address".into(),
            agency: String::new(),
        };
        let fields: Vec<String> = t.check().into_iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "terms.needs[1]",
                "terms.coverage",
                "terms.programmes[0]",
                "terms.capacity",
                "terms.contract_volume",
                "terms.offer_email"
            ]
        );
    }

    #[test]
    fn periods_start_on_calendar_boundaries() {
        let d = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        assert_eq!(Period::Month.start(d).to_string(), "2026-11-01");
        assert_eq!(Period::Quarter.start(d).to_string(), "2026-10-01");
        assert_eq!(Period::Year.start(d).to_string(), "2026-01-01");
    }
}
