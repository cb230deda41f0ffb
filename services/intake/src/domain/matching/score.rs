//! The points model: how much each field's agreement or disagreement says about two records
//! being one person, and the decision taken on the total.
//!
//! Weights are in the style of Fellegi–Sunter: each is roughly `log2(m / u)` for agreement and
//! `log2((1 - m) / (1 - u))` for disagreement, where `m` is how often the field agrees for the
//! same person (allowing for typing slips, moves and name changes) and `u` how often it agrees
//! by chance between two different people held by one council. So one point doubles the odds,
//! a missing field adds nothing, and the total is the sum of the fields, each recorded with the
//! kind of agreement and the points it gave.
use super::PersonDetails;
use super::identifiers::{NhsNumber, normalise_upn};
use super::normalise::{
    joined, nickname_groups, normalise_name, normalise_postcode, outward_code, soundex,
};
use super::similarity::jaro_winkler;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// A field that took part in a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    NhsNumber,
    Upn,
    GivenName,
    FamilyName,
    DateOfBirth,
    Postcode,
    /// In the held family that another person named on the same referral was matched to.
    Household,
}

/// How a field compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// Equal once normalised (case, accents, hyphens, spaces; canonical identifiers).
    Exact,
    /// Given names that stand for one another (`Bill` / `William`).
    Nickname,
    /// One name is a part of the other (`Smith` / `Smith-Jones`, `Mary` / `Mary Jane`).
    Part,
    /// Close spelling (Jaro-Winkler ≥ 0.90).
    Fuzzy,
    /// Same Soundex code and a looser spelling (Jaro-Winkler ≥ 0.80).
    Phonetic,
    /// Date of birth with day and month swapped (03/04 ↔ 04/03).
    Transposed,
    /// Date of birth with the same day and month, year one out.
    YearOffByOne,
    /// Postcode in the same district (outward code), not the same postcode.
    SameDistrict,
    /// Both present and different.
    Different,
    /// Both present, both valid and different: a national identifier that contradicts the match.
    Conflict,
}

/// One field's contribution to a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldMatch {
    pub field: Field,
    pub kind: MatchKind,
    /// Points added (negative for disagreement).
    pub weight: f64,
}

/// The comparison of a person in a referral with one person already held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchScore {
    /// Total points: the sum of the field weights.
    pub score: f64,
    /// Every field compared (fields missing on either side are not listed).
    pub fields: Vec<FieldMatch>,
    /// Both have valid NHS numbers and they differ: never attached automatically.
    pub nhs_conflict: bool,
}

impl MatchScore {
    /// The kind of agreement on one field, if it was compared.
    pub fn kind_of(&self, field: Field) -> Option<MatchKind> {
        self.fields
            .iter()
            .find(|f| f.field == field)
            .map(|f| f.kind)
    }
}

/// Points for each kind of agreement (see the module documentation for their meaning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchWeights {
    pub nhs_number_agree: f64,
    pub nhs_number_conflict: f64,
    pub upn_agree: f64,
    pub upn_conflict: f64,
    pub family_exact: f64,
    pub family_part: f64,
    pub family_fuzzy: f64,
    pub family_phonetic: f64,
    pub family_different: f64,
    pub given_exact: f64,
    pub given_nickname: f64,
    pub given_part: f64,
    pub given_fuzzy: f64,
    pub given_different: f64,
    pub dob_exact: f64,
    pub dob_transposed: f64,
    pub dob_year_off_by_one: f64,
    pub dob_different: f64,
    pub postcode_exact: f64,
    pub postcode_same_district: f64,
    pub postcode_different: f64,
    /// The held person is in the family another person on the same referral was attached to.
    pub household_agree: f64,
}

impl Default for MatchWeights {
    /// Estimates for a council holding up to a million people: a family name agrees by chance
    /// about 1 time in 200 (u ≈ 0.005, m ≈ 0.9 allowing for name changes), a given name 1 in 100,
    /// a full date of birth about 1 in 6,000 (children cluster in 18 birth years), a postcode
    /// 1 in 30,000 but only ~70% of true matches still live at the same one. Disagreement is
    /// penalised least for postcode (families move) and family name (marriage, step-families).
    fn default() -> Self {
        Self {
            nhs_number_agree: 20.0,
            nhs_number_conflict: -12.0,
            upn_agree: 16.0,
            upn_conflict: -6.0,
            family_exact: 7.5,
            family_part: 5.0,
            family_fuzzy: 4.5,
            family_phonetic: 3.5,
            family_different: -4.5,
            given_exact: 6.5,
            given_nickname: 5.0,
            given_part: 5.0,
            given_fuzzy: 3.5,
            given_different: -5.0,
            dob_exact: 11.0,
            dob_transposed: 6.0,
            dob_year_off_by_one: 4.0,
            dob_different: -6.0,
            postcode_exact: 5.0,
            postcode_same_district: 1.5,
            postcode_different: -1.0,
            // m ≈ 0.9 (people referred together live together); u ≈ 0.06 for a stranger of the
            // same name and postcode to be in that one family (father and son share a name).
            household_agree: 4.0,
        }
    }
}

