//! What each thing that happens to a case does to it, with no I/O: a referral, consent recorded or
//! withdrawn, a screening decision, a clock running out, a practitioner's step. Each is a pure
//! function of (the case as loaded, the event, the instant, the council's rules) → [`Effects`]:
//! the new state, the timeline entries, the events and commands to publish, the clocks to start
//! and cancel, the alerts to raise.
//!
//! **The shape: load → decide → apply.** A handler (handlers.rs) 1. *loads*: claims the message
//! in the inbox, locks the family, reads what the decision needs (the case, whether the family
//! holds consent, a clock's due time); 2. *decides*: calls a function here — no database, no
//! clock read, no id generation: everything it depends on is an argument, so a table of cases
//! tests it (below); 3. *applies*: writes the effects in the same transaction as the claim, then
//! commits. A handler does not look at what it loaded to choose what to write; that choice is
//! made here. Orchestrating services follow the same shape (allocation, assessment: a `decide`
//! module beside `domain`, a handler that loads and applies).
//!
//! What stays with the handler is what only the database can answer at the moment of writing:
//! claims (the inbox entry; a referral's place on a case, `case_referrals`; a clock settled once
//! across replicas) — a claim already taken means the event was handled, and nothing is decided.
use crate::contacts;
use crate::domain::{self, IllegalTransition, Opening, State, TimerKind};
use crate::store::CaseRow;
use chrono::{DateTime, Utc};
use eh_proto::casework::v1 as pb;
use eh_proto::catalogue::{self, EventSpec};
use eh_proto::consent::v1::{ConsentRecorded, ConsentWithdrawn};
use eh_proto::intake::v1::{ReferAgain, ReferralReceived, ScreenReferral, ScreeningDecided};
use eh_workdays::WorkingCalendar;
use prost::Message;
use std::collections::BTreeMap;

/// The actor casework's own steps are recorded and published under.
pub const ACTOR: &str = "service:casework";

/// A council's service levels, in working days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLevels {
    /// A screening decision is due this long after screening starts; later is a breach.
    pub screening_decision_days: u32,
    /// Outstanding consent is chased after this long.
    pub consent_chase_days: u32,
    /// A case still without consent closes after this long.
    pub consent_close_days: u32,
    /// First contact with the family is due this long after the lead practitioner is named.
    pub first_contact_days: u32,
    /// The assessment is to be finalised this long after allocation.
    pub assessment_days: u32,
}

/// What casework's decisions need of a council's settings.
#[derive(Debug, Clone)]
pub struct CouncilRules {
    pub service_levels: ServiceLevels,
    /// The council's working days: its bank holidays and closure days.
    pub calendar: WorkingCalendar,
}

impl CouncilRules {
    /// When something due `days` working days after `from` is overdue (UK midnight ending the
    /// deadline day).
    fn overdue_from(&self, from: DateTime<Utc>, days: u32) -> Result<DateTime<Utc>, Refusal> {
        Ok(self.calendar.overdue_from(from, days)?)
    }
}

/// Every council's rules, by tenant id.
pub type Councils = BTreeMap<String, CouncilRules>;

/// Every council's rules, from the settings, checked: the one place casework reads its councils'
/// settings.
///
/// # Errors
/// Names the setting that is wrong (`tenants.<id>.calendar.closure_days`, `…service_levels…`).
pub fn council_rules(settings: &eh_platform::Settings) -> Result<Councils, String> {
    settings
        .tenants
        .iter()
        .map(|(id, t)| {
            let (calendar, levels) = crate::settings::council_settings(id, t)?;
            let service_levels = ServiceLevels {
                screening_decision_days: levels.screening_decision_days,
                consent_chase_days: levels.consent_chase_days,
                consent_close_days: levels.consent_close_days,
                first_contact_days: levels.first_contact_days,
                assessment_days: levels.assessment_days,
            };
            Ok((
                id.clone(),
                CouncilRules {
                    service_levels,
                    calendar,
                },
            ))
        })
        .collect()
}

/// Why a decision cannot be made; nothing is written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// A deadline outside the years the working-day calendar knows.
    #[error("working days: {0}")]
    Calendar(#[from] eh_workdays::Error),
    /// The case's council is not (or no longer) in the settings.
    #[error("unknown tenant {0:?}")]
    UnknownCouncil(String),
    #[error("{0}")]
    Invalid(String),
}

/// When a decision is made, under which council's rules (`None`: the council is not in the
/// settings — a decision that needs its rules is refused).
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    pub now: DateTime<Utc>,
    pub council: Option<&'a CouncilRules>,
}

impl At<'_> {
    fn rules(&self, tenant: &str) -> Result<&CouncilRules, Refusal> {
        self.council
            .ok_or_else(|| Refusal::UnknownCouncil(tenant.to_string()))
    }
}

/// One entry of the case's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub from: Option<State>,
    pub to: Option<State>,
    pub actor: String,
    pub reason: String,
}

/// An event or command to publish (through the outbox, in order).
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    StateChanged(pb::CaseStateChanged),
    /// The command asking intake to screen the referral.
    ScreenReferral(ScreenReferral),
    /// The command asking intake for a new request for support (the follow-up check found the
    /// family needs help again).
    ReferAgain(ReferAgain),
    ReadyForAllocation(pb::CaseReadyForAllocation),
    SteppedUp(pb::CaseSteppedUp),
    Closed(pb::CaseClosed),
    ServiceLevelBreached(pb::ServiceLevelBreached),
    ConsentRequested(pb::ConsentRequested),
    LeadAssigned(pb::LeadAssigned),
}

impl Outgoing {
    pub fn spec(&self) -> &'static EventSpec {
        match self {
            Outgoing::StateChanged(_) => &catalogue::CASE_STATE_CHANGED,
            Outgoing::ScreenReferral(_) => &catalogue::SCREEN_REFERRAL,
            Outgoing::ReferAgain(_) => &catalogue::REFER_AGAIN,
            Outgoing::ReadyForAllocation(_) => &catalogue::CASE_READY_FOR_ALLOCATION,
            Outgoing::SteppedUp(_) => &catalogue::CASE_STEPPED_UP,
            Outgoing::Closed(_) => &catalogue::CASE_CLOSED,
            Outgoing::ServiceLevelBreached(_) => &catalogue::SERVICE_LEVEL_BREACHED,
            Outgoing::ConsentRequested(_) => &catalogue::CONSENT_REQUESTED,
            Outgoing::LeadAssigned(_) => &catalogue::LEAD_ASSIGNED,
        }
    }

    pub fn payload(&self) -> Vec<u8> {
        match self {
            Outgoing::StateChanged(m) => m.encode_to_vec(),
            Outgoing::ScreenReferral(m) => m.encode_to_vec(),
            Outgoing::ReferAgain(m) => m.encode_to_vec(),
            Outgoing::ReadyForAllocation(m) => m.encode_to_vec(),
            Outgoing::SteppedUp(m) => m.encode_to_vec(),
            Outgoing::Closed(m) => m.encode_to_vec(),
            Outgoing::ServiceLevelBreached(m) => m.encode_to_vec(),
            Outgoing::ConsentRequested(m) => m.encode_to_vec(),
            Outgoing::LeadAssigned(m) => m.encode_to_vec(),
        }
    }
}

/// Something operators are told besides the bus (a metric today).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// `clock`: a casework clock's name ([`TimerKind::as_str`]) or another service's
    /// (`waiting_list`, allocation's).
    ServiceLevelBreached { tenant: String, clock: &'static str },
}

/// What a decision does to one case; applied in one transaction, in this order (the timeline
/// and the outbox keep the order of their lists).
#[derive(Debug, Clone, PartialEq)]
pub struct Effects {
    /// The case as the decision leaves it.
    pub case: CaseRow,
    /// The instant of the decision: the timeline's, the clocks' and the events' time.
    pub at: DateTime<Utc>,
    /// Who the published messages come from (their envelope's actor).
    pub actor: String,
    /// The programmes the case meets, to store.
    pub programmes: Option<Vec<String>>,
    /// The state to store (the case's, with `at` as its update time) when it changes.
    pub new_state: Option<State>,
    /// The case's family contacts changed (a further referral): store them.
    pub contacts_changed: bool,
    pub timeline: Vec<Entry>,
    /// Pending clocks of these kinds are cancelled.
    pub cancel_timers: Vec<TimerKind>,
    /// Clocks started (at most one per case and kind: one already there is kept).
    pub set_timers: Vec<(TimerKind, DateTime<Utc>)>,
    /// The lead practitioner named.
    pub lead: Option<crate::store::Lead>,
    pub publish: Vec<Outgoing>,
    pub alerts: Vec<Alert>,
}

impl Effects {
    fn new(case: CaseRow, actor: &str, at: DateTime<Utc>) -> Self {
        Effects {
            case,
            at,
            actor: actor.to_string(),
            programmes: None,
            new_state: None,
            contacts_changed: false,
            timeline: vec![],
            cancel_timers: vec![],
            set_timers: vec![],
            lead: None,
            publish: vec![],
            alerts: vec![],
        }
    }

    /// A timeline entry that changes nothing.
    fn note(&mut self, kind: &'static str, reason: impl Into<String>) {
        self.timeline.push(Entry {
            kind,
            from: None,
            to: None,
            actor: self.actor.clone(),
            reason: reason.into(),
        });
    }

    /// Moves the case to `to` (refused when the state machine forbids it), cancels the clocks of
    /// the state it leaves, and does what the new state means: starts its clocks, asks for
    /// screening, tells everyone.
    fn transition(
        &mut self,
        to: State,
        reason: &str,
        significant_harm: bool,
        at: &At<'_>,
    ) -> Result<(), Refusal> {
        let from = self.case.state;
        from.move_to(to)?;
        let now = at.now;
        self.case.state = to;
        self.case.updated_at = now;
        self.new_state = Some(to);
        self.timeline.push(Entry {
            kind: "transition",
            from: Some(from),
            to: Some(to),
            actor: self.actor.clone(),
            reason: reason.to_string(),
        });
        self.cancel_timers
            .extend(TimerKind::ALL.into_iter().filter(|k| !k.runs_in(to)));
        let case = Some(self.case.case_ref());
        let at_text = now.to_rfc3339();
        self.publish
            .push(Outgoing::StateChanged(pb::CaseStateChanged {
                case: case.clone(),
                from_state: from.as_str().into(),
                to_state: to.as_str().into(),
                reason: reason.into(),
                at: at_text.clone(),
            }));
        let rules = at.rules(&self.case.tenant)?;
        let levels = rules.service_levels;
        match to {
            State::AwaitingConsent => {
                let chase = rules.overdue_from(now, levels.consent_chase_days)?;
                let close = rules.overdue_from(now, levels.consent_close_days)?;
                self.set_timers.push((TimerKind::ConsentChase, chase));
                self.set_timers.push((TimerKind::ConsentClose, close));
            }
            State::Screening => {
                let due = rules.overdue_from(now, levels.screening_decision_days)?;
                self.set_timers.push((TimerKind::ScreeningDecision, due));
                self.publish.push(Outgoing::ScreenReferral(ScreenReferral {
                    case_id: self.case.id.clone(),
                    referral_id: self.case.referral_id.clone(),
                }));
                self.timeline.push(Entry {
                    kind: "screening_requested",
                    from: None,
                    to: None,
                    actor: ACTOR.into(),
                    reason: "intake asked to screen the referral".into(),
                });
            }
            State::ReadyForAllocation => {
                self.publish
                    .push(Outgoing::ReadyForAllocation(pb::CaseReadyForAllocation {
                        case,
                        needs: self.case.needs.clone(),
                        programmes_met: self.case.programmes_met.clone(),
                        postcode: self.case.postcode.clone(),
                        at: at_text,
                    }));
            }
            State::SteppedUp => {
                self.publish.push(Outgoing::SteppedUp(pb::CaseSteppedUp {
                    case,
                    reason: reason.into(),
                    significant_harm_risk: significant_harm,
                    at: at_text,
                }));
            }
            State::ClosedAdviceGiven
            | State::ClosedNoConsent
            | State::ClosedWithdrawn
            | State::ClosedOutcomesMet
            | State::ClosedOutcomesNotMet
            | State::ClosedSteppedDown => {
                self.publish.push(Outgoing::Closed(pb::CaseClosed {
                    case,
                    outcome: to.as_str().into(),
                    reason: reason.into(),
                    at: at_text,
                }));
            }
            // allocation's and assessment's own events announce these: casework records them.
            State::Requested
            | State::Allocating
            | State::WaitingForProvider
            | State::Allocated
            | State::AssessmentOpen
            | State::Assessed
            | State::PlanAgreed
            | State::InReview => {}
        }
        Ok(())
    }
}

