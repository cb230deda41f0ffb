//! Assessment's events: an overdue plan action reminds its owner (a practitioner at the work
//! mailbox the plan names; the family's own actions through the lead's mailbox; the council's
//! Early Help team manager when the plan names none); six months after a closure with every
//! outcome met, the lead (or the team manager) is asked whether the outcomes were sustained; and
//! when the answer is that the family needs help again, the council's front door is told. Case and
//! action ids and dates only: never what the action is, nor anything of the family.
use super::{Notifier, Outgoing, Plan, Recording, council, decode, mailbox};
use crate::domain::{self, Addressee};
use crate::templates::{ACTION_OVERDUE, FOLLOW_UP_DUE, FOLLOW_UP_FRONT_DOOR};
use crate::{CONSUMER_ACTION_OVERDUE, CONSUMER_FOLLOW_UP_DUE, CONSUMER_FOLLOW_UP_RECORDED};
use eh_bus::Received;
use eh_bus::consumer::{HandlerError, Pending};
use eh_proto::assessment::v1::{ActionOverdue, FollowUpDue, FollowUpRecorded};

/// The named mailbox, else the team manager's, else nobody (with why).
fn named_or_manager(tenant: &str, named: &str, manager: Option<String>, what: &str) -> Addressee {
    match mailbox(Some(&named.to_string())).or(manager) {
        Some(a) => Addressee::Send(a),
        None => Addressee::Nobody(format!(
            "no mailbox was named for {what} and tenant {tenant} has no \
             contacts.team_manager_email configured: nobody was told by email"
        )),
    }
}

/// The overdue action's reminder: one per action and due date.
pub fn overdue_plan(
    tenant: &str,
    council: &str,
    manager: Option<String>,
    ev: &ActionOverdue,
) -> Plan {
    let to = named_or_manager(tenant, &ev.remind_email, manager, "the overdue action");
    let mut m = Outgoing::new(ACTION_OVERDUE, to, &ev.case_id);
    m.dedupe_key = format!("{}@{}", ev.action_id, ev.due_date);
    let whose = if ev.owner_kind == "family" {
        "the family agreed to take on"
    } else {
        "assigned to you"
    };
    m.vars = [
        ("council", council.to_string()),
        ("case_id", ev.case_id.clone()),
        ("action_id", ev.action_id.clone()),
        ("due_date", domain::day(&ev.due_date)),
        ("whose", whose.to_string()),
    ]
    .into_iter()
    .collect();
    Plan {
        messages: vec![m],
        ..Plan::default()
    }
}

/// The follow-up question to the lead: one per case.
pub fn follow_up_plan(
    tenant: &str,
    council: &str,
    manager: Option<String>,
    ev: &FollowUpDue,
) -> Plan {
    let to = named_or_manager(tenant, &ev.remind_email, manager, "the follow-up check");
    let mut m = Outgoing::new(FOLLOW_UP_DUE, to, &ev.case_id);
    m.dedupe_key = "follow_up".into();
    m.vars = [
        ("council", council.to_string()),
        ("case_id", ev.case_id.clone()),
        ("closed_date", domain::day_and_time(&ev.closed_at)),
    ]
    .into_iter()
    .collect();
    Plan {
        messages: vec![m],
        ..Plan::default()
    }
}

/// The front door is told when the family needs help again; otherwise nothing is sent.
pub fn needs_help_plan(
    tenant: &str,
    council: &str,
    front_door: Option<String>,
    ev: &FollowUpRecorded,
) -> Plan {
    if !ev.needs_help_again {
        return Plan::default();
    }
    let to = match front_door {
        Some(a) => Addressee::Send(a),
        None => Addressee::Nobody(format!(
            "tenant {tenant} has no contacts.front_door_email configured: the front door was NOT \
             told by email that the family of case {} needs help again",
            ev.case_id
        )),
    };
    let mut m = Outgoing::new(FOLLOW_UP_FRONT_DOOR, to, &ev.case_id);
    m.dedupe_key = "needs_help_again".into();
    m.vars = [
        ("council", council.to_string()),
        ("case_id", ev.case_id.clone()),
        ("answered_date", domain::day_and_time(&ev.at)),
    ]
    .into_iter()
    .collect();
    Plan {
        messages: vec![m],
        ..Plan::default()
    }
}

pub struct ActionOverdueHandler(pub Notifier);
pub struct FollowUpDueHandler(pub Notifier);
pub struct FollowUpRecordedHandler(pub Notifier);

