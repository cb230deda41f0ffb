//! The family contacts a case holds, and how a safety flag follows a person across referrals.
//! Pure functions, no I/O.
//!
//! A family member is the same person on every referral that names them: intake matches them to
//! the person it holds and gives that person's id (`ReferralReceived.family_members[i]` is
//! `referral.family_members[i]`). So a case's contacts carry the person id, and a further
//! referral's contacts are merged into the case's by it:
//!
//! - **Unsafe is sticky.** A contact any referral marks unsafe to contact stays unsafe: a later
//!   referral that does not say so (or says they are safe) does not clear it. Clearing needs a
//!   practitioner, and there is no such action yet.
//! - **The address is kept.** A referral that marks someone unsafe without repeating their email
//!   leaves the address the case holds for them on their contact, now unsafe, so a message meant
//!   for them is recorded as suppressed (and notifications also suppresses every address it holds
//!   for the person, by the person id).
//! - A newer address for someone replaces the older one; someone not held yet is added.
//!
//! Contacts recorded before person ids were carried have none: they are matched by address,
//! else by name and relationship (a false match can only make a contact unsafe, never safe).
use eh_proto::casework::v1 as pb;
use eh_proto::intake::v1::ReferralReceived;

/// The family members a referral names, as contacts with intake's person ids. Unsafe only when the
/// referral says so (`safe_to_contact: false`); someone without an email keeps an empty one.
pub fn from_referral(ev: &ReferralReceived) -> Vec<pb::Contact> {
    let Some(r) = ev.referral.as_ref() else {
        return Vec::new();
    };
    // Person ids come in the referral's order; a count that disagrees gives none rather than
    // wrong ones.
    let ids: Vec<&str> = if ev.family_members.len() == r.family_members.len() {
        ev.family_members
            .iter()
            .map(|p| p.person_id.as_str())
            .collect()
    } else {
        vec![""; r.family_members.len()]
    };
    r.family_members
        .iter()
        .zip(ids)
        .map(|(m, id)| pb::Contact {
            name: format!("{} {}", m.given_name, m.family_name),
            email: m.email.clone().unwrap_or_default().trim().to_string(),
            safe_to_contact: m.safe_to_contact != Some(false),
            relationship: m.relationship.clone(),
            parental_responsibility: m.parental_responsibility == Some(true),
            person_id: id.to_string(),
        })
        .collect()
}

/// What a merge changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    pub contacts: Vec<pb::Contact>,
    /// Contacts the merge made unsafe that were not before: their person ids (or "" when held
    /// without one), for the case's timeline (ids only).
    pub newly_unsafe: Vec<String>,
    /// Whether anything changed.
    pub changed: bool,
}

fn normalised(s: &str) -> String {
    s.trim().to_lowercase()
}

