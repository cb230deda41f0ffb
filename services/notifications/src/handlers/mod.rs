//! Events notifications reacts to. Each handler works out a [`Plan`] — the messages an event
//! calls for and the addresses it marks unsafe — then claims the event in its inbox and records
//! the plan in the same transaction, so a redelivered event never queues a second message. The
//! events of one consumer waiting at once share that transaction (`eh_bus::batch`). The
//! sender delivers what is queued (and checks the suppression lists again at the point of send:
//! the address, the family member's person id, and every address held for a person marked
//! unsafe).
//!
//! | consumer | to | template |
//! | --- | --- | --- |
//! | `referral_received` | the referrer | `referral_acknowledgement` |
//! | `screening_decided` | the referrer | `screening_outcome` |
//! | `case_stepped_up` | the council's front door, at once; the referrer | `step_up_front_door`, `step_up_referrer` |
//! | `consent_requested` | family members with parental responsibility | `consent_request` |
//! | `service_level_breached` | the council's Early Help team manager | `service_level_breach` |
//! | `lead_assigned` | family members with parental responsibility; the referrer | `lead_assigned_family`, `lead_assigned_referrer` |
//! | `offer_made` | the service offered the case (its offer mailbox) | `offer_to_provider` |
//! | `offer_declined`, `lead_practitioner_declined` | the council's Early Help team manager | `allocation_declined` |
//! | `action_overdue` | the action's owner (a practitioner's work mailbox; the lead's for the family's own actions), else the team manager | `action_overdue` |
//! | `follow_up_due` | the lead (their mailbox on the plan), else the team manager | `follow_up_due` |
//! | `follow_up_recorded` (the family needs help again) | the council's front door | `follow_up_front_door` |
//! | `people_merged` | nobody: a person unsafe to contact is suppressed under both ids | — |
mod allocation;
mod assessment;
mod case_stepped_up;
mod consent_requested;
mod lead_assigned;
mod people_merged;
mod referral_received;
mod screening_decided;
mod service_level_breached;

pub use allocation::{LeadDeclinedHandler, OfferDeclinedHandler, OfferMadeHandler};
pub use assessment::{ActionOverdueHandler, FollowUpDueHandler, FollowUpRecordedHandler};
pub use case_stepped_up::CaseSteppedUpHandler;
pub use consent_requested::ConsentRequestedHandler;
pub use lead_assigned::LeadAssignedHandler;
pub use people_merged::PeopleMergedHandler;
pub use referral_received::{ReferralReceivedHandler, UrgentReferralReceivedHandler};
pub use screening_decided::ScreeningDecidedHandler;
pub use service_level_breached::ServiceLevelBreachedHandler;

use crate::domain::Addressee;
use crate::settings::{Council, NotificationsSettings};
use crate::{store, templates};
use eh_bus::batch::{Batch, Batcher};
use eh_bus::consumer::{Handled, HandlerError, Pending};
use eh_bus::{Received, ServiceContext, inbox, subjects};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use tokio::sync::Notify;

/// What every handler is given: the service, the sender's bell and the batches events are
/// recorded in.
#[derive(Clone)]
pub struct Notifier {
    pub ctx: ServiceContext,
    /// Notifications' settings: the councils' templates, senders and mailboxes.
    pub settings: Arc<NotificationsSettings>,
    pub wake: Arc<Notify>,
    /// The urgent sender's bell, rung when a step-up is recorded (`urgent.rs`).
    pub urgent_wake: Arc<Notify>,
    batches: Batcher<Notifier>,
}

/// A failure to store or publish: waited out when the database is away, else retried.
fn retry(e: impl Into<HandlerError>) -> HandlerError {
    e.into()
}

/// One message an event calls for.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The name it is recorded under.
    pub template: &'static str,
    /// The names its text is looked up under, first found wins (council's, then built-in).
    pub text: Vec<String>,
    pub to: Addressee,
    /// The case id for case events, the referral id for screening.
    pub related_id: String,
    /// Tells two occurrences apart (see `store::Recorded`).
    pub dedupe_key: String,
    pub priority: i32,
    pub vars: BTreeMap<&'static str, String>,
    /// The family member it is for (intake's person id), when it is for one: the sender
    /// withholds it when that person is marked unsafe, at whatever address.
    pub person_id: Option<String>,
}

