//! Consent's core, shared by the bus door and gRPC: every change and the event it causes commit in
//! ONE transaction (with the inbox claim, on the bus door).
//!
//! `referral_received`: when the referral says consent was obtained, it is recorded as a
//! family-wide record for the event's family, for every purpose (assessment, sharing, contacting),
//! with the referral's restrictions, and `consent_recorded` is emitted. When it says consent was
//! NOT obtained (or says nothing), nothing is recorded and nothing is emitted: the absence of a
//! record already means "no consent" to every check, and casework chases consent from the
//! `referral_received` event itself. Idempotent twice over: the inbox claim, and at most one record
//! per (tenant, referral id).
use crate::convert;
use crate::domain::overrides::Override;
use crate::domain::sharing::{self, SharingDecision, SharingRequest};
use crate::domain::{ConsentRecord, Method, REFERRAL_PURPOSES, Violation, parse_date};
use crate::store::{self, Asker, StoredRecord, StoredWithdrawal};
use crate::{CONSUMER_REFERRAL_RECEIVED, SERVICE};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use eh_bus::batch::{Batcher, InSavepoints, SavepointWork};
use eh_bus::consumer::{Handled, HandlerError, Pending};
use eh_bus::{Envelope, OutboundMessage, Received, ServiceContext, inbox, subjects};
use eh_proto::consent::v1 as pb;
use eh_proto::intake::v1::ReferralReceived;
use eh_store::{Together, Within};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseTransaction};

pub const TYPE_RECORDED: &str = eh_proto::catalogue::CONSENT_RECORDED.payload;
pub const TYPE_WITHDRAWN: &str = eh_proto::catalogue::CONSENT_WITHDRAWN.payload;
pub const TYPE_OVERRIDE: &str = eh_proto::catalogue::SAFEGUARDING_OVERRIDE_GRANTED.payload;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("{0}")]
    Bus(#[from] eh_bus::Error),
}

impl From<Error> for HandlerError {
    fn from(e: Error) -> Self {
        match e {
            Error::Db(e) => HandlerError::db(&e),
            Error::Bus(e) => HandlerError::bus(&e),
        }
    }
}

/// What became of a record to append.
#[derive(Debug)]
pub enum Appended {
    Stored(Box<StoredRecord>),
    /// The referral's consent is held already (the same referral seen again).
    Duplicate,
    /// The bus door only: this message was handled before.
    AlreadyHandled,
}

#[derive(Clone)]
pub struct Consent {
    pub ctx: ServiceContext,
}

impl Consent {
    #[allow(clippy::too_many_arguments)]
    async fn emit(
        &self,
        txn: &DatabaseTransaction,
        tenant: &str,
        spec: &eh_proto::catalogue::EventSpec,
        actor: &str,
        cause: Option<&Received>,
        payload: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let env = Envelope::new(spec.payload, tenant, actor, now).caused_by(
            cause.and_then(|m| m.envelope()).as_ref(),
            &cause.map(|m| m.id()).unwrap_or_default(),
        );
        let subject = spec.subject(self.ctx.namespace(), tenant);
        self.ctx
            .outbox
            .enqueue(txn, &OutboundMessage::event(subject, &env, payload))
            .await?;
        Ok(())
    }

    /// Appends `record` and emits `consent_recorded`, in one transaction begun `within` (the
    /// database, or a savepoint of a batch's), with the inbox claim of `inbound` when given.
    #[allow(clippy::too_many_arguments)]
    pub async fn append(
        &self,
        within: Within<'_>,
        tenant: &str,
        record: &ConsentRecord,
        source: &str,
        source_key: Option<&str>,
        actor: &str,
        inbound: Option<&Received>,
    ) -> Result<Appended, Error> {
        let txn = within.begin().await?;
        if let Some(msg) = inbound
            && !inbox::claim_live(&txn, CONSUMER_REFERRAL_RECEIVED, msg).await?
        {
            // Committed: a message about a destroyed family stays claimed too.
            within.commit(txn).await?;
            return Ok(Appended::AlreadyHandled);
        }
        if !store::insert_record(&txn, tenant, record, source, source_key, actor).await? {
            within.commit(txn).await?; // keeps the inbox claim
            return Ok(Appended::Duplicate);
        }
        let stored = StoredRecord {
            tenant: tenant.into(),
            record: record.clone(),
            source: source.into(),
            recorded_by: actor.into(),
            withdrawal: None,
        };
        let event = pb::ConsentRecorded {
            record: Some(convert::record_pb(&stored)),
        };
        self.emit(
            &txn,
            tenant,
            &eh_proto::catalogue::CONSENT_RECORDED,
            actor,
            inbound,
            event.encode_to_vec(),
            record.recorded_at,
        )
        .await?;
        within.commit(txn).await?;
        self.ctx.outbox.committed();
        Ok(Appended::Stored(Box::new(stored)))
    }

