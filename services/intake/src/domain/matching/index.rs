//! The people of one tenant, indexed so that matching a referral reads a few hundred records
//! rather than all of them.
//!
//! Blocking keys (a record is a candidate when it shares at least one with the query):
//! - the NHS number and the UPN (exact lookups, decided before scoring);
//! - the date of birth, looked up as given, with day and month swapped, and with the year one
//!   out either way, so those slips are still found whatever the names say;
//! - Soundex of the family name (and of each part of a hyphenated one) combined with Soundex of
//!   the first given name or with each of its nickname groups, so a person whose date of birth
//!   is missing or wrong is still found by name (`Bill Smyth` finds `William Smith`).
use super::score::{NormalisedPerson, points, score_normalised};
use super::{
    Candidate, HeldPerson, Identifier, MatchDecision, MatchPolicy, MatchResult, PersonDetails,
};
use chrono::{Datelike, NaiveDate};
use std::collections::HashMap;

/// The slots holding one key's people: most keys of the identifier maps hold one, so that case
/// needs no allocation of its own.
#[derive(Debug, Clone)]
enum Postings {
    One(u32),
    Many(Vec<u32>),
}

impl Postings {
    fn push(&mut self, slot: u32) {
        match self {
            Self::One(first) => *self = Self::Many(vec![*first, slot]),
            Self::Many(v) => v.push(slot),
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Self::One(s) => std::slice::from_ref(s),
            Self::Many(v) => v,
        }
    }
}

fn post<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Postings>, key: K, slot: u32) {
    map.entry(key)
        .and_modify(|p| p.push(slot))
        .or_insert(Postings::One(slot));
}

#[derive(Debug, Clone)]
struct Entry {
    person_id: Box<str>,
    family_id: Box<str>,
    person: NormalisedPerson,
}

/// The people one tenant holds. Never shared between tenants: build one per council.
#[derive(Debug, Clone, Default)]
pub struct PersonIndex {
    /// `None` where a person was removed or replaced (their keys may still point here).
    slots: Vec<Option<Entry>>,
    by_id: HashMap<Box<str>, u32>,
    by_nhs: HashMap<u64, Postings>,
    by_upn: HashMap<Box<str>, Postings>,
    by_dob: HashMap<i32, Postings>,
    by_name: HashMap<u32, Postings>,
    live: usize,
}

/// Marks a given-name key as a nickname group rather than a Soundex code (codes are < 26,000).
const GROUP_KEY: u32 = 0x8000;

/// The name blocking keys of a person: (family Soundex << 16) | given Soundex or group.
fn name_keys(p: &NormalisedPerson, out: &mut Vec<u32>) {
    let mut families: Vec<u16> = p.family_soundex.into_iter().collect();
    if p.family.contains(' ') {
        families.extend(p.family.split(' ').filter_map(super::soundex));
    }
    families.sort_unstable();
    families.dedup();
    let mut givens: Vec<u32> = super::soundex(super::score::first_part(&p.given))
        .map(u32::from)
        .into_iter()
        .collect();
    givens.extend(p.given_groups.iter().map(|g| GROUP_KEY | u32::from(*g)));
    for f in &families {
        for g in &givens {
            out.push((u32::from(*f) << 16) | g);
        }
    }
}

fn dob_key(d: NaiveDate) -> i32 {
    d.num_days_from_ce()
}

/// The dates of birth a slip could have turned `d` into: itself, day and month swapped, and the
/// same day and month a year either side.
fn dob_variants(d: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    let swapped = (d.day() <= 12 && d.day() != d.month())
        .then(|| NaiveDate::from_ymd_opt(d.year(), d.day(), d.month()))
        .flatten();
    [
        Some(d),
        swapped,
        NaiveDate::from_ymd_opt(d.year() - 1, d.month(), d.day()),
        NaiveDate::from_ymd_opt(d.year() + 1, d.month(), d.day()),
    ]
    .into_iter()
    .flatten()
}

