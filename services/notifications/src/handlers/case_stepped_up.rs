//! `case_stepped_up`: the council's front door is told at once — the message goes to the head of
//! the sender's queue — and the referrer is told where their request went. The front door's
//! email carries the case, the referral's reference and how to reach the referrer; never the
//! children's names or the concerns (the front door opens the case in the platform). The reason,
//! which a practitioner may have typed, is cleaned of the children's names notifications knows
//! from the family's referrals.
//!
//! A council with no front-door mailbox configured gets an `undeliverable` message on record and
//! a warning in the log: the step-up is never dropped silently.
use super::{Notifier, Outgoing, Plan, council, decode, mailbox, retry};
use crate::CONSUMER_CASE_STEPPED_UP;
use crate::domain::{self, Addressee};
use crate::store::{self, ReferrerContact};
use crate::templates::{STEP_UP_FRONT_DOOR, STEP_UP_REFERRER};
use async_trait::async_trait;
use eh_bus::Received;
use eh_bus::consumer::{Handled, HandlerError};
use eh_proto::casework::v1::CaseSteppedUp;
use std::collections::BTreeSet;

pub struct CaseSteppedUpHandler(pub Notifier);

/// What notifications knows besides the event.
pub struct Known<'a> {
    pub tenant: &'a str,
    pub council: &'a str,
    /// `contacts.front_door_email`.
    pub front_door: Option<String>,
    /// The referrer as `referral_received` gave them, when it has been seen.
    pub referrer: Option<ReferrerContact>,
    /// Hashes of the family's children's names.
    pub child_names: &'a BTreeSet<String>,
}

fn or_else(value: &str, fallback: Option<&str>, none: &str) -> String {
    [Some(value), fallback]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|v| !v.is_empty())
        .unwrap_or(none)
        .to_string()
}

/// The front door's message (first, urgent) and the referrer's.
pub fn plan(ev: &CaseSteppedUp, known: &Known<'_>) -> Result<Plan, HandlerError> {
    let case = ev
        .case
        .as_ref()
        .ok_or_else(|| HandlerError::Permanent("CaseSteppedUp without its case".into()))?;
    let referrer = case.referrer.clone().unwrap_or_default();
    let seen = known.referrer.as_ref();
    let mut plan = Plan::default();

    let to = match &known.front_door {
        Some(a) => Addressee::Send(a.clone()),
        None => Addressee::Nobody(format!(
            "tenant {} has no contacts.front_door_email configured: the front door was NOT told \
             of this step-up by email",
            known.tenant
        )),
    };
    let mut door = Outgoing::new(STEP_UP_FRONT_DOOR, to, &case.case_id);
    door.priority = store::PRIORITY_URGENT;
    door.dedupe_key = ev.at.clone();
    let reason = domain::redact_names(ev.reason.trim(), known.tenant, known.child_names);
    door.vars = [
        ("council", known.council.to_string()),
        ("case_id", case.case_id.clone()),
        ("referral_id", case.referral_id.clone()),
        ("source_system", case.source_system.clone()),
        ("reference", case.source_reference.clone()),
        ("reason", or_else(&reason, None, "not given")),
        (
            "significant_harm",
            if ev.significant_harm_risk {
                "yes"
            } else {
                "no"
            }
            .to_string(),
        ),
        ("stepped_up_at", domain::day_and_time(&ev.at)),
        (
            "referrer_name",
            or_else(&referrer.name, seen.map(|r| r.name.as_str()), "not given"),
        ),
        (
            "referrer_agency",
            or_else(
                &case.referrer_agency,
                seen.map(|r| r.agency.as_str()),
                "not given",
            ),
        ),
        (
            "referrer_phone",
            match seen {
                Some(r) => or_else(r.phone.as_deref().unwrap_or(""), None, "not given"),
                None => "not known yet: see the referral in the platform".to_string(),
            },
        ),
        (
            "referrer_email",
            or_else(
                &referrer.email,
                seen.and_then(|r| r.email.as_deref()),
                "not given",
            ),
        ),
    ]
    .into_iter()
    .collect();
    plan.messages.push(door);

    if let Some(to) = domain::contact_addressee(&referrer) {
        let mut m = Outgoing::new(STEP_UP_REFERRER, to, &case.case_id);
        m.dedupe_key = ev.at.clone();
        m.vars = [
            ("council", known.council.to_string()),
            (
                "referrer_name",
                or_else(&referrer.name, seen.map(|r| r.name.as_str()), "colleague"),
            ),
            ("reference", case.source_reference.clone()),
            ("source_system", case.source_system.clone()),
            ("referral_id", case.referral_id.clone()),
            ("case_id", case.case_id.clone()),
            ("stepped_up_date", domain::day(&ev.at)),
        ]
        .into_iter()
        .collect();
        plan.messages.push(m);
    }
    Ok(plan)
}