eh_bus::admitted_in_order!(ActionOverdueHandler);
eh_bus::admitted_in_order!(FollowUpDueHandler);
eh_bus::admitted_in_order!(FollowUpRecordedHandler);

impl ActionOverdueHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let (tenant, ev) = decode::<ActionOverdue>(&self.0.ctx, msg, "ActionOverdue")?;
        let settings = self.0.settings.council(&tenant);
        let manager = mailbox(settings.and_then(|t| t.contacts.team_manager_email.as_ref()));
        let plan = overdue_plan(&tenant, &council(&tenant, settings), manager, &ev);
        Ok(self.0.admit(
            CONSUMER_ACTION_OVERDUE,
            msg,
            &tenant,
            &plan,
            Recording::default(),
        ))
    }
}

impl FollowUpDueHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let (tenant, ev) = decode::<FollowUpDue>(&self.0.ctx, msg, "FollowUpDue")?;
        let settings = self.0.settings.council(&tenant);
        let manager = mailbox(settings.and_then(|t| t.contacts.team_manager_email.as_ref()));
        let plan = follow_up_plan(&tenant, &council(&tenant, settings), manager, &ev);
        Ok(self.0.admit(
            CONSUMER_FOLLOW_UP_DUE,
            msg,
            &tenant,
            &plan,
            Recording::default(),
        ))
    }
}

impl FollowUpRecordedHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let (tenant, ev) = decode::<FollowUpRecorded>(&self.0.ctx, msg, "FollowUpRecorded")?;
        let settings = self.0.settings.council(&tenant);
        let front_door = mailbox(settings.and_then(|t| t.contacts.front_door_email.as_ref()));
        let plan = needs_help_plan(&tenant, &council(&tenant, settings), front_door, &ev);
        Ok(self.0.admit(
            CONSUMER_FOLLOW_UP_RECORDED,
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

    fn overdue(kind: &str, email: &str) -> ActionOverdue {
        ActionOverdue {
            action_id: "act-1".into(),
            case_id: "case-1".into(),
            owner_kind: kind.into(),
            remind_email: email.into(),
            due_date: "2026-12-10".into(),
            at: "2026-12-11T00:00:05Z".into(),
        }
    }

    #[test]
    fn an_overdue_action_reminds_the_named_mailbox_once_per_due_date() {
        let p = overdue_plan(
            "worcs",
            "C",
            Some("tm@c.example".into()),
            &overdue("practitioner", "nurse@nhs.example"),
        );
        let m = &p.messages[0];
        super::super::test_support::assert_vars_match(m);
        assert_eq!(m.to, Addressee::Send("nurse@nhs.example".into()));
        assert_eq!(m.dedupe_key, "act-1@2026-12-10");
        assert_eq!(m.vars["whose"], "assigned to you");
        let fam = overdue_plan(
            "worcs",
            "C",
            Some("tm@c.example".into()),
            &overdue("family", ""),
        );
        assert_eq!(
            fam.messages[0].to,
            Addressee::Send("tm@c.example".into()),
            "no lead mailbox: the manager"
        );
        assert_eq!(
            fam.messages[0].vars["whose"],
            "the family agreed to take on"
        );
        let none = overdue_plan("worcs", "C", None, &overdue("family", " "));
        assert!(
            matches!(&none.messages[0].to, Addressee::Nobody(why) if why.contains("team_manager_email"))
        );
    }

    #[test]
    fn the_follow_up_asks_the_lead_and_needing_help_again_tells_the_front_door() {
        let due = FollowUpDue {
            case_id: "case-1".into(),
            closed_at: "2026-06-04T10:00:00Z".into(),
            remind_email: "lead@fsn.example".into(),
            ..Default::default()
        };
        let p = follow_up_plan("worcs", "C", None, &due);
        super::super::test_support::assert_vars_match(&p.messages[0]);
        assert_eq!(p.messages[0].to, Addressee::Send("lead@fsn.example".into()));
        let mut answer = FollowUpRecorded {
            case_id: "case-1".into(),
            sustained: true,
            needs_help_again: false,
            at: "2026-12-04T10:00:00Z".into(),
            ..Default::default()
        };
        assert!(
            needs_help_plan("worcs", "C", Some("fd@c.example".into()), &answer)
                .messages
                .is_empty()
        );
        answer.needs_help_again = true;
        let p = needs_help_plan("worcs", "C", Some("fd@c.example".into()), &answer);
        super::super::test_support::assert_vars_match(&p.messages[0]);
        assert_eq!(p.messages[0].to, Addressee::Send("fd@c.example".into()));
    }
}
