//! A whole referral matched at once: every child, then every adult, against one tenant's index;
//! the held family the referral belongs to; and the two rules that only make sense across the
//! people of one referral.
//!
//! - **Household.** People referred together usually live together. Once one person of the
//!   referral is matched to a held family (an identifier first, else the first attachment), a
//!   candidate of another person of the referral who is in that family gains
//!   [`MatchWeights::household_agree`](super::MatchWeights::household_agree) points and the
//!   decision is taken again. So a parent named without a date of birth (19 points on names and
//!   postcode, a grey-zone score alone) is attached beside their child rather than duplicated,
//!   while the margin rule still leaves a father and son of one name to a practitioner.
//!   Candidates that agree on an identifier are left as they are (one number on two records is
//!   for a practitioner).
//! - **One held person, one person on the referral.** A held person is attached to at most one
//!   person of a referral; a second person the matcher would also attach to them becomes a new
//!   person with the held one as a candidate (twins typed with one name, or a copy-paste slip).
use super::index::{decide, sort_best_first};
use super::score::{Field, FieldMatch, MatchKind};
use super::{Candidate, MatchDecision, MatchPolicy, MatchResult, PersonDetails, PersonIndex};
use eh_proto::intake::v1::Referral;
use serde::{Deserialize, Serialize};

/// Which list of the referral a person is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferralRole {
    Child,
    FamilyMember,
}

impl ReferralRole {
    /// As stored in `referral_people.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Child => "child",
            Self::FamilyMember => "family_member",
        }
    }
}

/// The decision for one person named in a referral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonMatch {
    pub role: ReferralRole,
    /// Position in its list (`children[i]` or `family_members[i]`).
    pub index: usize,
    pub details: PersonDetails,
    pub result: MatchResult,
}

impl PersonMatch {
    /// The held (person, family) this person is attached to, when decided without a practitioner.
    pub fn attached_to(&self) -> Option<(&str, &str)> {
        match &self.result.decision {
            MatchDecision::Exact {
                person_id,
                family_id,
                ..
            }
            | MatchDecision::Attach {
                person_id,
                family_id,
                ..
            } => Some((person_id, family_id)),
            _ => None,
        }
    }

    /// Held people a practitioner is to confirm or reject (empty unless the decision is
    /// `Candidates`).
    pub fn candidates(&self) -> &[Candidate] {
        match &self.result.decision {
            MatchDecision::Candidates { candidates } => candidates,
            _ => &[],
        }
    }
}

/// Every person of a referral matched, and the held family the referral belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralMatch {
    /// Children first, then adults, each in referral order.
    pub people: Vec<PersonMatch>,
    /// The held family the referral is filed under; `None`: a family not held before.
    pub family_id: Option<String>,
    pub notes: Vec<String>,
}

/// `result` decided again knowing that the referral belongs to the held family `family_id`.
/// Exact identifier matches, and results with no candidate in that family or with a candidate
/// agreeing on an identifier, are returned unchanged.
pub fn with_household(result: MatchResult, family_id: &str, policy: &MatchPolicy) -> MatchResult {
    let on_identifier = |c: &Candidate| {
        c.score
            .fields
            .iter()
            .any(|f| matches!(f.field, Field::NhsNumber | Field::Upn) && f.kind == MatchKind::Exact)
    };
    if matches!(result.decision, MatchDecision::Exact { .. })
        || !result.candidates.iter().any(|c| c.family_id == family_id)
        || result.candidates.iter().any(on_identifier)
    {
        return result;
    }
    let weight = policy.weights.household_agree;
    let MatchResult {
        decision: before,
        mut candidates,
        mut notes,
        nearest,
    } = result;
    for c in candidates.iter_mut().filter(|c| c.family_id == family_id) {
        c.score.score += weight;
        c.score.fields.push(FieldMatch {
            field: Field::Household,
            kind: MatchKind::Exact,
            weight,
        });
    }
    sort_best_first(&mut candidates);
    let decision = decide(&candidates, policy);
    if decision.person_id().is_some() && before.person_id() != decision.person_id() {
        notes.push(format!(
            "attached with the household: in family {family_id}, as another person on this referral"
        ));
    }
    MatchResult {
        decision,
        candidates,
        notes,
        nearest,
    }
}