/// When to attach, when to ask a practitioner, and how many candidates to show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchPolicy {
    /// At or above: attach to the held person without asking (default 22: e.g. both names and
    /// date of birth exact, or nickname + family name + date of birth + postcode).
    pub attach_at: f64,
    /// At or above (and below `attach_at`): a candidate for a practitioner to confirm
    /// (default 13: e.g. both names exact with no date of birth to compare, 14 points).
    pub candidate_at: f64,
    /// The best must lead the runner-up by this much to be attached; otherwise both go to a
    /// practitioner (two held records of one person, or twins with similar names).
    pub min_margin: f64,
    /// The most candidates kept for a practitioner (best first).
    pub max_candidates: usize,
    pub weights: MatchWeights,
}

impl Default for MatchPolicy {
    fn default() -> Self {
        Self {
            attach_at: 22.0,
            candidate_at: 13.0,
            min_margin: 4.0,
            max_candidates: 5,
            weights: MatchWeights::default(),
        }
    }
}

impl MatchPolicy {
    /// Errors naming the field when the thresholds cannot work together.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.attach_at.is_finite() && self.candidate_at.is_finite()) {
            return Err("attach_at and candidate_at must be finite".into());
        }
        if self.candidate_at > self.attach_at {
            return Err("candidate_at must not exceed attach_at".into());
        }
        if !(self.min_margin.is_finite() && self.min_margin >= 0.0) {
            return Err("min_margin must be zero or more".into());
        }
        if self.max_candidates == 0 {
            return Err("max_candidates must be at least 1".into());
        }
        Ok(())
    }
}

/// A person as compared: every field normalised once, when the person is indexed or queried.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalisedPerson {
    /// Parts separated by single spaces (`mary jane`).
    pub(crate) given: Box<str>,
    /// Nickname groups of the first given name (or of the whole, when the first has none).
    pub(crate) given_groups: &'static [u16],
    pub(crate) family: Box<str>,
    pub(crate) family_soundex: Option<u16>,
    pub(crate) dob: Option<NaiveDate>,
    /// Canonical postcode (`WR12AB`).
    pub(crate) postcode: Option<Box<str>>,
    pub(crate) nhs: Option<NhsNumber>,
    pub(crate) upn: Option<Box<str>>,
}

impl NormalisedPerson {
    /// Normalises a person; identifiers that fail their check character and postcodes that are
    /// not postcodes are treated as absent.
    pub fn new(p: &PersonDetails) -> Self {
        let given = normalise_name(&p.given_name);
        let mut given_groups = nickname_groups(first_part(&given));
        if given_groups.is_empty() {
            given_groups = nickname_groups(&joined(&given));
        }
        let family = normalise_name(&p.family_name);
        let family_soundex = soundex(&family);
        Self {
            given: given.into(),
            given_groups,
            family: family.into(),
            family_soundex,
            dob: p.date_of_birth,
            postcode: p
                .postcode
                .as_deref()
                .and_then(normalise_postcode)
                .map(Into::into),
            nhs: p.nhs_number.as_deref().and_then(NhsNumber::parse),
            upn: p.upn.as_deref().and_then(normalise_upn).map(Into::into),
        }
    }

    pub fn nhs_number(&self) -> Option<NhsNumber> {
        self.nhs
    }

    pub fn upn(&self) -> Option<&str> {
        self.upn.as_deref()
    }

    pub fn date_of_birth(&self) -> Option<NaiveDate> {
        self.dob
    }
}

/// The first part of a normalised name (`mary jane` → `mary`).
pub(crate) fn first_part(name: &str) -> &str {
    name.split(' ').next().unwrap_or("")
}

/// Equal ignoring the spaces between parts (`smith jones` = `smithjones`).
fn same_joined(a: &str, b: &str) -> bool {
    a.bytes()
        .filter(|c| *c != b' ')
        .eq(b.bytes().filter(|c| *c != b' '))
}

