//! Intake's handlers: each loads what it needs from the store, decides with the pure rules of
//! `domain`, and applies the outcome through the store and the outbox — nothing here speaks
//! SQL or gRPC.
//!
//! Taking a request for support, whichever door it came through (this module): validate
//! against the contract, then, in one transaction with the other referrals of its tenant
//! waiting at the same moment ([`batch`]), claim the inbox (bus door), store the referral once
//! per (tenant, source.system, source.reference) with each person matched against the people
//! the tenant already holds ([`held_people`]: attached, new, or new with candidates for a
//! practitioner), and put `referral_received` — or, for a refused document,
//! `referral_rejected` with every reason — in the outbox. A practitioner's answer to a match
//! candidate: [`candidates`]. Screening on casework's command: [`screening`].
pub mod batch;
pub mod candidates;
pub mod held_people;
pub mod refer_again;
pub mod rights;
pub mod screening;
pub mod submission;

pub use submission::{CONSUMER_INBOUND, Outcome, StoreError};

use crate::domain::contract::{self, Rejection};
use crate::domain::matching::{MatchPolicy, Resolution};
use crate::handlers::batch::{Batches, Job, Storer};
use crate::handlers::candidates::ResolveError;
use crate::handlers::held_people::HeldPeople;
use crate::handlers::submission::bus_err;
use crate::settings::IntakeSettings;
use crate::store::matches::StoredCandidate;
use eh_bus::consumer::{Handled, HandlerError, Pending};
use eh_bus::{Envelope, OutboundMessage, Received, ServiceContext, inbox, subjects};
use eh_proto::intake::v1::{ReferAgain, Referral, ReferralRejected};
use prost::Message;
use sea_orm::DatabaseTransaction;

pub const TYPE_RECEIVED: &str = eh_proto::catalogue::REFERRAL_RECEIVED.payload;
pub const TYPE_REJECTED: &str = eh_proto::catalogue::REFERRAL_REJECTED.payload;

/// Where a submission came from.
pub struct Door<'a> {
    pub actor: &'a str,
    /// Bus door: the inbox claim, and the inbound message (to continue its trace and chain).
    pub inbound: Option<&'a Received>,
}

/// Intake's core, shared by both doors.
#[derive(Clone)]
pub struct Intake {
    pub ctx: ServiceContext,
    /// Each tenant's referrals waiting to be stored ([`batch`]).
    pub(crate) batches: Batches,
    /// The urgent lane: each tenant's significant-harm referrals, stored in batches of their own
    /// so they never queue behind ordinary ones (a batch in progress still holds the tenant's
    /// people lock until it commits: one batch at most).
    pub(crate) urgent_batches: Batches,
    /// The people each tenant holds, for matching (one set of indexes per replica).
    pub people: HeldPeople,
    /// What stores a batch: the context and the same people.
    storer: Storer,
    /// What stores an urgent batch: the same, on the urgent lane's connections and relay
    /// (`ServiceContext::urgent`), so it never waits for a connection behind ordinary work.
    urgent_storer: Storer,
    /// Inbound documents larger than this are rejected unread (`intake.max_payload_bytes`).
    pub max_payload_bytes: usize,
}

impl Intake {
    /// Intake with the default matching policy.
    pub fn new(ctx: ServiceContext) -> Self {
        Self::with_policy(ctx, MatchPolicy::default())
    }

    pub fn with_policy(ctx: ServiceContext, policy: MatchPolicy) -> Self {
        let people = HeldPeople::new(policy);
        Self {
            batches: batch::batches(),
            urgent_batches: batch::batches(),
            storer: Storer::new(ctx.clone(), people.clone()),
            urgent_storer: Storer::new(ctx.urgent(), people.clone()),
            people,
            // Checked at start (`Service::check_settings`), so wrong settings never get here.
            max_payload_bytes: IntakeSettings::from_settings(&ctx.settings)
                .unwrap_or_default()
                .max_payload_bytes,
            ctx,
        }
    }

