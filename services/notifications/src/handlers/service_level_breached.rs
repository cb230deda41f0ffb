//! `service_level_breached`: a service-level clock of a case ran out; the council's Early Help
//! team manager (`contacts.team_manager_email`) is told which case, which clock, when it was due
//! and where the case stands. A council with no manager mailbox configured gets an
//! `undeliverable` message on record and a warning in the log.
use super::{Notifier, Outgoing, Plan, Recording, council, decode, mailbox};
use crate::CONSUMER_SERVICE_LEVEL_BREACHED;
use crate::domain::{self, Addressee};
use crate::templates::SERVICE_LEVEL_BREACH;
use eh_bus::Received;
use eh_bus::consumer::{HandlerError, Pending};
use eh_proto::casework::v1::ServiceLevelBreached;

pub struct ServiceLevelBreachedHandler(pub Notifier);

/// The manager's message; one per clock and due time of a case.
pub fn plan(
    tenant: &str,
    council: &str,
    manager: Option<String>,
    ev: &ServiceLevelBreached,
) -> Result<Plan, HandlerError> {
    let case = ev
        .case
        .as_ref()
        .ok_or_else(|| HandlerError::Permanent("ServiceLevelBreached without its case".into()))?;
    let to = match manager {
        Some(a) => Addressee::Send(a),
        None => Addressee::Nobody(format!(
            "tenant {tenant} has no contacts.team_manager_email configured: the team manager was \
             NOT told of this breach by email"
        )),
    };
    let mut m = Outgoing::new(SERVICE_LEVEL_BREACH, to, &case.case_id);
    m.dedupe_key = format!("{}@{}", ev.clock, ev.due_at);
    m.vars = [
        ("council", council.to_string()),
        ("case_id", case.case_id.clone()),
        ("referral_id", case.referral_id.clone()),
        ("source_system", case.source_system.clone()),
        ("reference", case.source_reference.clone()),
        ("clock", ev.clock.clone()),
        ("clock_words", domain::clock_words(&ev.clock)),
        ("due_at", domain::day_and_time(&ev.due_at)),
        ("state", ev.state.clone()),
        ("state_words", domain::state_words(&ev.state)),
        ("breached_at", domain::day_and_time(&ev.at)),
    ]
    .into_iter()
    .collect();
    Ok(Plan {
        messages: vec![m],
        ..Default::default()
    })
}

eh_bus::admitted_in_order!(ServiceLevelBreachedHandler);

impl ServiceLevelBreachedHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let (tenant, ev) =
            decode::<ServiceLevelBreached>(&self.0.ctx, msg, "ServiceLevelBreached")?;
        let settings = self.0.settings.council(&tenant);
        let manager = mailbox(settings.and_then(|t| t.contacts.team_manager_email.as_ref()));
        let plan = plan(&tenant, &council(&tenant, settings), manager, &ev)?;
        Ok(self.0.admit(
            CONSUMER_SERVICE_LEVEL_BREACHED,
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
    use eh_proto::casework::v1::CaseRef;

    fn breached(clock: &str) -> ServiceLevelBreached {
        ServiceLevelBreached {
            case: Some(CaseRef {
                case_id: "case-1".into(),
                ..Default::default()
            }),
            clock: clock.into(),
            due_at: "2026-03-03T09:00:00Z".into(),
            state: "screening".into(),
            at: "2026-03-03T09:00:05Z".into(),
        }
    }

    #[test]
    fn the_manager_is_told_once_per_clock() {
        let a = plan(
            "worcs",
            "C",
            Some("m@c.example".into()),
            &breached("screening_decision"),
        )
        .unwrap();
        let b = plan(
            "worcs",
            "C",
            Some("m@c.example".into()),
            &breached("consent_chase"),
        )
        .unwrap();
        super::super::test_support::assert_vars_match(&a.messages[0]);
        assert_ne!(a.messages[0].dedupe_key, b.messages[0].dedupe_key);
        assert_eq!(
            a.messages[0].vars["clock_words"],
            "front-door screening decision"
        );
    }

    #[test]
    fn without_a_manager_mailbox_the_message_is_undeliverable() {
        let p = plan("worcs", "C", None, &breached("screening_decision")).unwrap();
        assert!(
            matches!(&p.messages[0].to, Addressee::Nobody(why) if why.contains("team_manager_email"))
        );
    }
}
