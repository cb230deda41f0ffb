//! Notifications' rules, without I/O: who in a family is asked for consent, what screening's JSON
//! pointers ask for in plain words, words for clocks, states and outcomes, dates as people read
//! them, and the removal of children's names from free text before it goes into an email.
//!
//! Email is not a secure channel, so no email carries a child's name or the concerns; the people
//! who need those open the case in the platform.
use eh_proto::casework::v1::Contact;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Screening outcomes (`ScreeningDecided.outcome`).
pub mod outcome {
    pub const ACCEPTED: &str = "accepted_for_early_help";
    pub const ADVICE: &str = "advice_and_signpost";
    pub const MORE_INFORMATION: &str = "more_information_needed";
    /// Not an Early Help outcome: casework steps the case up and `case_stepped_up` tells the
    /// referrer, so screening sends nothing of its own.
    pub const STEP_UP: &str = "step_up_significant_harm";
}

/// Where a message goes, decided before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressee {
    /// Queue it for this address (the sender still checks the suppression list when it sends).
    Send(String),
    /// The event marks this address unsafe: record the message as suppressed, never send it,
    /// and put the address on the tenant's suppression list.
    Unsafe(String),
    /// Nobody to send it to: record it as undeliverable, with why.
    Nobody(String),
}

/// A case contact as a recipient: unsafe when the event says so; `None` without an address (a
/// referrer through an upstream system often has none: that system hears the outcome from the
/// case events instead).
pub fn contact_addressee(c: &Contact) -> Option<Addressee> {
    let email = c.email.trim();
    if email.is_empty() {
        None
    } else if !c.safe_to_contact {
        Some(Addressee::Unsafe(email.to_string()))
    } else {
        Some(Addressee::Send(email.to_string()))
    }
}

/// Who `consent_request` goes to: every family contact with an email address and parental
/// responsibility — the people whose agreement Early Help needs. Unsafe ones are listed as
/// [`Addressee::Unsafe`] so the refusal is on record.
///
/// A young person is not emailed even where they may be competent to consent for themselves:
/// the event carries no competence judgement (that is a practitioner's, recorded with the
/// consent service), and an email to a child about a family-support request can disclose it to
/// the household. A practitioner asks a competent young person in person. A young person who is
/// a parent holds parental responsibility for their own child and is asked like any parent.
pub fn consent_addressees(family: &[Contact]) -> Vec<Addressee> {
    consent_recipients(family)
        .into_iter()
        .map(|(a, _)| a)
        .collect()
}

/// [`consent_addressees`], each with the family member's person id (`None` when the contact has
/// none), so the message can be withheld when that person is marked unsafe by any other event.
pub fn consent_recipients(family: &[Contact]) -> Vec<(Addressee, Option<String>)> {
    let mut seen = BTreeSet::new();
    family
        .iter()
        .filter(|c| c.parental_responsibility && !c.email.trim().is_empty())
        .filter(|c| seen.insert(c.email.trim().to_ascii_lowercase()))
        .filter_map(|c| contact_addressee(c).map(|a| (a, person_of(c))))
        .collect()
}

fn person_of(c: &Contact) -> Option<String> {
    Some(c.person_id.trim().to_string()).filter(|p| !p.is_empty())
}

/// Every family member (person id) the contacts mark unsafe, whether or not they have an address.
pub fn unsafe_people(contacts: &[Contact]) -> Vec<String> {
    contacts
        .iter()
        .filter(|c| !c.safe_to_contact)
        .filter_map(person_of)
        .collect()
}

/// Every (person id, address) the contacts give.
pub fn person_addresses(contacts: &[Contact]) -> Vec<(String, String)> {
    contacts
        .iter()
        .filter(|c| !c.email.trim().is_empty())
        .filter_map(|c| person_of(c).map(|p| (p, c.email.trim().to_string())))
        .collect()
}

/// Every address the family contacts mark unsafe, whoever they are.
pub fn unsafe_addresses(contacts: &[Contact]) -> Vec<String> {
    contacts
        .iter()
        .filter(|c| !c.safe_to_contact && !c.email.trim().is_empty())
        .map(|c| c.email.trim().to_string())
        .collect()
}

/// A screening outcome as the referrer reads it.
pub fn outcome_words(o: &str) -> String {
    match o {
        outcome::ACCEPTED => "accepted for Early Help".into(),
        outcome::ADVICE => "advice and signposting".into(),
        outcome::MORE_INFORMATION => "more information needed".into(),
        other => words(other),
    }
}

/// A service-level clock as a team manager reads it.
pub fn clock_words(clock: &str) -> String {
    match clock {
        "screening_decision" => "front-door screening decision".into(),
        "consent_chase" => "chase for the family's consent".into(),
        "consent_close" => "close for lack of consent".into(),
        "first_contact" => {
            "first contact with the family after the lead practitioner was named".into()
        }
        "waiting_list" => "wait for a provider with a place (the waiting-list limit)".into(),
        "assessment" => "Early Help Assessment finalised after allocation".into(),
        other => words(other),
    }
}