/// Does the referral report a risk of significant harm?
pub fn significant_harm(ev: &ReferralReceived) -> bool {
    ev.referral.as_ref().and_then(|r| r.significant_harm_risk) == Some(true)
}

/// Does the referral itself record the family's consent?
pub fn referral_records_consent(ev: &ReferralReceived) -> bool {
    ev.referral
        .as_ref()
        .and_then(|r| r.consent.as_ref())
        .and_then(|c| c.obtained)
        == Some(true)
}

/// The case a referral opens for a family with no open case, as first stored (`requested`).
pub fn case_from_referral(
    tenant: &str,
    id: String,
    ev: &ReferralReceived,
    now: DateTime<Utc>,
) -> CaseRow {
    let r = ev.referral.clone().unwrap_or_default();
    let source = r.source.clone().unwrap_or_default();
    let referrer = r.referrer.clone().unwrap_or_default();
    let family = contacts::from_referral(ev);
    CaseRow {
        id,
        tenant: tenant.to_string(),
        family_id: ev.family_id.clone(),
        referral_id: ev.referral_id.clone(),
        route: r.route.clone(),
        state: State::Requested,
        source_system: source.system.clone(),
        source_reference: source.reference.clone(),
        referrer: pb::Contact {
            name: referrer.name.clone(),
            email: referrer.email.clone().unwrap_or_default(),
            safe_to_contact: true,
            relationship: "referrer".into(),
            parental_responsibility: false,
            person_id: String::new(),
        },
        referrer_agency: referrer.agency.clone(),
        family_contacts: family,
        needs: r.needs.clone(),
        postcode: r
            .address
            .as_ref()
            .map(|a| a.postcode.clone())
            .unwrap_or_default(),
        programmes_met: vec![],
        opened_at: now,
        updated_at: now,
    }
}

/// [`case_from_referral`] for a family whose earlier cases hold `earlier` contacts: anyone they
/// mark unsafe to contact stays unsafe on the new case, whatever this referral says of them.
pub fn case_for_family(
    tenant: &str,
    id: String,
    ev: &ReferralReceived,
    earlier: &[pb::Contact],
    now: DateTime<Utc>,
) -> CaseRow {
    let mut case = case_from_referral(tenant, id, ev, now);
    contacts::keep_earlier_flags(&mut case.family_contacts, earlier);
    case
}

/// A referral opened `case` (just stored, `requested`, the referral attached): where it goes
/// first. `family_consent_held`: the family holds consent on record (the referral's own consent
/// counts too).
///
/// # Errors
/// When a clock the first state starts falls outside the calendar, or the council is unknown.
pub fn case_opened(
    case: CaseRow,
    ev: &ReferralReceived,
    family_consent_held: bool,
    at: &At<'_>,
) -> Result<Effects, Refusal> {
    let r = ev.referral.clone().unwrap_or_default();
    let source = r.source.clone().unwrap_or_default();
    let harm = significant_harm(ev);
    let mut fx = Effects::new(case, ACTOR, at.now);
    fx.note(
        "opened",
        format!(
            "referral {} from {} ({}), route {}",
            ev.referral_id, source.system, source.reference, r.route
        ),
    );
    let first = Opening {
        significant_harm_risk: harm,
        step_down: r.route == "step_down",
        consent_held: referral_records_consent(ev) || family_consent_held,
    }
    .first_state();
    let reason = match first {
        State::SteppedUp => {
            "the referral reports a risk of significant harm: stepped up to the front door at once"
        }
        State::AwaitingConsent => "no consent to receive Early Help yet",
        State::ReadyForAllocation => {
            "step-down from social care with consent: the threshold decision is social care's"
        }
        _ => "consent held: screening requested",
    };
    fx.transition(first, reason, harm, at)?;
    Ok(fx)
}

/// A further referral for a family with an open `case` (the referral now attached to it):
/// the family members it names are merged into the case's contacts by person (`contacts::merge`:
/// someone it marks unsafe to contact is unsafe from now on, at the address the case held for
/// them, and nothing it leaves out clears an earlier flag); significant harm steps the case up;
/// consent it records moves a case waiting for consent on; otherwise it is only noted.
///
/// # Errors
/// As for [`case_opened`].
pub fn further_referral(
    case: CaseRow,
    ev: &ReferralReceived,
    at: &At<'_>,
) -> Result<Effects, Refusal> {
    let source = ev
        .referral
        .as_ref()
        .and_then(|r| r.source.clone())
        .unwrap_or_default();
    let mut fx = Effects::new(case, ACTOR, at.now);
    fx.note(
        "further_referral",
        format!(
            "further referral {} from {} ({}) attached to the open case",
            ev.referral_id, source.system, source.reference
        ),
    );
    let merged = contacts::merge(&fx.case.family_contacts, &contacts::from_referral(ev));
    if merged.changed {
        fx.case.family_contacts = merged.contacts;
        fx.contacts_changed = true;
    }
    for person in &merged.newly_unsafe {
        fx.note(
            "contact_unsafe",
            format!(
                "family member {} marked unsafe to contact by further referral {}: nothing is \
                 sent to them",
                if person.is_empty() {
                    "(no person id)"
                } else {
                    person
                },
                ev.referral_id
            ),
        );
    }
    if significant_harm(ev) {
        fx.transition(
            State::SteppedUp,
            "a further referral reports a risk of significant harm: stepped up to the front door",
            true,
            at,
        )?;
    } else if fx.case.state == State::AwaitingConsent && referral_records_consent(ev) {
        let to = domain::on_consent(fx.case.route == "step_down");
        fx.transition(
            to,
            "the further referral records the family's consent",
            false,
            at,
        )?;
    }
    Ok(fx)
}

/// Does a consent record with these purposes cover receiving Early Help?
pub fn covers_receiving_help(purposes: &[String]) -> bool {
    purposes.iter().any(|p| p == "assessment")
}

/// Consent recorded for the family whose open cases are `cases`; `held`: the family holds
/// consent to receive Early Help now (this record counted). Each case notes it; those waiting
/// for consent move on when it is held.
///
/// # Errors
/// As for [`case_opened`].
pub fn consent_recorded(
    cases: Vec<CaseRow>,
    ev: &ConsentRecorded,
    held: bool,
    at: &At<'_>,
) -> Result<Vec<Effects>, Refusal> {
    let record = ev.record.clone().unwrap_or_default();
    let consent = record.consent.clone().unwrap_or_default();
    let note = format!(
        "consent record {} given by {} ({}){}",
        record.record_id,
        consent.given_by,
        if consent.method.is_empty() {
            "method not stated"
        } else {
            &consent.method
        },
        if covers_receiving_help(&consent.purposes) {
            ""
        } else {
            "; it does not cover receiving Early Help (assessment)"
        }
    );
    cases
        .into_iter()
        .map(|case| {
            let mut fx = Effects::new(case, ACTOR, at.now);
            fx.note("consent_recorded", note.clone());
            if held && fx.case.state == State::AwaitingConsent {
                let to = domain::on_consent(fx.case.route == "step_down");
                fx.transition(to, "consent received", false, at)?;
            }
            Ok(fx)
        })
        .collect()
}

/// Consent withdrawn for the family whose open cases are `cases`; `held`: consent to receive
/// Early Help remains (another record). With none left, each case closes as withdrawn; a case
/// still being opened (`requested`) only notes it.
///
/// # Errors
/// As for [`case_opened`].
pub fn consent_withdrawn(
    cases: Vec<CaseRow>,
    ev: &ConsentWithdrawn,
    held: bool,
    at: &At<'_>,
) -> Result<Vec<Effects>, Refusal> {
    let w = ev.withdrawal.clone().unwrap_or_default();
    let reason = format!(
        "consent record {} withdrawn by {}: {}",
        w.record_id, w.withdrawn_by, w.reason
    );
    cases
        .into_iter()
        .map(|case| {
            let mut fx = Effects::new(case, ACTOR, at.now);
            if held || fx.case.state == State::Requested {
                fx.note(
                    "consent_withdrawn",
                    format!("{reason} (other consent remains)"),
                );
            } else {
                fx.transition(State::ClosedWithdrawn, &reason, false, at)?;
            }
            Ok(fx)
        })
        .collect()
}

/// Intake's screening decision on `case`: ready for allocation (with the programmes it meets),
/// closed with advice, stepped up, or still screening (more information needed). A decision for
/// a case no longer in screening is noted and ignored.
///
/// # Errors
/// An unknown outcome; otherwise as for [`case_opened`].
pub fn screening_decided(
    case: CaseRow,
    ev: &ScreeningDecided,
    at: &At<'_>,
) -> Result<Effects, Refusal> {
    let to = domain::on_screening(&ev.outcome).map_err(Refusal::Invalid)?;
    let mut fx = Effects::new(case, ACTOR, at.now);
    let reasons = ev.reasons.join("; ");
    let summary = format!("{} (rules {}): {reasons}", ev.outcome, ev.rule_version);
    fx.note("screening_decided", summary.clone());
    match to {
        _ if fx.case.state != State::Screening => {
            let r = format!("screening outcome ignored: the case is {}", fx.case.state);
            fx.note("ignored", r);
        }
        Some(State::ReadyForAllocation) => {
            fx.programmes = Some(ev.programmes_met.clone());
            fx.case.programmes_met = ev.programmes_met.clone();
            fx.transition(
                State::ReadyForAllocation,
                "accepted for Early Help",
                false,
                at,
            )?;
        }
        Some(State::ClosedAdviceGiven) => {
            let r = format!("advice and signposting: {}", ev.advice);
            fx.transition(State::ClosedAdviceGiven, &r, false, at)?;
        }
        Some(other) => {
            fx.transition(other, &summary, other == State::SteppedUp, at)?;
        }
        None => {
            let r = format!("more information needed: {}", ev.missing.join(", "));
            fx.note("more_information_needed", r);
        }
    }
    Ok(fx)
}

/// The name allocation's waiting-list clock is reported under.
pub const WAITING_LIST_CLOCK: &str = "waiting_list";

/// An answer of allocation about a case (services/allocation's events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationStep {
    /// `offer_made`: offered to `service` (its `attempt`th offer), by rules `rule_version`.
    Offered {
        service: String,
        attempt: u32,
        rule_version: String,
    },
    /// `case_waiting`: no service can take it now; `position` on the council's list.
    Waiting {
        position: u32,
        significant_need: bool,
    },
    /// `offer_accepted`: `service` accepted.
    Accepted { service: String },
    /// `offer_declined`: `service` declined for `reason`.
    Declined { service: String, reason: String },
    /// `offer_expired`: `service` did not answer by `respond_by`.
    Expired { service: String, respond_by: String },
    /// `lead_practitioner_named`: `practitioner` of `service` leads the case.
    LeadNamed {
        practitioner: String,
        organization_id: String,
        service: String,
    },
    /// `lead_practitioner_declined`: `practitioner` declined to lead, for `reason`.
    LeadDeclined {
        practitioner: String,
        reason: String,
    },
    /// Assessment's `assessment_opened`: version `version` of the case's assessment is open.
    AssessmentOpened { version: u32 },
    /// Assessment's `assessment_finalised`: version `version` is locked, with `contributions`
    /// sections.
    AssessmentFinalised { version: u32, contributions: u32 },
    /// Assessment's `plan_agreed`: version `version` of the plan, with so many outcomes and
    /// actions.
    PlanAgreed {
        version: u32,
        outcomes: u32,
        actions: u32,
    },
    /// Assessment's `review_recorded`: review `number` of the plan.
    Reviewed { number: u32 },
    /// Assessment's `case_closure_recorded`: the case closes as `kind`, `met` of `outcomes`
    /// Supporting Families outcomes met, a follow-up check due at `follow_up_due` (empty: none).
    ClosureRecorded {
        kind: String,
        met: u32,
        outcomes: u32,
        follow_up_due: String,
    },
    /// Assessment's `follow_up_due`: the lead is asked whether the outcomes were sustained.
    FollowUpDue,
    /// Assessment's `follow_up_recorded`: the answer.
    FollowUpRecorded {
        sustained: bool,
        needs_help_again: bool,
    },
    /// `waiting_limit_breached`: waiting since `waiting_since`, longer than `limit_days` working
    /// days (due `due_at`).
    WaitingBreached {
        waiting_since: String,
        limit_days: u32,
        due_at: String,
    },
}

