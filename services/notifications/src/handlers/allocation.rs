//! Allocation's events: the service a case is offered to is told at its offer mailbox (the
//! council's terms for it) that an offer waits for its answer and by when; the council's Early
//! Help team manager is told when a service declines a case or a practitioner declines to lead
//! one (reason codes only; the words stay in allocation). No family details: the offer is read,
//! as consent allows, in the platform.
use super::{Notifier, Outgoing, Plan, Recording, council, decode, mailbox};
use crate::domain::{self, Addressee};
use crate::templates::{ALLOCATION_DECLINED, OFFER_TO_PROVIDER};
use crate::{CONSUMER_LEAD_DECLINED, CONSUMER_OFFER_DECLINED, CONSUMER_OFFER_MADE};
use eh_bus::Received;
use eh_bus::consumer::{HandlerError, Pending};
use eh_proto::allocation::v1::{LeadPractitionerDeclined, OfferDeclined, OfferMade};

/// The offer's message to the service.
pub fn offer_plan(tenant: &str, council: &str, ev: &OfferMade) -> Plan {
    let to = match mailbox(Some(&ev.offer_email)) {
        Some(a) => Addressee::Send(a),
        None => Addressee::Nobody(format!(
            "service {} of tenant {tenant} has no offer_email in the council's terms: it was NOT \
             told of offer {} by email",
            ev.service_id, ev.offer_id
        )),
    };
    let mut m = Outgoing::new(OFFER_TO_PROVIDER, to, &ev.case_id);
    m.dedupe_key = ev.offer_id.clone();
    m.vars = [
        ("council", council.to_string()),
        ("case_id", ev.case_id.clone()),
        ("offer_id", ev.offer_id.clone()),
        ("service_name", ev.service_name.clone()),
        ("respond_by", domain::day_and_time(&ev.respond_by)),
        ("attempt", ev.attempt.to_string()),
    ]
    .into_iter()
    .collect();
    Plan {
        messages: vec![m],
        ..Plan::default()
    }
}

/// A decline's message to the team manager: `what` declined (`a service`, `a practitioner`).
fn declined_plan(
    tenant: &str,
    council: &str,
    manager: Option<String>,
    case_id: &str,
    key: &str,
    who: String,
    reason: &str,
) -> Plan {
    let to = match manager {
        Some(a) => Addressee::Send(a),
        None => Addressee::Nobody(format!(
            "tenant {tenant} has no contacts.team_manager_email configured: the team manager was \
             NOT told of this decline by email"
        )),
    };
    let mut m = Outgoing::new(ALLOCATION_DECLINED, to, case_id);
    m.dedupe_key = key.to_string();
    m.vars = [
        ("council", council.to_string()),
        ("case_id", case_id.to_string()),
        ("who", who),
        ("reason", reason.to_string()),
        ("reason_words", reason.replace('_', " ")),
    ]
    .into_iter()
    .collect();
    Plan {
        messages: vec![m],
        ..Plan::default()
    }
}

pub fn offer_declined_plan(
    tenant: &str,
    council: &str,
    manager: Option<String>,
    ev: &OfferDeclined,
) -> Plan {
    declined_plan(
        tenant,
        council,
        manager,
        &ev.case_id,
        &format!("offer:{}", ev.offer_id),
        format!("service {} declined the offer of the case", ev.service_id),
        &ev.reason,
    )
}

pub fn lead_declined_plan(
    tenant: &str,
    council: &str,
    manager: Option<String>,
    ev: &LeadPractitionerDeclined,
) -> Plan {
    declined_plan(
        tenant,
        council,
        manager,
        &ev.case_id,
        &format!("lead:{}", ev.request_id),
        format!(
            "practitioner {} (organisation {}) declined to lead the case",
            ev.practitioner, ev.organization_id
        ),
        &ev.reason,
    )
}

pub struct OfferMadeHandler(pub Notifier);
pub struct OfferDeclinedHandler(pub Notifier);
pub struct LeadDeclinedHandler(pub Notifier);

