//! `consent_requested`: consent is still outstanding, so the family is asked — every contact with
//! parental responsibility and an email address (see `domain::consent_addressees` for why a young
//! person is not emailed). A contact marked unsafe gets nothing: the message is recorded as
//! `suppressed` and the address joins the suppression list; so does any other address the event
//! marks unsafe, and every family member it marks unsafe joins the person suppression list by
//! their person id. Each message carries its family member's person id, so the sender withholds
//! it when any other event marked that person unsafe. When nobody can be asked by email, an `undeliverable` message says so, so the
//! practitioner knows to ask another way.
//!
//! The email names no one: not the child, and not the recipient either (the address may be
//! shared in the household); it carries the council, the case reference and the date the request
//! closes.
use super::{Notifier, Outgoing, Plan, Recording, council, decode};
use crate::CONSUMER_CONSENT_REQUESTED;
use crate::domain::{self, Addressee};
use crate::templates::CONSENT_REQUEST;
use eh_bus::Received;
use eh_bus::consumer::{HandlerError, Pending};
use eh_proto::casework::v1::ConsentRequested;

pub struct ConsentRequestedHandler(pub Notifier);

/// One message per family member to ask (or on record as suppressed / undeliverable).
pub fn plan(council: &str, ev: &ConsentRequested) -> Result<Plan, HandlerError> {
    let case = ev
        .case
        .as_ref()
        .ok_or_else(|| HandlerError::Permanent("ConsentRequested without its case".into()))?;
    let mut plan = Plan::for_family(&ev.family, &case.case_id);
    let mut to = domain::consent_recipients(&ev.family);
    if to.is_empty() {
        to.push((
            Addressee::Nobody(
                "no family member with parental responsibility has an email address: ask for \
                 consent another way"
                    .into(),
            ),
            None,
        ));
    }
    let close_due = if ev.close_due_at.trim().is_empty() {
        "the date the request closes".to_string()
    } else {
        domain::day(&ev.close_due_at)
    };
    for (a, person) in to {
        let mut m = Outgoing::new(CONSENT_REQUEST, a, &case.case_id);
        m.person_id = person;
        m.dedupe_key = ev.at.clone();
        m.vars = [
            ("council", council.to_string()),
            ("case_id", case.case_id.clone()),
            ("close_due_date", close_due.clone()),
        ]
        .into_iter()
        .collect();
        plan.messages.push(m);
    }
    Ok(plan)
}

eh_bus::admitted_in_order!(ConsentRequestedHandler);

impl ConsentRequestedHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let (tenant, ev) = decode::<ConsentRequested>(&self.0.ctx, msg, "ConsentRequested")?;
        let settings = self.0.settings.council(&tenant);
        let plan = plan(&council(&tenant, settings), &ev)?;
        Ok(self.0.admit(
            CONSUMER_CONSENT_REQUESTED,
            msg,
            &tenant,
            &plan,
            Recording::default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eh_proto::casework::v1::{CaseRef, Contact};

    fn contact(name: &str, email: &str, safe: bool, pr: bool) -> Contact {
        Contact {
            name: name.into(),
            email: email.into(),
            safe_to_contact: safe,
            relationship: "parent".into(),
            parental_responsibility: pr,
            person_id: format!("p-{}", name.split(' ').next().unwrap_or_default()),
        }
    }

    fn requested(family: Vec<Contact>) -> ConsentRequested {
        ConsentRequested {
            case: Some(CaseRef {
                case_id: "case-1".into(),
                ..Default::default()
            }),
            family,
            close_due_at: "2026-03-30T09:00:00Z".into(),
            at: "2026-03-09T09:00:00Z".into(),
        }
    }

    #[test]
    fn asks_safe_parents_records_unsafe_ones_and_suppresses_every_unsafe_address() {
        let plan = plan(
            "Council",
            &requested(vec![
                contact("Jo Bloggs", "jo@home.example", true, true),
                contact("Sam Bloggs", "sam@away.example", false, true),
                contact("Uncle", "uncle@away.example", false, false),
            ]),
        )
        .unwrap();
        assert_eq!(
            plan.recipients(),
            vec![
                &Addressee::Send("jo@home.example".into()),
                &Addressee::Unsafe("sam@away.example".into())
            ]
        );
        let unsafe_: Vec<&str> = plan
            .unsafe_addresses
            .iter()
            .map(|(a, _)| a.as_str())
            .collect();
        assert_eq!(unsafe_, ["sam@away.example", "uncle@away.example"]);
        let people: Vec<&str> = plan.unsafe_people.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(people, ["p-Sam", "p-Uncle"]);
        assert!(
            plan.unsafe_people
                .iter()
                .all(|(_, why)| why.contains("case-1"))
        );
        let persons: Vec<Option<&str>> = plan
            .messages
            .iter()
            .map(|m| m.person_id.as_deref())
            .collect();
        assert_eq!(persons, [Some("p-Jo"), Some("p-Sam")]);
        super::super::test_support::assert_vars_match(&plan.messages[0]);
        assert_eq!(plan.messages[0].vars["close_due_date"], "30 March 2026");
    }

    #[test]
    fn nobody_to_ask_is_on_record() {
        let plan = plan("C", &requested(vec![contact("Jo", "", true, true)])).unwrap();
        assert!(matches!(&plan.messages[0].to, Addressee::Nobody(_)));
    }
}