impl Outgoing {
    pub fn new(template: &'static str, to: Addressee, related_id: &str) -> Self {
        Self {
            template,
            text: vec![template.to_string()],
            to,
            related_id: related_id.to_string(),
            dedupe_key: String::new(),
            priority: store::PRIORITY_NORMAL,
            vars: BTreeMap::new(),
            person_id: None,
        }
    }
}

/// Everything one event leads to.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub messages: Vec<Outgoing>,
    /// Addresses the event marks unsafe, with why; they join the tenant's suppression list.
    pub unsafe_addresses: Vec<(String, String)>,
    /// Family members (person ids) the event marks unsafe, with why (ids only); they join the
    /// tenant's person suppression list, so every address held for them is withheld too.
    pub unsafe_people: Vec<(String, String)>,
    /// Addresses the event gives for family members: (person id, address).
    pub person_addresses: Vec<(String, String)>,
}

impl Plan {
    /// No message yet; what a case event's family contacts say about safety: each unsafe address
    /// and family member joins the suppression lists (the reason names the case, ids only), and
    /// each address is remembered for its person.
    pub fn for_family(family: &[eh_proto::casework::v1::Contact], case_id: &str) -> Self {
        Plan {
            messages: Vec::new(),
            unsafe_addresses: crate::domain::unsafe_addresses(family)
                .into_iter()
                .map(|a| (a, format!("unsafe to contact (case {case_id})")))
                .collect(),
            unsafe_people: crate::domain::unsafe_people(family)
                .into_iter()
                .map(|p| {
                    let why = format!("person {p} unsafe to contact (case {case_id})");
                    (p, why)
                })
                .collect(),
            person_addresses: crate::domain::person_addresses(family),
        }
    }

    pub fn recipients(&self) -> Vec<&Addressee> {
        self.messages.iter().map(|m| &m.to).collect()
    }
}

/// The tenant of `msg` and its payload as `T`; a message that is neither is permanent.
fn decode<T: prost::Message + Default>(
    ctx: &ServiceContext,
    msg: &Received,
    what: &str,
) -> Result<(String, T), HandlerError> {
    let tenant = subjects::tenant_of(ctx.namespace(), &msg.subject)
        .ok_or_else(|| HandlerError::Permanent(format!("subject {} has no tenant", msg.subject)))?
        .to_string();
    let event = T::decode(msg.payload.as_ref())
        .map_err(|e| HandlerError::Permanent(format!("not a {what}: {e}")))?;
    Ok((tenant, event))
}

/// The council's name in messages: its settings' name, else the tenant id.
fn council(tenant: &str, settings: Option<&Council>) -> String {
    settings
        .map(|t| t.name.clone())
        .unwrap_or_else(|| tenant.to_string())
}

/// A configured mailbox, when it is one.
fn mailbox(value: Option<&String>) -> Option<String> {
    value
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// What recording plans writes, and what to say in the log once it is committed.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub writes: store::Writes,
    notes: Vec<Note>,
}

/// A message settled at once rather than queued.
#[derive(Debug, Clone)]
enum Note {
    Suppressed {
        tenant: String,
        template: &'static str,
        related_id: String,
    },
    Undeliverable {
        tenant: String,
        template: &'static str,
        related_id: String,
        why: String,
    },
}