    /// Withdraws record `record_id` of `tenant`: `None` when the tenant holds no such record;
    /// otherwise the withdrawal and whether it is new (only a new one emits `consent_withdrawn`).
    pub async fn withdraw(
        &self,
        tenant: &str,
        record_id: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Option<(StoredWithdrawal, bool)>, Error> {
        let now = self.ctx.clock.now();
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant).await?;
        let Some(record) = store::get_record(&txn, tenant, record_id).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        if let Some(held) = record.withdrawal {
            txn.rollback().await?;
            return Ok(Some((held, false)));
        }
        let w = StoredWithdrawal {
            id: uuid::Uuid::now_v7().to_string(),
            record_id: record_id.into(),
            withdrawn_at: now,
            withdrawn_by: actor.into(),
            reason: reason.into(),
        };
        if !store::insert_withdrawal(&txn, tenant, &w).await? {
            // Withdrawn concurrently: report the one held.
            txn.rollback().await?;
            let txn = eh_store::begin_scoped(&self.ctx.db, tenant).await?;
            let held = store::get_record(&txn, tenant, record_id).await?;
            eh_store::end_read(txn).await?;
            let held = held
                .and_then(|r| r.withdrawal)
                .ok_or_else(|| sea_orm::DbErr::RecordNotFound(record_id.into()))?;
            return Ok(Some((held, false)));
        }
        let event = pb::ConsentWithdrawn {
            withdrawal: Some(convert::withdrawal_pb(&w, true)),
            family_id: record.record.family_id.clone(),
            person_id: record.record.person_id.clone().unwrap_or_default(),
        };
        self.emit(
            &txn,
            tenant,
            &eh_proto::catalogue::CONSENT_WITHDRAWN,
            actor,
            None,
            event.encode_to_vec(),
            now,
        )
        .await?;
        eh_store::commit(txn).await?;
        self.ctx.outbox.committed();
        Ok(Some((w, true)))
    }

    /// Stores a granted override (checked already) and emits `safeguarding_override_granted`.
    pub async fn grant(&self, tenant: &str, o: &Override, actor: &str) -> Result<(), Error> {
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant).await?;
        store::insert_override(&txn, tenant, o).await?;
        let event = pb::SafeguardingOverrideGranted {
            r#override: Some(convert::override_pb(tenant, o)),
        };
        self.emit(
            &txn,
            tenant,
            &eh_proto::catalogue::SAFEGUARDING_OVERRIDE_GRANTED,
            actor,
            None,
            event.encode_to_vec(),
            o.granted_at,
        )
        .await?;
        eh_store::commit(txn).await?;
        self.ctx.outbox.committed();
        Ok(())
    }

    /// Decides `req` for `tenant` now, from that tenant's ledger only, and keeps the decision;
    /// on `db` (a transaction scoped to the caller's tenant, from the gRPC door).
    pub async fn check(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
        req: &SharingRequest,
        asker: &Asker,
    ) -> Result<(String, DateTime<Utc>, SharingDecision), Error> {
        let now = self.ctx.clock.now();
        let records: Vec<ConsentRecord> = store::family_records(db, tenant, &req.family_id)
            .await?
            .into_iter()
            .map(|s| s.record)
            .collect();
        let overrides = store::family_overrides(db, tenant, &req.family_id).await?;
        let decision = sharing::decide(&records, &overrides, req, now);
        let id = uuid::Uuid::now_v7().to_string();
        store::insert_decision(db, tenant, &id, now, asker, req, &decision).await?;
        Ok((id, now, decision))
    }

    /// Decides and records each of `reqs` (questions about one family), reading its ledger once.
    ///
    /// # Errors
    /// The database failed (nothing is recorded: the caller's transaction is not committed).
    pub async fn check_all(
        &self,
        db: &impl ConnectionTrait,
        tenant: &str,
        family_id: &str,
        reqs: &[SharingRequest],
        asker: &Asker,
    ) -> Result<Vec<(String, DateTime<Utc>, SharingDecision)>, Error> {
        let now = self.ctx.clock.now();
        let records: Vec<ConsentRecord> = store::family_records(db, tenant, family_id)
            .await?
            .into_iter()
            .map(|s| s.record)
            .collect();
        let overrides = store::family_overrides(db, tenant, family_id).await?;
        let out: Vec<(String, DateTime<Utc>, SharingDecision)> = reqs
            .iter()
            .map(|req| {
                let decision = sharing::decide(&records, &overrides, req, now);
                (uuid::Uuid::now_v7().to_string(), now, decision)
            })
            .collect();
        let kept: Vec<(&str, &SharingRequest, &SharingDecision)> = out
            .iter()
            .zip(reqs)
            .map(|((id, _, d), req)| (id.as_str(), req, d))
            .collect();
        store::insert_decisions(db, tenant, now, asker, &kept).await?;
        Ok(out)
    }
}