/// Allocation offered, queued, or allocated the case: its state follows (`allocating`,
/// `waiting_for_provider`, `allocated`), every step on the timeline. A step for a case that has
/// left allocation (stepped up, closed) is recorded and ignored.
///
/// # Errors
/// As for [`case_opened`].
pub fn allocation_step(
    case: CaseRow,
    step: &AllocationStep,
    at: &At<'_>,
) -> Result<Effects, Refusal> {
    use State::{Allocating, ReadyForAllocation, WaitingForProvider};
    let mut fx = Effects::new(case, "service:allocation", at.now);
    let state = fx.case.state;
    match step {
        AllocationStep::Offered {
            service,
            attempt,
            rule_version,
        } => {
            let r = format!("offered to {service} (offer {attempt}, rules {rule_version})");
            if matches!(state, ReadyForAllocation | WaitingForProvider) {
                fx.transition(Allocating, &r, false, at)?;
            } else if state == Allocating {
                fx.note("offer_made", r);
            } else {
                fx.note("ignored", format!("{r}: ignored, the case is {state}"));
            }
        }
        AllocationStep::Waiting {
            position,
            significant_need,
        } => {
            let r = format!(
                "no service can take the case now: waiting, position {position}{}",
                if *significant_need {
                    " (significant need)"
                } else {
                    ""
                }
            );
            if matches!(state, ReadyForAllocation | Allocating) {
                fx.transition(WaitingForProvider, &r, false, at)?;
            } else {
                fx.note("ignored", format!("{r}: ignored, the case is {state}"));
            }
        }
        AllocationStep::Accepted { service } => {
            let r = format!("{service} accepted: allocated");
            // Each of allocation's events has its own consumer: an acceptance may be handled
            // before the offer (or the wait) it ends, and still allocates the case.
            if matches!(state, Allocating | ReadyForAllocation | WaitingForProvider) {
                fx.transition(State::Allocated, &r, false, at)?;
                let rules = at.rules(&fx.case.tenant)?;
                let due = rules.overdue_from(at.now, rules.service_levels.assessment_days)?;
                fx.set_timers.push((TimerKind::Assessment, due));
            } else {
                fx.note("ignored", format!("{r}: ignored, the case is {state}"));
            }
        }
        AllocationStep::Declined { service, reason } => {
            fx.note("offer_declined", format!("{service} declined: {reason}"));
        }
        AllocationStep::Expired {
            service,
            respond_by,
        } => {
            fx.note(
                "offer_expired",
                format!("{service} did not answer by {respond_by}: the offer lapsed"),
            );
        }
        AllocationStep::LeadNamed {
            practitioner,
            organization_id,
            service,
        } => {
            let r = format!("{practitioner} ({service}) leads the case");
            if state == State::Allocated {
                let rules = at.rules(&fx.case.tenant)?;
                let days = rules.service_levels.first_contact_days;
                let due = rules.overdue_from(at.now, days)?;
                let by = rules.calendar.deadline(at.now, days)?;
                fx.note("lead_practitioner_named", r);
                fx.set_timers.push((TimerKind::FirstContact, due));
                fx.publish.push(Outgoing::LeadAssigned(pb::LeadAssigned {
                    case: Some(fx.case.case_ref()),
                    family: fx.case.family_contacts.clone(),
                    service_name: service.clone(),
                    organization_id: organization_id.clone(),
                    practitioner: practitioner.clone(),
                    first_contact_by: by.to_string(),
                    at: at.now.to_rfc3339(),
                }));
                fx.lead = Some(crate::store::Lead {
                    practitioner: practitioner.clone(),
                    organization_id: organization_id.clone(),
                });
            } else {
                fx.note("ignored", format!("{r}: ignored, the case is {state}"));
            }
        }
        AllocationStep::AssessmentOpened { version } => {
            let r = format!("the lead opened the Early Help Assessment (version {version})");
            if *version <= 1 && state == State::Allocated {
                fx.transition(State::AssessmentOpen, &r, false, at)?;
            } else if state.is_open() {
                fx.note("assessment_opened", r);
            } else {
                fx.note("ignored", format!("{r}: ignored, the case is {state}"));
            }
        }
        AllocationStep::AssessmentFinalised {
            version,
            contributions,
        } => {
            let r = format!(
                "the Early Help Assessment was finalised (version {version}, {contributions} contribution(s))"
            );
            if matches!(state, State::Allocated | State::AssessmentOpen) {
                fx.transition(State::Assessed, &r, false, at)?;
            } else if state.is_open() {
                fx.note("assessment_finalised", r);
            } else {
                fx.note("ignored", format!("{r}: ignored, the case is {state}"));
            }
        }
        AllocationStep::PlanAgreed {
            version,
            outcomes,
            actions,
        } => {
            let r = format!(
                "the plan was agreed (version {version}: {outcomes} outcome(s), {actions} action(s))"
            );
            if *version <= 1
                && matches!(
                    state,
                    State::Allocated | State::AssessmentOpen | State::Assessed
                )
            {
                fx.transition(State::PlanAgreed, &r, false, at)?;
            } else if state.is_open() {
                fx.note("plan_agreed", r);
            } else {
                fx.note("ignored", format!("{r}: ignored, the case is {state}"));
            }
        }
        AllocationStep::Reviewed { number } => {
            let r = format!("the plan was reviewed (review {number})");
            if matches!(
                state,
                State::Allocated | State::AssessmentOpen | State::Assessed | State::PlanAgreed
            ) {
                fx.transition(State::InReview, &r, false, at)?;
            } else if state.is_open() {
                fx.note("review_recorded", r);
            } else {
                fx.note("ignored", format!("{r}: ignored, the case is {state}"));
            }
        }
        AllocationStep::ClosureRecorded {
            kind,
            met,
            outcomes,
            follow_up_due,
        } => {
            let follow = if follow_up_due.is_empty() {
                String::new()
            } else {
                format!("; follow-up check due {follow_up_due}")
            };
            let r = format!(
                "closed with its outcomes: {kind}, {met} of {outcomes} Supporting Families outcome(s) met{follow}"
            );
            match State::closure_of(kind) {
                Some(to) if state.may_move_to(to) => fx.transition(to, &r, false, at)?,
                Some(_) => fx.note("ignored", format!("{r}: ignored, the case is {state}")),
                None => {
                    return Err(Refusal::Invalid(format!("unknown closure kind {kind:?}")));
                }
            }
        }
        AllocationStep::FollowUpDue => {
            fx.note(
                "follow_up_due",
                "six months after closing: the lead is asked whether the outcomes were sustained"
                    .to_string(),
            );
        }
        AllocationStep::FollowUpRecorded {
            sustained,
            needs_help_again,
        } => {
            let r = format!(
                "follow-up check: outcomes {}{}",
                if *sustained {
                    "sustained"
                } else {
                    "not sustained"
                },
                if *needs_help_again {
                    "; the family needs help again: a new request for support goes to the front door"
                } else {
                    ""
                }
            );
            fx.note("follow_up_recorded", r);
            if *needs_help_again {
                fx.publish.push(Outgoing::ReferAgain(ReferAgain {
                    case_id: fx.case.id.clone(),
                    referral_id: fx.case.referral_id.clone(),
                    family_id: fx.case.family_id.clone(),
                }));
            }
        }
        AllocationStep::LeadDeclined {
            practitioner,
            reason,
        } => {
            fx.note(
                "lead_practitioner_declined",
                format!("{practitioner} declined to lead the case: {reason}"),
            );
        }
        AllocationStep::WaitingBreached {
            waiting_since,
            limit_days,
            due_at,
        } => {
            let r = format!(
                "waiting for a provider since {waiting_since}, longer than {limit_days} working day(s) (due {due_at})"
            );
            if state == WaitingForProvider {
                fx.note("service_level_breached", r);
                fx.publish
                    .push(Outgoing::ServiceLevelBreached(pb::ServiceLevelBreached {
                        case: Some(fx.case.case_ref()),
                        clock: WAITING_LIST_CLOCK.into(),
                        due_at: due_at.clone(),
                        state: state.as_str().into(),
                        at: at.now.to_rfc3339(),
                    }));
                fx.alerts.push(Alert::ServiceLevelBreached {
                    tenant: fx.case.tenant.clone(),
                    clock: WAITING_LIST_CLOCK,
                });
            } else {
                fx.note("ignored", format!("{r}: ignored, the case is {state}"));
            }
        }
    }
    Ok(fx)
}

/// What a clock that ran out does.
#[derive(Debug, Clone, PartialEq)]
pub enum Clock {
    /// The case has left the state the clock runs in: it is cancelled, nothing else.
    Stale,
    /// It fires (once: the handler settles it before applying).
    Fires(Box<Effects>),
}

/// The `kind` clock of `case`, due at `due_at`, ran out: a screening decision late is a breach
/// (the manager is told, the breach counted); consent outstanding is chased (the family asked
/// again, with when the case will close: `consent_close_due`, the consent-close clock's due
/// time); consent still outstanding at the end closes the case.
///
/// # Errors
/// As for [`case_opened`] (a stale clock is never refused).
pub fn clock_ran_out(
    case: CaseRow,
    kind: TimerKind,
    due_at: DateTime<Utc>,
    consent_close_due: Option<DateTime<Utc>>,
    at: &At<'_>,
) -> Result<Clock, Refusal> {
    if !kind.runs_in(case.state) {
        return Ok(Clock::Stale);
    }
    let levels = at.rules(&case.tenant)?.service_levels;
    let mut fx = Effects::new(case, ACTOR, at.now);
    let now_text = at.now.to_rfc3339();
    match kind {
        TimerKind::ScreeningDecision | TimerKind::FirstContact | TimerKind::Assessment => {
            let what = if kind == TimerKind::FirstContact {
                format!(
                    "no first contact with the family recorded within {} working day(s) of the lead practitioner being named",
                    levels.first_contact_days
                )
            } else if kind == TimerKind::Assessment {
                format!(
                    "the assessment was not finalised within {} working day(s) of allocation",
                    levels.assessment_days
                )
            } else {
                format!(
                    "no screening decision within {} working day(s)",
                    levels.screening_decision_days
                )
            };
            fx.note(
                "service_level_breached",
                format!("{what} (due {})", due_at.to_rfc3339()),
            );
            fx.publish
                .push(Outgoing::ServiceLevelBreached(pb::ServiceLevelBreached {
                    case: Some(fx.case.case_ref()),
                    clock: kind.as_str().into(),
                    due_at: due_at.to_rfc3339(),
                    state: fx.case.state.as_str().into(),
                    at: now_text,
                }));
            fx.alerts.push(Alert::ServiceLevelBreached {
                tenant: fx.case.tenant.clone(),
                clock: kind.as_str(),
            });
        }
        TimerKind::ConsentChase => {
            fx.note(
                "consent_chased",
                format!(
                    "consent still outstanding after {} working days: the family is asked again",
                    levels.consent_chase_days
                ),
            );
            fx.publish
                .push(Outgoing::ConsentRequested(pb::ConsentRequested {
                    case: Some(fx.case.case_ref()),
                    family: fx.case.family_contacts.clone(),
                    close_due_at: consent_close_due
                        .map(|d| d.to_rfc3339())
                        .unwrap_or_default(),
                    at: now_text,
                }));
        }
        TimerKind::ConsentClose => {
            let reason = format!(
                "no consent within {} working days",
                levels.consent_close_days
            );
            fx.transition(State::ClosedNoConsent, &reason, false, at)?;
        }
    }
    Ok(Clock::Fires(Box::new(fx)))
}