#[async_trait]
impl eh_bus::Handler for CaseSteppedUpHandler {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError> {
        let ctx = &self.0.ctx;
        let (tenant, ev) = decode::<CaseSteppedUp>(ctx, msg, "CaseSteppedUp")?;
        let case = ev.case.clone().unwrap_or_default();
        let settings = self.0.settings.council(&tenant);
        let reader = ctx.readers.of(&tenant).await.map_err(retry)?;
        let referrer = store::referrer_of(&reader, &tenant, &case.referral_id)
            .await
            .map_err(retry)?;
        let mut scopes = vec![store::referral_scope(&case.referral_id)];
        if !case.family_id.is_empty() {
            scopes.push(store::family_scope(&case.family_id));
        }
        let child_names = store::child_name_tokens(&reader, &tenant, &scopes)
            .await
            .map_err(retry)?;
        let council = council(&tenant, settings);
        let known = Known {
            tenant: &tenant,
            council: &council,
            front_door: mailbox(settings.and_then(|t| t.contacts.front_door_email.as_ref())),
            referrer,
            child_names: &child_names,
        };
        let plan = plan(&ev, &known)?;
        let handled = self
            .0
            .apply(CONSUMER_CASE_STEPPED_UP, msg, &tenant, &plan)
            .await?;
        if handled == Handled::Done {
            tracing::info!(tenant, case_id = %case.case_id, "step-up: front door message recorded");
        }
        Ok(handled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::templates::{self, render};
    use eh_proto::casework::v1::{CaseRef, Contact};

    fn stepped_up(reason: &str) -> CaseSteppedUp {
        CaseSteppedUp {
            case: Some(CaseRef {
                case_id: "case-1".into(),
                family_id: "fam-1".into(),
                referral_id: "ref-1".into(),
                source_system: "hub".into(),
                source_reference: "R-1".into(),
                route: "upstream_event".into(),
                referrer: Some(Contact {
                    name: "Pat Teacher".into(),
                    email: "pat@school.example".into(),
                    safe_to_contact: true,
                    relationship: "referrer".into(),
                    parental_responsibility: false,
                    person_id: String::new(),
                }),
                referrer_agency: "Worcester Primary".into(),
            }),
            reason: reason.into(),
            significant_harm_risk: true,
            at: "2026-03-02T09:00:00Z".into(),
        }
    }

    fn rendered(m: &Outgoing) -> String {
        let (s, b) = templates::lookup(None, m.template).unwrap();
        format!(
            "{}\n{}",
            render(&s, &m.vars).unwrap(),
            render(&b, &m.vars).unwrap()
        )
    }

    #[test]
    fn the_front_door_is_told_first_and_urgently_without_the_childs_name() {
        let names = domain::name_hashes("worcs", ["Leo", "Smith"]);
        let known = Known {
            tenant: "worcs",
            council: "Worcs",
            front_door: Some("front@worcs.example".into()),
            referrer: Some(ReferrerContact {
                name: "Pat Teacher".into(),
                agency: "Worcester Primary".into(),
                phone: Some("01905 000000".into()),
                email: None,
            }),
            child_names: &names,
        };
        let plan = plan(&stepped_up("Leo Smith disclosed a injury"), &known).unwrap();
        assert_eq!(
            plan.recipients(),
            vec![
                &Addressee::Send("front@worcs.example".into()),
                &Addressee::Send("pat@school.example".into())
            ]
        );
        let door = &plan.messages[0];
        assert_eq!(door.priority, store::PRIORITY_URGENT);
        super::super::test_support::assert_vars_match(door);
        super::super::test_support::assert_vars_match(&plan.messages[1]);
        let text = rendered(door);
        for part in [
            "case-1",
            "hub R-1",
            "Pat Teacher",
            "Worcester Primary",
            "01905 000000",
            "[name removed] [name removed] disclosed",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert!(!text.contains("Leo") && !text.contains("Smith"), "{text}");
    }

    #[test]
    fn without_a_front_door_mailbox_the_message_is_undeliverable_not_dropped() {
        let names = BTreeSet::new();
        let known = Known {
            tenant: "worcs",
            council: "Worcs",
            front_door: None,
            referrer: None,
            child_names: &names,
        };
        let plan = plan(&stepped_up("risk"), &known).unwrap();
        assert!(
            matches!(&plan.messages[0].to, Addressee::Nobody(why) if why.contains("front_door_email"))
        );
        assert!(plan.messages[0].vars["referrer_phone"].contains("not known yet"));
    }
}