/// The record a referral's consent makes: `Ok(None)` when consent was not obtained.
pub fn referral_record(
    event: &ReferralReceived,
    now: DateTime<Utc>,
) -> Result<Option<ConsentRecord>, Vec<Violation>> {
    let Some(referral) = event.referral.as_ref() else {
        return Err(vec![Violation::new("referral", "missing")]);
    };
    let Some(c) = referral
        .consent
        .as_ref()
        .filter(|c| c.obtained == Some(true))
    else {
        return Ok(None);
    };
    let mut v = Vec::new();
    let given = c.given_by.clone().unwrap_or_default();
    // The giver's relationship and parental responsibility, when the giver is a named family member.
    let member = referral.family_members.iter().find(|m| {
        let name = format!("{} {}", m.given_name.trim(), m.family_name.trim());
        !given.trim().is_empty() && name.eq_ignore_ascii_case(given.trim())
    });
    let method = match c.method.as_deref() {
        None | Some("") => None,
        Some(m) => {
            let parsed = Method::parse(m);
            if parsed.is_none() {
                v.push(Violation::new(
                    "consent.method",
                    format!("unknown method {m:?}"),
                ));
            }
            parsed
        }
    };
    let given_on = match c.date.as_deref() {
        None | Some("") => now.date_naive(),
        Some(d) => parse_date(d).unwrap_or_else(|| {
            v.push(Violation::new("consent.date", format!("not a date: {d:?}")));
            now.date_naive()
        }),
    };
    let restrictions: Vec<pb::Restriction> = c
        .restrictions
        .iter()
        .map(|r| pb::Restriction {
            category: r.category.clone(),
            agency: r.agency.clone(),
        })
        .collect();
    // An unreadable restriction is an error, never dropped: dropping it would share what the
    // family refused.
    let restrictions = convert::restrictions("consent.restrictions", &restrictions, &mut v);
    if event.family_id.is_empty() {
        v.push(Violation::new("family_id", "missing"));
    }
    if !v.is_empty() {
        return Err(v);
    }
    Ok(Some(ConsentRecord {
        id: uuid::Uuid::now_v7().to_string(),
        family_id: event.family_id.clone(),
        person_id: None,
        given_by: given.trim().to_string(),
        giver_relationship: member.map(|m| m.relationship.clone()).unwrap_or_default(),
        parental_responsibility: member
            .and_then(|m| m.parental_responsibility)
            .unwrap_or(false),
        competent_young_person: false,
        method,
        evidence_ref: c.evidence_ref.clone().unwrap_or_default(),
        given_on,
        expires_on: None,
        purposes: REFERRAL_PURPOSES.to_vec(),
        restrictions,
        recorded_at: now,
        withdrawn_at: None,
    }))
}

/// The bus door: `<ns>.*.intake.referral_received`. The events it has in hand at once are
/// handled in one transaction, each in a savepoint of its own (`eh_store::together`): one that
/// fails is rolled back and answered alone, the others commit together.
pub struct ReferralReceivedHandler {
    pub consent: Consent,
    batches: Batcher<InSavepoints<Consent>>,
}

/// The most events handled in one transaction.
pub const MAX_BATCH: usize = 64;

impl ReferralReceivedHandler {
    pub fn new(consent: Consent) -> Self {
        Self {
            consent,
            batches: Batcher::new(MAX_BATCH),
        }
    }
}

/// One referral's consent, read and checked, waiting for its batch.
pub struct Job {
    tenant: String,
    referral_id: String,
    /// `None`: the referral records no consent.
    record: Option<ConsentRecord>,
    msg: Received,
}

eh_bus::admitted_in_order!(ReferralReceivedHandler);