/// The lead practitioner (`actor`) records first contact with the family (`how`, e.g. "home
/// visit"): on the timeline, and the first-contact clock stops. Only for an allocated case.
///
/// # Errors
/// [`Refusal::Invalid`] when the case is not allocated.
pub fn first_contact(
    case: CaseRow,
    actor: &str,
    how: &str,
    at: &At<'_>,
) -> Result<Effects, Refusal> {
    if !TimerKind::FirstContact.runs_in(case.state) {
        return Err(Refusal::Invalid(format!(
            "first contact is recorded once the case is allocated (and until it closes); it is {}",
            case.state
        )));
    }
    let mut fx = Effects::new(case, actor, at.now);
    fx.note(
        "first_contact",
        format!("first contact with the family: {how}"),
    );
    fx.cancel_timers.push(TimerKind::FirstContact);
    Ok(fx)
}

/// A practitioner (`actor`) moves `case` to `to` (`StepUp`, `CloseCase`) for `reason`.
///
/// # Errors
/// When the state machine forbids the move; otherwise as for [`case_opened`].
pub fn practitioner_step(
    case: CaseRow,
    to: State,
    actor: &str,
    reason: &str,
    at: &At<'_>,
) -> Result<Effects, Refusal> {
    let mut fx = Effects::new(case, actor, at.now);
    fx.transition(to, reason, false, at)?;
    Ok(fx)
}

#[cfg(test)]
mod tests {
    //! The decisions as a table: every event kind against the states it can meet, with what
    //! each does (state, timeline, publications, clocks set and cancelled, alerts); then what the
    //! table's summary leaves out (payloads, actors, refusals, working-day deadlines).
    use super::*;
    use State::*;
    use TimerKind::*;
    use eh_proto::consent::v1 as consent;
    use eh_proto::intake::v1 as intake;
    use eh_workdays::Division;

    /// Monday 2 March 2026, 09:00 (GMT).
    fn now() -> DateTime<Utc> {
        t("2026-03-02T09:00:00Z")
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("a test instant")
            .with_timezone(&Utc)
    }

    fn rules_with(
        division: Division,
        closures: &[(i32, u32, u32)],
        levels: ServiceLevels,
    ) -> CouncilRules {
        let closures = closures
            .iter()
            .map(|&(y, m, d)| chrono::NaiveDate::from_ymd_opt(y, m, d).expect("a test date"));
        CouncilRules {
            service_levels: levels,
            calendar: WorkingCalendar::new(division, closures).expect("a calendar"),
        }
    }

    /// DOMAIN.md's defaults: screening 1, chase 5, close 20 working days; England and Wales.
    const DEFAULT_LEVELS: ServiceLevels = ServiceLevels {
        screening_decision_days: 1,
        consent_chase_days: 5,
        consent_close_days: 20,
        first_contact_days: 5,
        assessment_days: 30,
    };

    fn rules() -> CouncilRules {
        rules_with(Division::EnglandAndWales, &[], DEFAULT_LEVELS)
    }

    fn case(state: State, route: &str) -> CaseRow {
        CaseRow {
            id: "case-1".into(),
            tenant: "worcs".into(),
            family_id: "fam-1".into(),
            referral_id: "ref-1".into(),
            route: route.into(),
            state,
            source_system: "hub".into(),
            source_reference: "r1".into(),
            referrer: pb::Contact {
                name: "A Teacher".into(),
                email: "teacher@school.example".into(),
                safe_to_contact: true,
                relationship: "referrer".into(),
                parental_responsibility: false,
                person_id: String::new(),
            },
            referrer_agency: "school".into(),
            // As the first referral named them (`referral`), so a further one changes nothing.
            family_contacts: vec![
                pb::Contact {
                    name: "Jo Bloggs".into(),
                    email: "jo@example.org".into(),
                    safe_to_contact: true,
                    relationship: "mother".into(),
                    parental_responsibility: true,
                    person_id: String::new(),
                },
                pb::Contact {
                    name: "Sam Bloggs".into(),
                    email: String::new(),
                    safe_to_contact: false,
                    relationship: "father".into(),
                    parental_responsibility: false,
                    person_id: String::new(),
                },
            ],
            needs: vec!["housing".into(), "school_attendance".into()],
            postcode: "WR1 1AA".into(),
            programmes_met: vec![],
            opened_at: t("2026-02-20T10:00:00Z"),
            updated_at: t("2026-02-20T10:00:00Z"),
        }
    }