impl PersonIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes many people (later entries replace earlier ones with the same id).
    pub fn from_people(people: impl IntoIterator<Item = HeldPerson>) -> Self {
        let mut index = Self::new();
        people.into_iter().for_each(|p| index.insert(p));
        index
    }

    /// How many people are held.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Adds a person, or replaces the one held with the same `person_id` (details change: a
    /// new address, a corrected date of birth).
    pub fn insert(&mut self, held: HeldPerson) {
        self.remove(&held.person_id);
        let Ok(slot) = u32::try_from(self.slots.len()) else {
            // Four billion people in one council is not a case worth a Result.
            return;
        };
        let person = NormalisedPerson::new(&held.details);
        if let Some(n) = person.nhs_number() {
            post(&mut self.by_nhs, n.value(), slot);
        }
        if let Some(u) = person.upn() {
            post(&mut self.by_upn, u.into(), slot);
        }
        if let Some(d) = person.date_of_birth() {
            post(&mut self.by_dob, dob_key(d), slot);
        }
        let mut keys = Vec::with_capacity(8);
        name_keys(&person, &mut keys);
        for k in keys {
            post(&mut self.by_name, k, slot);
        }
        let person_id: Box<str> = held.person_id.into();
        self.by_id.insert(person_id.clone(), slot);
        self.slots.push(Some(Entry {
            person_id,
            family_id: held.family_id.into(),
            person,
        }));
        self.live += 1;
    }

    /// Removes a person (e.g. merged into another record). True when they were held.
    pub fn remove(&mut self, person_id: &str) -> bool {
        let Some(slot) = self.by_id.remove(person_id) else {
            return false;
        };
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = None;
        }
        self.live -= 1;
        true
    }

    fn entry(&self, slot: u32) -> Option<&Entry> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    fn candidate(&self, entry: &Entry, q: &NormalisedPerson, policy: &MatchPolicy) -> Candidate {
        Candidate {
            person_id: entry.person_id.to_string(),
            family_id: entry.family_id.to_string(),
            score: score_normalised(q, &entry.person, &policy.weights),
        }
    }

    fn scored(&self, slots: &[u32], q: &NormalisedPerson, policy: &MatchPolicy) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = slots
            .iter()
            .filter_map(|s| self.entry(*s))
            .map(|e| self.candidate(e, q, policy))
            .collect();
        sort_best_first(&mut out);
        out
    }

    /// The slots sharing a blocking key with `q`, each once, in slot order.
    fn block(&self, q: &NormalisedPerson) -> Vec<u32> {
        let mut slots = Vec::new();
        if let Some(d) = q.date_of_birth() {
            for v in dob_variants(d) {
                if let Some(p) = self.by_dob.get(&dob_key(v)) {
                    slots.extend_from_slice(p.as_slice());
                }
            }
        }
        let mut keys = Vec::with_capacity(8);
        name_keys(q, &mut keys);
        for k in keys {
            if let Some(p) = self.by_name.get(&k) {
                slots.extend_from_slice(p.as_slice());
            }
        }
        slots.sort_unstable();
        slots.dedup();
        slots
    }

    /// How many held records scoring would read for this person (identifier lookups aside):
    /// the size of their blocks, for capacity planning.
    pub fn records_read(&self, query: &PersonDetails) -> usize {
        self.block(&NormalisedPerson::new(query)).len()
    }

    /// Matches a person from a referral against everyone held: an exact identifier match, an
    /// attachment, candidates for a practitioner, or a new person.
    pub fn find(&self, query: &PersonDetails, policy: &MatchPolicy) -> MatchResult {
        let q = NormalisedPerson::new(query);
        let mut notes = Vec::new();
        if query
            .nhs_number
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty())
            && q.nhs_number().is_none()
        {
            notes.push("nhs_number fails its modulus 11 check; not used for matching".to_string());
        }
        if query.upn.as_deref().is_some_and(|s| !s.trim().is_empty()) && q.upn().is_none() {
            notes.push("upn fails its check letter; not used for matching".to_string());
        }

        let identifiers = [
            (
                Identifier::NhsNumber,
                q.nhs_number().and_then(|n| self.by_nhs.get(&n.value())),
            ),
            (Identifier::Upn, q.upn().and_then(|u| self.by_upn.get(u))),
        ];
        for (on, postings) in identifiers {
            let Some(postings) = postings else { continue };
            let hits = self.scored(postings.as_slice(), &q, policy);
            match hits.as_slice() {
                [] => {}
                [only] if !only.score.nhs_conflict => {
                    let others: f64 = only
                        .score
                        .fields
                        .iter()
                        .filter(|f| !matches!(f.field, super::Field::NhsNumber | super::Field::Upn))
                        .map(|f| f.weight)
                        .sum();
                    if others < 0.0 {
                        notes.push(format!(
                            "{} matched but names, date of birth and postcode disagree ({others} points)",
                            on.as_str()
                        ));
                    }
                    return MatchResult {
                        decision: MatchDecision::Exact {
                            person_id: only.person_id.clone(),
                            family_id: only.family_id.clone(),
                            on,
                            score: only.score.clone(),
                        },
                        candidates: hits,
                        notes,
                        nearest: None,
                    };
                }
                [_] => notes.push(format!(
                    "{} matched a person whose NHS number differs; scored instead",
                    on.as_str()
                )),
                many => {
                    notes.push(format!("{} is held on {} records", on.as_str(), many.len()));
                    return MatchResult {
                        decision: MatchDecision::Candidates {
                            candidates: hits.clone(),
                        },
                        candidates: hits,
                        notes,
                        nearest: None,
                    };
                }
            }
        }

        let slots = self.block(&q);
        let mut candidates: Vec<Candidate> = Vec::new();
        // The best below the threshold (ties to the lower id), scored in full only if needed.
        let mut nearest: Option<(f64, &Entry)> = None;
        for e in slots.iter().filter_map(|s| self.entry(*s)) {
            let p = points(&q, &e.person, &policy.weights);
            if p >= policy.candidate_at {
                candidates.push(self.candidate(e, &q, policy));
            } else if nearest.is_none_or(|(b, be)| p > b || (p == b && e.person_id < be.person_id))
            {
                nearest = Some((p, e));
            }
        }
        sort_best_first(&mut candidates);
        candidates.truncate(policy.max_candidates.max(1));
        let nearest = if candidates.is_empty() {
            nearest.map(|(_, e)| self.candidate(e, &q, policy))
        } else {
            None
        };
        MatchResult {
            decision: decide(&candidates, policy),
            candidates,
            notes,
            nearest,
        }
    }
}