/// Matches every person named in `referral` against `index` (one tenant's people).
pub fn match_referral(
    index: &PersonIndex,
    referral: &Referral,
    policy: &MatchPolicy,
) -> ReferralMatch {
    let address = referral.address.as_ref();
    let named = referral
        .children
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                ReferralRole::Child,
                i,
                PersonDetails::from_child(c, address),
            )
        })
        .chain(referral.family_members.iter().enumerate().map(|(i, m)| {
            (
                ReferralRole::FamilyMember,
                i,
                PersonDetails::from_family_member(m, address),
            )
        }));
    let mut people: Vec<PersonMatch> = named
        .map(|(role, index_in_list, details)| {
            let result = index.find(&details, policy);
            PersonMatch {
                role,
                index: index_in_list,
                details,
                result,
            }
        })
        .collect();

    // The family: the first identifier match's, else the first attachment's.
    let exact_family = people.iter().find_map(|p| match &p.result.decision {
        MatchDecision::Exact { family_id, .. } => Some(family_id.clone()),
        _ => None,
    });
    let family_id = exact_family.or_else(|| {
        people
            .iter()
            .find_map(|p| p.attached_to().map(|(_, f)| f.to_string()))
    });
    if let Some(family) = &family_id {
        // Those attached to the family already need no help (and the one who put the referral
        // there is no evidence for themselves).
        for p in people
            .iter_mut()
            .filter(|p| p.attached_to().is_none_or(|(_, f)| f != family))
        {
            let result = std::mem::replace(
                &mut p.result,
                MatchResult {
                    decision: MatchDecision::New,
                    candidates: Vec::new(),
                    notes: Vec::new(),
                    nearest: None,
                },
            );
            p.result = with_household(result, family, policy);
        }
    }

    // One held person per person on the referral, first come first served.
    let mut taken: Vec<String> = Vec::new();
    for p in &mut people {
        let Some((held, _)) = p.attached_to() else {
            continue;
        };
        let held = held.to_string();
        if taken.contains(&held) {
            let mut candidates = p.result.candidates.clone();
            if candidates.is_empty() {
                // Never expected: an attachment comes from its candidates.
                continue;
            }
            sort_best_first(&mut candidates);
            p.result.notes.push(format!(
                "held person {held} is already matched to another person on this referral"
            ));
            p.result.decision = MatchDecision::Candidates { candidates };
        } else {
            taken.push(held);
        }
    }

    let mut notes = Vec::new();
    let mut families: Vec<&str> = people
        .iter()
        .filter_map(|p| p.attached_to().map(|(_, f)| f))
        .collect();
    families.sort_unstable();
    families.dedup();
    if families.len() > 1
        && let Some(family) = &family_id
    {
        notes.push(format!(
            "people on this referral are held in families {}; the referral is filed under {family}",
            families.join(", ")
        ));
    }
    ReferralMatch {
        people,
        family_id,
        notes,
    }
}

/// How far back a previous referral of the same family makes a referral a re-referral.
pub const RE_REFERRAL_MONTHS: u32 = 12;

/// A referral of a family the tenant held before, received at `at`, is a **re-referral** when
/// another referral of that family was received in the [`RE_REFERRAL_MONTHS`] before it (a
/// referral received at the same instant counts). `history` is every other referral of the
/// family, as (id, received at), in any order; the most recent qualifying one is returned.
pub fn previous_referral_within_window(
    history: &[(String, chrono::DateTime<chrono::Utc>)],
    at: chrono::DateTime<chrono::Utc>,
) -> Option<&str> {
    let from = at.checked_sub_months(chrono::Months::new(RE_REFERRAL_MONTHS))?;
    history
        .iter()
        .filter(|(_, t)| *t >= from && *t <= at)
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
        .map(|(id, _)| id.as_str())
}

