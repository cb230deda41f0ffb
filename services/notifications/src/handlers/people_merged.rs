//! `people_merged`: a practitioner confirmed that two person records are one person. When intake
//! says the person is unsafe to contact (either record was), both ids join the person suppression
//! list, so every address held for either record is withheld at the point of send — a consent
//! request queued for the other id included. Nothing is sent; nothing is ever taken off the list.
use super::{Notifier, Plan, Recording, decode};
use crate::CONSUMER_PEOPLE_MERGED;
use eh_bus::Received;
use eh_bus::consumer::{HandlerError, Pending};
use eh_proto::intake::v1::PeopleMerged;

pub struct PeopleMergedHandler(pub Notifier);

/// The person ids to suppress (ids only in the reason).
pub fn plan(ev: &PeopleMerged) -> Plan {
    let mut plan = Plan::default();
    if !ev.unsafe_to_contact {
        return plan;
    }
    let why = format!(
        "person {} unsafe to contact (merged with {} by match candidate {})",
        ev.person_id, ev.merged_person_id, ev.candidate_id
    );
    for person in [&ev.person_id, &ev.merged_person_id] {
        if !person.trim().is_empty() {
            plan.unsafe_people.push((person.clone(), why.clone()));
        }
    }
    plan
}

eh_bus::admitted_in_order!(PeopleMergedHandler);

impl PeopleMergedHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let (tenant, ev) = decode::<PeopleMerged>(&self.0.ctx, msg, "PeopleMerged")?;
        Ok(self.0.admit(
            CONSUMER_PEOPLE_MERGED,
            msg,
            &tenant,
            &plan(&ev),
            Recording::default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsafe_person_is_suppressed_under_both_ids_and_a_safe_one_not_at_all() {
        let ev = PeopleMerged {
            person_id: "p-held".into(),
            merged_person_id: "p-new".into(),
            unsafe_to_contact: true,
            candidate_id: "mc-1".into(),
            ..Default::default()
        };
        let p = plan(&ev);
        let ids: Vec<&str> = p.unsafe_people.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(ids, ["p-held", "p-new"]);
        assert!(p.unsafe_people[0].1.contains("mc-1"));
        assert!(p.messages.is_empty());
        let safe = plan(&PeopleMerged {
            unsafe_to_contact: false,
            ..ev
        });
        assert!(safe.unsafe_people.is_empty() && safe.messages.is_empty());
    }
}