/// A case state in words (`awaiting_consent` → "awaiting consent").
pub fn state_words(state: &str) -> String {
    match state {
        "ready_for_allocation" => "ready for allocation".into(),
        "stepped_up" => "stepped up to the front door".into(),
        "waiting_for_provider" => "waiting for a provider with a place".into(),
        "assessment_open" => "being assessed (the Early Help Assessment is open)".into(),
        "assessed" => "assessed (the Early Help Assessment is finalised)".into(),
        other => words(other),
    }
}

fn words(token: &str) -> String {
    token.replace('_', " ")
}

/// 1 → "first", 2 → "second", … 11 → "11th".
pub fn ordinal(n: usize) -> String {
    const WORDS: [&str; 10] = [
        "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
        "tenth",
    ];
    if let Some(w) = n.checked_sub(1).and_then(|i| WORDS.get(i)) {
        return (*w).to_string();
    }
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// What a JSON pointer into the referral document asks for, in plain words. Children are named
/// by their place in the request ("the first child"), never by name.
pub fn missing_in_plain_words(pointer: &str) -> String {
    let parts: Vec<&str> = pointer.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => "the request as a whole: please send it again in full".into(),
        ["needs"] => "what help the family needs: at least one need, for example housing, health, \
             school attendance, money worries or domestic abuse"
            .into(),
        ["children"] => {
            "the children the request is about: at least one child, with a date of birth".into()
        }
        ["children", i, rest @ ..] => {
            let who = match i.parse::<usize>() {
                Ok(i) => format!("the {} child in your request", ordinal(i + 1)),
                Err(_) => "a child in your request".into(),
            };
            match rest {
                [] => format!("the details of {who}"),
                ["date_of_birth"] => format!("the date of birth of {who}"),
                ["expected_date_of_delivery"] => {
                    format!("the expected date of delivery for {who} (an unborn baby)")
                }
                ["address", "postcode"] => format!("the postcode of the home of {who}"),
                [.., field] => format!("the {} of {who}", words(field)),
            }
        }
        ["address", "postcode"] => "the family's postcode".into(),
        ["address"] => "the family's address".into(),
        ["referrer", field] => format!("your {}", words(field)),
        ["consent", ..] => "whether the family agrees to Early Help, and how they agreed".into(),
        [.., field] => format!("the {}", words(field)),
    }
}

