//! Casework's handlers: every step of a case — the state change, its timeline entry, the clocks it
//! starts or cancels, and the events and commands it causes — commits in ONE transaction (with the
//! inbox claim, on the bus doors), under the family's lock.
//!
//! Each handler has the same shape, **load → decide → apply**: it *loads* (claims the message,
//! locks the family, reads the case and what else the decision needs), asks `decide.rs` what
//! follows — a pure function of (case, event, instant, council rules) returning [`Effects`] — and
//! *applies* the effects ([`Casework::apply`]: state, timeline, clocks, outbox, alerts) in the same
//! transaction, then commits. Nothing is decided here between SQL calls; only claims (the inbox,
//! a referral's place on a case, a clock settled once across replicas) are answered by the
//! database. New orchestrating services (allocation, assessment) follow this shape.
use crate::decide::{self, At, Clock, Councils, Effects, Refusal};
use crate::domain::{self, IllegalTransition, State, TimerKind};
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
use eh_proto::allocation::v1::{
    CaseWaiting, LeadPractitionerDeclined, LeadPractitionerNamed, OfferAccepted, OfferDeclined,
    OfferExpired, OfferMade, WaitingLimitBreached,
};
use eh_proto::assessment::v1::{
    AssessmentFinalised, AssessmentOpened, CaseClosureRecorded, FollowUpDue, FollowUpRecorded,
    PlanAgreed, ReviewRecorded,
};
use eh_proto::catalogue;
use eh_proto::consent::v1::{ConsentRecorded, ConsentWithdrawn};
use eh_proto::intake::v1::{ReferralReceived, ScreeningDecided};
use eh_store::Within;
use prost::Message;
use sea_orm::{DatabaseTransaction, DbErr};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The actor casework's own steps are recorded under.
pub use crate::decide::ACTOR;

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

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Illegal(e) => Error::Illegal(e),
            Refusal::Calendar(e) => Error::Calendar(e),
            Refusal::UnknownCouncil(tenant) => Error::Invalid(format!("unknown tenant {tenant:?}")),
            Refusal::Invalid(reason) => Error::Invalid(reason),
        }
    }
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

#[derive(Clone)]
pub struct Casework {
    pub ctx: ServiceContext,
    /// Every council's rules (calendar, service levels), from [`decide::council_rules`].
    pub councils: Arc<Councils>,
    /// The bus doors' events waiting to be handled together (`eh_bus::batch`).
    batches: Batcher<InSavepoints<Casework>>,
}

/// The most events of one consumer handled in one transaction.
pub const MAX_BATCH: usize = 64;

impl Casework {
    pub fn new(ctx: ServiceContext, councils: Councils) -> Self {
        Self {
            ctx,
            councils: Arc::new(councils),
            batches: Batcher::new(MAX_BATCH),
        }
    }

    /// The same casework for the urgent lane's work: on the urgent lane's connections and relay
    /// (`ServiceContext::urgent`), with batches of its own, so a significant-harm referral never
    /// waits for a connection, or for the relay, behind the ordinary backlog.
    pub fn urgent(&self) -> Self {
        Self {
            ctx: self.ctx.urgent(),
            councils: self.councils.clone(),
            batches: Batcher::new(MAX_BATCH),
        }
    }

    /// Every council's rules, checked: [`decide::council_rules`] (the one place they are built
    /// from the settings), under the name the service's start calls.
    ///
    /// # Errors
    /// Names the tenant whose calendar is wrong.
    pub fn calendars(settings: &eh_platform::Settings) -> Result<Councils, String> {
        decide::council_rules(settings)
    }