fn name_key(c: &pb::Contact) -> String {
    c.name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Which of `held` is the person `named` is: the same person id; else, for contacts held
/// without one (or a referral without ids), the same address, else the same name and
/// relationship.
fn same_person(held: &[pb::Contact], named: &pb::Contact) -> Option<usize> {
    if !named.person_id.is_empty()
        && let Some(i) = held.iter().position(|h| h.person_id == named.person_id)
    {
        return Some(i);
    }
    let legacy = |h: &pb::Contact| h.person_id.is_empty() || named.person_id.is_empty();
    let email = normalised(&named.email);
    if !email.is_empty()
        && let Some(i) = held
            .iter()
            .position(|h| legacy(h) && normalised(&h.email) == email)
    {
        return Some(i);
    }
    let name = name_key(named);
    held.iter().position(|h| {
        legacy(h)
            && !name.is_empty()
            && name_key(h) == name
            && normalised(&h.relationship) == normalised(&named.relationship)
    })
}

/// The case's contacts `held` after a further referral names `named` (see the module's rules).
pub fn merge(held: &[pb::Contact], named: &[pb::Contact]) -> Merged {
    let mut contacts = held.to_vec();
    let mut newly_unsafe = Vec::new();
    let mut changed = false;
    for n in named {
        match same_person(&contacts, n) {
            Some(i) => {
                let h = &mut contacts[i];
                let before = h.clone();
                if !n.safe_to_contact && h.safe_to_contact {
                    h.safe_to_contact = false;
                    newly_unsafe.push(if h.person_id.is_empty() {
                        n.person_id.clone()
                    } else {
                        h.person_id.clone()
                    });
                }
                if !n.email.trim().is_empty() {
                    h.email = n.email.trim().to_string();
                }
                if h.person_id.is_empty() {
                    h.person_id = n.person_id.clone();
                }
                h.parental_responsibility |= n.parental_responsibility;
                changed |= *h != before;
            }
            None => {
                contacts.push(n.clone());
                if !n.safe_to_contact {
                    newly_unsafe.push(n.person_id.clone());
                }
                changed = true;
            }
        }
    }
    Merged {
        contacts,
        newly_unsafe,
        changed,
    }
}

/// `contacts` (a new case's, from its referral) with everyone an earlier case of the family
/// marked unsafe marked unsafe again: a referral that does not repeat the flag does not clear it.
/// The person ids marked.
pub fn keep_earlier_flags(contacts: &mut [pb::Contact], earlier: &[pb::Contact]) -> Vec<String> {
    let mut marked = Vec::new();
    for e in earlier.iter().filter(|e| !e.safe_to_contact) {
        if let Some(i) = same_person(contacts, e)
            && contacts[i].safe_to_contact
        {
            contacts[i].safe_to_contact = false;
            marked.push(contacts[i].person_id.clone());
        }
    }
    marked
}

#[cfg(test)]
mod tests {
    use super::*;
    use eh_proto::intake::v1::{FamilyMember, PersonRef, Referral};

    fn contact(person: &str, name: &str, rel: &str, email: &str, safe: bool) -> pb::Contact {
        pb::Contact {
            name: name.into(),
            email: email.into(),
            safe_to_contact: safe,
            relationship: rel.into(),
            parental_responsibility: true,
            person_id: person.into(),
        }
    }

    fn member(given: &str, rel: &str, email: Option<&str>, safe: Option<bool>) -> FamilyMember {
        FamilyMember {
            given_name: given.into(),
            family_name: "Bloggs".into(),
            relationship: rel.into(),
            parental_responsibility: Some(true),
            email: email.map(String::from),
            safe_to_contact: safe,
            ..Default::default()
        }
    }

    fn received(members: Vec<FamilyMember>, ids: &[&str]) -> ReferralReceived {
        ReferralReceived {
            referral: Some(Referral {
                family_members: members,
                ..Default::default()
            }),
            family_members: ids
                .iter()
                .map(|id| PersonRef {
                    person_id: (*id).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn contacts_carry_the_person_ids_in_the_referrals_order() {
        let ev = received(
            vec![
                member("Jo", "mother", Some(" jo@home.example "), Some(true)),
                member("Sam", "father", None, Some(false)),
                member("Ali", "carer", Some("ali@x.example"), None),
            ],
            &["p-jo", "p-sam", "p-ali"],
        );
        let c = from_referral(&ev);
        let got: Vec<(&str, &str, bool)> = c
            .iter()
            .map(|c| (c.person_id.as_str(), c.email.as_str(), c.safe_to_contact))
            .collect();
        assert_eq!(
            got,
            [
                ("p-jo", "jo@home.example", true),
                ("p-sam", "", false),
                ("p-ali", "ali@x.example", true)
            ]
        );
        // Ids that do not line up with the members are not guessed.
        let odd = received(vec![member("Jo", "mother", None, None)], &["a", "b"]);
        assert_eq!(from_referral(&odd)[0].person_id, "");
    }

    #[test]
    fn a_further_referral_marking_someone_unsafe_without_their_address_keeps_it_unsafe() {
        let held = [
            contact("p-jo", "Jo Bloggs", "mother", "jo@home.example", true),
            contact("p-sam", "Sam Bloggs", "father", "sam@away.example", true),
        ];
        // The second referral names the father as unsafe, with no email.
        let named = [contact("p-sam", "Sam Bloggs", "father", "", false)];
        let m = merge(&held, &named);
        assert!(m.changed);
        assert_eq!(m.newly_unsafe, ["p-sam"]);
        assert_eq!(m.contacts.len(), 2);
        assert!(m.contacts[0].safe_to_contact);
        assert!(!m.contacts[1].safe_to_contact);
        assert_eq!(
            m.contacts[1].email, "sam@away.example",
            "the address held for him stays on his (now unsafe) contact"
        );
    }

    #[test]
    fn a_later_referral_that_does_not_say_unsafe_does_not_clear_it() {
        let held = [contact(
            "p-sam",
            "Sam Bloggs",
            "father",
            "sam@away.example",
            false,
        )];
        let named = [contact(
            "p-sam",
            "Sam Bloggs",
            "father",
            "sam@new.example",
            true,
        )];
        let m = merge(&held, &named);
        assert!(!m.contacts[0].safe_to_contact, "still unsafe");
        assert_eq!(m.contacts[0].email, "sam@new.example");
        assert!(m.newly_unsafe.is_empty());
        // Nothing new: nothing changed.
        let same = merge(&m.contacts, &named);
        assert!(!same.changed);
        assert_eq!(same.contacts, m.contacts);
    }

    #[test]
    fn new_people_are_added_and_legacy_contacts_are_matched_by_address_or_name() {
        // Held before person ids were carried.
        let held = [
            contact("", "Jo Bloggs", "mother", "jo@home.example", true),
            contact("", "Sam  Bloggs", "father", "sam@away.example", true),
        ];
        let named = [
            contact("p-jo", "Joanne Bloggs", "mother", "JO@home.example", false),
            contact("p-sam", "sam bloggs", "father", "", false),
            contact("p-gran", "Gran Bloggs", "grandparent", "", true),
        ];
        let m = merge(&held, &named);
        assert_eq!(m.contacts.len(), 3);
        assert_eq!(m.newly_unsafe, ["p-jo", "p-sam"]);
        assert_eq!(m.contacts[0].person_id, "p-jo");
        assert_eq!(m.contacts[1].person_id, "p-sam");
        assert_eq!(m.contacts[1].email, "sam@away.example");
        assert!(m.contacts.iter().take(2).all(|c| !c.safe_to_contact));
        assert_eq!(m.contacts[2].person_id, "p-gran");
        // With ids on both sides, a shared address or name is not the same person.
        let held = [contact(
            "p-1",
            "Sam Bloggs",
            "father",
            "home@x.example",
            true,
        )];
        let named = [contact(
            "p-2",
            "Sam Bloggs",
            "father",
            "home@x.example",
            false,
        )];
        let m = merge(&held, &named);
        assert_eq!(m.contacts.len(), 2);
        assert!(m.contacts[0].safe_to_contact);
    }

    #[test]
    fn a_new_case_keeps_an_earlier_cases_flags() {
        let earlier = [
            contact("p-sam", "Sam Bloggs", "father", "", false),
            contact("p-jo", "Jo Bloggs", "mother", "jo@home.example", true),
        ];
        let mut now = vec![
            contact("p-jo", "Jo Bloggs", "mother", "jo@home.example", true),
            contact("p-sam", "Sam Bloggs", "father", "sam@away.example", true),
        ];
        assert_eq!(keep_earlier_flags(&mut now, &earlier), ["p-sam"]);
        assert!(now[0].safe_to_contact);
        assert!(!now[1].safe_to_contact);
    }
}
