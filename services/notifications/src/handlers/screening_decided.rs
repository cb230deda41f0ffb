//! `screening_decided`: the referrer is told the outcome — accepted for Early Help, advice and
//! signposting (with the advice), or more information needed (what is missing, in plain words).
//! The screening reasons are not sent: they name children. A step-up is told by
//! `case_stepped_up` instead, and a referrer without an email address hears through the system
//! that referred (case events), so neither records a message here.
use super::{Notifier, Outgoing, Plan, Recording, council, decode};
use crate::CONSUMER_SCREENING_DECIDED;
use crate::domain::{self, Addressee, outcome};
use crate::templates::{self, SCREENING_OUTCOME};
use eh_bus::Received;
use eh_bus::consumer::{HandlerError, Pending};
use eh_proto::intake::v1::ScreeningDecided;

pub struct ScreeningDecidedHandler(pub Notifier);

/// The message screening's decision calls for.
pub fn plan(council: &str, ev: &ScreeningDecided) -> Result<Plan, HandlerError> {
    let mut plan = Plan::default();
    match ev.outcome.as_str() {
        outcome::ACCEPTED | outcome::ADVICE | outcome::MORE_INFORMATION => {}
        outcome::STEP_UP => return Ok(plan),
        other => {
            return Err(HandlerError::Permanent(format!(
                "unknown screening outcome {other:?}"
            )));
        }
    }
    let referrer = ev.referrer.clone().unwrap_or_default();
    let Some(email) = referrer
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    else {
        return Ok(plan);
    };
    let advice = if ev.advice.trim().is_empty() {
        "The front door will contact you about other support that may help.".to_string()
    } else {
        ev.advice.trim().to_string()
    };
    let missing = if ev.missing.is_empty() {
        "- the details the front door asks you for when it contacts you".to_string()
    } else {
        domain::missing_list(&ev.missing)
    };
    let mut m = Outgoing::new(
        SCREENING_OUTCOME,
        Addressee::Send(email.to_string()),
        &ev.referral_id,
    );
    m.text = vec![
        templates::screening_variant(&ev.outcome),
        SCREENING_OUTCOME.into(),
    ];
    m.dedupe_key = format!("{}@{}", ev.outcome, ev.decided_at);
    let applies = |o: &str, text: String| if ev.outcome == o { text } else { String::new() };
    m.vars = [
        ("council", council.to_string()),
        ("referrer_name", referrer.name.clone()),
        ("reference", ev.source_reference.clone()),
        ("source_system", ev.source_system.clone()),
        ("referral_id", ev.referral_id.clone()),
        ("case_id", ev.case_id.clone()),
        ("outcome", domain::outcome_words(&ev.outcome)),
        ("advice", applies(outcome::ADVICE, advice)),
        ("missing", applies(outcome::MORE_INFORMATION, missing)),
        ("decided_date", domain::day(&ev.decided_at)),
    ]
    .into_iter()
    .collect();
    plan.messages.push(m);
    Ok(plan)
}

eh_bus::admitted_in_order!(ScreeningDecidedHandler);

impl ScreeningDecidedHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let (tenant, ev) = decode::<ScreeningDecided>(&self.0.ctx, msg, "ScreeningDecided")?;
        let settings = self.0.settings.council(&tenant);
        let plan = plan(&council(&tenant, settings), &ev)?;
        if plan.messages.is_empty() {
            tracing::info!(
                tenant,
                referral_id = %ev.referral_id,
                outcome = %ev.outcome,
                "screening outcome: no email to send (step-up, or no referrer email address)"
            );
        }
        Ok(self.0.admit(
            CONSUMER_SCREENING_DECIDED,
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
    use crate::templates::render;
    use eh_proto::intake::v1::Referrer;

    fn decided(outcome: &str) -> ScreeningDecided {
        ScreeningDecided {
            case_id: "case-1".into(),
            referral_id: "ref-1".into(),
            outcome: outcome.into(),
            reasons: vec!["age: child 1 (Leo) is 7; in range 0-18".into()],
            advice: "Try the family hub.".into(),
            missing: vec!["/children/0/date_of_birth".into(), "/needs".into()],
            decided_at: "2026-03-03T10:00:00Z".into(),
            referrer: Some(Referrer {
                name: "Pat Teacher".into(),
                email: Some("pat@school.example".into()),
                ..Default::default()
            }),
            source_system: "hub".into(),
            source_reference: "R-1".into(),
            ..Default::default()
        }
    }

    fn body(outcome: &str) -> String {
        let plan = plan("Council", &decided(outcome)).unwrap();
        let m = &plan.messages[0];
        super::super::test_support::assert_vars_match(m);
        let names: Vec<&str> = m.text.iter().map(String::as_str).collect();
        let (_, b) = templates::lookup_first(None, &names).unwrap();
        render(&b, &m.vars).unwrap()
    }

    #[test]
    fn each_outcome_says_what_it_means_and_never_the_reasons() {
        let accepted = body(outcome::ACCEPTED);
        assert!(
            accepted.contains("accepted it for Early Help"),
            "{accepted}"
        );
        let advice = body(outcome::ADVICE);
        assert!(advice.contains("Try the family hub."), "{advice}");
        let more = body(outcome::MORE_INFORMATION);
        assert!(
            more.contains("- the date of birth of the first child in your request"),
            "{more}"
        );
        assert!(more.contains("- what help the family needs"), "{more}");
        for b in [accepted, advice, more] {
            assert!(!b.contains("Leo") && !b.contains("in range"), "{b}");
            assert!(b.contains("ref-1") && b.contains("R-1"), "{b}");
        }
    }

    #[test]
    fn a_step_up_or_a_referrer_without_email_sends_nothing_and_unknown_outcomes_are_refused() {
        assert!(
            plan("C", &decided(outcome::STEP_UP))
                .unwrap()
                .messages
                .is_empty()
        );
        let mut ev = decided(outcome::ACCEPTED);
        ev.referrer.as_mut().unwrap().email = Some(" ".into());
        assert!(plan("C", &ev).unwrap().messages.is_empty());
        assert!(matches!(
            plan("C", &decided("maybe")),
            Err(HandlerError::Permanent(_))
        ));
    }
}