    fn known_tenant(&self, tenant: &str) -> bool {
        self.ctx.settings.tenants.contains_key(tenant)
    }

    /// Takes a document: validated already (`Ok`) or refused (`Err`). A valid referral is
    /// stored in its tenant's next batch ([`batch`]).
    pub async fn submit(
        &self,
        tenant: &str,
        parsed: Result<(serde_json::Value, Referral), Rejection>,
        door: Door<'_>,
    ) -> Result<Outcome, StoreError> {
        match self.admit(tenant, parsed, &door) {
            Ok(stored) => stored.await,
            Err(rejection) => self.reject(tenant, rejection, &door).await,
        }
    }

    /// Queues a valid referral of a known tenant at once for its tenant's next batch, and
    /// returns what will answer for it; referrals are stored (and announced) in the order they
    /// are admitted. Otherwise the rejection, to be recorded.
    ///
    /// A referral reporting a risk of significant harm is recognised here, whichever door or
    /// subject it came by, and takes the urgent lane: its tenant's urgent batch, and
    /// `referral_received.urgent` beside its `referral_received`.
    pub(crate) fn admit(
        &self,
        tenant: &str,
        parsed: Result<(serde_json::Value, Referral), Rejection>,
        door: &Door<'_>,
    ) -> Result<impl Future<Output = Result<Outcome, StoreError>> + Send + 'static, Rejection> {
        if !self.known_tenant(tenant) {
            return Err(Rejection::single(
                "/tenant",
                format!("unknown tenant {tenant:?}"),
            ));
        }
        let (document, referral) = parsed?;
        let urgent = is_urgent(&referral);
        let now = self.ctx.clock.now();
        let job = Job {
            urgent,
            envelope: self.envelope(TYPE_RECEIVED, tenant, door, now),
            referral,
            document,
            actor: door.actor.to_string(),
            inbound: door.inbound.cloned(),
            now,
        };
        let (batches, storer) = if urgent {
            (&self.urgent_batches, &self.urgent_storer)
        } else {
            (&self.batches, &self.storer)
        };
        Ok(batches.enqueue(storer.clone(), tenant, job))
    }

    /// Refuses a document: `referral_rejected` with every reason, nothing stored.
    async fn reject(
        &self,
        tenant: &str,
        rejection: Rejection,
        door: &Door<'_>,
    ) -> Result<Outcome, StoreError> {
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant).await?;
        if let Some(msg) = door.inbound
            && !inbox::claim(&txn, CONSUMER_INBOUND, &msg.key())
                .await
                .map_err(bus_err)?
        {
            txn.rollback().await?;
            return Ok(Outcome::AlreadyHandled);
        }
        let now = self.ctx.clock.now();
        self.emit_rejected(&txn, tenant, &rejection, door, now)
            .await?;
        eh_store::commit(txn).await?;
        self.ctx.outbox.committed();
        Ok(Outcome::Rejected(rejection))
    }

    fn envelope(
        &self,
        event_type: &str,
        tenant: &str,
        door: &Door<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Envelope {
        let cause = door.inbound.and_then(|m| m.envelope());
        let key = door.inbound.map(|m| m.id()).unwrap_or_default();
        Envelope::new(event_type, tenant, door.actor, now).caused_by(cause.as_ref(), &key)
    }

    async fn emit_rejected(
        &self,
        txn: &DatabaseTransaction,
        tenant: &str,
        rejection: &Rejection,
        door: &Door<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let event = ReferralRejected {
            source_system: rejection.source_system.clone(),
            source_reference: rejection.source_reference.clone(),
            violations: rejection.violations.clone(),
            rejected_at: now.to_rfc3339(),
            inbound_message_id: door.inbound.map(|m| m.id()).unwrap_or_default(),
        };
        // An unknown tenant's token is still a valid subject token (the inbound subject had it),
        // so the upstream system hears back on its own subject.
        let env = self.envelope(TYPE_REJECTED, tenant, door, now);
        let subject = eh_proto::catalogue::REFERRAL_REJECTED.subject(self.ctx.namespace(), tenant);
        self.ctx
            .outbox
            .enqueue(
                txn,
                &OutboundMessage::event(subject, &env, event.encode_to_vec()),
            )
            .await
            .map_err(bus_err)?;
        Ok(())
    }
}