/// Best score first; equal scores by person id, so the order never depends on insertion.
pub(super) fn sort_best_first(c: &mut [Candidate]) {
    c.sort_by(|a, b| {
        b.score
            .score
            .total_cmp(&a.score.score)
            .then_with(|| a.person_id.cmp(&b.person_id))
    });
}

/// The decision on candidates already filtered to `candidate_at` and sorted best first.
pub(super) fn decide(candidates: &[Candidate], policy: &MatchPolicy) -> MatchDecision {
    let Some(best) = candidates.first() else {
        return MatchDecision::New;
    };
    let clear_lead = candidates
        .get(1)
        .is_none_or(|second| best.score.score - second.score.score >= policy.min_margin);
    if best.score.score >= policy.attach_at && !best.score.nhs_conflict && clear_lead {
        MatchDecision::Attach {
            person_id: best.person_id.clone(),
            family_id: best.family_id.clone(),
            score: best.score.clone(),
        }
    } else {
        MatchDecision::Candidates {
            candidates: candidates.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Field, MatchKind};
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn details(
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

    fn held(id: &str, family: &str, p: PersonDetails) -> HeldPerson {
        HeldPerson {
            person_id: id.into(),
            family_id: family.into(),
            details: p,
        }
    }

    /// The Smiths of WR1 2AB: twins, their father (John senior) and John junior; plus a
    /// Khan family with NHS numbers and a UPN.
    fn index() -> PersonIndex {
        let mut sr = details("John", "Smith", Some("1980-06-15"), Some("WR1 2AB"));
        sr.nhs_number = Some("9876543210".into());
        let mut ava = details("Ava", "Khan", Some("2015-03-04"), Some("B60 1AA"));
        ava.nhs_number = Some("9434765919".into());
        ava.upn = Some("B801200005001".into());
        PersonIndex::from_people([
            held(
                "p-oliver",
                "f-smith",
                details("Oliver", "Smith", Some("2016-09-21"), Some("WR1 2AB")),
            ),
            held(
                "p-harry",
                "f-smith",
                details("Harry", "Smith", Some("2016-09-21"), Some("WR1 2AB")),
            ),
            held("p-john-sr", "f-smith", sr),
            held(
                "p-john-jr",
                "f-smith",
                details("John", "Smith", Some("2010-01-30"), Some("WR1 2AB")),
            ),
            held(
                "p-william",
                "f-jones",
                details(
                    "William",
                    "Smith-Jones",
                    Some("2012-11-05"),
                    Some("WR5 3XY"),
                ),
            ),
            held(
                "p-zoe",
                "f-bronte",
                details("Zoë", "Brontë", Some("2014-02-10"), Some("DY10 1QQ")),
            ),
            held("p-ava", "f-khan", ava),
        ])
    }

    fn policy() -> MatchPolicy {
        MatchPolicy::default()
    }

    #[test]
    fn exact_on_nhs_number_whatever_else_is_typed() {
        let mut q = details("Eva", "Kahn", None, None);
        q.nhs_number = Some("9434765919".into());
        let r = index().find(&q, &policy());
        let MatchDecision::Exact {
            person_id,
            family_id,
            on,
            score,
        } = &r.decision
        else {
            panic!("{r:?}")
        };
        assert_eq!(
            (person_id.as_str(), family_id.as_str(), *on),
            ("p-ava", "f-khan", Identifier::NhsNumber)
        );
        assert_eq!(score.kind_of(Field::NhsNumber), Some(MatchKind::Exact));
    }

    #[test]
    fn exact_on_upn_and_invalid_identifiers_are_noted_not_used() {
        let mut q = details("Ava", "Khan", None, None);
        q.upn = Some("B801200005001".into());
        q.nhs_number = Some("9434765918".into());
        let r = index().find(&q, &policy());
        assert!(
            matches!(
                r.decision,
                MatchDecision::Exact {
                    on: Identifier::Upn,
                    ..
                }
            ),
            "{r:?}"
        );
        assert!(
            r.notes.iter().any(|n| n.contains("nhs_number")),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn accents_nicknames_and_hyphens_still_attach() {
        let r = index().find(
            &details("Zoe", "Bronte", Some("2014-02-10"), None),
            &policy(),
        );
        assert_eq!(r.decision.person_id(), Some("p-zoe"), "{r:?}");
        let r = index().find(
            &details("Bill", "Smith Jones", Some("2012-11-05"), None),
            &policy(),
        );
        assert_eq!(r.decision.person_id(), Some("p-william"), "{r:?}");
        let MatchDecision::Attach {
            score, family_id, ..
        } = &r.decision
        else {
            panic!()
        };
        assert_eq!(family_id, "f-jones");
        assert_eq!(score.kind_of(Field::GivenName), Some(MatchKind::Nickname));
        assert_eq!(score.kind_of(Field::FamilyName), Some(MatchKind::Exact));
    }

    #[test]
    fn transposed_day_and_month_are_found_and_attached_with_the_postcode() {
        let r = index().find(
            &details("Ava", "Khan", Some("2015-04-03"), Some("B601AA")),
            &policy(),
        );
        let MatchDecision::Attach {
            person_id, score, ..
        } = &r.decision
        else {
            panic!("{r:?}")
        };
        assert_eq!(person_id, "p-ava");
        assert_eq!(
            score.kind_of(Field::DateOfBirth),
            Some(MatchKind::Transposed)
        );
        // Without the postcode a transposed date is not enough to attach: a practitioner decides.
        let r = index().find(&details("Ava", "Khan", Some("2015-04-03"), None), &policy());
        assert!(
            matches!(&r.decision, MatchDecision::Candidates { candidates } if candidates[0].person_id == "p-ava"),
            "{r:?}"
        );
    }

    #[test]
    fn a_wrong_date_of_birth_is_still_found_by_name() {
        // The date of birth block misses both Johns; the name block finds them.
        let r = index().find(
            &details("John", "Smith", Some("2011-07-07"), Some("WR1 2AB")),
            &policy(),
        );
        let ids: Vec<&str> = r.candidates.iter().map(|c| c.person_id.as_str()).collect();
        assert!(
            ids.contains(&"p-john-jr") && ids.contains(&"p-john-sr"),
            "{r:?}"
        );
        assert!(matches!(r.decision, MatchDecision::Candidates { .. }));
    }

    #[test]
    fn twins_are_not_confused() {
        let r = index().find(
            &details("Oliver", "Smith", Some("2016-09-21"), Some("WR1 2AB")),
            &policy(),
        );
        assert_eq!(r.decision.person_id(), Some("p-oliver"), "{r:?}");
        let r = index().find(
            &details("Harry", "Smith", Some("2016-09-21"), None),
            &policy(),
        );
        assert_eq!(r.decision.person_id(), Some("p-harry"), "{r:?}");
    }

    #[test]
    fn grey_zone_yields_candidates_for_a_practitioner() {
        // An adult named without a date of birth: father and son share name and postcode.
        let r = index().find(&details("John", "Smith", None, Some("WR1 2AB")), &policy());
        let MatchDecision::Candidates { candidates } = &r.decision else {
            panic!("{r:?}")
        };
        let ids: Vec<&str> = candidates.iter().map(|c| c.person_id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["p-john-jr", "p-john-sr"],
            "equal scores, ordered by id"
        );
        assert_eq!(candidates[0].score.score, 6.5 + 7.5 + 5.0);
        assert_eq!(candidates[0].score.fields.len(), 3);
    }

    #[test]
    fn two_records_of_one_person_are_left_to_a_practitioner() {
        let mut i = index();
        i.insert(held(
            "p-oliver-dup",
            "f-smith-2",
            details("Ollie", "Smith", Some("2016-09-21"), Some("WR1 2AB")),
        ));
        let r = i.find(
            &details("Oliver", "Smith", Some("2016-09-21"), Some("WR1 2AB")),
            &policy(),
        );
        // 30 vs 28.5: under the 4-point margin.
        assert!(
            matches!(r.decision, MatchDecision::Candidates { .. }),
            "{r:?}"
        );
    }

    #[test]
    fn conflicting_nhs_numbers_block_an_attach() {
        // A valid NHS number nobody holds; John senior, who scores 30 on his details, holds a
        // different valid one, so he is only a candidate.
        let mut q = details("John", "Smith", Some("1980-06-15"), Some("WR1 2AB"));
        q.nhs_number = Some("0000000019".into());
        let r = index().find(&q, &policy());
        let MatchDecision::Candidates { candidates } = &r.decision else {
            panic!("{r:?}")
        };
        assert_eq!(candidates[0].person_id, "p-john-sr");
        assert!(candidates[0].score.nhs_conflict);
        assert_eq!(
            candidates[0].score.kind_of(Field::NhsNumber),
            Some(MatchKind::Conflict)
        );
        assert_eq!(candidates[0].score.score, 30.0 - 12.0);

        // Even with weights under which the conflict still scores above attach_at.
        let mut lenient = policy();
        lenient.weights.nhs_number_conflict = 0.0;
        let r = index().find(&q, &lenient);
        assert!(
            matches!(r.decision, MatchDecision::Candidates { .. }),
            "{r:?}"
        );

        // Without a number John senior is attached.
        q.nhs_number = None;
        assert_eq!(
            index().find(&q, &policy()).decision.person_id(),
            Some("p-john-sr")
        );
    }

    #[test]
    fn an_identifier_on_someone_else_is_exact_but_noted() {
        let mut q = details("John", "Smith", Some("1980-06-15"), Some("WR1 2AB"));
        q.nhs_number = Some("9434765919".into()); // held for Ava Khan
        let r = index().find(&q, &policy());
        assert_eq!(r.decision.person_id(), Some("p-ava"));
        assert!(
            r.notes.iter().any(|n| n.contains("disagree")),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn a_upn_whose_holder_has_another_nhs_number_is_scored_instead() {
        let mut q = details("Ava", "Khan", Some("2015-03-04"), Some("B60 1AA"));
        q.upn = Some("B801200005001".into());
        q.nhs_number = Some("0000000019".into());
        let r = index().find(&q, &policy());
        assert!(
            matches!(r.decision, MatchDecision::Candidates { .. }),
            "{r:?}"
        );
        assert!(
            r.notes.iter().any(|n| n.contains("NHS number differs")),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn an_nhs_number_held_twice_goes_to_a_practitioner() {
        let mut i = index();
        let mut dup = details("Ava", "Khan", Some("2015-03-04"), None);
        dup.nhs_number = Some("9434765919".into());
        i.insert(held("p-ava-2", "f-khan-2", dup));
        let mut q = details("Ava", "Khan", None, None);
        q.nhs_number = Some("9434765919".into());
        let r = i.find(&q, &policy());
        let MatchDecision::Candidates { candidates } = &r.decision else {
            panic!("{r:?}")
        };
        assert_eq!(candidates.len(), 2);
        assert!(
            r.notes
                .iter()
                .any(|n| n == "nhs_number is held on 2 records"),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn a_referral_child_uses_the_family_address_when_it_has_none() {
        use eh_proto::intake::v1::{Address, Child};
        let child = Child {
            given_name: "Zoë".into(),
            family_name: "Brontë".into(),
            date_of_birth: Some("2014-02-10".into()),
            ..Default::default()
        };
        let address = Address {
            postcode: "DY10 1QQ".into(),
            ..Default::default()
        };
        let q = PersonDetails::from_child(&child, Some(&address));
        assert_eq!(q.postcode.as_deref(), Some("DY10 1QQ"));
        let r = index().find(&q, &policy());
        let MatchDecision::Attach { score, .. } = &r.decision else {
            panic!("{r:?}")
        };
        assert_eq!(score.score, 6.5 + 7.5 + 11.0 + 5.0);
    }

    #[test]
    fn strangers_are_new() {
        let r = index().find(
            &details("Priya", "Patel", Some("2013-05-17"), Some("WR9 8ZZ")),
            &policy(),
        );
        assert_eq!(r.decision, MatchDecision::New);
        assert!(r.candidates.is_empty());
        // A sibling sharing family name and postcode is not the same person.
        let r = index().find(
            &details("Amelia", "Smith", Some("2019-12-01"), Some("WR1 2AB")),
            &policy(),
        );
        assert_eq!(r.decision, MatchDecision::New, "{r:?}");
    }

    #[test]
    fn a_new_person_keeps_the_nearest_miss() {
        // A sibling: same family name, postcode and block (date of birth a year out).
        let r = index().find(
            &details("Amelia", "Smith", Some("2015-09-21"), Some("WR1 2AB")),
            &policy(),
        );
        assert_eq!(r.decision, MatchDecision::New);
        let nearest = r.nearest.expect("a held person shared a block");
        assert!(nearest.score.score < policy().candidate_at);
        assert_eq!(nearest.person_id, "p-harry", "ties go to the lower id");
        assert_eq!(
            nearest.score.kind_of(Field::DateOfBirth),
            Some(MatchKind::YearOffByOne)
        );
        // Nobody in any block: nothing to keep.
        let r = index().find(
            &details("Priya", "Patel", Some("2013-05-17"), Some("WR9 8ZZ")),
            &policy(),
        );
        assert_eq!(r.nearest, None);
    }

    #[test]
    fn replace_and_remove() {
        let mut i = index();
        assert_eq!(i.len(), 7);
        i.insert(held(
            "p-zoe",
            "f-bronte",
            details("Zoe", "Bronte-Smith", Some("2014-02-10"), None),
        ));
        assert_eq!(i.len(), 7);
        let r = i.find(
            &details("Zoe", "Bronte Smith", Some("2014-02-10"), None),
            &policy(),
        );
        assert_eq!(r.decision.person_id(), Some("p-zoe"));
        assert_eq!(r.candidates.len(), 1, "the replaced record is gone: {r:?}");
        assert!(i.remove("p-zoe"));
        assert!(!i.remove("p-zoe"));
        assert_eq!(i.len(), 6);
        assert_eq!(
            i.find(
                &details("Zoe", "Bronte Smith", Some("2014-02-10"), None),
                &policy()
            )
            .decision,
            MatchDecision::New
        );
    }

    #[test]
    fn the_result_is_the_same_whatever_the_insertion_order() {
        let people = vec![
            held("a", "f", details("John", "Smith", None, Some("WR1 2AB"))),
            held("b", "f", details("John", "Smith", None, Some("WR1 2AB"))),
            held("c", "f", details("Jon", "Smith", None, Some("WR1 2AB"))),
        ];
        let q = details("John", "Smith", None, Some("WR1 2AB"));
        let forward = PersonIndex::from_people(people.clone()).find(&q, &policy());
        let backward = PersonIndex::from_people(people.into_iter().rev()).find(&q, &policy());
        assert_eq!(forward, backward);
    }

    #[test]
    fn decisions_serialise_with_their_scores() {
        let r = index().find(
            &details("Bill", "Smith-Jones", Some("2012-11-05"), None),
            &policy(),
        );
        let json = serde_json::to_value(&r.decision).unwrap();
        assert_eq!(json["decision"], "attach");
        assert_eq!(json["score"]["fields"][0]["field"], "given_name");
        assert_eq!(json["score"]["fields"][0]["kind"], "nickname");
    }
}