impl ReferralReceivedHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let ctx = &self.consent.ctx;
        let tenant = subjects::tenant_of(ctx.namespace(), &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let event = ReferralReceived::decode(msg.payload.as_ref())
            .map_err(|e| HandlerError::Permanent(format!("not a ReferralReceived: {e}")))?;
        let now = ctx.clock.now();
        let record = referral_record(&event, now).map_err(|v| {
            let reasons: Vec<String> = v
                .iter()
                .map(|v| format!("{}: {}", v.field, v.reason))
                .collect();
            HandlerError::Permanent(format!(
                "referral {} consent unreadable: {}",
                event.referral_id,
                reasons.join("; ")
            ))
        })?;
        let job = Job {
            tenant,
            referral_id: event.referral_id,
            record,
            msg: msg.clone(),
        };
        // Batched by council: one batch, one council's scope.
        let key = format!("{CONSUMER_REFERRAL_RECEIVED}/{}", job.tenant);
        Ok(self
            .batches
            .admit(InSavepoints(self.consent.clone()), &key, job))
    }
}

impl SavepointWork for Consent {
    type Job = Job;

    fn context(&self) -> &ServiceContext {
        &self.ctx
    }
}

#[async_trait]
impl Together<Job> for Consent {
    type Output = Result<Handled, HandlerError>;

    fn tenant<'j>(&self, job: &'j Job) -> &'j str {
        &job.tenant
    }

    async fn each(&self, within: Within<'_>, job: &Job) -> Result<Handled, HandlerError> {
        let (tenant, msg) = (&job.tenant, &job.msg);
        let Some(record) = &job.record else {
            // Claim the inbox anyway, so a redelivery is recognised as such.
            let txn = within.begin().await.map_err(retry)?;
            let fresh = inbox::claim_live(&txn, CONSUMER_REFERRAL_RECEIVED, msg)
                .await
                .map_err(retry)?;
            within.commit(txn).await.map_err(retry)?;
            tracing::info!(%tenant, referral_id = %job.referral_id, "referral without consent: nothing recorded");
            return Ok(if fresh {
                Handled::Done
            } else {
                Handled::Duplicate
            });
        };
        let source = format!("referral:{}", job.referral_id);
        let actor = format!("service:{SERVICE}");
        match self
            .append(
                within,
                tenant,
                record,
                &source,
                Some(&source),
                &actor,
                Some(msg),
            )
            .await
            .map_err(retry)?
        {
            Appended::AlreadyHandled => Ok(Handled::Duplicate),
            Appended::Duplicate => {
                tracing::info!(%tenant, referral_id = %job.referral_id, "referral consent held already");
                Ok(Handled::Done)
            }
            Appended::Stored(s) => {
                tracing::info!(%tenant, record_id = %s.record.id, "consent recorded from referral");
                Ok(Handled::Done)
            }
        }
    }
}

/// A failure to store or publish: waited out when the database is away, else retried.
fn retry(e: impl Into<HandlerError>) -> HandlerError {
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use eh_proto::intake::v1 as intake;

    fn event(consent: Option<intake::Consent>) -> ReferralReceived {
        ReferralReceived {
            referral_id: "r".into(),
            family_id: "f".into(),
            referral: Some(intake::Referral {
                consent,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, 2, 9, 0, 0).unwrap()
    }

    #[test]
    fn no_or_refused_consent_records_nothing() {
        assert_eq!(referral_record(&event(None), now()), Ok(None));
        let refused = intake::Consent {
            obtained: Some(false),
            ..Default::default()
        };
        assert_eq!(referral_record(&event(Some(refused)), now()), Ok(None));
    }

    #[test]
    fn obtained_consent_is_family_wide_for_every_purpose() {
        let c = intake::Consent {
            obtained: Some(true),
            ..Default::default()
        };
        let r = referral_record(&event(Some(c)), now()).unwrap().unwrap();
        assert_eq!(r.family_id, "f");
        assert_eq!(r.person_id, None);
        assert_eq!(r.purposes, REFERRAL_PURPOSES);
        assert_eq!(r.method, None);
        assert_eq!(r.given_on, now().date_naive());
    }

    #[test]
    fn an_unreadable_restriction_is_an_error_never_dropped() {
        let c = intake::Consent {
            obtained: Some(true),
            restrictions: vec![intake::ConsentRestriction {
                category: "shoes".into(),
                agency: None,
            }],
            ..Default::default()
        };
        let v = referral_record(&event(Some(c)), now()).unwrap_err();
        assert_eq!(v[0].field, "consent.restrictions[0].category");
    }
}