#[cfg(test)]
mod tests {
    use super::super::HeldPerson;
    use super::*;
    use eh_proto::intake::v1::{Address, Child, FamilyMember};

    fn held(
        id: &str,
        family: &str,
        given: &str,
        family_name: &str,
        dob: Option<&str>,
    ) -> HeldPerson {
        HeldPerson {
            person_id: id.into(),
            family_id: family.into(),
            details: PersonDetails {
                given_name: given.into(),
                family_name: family_name.into(),
                date_of_birth: dob
                    .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
                postcode: Some("DM1 4AB".into()),
                nhs_number: None,
                upn: None,
            },
        }
    }

    fn referral(children: &[(&str, &str, Option<&str>)], adults: &[(&str, &str)]) -> Referral {
        Referral {
            children: children
                .iter()
                .map(|(g, f, n)| Child {
                    given_name: (*g).into(),
                    family_name: (*f).into(),
                    date_of_birth: Some("2016-05-14".into()),
                    nhs_number: n.map(Into::into),
                    ..Default::default()
                })
                .collect(),
            family_members: adults
                .iter()
                .map(|(g, f)| FamilyMember {
                    given_name: (*g).into(),
                    family_name: (*f).into(),
                    relationship: "mother".into(),
                    ..Default::default()
                })
                .collect(),
            address: Some(Address {
                postcode: "DM1 4AB".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn marsh() -> PersonIndex {
        let mut leo = held("p-leo", "f-marsh", "Leo", "Marsh", Some("2016-05-14"));
        leo.details.nhs_number = Some("9434765919".into());
        PersonIndex::from_people([
            leo,
            held("p-dana", "f-marsh", "Dana", "Marsh", None),
            // Another family on the same street with a Dana Marsh of their own.
            held("p-dana-2", "f-other", "Dana", "Marsh", None),
        ])
    }

    #[test]
    fn a_parent_without_a_date_of_birth_is_attached_with_the_household() {
        let index = marsh();
        let policy = MatchPolicy::default();
        let alone = index.find(
            &PersonDetails {
                given_name: "Dana".into(),
                family_name: "Marsh".into(),
                postcode: Some("DM1 4AB".into()),
                ..Default::default()
            },
            &policy,
        );
        assert!(
            matches!(alone.decision, MatchDecision::Candidates { .. }),
            "alone, 19 points is the grey zone: {alone:?}"
        );
        let m = match_referral(
            &index,
            &referral(
                &[("Leo", "Marsh", Some("9434765919"))],
                &[("Dana", "Marsh")],
            ),
            &policy,
        );
        assert_eq!(m.family_id.as_deref(), Some("f-marsh"));
        assert_eq!(m.people[0].attached_to(), Some(("p-leo", "f-marsh")));
        assert_eq!(
            m.people[0].result,
            index.find(&m.people[0].details, &policy),
            "the person who placed the referral in the family gains nothing from it"
        );
        assert_eq!(
            m.people[1].attached_to(),
            Some(("p-dana", "f-marsh")),
            "{m:?}"
        );
        let MatchDecision::Attach { score, .. } = &m.people[1].result.decision else {
            panic!("{m:?}")
        };
        assert_eq!(score.score, 6.5 + 7.5 + 5.0 + 4.0);
        assert_eq!(score.kind_of(Field::Household), Some(MatchKind::Exact));
        assert!(
            m.people[1]
                .result
                .notes
                .iter()
                .any(|n| n.contains("household"))
        );
    }

    #[test]
    fn without_a_held_household_the_grey_zone_stays() {
        let m = match_referral(
            &marsh(),
            &referral(&[("Ava", "Khan", None)], &[("Dana", "Marsh")]),
            &MatchPolicy::default(),
        );
        assert_eq!(m.family_id, None);
        assert_eq!(m.people[0].result.decision, MatchDecision::New);
        let ids: Vec<&str> = m.people[1]
            .candidates()
            .iter()
            .map(|c| c.person_id.as_str())
            .collect();
        assert_eq!(ids, ["p-dana", "p-dana-2"]);
    }

    #[test]
    fn father_and_son_of_one_name_in_the_household_are_still_left_to_a_practitioner() {
        let mut index = marsh();
        index.insert(held("p-rob-sr", "f-marsh", "Rob", "Marsh", None));
        index.insert(held("p-rob-jr", "f-marsh", "Rob", "Marsh", None));
        let m = match_referral(
            &index,
            &referral(&[("Leo", "Marsh", Some("9434765919"))], &[("Rob", "Marsh")]),
            &MatchPolicy::default(),
        );
        assert!(
            matches!(
                m.people[1].result.decision,
                MatchDecision::Candidates { .. }
            ),
            "{m:?}"
        );
        assert_eq!(m.people[1].candidates().len(), 2);
    }

    #[test]
    fn one_held_person_is_attached_to_one_person_of_the_referral() {
        let m = match_referral(
            &marsh(),
            &referral(
                &[("Leo", "Marsh", Some("9434765919")), ("Leo", "Marsh", None)],
                &[],
            ),
            &MatchPolicy::default(),
        );
        assert_eq!(m.people[0].attached_to(), Some(("p-leo", "f-marsh")));
        assert_eq!(m.people[1].attached_to(), None);
        assert_eq!(m.people[1].candidates()[0].person_id, "p-leo");
        assert!(
            m.people[1]
                .result
                .notes
                .iter()
                .any(|n| n.contains("already matched")),
            "{m:?}"
        );
    }

    #[test]
    fn people_held_in_two_families_file_the_referral_under_the_identifier_match() {
        let mut index = marsh();
        index.insert(held(
            "p-zoe",
            "f-bronte",
            "Zoe",
            "Bronte",
            Some("2016-05-14"),
        ));
        // Zoë (attached by score) comes first, Leo (exact on NHS number) second.
        let m = match_referral(
            &index,
            &referral(
                &[
                    ("Zoë", "Brontë", None),
                    ("Leo", "Marsh", Some("9434765919")),
                ],
                &[],
            ),
            &MatchPolicy::default(),
        );
        assert_eq!(m.people[0].attached_to(), Some(("p-zoe", "f-bronte")));
        assert_eq!(m.family_id.as_deref(), Some("f-marsh"));
        assert!(m.notes[0].contains("f-bronte, f-marsh"), "{:?}", m.notes);
    }

    #[test]
    fn a_re_referral_is_one_within_twelve_months_of_a_previous_one() {
        use chrono::TimeZone;
        let t = |y, m, d| chrono::Utc.with_ymd_and_hms(y, m, d, 9, 0, 0).unwrap();
        let history = vec![
            ("r-old".to_string(), t(2024, 1, 10)),
            ("r-recent".to_string(), t(2025, 6, 1)),
        ];
        assert_eq!(
            previous_referral_within_window(&history, t(2026, 3, 2)),
            Some("r-recent")
        );
        // Exactly twelve months is within; a day more is not.
        assert_eq!(
            previous_referral_within_window(&history, t(2026, 6, 1)),
            Some("r-recent")
        );
        assert_eq!(
            previous_referral_within_window(&history, t(2026, 6, 2)),
            None
        );
        // A later referral of the family does not make an earlier one a re-referral.
        assert_eq!(
            previous_referral_within_window(&history, t(2024, 1, 9)),
            None
        );
        assert_eq!(previous_referral_within_window(&[], t(2026, 3, 2)), None);
    }
}