impl Recording {
    /// Adds `plan`: unsafe addresses onto the suppression list, then each message rendered from
    /// the council's templates — queued for the sender, or settled at once as `suppressed` (the
    /// event marks the address unsafe) or `undeliverable` (no address), with the reason. A
    /// template that does not render is permanent.
    pub fn add(
        &mut self,
        tenant: &str,
        settings: Option<&Council>,
        plan: &Plan,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), HandlerError> {
        for (address, why) in &plan.unsafe_addresses {
            self.writes.suppress(tenant, address, why, now);
        }
        for (person, why) in &plan.unsafe_people {
            self.writes.suppress_person(tenant, person, why, now);
        }
        for (person, address) in &plan.person_addresses {
            self.writes.person_address(tenant, person, address, now);
        }
        for m in &plan.messages {
            let names: Vec<&str> = m.text.iter().map(String::as_str).collect();
            let (subject_t, body_t) = templates::lookup_first(settings, &names)
                .ok_or_else(|| HandlerError::Permanent(format!("no template {}", m.template)))?;
            let subject = templates::render(&subject_t, &m.vars).map_err(|e| {
                HandlerError::Permanent(format!("template {} subject: {e}", m.template))
            })?;
            let body = templates::render(&body_t, &m.vars).map_err(|e| {
                HandlerError::Permanent(format!("template {} body: {e}", m.template))
            })?;
            let unsafe_reason;
            let (recipient, status, reason) = match &m.to {
                Addressee::Send(a) => (a.as_str(), store::status::QUEUED, None),
                Addressee::Unsafe(a) => {
                    unsafe_reason = format!(
                        "marked unsafe to contact (event for {} about {})",
                        m.template, m.related_id
                    );
                    self.writes.suppress(tenant, a, &unsafe_reason, now);
                    if let Some(person) = &m.person_id {
                        self.writes
                            .suppress_person(tenant, person, &unsafe_reason, now);
                    }
                    self.notes.push(Note::Suppressed {
                        tenant: tenant.to_string(),
                        template: m.template,
                        related_id: m.related_id.clone(),
                    });
                    (
                        a.as_str(),
                        store::status::SUPPRESSED,
                        Some(unsafe_reason.as_str()),
                    )
                }
                Addressee::Nobody(why) => {
                    self.notes.push(Note::Undeliverable {
                        tenant: tenant.to_string(),
                        template: m.template,
                        related_id: m.related_id.clone(),
                        why: why.clone(),
                    });
                    ("", store::status::UNDELIVERABLE, Some(why.as_str()))
                }
            };
            self.writes.message(
                &store::Recorded {
                    message: store::NewMessage {
                        tenant,
                        template: m.template,
                        recipient,
                        related_id: &m.related_id,
                        subject: &subject,
                        body: &body,
                    },
                    dedupe_key: &m.dedupe_key,
                    priority: m.priority,
                    status,
                    reason,
                    person_id: m.person_id.as_deref(),
                },
                now,
            );
        }
        Ok(())
    }

    fn append(&mut self, other: &Recording) {
        self.writes.append(&other.writes);
        self.notes.extend(other.notes.iter().cloned());
    }

    fn log(&self) {
        for note in &self.notes {
            match note {
                Note::Suppressed {
                    tenant,
                    template,
                    related_id,
                } => tracing::info!(
                    tenant,
                    template,
                    related_id,
                    "recipient marked unsafe; message suppressed, not sent"
                ),
                Note::Undeliverable {
                    tenant,
                    template,
                    related_id,
                    why,
                } => tracing::warn!(
                    tenant,
                    template,
                    related_id,
                    reason = %why,
                    "message undeliverable"
                ),
            }
        }
    }
}

/// One event's recording, waiting for its batch.
pub struct Job {
    key: String,
    /// The ids its event names: one its council destroyed here makes it recreate nothing.
    named: Vec<String>,
    recording: Recording,
}

/// The most events of one consumer recorded in one transaction.
pub const MAX_BATCH: usize = 256;

impl Notifier {
    pub fn new(ctx: ServiceContext, wake: Arc<Notify>) -> Self {
        Self {
            // Checked at start (`Service::check_settings`).
            settings: Arc::new(
                NotificationsSettings::from_settings(&ctx.settings).unwrap_or_default(),
            ),
            ctx,
            wake,
            urgent_wake: Arc::new(Notify::new()),
            batches: Batcher::new(MAX_BATCH),
        }
    }

