//! `referral_received`: family members marked unsafe go on the person suppression list (by
//! intake's person id, so every address held for them is withheld, even one this referral does
//! not repeat) and their addresses on the address suppression list; every family member's
//! address is kept under their person id; the
//! referrer (when an email was given) gets an acknowledgement, and two read models are kept for
//! later messages about the case: the referrer's contact details (the front door wants the phone
//! number) and keyed hashes of the children's names (to clean free text of them).
use super::{Notifier, Outgoing, Plan, Recording, council, decode};
use crate::domain::{self, Addressee};
use crate::templates::REFERRAL_ACKNOWLEDGEMENT;
use crate::{CONSUMER_REFERRAL_RECEIVED, CONSUMER_REFERRAL_RECEIVED_URGENT, store};
use eh_bus::Received;
use eh_bus::consumer::{HandlerError, Pending};
use eh_proto::intake::v1::ReferralReceived;

pub struct ReferralReceivedHandler(pub Notifier);

/// The urgent lane's `referral_received.urgent`: the same recording, on a consumer of its own, so
/// a significant-harm referral's referrer details are held before its step-up is (the front
/// door's email carries them). Every row it writes is "first write wins", so when the referral's
/// ordinary `referral_received` comes, nothing is recorded twice.
pub struct UrgentReferralReceivedHandler(pub Notifier);

eh_bus::admitted_in_order!(UrgentReferralReceivedHandler);

impl UrgentReferralReceivedHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        admit(&self.0, CONSUMER_REFERRAL_RECEIVED_URGENT, msg)
    }
}

/// The acknowledgement and the unsafe addresses of one referral.
pub fn plan(council: &str, event: &ReferralReceived) -> Result<Plan, HandlerError> {
    let referral = event
        .referral
        .as_ref()
        .ok_or_else(|| HandlerError::Permanent("ReferralReceived without its referral".into()))?;
    let mut plan = Plan::default();
    // Intake's person ids, in the referral's order (`family_members[i]` is the person
    // `referral.family_members[i]` names); none when the counts disagree.
    let person = |i: usize| {
        (event.family_members.len() == referral.family_members.len())
            .then(|| event.family_members.get(i))
            .flatten()
            .map(|p| p.person_id.trim().to_string())
            .filter(|p| !p.is_empty())
    };
    for (i, m) in referral.family_members.iter().enumerate() {
        let email = m.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
        let person = person(i);
        if let (Some(p), Some(email)) = (&person, email) {
            plan.person_addresses.push((p.clone(), email.to_string()));
        }
        if m.safe_to_contact != Some(false) {
            continue;
        }
        if let Some(email) = email {
            plan.unsafe_addresses.push((
                email.to_string(),
                format!("unsafe to contact (referral {})", event.referral_id),
            ));
        }
        if let Some(p) = person {
            let why = format!(
                "person {p} unsafe to contact (referral {})",
                event.referral_id
            );
            plan.unsafe_people.push((p, why));
        }
    }
    let referrer = referral.referrer.clone().unwrap_or_default();
    if let Some(email) = referrer.email.as_deref().filter(|e| !e.trim().is_empty()) {
        let source = referral.source.clone().unwrap_or_default();
        let mut m = Outgoing::new(
            REFERRAL_ACKNOWLEDGEMENT,
            Addressee::Send(email.trim().to_string()),
            &event.referral_id,
        );
        m.vars = [
            ("council", council.to_string()),
            ("reference", source.reference),
            ("referrer_name", referrer.name.clone()),
            ("received_date", domain::day(&event.received_at)),
            ("referral_id", event.referral_id.clone()),
        ]
        .into_iter()
        .collect();
        plan.messages.push(m);
    }
    Ok(plan)
}

eh_bus::admitted_in_order!(ReferralReceivedHandler);

impl ReferralReceivedHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        admit(&self.0, CONSUMER_REFERRAL_RECEIVED, msg)
    }
}

