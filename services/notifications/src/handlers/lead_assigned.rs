//! `lead_assigned`: the allocated case has a lead practitioner, so the family and the referrer
//! are told who will help and by when the family should hear from them.
//!
//! The family: every contact with parental responsibility and an email address (as for consent:
//! a young person is not emailed about the household's support). A contact marked unsafe gets
//! nothing — recorded as `suppressed`, the address and the person joining the suppression lists —
//! and each message carries its family member's person id, so the sender withholds it when any
//! other event marked that person unsafe. When nobody can be told by email, an `undeliverable`
//! message says so, so the lead knows to tell the family another way.
//!
//! The referrer: at the address the referral gave, unless it is marked unsafe.
//!
//! The emails name the council, the service and the case reference; never a child, the
//! recipient (an address may be shared in the household), the concerns or the practitioner.
use super::{Notifier, Outgoing, Plan, Recording, council, decode};
use crate::CONSUMER_LEAD_ASSIGNED;
use crate::domain::{self, Addressee};
use crate::templates::{LEAD_ASSIGNED_FAMILY, LEAD_ASSIGNED_REFERRER};
use eh_bus::Received;
use eh_bus::consumer::{HandlerError, Pending};
use eh_proto::casework::v1::LeadAssigned;

pub struct LeadAssignedHandler(pub Notifier);

/// "9 March 2026" from the event's `YYYY-MM-DD`; the text as given when unreadable.
fn by_day(date: &str) -> String {
    chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .map(|d| d.format("%-d %B %Y").to_string())
        .unwrap_or_else(|_| {
            if date.trim().is_empty() {
                "the date your Early Help team gives you".to_string()
            } else {
                date.to_string()
            }
        })
}

/// One message per family member to tell (or on record as suppressed / undeliverable), then the
/// referrer's.
pub fn plan(council: &str, ev: &LeadAssigned) -> Result<Plan, HandlerError> {
    let case = ev
        .case
        .as_ref()
        .ok_or_else(|| HandlerError::Permanent("LeadAssigned without its case".into()))?;
    let mut plan = Plan::for_family(&ev.family, &case.case_id);
    let service = if ev.service_name.trim().is_empty() {
        "an Early Help service".to_string()
    } else {
        ev.service_name.trim().to_string()
    };
    let by = by_day(&ev.first_contact_by);
    let mut to = domain::consent_recipients(&ev.family);
    if to.is_empty() {
        to.push((
            Addressee::Nobody(
                "no family member with parental responsibility has an email address: tell the \
                 family who will help them another way"
                    .into(),
            ),
            None,
        ));
    }
    for (a, person) in to {
        let mut m = Outgoing::new(LEAD_ASSIGNED_FAMILY, a, &case.case_id);
        m.person_id = person;
        m.dedupe_key = ev.at.clone();
        m.vars = [
            ("council", council.to_string()),
            ("case_id", case.case_id.clone()),
            ("service_name", service.clone()),
            ("first_contact_by", by.clone()),
        ]
        .into_iter()
        .collect();
        plan.messages.push(m);
    }
    let referrer = case.referrer.clone().unwrap_or_default();
    if let Some(to) = domain::contact_addressee(&referrer) {
        let mut m = Outgoing::new(LEAD_ASSIGNED_REFERRER, to, &case.case_id);
        m.dedupe_key = ev.at.clone();
        let name = referrer.name.trim();
        m.vars = [
            ("council", council.to_string()),
            (
                "referrer_name",
                if name.is_empty() { "colleague" } else { name }.to_string(),
            ),
            ("reference", case.source_reference.clone()),
            ("source_system", case.source_system.clone()),
            ("referral_id", case.referral_id.clone()),
            ("case_id", case.case_id.clone()),
            ("service_name", service),
            ("first_contact_by", by),
        ]
        .into_iter()
        .collect();
        plan.messages.push(m);
    }
    Ok(plan)
}

eh_bus::admitted_in_order!(LeadAssignedHandler);

