//! Referrals stored in batches: one transaction, one people lock and one commit for every valid
//! referral of a tenant waiting on this replica, instead of one each.
//!
//! ## Why
//! A tenant's people lock (`store::people`) serialises every writer of its people across
//! replicas, so one council's referrals were stored one at a time, each holding the lock for
//! its ~20 round trips and its commit: about 80 a second under load, whatever the hardware.
//! Batched, the lock is taken once per batch and the rows go out as one multi-row `INSERT` per
//! table ([`Plan`]), so the time under the lock grows far slower than the batch.
//!
//! ## How
//! Each submission (either door) becomes a [`Job`] on its tenant's queue of the shared
//! [`eh_bus::batch::Batcher`], which hands every job waiting (up to [`MAX_BATCH`]) to
//! [`Storer`] at once. That stores them in one transaction: the inbox claims (one
//! statement), the people lock, the held source references (one query), then each referral in
//! arrival order is matched against the index as refreshed to the lock's stamp *plus the people
//! this batch has created so far* — two referrals of one new family in one batch still find each
//! other, as they would one after the other — and planned; then the rows, the outbox messages and
//! the commit. A job whose inbound message was handled before (the inbox) is `AlreadyHandled`; a
//! source reference held already or earlier in the batch is a `Duplicate` of that referral.
//!
//! ## When a batch fails
//! Nothing of it is committed; the people it added to the index are taken out again (the
//! refresh would have read them back from the database had it committed). The batcher then
//! stores each job again on its own, so one referral the database refuses fails alone (and its
//! message is retried and dead-lettered as any other), never its batch-mates.
//!
//! The work runs in a spawned task, so a caller that goes away (a cancelled gRPC call) does not
//! cut a batch short.
use crate::handlers::held_people::HeldPeople;
use crate::handlers::submission::{CONSUMER_INBOUND, Outcome, StoreError, bus_err};
use crate::store::people::lock_people;
use crate::store::plan::Plan;
use crate::store::referrals::{self, StoredReferral};
use eh_bus::{Envelope, OutboundMessage, Received, ServiceContext, inbox};
use eh_proto::intake::v1::{Referral, ReferralReceived};
use prost::Message;
use std::collections::HashSet;

/// The most referrals stored in one transaction.
pub const MAX_BATCH: usize = 256;

/// A valid referral waiting to be stored.
pub struct Job {
    /// A significant-harm referral (the urgent lane): also announced on
    /// `referral_received.urgent`.
    pub urgent: bool,
    pub referral: Referral,
    pub document: serde_json::Value,
    pub actor: String,
    /// The bus door's message (its inbox key); `None` for gRPC.
    pub inbound: Option<Received>,
    /// The `referral_received` envelope, made in the submitter's span (its trace).
    pub envelope: Envelope,
    pub now: chrono::DateTime<chrono::Utc>,
}

impl Job {
    fn source(&self) -> (String, String) {
        let s = self.referral.source.clone().unwrap_or_default();
        (s.system, s.reference)
    }
}

/// Each tenant's queue of referrals on this replica.
pub type Batches = eh_bus::batch::Batcher<Storer>;

/// What stores a tenant's waiting referrals: the service's context and the replica's people
/// (the same indexes as the doors' `Intake`).
#[derive(Clone)]
pub struct Storer {
    ctx: ServiceContext,
    people: HeldPeople,
}

impl Storer {
    pub fn new(ctx: ServiceContext, people: HeldPeople) -> Self {
        Self { ctx, people }
    }
}

pub(crate) fn batches() -> Batches {
    Batches::new(MAX_BATCH)
}

impl From<eh_bus::batch::Interrupted> for StoreError {
    fn from(e: eh_bus::batch::Interrupted) -> Self {
        StoreError(sea_orm::DbErr::Custom(format!("intake {e}")))
    }
}

#[async_trait::async_trait]
impl eh_bus::batch::Batch for Storer {
    type Job = Job;
    type Output = Outcome;
    type Error = StoreError;

    async fn run(&self, tenant: &str, jobs: &[Job]) -> Result<Vec<Outcome>, StoreError> {
        // The first batch of a tenant on this replica loads its people, before any lock.
        let reader = self.ctx.readers.of(tenant).await?;
        self.people.ensure_loaded(&reader, tenant).await?;
        let outcomes = self.store(tenant, jobs).await?;
        self.ctx.outbox.committed();
        Ok(outcomes)
    }
}