impl Intake {
    /// Confirms or rejects a match candidate of `tenant` for `actor` (see [`candidates::resolve`]).
    pub async fn resolve_candidate(
        &self,
        tenant: &str,
        candidate_id: &str,
        resolution: Resolution,
        reason: &str,
        actor: &str,
    ) -> Result<StoredCandidate, ResolveError> {
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant).await?;
        let now = self.ctx.clock.now();
        match candidates::resolve(&txn, tenant, candidate_id, resolution, reason, actor, now).await
        {
            Ok((c, merged)) => {
                if let Some(event) = merged {
                    let env = Envelope::new(
                        eh_proto::catalogue::PEOPLE_MERGED.payload,
                        tenant,
                        actor,
                        now,
                    );
                    let subject =
                        eh_proto::catalogue::PEOPLE_MERGED.subject(self.ctx.namespace(), tenant);
                    self.ctx
                        .outbox
                        .enqueue(
                            &txn,
                            &OutboundMessage::event(subject, &env, event.encode_to_vec()),
                        )
                        .await
                        .map_err(|e| ResolveError::Db(bus_err(e).0))?;
                }
                eh_store::commit(txn).await?;
                self.ctx.outbox.committed();
                tracing::info!(
                    tenant,
                    candidate_id,
                    status = c.status.as_str(),
                    actor,
                    "match candidate resolved"
                );
                Ok(c)
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    }
}

/// Whether a referral takes the urgent lane: it reports a risk of significant harm.
pub fn is_urgent(referral: &Referral) -> bool {
    referral.significant_harm_risk == Some(true)
}

/// Who an upstream message is recorded as coming from: `system:<tenant>-upstream`, the user of
/// the council's upstream credential (`earlyhelp nats-config`), whatever its `Eh-Actor` says.
pub fn upstream_actor(tenant: &str) -> String {
    format!("system:{tenant}-upstream")
}

/// The bus door: `<ns>.<tenant>.inbound.referral`, and the urgent lane's
/// `<ns>.<tenant>.inbound.referral.urgent` (its own consumer; the same handling).
pub struct InboundReferral {
    pub intake: Intake,
}

eh_bus::admitted_in_order!(InboundReferral);

impl InboundReferral {
    /// Reads the document and, when it is a valid referral of a known tenant, queues it at once
    /// (in delivery order: an upstream system's referrals are stored and announced in the order
    /// it published them); a rejection is recorded in the message's own task.
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let ns = self.intake.ctx.namespace().to_string();
        let Some(tenant) = subjects::tenant_of(&ns, &msg.subject).map(str::to_string) else {
            return Err(HandlerError::Permanent(format!(
                "subject {} has no tenant",
                msg.subject
            )));
        };
        let max = self.intake.max_payload_bytes;
        let parsed = contract::parse(&msg.payload, max);
        // The upstream system is the one the credential belongs to, not what `Eh-Actor` claims:
        // a council's upstream credential may publish only on its own council's inbound
        // subjects (the NATS accounts `earlyhelp nats-config` generates), so the subject's
        // council names it.
        let actor = upstream_actor(&tenant);
        let door = Door {
            actor: &actor,
            inbound: Some(msg),
        };
        let outcome: std::pin::Pin<Box<dyn Future<Output = Result<Outcome, StoreError>> + Send>> =
            match self.intake.admit(&tenant, parsed, &door) {
                Ok(stored) => Box::pin(stored),
                Err(rejection) => {
                    let (intake, tenant, msg) = (self.intake.clone(), tenant.clone(), msg.clone());
                    Box::pin(async move {
                        let door = Door {
                            actor: &actor,
                            inbound: Some(&msg),
                        };
                        intake.reject(&tenant, rejection, &door).await
                    })
                }
            };
        Ok(Box::pin(async move {
            match outcome.await {
                Ok(Outcome::AlreadyHandled) => Ok(Handled::Duplicate),
                Ok(Outcome::Stored(s)) => {
                    tracing::info!(
                        tenant,
                        referral_id = %s.id,
                        known_family = s.known_family,
                        re_referral = s.re_referral,
                        "referral received"
                    );
                    Ok(Handled::Done)
                }
                Ok(Outcome::Duplicate { id, .. }) => {
                    tracing::info!(tenant, referral_id = %id, "resubmission of a referral already held");
                    Ok(Handled::Done)
                }
                Ok(Outcome::Rejected(r)) => {
                    tracing::warn!(tenant, reasons = %r.summary(), "referral rejected");
                    Ok(Handled::Done)
                }
                Err(StoreError(e)) => Err(HandlerError::db(&e)),
            }
        }))
    }
}