/// A part (of two or more characters) of one name that is the whole of the other, or a part
/// shared by both.
fn shares_part(a: &str, b: &str) -> bool {
    if !a.contains(' ') && !b.contains(' ') {
        return false;
    }
    a.split(' ')
        .filter(|p| p.len() >= 2)
        .any(|pa| b.split(' ').any(|pb| pa == pb))
}

fn family_kind(q: &NormalisedPerson, h: &NormalisedPerson) -> Option<MatchKind> {
    if q.family.is_empty() || h.family.is_empty() {
        return None;
    }
    Some(if same_joined(&q.family, &h.family) {
        MatchKind::Exact
    } else if shares_part(&q.family, &h.family) {
        MatchKind::Part
    } else {
        let jw = jaro_winkler(&q.family, &h.family);
        if jw >= 0.90 {
            MatchKind::Fuzzy
        } else if jw >= 0.80 && q.family_soundex.is_some() && q.family_soundex == h.family_soundex {
            MatchKind::Phonetic
        } else {
            MatchKind::Different
        }
    })
}

fn given_kind(q: &NormalisedPerson, h: &NormalisedPerson) -> Option<MatchKind> {
    if q.given.is_empty() || h.given.is_empty() {
        return None;
    }
    Some(if same_joined(&q.given, &h.given) {
        MatchKind::Exact
    } else if first_part(&q.given) == first_part(&h.given) || shares_part(&q.given, &h.given) {
        MatchKind::Part
    } else if q.given_groups.iter().any(|g| h.given_groups.contains(g)) {
        MatchKind::Nickname
    } else if jaro_winkler(&q.given, &h.given) >= 0.90
        || jaro_winkler(first_part(&q.given), first_part(&h.given)) >= 0.90
    {
        MatchKind::Fuzzy
    } else {
        MatchKind::Different
    })
}

/// How two dates of birth compare: exact, day and month swapped (only possible when both are
/// 12 or less), the same day and month a year out, or different.
pub fn compare_dob(a: NaiveDate, b: NaiveDate) -> MatchKind {
    if a == b {
        MatchKind::Exact
    } else if a.year() == b.year() && a.day() == b.month() && a.month() == b.day() {
        MatchKind::Transposed
    } else if a.day() == b.day() && a.month() == b.month() && (a.year() - b.year()).abs() == 1 {
        MatchKind::YearOffByOne
    } else {
        MatchKind::Different
    }
}

/// Compares every field present on both sides, handing each verdict to `each` in a fixed
/// order; true when valid NHS numbers conflict.
fn compare(
    q: &NormalisedPerson,
    h: &NormalisedPerson,
    w: &MatchWeights,
    mut each: impl FnMut(Field, MatchKind, f64),
) -> bool {
    let mut nhs_conflict = false;
    if let (Some(a), Some(b)) = (q.nhs, h.nhs) {
        if a == b {
            each(Field::NhsNumber, MatchKind::Exact, w.nhs_number_agree);
        } else {
            nhs_conflict = true;
            each(Field::NhsNumber, MatchKind::Conflict, w.nhs_number_conflict);
        }
    }
    if let (Some(a), Some(b)) = (&q.upn, &h.upn) {
        if a == b {
            each(Field::Upn, MatchKind::Exact, w.upn_agree);
        } else {
            each(Field::Upn, MatchKind::Conflict, w.upn_conflict);
        }
    }
    if let Some(kind) = given_kind(q, h) {
        let weight = match kind {
            MatchKind::Exact => w.given_exact,
            MatchKind::Nickname => w.given_nickname,
            MatchKind::Part => w.given_part,
            MatchKind::Fuzzy => w.given_fuzzy,
            _ => w.given_different,
        };
        each(Field::GivenName, kind, weight);
    }
    if let Some(kind) = family_kind(q, h) {
        let weight = match kind {
            MatchKind::Exact => w.family_exact,
            MatchKind::Part => w.family_part,
            MatchKind::Fuzzy => w.family_fuzzy,
            MatchKind::Phonetic => w.family_phonetic,
            _ => w.family_different,
        };
        each(Field::FamilyName, kind, weight);
    }
    if let (Some(a), Some(b)) = (q.dob, h.dob) {
        let kind = compare_dob(a, b);
        let weight = match kind {
            MatchKind::Exact => w.dob_exact,
            MatchKind::Transposed => w.dob_transposed,
            MatchKind::YearOffByOne => w.dob_year_off_by_one,
            _ => w.dob_different,
        };
        each(Field::DateOfBirth, kind, weight);
    }
    if let (Some(a), Some(b)) = (&q.postcode, &h.postcode) {
        let (kind, weight) = if a == b {
            (MatchKind::Exact, w.postcode_exact)
        } else if outward_code(a) == outward_code(b) {
            (MatchKind::SameDistrict, w.postcode_same_district)
        } else {
            (MatchKind::Different, w.postcode_different)
        };
        each(Field::Postcode, kind, weight);
    }
    nhs_conflict
}