impl Storer {
    /// Stores `jobs` in one transaction; one outcome per job, in order.
    async fn store(&self, tenant: &str, jobs: &[Job]) -> Result<Vec<Outcome>, StoreError> {
        let started = std::time::Instant::now();
        let mut phases: Vec<(&str, u128)> = Vec::new();
        let mut mark = |what: &'static str| phases.push((what, started.elapsed().as_micros()));
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant).await?;
        let keys: Vec<String> = jobs
            .iter()
            .filter_map(|j| j.inbound.as_ref().map(Received::key))
            .collect();
        let claimed = if keys.is_empty() {
            HashSet::new()
        } else {
            inbox::claim_many(&txn, CONSUMER_INBOUND, &keys)
                .await
                .map_err(bus_err)?
        };
        mark("claimed");
        // One writer of this tenant's people at a time, on every replica (`store::people`).
        let stamp = lock_people(&txn, tenant).await?;
        mark("locked");
        let sources: Vec<(String, String)> = jobs.iter().map(Job::source).collect();
        let mut held = referrals::find_by_sources(&txn, tenant, &sources).await?;
        mark("sources");
        let mut index = self.people.lock_index(&txn, tenant, stamp).await?;
        mark("refreshed");
        let mut plan = Plan::new(stamp);
        let mut created: Vec<String> = Vec::new();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut messages = Vec::new();
        let mut taken = HashSet::new();
        let stored: Result<(), StoreError> = async {
            for job in jobs {
                if let Some(msg) = &job.inbound {
                    let key = msg.key();
                    if !claimed.contains(&key) || !taken.insert(key) {
                        outcomes.push(Outcome::AlreadyHandled);
                        continue;
                    }
                }
                let source = job.source();
                if let Some((id, received_at)) = held.get(&source) {
                    outcomes.push(Outcome::Duplicate {
                        id: id.clone(),
                        received_at: *received_at,
                    });
                    continue;
                }
                let matched = index.match_referral(&job.referral);
                let history = match &matched.family_id {
                    Some(f) if !plan.is_new_family(f) => {
                        referrals::family_referrals(&txn, tenant, f).await?
                    }
                    _ => Vec::new(),
                };
                let (stored, people) = plan.add(
                    tenant,
                    &job.referral,
                    &job.document,
                    &job.actor,
                    job.now,
                    &matched,
                    history,
                )?;
                for p in people {
                    created.push(p.person_id.clone());
                    index.insert(p);
                }
                held.insert(source, (stored.id.clone(), stored.received_at));
                messages.extend(self.received_messages(&stored, &job.envelope, job.urgent));
                outcomes.push(Outcome::Stored(Box::new(stored)));
            }
            mark("planned");
            plan.write(&txn).await?;
            mark("written");
            self.ctx
                .outbox
                .enqueue_all(&txn, &messages)
                .await
                .map_err(bus_err)?;
            mark("outbox");
            eh_store::commit(txn).await?;
            mark("committed");
            Ok(())
        }
        .await;
        if let Err(e) = stored {
            for id in &created {
                index.remove(id);
            }
            return Err(e);
        }
        tracing::debug!(
            tenant,
            jobs = jobs.len(),
            stored = plan.referrals(),
            ?phases,
            "referral batch stored"
        );
        Ok(outcomes)
    }

    /// `referral_received`, and for an urgent referral `referral_received.urgent` too: the same
    /// payload under an envelope of its own (its own event id, so the broker does not take it for
    /// a repeat; the same correlation and cause).
    fn received_messages(
        &self,
        stored: &StoredReferral,
        env: &Envelope,
        urgent: bool,
    ) -> Vec<OutboundMessage> {
        let event = ReferralReceived {
            referral_id: stored.id.clone(),
            family_id: stored.family_id.clone(),
            received_at: stored.received_at.to_rfc3339(),
            referral: Some(stored.referral.clone()),
            children: stored.children.clone(),
            family_members: stored.family_members.clone(),
            re_referral: stored.re_referral,
            known_family: stored.known_family,
        };
        let ns = self.ctx.namespace();
        let payload = event.encode_to_vec();
        let mut messages = Vec::with_capacity(2);
        if urgent {
            let lane = Envelope {
                id: uuid::Uuid::now_v7(),
                ..env.clone()
            };
            messages.push(OutboundMessage::event(
                eh_proto::catalogue::REFERRAL_RECEIVED_URGENT.subject(ns, &stored.tenant),
                &lane,
                payload.clone(),
            ));
        }
        messages.push(OutboundMessage::event(
            eh_proto::catalogue::REFERRAL_RECEIVED.subject(ns, &stored.tenant),
            env,
            payload,
        ));
        messages
    }
}