/// Reads a `referral_received` (either lane's) and queues its recording for `consumer`'s batch.
fn admit(
    notifier: &Notifier,
    consumer: &'static str,
    msg: &Received,
) -> Result<Pending, HandlerError> {
    let ctx = &notifier.ctx;
    let (tenant, event) = decode::<ReferralReceived>(ctx, msg, "ReferralReceived")?;
    let settings = notifier.settings.council(&tenant);
    let plan = plan(&council(&tenant, settings), &event)?;
    let referral = event.referral.clone().unwrap_or_default();
    let referrer = referral.referrer.clone().unwrap_or_default();
    let names = referral
        .children
        .iter()
        .flat_map(|c| [c.given_name.as_str(), c.family_name.as_str()])
        .chain(
            event
                .children
                .iter()
                .flat_map(|c| [c.given_name.as_str(), c.family_name.as_str()]),
        );
    let hashes = domain::name_hashes(&tenant, names);
    let now = ctx.clock.now();
    let mut read_models = Recording::default();
    read_models.writes.referrer(
        &tenant,
        &event.referral_id,
        &store::ReferrerContact {
            name: referrer.name,
            agency: referrer.agency,
            phone: referrer.phone.filter(|p| !p.trim().is_empty()),
            email: referrer.email.filter(|e| !e.trim().is_empty()),
        },
        now,
    );
    let mut scopes = vec![store::referral_scope(&event.referral_id)];
    if !event.family_id.is_empty() {
        scopes.push(store::family_scope(&event.family_id));
    }
    for scope in &scopes {
        read_models
            .writes
            .child_name_tokens(&tenant, scope, &hashes);
    }
    Ok(notifier.admit(consumer, msg, &tenant, &plan, read_models))
}

#[cfg(test)]
mod tests {
    use super::*;
    use eh_proto::intake::v1::{Child, FamilyMember, PersonRef, Referral, Referrer, Source};

    #[test]
    fn acknowledges_the_referrer_and_lists_unsafe_family_addresses() {
        let event = ReferralReceived {
            referral_id: "ref-1".into(),
            received_at: "2026-03-02T09:00:00Z".into(),
            referral: Some(Referral {
                source: Some(Source {
                    system: "hub".into(),
                    reference: "R-1".into(),
                }),
                referrer: Some(Referrer {
                    name: "Pat Teacher".into(),
                    email: Some("pat@school.example".into()),
                    ..Default::default()
                }),
                children: vec![Child {
                    given_name: "Leo".into(),
                    ..Default::default()
                }],
                family_members: vec![
                    FamilyMember {
                        email: Some("dad@x.example".into()),
                        safe_to_contact: Some(false),
                        ..Default::default()
                    },
                    FamilyMember {
                        email: Some(" mum@x.example".into()),
                        ..Default::default()
                    },
                    FamilyMember {
                        safe_to_contact: Some(false),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            family_members: ["p-dad", "p-mum", "p-carer"]
                .iter()
                .map(|p| PersonRef {
                    person_id: (*p).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let plan = plan("Council", &event).unwrap();
        assert_eq!(
            plan.recipients(),
            vec![&Addressee::Send("pat@school.example".into())]
        );
        assert_eq!(plan.unsafe_addresses.len(), 1);
        assert_eq!(plan.unsafe_addresses[0].0, "dad@x.example");
        // Unsafe by person too, with or without an address; reasons carry ids only.
        let people: Vec<&str> = plan.unsafe_people.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(people, ["p-dad", "p-carer"]);
        assert_eq!(
            plan.unsafe_people[1].1,
            "person p-carer unsafe to contact (referral ref-1)"
        );
        assert_eq!(
            plan.person_addresses,
            [
                ("p-dad".to_string(), "dad@x.example".to_string()),
                ("p-mum".to_string(), "mum@x.example".to_string())
            ]
        );
        super::super::test_support::assert_vars_match(&plan.messages[0]);
        assert!(plan.messages[0].vars.values().all(|v| !v.contains("Leo")));
    }
}