    fn referral(
        id: &str,
        harm: Option<bool>,
        consent: Option<bool>,
        route: &str,
    ) -> ReferralReceived {
        ReferralReceived {
            referral_id: id.into(),
            family_id: "fam-1".into(),
            referral: Some(intake::Referral {
                route: route.into(),
                source: Some(intake::Source {
                    system: "hub".into(),
                    reference: format!("src-{id}"),
                }),
                referrer: Some(intake::Referrer {
                    name: "A Teacher".into(),
                    agency: "school".into(),
                    email: Some("teacher@school.example".into()),
                    ..Default::default()
                }),
                family_members: vec![
                    intake::FamilyMember {
                        given_name: "Jo".into(),
                        family_name: "Bloggs".into(),
                        relationship: "mother".into(),
                        parental_responsibility: Some(true),
                        email: Some("jo@example.org".into()),
                        ..Default::default()
                    },
                    intake::FamilyMember {
                        given_name: "Sam".into(),
                        family_name: "Bloggs".into(),
                        relationship: "father".into(),
                        safe_to_contact: Some(false),
                        ..Default::default()
                    },
                ],
                address: Some(intake::Address {
                    postcode: "WR1 1AA".into(),
                    ..Default::default()
                }),
                needs: vec!["housing".into()],
                significant_harm_risk: harm,
                consent: Some(intake::Consent {
                    obtained: consent,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn recorded(purposes: &[&str]) -> ConsentRecorded {
        ConsentRecorded {
            record: Some(consent::ConsentRecord {
                record_id: "rec-1".into(),
                consent: Some(consent::Consent {
                    family_id: "fam-1".into(),
                    given_by: "Jo Bloggs".into(),
                    method: "signed".into(),
                    purposes: purposes.iter().map(|p| p.to_string()).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    fn withdrawn() -> ConsentWithdrawn {
        ConsentWithdrawn {
            withdrawal: Some(consent::Withdrawal {
                record_id: "rec-1".into(),
                withdrawn_by: "Jo Bloggs".into(),
                reason: "moving away".into(),
                ..Default::default()
            }),
            family_id: "fam-1".into(),
            person_id: String::new(),
        }
    }

    fn screened(outcome: &str) -> ScreeningDecided {
        ScreeningDecided {
            case_id: "case-1".into(),
            outcome: outcome.into(),
            reasons: vec!["in area".into(), "two needs".into()],
            rule_version: "worcs-2026-04".into(),
            programmes_met: vec!["brfc".into()],
            advice: "see the family hub".into(),
            missing: vec!["/children/0/date_of_birth".into(), "/address".into()],
            ..Default::default()
        }
    }

    /// What a row of the table is.
    #[derive(Debug, Clone, Copy)]
    enum Ev {
        /// A referral opens a case: significant harm, route, consent in the referral, consent
        /// the family holds on record.
        Opens {
            harm: bool,
            route: &'static str,
            consent: bool,
            on_record: bool,
        },
        /// A further referral for the family's open case.
        Further {
            harm: bool,
            consent: bool,
        },
        /// Consent recorded; `held`: the family holds consent to receive help now.
        Recorded {
            held: bool,
        },
        /// Consent withdrawn; `held`: consent to receive help remains.
        Withdrawn {
            held: bool,
        },
        Screened(&'static str),
        Clock(TimerKind),
        /// A practitioner's StepUp or CloseCase.
        Practitioner(State),
        /// Allocation's answers.
        Offered,
        Waiting,
        Accepted,
        Declined,
        Expired,
        WaitingBreached,
        LeadNamed,
        LeadDeclined,
        /// Assessment's, with the version.
        AssessmentOpened(u32),
        AssessmentFinalised(u32),
        /// Assessment's plan, reviews, closure and follow-up.
        PlanAgreed(u32),
        Reviewed,
        Closure(&'static str),
        FollowUpDue,
        /// Whether the family needs help again.
        FollowUpRecorded(bool),
    }

    /// What the row expects.
    #[derive(Debug)]
    enum Want {
        Fx {
            state: State,
            timeline: &'static [&'static str],
            publish: &'static [&'static str],
            set: &'static [(TimerKind, &'static str)],
            cancel: &'static [TimerKind],
            alerts: usize,
        },
        /// A clock whose state the case has left: cancelled, nothing else.
        Stale,
        Refused(&'static str),
    }

    struct Row {
        name: &'static str,
        state: State,
        route: &'static str,
        ev: Ev,
        want: Want,
    }

    const ALL_CLOCKS: &[TimerKind] = &[
        ScreeningDecision,
        ConsentChase,
        ConsentClose,
        FirstContact,
        Assessment,
    ];
    const CONSENT_CLOCKS: &[TimerKind] = &[ConsentChase, ConsentClose, FirstContact, Assessment];
    /// Clocks cancelled on moving to assessment_open / assessed.
    const NOT_ASSESSING_CLOCKS: &[TimerKind] = &[ScreeningDecision, ConsentChase, ConsentClose];
    const ASSESSED_CLOCKS: &[TimerKind] =
        &[ScreeningDecision, ConsentChase, ConsentClose, Assessment];
    /// 30 working days from Monday 2 March 2026 (Good Friday 3 and Easter Monday 6 April are
    /// bank holidays): Wednesday 15 April, overdue from Thursday's UK midnight (BST).
    const ASSESSMENT_DUE: (TimerKind, &str) = (Assessment, "2026-04-15T23:00:00Z");
    /// Every clock but the one that runs in `allocated`.
    const NOT_ALLOCATED_CLOCKS: &[TimerKind] = &[ScreeningDecision, ConsentChase, ConsentClose];
    // From Monday 2 March 2026 09:00: day 1 is Tuesday 3rd (overdue from Wednesday's UK
    // midnight); day 5 Monday 9th; day 20 Monday 30th, overdue from Tuesday 31st 00:00 BST,
    // which is 23:00 UTC the day before (summer time began on the 29th).
    const SCREENING_DUE: (TimerKind, &str) = (ScreeningDecision, "2026-03-04T00:00:00Z");
    const CHASE_DUE: (TimerKind, &str) = (ConsentChase, "2026-03-10T00:00:00Z");
    const CLOSE_DUE: (TimerKind, &str) = (ConsentClose, "2026-03-30T23:00:00Z");

    const CHANGED: &str = "case_state_changed";
    const SCREEN: &str = "cmd.screen_referral";
    const READY: &str = "case_ready_for_allocation";
    const STEPPED_UP: &str = "case_stepped_up";
    const CLOSED: &str = "case_closed";

    fn fx(
        state: State,
        timeline: &'static [&'static str],
        publish: &'static [&'static str],
        set: &'static [(TimerKind, &'static str)],
        cancel: &'static [TimerKind],
    ) -> Want {
        Want::Fx {
            state,
            timeline,
            publish,
            set,
            cancel,
            alerts: 0,
        }
    }

    /// Only a timeline entry: the case stays as it is.
    fn noted(state: State, kinds: &'static [&'static str]) -> Want {
        fx(state, kinds, &[], &[], &[])
    }

    fn to_screening(first: &'static str) -> Want {
        let timeline: &'static [&'static str] = match first {
            "opened" => &["opened", "transition", "screening_requested"],
            "further_referral" => &["further_referral", "transition", "screening_requested"],
            _ => &["consent_recorded", "transition", "screening_requested"],
        };
        fx(
            Screening,
            timeline,
            &[CHANGED, SCREEN],
            &[SCREENING_DUE],
            CONSENT_CLOCKS,
        )
    }

    fn stepped_up(timeline: &'static [&'static str]) -> Want {
        fx(SteppedUp, timeline, &[CHANGED, STEPPED_UP], &[], ALL_CLOCKS)
    }

    fn ready(timeline: &'static [&'static str]) -> Want {
        fx(
            ReadyForAllocation,
            timeline,
            &[CHANGED, READY],
            &[],
            ALL_CLOCKS,
        )
    }

    fn closed(to: State, timeline: &'static [&'static str]) -> Want {
        fx(to, timeline, &[CHANGED, CLOSED], &[], ALL_CLOCKS)
    }

    fn row(name: &'static str, state: State, route: &'static str, ev: Ev, want: Want) -> Row {
        Row {
            name,
            state,
            route,
            ev,
            want,
        }
    }

    fn opens(harm: bool, route: &'static str, consent: bool, on_record: bool) -> Ev {
        Ev::Opens {
            harm,
            route,
            consent,
            on_record,
        }
    }

    const P: &str = "practitioner";
    const SD: &str = "step_down";

    // One row a line: the table reads as one.
    #[rustfmt::skip]
    fn table() -> Vec<Row> {
        let opened_up: &'static [&'static str] = &["opened", "transition"];
        let further_up: &'static [&'static str] = &["further_referral", "transition"];
        let screened_to: &'static [&'static str] = &["screening_decided", "transition"];
        let ignored: &'static [&'static str] = &["screening_decided", "ignored"];
        let quiet = Ev::Further { harm: false, consent: false };
        let harmful = Ev::Further { harm: true, consent: false };
        let consenting = Ev::Further { harm: false, consent: true };
        vec![
            // A referral opens a case: significant harm first, whatever else is missing.
            row("harm, no consent: stepped up at once", Requested, P, opens(true, P, false, false), stepped_up(opened_up)),
            row("harm with consent: stepped up", Requested, P, opens(true, P, true, true), stepped_up(opened_up)),
            row("harm on a step-down: stepped up", Requested, SD, opens(true, SD, true, false), stepped_up(opened_up)),
            row("no consent: awaiting, chase and close clocks", Requested, P, opens(false, P, false, false),
                fx(AwaitingConsent, opened_up, &[CHANGED], &[CHASE_DUE, CLOSE_DUE], &[ScreeningDecision, FirstContact, Assessment])),
            row("step-down without consent: awaiting", Requested, SD, opens(false, SD, false, false),
                fx(AwaitingConsent, opened_up, &[CHANGED], &[CHASE_DUE, CLOSE_DUE], &[ScreeningDecision, FirstContact, Assessment])),
            row("consent in the referral: screening", Requested, P, opens(false, P, true, false), to_screening("opened")),
            row("consent on record: screening", Requested, P, opens(false, P, false, true), to_screening("opened")),
            row("step-down with consent: ready, no screening", Requested, SD, opens(false, SD, true, false), ready(opened_up)),
            row("step-down with consent on record: ready", Requested, SD, opens(false, SD, false, true), ready(opened_up)),
            // A further referral for the family's open case.
            row("further, awaiting: noted", AwaitingConsent, P, quiet, noted(AwaitingConsent, &["further_referral"])),
            row("further, screening: noted", Screening, P, quiet, noted(Screening, &["further_referral"])),
            row("further, ready: noted", ReadyForAllocation, P, quiet, noted(ReadyForAllocation, &["further_referral"])),
            row("further with harm, awaiting: stepped up", AwaitingConsent, P, harmful, stepped_up(further_up)),
            row("further with harm, screening: stepped up", Screening, P, harmful, stepped_up(further_up)),
            row("further with harm, ready: stepped up", ReadyForAllocation, P, harmful, stepped_up(further_up)),
            row("further with harm and consent, awaiting: harm wins", AwaitingConsent, P, Ev::Further { harm: true, consent: true }, stepped_up(further_up)),
            row("further with consent, awaiting: screening", AwaitingConsent, P, consenting, to_screening("further_referral")),
            row("further with consent, awaiting step-down: ready", AwaitingConsent, SD, consenting, ready(further_up)),
            row("further with consent, screening already: noted", Screening, P, consenting, noted(Screening, &["further_referral"])),
            row("further with consent, ready already: noted", ReadyForAllocation, P, consenting, noted(ReadyForAllocation, &["further_referral"])),
            // Consent recorded.
            row("consent held, awaiting: screening", AwaitingConsent, P, Ev::Recorded { held: true }, to_screening("consent_recorded")),
            row("consent held, awaiting step-down: ready", AwaitingConsent, SD, Ev::Recorded { held: true }, ready(&["consent_recorded", "transition"])),
            row("consent not held (other purposes), awaiting: noted", AwaitingConsent, P, Ev::Recorded { held: false }, noted(AwaitingConsent, &["consent_recorded"])),
            row("consent held, requested: noted", Requested, P, Ev::Recorded { held: true }, noted(Requested, &["consent_recorded"])),
            row("consent held, screening: noted (stale)", Screening, P, Ev::Recorded { held: true }, noted(Screening, &["consent_recorded"])),
            row("consent held, ready: noted (stale)", ReadyForAllocation, P, Ev::Recorded { held: true }, noted(ReadyForAllocation, &["consent_recorded"])),
            // Consent withdrawn.
            row("withdrawn, none left, awaiting: closed", AwaitingConsent, P, Ev::Withdrawn { held: false }, closed(ClosedWithdrawn, &["transition"])),
            row("withdrawn, none left, screening: closed", Screening, P, Ev::Withdrawn { held: false }, closed(ClosedWithdrawn, &["transition"])),
            row("withdrawn, none left, ready: closed", ReadyForAllocation, P, Ev::Withdrawn { held: false }, closed(ClosedWithdrawn, &["transition"])),
            row("withdrawn, none left, requested: noted", Requested, P, Ev::Withdrawn { held: false }, noted(Requested, &["consent_withdrawn"])),
            row("withdrawn, other consent remains, awaiting: noted", AwaitingConsent, P, Ev::Withdrawn { held: true }, noted(AwaitingConsent, &["consent_withdrawn"])),
            row("withdrawn, other consent remains, screening: noted", Screening, P, Ev::Withdrawn { held: true }, noted(Screening, &["consent_withdrawn"])),
            row("withdrawn, other consent remains, ready: noted", ReadyForAllocation, P, Ev::Withdrawn { held: true }, noted(ReadyForAllocation, &["consent_withdrawn"])),
            // Screening decided.
            row("accepted: ready for allocation", Screening, P, Ev::Screened("accepted_for_early_help"), ready(screened_to)),
            row("advice: closed with advice", Screening, P, Ev::Screened("advice_and_signpost"), closed(ClosedAdviceGiven, screened_to)),
            row("significant harm found: stepped up", Screening, P, Ev::Screened("step_up_significant_harm"), stepped_up(screened_to)),
            row("more information: still screening", Screening, P, Ev::Screened("more_information_needed"), noted(Screening, &["screening_decided", "more_information_needed"])),
            row("accepted, awaiting: ignored", AwaitingConsent, P, Ev::Screened("accepted_for_early_help"), noted(AwaitingConsent, ignored)),
            row("accepted, ready already (duplicate decision): ignored", ReadyForAllocation, P, Ev::Screened("accepted_for_early_help"), noted(ReadyForAllocation, ignored)),
            row("advice, stepped up meanwhile: ignored", SteppedUp, P, Ev::Screened("advice_and_signpost"), noted(SteppedUp, ignored)),
            row("more information, closed meanwhile: ignored", ClosedWithdrawn, P, Ev::Screened("more_information_needed"), noted(ClosedWithdrawn, ignored)),
            row("unknown outcome: refused", Screening, P, Ev::Screened("maybe"), Want::Refused("unknown screening outcome \"maybe\"")),
            // Clocks that ran out.
            row("screening late: breach, alert", Screening, P, Ev::Clock(ScreeningDecision),
                Want::Fx { state: Screening, timeline: &["service_level_breached"], publish: &["service_level_breached"], set: &[], cancel: &[], alerts: 1 }),
            row("screening clock, ready since: stale", ReadyForAllocation, P, Ev::Clock(ScreeningDecision), Want::Stale),
            row("screening clock, stepped up since: stale", SteppedUp, P, Ev::Clock(ScreeningDecision), Want::Stale),
            row("chase, awaiting: family asked again", AwaitingConsent, P, Ev::Clock(ConsentChase),
                fx(AwaitingConsent, &["consent_chased"], &["consent_requested"], &[], &[])),
            row("chase, screening since: stale", Screening, P, Ev::Clock(ConsentChase), Want::Stale),
            row("close, awaiting: closed for no consent", AwaitingConsent, P, Ev::Clock(ConsentClose), closed(ClosedNoConsent, &["transition"])),
            row("close, screening since: stale", Screening, P, Ev::Clock(ConsentClose), Want::Stale),
            row("close, withdrawn since: stale", ClosedWithdrawn, P, Ev::Clock(ConsentClose), Want::Stale),
            // A practitioner's step.
            row("StepUp, awaiting", AwaitingConsent, P, Ev::Practitioner(SteppedUp), stepped_up(&["transition"])),
            row("StepUp, screening", Screening, P, Ev::Practitioner(SteppedUp), stepped_up(&["transition"])),
            row("StepUp, ready", ReadyForAllocation, P, Ev::Practitioner(SteppedUp), stepped_up(&["transition"])),
            row("StepUp, stepped up already: refused", SteppedUp, P, Ev::Practitioner(SteppedUp),
                Want::Refused("a case that is stepped_up cannot become stepped_up")),
            row("close with advice, awaiting", AwaitingConsent, P, Ev::Practitioner(ClosedAdviceGiven), closed(ClosedAdviceGiven, &["transition"])),
            row("close with advice, screening", Screening, P, Ev::Practitioner(ClosedAdviceGiven), closed(ClosedAdviceGiven, &["transition"])),
            row("close with advice, ready: refused", ReadyForAllocation, P, Ev::Practitioner(ClosedAdviceGiven),
                Want::Refused("a case that is ready_for_allocation cannot become closed_advice_given")),
            row("close for no consent, awaiting", AwaitingConsent, P, Ev::Practitioner(ClosedNoConsent), closed(ClosedNoConsent, &["transition"])),
            row("close for no consent, screening: refused", Screening, P, Ev::Practitioner(ClosedNoConsent),
                Want::Refused("a case that is screening cannot become closed_no_consent")),
            row("close as withdrawn, ready", ReadyForAllocation, P, Ev::Practitioner(ClosedWithdrawn), closed(ClosedWithdrawn, &["transition"])),
            row("close, closed already: refused", ClosedAdviceGiven, P, Ev::Practitioner(ClosedWithdrawn),
                Want::Refused("a case that is closed_advice_given cannot become closed_withdrawn")),
            // Allocation's answers.
            row("offered, ready: allocating", ReadyForAllocation, P, Ev::Offered, fx(Allocating, &["transition"], &[CHANGED], &[], ALL_CLOCKS)),
            row("offered, waiting: allocating", WaitingForProvider, P, Ev::Offered, fx(Allocating, &["transition"], &[CHANGED], &[], ALL_CLOCKS)),
            row("offered again after a decline: noted", Allocating, P, Ev::Offered, noted(Allocating, &["offer_made"])),
            row("offered, stepped up meanwhile: ignored", SteppedUp, P, Ev::Offered, noted(SteppedUp, &["ignored"])),
            row("waiting, ready: waiting for a provider", ReadyForAllocation, P, Ev::Waiting, fx(WaitingForProvider, &["transition"], &[CHANGED], &[], ALL_CLOCKS)),
            row("waiting, every offer declined: waiting for a provider", Allocating, P, Ev::Waiting, fx(WaitingForProvider, &["transition"], &[CHANGED], &[], ALL_CLOCKS)),
            row("waiting, closed meanwhile: ignored", ClosedWithdrawn, P, Ev::Waiting, noted(ClosedWithdrawn, &["ignored"])),
            row("accepted, allocating: allocated, the assessment clock starts", Allocating, P, Ev::Accepted, fx(Allocated, &["transition"], &[CHANGED], &[ASSESSMENT_DUE], NOT_ALLOCATED_CLOCKS)),
            row("accepted before its offer was handled: allocated", ReadyForAllocation, P, Ev::Accepted, fx(Allocated, &["transition"], &[CHANGED], &[ASSESSMENT_DUE], NOT_ALLOCATED_CLOCKS)),
            row("accepted before the offer that ended the wait: allocated", WaitingForProvider, P, Ev::Accepted, fx(Allocated, &["transition"], &[CHANGED], &[ASSESSMENT_DUE], NOT_ALLOCATED_CLOCKS)),
            row("offered, handled after its acceptance: ignored", Allocated, P, Ev::Offered, noted(Allocated, &["ignored"])),
            row("assessment opened, allocated: assessment_open", Allocated, P, Ev::AssessmentOpened(1), fx(AssessmentOpen, &["transition"], &[CHANGED], &[], NOT_ASSESSING_CLOCKS)),
            row("assessment finalised: assessed, its clock stops", AssessmentOpen, P, Ev::AssessmentFinalised(1), fx(Assessed, &["transition"], &[CHANGED], &[], ASSESSED_CLOCKS)),
            row("assessment finalised before opened was handled: assessed", Allocated, P, Ev::AssessmentFinalised(1), fx(Assessed, &["transition"], &[CHANGED], &[], ASSESSED_CLOCKS)),
            row("assessment opened, handled after finalised: noted", Assessed, P, Ev::AssessmentOpened(1), noted(Assessed, &["assessment_opened"])),
            row("assessment amended: a new version noted", Assessed, P, Ev::AssessmentOpened(2), noted(Assessed, &["assessment_opened"])),
            row("amended version finalised: noted", Assessed, P, Ev::AssessmentFinalised(2), noted(Assessed, &["assessment_finalised"])),
            row("assessment opened, stepped up meanwhile: ignored", SteppedUp, P, Ev::AssessmentOpened(1), noted(SteppedUp, &["ignored"])),
            row("assessment late: breach, alert", AssessmentOpen, P, Ev::Clock(Assessment),
                Want::Fx { state: AssessmentOpen, timeline: &["service_level_breached"], publish: &["service_level_breached"], set: &[], cancel: &[], alerts: 1 }),
            row("assessment clock, assessed since: stale", Assessed, P, Ev::Clock(Assessment), Want::Stale),
            row("first contact late while assessing: breach", AssessmentOpen, P, Ev::Clock(FirstContact),
                Want::Fx { state: AssessmentOpen, timeline: &["service_level_breached"], publish: &["service_level_breached"], set: &[], cancel: &[], alerts: 1 }),
            row("StepUp, assessed", Assessed, P, Ev::Practitioner(SteppedUp), stepped_up(&["transition"])),
            // Assessment's plan, reviews, closure and follow-up.
            row("plan agreed, assessed: plan_agreed", Assessed, P, Ev::PlanAgreed(1), fx(PlanAgreed, &["transition"], &[CHANGED], &[], ASSESSED_CLOCKS)),
            row("plan agreed before finalised was handled: plan_agreed", AssessmentOpen, P, Ev::PlanAgreed(1), fx(PlanAgreed, &["transition"], &[CHANGED], &[], ASSESSED_CLOCKS)),
            row("plan's next version: noted", PlanAgreed, P, Ev::PlanAgreed(2), noted(PlanAgreed, &["plan_agreed"])),
            row("plan agreed, handled after a review: noted", InReview, P, Ev::PlanAgreed(1), noted(InReview, &["plan_agreed"])),
            row("plan agreed, stepped up meanwhile: ignored", SteppedUp, P, Ev::PlanAgreed(1), noted(SteppedUp, &["ignored"])),
            row("reviewed, plan agreed: in_review", PlanAgreed, P, Ev::Reviewed, fx(InReview, &["transition"], &[CHANGED], &[], ASSESSED_CLOCKS)),
            row("reviewed again: noted", InReview, P, Ev::Reviewed, noted(InReview, &["review_recorded"])),
            row("reviewed, closed meanwhile: ignored", ClosedOutcomesMet, P, Ev::Reviewed, noted(ClosedOutcomesMet, &["ignored"])),
            row("closed with every outcome met", InReview, P, Ev::Closure("outcomes_met"), closed(ClosedOutcomesMet, &["transition"])),
            row("closed with outcomes not met, assessed", Assessed, P, Ev::Closure("outcomes_not_met"), closed(ClosedOutcomesNotMet, &["transition"])),
            row("closed and stepped down, plan agreed", PlanAgreed, P, Ev::Closure("stepped_down"), closed(ClosedSteppedDown, &["transition"])),
            row("closure, stepped up meanwhile: ignored", SteppedUp, P, Ev::Closure("outcomes_met"), noted(SteppedUp, &["ignored"])),
            row("closure of an unknown kind: refused", InReview, P, Ev::Closure("finished"), Want::Refused("unknown closure kind \"finished\"")),
            row("follow-up due: noted on the closed case", ClosedOutcomesMet, P, Ev::FollowUpDue, noted(ClosedOutcomesMet, &["follow_up_due"])),
            row("follow-up answered: noted on the closed case", ClosedOutcomesMet, P, Ev::FollowUpRecorded(false), noted(ClosedOutcomesMet, &["follow_up_recorded"])),
            row("follow-up, needs help again: a new request through the front door", ClosedOutcomesMet, P, Ev::FollowUpRecorded(true), fx(ClosedOutcomesMet, &["follow_up_recorded"], &["cmd.refer_again"], &[], &[])),
            row("StepUp, in review", InReview, P, Ev::Practitioner(SteppedUp), stepped_up(&["transition"])),
            row("first contact late with a plan: breach", PlanAgreed, P, Ev::Clock(FirstContact),
                Want::Fx { state: PlanAgreed, timeline: &["service_level_breached"], publish: &["service_level_breached"], set: &[], cancel: &[], alerts: 1 }),
            row("lead named, allocated: first-contact clock", Allocated, P, Ev::LeadNamed,
                fx(Allocated, &["lead_practitioner_named"], &["lead_assigned"], &[(FirstContact, "2026-03-10T00:00:00Z")], &[])),
            row("lead named, stepped up meanwhile: ignored", SteppedUp, P, Ev::LeadNamed, noted(SteppedUp, &["ignored"])),
            row("lead declined: noted", Allocated, P, Ev::LeadDeclined, noted(Allocated, &["lead_practitioner_declined"])),
            row("first contact late: breach, alert", Allocated, P, Ev::Clock(FirstContact),
                Want::Fx { state: Allocated, timeline: &["service_level_breached"], publish: &["service_level_breached"], set: &[], cancel: &[], alerts: 1 }),
            row("first-contact clock, closed since: stale", ClosedWithdrawn, P, Ev::Clock(FirstContact), Want::Stale),
            row("declined, allocating: noted", Allocating, P, Ev::Declined, noted(Allocating, &["offer_declined"])),
            row("lapsed unanswered, allocating: noted", Allocating, P, Ev::Expired, noted(Allocating, &["offer_expired"])),
            row("waiting too long: a breach", WaitingForProvider, P, Ev::WaitingBreached,
                Want::Fx { state: WaitingForProvider, timeline: &["service_level_breached"], publish: &["service_level_breached"], set: &[], cancel: &[], alerts: 1 }),
            row("waiting too long, allocated meanwhile: ignored", Allocated, P, Ev::WaitingBreached, noted(Allocated, &["ignored"])),
            row("StepUp, allocated", Allocated, P, Ev::Practitioner(SteppedUp), stepped_up(&["transition"])),
            row("close as withdrawn, waiting", WaitingForProvider, P, Ev::Practitioner(ClosedWithdrawn), closed(ClosedWithdrawn, &["transition"])),
        ]
    }

    fn fires(fx: Effects) -> Clock {
        Clock::Fires(Box::new(fx))
    }

    /// Runs a row's event against its case under `at`.
    fn decide_row(r: &Row, at: &At<'_>) -> Result<Clock, Refusal> {
        let c = case(r.state, r.route);
        let one = |fx: Vec<Effects>| {
            assert_eq!(fx.len(), 1, "{}: one case, one set of effects", r.name);
            fires(fx.into_iter().next().expect("one"))
        };
        match r.ev {
            Ev::Opens {
                harm,
                route,
                consent,
                on_record,
            } => {
                let ev = referral("ref-1", Some(harm), Some(consent), route);
                let c = case_from_referral("worcs", "case-1".into(), &ev, at.now);
                case_opened(c, &ev, on_record, at).map(fires)
            }
            Ev::Further { harm, consent } => {
                let ev = referral("ref-2", Some(harm), Some(consent), P);
                further_referral(c, &ev, at).map(fires)
            }
            Ev::Recorded { held } => {
                let ev = recorded(if held { &["assessment"] } else { &["sharing"] });
                consent_recorded(vec![c], &ev, held, at).map(one)
            }
            Ev::Withdrawn { held } => consent_withdrawn(vec![c], &withdrawn(), held, at).map(one),
            Ev::Screened(outcome) => screening_decided(c, &screened(outcome), at).map(fires),
            Ev::Clock(kind) => {
                clock_ran_out(c, kind, t("2026-03-02T00:00:00Z"), Some(t(CLOSE_DUE.1)), at)
            }
            Ev::Practitioner(to) => {
                practitioner_step(c, to, "user:worcs:jdoe", "worried about the children", at)
                    .map(fires)
            }
            Ev::Offered
            | Ev::Waiting
            | Ev::Accepted
            | Ev::Declined
            | Ev::Expired
            | Ev::WaitingBreached
            | Ev::LeadNamed
            | Ev::LeadDeclined
            | Ev::AssessmentOpened(_)
            | Ev::AssessmentFinalised(_)
            | Ev::PlanAgreed(_)
            | Ev::Reviewed
            | Ev::Closure(_)
            | Ev::FollowUpDue
            | Ev::FollowUpRecorded(_) => {
                let step = match r.ev {
                    Ev::PlanAgreed(version) => AllocationStep::PlanAgreed {
                        version,
                        outcomes: 2,
                        actions: 4,
                    },
                    Ev::Reviewed => AllocationStep::Reviewed { number: 1 },
                    Ev::Closure(kind) => AllocationStep::ClosureRecorded {
                        kind: kind.into(),
                        met: 2,
                        outcomes: 2,
                        follow_up_due: "2026-09-02T09:00:00+00:00".into(),
                    },
                    Ev::FollowUpDue => AllocationStep::FollowUpDue,
                    Ev::FollowUpRecorded(again) => AllocationStep::FollowUpRecorded {
                        sustained: !again,
                        needs_help_again: again,
                    },
                    Ev::AssessmentOpened(version) => AllocationStep::AssessmentOpened { version },
                    Ev::AssessmentFinalised(version) => AllocationStep::AssessmentFinalised {
                        version,
                        contributions: 3,
                    },
                    Ev::LeadNamed => AllocationStep::LeadNamed {
                        practitioner: "jdoe".into(),
                        organization_id: "org-4".into(),
                        service: "Family Support North".into(),
                    },
                    Ev::LeadDeclined => AllocationStep::LeadDeclined {
                        practitioner: "jdoe".into(),
                        reason: "caseload_full".into(),
                    },
                    Ev::Expired => AllocationStep::Expired {
                        service: "Family Support North".into(),
                        respond_by: "2026-03-04T00:00:00Z".into(),
                    },
                    Ev::WaitingBreached => AllocationStep::WaitingBreached {
                        waiting_since: "2026-02-02T10:00:00Z".into(),
                        limit_days: 20,
                        due_at: "2026-03-03T00:00:00Z".into(),
                    },
                    Ev::Offered => AllocationStep::Offered {
                        service: "Family Support North".into(),
                        attempt: 1,
                        rule_version: "worcs-1".into(),
                    },
                    Ev::Waiting => AllocationStep::Waiting {
                        position: 2,
                        significant_need: true,
                    },
                    Ev::Accepted => AllocationStep::Accepted {
                        service: "Family Support North".into(),
                    },
                    _ => AllocationStep::Declined {
                        service: "Family Support North".into(),
                        reason: "no_capacity".into(),
                    },
                };
                allocation_step(c, &step, at).map(fires)
            }
        }
    }

    #[test]
    fn the_table() {
        let rules = rules();
        let at = At {
            now: now(),
            council: Some(&rules),
        };
        let table = table();
        for r in &table {
            let got = decide_row(r, &at);
            match (&r.want, got) {
                (
                    Want::Fx {
                        state,
                        timeline,
                        publish,
                        set,
                        cancel,
                        alerts,
                    },
                    Ok(Clock::Fires(fx)),
                ) => {
                    let name = r.name;
                    assert_eq!(fx.case.state, *state, "{name}: state");
                    let kinds: Vec<&str> = fx.timeline.iter().map(|e| e.kind).collect();
                    assert_eq!(kinds, *timeline, "{name}: timeline");
                    let names: Vec<&str> = fx.publish.iter().map(|o| o.spec().name).collect();
                    assert_eq!(names, *publish, "{name}: published");
                    let want_set: Vec<(TimerKind, DateTime<Utc>)> =
                        set.iter().map(|&(k, due)| (k, t(due))).collect();
                    assert_eq!(fx.set_timers, want_set, "{name}: clocks set");
                    assert_eq!(fx.cancel_timers, *cancel, "{name}: clocks cancelled");
                    assert_eq!(fx.alerts.len(), *alerts, "{name}: alerts");
                    // A state change is stored (with its instant) exactly when there is one.
                    let moved = fx.case.state != r.state;
                    assert_eq!(fx.new_state.is_some(), moved, "{name}: state stored");
                    if moved {
                        assert_eq!(fx.case.updated_at, now(), "{name}: updated");
                    }
                    assert_eq!(fx.at, now(), "{name}: instant");
                }
                (Want::Stale, Ok(Clock::Stale)) => {}
                (Want::Refused(why), Err(e)) => assert_eq!(e.to_string(), *why, "{}", r.name),
                (want, got) => panic!("{}: wanted {want:?}, got {got:?}", r.name),
            }
        }
        assert_eq!(table.len(), 112, "rows");
    }

    /// Whatever a decision moves a case to, the clocks it leaves behind are cancelled and the
    /// ones it starts run in the new state, later than now; a decision that does not move the
    /// case cancels none and starts only its current state's.
    #[test]
    fn clocks_follow_the_state() {
        let rules = rules();
        let at = At {
            now: now(),
            council: Some(&rules),
        };
        for r in &table() {
            let Ok(Clock::Fires(fx)) = decide_row(r, &at) else {
                continue;
            };
            let Some(to) = fx.new_state else {
                // Without a move, nothing is cancelled, and a clock starts only in the state it
                // runs in (the lead named starts the first-contact clock of an allocated case).
                assert!(fx.cancel_timers.is_empty(), "{}", r.name);
                for (k, due) in &fx.set_timers {
                    assert!(k.runs_in(fx.case.state), "{}", r.name);
                    assert!(*due > now(), "{}", r.name);
                }
                continue;
            };
            let left: Vec<TimerKind> = TimerKind::ALL
                .into_iter()
                .filter(|k| !k.runs_in(to))
                .collect();
            assert_eq!(fx.cancel_timers, left, "{}", r.name);
            for (k, due) in &fx.set_timers {
                assert!(k.runs_in(to), "{}", r.name);
                assert!(*due > now(), "{}", r.name);
            }
            // Every state change is announced, first, with both states.
            match &fx.publish[0] {
                Outgoing::StateChanged(m) => {
                    assert_eq!(m.to_state, to.as_str(), "{}", r.name);
                    assert_eq!(m.at, now().to_rfc3339(), "{}", r.name);
                }
                other => panic!("{}: first published {other:?}", r.name),
            }
        }
    }

    /// First contact stops the first-contact clock of an allocated case, on the timeline by the
    /// practitioner; before allocation it is refused.
    #[test]
    fn first_contact_stops_its_clock_only_once_allocated() {
        let rules = rules();
        let at = At {
            now: now(),
            council: Some(&rules),
        };
        let fx = first_contact(case(Allocated, P), "person:fsw-7", "home visit", &at).unwrap();
        assert_eq!(fx.cancel_timers, [FirstContact]);
        assert!(fx.new_state.is_none() && fx.publish.is_empty());
        assert_eq!(
            (fx.timeline[0].kind, fx.timeline[0].actor.as_str()),
            ("first_contact", "person:fsw-7")
        );
        let refused = first_contact(case(Allocating, P), "person:fsw-7", "phone", &at).unwrap_err();
        assert!(
            refused.to_string().contains("once the case is allocated"),
            "{refused}"
        );
    }

    /// Every clock in every state: it fires only in the state it runs in.
    #[test]
    fn a_clock_fires_only_in_its_state() {
        let rules = rules();
        let at = At {
            now: now(),
            council: Some(&rules),
        };
        for kind in TimerKind::ALL {
            for state in State::ALL {
                let got = clock_ran_out(case(state, P), kind, now(), None, &at);
                if kind.runs_in(state) {
                    assert!(matches!(got, Ok(Clock::Fires(_))), "{kind:?} in {state}");
                } else {
                    assert_eq!(got, Ok(Clock::Stale), "{kind:?} in {state}");
                }
            }
        }
    }

    /// Consent events decide for every open case of the family, each on its own.
    #[test]
    fn consent_decides_for_each_open_case() {
        let rules = rules();
        let at = At {
            now: now(),
            council: Some(&rules),
        };
        let mut second = case(AwaitingConsent, SD);
        second.id = "case-2".into();
        let cases = vec![case(AwaitingConsent, P), second.clone(), case(Screening, P)];
        let got = consent_recorded(cases.clone(), &recorded(&["assessment"]), true, &at)
            .expect("decided");
        let states: Vec<(String, State)> = got
            .iter()
            .map(|f| (f.case.id.clone(), f.case.state))
            .collect();
        assert_eq!(
            states,
            vec![
                ("case-1".into(), Screening),
                ("case-2".into(), ReadyForAllocation),
                ("case-1".into(), Screening)
            ]
        );
        assert_eq!(
            got[2].new_state, None,
            "the case in screening only notes it"
        );
        let closed = consent_withdrawn(cases, &withdrawn(), false, &at).expect("decided");
        assert!(closed.iter().all(|f| f.case.state == ClosedWithdrawn));
        assert!(
            consent_recorded(vec![], &recorded(&["assessment"]), true, &at)
                .expect("decided")
                .is_empty(),
            "no open case: nothing to do"
        );
    }

    #[test]
    fn a_new_case_is_the_referral() {
        let ev = referral("ref-9", Some(false), Some(false), SD);
        let c = case_from_referral("worcs", "case-9".into(), &ev, now());
        assert_eq!(c.id, "case-9");
        assert_eq!(c.tenant, "worcs");
        assert_eq!(c.family_id, "fam-1");
        assert_eq!(c.referral_id, "ref-9");
        assert_eq!(c.route, SD);
        assert_eq!(c.state, Requested);
        assert_eq!(
            (c.source_system.as_str(), c.source_reference.as_str()),
            ("hub", "src-ref-9")
        );
        assert_eq!(c.referrer.name, "A Teacher");
        assert_eq!(c.referrer.email, "teacher@school.example");
        assert_eq!(c.referrer.relationship, "referrer");
        assert_eq!(c.referrer_agency, "school");
        assert_eq!(c.family_contacts.len(), 2);
        assert_eq!(c.family_contacts[0].name, "Jo Bloggs");
        assert!(c.family_contacts[0].safe_to_contact);
        assert!(c.family_contacts[0].parental_responsibility);
        // Unsafe to contact only when the referral says so; no email stays empty.
        assert!(!c.family_contacts[1].safe_to_contact);
        assert!(!c.family_contacts[1].parental_responsibility);
        assert_eq!(c.family_contacts[1].email, "");
        assert_eq!(c.needs, vec!["housing".to_string()]);
        assert_eq!(c.postcode, "WR1 1AA");
        assert!(c.programmes_met.is_empty());
        assert_eq!((c.opened_at, c.updated_at), (now(), now()));
        // A referral with nothing but ids still makes a case (empty fields), never a panic.
        let bare = ReferralReceived {
            referral_id: "ref-0".into(),
            family_id: "fam-0".into(),
            ..Default::default()
        };
        let c = case_from_referral("worcs", "case-0".into(), &bare, now());
        assert_eq!((c.route.as_str(), c.postcode.as_str()), ("", ""));
        assert!(!significant_harm(&bare) && !referral_records_consent(&bare));
    }

    /// The journey of issue 15: the first referral gives the father's email; a further one
    /// marks him unsafe without it. The case keeps his address on a contact now unsafe, says so
    /// on its timeline (ids only), and the consent chase asks only the mother.
    #[test]
    fn a_further_referral_makes_a_contact_unsafe_for_every_later_message() {
        let rules = rules();
        let at = At {
            now: now(),
            council: Some(&rules),
        };
        let ids = |ev: &mut ReferralReceived| {
            ev.family_members = ["p-jo", "p-sam"]
                .iter()
                .map(|id| intake::PersonRef {
                    person_id: (*id).into(),
                    ..Default::default()
                })
                .collect();
        };
        let mut first = referral("ref-1", None, None, P);
        ids(&mut first);
        let father = &mut first.referral.as_mut().expect("referral").family_members[1];
        father.email = Some("sam@away.example".into());
        father.safe_to_contact = Some(true);
        father.parental_responsibility = Some(true);
        let mut case = case_from_referral("worcs", "case-1".into(), &first, now());
        case.state = AwaitingConsent;
        assert!(case.family_contacts.iter().all(|c| c.safe_to_contact));

        let mut second = referral("ref-2", None, None, P);
        ids(&mut second);
        let fx = further_referral(case, &second, &at).expect("decided");
        assert!(fx.contacts_changed);
        let sam = &fx.case.family_contacts[1];
        assert_eq!(
            (
                sam.person_id.as_str(),
                sam.email.as_str(),
                sam.safe_to_contact
            ),
            ("p-sam", "sam@away.example", false)
        );
        let note = fx
            .timeline
            .iter()
            .find(|e| e.kind == "contact_unsafe")
            .expect("noted");
        assert!(note.reason.contains("p-sam") && note.reason.contains("ref-2"));
        assert!(!note.reason.contains("Sam") && !note.reason.contains('@'));

        // A third referral that says nothing of it does not clear the flag.
        let mut third = referral("ref-3", None, None, P);
        ids(&mut third);
        third.referral.as_mut().expect("referral").family_members[1].safe_to_contact = None;
        let fx = further_referral(fx.case, &third, &at).expect("decided");
        assert!(!fx.case.family_contacts[1].safe_to_contact);
        assert!(fx.timeline.iter().all(|e| e.kind != "contact_unsafe"));

        // The chase carries the contact as unsafe.
        let Clock::Fires(chased) =
            clock_ran_out(fx.case, ConsentChase, now(), None, &at).expect("decided")
        else {
            panic!("the chase fires");
        };
        let Some(Outgoing::ConsentRequested(asked)) = chased.publish.first() else {
            panic!("consent requested: {:?}", chased.publish);
        };
        let family: Vec<(&str, bool)> = asked
            .family
            .iter()
            .map(|c| (c.person_id.as_str(), c.safe_to_contact))
            .collect();
        assert_eq!(family, [("p-jo", true), ("p-sam", false)]);

        // A new case for the family (the first one closed) keeps the flag too.
        let again = case_for_family("worcs", "case-2".into(), &third, &asked.family, now());
        assert!(!again.family_contacts[1].safe_to_contact);
    }

    /// Payloads, reasons and actors — what the table's summary leaves out.
    #[test]
    fn what_is_published() {
        let rules = rules();
        let at = At {
            now: now(),
            council: Some(&rules),
        };
        // Significant harm in the referral: the front door is told it is significant harm.
        let ev = referral("ref-1", Some(true), None, P);
        let fx = case_opened(
            case_from_referral("worcs", "case-1".into(), &ev, now()),
            &ev,
            false,
            &at,
        )
        .expect("decided");
        assert_eq!(fx.actor, ACTOR);
        let Outgoing::SteppedUp(up) = &fx.publish[1] else {
            panic!("{:?}", fx.publish)
        };
        assert!(up.significant_harm_risk);
        assert_eq!(
            up.reason,
            "the referral reports a risk of significant harm: stepped up to the front door at once"
        );
        assert_eq!(up.case.as_ref().map(|c| c.case_id.as_str()), Some("case-1"));
        assert_eq!(
            fx.timeline[0].reason,
            "referral ref-1 from hub (src-ref-1), route practitioner"
        );
        // A practitioner's step-up is not marked significant harm, and is theirs.
        let fx = practitioner_step(
            case(Screening, P),
            SteppedUp,
            "user:worcs:jdoe",
            "worried",
            &at,
        )
        .expect("decided");
        let Outgoing::SteppedUp(up) = &fx.publish[1] else {
            panic!("{:?}", fx.publish)
        };
        assert!(!up.significant_harm_risk);
        assert_eq!(up.reason, "worried");
        assert_eq!(fx.actor, "user:worcs:jdoe");
        assert_eq!(fx.timeline[0].actor, "user:worcs:jdoe");
        // Screening found significant harm: marked so.
        let fx = screening_decided(
            case(Screening, P),
            &screened("step_up_significant_harm"),
            &at,
        )
        .expect("decided");
        let Outgoing::SteppedUp(up) = &fx.publish[1] else {
            panic!("{:?}", fx.publish)
        };
        assert!(up.significant_harm_risk);
        assert_eq!(
            up.reason,
            "step_up_significant_harm (rules worcs-2026-04): in area; two needs"
        );
        // Accepted: the programmes are stored and travel with the case.
        let fx = screening_decided(
            case(Screening, P),
            &screened("accepted_for_early_help"),
            &at,
        )
        .expect("decided");
        assert_eq!(fx.programmes, Some(vec!["brfc".to_string()]));
        let Outgoing::ReadyForAllocation(ready) = &fx.publish[1] else {
            panic!("{:?}", fx.publish)
        };
        assert_eq!(ready.programmes_met, vec!["brfc".to_string()]);
        assert_eq!(
            ready.needs,
            vec!["housing".to_string(), "school_attendance".to_string()]
        );
        assert_eq!(ready.postcode, "WR1 1AA");
        // Advice: the advice is the reason the case closed.
        let fx = screening_decided(case(Screening, P), &screened("advice_and_signpost"), &at)
            .expect("decided");
        let Outgoing::Closed(closed) = &fx.publish[1] else {
            panic!("{:?}", fx.publish)
        };
        assert_eq!(closed.outcome, "closed_advice_given");
        assert_eq!(closed.reason, "advice and signposting: see the family hub");
        // More information: what is missing, on the timeline.
        let fx = screening_decided(
            case(Screening, P),
            &screened("more_information_needed"),
            &at,
        )
        .expect("decided");
        assert_eq!(
            fx.timeline[1].reason,
            "more information needed: /children/0/date_of_birth, /address"
        );
        assert_eq!(fx.programmes, None);
        // Screening asked of intake for the case's own referral; the request is casework's.
        let fx = consent_recorded(
            vec![case(AwaitingConsent, P)],
            &recorded(&["assessment"]),
            true,
            &at,
        )
        .expect("decided")
        .remove(0);
        assert_eq!(
            fx.publish[1],
            Outgoing::ScreenReferral(ScreenReferral {
                case_id: "case-1".into(),
                referral_id: "ref-1".into()
            })
        );
        assert_eq!(
            fx.timeline[0].reason,
            "consent record rec-1 given by Jo Bloggs (signed)"
        );
        assert_eq!(fx.timeline[2].actor, ACTOR);
        // Consent that does not cover receiving help says so.
        let fx = consent_recorded(
            vec![case(AwaitingConsent, P)],
            &recorded(&["sharing"]),
            false,
            &at,
        )
        .expect("decided")
        .remove(0);
        assert_eq!(
            fx.timeline[0].reason,
            "consent record rec-1 given by Jo Bloggs (signed); it does not cover receiving Early Help (assessment)"
        );
        // Withdrawal: who and why.
        let fx = consent_withdrawn(vec![case(Screening, P)], &withdrawn(), false, &at)
            .expect("decided")
            .remove(0);
        assert_eq!(
            fx.timeline[0].reason,
            "consent record rec-1 withdrawn by Jo Bloggs: moving away"
        );
        let fx = consent_withdrawn(vec![case(Screening, P)], &withdrawn(), true, &at)
            .expect("decided")
            .remove(0);
        assert_eq!(
            fx.timeline[0].reason,
            "consent record rec-1 withdrawn by Jo Bloggs: moving away (other consent remains)"
        );
    }

    #[test]
    fn clocks_that_run_out() {
        let rules = rules();
        let at = At {
            now: t("2026-03-04T00:00:05Z"),
            council: Some(&rules),
        };
        let due = t(SCREENING_DUE.1);
        let Ok(Clock::Fires(fx)) =
            clock_ran_out(case(Screening, P), ScreeningDecision, due, None, &at)
        else {
            panic!("fires")
        };
        assert_eq!(
            fx.publish,
            vec![Outgoing::ServiceLevelBreached(pb::ServiceLevelBreached {
                case: Some(case(Screening, P).case_ref()),
                clock: "screening_decision".into(),
                due_at: "2026-03-04T00:00:00+00:00".into(),
                state: "screening".into(),
                at: "2026-03-04T00:00:05+00:00".into(),
            })]
        );
        assert_eq!(
            fx.alerts,
            vec![Alert::ServiceLevelBreached {
                tenant: "worcs".into(),
                clock: ScreeningDecision.as_str()
            }]
        );
        assert_eq!(
            fx.timeline[0].reason,
            "no screening decision within 1 working day(s) (due 2026-03-04T00:00:00+00:00)"
        );
        assert_eq!(fx.new_state, None, "a breach does not move the case");
        // The chase asks the family again, saying when the case will close.
        let Ok(Clock::Fires(fx)) = clock_ran_out(
            case(AwaitingConsent, P),
            ConsentChase,
            t(CHASE_DUE.1),
            Some(t(CLOSE_DUE.1)),
            &at,
        ) else {
            panic!("fires")
        };
        let Outgoing::ConsentRequested(asked) = &fx.publish[0] else {
            panic!("{:?}", fx.publish)
        };
        assert_eq!(asked.close_due_at, "2026-03-30T23:00:00+00:00");
        assert_eq!(asked.family, case(AwaitingConsent, P).family_contacts);
        assert_eq!(
            fx.timeline[0].reason,
            "consent still outstanding after 5 working days: the family is asked again"
        );
        // No close clock on record: the request says nothing of closing.
        let Ok(Clock::Fires(fx)) = clock_ran_out(
            case(AwaitingConsent, P),
            ConsentChase,
            t(CHASE_DUE.1),
            None,
            &at,
        ) else {
            panic!("fires")
        };
        let Outgoing::ConsentRequested(asked) = &fx.publish[0] else {
            panic!("{:?}", fx.publish)
        };
        assert_eq!(asked.close_due_at, "");
        let Ok(Clock::Fires(fx)) = clock_ran_out(
            case(AwaitingConsent, P),
            ConsentClose,
            t(CLOSE_DUE.1),
            None,
            &at,
        ) else {
            panic!("fires")
        };
        assert_eq!(fx.timeline[0].reason, "no consent within 20 working days");
        assert_eq!(fx.actor, ACTOR);
    }

    /// A council no longer in the settings: whatever needs its rules (a state change, a clock)
    /// is refused, so nothing is half done; a note or a stale clock still goes through.
    #[test]
    fn an_unknown_council() {
        let at = At {
            now: now(),
            council: None,
        };
        let refused = Refusal::UnknownCouncil("worcs".into());
        let ev = referral("ref-1", Some(true), None, P);
        let opened = case_from_referral("worcs", "case-1".into(), &ev, now());
        assert_eq!(
            case_opened(opened, &ev, false, &at).err(),
            Some(refused.clone())
        );
        assert_eq!(
            practitioner_step(case(Screening, P), ClosedAdviceGiven, "user:x", "done", &at).err(),
            Some(refused.clone())
        );
        assert_eq!(
            clock_ran_out(case(Screening, P), ScreeningDecision, now(), None, &at).err(),
            Some(refused)
        );
        assert_eq!(
            clock_ran_out(
                case(AwaitingConsent, P),
                ScreeningDecision,
                now(),
                None,
                &at
            ),
            Ok(Clock::Stale)
        );
        let noted = further_referral(case(Screening, P), &referral("ref-2", None, None, P), &at)
            .expect("a note needs no rules");
        assert_eq!(noted.new_state, None);
        assert!(!noted.contacts_changed, "the same people, nothing to store");
        assert_eq!(
            Refusal::UnknownCouncil("worcs".into()).to_string(),
            "unknown tenant \"worcs\""
        );
    }

    /// Deadlines in working days on the council's calendar, as UK midnights.
    #[test]
    fn working_day_deadlines() {
        let screening_due = |rules: &CouncilRules, at: &str| -> Result<DateTime<Utc>, Refusal> {
            let at = At {
                now: t(at),
                council: Some(rules),
            };
            let fx = consent_recorded(
                vec![case(AwaitingConsent, P)],
                &recorded(&["assessment"]),
                true,
                &at,
            )?
            .remove(0);
            assert_eq!(fx.set_timers.len(), 1);
            Ok(fx.set_timers[0].1)
        };
        let ew = rules();
        let cases = [
            // Friday afternoon: day one is Monday, overdue from Tuesday.
            ("2026-03-06T17:00:00Z", "2026-03-10T00:00:00Z"),
            // Saturday: day one is Monday too.
            ("2026-03-07T11:00:00Z", "2026-03-10T00:00:00Z"),
            // 23:30 UTC on Monday 1 June is 00:30 BST on Tuesday: day one is Wednesday.
            ("2026-06-01T23:30:00Z", "2026-06-03T23:00:00Z"),
            // 22:30 UTC is still Monday in the UK: day one is Tuesday.
            ("2026-06-01T22:30:00Z", "2026-06-02T23:00:00Z"),
            // Maundy Thursday: Good Friday and Easter Monday are not working days.
            ("2026-04-02T09:00:00Z", "2026-04-07T23:00:00Z"),
            // The last Saturday of October: the deadline is after the clocks go back.
            ("2026-10-24T12:00:00Z", "2026-10-27T00:00:00Z"),
        ];
        for (from, want) in cases {
            assert_eq!(screening_due(&ew, from), Ok(t(want)), "from {from}");
        }
        // The council's own closure day counts as no working day.
        let closed_tuesday = rules_with(Division::EnglandAndWales, &[(2026, 3, 3)], DEFAULT_LEVELS);
        assert_eq!(
            screening_due(&closed_tuesday, "2026-03-02T09:00:00Z"),
            Ok(t("2026-03-05T00:00:00Z"))
        );
        // Scotland keeps 2 January: from New Year's Eve, day one is Monday 5th, not Friday 2nd.
        let scotland = rules_with(Division::Scotland, &[], DEFAULT_LEVELS);
        assert_eq!(
            screening_due(&ew, "2025-12-31T10:00:00Z"),
            Ok(t("2026-01-03T00:00:00Z"))
        );
        assert_eq!(
            screening_due(&scotland, "2025-12-31T10:00:00Z"),
            Ok(t("2026-01-06T00:00:00Z"))
        );
        // The council's service level, not a fixed one.
        let three_days = rules_with(
            Division::EnglandAndWales,
            &[],
            ServiceLevels {
                screening_decision_days: 3,
                ..DEFAULT_LEVELS
            },
        );
        assert_eq!(
            screening_due(&three_days, "2026-03-02T09:00:00Z"),
            Ok(t("2026-03-06T00:00:00Z"))
        );
        // A deadline past the years the calendar knows is refused, not guessed.
        let late = At {
            now: t("2030-12-20T09:00:00Z"),
            council: Some(&ew),
        };
        let got = case_opened(
            case(Requested, P),
            &referral("ref-1", None, Some(false), P),
            false,
            &late,
        );
        assert!(matches!(got, Err(Refusal::Calendar(_))), "{got:?}");
        // …while a state that starts no clock still goes ahead then.
        let got = case_opened(
            case(Requested, P),
            &referral("ref-1", Some(true), None, P),
            false,
            &late,
        );
        assert!(got.is_ok(), "{got:?}");
    }

    #[test]
    fn consent_covers_receiving_help_only_for_assessment() {
        assert!(covers_receiving_help(&[
            "sharing".into(),
            "assessment".into()
        ]));
        assert!(!covers_receiving_help(&["sharing".into()]));
        assert!(!covers_receiving_help(&[]));
    }
}
