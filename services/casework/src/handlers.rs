//! Casework's core: every step of a case — the state change, its timeline entry, the clocks it
//! starts or cancels, and the events and commands it causes — commits in ONE transaction (with the
//! inbox claim, on the bus doors), under the family's lock.
use crate::domain::{self, IllegalTransition, Opening, State, TimerKind};
use crate::store::{self, CaseRow, DueTimer, Step};
use crate::{
    CONSUMER_CONSENT_RECORDED, CONSUMER_CONSENT_WITHDRAWN, CONSUMER_REFERRAL_RECEIVED,
    CONSUMER_REFERRAL_RECEIVED_URGENT, CONSUMER_SCREENING_DECIDED,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use eh_bus::batch::{Batcher, InSavepoints, SavepointWork};
use eh_bus::consumer::{Handled, HandlerError, Pending};
use eh_bus::{Envelope, OutboundMessage, Received, ServiceContext, inbox, subjects};
use eh_proto::casework::v1 as pb;
use eh_proto::catalogue::{self, EventSpec};
use eh_proto::consent::v1::{ConsentRecorded, ConsentWithdrawn};
use eh_proto::intake::v1::{ReferralReceived, ScreenReferral, ScreeningDecided};
use eh_store::Within;
use eh_workdays::WorkingCalendar;
use prost::Message;
use sea_orm::{DatabaseTransaction, DbErr};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The actor casework's own steps are recorded under.
pub const ACTOR: &str = "service:casework";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Db(#[from] DbErr),
    #[error("{0}")]
    Bus(#[from] eh_bus::Error),
    #[error("{0}")]
    Illegal(#[from] IllegalTransition),
    #[error("working days: {0}")]
    Calendar(#[from] eh_workdays::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    fn for_handler(self) -> HandlerError {
        match self {
            Error::Db(e) => HandlerError::db(&e),
            Error::Bus(e) => HandlerError::bus(&e),
            other => HandlerError::Permanent(other.to_string()),
        }
    }
}

/// Why a step happens.
#[derive(Debug, Clone, Copy)]
pub struct Why<'a> {
    pub actor: &'a str,
    pub reason: &'a str,
    /// The message that caused it (continues its trace and causation chain).
    pub cause: Option<&'a Received>,
}

impl<'a> Why<'a> {
    fn cause_id(&self) -> String {
        self.cause.map(|m| m.key()).unwrap_or_default()
    }
}

#[derive(Clone)]
pub struct Casework {
    pub ctx: ServiceContext,
    pub calendars: Arc<BTreeMap<String, WorkingCalendar>>,
    /// The bus doors' events waiting to be handled together (`eh_bus::batch`).
    batches: Batcher<InSavepoints<Casework>>,
}

/// The most events of one consumer handled in one transaction.
pub const MAX_BATCH: usize = 64;

impl Casework {
    pub fn new(ctx: ServiceContext, calendars: BTreeMap<String, WorkingCalendar>) -> Self {
        Self {
            ctx,
            calendars: Arc::new(calendars),
            batches: Batcher::new(MAX_BATCH),
        }
    }

    /// The working calendars of every tenant, checked.
    ///
    /// # Errors
    /// Names the tenant whose calendar is wrong.
    pub fn calendars(
        settings: &eh_platform::Settings,
    ) -> Result<BTreeMap<String, WorkingCalendar>, String> {
        settings
            .tenants
            .iter()
            .map(|(id, t)| {
                t.calendar
                    .working_calendar()
                    .map(|c| (id.clone(), c))
                    .map_err(|e| format!("tenants.{id}.calendar: {e}"))
            })
            .collect()
    }

    fn service_levels(&self, tenant: &str) -> Result<eh_platform::config::ServiceLevels, Error> {
        self.ctx
            .settings
            .tenants
            .get(tenant)
            .map(|t| t.service_levels.clone())
            .ok_or_else(|| Error::Invalid(format!("unknown tenant {tenant:?}")))
    }

    /// When something `days` working days from `from` is overdue, on the tenant's calendar.
    fn due(&self, tenant: &str, from: DateTime<Utc>, days: u32) -> Result<DateTime<Utc>, Error> {
        let cal = self
            .calendars
            .get(tenant)
            .ok_or_else(|| Error::Invalid(format!("unknown tenant {tenant:?}")))?;
        Ok(cal.overdue_from(from, days)?)
    }

    async fn emit(
        &self,
        txn: &DatabaseTransaction,
        tenant: &str,
        spec: &EventSpec,
        payload: Vec<u8>,
        why: &Why<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let env = Envelope::new(spec.payload, tenant, why.actor, now).caused_by(
            why.cause.and_then(|m| m.envelope()).as_ref(),
            &why.cause_id(),
        );
        let subject = spec.subject(self.ctx.namespace(), tenant);
        self.ctx
            .outbox
            .enqueue(txn, &OutboundMessage::event(subject, &env, payload))
            .await?;
        Ok(())
    }

    /// Moves `case` to `to` (refused when the state machine forbids it), records the step, settles
    /// the clocks, and emits what the new state means.
    pub async fn transition(
        &self,
        txn: &DatabaseTransaction,
        case: &mut CaseRow,
        to: State,
        why: &Why<'_>,
        significant_harm: bool,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let from = case.state;
        from.move_to(to)?;
        store::set_state(txn, &case.id, to, now).await?;
        case.state = to;
        case.updated_at = now;
        store::add_step(
            txn,
            &case.tenant,
            &case.id,
            now,
            &Step {
                kind: "transition",
                from: Some(from),
                to: Some(to),
                actor: why.actor,
                reason: why.reason,
                cause_id: &why.cause_id(),
            },
        )
        .await?;
        store::cancel_timers_outside(txn, &case.id, to, now).await?;
        let tenant = case.tenant.clone();
        let at = now.to_rfc3339();
        self.emit(
            txn,
            &tenant,
            &catalogue::CASE_STATE_CHANGED,
            pb::CaseStateChanged {
                case: Some(case.case_ref()),
                from_state: from.as_str().into(),
                to_state: to.as_str().into(),
                reason: why.reason.into(),
                at: at.clone(),
            }
            .encode_to_vec(),
            why,
            now,
        )
        .await?;
        let levels = self.service_levels(&tenant)?;
        match to {
            State::AwaitingConsent => {
                let chase = self.due(&tenant, now, levels.consent_chase_days)?;
                let close = self.due(&tenant, now, levels.consent_close_days)?;
                store::schedule_timer(txn, case, TimerKind::ConsentChase, chase).await?;
                store::schedule_timer(txn, case, TimerKind::ConsentClose, close).await?;
            }
            State::Screening => {
                let due = self.due(&tenant, now, levels.screening_decision_days)?;
                store::schedule_timer(txn, case, TimerKind::ScreeningDecision, due).await?;
                self.emit(
                    txn,
                    &tenant,
                    &catalogue::SCREEN_REFERRAL,
                    ScreenReferral {
                        case_id: case.id.clone(),
                        referral_id: case.referral_id.clone(),
                    }
                    .encode_to_vec(),
                    why,
                    now,
                )
                .await?;
                store::add_step(
                    txn,
                    &tenant,
                    &case.id,
                    now,
                    &Step {
                        kind: "screening_requested",
                        from: None,
                        to: None,
                        actor: ACTOR,
                        reason: "intake asked to screen the referral",
                        cause_id: &why.cause_id(),
                    },
                )
                .await?;
            }
            State::ReadyForAllocation => {
                self.emit(
                    txn,
                    &tenant,
                    &catalogue::CASE_READY_FOR_ALLOCATION,
                    pb::CaseReadyForAllocation {
                        case: Some(case.case_ref()),
                        needs: case.needs.clone(),
                        programmes_met: case.programmes_met.clone(),
                        postcode: case.postcode.clone(),
                        at: at.clone(),
                    }
                    .encode_to_vec(),
                    why,
                    now,
                )
                .await?;
            }
            State::SteppedUp => {
                self.emit(
                    txn,
                    &tenant,
                    &catalogue::CASE_STEPPED_UP,
                    pb::CaseSteppedUp {
                        case: Some(case.case_ref()),
                        reason: why.reason.into(),
                        significant_harm_risk: significant_harm,
                        at: at.clone(),
                    }
                    .encode_to_vec(),
                    why,
                    now,
                )
                .await?;
            }
            State::ClosedAdviceGiven | State::ClosedNoConsent | State::ClosedWithdrawn => {
                self.emit(
                    txn,
                    &tenant,
                    &catalogue::CASE_CLOSED,
                    pb::CaseClosed {
                        case: Some(case.case_ref()),
                        outcome: to.as_str().into(),
                        reason: why.reason.into(),
                        at,
                    }
                    .encode_to_vec(),
                    why,
                    now,
                )
                .await?;
            }
            State::Requested => {}
        }
        Ok(())
    }

    async fn note(
        &self,
        txn: &DatabaseTransaction,
        case: &CaseRow,
        kind: &str,
        why: &Why<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        store::add_step(
            txn,
            &case.tenant,
            &case.id,
            now,
            &Step {
                kind,
                from: None,
                to: None,
                actor: why.actor,
                reason: why.reason,
                cause_id: &why.cause_id(),
            },
        )
        .await?;
        Ok(())
    }

    /// Begins a transaction within `within` (a savepoint when that is a transaction itself) and
    /// claims `msg` in it; `None` (and nothing done) when the inbox already has it.
    async fn begin_claimed(
        &self,
        within: Within<'_>,
        consumer: &str,
        msg: &Received,
    ) -> Result<Option<DatabaseTransaction>, Error> {
        let txn = within.begin().await?;
        if !inbox::claim(&txn, consumer, &msg.key()).await? {
            txn.rollback().await?;
            return Ok(None);
        }
        Ok(Some(txn))
    }

    async fn finish(&self, within: Within<'_>, txn: DatabaseTransaction) -> Result<Handled, Error> {
        within.commit(txn).await?;
        self.ctx.outbox.committed();
        Ok(Handled::Done)
    }

    /// `referral_received` (claimed in `consumer`'s inbox: the ordinary lane's, or the urgent
    /// lane's for `referral_received.urgent`): opens a case, or attaches the referral to the
    /// family's open case. A referral is attached to one case once (`case_referrals`), so of the
    /// two events a significant-harm referral causes, whichever lane comes second finds it
    /// handled and does nothing.
    pub async fn on_referral(
        &self,
        within: Within<'_>,
        consumer: &str,
        tenant: &str,
        ev: &ReferralReceived,
        msg: &Received,
    ) -> Result<Handled, Error> {
        let Some(txn) = self.begin_claimed(within, consumer, msg).await? else {
            return Ok(Handled::Duplicate);
        };
        let now = self.ctx.clock.now();
        let r = ev.referral.clone().unwrap_or_default();
        let harm = r.significant_harm_risk == Some(true);
        let step_down = r.route == "step_down";
        let consent_in_referral = r.consent.as_ref().and_then(|c| c.obtained) == Some(true);
        lock_family(within, &txn, tenant, &ev.family_id).await?;
        let open = store::open_cases_of_family(&txn, tenant, &ev.family_id).await?;
        let source = r.source.clone().unwrap_or_default();
        if let Some(mut case) = open.into_iter().next() {
            if !store::attach_referral(&txn, tenant, &case.id, &ev.referral_id, now).await? {
                return self.finish(within, txn).await; // attached before (same referral again)
            }
            let reason = format!(
                "further referral {} from {} ({}) attached to the open case",
                ev.referral_id, source.system, source.reference
            );
            let why = Why {
                actor: ACTOR,
                reason: &reason,
                cause: Some(msg),
            };
            self.note(&txn, &case, "further_referral", &why, now)
                .await?;
            if harm {
                let why = Why {
                    reason: "a further referral reports a risk of significant harm: stepped up to the front door",
                    ..why
                };
                self.transition(&txn, &mut case, State::SteppedUp, &why, true, now)
                    .await?;
            } else if case.state == State::AwaitingConsent && consent_in_referral {
                let step_down = case.route == "step_down";
                let why = Why {
                    reason: "the further referral records the family's consent",
                    ..why
                };
                self.transition(
                    &txn,
                    &mut case,
                    domain::on_consent(step_down),
                    &why,
                    false,
                    now,
                )
                .await?;
            }
            return self.finish(within, txn).await;
        }
        let referrer = r.referrer.clone().unwrap_or_default();
        let family: Vec<pb::Contact> = r
            .family_members
            .iter()
            .map(|m| pb::Contact {
                name: format!("{} {}", m.given_name, m.family_name),
                email: m.email.clone().unwrap_or_default(),
                safe_to_contact: m.safe_to_contact != Some(false),
                relationship: m.relationship.clone(),
                parental_responsibility: m.parental_responsibility == Some(true),
            })
            .collect();
        let mut case = CaseRow {
            id: uuid::Uuid::now_v7().to_string(),
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
        };
        store::insert_case(&txn, &case).await?;
        if !store::attach_referral(&txn, tenant, &case.id, &ev.referral_id, now).await? {
            // The referral belongs to a case already (it was closed or stepped up since).
            txn.rollback().await?;
            let txn = self.begin_claimed(within, consumer, msg).await?;
            return match txn {
                Some(t) => self.finish(within, t).await,
                None => Ok(Handled::Duplicate),
            };
        }
        let opened = format!(
            "referral {} from {} ({}), route {}",
            ev.referral_id, source.system, source.reference, r.route
        );
        let why = Why {
            actor: ACTOR,
            reason: &opened,
            cause: Some(msg),
        };
        self.note(&txn, &case, "opened", &why, now).await?;
        let consent_held =
            consent_in_referral || store::consent_held(&txn, tenant, &ev.family_id).await?;
        let first = Opening {
            significant_harm_risk: harm,
            step_down,
            consent_held,
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
        let why = Why { reason, ..why };
        self.transition(&txn, &mut case, first, &why, harm, now)
            .await?;
        self.finish(within, txn).await
    }

    /// `consent_recorded`: cases waiting for consent move on.
    pub async fn on_consent_recorded(
        &self,
        within: Within<'_>,
        tenant: &str,
        ev: &ConsentRecorded,
        msg: &Received,
    ) -> Result<Handled, Error> {
        let record = ev.record.clone().unwrap_or_default();
        let consent = record.consent.clone().unwrap_or_default();
        if consent.family_id.is_empty() {
            return Err(Error::Invalid("consent_recorded without a family".into()));
        }
        let Some(txn) = self
            .begin_claimed(within, CONSUMER_CONSENT_RECORDED, msg)
            .await?
        else {
            return Ok(Handled::Duplicate);
        };
        let now = self.ctx.clock.now();
        lock_family(within, &txn, tenant, &consent.family_id).await?;
        let to_receive_help = consent.purposes.iter().any(|p| p == "assessment");
        store::record_consent(
            &txn,
            tenant,
            &record.record_id,
            &consent.family_id,
            &consent.person_id,
            to_receive_help,
            now,
        )
        .await?;
        if record.withdrawal.is_some() {
            store::withdraw_consent(
                &txn,
                tenant,
                &record.record_id,
                &consent.family_id,
                &consent.person_id,
                now,
            )
            .await?;
        }
        let held = store::consent_held(&txn, tenant, &consent.family_id).await?;
        for mut case in store::open_cases_of_family(&txn, tenant, &consent.family_id).await? {
            let note = format!(
                "consent record {} given by {} ({}){}",
                record.record_id,
                consent.given_by,
                if consent.method.is_empty() {
                    "method not stated"
                } else {
                    &consent.method
                },
                if to_receive_help {
                    ""
                } else {
                    "; it does not cover receiving Early Help (assessment)"
                }
            );
            let why = Why {
                actor: ACTOR,
                reason: &note,
                cause: Some(msg),
            };
            self.note(&txn, &case, "consent_recorded", &why, now)
                .await?;
            if held && case.state == State::AwaitingConsent {
                let why = Why {
                    reason: "consent received",
                    ..why
                };
                let to = domain::on_consent(case.route == "step_down");
                self.transition(&txn, &mut case, to, &why, false, now)
                    .await?;
            }
        }
        self.finish(within, txn).await
    }

    /// `consent_withdrawn`: when no consent remains, the family's open cases close.
    pub async fn on_consent_withdrawn(
        &self,
        within: Within<'_>,
        tenant: &str,
        ev: &ConsentWithdrawn,
        msg: &Received,
    ) -> Result<Handled, Error> {
        let w = ev.withdrawal.clone().unwrap_or_default();
        if ev.family_id.is_empty() {
            return Err(Error::Invalid("consent_withdrawn without a family".into()));
        }
        let Some(txn) = self
            .begin_claimed(within, CONSUMER_CONSENT_WITHDRAWN, msg)
            .await?
        else {
            return Ok(Handled::Duplicate);
        };
        let now = self.ctx.clock.now();
        lock_family(within, &txn, tenant, &ev.family_id).await?;
        store::withdraw_consent(
            &txn,
            tenant,
            &w.record_id,
            &ev.family_id,
            &ev.person_id,
            now,
        )
        .await?;
        let held = store::consent_held(&txn, tenant, &ev.family_id).await?;
        for mut case in store::open_cases_of_family(&txn, tenant, &ev.family_id).await? {
            let reason = format!(
                "consent record {} withdrawn by {}: {}",
                w.record_id, w.withdrawn_by, w.reason
            );
            let why = Why {
                actor: ACTOR,
                reason: &reason,
                cause: Some(msg),
            };
            if held || case.state == State::Requested {
                self.note(
                    &txn,
                    &case,
                    "consent_withdrawn",
                    &Why {
                        reason: &format!("{reason} (other consent remains)"),
                        ..why
                    },
                    now,
                )
                .await?;
            } else {
                self.transition(&txn, &mut case, State::ClosedWithdrawn, &why, false, now)
                    .await?;
            }
        }
        self.finish(within, txn).await
    }

    /// `screening_decided`: ready for allocation, closed with advice, or still screening.
    pub async fn on_screening(
        &self,
        within: Within<'_>,
        tenant: &str,
        ev: &ScreeningDecided,
        msg: &Received,
    ) -> Result<Handled, Error> {
        let to = domain::on_screening(&ev.outcome).map_err(Error::Invalid)?;
        let Some(txn) = self
            .begin_claimed(within, CONSUMER_SCREENING_DECIDED, msg)
            .await?
        else {
            return Ok(Handled::Duplicate);
        };
        let now = self.ctx.clock.now();
        let Some(found) = store::get_case(&txn, tenant, &ev.case_id).await? else {
            txn.rollback().await?;
            return Err(Error::Invalid(format!(
                "tenant {tenant} holds no case {}",
                ev.case_id
            )));
        };
        lock_family(within, &txn, tenant, &found.family_id).await?;
        let mut case = store::get_case(&txn, tenant, &ev.case_id)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(ev.case_id.clone()))?;
        let reasons = ev.reasons.join("; ");
        let summary = format!("{} (rules {}): {reasons}", ev.outcome, ev.rule_version);
        let why = Why {
            actor: ACTOR,
            reason: &summary,
            cause: Some(msg),
        };
        self.note(&txn, &case, "screening_decided", &why, now)
            .await?;
        match to {
            _ if case.state != State::Screening => {
                let r = format!("screening outcome ignored: the case is {}", case.state);
                self.note(&txn, &case, "ignored", &Why { reason: &r, ..why }, now)
                    .await?;
            }
            Some(State::ReadyForAllocation) => {
                store::set_programmes(&txn, &case.id, &ev.programmes_met).await?;
                case.programmes_met = ev.programmes_met.clone();
                self.transition(
                    &txn,
                    &mut case,
                    State::ReadyForAllocation,
                    &Why {
                        reason: "accepted for Early Help",
                        ..why
                    },
                    false,
                    now,
                )
                .await?;
            }
            Some(State::ClosedAdviceGiven) => {
                let r = format!("advice and signposting: {}", ev.advice);
                self.transition(
                    &txn,
                    &mut case,
                    State::ClosedAdviceGiven,
                    &Why { reason: &r, ..why },
                    false,
                    now,
                )
                .await?;
            }
            Some(other) => {
                self.transition(&txn, &mut case, other, &why, other == State::SteppedUp, now)
                    .await?;
            }
            None => {
                let r = format!("more information needed: {}", ev.missing.join(", "));
                self.note(
                    &txn,
                    &case,
                    "more_information_needed",
                    &Why { reason: &r, ..why },
                    now,
                )
                .await?;
            }
        }
        self.finish(within, txn).await
    }

    /// Fires one clock that ran out — once, even with several replicas: the family's lock and the
    /// conditional settle make a second firing find it settled and do nothing.
    pub async fn fire(&self, t: &DueTimer) -> Result<bool, Error> {
        let now = self.ctx.clock.now();
        let txn = eh_store::begin(&self.ctx.db).await?;
        store::lock_family(&txn, &t.tenant, &t.family_id).await?;
        let Some(mut case) = store::get_case(&txn, &t.tenant, &t.case_id).await? else {
            txn.rollback().await?;
            return Ok(false);
        };
        if case.state != t.kind.runs_in() {
            let settled = store::settle_timer(&txn, &t.id, "cancelled", now).await?;
            eh_store::commit(txn).await?;
            return Ok(settled);
        }
        if !store::settle_timer(&txn, &t.id, "fired", now).await? {
            txn.rollback().await?;
            return Ok(false);
        }
        let levels = self.service_levels(&t.tenant)?;
        match t.kind {
            TimerKind::ScreeningDecision => {
                let reason = format!(
                    "no screening decision within {} working day(s) (due {})",
                    levels.screening_decision_days,
                    t.due_at.to_rfc3339()
                );
                let why = Why {
                    actor: ACTOR,
                    reason: &reason,
                    cause: None,
                };
                self.note(&txn, &case, "service_level_breached", &why, now)
                    .await?;
                self.emit(
                    &txn,
                    &t.tenant,
                    &catalogue::SERVICE_LEVEL_BREACHED,
                    pb::ServiceLevelBreached {
                        case: Some(case.case_ref()),
                        clock: t.kind.as_str().into(),
                        due_at: t.due_at.to_rfc3339(),
                        state: case.state.as_str().into(),
                        at: now.to_rfc3339(),
                    }
                    .encode_to_vec(),
                    &why,
                    now,
                )
                .await?;
                self.ctx
                    .metrics
                    .service_level_breached(&t.tenant, t.kind.as_str());
            }
            TimerKind::ConsentChase => {
                let close = store::timers(&txn, &case.id)
                    .await?
                    .into_iter()
                    .find(|x| x.kind == TimerKind::ConsentClose.as_str())
                    .map(|x| x.due_at)
                    .unwrap_or_default();
                let reason = format!(
                    "consent still outstanding after {} working days: the family is asked again",
                    levels.consent_chase_days
                );
                let why = Why {
                    actor: ACTOR,
                    reason: &reason,
                    cause: None,
                };
                self.note(&txn, &case, "consent_chased", &why, now).await?;
                self.emit(
                    &txn,
                    &t.tenant,
                    &catalogue::CONSENT_REQUESTED,
                    pb::ConsentRequested {
                        case: Some(case.case_ref()),
                        family: case.family_contacts.clone(),
                        close_due_at: close,
                        at: now.to_rfc3339(),
                    }
                    .encode_to_vec(),
                    &why,
                    now,
                )
                .await?;
            }
            TimerKind::ConsentClose => {
                let reason = format!(
                    "no consent within {} working days",
                    levels.consent_close_days
                );
                let why = Why {
                    actor: ACTOR,
                    reason: &reason,
                    cause: None,
                };
                self.transition(&txn, &mut case, State::ClosedNoConsent, &why, false, now)
                    .await?;
            }
        }
        eh_store::commit(txn).await?;
        self.ctx.outbox.committed();
        Ok(true)
    }

    /// A practitioner's step: the case under the family's lock, moved if the state machine allows.
    pub async fn act(
        &self,
        tenant: &str,
        case_id: &str,
        to: State,
        actor: &str,
        reason: &str,
    ) -> Result<Option<CaseRow>, Error> {
        let now = self.ctx.clock.now();
        let txn = eh_store::begin(&self.ctx.db).await?;
        let Some(found) = store::get_case(&txn, tenant, case_id).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        store::lock_family(&txn, tenant, &found.family_id).await?;
        let mut case = store::get_case(&txn, tenant, case_id)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(case_id.into()))?;
        let why = Why {
            actor,
            reason,
            cause: None,
        };
        if let Err(e) = self.transition(&txn, &mut case, to, &why, false, now).await {
            txn.rollback().await?;
            return Err(e);
        }
        eh_store::commit(txn).await?;
        self.ctx.outbox.committed();
        Ok(Some(case))
    }

    /// Fires every clock that has run out; returns how many fired.
    pub async fn fire_due(&self, limit: u64) -> Result<usize, Error> {
        let now = self.ctx.clock.now();
        let mut fired = 0;
        for t in store::due_timers(&self.ctx.db, now, limit).await? {
            match self.fire(&t).await {
                Ok(true) => fired += 1,
                Ok(false) => {}
                Err(e @ (Error::Db(_) | Error::Bus(_))) => return Err(e),
                Err(e) => {
                    // A clock that can never fire (e.g. a tenant removed from the settings):
                    // cancel it rather than retry for ever, and say so.
                    tracing::error!(timer = %t.id, case = %t.case_id, error = %e, "timer cannot fire; cancelled");
                    store::settle_timer(&self.ctx.db, &t.id, "cancelled", now).await?;
                }
            }
        }
        Ok(fired)
    }
}

/// Runs the clocks until shutdown, polling every `every`.
pub async fn run_timers(casework: Casework, every: std::time::Duration) {
    let shutdown = casework.ctx.shutdown.clone();
    loop {
        match casework.fire_due(100).await {
            Ok(n) if n > 0 => {
                tracing::info!(fired = n, "service-level timers fired");
                continue; // maybe more are due
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "firing timers failed; will retry"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Takes the family's lock in `txn` — unless `txn` is a savepoint of a batch, which locked every
/// family of its events before the first (`Together::first` below).
async fn lock_family(
    within: Within<'_>,
    txn: &DatabaseTransaction,
    tenant: &str,
    family_id: &str,
) -> Result<(), DbErr> {
    match within {
        Within::Batch(_) => Ok(()),
        Within::Db(_) => store::lock_family(txn, tenant, family_id).await,
    }
}

/// A bus event casework handles, decoded.
pub enum Event {
    Referral(Box<ReferralReceived>),
    /// `referral_received.urgent`: the urgent lane's copy of a significant-harm referral.
    UrgentReferral(Box<ReferralReceived>),
    ConsentRecorded(ConsentRecorded),
    ConsentWithdrawn(ConsentWithdrawn),
    Screening(ScreeningDecided),
}

/// One event waiting for its batch.
pub struct Job {
    tenant: String,
    event: Event,
    msg: Received,
}

impl Casework {
    async fn handle_event(&self, within: Within<'_>, job: &Job) -> Result<Handled, Error> {
        let (tenant, msg) = (job.tenant.as_str(), &job.msg);
        match &job.event {
            Event::Referral(ev) => {
                self.on_referral(within, CONSUMER_REFERRAL_RECEIVED, tenant, ev, msg)
                    .await
            }
            Event::UrgentReferral(ev) => {
                self.on_referral(within, CONSUMER_REFERRAL_RECEIVED_URGENT, tenant, ev, msg)
                    .await
            }
            Event::ConsentRecorded(ev) => self.on_consent_recorded(within, tenant, ev, msg).await,
            Event::ConsentWithdrawn(ev) => self.on_consent_withdrawn(within, tenant, ev, msg).await,
            Event::Screening(ev) => self.on_screening(within, tenant, ev, msg).await,
        }
    }

    /// The families `jobs` touch, in the one order every batch locks them in.
    async fn families_of(
        &self,
        txn: &DatabaseTransaction,
        jobs: &[Job],
    ) -> Result<BTreeSet<(String, String)>, DbErr> {
        let mut families = BTreeSet::new();
        for job in jobs {
            let family = match &job.event {
                Event::Referral(ev) | Event::UrgentReferral(ev) => Some(ev.family_id.clone()),
                Event::ConsentRecorded(ev) => ev
                    .record
                    .as_ref()
                    .and_then(|r| r.consent.as_ref())
                    .map(|c| c.family_id.clone()),
                Event::ConsentWithdrawn(ev) => Some(ev.family_id.clone()),
                Event::Screening(ev) => store::get_case(txn, &job.tenant, &ev.case_id)
                    .await?
                    .map(|c| c.family_id),
            };
            if let Some(f) = family.filter(|f| !f.is_empty()) {
                families.insert((job.tenant.clone(), f));
            }
        }
        Ok(families)
    }
}

/// A bus door's events waiting together are handled in one transaction, each in a savepoint of
/// its own (`eh_bus::batch::InSavepoints`): an event that fails (an illegal step, a database
/// error) is rolled back alone and answered alone, its batch-mates commit. Every family of the
/// batch is locked first, in one order, so two batches (of two consumers, or two replicas) never
/// wait on each other in a cycle; the handlers then skip the lock their batch holds. A lone event
/// is handled as before, in a transaction of its own, taking its family's lock itself.
impl SavepointWork for Casework {
    type Job = Job;

    fn context(&self) -> &ServiceContext {
        &self.ctx
    }
}

#[async_trait]
impl eh_store::Together<Job> for Casework {
    type Output = Result<Handled, HandlerError>;

    async fn first(&self, txn: &DatabaseTransaction, jobs: &[Job]) -> Result<(), DbErr> {
        let families: Vec<(String, String)> =
            self.families_of(txn, jobs).await?.into_iter().collect();
        store::lock_families(txn, &families).await
    }

    async fn each(&self, within: Within<'_>, job: &Job) -> Result<Handled, HandlerError> {
        self.handle_event(within, job)
            .await
            .map_err(Error::for_handler)
    }
}

macro_rules! door {
    ($name:ident, $msg:ty, $variant:ident, $consumer:expr) => {
        pub struct $name(pub Casework);

        eh_bus::admitted_in_order!($name);

        impl $name {
            fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
                let ns = self.0.ctx.namespace().to_string();
                let Some(tenant) = subjects::tenant_of(&ns, &msg.subject) else {
                    return Err(HandlerError::Permanent(format!(
                        "subject {} has no tenant",
                        msg.subject
                    )));
                };
                let ev = <$msg>::decode(msg.payload.as_ref()).map_err(|e| {
                    HandlerError::Permanent(format!("not a {}: {e}", stringify!($msg)))
                })?;
                let job = Job {
                    tenant: tenant.to_string(),
                    event: Event::$variant(ev.into()),
                    msg: msg.clone(),
                };
                Ok(self
                    .0
                    .batches
                    .admit(InSavepoints(self.0.clone()), $consumer, job))
            }
        }
    };
}

door!(
    ReferralReceivedDoor,
    ReferralReceived,
    Referral,
    CONSUMER_REFERRAL_RECEIVED
);
// The urgent lane: a consumer, and batches, of its own (batches are per consumer), so a
// significant-harm referral never waits behind the ordinary referrals' backlog.
door!(
    UrgentReferralDoor,
    ReferralReceived,
    UrgentReferral,
    CONSUMER_REFERRAL_RECEIVED_URGENT
);
door!(
    ConsentRecordedDoor,
    ConsentRecorded,
    ConsentRecorded,
    CONSUMER_CONSENT_RECORDED
);
door!(
    ConsentWithdrawnDoor,
    ConsentWithdrawn,
    ConsentWithdrawn,
    CONSUMER_CONSENT_WITHDRAWN
);
door!(
    ScreeningDecidedDoor,
    ScreeningDecided,
    Screening,
    CONSUMER_SCREENING_DECIDED
);