/// The command's handler.
pub struct ReferAgainHandler {
    pub intake: Intake,
}

eh_bus::admitted_in_order!(ReferAgainHandler);

impl ReferAgainHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let ns = self.intake.ctx.namespace().to_string();
        let tenant = subjects::tenant_of(&ns, &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let cmd = ReferAgain::decode(msg.payload.as_ref())
            .map_err(|e| HandlerError::Permanent(format!("not a ReferAgain: {e}")))?;
        if cmd.case_id.is_empty() || cmd.referral_id.is_empty() {
            return Err(HandlerError::Permanent(
                "ReferAgain names no case or no referral".into(),
            ));
        }
        let (intake, msg) = (self.intake.clone(), msg.clone());
        Ok(Box::pin(async move {
            let reader = intake
                .ctx
                .readers
                .of(&tenant)
                .await
                .map_err(|e| HandlerError::db(&e))?;
            let stored = crate::store::referrals::get(&reader, &tenant, &cmd.referral_id)
                .await
                .map_err(|e| HandlerError::db(&e))?
                .ok_or_else(|| {
                    HandlerError::Permanent(format!(
                        "referral {} of case {} is not held",
                        cmd.referral_id, cmd.case_id
                    ))
                })?;
            let previous = contract::to_json(&stored.referral);
            let doc = refer_again::again(&previous, &cmd.case_id, intake.ctx.clock.now());
            let parsed = contract::validate(&doc).map(|typed| (doc, typed));
            if let Err(r) = &parsed {
                // Ours to make valid: a rejection here is a defect, never the family's fault.
                return Err(HandlerError::Permanent(format!(
                    "the new request for case {} is not a valid referral: {}",
                    cmd.case_id,
                    r.summary()
                )));
            }
            let door = Door {
                actor: "service:casework",
                inbound: Some(&msg),
            };
            match intake.submit(&tenant, parsed, door).await {
                Ok(Outcome::AlreadyHandled) => Ok(Handled::Duplicate),
                Ok(Outcome::Stored(s)) => {
                    tracing::info!(tenant, case_id = %cmd.case_id, referral_id = %s.id, "a family needs help again: a new request for support");
                    Ok(Handled::Done)
                }
                Ok(Outcome::Duplicate { id, .. }) => {
                    tracing::info!(tenant, case_id = %cmd.case_id, referral_id = %id, "the new request was made already");
                    Ok(Handled::Done)
                }
                Ok(Outcome::Rejected(r)) => Err(HandlerError::Permanent(format!(
                    "the new request for case {} was rejected: {}",
                    cmd.case_id,
                    r.summary()
                ))),
                Err(StoreError(e)) => Err(HandlerError::db(&e)),
            }
        }))
    }
}