/// The missing items as a bulleted list, each once, in the order given.
pub fn missing_list(pointers: &[String]) -> String {
    let mut seen = BTreeSet::new();
    pointers
        .iter()
        .map(String::as_str)
        .map(missing_in_plain_words)
        .filter(|w| seen.insert(w.clone()))
        .map(|w| format!("- {w}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A timestamp's (or a `YYYY-MM-DD` date's) day as people write it ("2 March 2026"); the text as
/// given when unreadable.
pub fn day(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|d| d.date_naive())
        .or_else(|_| chrono::NaiveDate::parse_from_str(rfc3339, "%Y-%m-%d"))
        .map(|d| d.format("%-d %B %Y").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// A timestamp with its time, in UTC ("2 March 2026, 09:00 UTC").
pub fn day_and_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .format("%-d %B %Y, %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

const NAME_REMOVED: &str = "[name removed]";

/// The lower-cased alphabetic runs of a name or a text, two letters or more: "Mary-Jane O'Neil"
/// → mary, jane, neil.
pub fn name_tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|t| t.chars().count() >= 2)
        .map(str::to_lowercase)
        .collect()
}

/// A keyed hash of one name token: notifications keeps these, not the names, and checks free
/// text against them. (Names are guessable, so this is pseudonymisation, not anonymity; it keeps
/// plain names out of this service's tables and logs.)
pub fn name_token_hash(tenant: &str, token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"eh-notifications/child-name/v1\x1f");
    h.update(tenant.as_bytes());
    h.update(b"\x1f");
    h.update(token.to_lowercase().as_bytes());
    hex::encode(h.finalize())
}

/// The hashes of every token of `names`.
pub fn name_hashes<'a>(tenant: &str, names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names
        .into_iter()
        .flat_map(name_tokens)
        .map(|t| name_token_hash(tenant, &t))
        .collect()
}

/// `text` with every word that is (a part of) a child's name replaced by "[name removed]".
/// Over-removal (a child called May in "may be at risk") is accepted; a name in an email is not.
pub fn redact_names(text: &str, tenant: &str, hashes: &BTreeSet<String>) -> String {
    if hashes.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.chars().count() >= 2 && hashes.contains(&name_token_hash(tenant, word)) {
            out.push_str(NAME_REMOVED);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(email: &str, safe: bool, pr: bool, rel: &str) -> Contact {
        Contact {
            name: "Someone".into(),
            email: email.into(),
            safe_to_contact: safe,
            relationship: rel.into(),
            parental_responsibility: pr,
            person_id: String::new(),
        }
    }

    #[test]
    fn recipients_carry_their_person_and_unsafe_people_are_listed_without_an_address() {
        let with = |person: &str, c: Contact| Contact {
            person_id: person.into(),
            ..c
        };
        let family = [
            with("p-jo", contact("jo@home.example", true, true, "mother")),
            with("p-sam", contact("", false, true, "father")),
            with("", contact("ali@home.example", false, true, "carer")),
            with("p-kim", contact("kim@home.example", false, true, "carer")),
        ];
        assert_eq!(
            consent_recipients(&family),
            vec![
                (
                    Addressee::Send("jo@home.example".into()),
                    Some("p-jo".into())
                ),
                (Addressee::Unsafe("ali@home.example".into()), None),
                (
                    Addressee::Unsafe("kim@home.example".into()),
                    Some("p-kim".into())
                ),
            ]
        );
        assert_eq!(unsafe_people(&family), ["p-sam", "p-kim"]);
        assert_eq!(
            person_addresses(&family),
            [
                ("p-jo".to_string(), "jo@home.example".to_string()),
                ("p-kim".to_string(), "kim@home.example".to_string())
            ]
        );
    }

    #[test]
    fn consent_goes_to_parents_with_an_address_and_unsafe_ones_are_listed_as_unsafe() {
        let family = [
            contact("mum@home.example", true, true, "mother"),
            contact("dad@elsewhere.example", false, true, "father"),
            contact("", true, true, "carer"),
            contact("teen@home.example", true, false, "young_person"),
            contact("gran@home.example", true, false, "grandmother"),
            contact("MUM@home.example ", true, true, "mother"),
        ];
        assert_eq!(
            consent_addressees(&family),
            vec![
                Addressee::Send("mum@home.example".into()),
                Addressee::Unsafe("dad@elsewhere.example".into()),
            ]
        );
        assert_eq!(unsafe_addresses(&family), vec!["dad@elsewhere.example"]);
    }

    #[test]
    fn a_contact_without_an_address_is_no_recipient() {
        assert_eq!(
            contact_addressee(&contact(" ", true, false, "referrer")),
            None
        );
        assert_eq!(
            contact_addressee(&contact("r@x.example", false, false, "referrer")),
            Some(Addressee::Unsafe("r@x.example".into()))
        );
        assert_eq!(
            contact_addressee(&contact(" r@x.example", true, false, "referrer")),
            Some(Addressee::Send("r@x.example".into()))
        );
    }

    #[test]
    fn missing_pointers_read_as_plain_words_without_names() {
        assert_eq!(
            missing_in_plain_words("/children/0/date_of_birth"),
            "the date of birth of the first child in your request"
        );
        assert_eq!(
            missing_in_plain_words("/children/1/expected_date_of_delivery"),
            "the expected date of delivery for the second child in your request (an unborn baby)"
        );
        assert_eq!(
            missing_in_plain_words("/children/11/address/postcode"),
            "the postcode of the home of the 12th child in your request"
        );
        assert_eq!(
            missing_in_plain_words("/address/postcode"),
            "the family's postcode"
        );
        assert!(missing_in_plain_words("/needs").starts_with("what help the family needs"));
        assert!(missing_in_plain_words("/children").starts_with("the children"));
        assert_eq!(missing_in_plain_words("/referrer/phone"), "your phone");
        assert_eq!(
            missing_in_plain_words("/something/odd_field"),
            "the odd field"
        );
        assert!(missing_in_plain_words("").contains("request as a whole"));
        assert_eq!(
            missing_list(&[
                "/needs".into(),
                "/address/postcode".into(),
                "/address/postcode".into()
            ])
            .lines()
            .count(),
            2
        );
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 10, 11, 12, 13, 21, 22, 23, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "first", "second", "tenth", "11th", "12th", "13th", "21st", "22nd", "23rd",
                "101st", "111th"
            ]
        );
    }

    #[test]
    fn words_for_outcomes_clocks_states_and_dates() {
        assert_eq!(outcome_words(outcome::ADVICE), "advice and signposting");
        assert_eq!(
            clock_words("screening_decision"),
            "front-door screening decision"
        );
        assert_eq!(clock_words("some_new_clock"), "some new clock");
        assert_eq!(state_words("awaiting_consent"), "awaiting consent");
        assert_eq!(day("2026-03-02T09:00:00Z"), "2 March 2026");
        assert_eq!(
            day_and_time("2026-03-02T10:30:00+01:00"),
            "2 March 2026, 09:30 UTC"
        );
        assert_eq!(day("soon"), "soon");
    }

    #[test]
    fn childrens_names_are_removed_from_free_text() {
        let hashes = name_hashes("worcs", ["Leo", "Smith-Jones", "Mary Ann"]);
        let text = "Leo's teacher saw bruising; LEO SMITH-JONES said Mary-Ann was scared.";
        let clean = redact_names(text, "worcs", &hashes);
        assert_eq!(
            clean,
            "[name removed]'s teacher saw bruising; [name removed] [name removed]-[name removed] \
             said [name removed]-[name removed] was scared."
        );
        // Another tenant's hashes do not match: the key includes the tenant.
        assert_eq!(redact_names(text, "staffs", &hashes), text);
        assert_eq!(redact_names(text, "worcs", &BTreeSet::new()), text);
        // Hashes, not names, are what is kept.
        assert!(hashes.iter().all(|h| h.len() == 64 && !h.contains("leo")));
    }
}