impl LeadAssignedHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let (tenant, ev) = decode::<LeadAssigned>(&self.0.ctx, msg, "LeadAssigned")?;
        let settings = self.0.settings.council(&tenant);
        let plan = plan(&council(&tenant, settings), &ev)?;
        Ok(self.0.admit(
            CONSUMER_LEAD_ASSIGNED,
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
    use crate::templates::{self, render};
    use eh_proto::casework::v1::{CaseRef, Contact};

    fn contact(name: &str, email: &str, safe: bool, pr: bool, relationship: &str) -> Contact {
        Contact {
            name: name.into(),
            email: email.into(),
            safe_to_contact: safe,
            relationship: relationship.into(),
            parental_responsibility: pr,
            person_id: if relationship == "referrer" {
                String::new()
            } else {
                format!("p-{}", name.split(' ').next().unwrap_or_default())
            },
        }
    }

    fn assigned(family: Vec<Contact>, referrer: Option<Contact>) -> LeadAssigned {
        LeadAssigned {
            case: Some(CaseRef {
                case_id: "case-1".into(),
                family_id: "fam-1".into(),
                referral_id: "ref-1".into(),
                source_system: "hub".into(),
                source_reference: "R-1".into(),
                route: "upstream_event".into(),
                referrer,
                referrer_agency: "Worcester Primary".into(),
            }),
            family,
            service_name: "Family Support North".into(),
            organization_id: "org-1".into(),
            practitioner: "lead-7".into(),
            first_contact_by: "2026-03-09".into(),
            at: "2026-03-02T09:00:00Z".into(),
        }
    }

    #[test]
    fn tells_safe_parents_and_the_referrer_never_an_unsafe_contact() {
        let p = plan(
            "Test Council",
            &assigned(
                vec![
                    contact("Jo Bloggs", "jo@home.example", true, true, "mother"),
                    contact("Sam Bloggs", "sam@away.example", false, true, "father"),
                    contact("Kid Bloggs", "kid@home.example", true, false, "child"),
                ],
                Some(contact(
                    "Pat Teacher",
                    "pat@school.example",
                    true,
                    false,
                    "referrer",
                )),
            ),
        )
        .unwrap();
        assert_eq!(
            p.recipients(),
            vec![
                &Addressee::Send("jo@home.example".into()),
                &Addressee::Unsafe("sam@away.example".into()),
                &Addressee::Send("pat@school.example".into()),
            ]
        );
        let templates: Vec<&str> = p.messages.iter().map(|m| m.template).collect();
        assert_eq!(
            templates,
            [
                LEAD_ASSIGNED_FAMILY,
                LEAD_ASSIGNED_FAMILY,
                LEAD_ASSIGNED_REFERRER
            ]
        );
        assert_eq!(p.messages[0].person_id.as_deref(), Some("p-Jo"));
        assert_eq!(p.messages[2].person_id, None);
        let unsafe_: Vec<&str> = p.unsafe_addresses.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(unsafe_, ["sam@away.example"]);
        let people: Vec<&str> = p.unsafe_people.iter().map(|(x, _)| x.as_str()).collect();
        assert_eq!(people, ["p-Sam"]);
        for m in &p.messages {
            super::super::test_support::assert_vars_match(m);
            assert_eq!(m.vars["first_contact_by"], "9 March 2026");
            assert_eq!(m.vars["service_name"], "Family Support North");
        }
    }

    #[test]
    fn the_family_email_names_nobody_and_says_by_when() {
        let p = plan(
            "Test Council",
            &assigned(
                vec![contact(
                    "Jo Bloggs",
                    "jo@home.example",
                    true,
                    true,
                    "mother",
                )],
                None,
            ),
        )
        .unwrap();
        assert_eq!(p.messages.len(), 1, "no referrer address: nothing for them");
        let (subject, body) = templates::builtin(LEAD_ASSIGNED_FAMILY).unwrap();
        let text = format!(
            "{}\n{}",
            render(subject, &p.messages[0].vars).unwrap(),
            render(&body, &p.messages[0].vars).unwrap()
        );
        assert!(text.contains("Family Support North"), "{text}");
        assert!(text.contains("by 9 March 2026"), "{text}");
        assert!(text.contains("case-1"), "{text}");
        for never in ["Jo", "Bloggs", "lead-7"] {
            assert!(!text.contains(never), "{never} in {text}");
        }
    }

    #[test]
    fn nobody_to_tell_is_on_record() {
        let p = plan(
            "C",
            &assigned(vec![contact("Jo", "", true, true, "mother")], None),
        )
        .unwrap();
        assert!(matches!(&p.messages[0].to, Addressee::Nobody(_)));
        let unsafe_referrer = plan(
            "C",
            &assigned(
                vec![],
                Some(contact("Pat", "pat@x.example", false, false, "referrer")),
            ),
        )
        .unwrap();
        assert_eq!(
            unsafe_referrer.recipients()[1],
            &Addressee::Unsafe("pat@x.example".into())
        );
    }

    #[test]
    fn an_event_without_its_case_is_refused() {
        let mut ev = assigned(vec![], None);
        ev.case = None;
        assert!(matches!(plan("C", &ev), Err(HandlerError::Permanent(_))));
    }
}