    /// The instant and the council's rules a decision for `tenant` is made under.
    fn at(&self, tenant: &str, now: DateTime<Utc>) -> At<'_> {
        At {
            now,
            council: self.councils.get(tenant),
        }
    }

    /// Writes what a decision does to its case, in `txn` (see [`Effects`] for the order).
    /// `cause`: the message the decision answers (continues its trace and causation chain).
    async fn apply(
        &self,
        txn: &DatabaseTransaction,
        fx: &Effects,
        cause: Option<&Received>,
    ) -> Result<(), Error> {
        let case = &fx.case;
        let cause_id = cause.map(|m| m.id()).unwrap_or_default();
        if let Some(programmes) = &fx.programmes {
            store::set_programmes(txn, &case.id, programmes).await?;
        }
        if let Some(state) = fx.new_state {
            store::set_state(txn, &case.id, state, fx.at).await?;
        }
        if fx.contacts_changed {
            store::set_family_contacts(txn, &case.id, &case.family_contacts).await?;
        }
        for e in &fx.timeline {
            let step = Step {
                kind: e.kind,
                from: e.from,
                to: e.to,
                actor: &e.actor,
                reason: &e.reason,
                cause_id: &cause_id,
            };
            store::add_step(txn, &case.tenant, &case.id, fx.at, &step).await?;
        }
        if let Some(lead) = &fx.lead {
            store::set_lead(txn, &case.tenant, &case.id, lead, fx.at).await?;
        }
        store::cancel_timers(txn, &case.id, &fx.cancel_timers, fx.at).await?;
        for (kind, due) in &fx.set_timers {
            store::schedule_timer(txn, case, *kind, *due).await?;
        }
        for out in &fx.publish {
            let spec = out.spec();
            let env = Envelope::new(spec.payload, &case.tenant, &fx.actor, fx.at)
                .caused_by(cause.and_then(|m| m.envelope()).as_ref(), &cause_id);
            let subject = spec.subject(self.ctx.namespace(), &case.tenant);
            self.ctx
                .outbox
                .enqueue(txn, &OutboundMessage::event(subject, &env, out.payload()))
                .await?;
        }
        for alert in &fx.alerts {
            match alert {
                decide::Alert::ServiceLevelBreached { tenant, clock } => {
                    self.ctx.metrics.service_level_breached(tenant, clock);
                }
            }
        }
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
        if !inbox::claim_live(&txn, consumer, msg).await? {
            // Committed: a message about a destroyed family stays claimed too.
            within.commit(txn).await?;
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
        // Load: the claims (the message, then the referral's place on a case), the family's lock,
        // its open case.
        let Some(txn) = self.begin_claimed(within, consumer, msg).await? else {
            return Ok(Handled::Duplicate);
        };
        let now = self.ctx.clock.now();
        let at = self.at(tenant, now);
        lock_family(within, &txn, tenant, &ev.family_id).await?;
        let open = store::open_cases_of_family(&txn, tenant, &ev.family_id).await?;
        if let Some(case) = open.into_iter().next() {
            if !store::attach_referral(&txn, tenant, &case.id, &ev.referral_id, now).await? {
                return self.finish(within, txn).await; // attached before (same referral again)
            }
            let fx = decide::further_referral(case, ev, &at)?;
            self.apply(&txn, &fx, Some(msg)).await?;
            return self.finish(within, txn).await;
        }
        let earlier = store::family_contacts_of_family(&txn, tenant, &ev.family_id).await?;
        let case =
            decide::case_for_family(tenant, uuid::Uuid::now_v7().to_string(), ev, &earlier, now);
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
        let consent_held = decide::referral_records_consent(ev)
            || store::consent_held(&txn, tenant, &ev.family_id).await?;
        let fx = decide::case_opened(case, ev, consent_held, &at)?;
        self.apply(&txn, &fx, Some(msg)).await?;
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
        // The family's consent read model takes the record first: whether consent is held
        // counts it.
        store::record_consent(
            &txn,
            tenant,
            &record.record_id,
            &consent.family_id,
            &consent.person_id,
            decide::covers_receiving_help(&consent.purposes),
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
        let cases = store::open_cases_of_family(&txn, tenant, &consent.family_id).await?;
        for fx in decide::consent_recorded(cases, ev, held, &self.at(tenant, now))? {
            self.apply(&txn, &fx, Some(msg)).await?;
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
        let cases = store::open_cases_of_family(&txn, tenant, &ev.family_id).await?;
        for fx in decide::consent_withdrawn(cases, ev, held, &self.at(tenant, now))? {
            self.apply(&txn, &fx, Some(msg)).await?;
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
        // An unknown outcome is refused before anything is claimed.
        domain::on_screening(&ev.outcome).map_err(Error::Invalid)?;
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
        let case = store::get_case(&txn, tenant, &ev.case_id)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(ev.case_id.clone()))?;
        let fx = decide::screening_decided(case, ev, &self.at(tenant, now))?;
        self.apply(&txn, &fx, Some(msg)).await?;
        self.finish(within, txn).await
    }

    /// Allocation's answer about a case (`offer_made`, `case_waiting`, `offer_accepted`,
    /// `offer_declined`): the case's state follows, every step on its timeline.
    pub async fn on_allocation(
        &self,
        within: Within<'_>,
        consumer: &str,
        tenant: &str,
        case_id: &str,
        step: &decide::AllocationStep,
        msg: &Received,
    ) -> Result<Handled, Error> {
        let Some(txn) = self.begin_claimed(within, consumer, msg).await? else {
            return Ok(Handled::Duplicate);
        };
        let now = self.ctx.clock.now();
        let Some(found) = store::get_case(&txn, tenant, case_id).await? else {
            txn.rollback().await?;
            return Err(Error::Invalid(format!(
                "tenant {tenant} holds no case {case_id}"
            )));
        };
        lock_family(within, &txn, tenant, &found.family_id).await?;
        let case = store::get_case(&txn, tenant, case_id)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(case_id.to_string()))?;
        let fx = decide::allocation_step(case, step, &self.at(tenant, now))?;
        self.apply(&txn, &fx, Some(msg)).await?;
        self.finish(within, txn).await
    }

    /// Fires one clock that ran out — once, even with several replicas: the family's lock and the
    /// conditional settle make a second firing find it settled and do nothing.
    pub async fn fire(&self, t: &DueTimer) -> Result<bool, Error> {
        let now = self.ctx.clock.now();
        let txn = eh_store::begin_scoped(&self.ctx.db, &t.tenant).await?;
        store::lock_family(&txn, &t.tenant, &t.family_id).await?;
        let Some(case) = store::get_case(&txn, &t.tenant, &t.case_id).await? else {
            txn.rollback().await?;
            return Ok(false);
        };
        let consent_close_due = match t.kind {
            TimerKind::ConsentChase => {
                store::timer_due(&txn, &case.id, TimerKind::ConsentClose).await?
            }
            _ => None,
        };
        let decision = decide::clock_ran_out(
            case,
            t.kind,
            t.due_at,
            consent_close_due,
            &self.at(&t.tenant, now),
        );
        if let Ok(Clock::Stale) = decision {
            let settled = store::settle_timer(&txn, &t.id, "cancelled", now).await?;
            eh_store::commit(txn).await?;
            return Ok(settled);
        }
        // Settled first: a replica that finds it settled already does nothing, even when it
        // could not have decided.
        if !store::settle_timer(&txn, &t.id, "fired", now).await? {
            txn.rollback().await?;
            return Ok(false);
        }
        if let Clock::Fires(fx) = decision? {
            self.apply(&txn, &fx, None).await?;
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
        self.step(tenant, case_id, |case, at| {
            decide::practitioner_step(case, to, actor, reason, at)
        })
        .await
    }

    /// A practitioner's step on `case_id`, decided by `rule` with the family locked: applied and
    /// committed, or refused with nothing written. `None` when the tenant holds no such case.
    pub async fn step(
        &self,
        tenant: &str,
        case_id: &str,
        rule: impl FnOnce(CaseRow, &At<'_>) -> Result<Effects, Refusal>,
    ) -> Result<Option<CaseRow>, Error> {
        let now = self.ctx.clock.now();
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant).await?;
        let Some(found) = store::get_case(&txn, tenant, case_id).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        store::lock_family(&txn, tenant, &found.family_id).await?;
        let case = store::get_case(&txn, tenant, case_id)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(case_id.into()))?;
        let decided = rule(case, &self.at(tenant, now));
        let applied = match decided {
            Ok(fx) => self.apply(&txn, &fx, None).await.map(|()| fx.case),
            Err(refused) => Err(refused.into()),
        };
        let case = match applied {
            Ok(case) => case,
            Err(e) => {
                txn.rollback().await?;
                return Err(e);
            }
        };
        eh_store::commit(txn).await?;
        self.ctx.outbox.committed();
        Ok(Some(case))
    }

    /// Fires every clock that has run out; returns how many fired.
    pub async fn fire_due(&self, limit: u64) -> Result<usize, Error> {
        let now = self.ctx.clock.now();
        let mut fired = 0;
        // Which clocks ran out, every council's (each fires in its council's scope).
        let sweep =
            eh_store::begin_system(&self.ctx.db, eh_store::SystemWorker::CaseworkClocks).await?;
        let due = store::due_timers(&sweep, now, limit).await?;
        eh_store::end_read(sweep).await?;
        for t in due {
            match self.fire(&t).await {
                Ok(true) => fired += 1,
                Ok(false) => {}
                Err(e @ (Error::Db(_) | Error::Bus(_))) => return Err(e),
                Err(e) => {
                    // A clock that can never fire (e.g. a tenant removed from the settings):
                    // cancel it rather than retry for ever, and say so.
                    tracing::error!(timer = %t.id, case = %t.case_id, error = %e, "timer cannot fire; cancelled");
                    let txn = eh_store::begin_scoped(&self.ctx.db, &t.tenant).await?;
                    store::settle_timer(&txn, &t.id, "cancelled", now).await?;
                    eh_store::commit(txn).await?;
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
        Within::Db(..) => store::lock_family(txn, tenant, family_id).await,
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
    OfferMade(OfferMade),
    OfferAccepted(OfferAccepted),
    OfferDeclined(OfferDeclined),
    CaseWaiting(CaseWaiting),
    OfferExpired(OfferExpired),
    WaitingLimitBreached(WaitingLimitBreached),
    LeadNamed(LeadPractitionerNamed),
    LeadDeclined(LeadPractitionerDeclined),
    AssessmentOpened(AssessmentOpened),
    AssessmentFinalised(AssessmentFinalised),
    PlanAgreed(PlanAgreed),
    ReviewRecorded(ReviewRecorded),
    ClosureRecorded(CaseClosureRecorded),
    FollowUpDue(FollowUpDue),
    FollowUpRecorded(FollowUpRecorded),
}

impl Event {
    /// For allocation's events: the consumer, the case and the step.
    fn allocation(&self) -> Option<(&'static str, &str, decide::AllocationStep)> {
        use decide::AllocationStep as S;
        Some(match self {
            Event::OfferMade(e) => (
                catalogue::CASEWORK_OFFER_MADE.consumer,
                e.case_id.as_str(),
                S::Offered {
                    service: e.service_name.clone(),
                    attempt: e.attempt,
                    rule_version: e.rule_version.clone(),
                },
            ),
            Event::OfferAccepted(e) => (
                catalogue::CASEWORK_OFFER_ACCEPTED.consumer,
                e.case_id.as_str(),
                S::Accepted {
                    service: e.service_name.clone(),
                },
            ),
            Event::OfferDeclined(e) => (
                catalogue::CASEWORK_OFFER_DECLINED.consumer,
                e.case_id.as_str(),
                S::Declined {
                    service: e.service_id.clone(),
                    reason: e.reason.clone(),
                },
            ),
            Event::CaseWaiting(e) => (
                catalogue::CASEWORK_CASE_WAITING.consumer,
                e.case_id.as_str(),
                S::Waiting {
                    position: e.position,
                    significant_need: e.significant_need,
                },
            ),
            Event::OfferExpired(e) => (
                catalogue::CASEWORK_OFFER_EXPIRED.consumer,
                e.case_id.as_str(),
                S::Expired {
                    service: e.service_id.clone(),
                    respond_by: e.respond_by.clone(),
                },
            ),
            Event::LeadNamed(e) => (
                catalogue::CASEWORK_LEAD_PRACTITIONER_NAMED.consumer,
                e.case_id.as_str(),
                S::LeadNamed {
                    practitioner: e.practitioner.clone(),
                    organization_id: e.organization_id.clone(),
                    service: e.service_name.clone(),
                },
            ),
            Event::LeadDeclined(e) => (
                catalogue::CASEWORK_LEAD_PRACTITIONER_DECLINED.consumer,
                e.case_id.as_str(),
                S::LeadDeclined {
                    practitioner: e.practitioner.clone(),
                    reason: e.reason.clone(),
                },
            ),
            Event::AssessmentOpened(e) => (
                catalogue::CASEWORK_ASSESSMENT_OPENED.consumer,
                e.case_id.as_str(),
                S::AssessmentOpened { version: e.version },
            ),
            Event::AssessmentFinalised(e) => (
                catalogue::CASEWORK_ASSESSMENT_FINALISED.consumer,
                e.case_id.as_str(),
                S::AssessmentFinalised {
                    version: e.version,
                    contributions: e.contributions,
                },
            ),
            Event::PlanAgreed(e) => (
                catalogue::CASEWORK_PLAN_AGREED.consumer,
                e.case_id.as_str(),
                S::PlanAgreed {
                    version: e.version,
                    outcomes: e.outcomes,
                    actions: e.actions,
                },
            ),
            Event::ReviewRecorded(e) => (
                catalogue::CASEWORK_REVIEW_RECORDED.consumer,
                e.case_id.as_str(),
                S::Reviewed { number: e.number },
            ),
            Event::ClosureRecorded(e) => (
                catalogue::CASEWORK_CASE_CLOSURE_RECORDED.consumer,
                e.case_id.as_str(),
                S::ClosureRecorded {
                    kind: e.kind.clone(),
                    met: u32::try_from(e.outcomes.iter().filter(|o| o.met).count())
                        .unwrap_or(u32::MAX),
                    outcomes: u32::try_from(e.outcomes.len()).unwrap_or(u32::MAX),
                    follow_up_due: e.follow_up_due.clone(),
                },
            ),
            Event::FollowUpDue(e) => (
                catalogue::CASEWORK_FOLLOW_UP_DUE.consumer,
                e.case_id.as_str(),
                S::FollowUpDue,
            ),
            Event::FollowUpRecorded(e) => (
                catalogue::CASEWORK_FOLLOW_UP_RECORDED.consumer,
                e.case_id.as_str(),
                S::FollowUpRecorded {
                    sustained: e.sustained,
                    needs_help_again: e.needs_help_again,
                },
            ),
            Event::WaitingLimitBreached(e) => (
                catalogue::CASEWORK_WAITING_LIMIT_BREACHED.consumer,
                e.case_id.as_str(),
                S::WaitingBreached {
                    waiting_since: e.waiting_since.clone(),
                    limit_days: e.limit_days,
                    due_at: e.due_at.clone(),
                },
            ),
            _ => return None,
        })
    }
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
            other => {
                let Some((consumer, case_id, step)) = other.allocation() else {
                    return Err(Error::Invalid("an event casework does not handle".into()));
                };
                self.on_allocation(within, consumer, tenant, case_id, &step, msg)
                    .await
            }
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
                other => match other.allocation() {
                    Some((_, case_id, _)) => store::get_case(txn, &job.tenant, case_id)
                        .await?
                        .map(|c| c.family_id),
                    None => None,
                },
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

    fn tenant<'j>(&self, job: &'j Job) -> &'j str {
        &job.tenant
    }

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
                // Batched by council: one batch, one council's scope.
                let key = format!("{}/{tenant}", $consumer);
                Ok(self
                    .0
                    .batches
                    .admit(InSavepoints(self.0.clone()), &key, job))
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
door!(
    OfferMadeDoor,
    OfferMade,
    OfferMade,
    catalogue::CASEWORK_OFFER_MADE.consumer
);
door!(
    OfferAcceptedDoor,
    OfferAccepted,
    OfferAccepted,
    catalogue::CASEWORK_OFFER_ACCEPTED.consumer
);
door!(
    OfferDeclinedDoor,
    OfferDeclined,
    OfferDeclined,
    catalogue::CASEWORK_OFFER_DECLINED.consumer
);
door!(
    CaseWaitingDoor,
    CaseWaiting,
    CaseWaiting,
    catalogue::CASEWORK_CASE_WAITING.consumer
);
door!(
    OfferExpiredDoor,
    OfferExpired,
    OfferExpired,
    catalogue::CASEWORK_OFFER_EXPIRED.consumer
);
door!(
    LeadNamedDoor,
    LeadPractitionerNamed,
    LeadNamed,
    catalogue::CASEWORK_LEAD_PRACTITIONER_NAMED.consumer
);
door!(
    LeadDeclinedDoor,
    LeadPractitionerDeclined,
    LeadDeclined,
    catalogue::CASEWORK_LEAD_PRACTITIONER_DECLINED.consumer
);
door!(
    AssessmentOpenedDoor,
    AssessmentOpened,
    AssessmentOpened,
    catalogue::CASEWORK_ASSESSMENT_OPENED.consumer
);
door!(
    AssessmentFinalisedDoor,
    AssessmentFinalised,
    AssessmentFinalised,
    catalogue::CASEWORK_ASSESSMENT_FINALISED.consumer
);
door!(
    PlanAgreedDoor,
    PlanAgreed,
    PlanAgreed,
    catalogue::CASEWORK_PLAN_AGREED.consumer
);
door!(
    ReviewRecordedDoor,
    ReviewRecorded,
    ReviewRecorded,
    catalogue::CASEWORK_REVIEW_RECORDED.consumer
);
door!(
    ClosureRecordedDoor,
    CaseClosureRecorded,
    ClosureRecorded,
    catalogue::CASEWORK_CASE_CLOSURE_RECORDED.consumer
);
door!(
    FollowUpDueDoor,
    FollowUpDue,
    FollowUpDue,
    catalogue::CASEWORK_FOLLOW_UP_DUE.consumer
);
door!(
    FollowUpRecordedDoor,
    FollowUpRecorded,
    FollowUpRecorded,
    catalogue::CASEWORK_FOLLOW_UP_RECORDED.consumer
);
door!(
    WaitingLimitBreachedDoor,
    WaitingLimitBreached,
    WaitingLimitBreached,
    catalogue::CASEWORK_WAITING_LIMIT_BREACHED.consumer
);