    /// Records `plan` for `msg`, claimed in `consumer`'s inbox in the same transaction, then rings
    /// the sender.
    async fn apply(
        &self,
        consumer: &'static str,
        msg: &Received,
        tenant: &str,
        plan: &Plan,
    ) -> Result<Handled, HandlerError> {
        self.admit(consumer, msg, tenant, plan, Recording::default())
            .await
    }

    /// Renders `plan` (with `recording`, e.g. read models, to write too) and queues it at once
    /// for the next batch of `consumer` (`eh_bus::batch`): events are recorded in the order
    /// they are admitted. Returns the answer to come.
    fn admit(
        &self,
        consumer: &'static str,
        msg: &Received,
        tenant: &str,
        plan: &Plan,
        mut recording: Recording,
    ) -> Pending {
        let settings = self.settings.council(tenant);
        if let Err(e) = recording.add(tenant, settings, plan, self.ctx.clock.now()) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let job = Job {
            key: msg.key(),
            named: inbox::uuids_in(&msg.payload),
            recording,
        };
        // Batched by council (`<consumer>/<tenant>`): one batch, one council's scope.
        Box::pin(
            self.batches
                .enqueue(self.clone(), &format!("{consumer}/{tenant}"), job),
        )
    }
}

#[async_trait::async_trait]
impl Batch for Notifier {
    type Job = Job;
    type Output = Handled;
    type Error = HandlerError;

    /// Claims every job's event in `consumer`'s inbox and writes the recordings of those claimed
    /// now, in one transaction; an event handled before (or twice in the batch) is a duplicate.
    async fn run(&self, key: &str, jobs: &[Job]) -> Result<Vec<Handled>, HandlerError> {
        let Some((consumer, tenant)) = key.split_once('/') else {
            return Err(HandlerError::Permanent(format!(
                "batch {key:?} names no council"
            )));
        };
        let txn = eh_store::begin_scoped(&self.ctx.db, tenant)
            .await
            .map_err(retry)?;
        let keys: Vec<String> = jobs.iter().map(|j| j.key.clone()).collect();
        // Before the claims, so a destruction under way in the council is waited for.
        let mut named: Vec<String> = jobs.iter().flat_map(|j| j.named.clone()).collect();
        named.sort_unstable();
        named.dedup();
        let gone = inbox::destroyed(&txn, tenant, &named)
            .await
            .map_err(retry)?;
        let claimed = inbox::claim_many(&txn, consumer, &keys)
            .await
            .map_err(retry)?;
        let mut taken = HashSet::new();
        let mut all = Recording::default();
        let mut outputs = Vec::with_capacity(jobs.len());
        for job in jobs {
            let about_destroyed = job.named.iter().any(|id| gone.contains(id));
            if about_destroyed && claimed.contains(&job.key) {
                tracing::warn!(
                    consumer,
                    key = job.key,
                    "a message about a destroyed family is not handled: nothing of it is recreated"
                );
            }
            if claimed.contains(&job.key) && !about_destroyed && taken.insert(job.key.as_str()) {
                all.append(&job.recording);
                outputs.push(Handled::Done);
            } else {
                outputs.push(Handled::Duplicate);
            }
        }
        all.writes.write(&txn).await.map_err(retry)?;
        eh_store::commit(txn).await.map_err(retry)?;
        all.log();
        if outputs.contains(&Handled::Done) {
            self.wake.notify_one();
            if consumer == crate::CONSUMER_CASE_STEPPED_UP {
                self.urgent_wake.notify_one();
            }
        }
        Ok(outputs)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::templates;
    use std::collections::BTreeSet;

    /// The variables a plan gives a template are exactly the ones the template declares, so any
    /// council override that passed the start-up check renders.
    pub fn assert_vars_match(m: &super::Outgoing) {
        let given: BTreeSet<&str> = m.vars.keys().copied().collect();
        for name in &m.text {
            let declared: BTreeSet<&str> = templates::variables(name)
                .unwrap_or_else(|| panic!("{name} is not a known template"))
                .iter()
                .copied()
                .collect();
            assert_eq!(given, declared, "{name}");
        }
    }
}