/// Scores a (normalised) person from a referral against one held person.
pub fn score_normalised(
    q: &NormalisedPerson,
    h: &NormalisedPerson,
    w: &MatchWeights,
) -> MatchScore {
    let mut fields = Vec::with_capacity(6);
    let mut score = 0.0;
    let nhs_conflict = compare(q, h, w, |field, kind, weight| {
        score += weight;
        fields.push(FieldMatch {
            field,
            kind,
            weight,
        });
    });
    MatchScore {
        score,
        fields,
        nhs_conflict,
    }
}

/// The total of [`score_normalised`] without recording the fields (no allocation): for
/// screening out the many held people in a block who are nowhere near the threshold.
pub(crate) fn points(q: &NormalisedPerson, h: &NormalisedPerson, w: &MatchWeights) -> f64 {
    let mut score = 0.0;
    compare(q, h, w, |_, _, weight| score += weight);
    score
}

/// Scores a person from a referral against one held person (both normalised here).
pub fn score(query: &PersonDetails, held: &PersonDetails, weights: &MatchWeights) -> MatchScore {
    score_normalised(
        &NormalisedPerson::new(query),
        &NormalisedPerson::new(held),
        weights,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn person(
        given: &str,
        family: &str,
        dob: Option<&str>,
        postcode: Option<&str>,
    ) -> PersonDetails {
        PersonDetails {
            given_name: given.into(),
            family_name: family.into(),
            date_of_birth: dob.map(d),
            postcode: postcode.map(Into::into),
            nhs_number: None,
            upn: None,
        }
    }

    fn kinds(s: &MatchScore) -> Vec<(Field, MatchKind)> {
        s.fields.iter().map(|f| (f.field, f.kind)).collect()
    }

    #[test]
    fn accents_count_as_exact() {
        let s = score(
            &person("Zoë", "Brontë", Some("2015-04-01"), None),
            &person("Zoe", "BRONTE", Some("2015-04-01"), None),
            &MatchWeights::default(),
        );
        assert_eq!(s.kind_of(Field::GivenName), Some(MatchKind::Exact));
        assert_eq!(s.kind_of(Field::FamilyName), Some(MatchKind::Exact));
        assert_eq!(s.score, 6.5 + 7.5 + 11.0);
    }

    #[test]
    fn hyphens_and_spaces_count_as_exact_and_a_single_part_as_part() {
        let w = MatchWeights::default();
        let s = score(
            &person("Ava", "Smith-Jones", None, None),
            &person("Ava", "Smith Jones", None, None),
            &w,
        );
        assert_eq!(s.kind_of(Field::FamilyName), Some(MatchKind::Exact));
        let s = score(
            &person("Ava", "Smith-Jones", None, None),
            &person("Ava", "SmithJones", None, None),
            &w,
        );
        assert_eq!(s.kind_of(Field::FamilyName), Some(MatchKind::Exact));
        let s = score(
            &person("Ava", "Smith-Jones", None, None),
            &person("Ava", "Jones", None, None),
            &w,
        );
        assert_eq!(s.kind_of(Field::FamilyName), Some(MatchKind::Part));
        let s = score(
            &person("Mary Jane", "Ng", None, None),
            &person("Mary", "Ng", None, None),
            &w,
        );
        assert_eq!(s.kind_of(Field::GivenName), Some(MatchKind::Part));
    }

    #[test]
    fn nicknames_typos_and_phonetics() {
        let w = MatchWeights::default();
        let s = score(
            &person("Bill", "Smith", None, None),
            &person("William", "Smith", None, None),
            &w,
        );
        assert_eq!(s.kind_of(Field::GivenName), Some(MatchKind::Nickname));
        assert_eq!(s.score, 5.0 + 7.5);
        let s = score(
            &person("Jon", "Johnson", None, None),
            &person("John", "Jonson", None, None),
            &w,
        );
        assert_eq!(s.kind_of(Field::GivenName), Some(MatchKind::Nickname));
        assert_eq!(s.kind_of(Field::FamilyName), Some(MatchKind::Fuzzy));
        let s = score(
            &person("Oliver", "Smith", None, None),
            &person("Harry", "Smith", None, None),
            &w,
        );
        assert_eq!(s.kind_of(Field::GivenName), Some(MatchKind::Different));
        assert_eq!(s.score, -5.0 + 7.5);
    }

    #[test]
    fn dates_of_birth() {
        assert_eq!(
            compare_dob(d("2015-03-04"), d("2015-03-04")),
            MatchKind::Exact
        );
        assert_eq!(
            compare_dob(d("2015-03-04"), d("2015-04-03")),
            MatchKind::Transposed
        );
        assert_eq!(
            compare_dob(d("2015-03-14"), d("2015-04-13")),
            MatchKind::Different
        );
        assert_eq!(
            compare_dob(d("2015-03-04"), d("2016-03-04")),
            MatchKind::YearOffByOne
        );
        assert_eq!(
            compare_dob(d("2015-03-04"), d("2017-03-04")),
            MatchKind::Different
        );
        assert_eq!(
            compare_dob(d("2015-03-04"), d("2016-04-03")),
            MatchKind::Different
        );
        let s = score(
            &person("Ava", "Khan", Some("2015-03-04"), None),
            &person("Ava", "Khan", Some("2015-04-03"), None),
            &MatchWeights::default(),
        );
        assert_eq!(s.kind_of(Field::DateOfBirth), Some(MatchKind::Transposed));
        assert_eq!(s.score, 6.5 + 7.5 + 6.0);
    }

    #[test]
    fn postcodes_compare_whole_then_by_district() {
        let w = MatchWeights::default();
        let s = score(
            &person("A", "B", None, Some("wr1 2ab")),
            &person("A", "B", None, Some("WR12AB")),
            &w,
        );
        assert_eq!(s.kind_of(Field::Postcode), Some(MatchKind::Exact));
        let s = score(
            &person("A", "B", None, Some("WR1 2AB")),
            &person("A", "B", None, Some("WR1 9ZZ")),
            &w,
        );
        assert_eq!(s.kind_of(Field::Postcode), Some(MatchKind::SameDistrict));
        let s = score(
            &person("A", "B", None, Some("WR1 2AB")),
            &person("A", "B", None, Some("WR11 2AB")),
            &w,
        );
        assert_eq!(s.kind_of(Field::Postcode), Some(MatchKind::Different));
        let s = score(
            &person("A", "B", None, Some("garbage")),
            &person("A", "B", None, Some("WR11 2AB")),
            &w,
        );
        assert_eq!(
            s.kind_of(Field::Postcode),
            None,
            "an unreadable postcode is not compared"
        );
    }

    #[test]
    fn identifiers_are_compared_only_when_valid() {
        let w = MatchWeights::default();
        let mut a = person("Ava", "Khan", None, None);
        let mut b = a.clone();
        a.nhs_number = Some("9434765919".into());
        b.nhs_number = Some("9876543210".into());
        let s = score(&a, &b, &w);
        assert!(s.nhs_conflict);
        assert_eq!(s.kind_of(Field::NhsNumber), Some(MatchKind::Conflict));
        b.nhs_number = Some("9434765918".into());
        let s = score(&a, &b, &w);
        assert!(
            !s.nhs_conflict,
            "an invalid number is ignored, not a conflict"
        );
        assert_eq!(
            kinds(&s),
            vec![
                (Field::GivenName, MatchKind::Exact),
                (Field::FamilyName, MatchKind::Exact)
            ]
        );
        b.nhs_number = Some("943 476 5919".into());
        assert_eq!(
            score(&a, &b, &w).kind_of(Field::NhsNumber),
            Some(MatchKind::Exact)
        );
    }

    #[test]
    fn points_agree_with_the_full_score() {
        let w = MatchWeights::default();
        let people = [
            person("Zoë", "Smith-Jones", Some("2015-04-03"), Some("WR1 2AB")),
            person("Zoe", "Jones", Some("2015-03-04"), Some("WR1 9ZZ")),
            person("Bill", "Smyth", Some("2016-03-04"), None),
            person("William", "Smith", None, Some("B60 1AA")),
        ];
        for a in &people {
            for b in &people {
                let (na, nb) = (NormalisedPerson::new(a), NormalisedPerson::new(b));
                assert_eq!(points(&na, &nb, &w), score_normalised(&na, &nb, &w).score);
            }
        }
    }

    #[test]
    fn policy_validation() {
        assert!(MatchPolicy::default().validate().is_ok());
        let p = MatchPolicy {
            candidate_at: 30.0,
            ..MatchPolicy::default()
        };
        assert!(p.validate().unwrap_err().contains("candidate_at"));
        let p = MatchPolicy {
            max_candidates: 0,
            ..MatchPolicy::default()
        };
        assert!(p.validate().unwrap_err().contains("max_candidates"));
    }
}