eh_bus::admitted_in_order!(OfferMadeHandler);
eh_bus::admitted_in_order!(OfferDeclinedHandler);
eh_bus::admitted_in_order!(LeadDeclinedHandler);

impl OfferMadeHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let (tenant, ev) = decode::<OfferMade>(&self.0.ctx, msg, "OfferMade")?;
        let settings = self.0.settings.council(&tenant);
        let plan = offer_plan(&tenant, &council(&tenant, settings), &ev);
        Ok(self.0.admit(
            CONSUMER_OFFER_MADE,
            msg,
            &tenant,
            &plan,
            Recording::default(),
        ))
    }
}

impl OfferDeclinedHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let (tenant, ev) = decode::<OfferDeclined>(&self.0.ctx, msg, "OfferDeclined")?;
        let settings = self.0.settings.council(&tenant);
        let manager = mailbox(settings.and_then(|t| t.contacts.team_manager_email.as_ref()));
        let plan = offer_declined_plan(&tenant, &council(&tenant, settings), manager, &ev);
        Ok(self.0.admit(
            CONSUMER_OFFER_DECLINED,
            msg,
            &tenant,
            &plan,
            Recording::default(),
        ))
    }
}

impl LeadDeclinedHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let (tenant, ev) =
            decode::<LeadPractitionerDeclined>(&self.0.ctx, msg, "LeadPractitionerDeclined")?;
        let settings = self.0.settings.council(&tenant);
        let manager = mailbox(settings.and_then(|t| t.contacts.team_manager_email.as_ref()));
        let plan = lead_declined_plan(&tenant, &council(&tenant, settings), manager, &ev);
        Ok(self.0.admit(
            CONSUMER_LEAD_DECLINED,
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

    fn made(email: &str) -> OfferMade {
        OfferMade {
            offer_id: "offer-1".into(),
            case_id: "case-1".into(),
            service_id: "svc-10".into(),
            service_name: "Family Support North".into(),
            offer_email: email.into(),
            respond_by: "2026-12-31T00:00:00Z".into(),
            attempt: 2,
            ..Default::default()
        }
    }

    #[test]
    fn the_service_is_offered_the_case_once_per_offer() {
        let p = offer_plan("worcs", "C", &made("offers@fsn.example"));
        let m = &p.messages[0];
        super::super::test_support::assert_vars_match(m);
        assert_eq!(m.to, Addressee::Send("offers@fsn.example".into()));
        assert_eq!(m.dedupe_key, "offer-1");
        assert_eq!(m.vars["attempt"], "2");
        let none = offer_plan("worcs", "C", &made("  "));
        assert!(
            matches!(&none.messages[0].to, Addressee::Nobody(why) if why.contains("offer_email"))
        );
    }

    #[test]
    fn the_manager_is_told_of_each_decline_with_its_reason_code() {
        let offer = offer_declined_plan(
            "worcs",
            "C",
            Some("m@c.example".into()),
            &OfferDeclined {
                offer_id: "offer-1".into(),
                case_id: "case-1".into(),
                service_id: "svc-10".into(),
                reason: "no_capacity".into(),
                at: String::new(),
            },
        );
        let lead = lead_declined_plan(
            "worcs",
            "C",
            Some("m@c.example".into()),
            &LeadPractitionerDeclined {
                request_id: "req-1".into(),
                case_id: "case-1".into(),
                practitioner: "worker-a".into(),
                organization_id: "org-4".into(),
                reason: "caseload_full".into(),
                ..Default::default()
            },
        );
        for p in [&offer, &lead] {
            super::super::test_support::assert_vars_match(&p.messages[0]);
        }
        assert_ne!(offer.messages[0].dedupe_key, lead.messages[0].dedupe_key);
        assert_eq!(lead.messages[0].vars["reason_words"], "caseload full");
        assert!(lead.messages[0].vars["who"].contains("worker-a"));
        let nobody = offer_declined_plan("worcs", "C", None, &OfferDeclined::default());
        assert!(matches!(&nobody.messages[0].to, Addressee::Nobody(_)));
    }
}
