//! Screening on command: casework sends `<ns>.<tenant>.intake.cmd.screen_referral` once the
//! family's consent is held; intake screens the stored referral against the tenant's rules
//! (configuration, `tenants.<id>.screening`), stores the decision with the rule version and the
//! reasons, and announces `screening_decided` — inbox claim, decision and event in ONE
//! transaction.
use crate::domain::screening::{self, ScreeningRules};
use crate::store::{referrals, screening as decisions};
use async_trait::async_trait;
use eh_bus::batch::{Batcher, InSavepoints, SavepointWork};
use eh_bus::consumer::{Handled, HandlerError, Pending};
use eh_bus::{Envelope, OutboundMessage, Received, ServiceContext, inbox, subjects};
use eh_proto::intake::v1::{ScreenReferral, ScreeningDecided};
use eh_store::{Together, Within};
use prost::Message;
use sea_orm::DbErr;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const CONSUMER: &str = eh_proto::catalogue::INTAKE_SCREEN_REFERRAL.consumer;

/// The command handler. The commands it has in hand at once are screened in one transaction,
/// each in a savepoint of its own (`eh_store::together`): one that fails is rolled back and
/// answered alone, the others commit together.
#[derive(Clone)]
pub struct ScreenReferralHandler {
    pub ctx: ServiceContext,
    pub rules: Arc<BTreeMap<String, ScreeningRules>>,
    batches: Batcher<InSavepoints<ScreenReferralHandler>>,
}

/// The most commands screened in one transaction.
pub const MAX_BATCH: usize = 64;

impl ScreenReferralHandler {
    pub fn new(ctx: ServiceContext, rules: BTreeMap<String, ScreeningRules>) -> Self {
        Self {
            ctx,
            rules: Arc::new(rules),
            batches: Batcher::new(MAX_BATCH),
        }
    }
}

/// One command, decoded, waiting for its batch.
pub struct ScreenJob {
    tenant: String,
    cmd: ScreenReferral,
    msg: Received,
}

eh_bus::admitted_in_order!(ScreenReferralHandler);

impl ScreenReferralHandler {
    fn admit(&self, msg: &Received) -> Result<Pending, HandlerError> {
        let ns = self.ctx.namespace().to_string();
        let tenant = subjects::tenant_of(&ns, &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let cmd = ScreenReferral::decode(msg.payload.as_ref())
            .map_err(|e| HandlerError::Permanent(format!("not a ScreenReferral: {e}")))?;
        if !self.rules.contains_key(&tenant) {
            return Err(HandlerError::Permanent(format!(
                "unknown tenant {tenant:?}"
            )));
        }
        let job = ScreenJob {
            tenant,
            cmd,
            msg: msg.clone(),
        };
        // Batched by council: one batch, one council's scope.
        let key = format!("{CONSUMER}/{}", job.tenant);
        Ok(self.batches.admit(InSavepoints(self.clone()), &key, job))
    }
}

impl SavepointWork for ScreenReferralHandler {
    type Job = ScreenJob;

    fn context(&self) -> &ServiceContext {
        &self.ctx
    }
}

#[async_trait]
impl Together<ScreenJob> for ScreenReferralHandler {
    type Output = Result<Handled, HandlerError>;

    fn tenant<'j>(&self, job: &'j ScreenJob) -> &'j str {
        &job.tenant
    }

    async fn each(&self, within: Within<'_>, job: &ScreenJob) -> Result<Handled, HandlerError> {
        let ns = self.ctx.namespace().to_string();
        let (tenant, cmd, msg) = (&job.tenant, &job.cmd, &job.msg);
        let Some(rules) = self.rules.get(tenant) else {
            return Err(HandlerError::Permanent(format!(
                "unknown tenant {tenant:?}"
            )));
        };
        let retry = |e: DbErr| HandlerError::db(&e);
        let txn = within.begin().await.map_err(retry)?;
        if !inbox::claim_live(&txn, CONSUMER, msg)
            .await
            .map_err(|e| HandlerError::bus(&e))?
        {
            // Committed: a message about a destroyed family stays claimed too.
            within.commit(txn).await.map_err(retry)?;
            return Ok(Handled::Duplicate);
        }
        let Some(stored) = referrals::get(&txn, tenant, &cmd.referral_id)
            .await
            .map_err(retry)?
        else {
            txn.rollback().await.map_err(retry)?;
            return Err(HandlerError::Permanent(format!(
                "tenant {tenant} holds no referral {}",
                cmd.referral_id
            )));
        };
        let now = self.ctx.clock.now();
        let decision = screening::screen(rules, &stored.referral, eh_workdays::uk_local_date(now));
        let outcome = decision.outcome.as_str();
        let text =
            serde_json::to_string(&decision).map_err(|e| HandlerError::Permanent(e.to_string()))?;
        decisions::insert(
            &txn,
            tenant,
            &cmd.case_id,
            &cmd.referral_id,
            &decision,
            &text,
            now,
        )
        .await
        .map_err(retry)?;
        let r = &stored.referral;
        let source = r.source.clone().unwrap_or_default();
        let event = ScreeningDecided {
            case_id: cmd.case_id.clone(),
            referral_id: stored.id.clone(),
            family_id: stored.family_id.clone(),
            outcome: outcome.into(),
            reasons: decision.reasons.clone(),
            rule_version: decision.rule_version.clone(),
            programmes_met: decision.programmes_met.clone(),
            advice: decision.advice.clone().unwrap_or_default(),
            missing: decision.missing.clone(),
            decided_at: now.to_rfc3339(),
            referrer: r.referrer.clone(),
            source_system: source.system,
            source_reference: source.reference,
            needs: r.needs.clone(),
            postcode: r
                .address
                .as_ref()
                .map(|a| a.postcode.clone())
                .unwrap_or_default(),
        };
        let spec = &eh_proto::catalogue::SCREENING_DECIDED;
        let env = Envelope::new(spec.payload, tenant, "system:intake", now)
            .caused_by(msg.envelope().as_ref(), &msg.key());
        self.ctx
            .outbox
            .enqueue(
                &txn,
                &OutboundMessage::event(spec.subject(&ns, tenant), &env, event.encode_to_vec()),
            )
            .await
            .map_err(|e| HandlerError::bus(&e))?;
        within.commit(txn).await.map_err(retry)?;
        self.ctx.outbox.committed();
        tracing::info!(tenant, referral_id = %stored.id, case_id = %cmd.case_id, outcome, "referral screened");
        Ok(Handled::Done)
    }
}
