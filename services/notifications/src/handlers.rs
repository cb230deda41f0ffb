//! Events notifications reacts to. `referral_received`: addresses of family members marked unsafe
//! go on the suppression list, and the referrer (when an email was given) gets an acknowledgement —
//! recorded as a queued message in the same transaction as the inbox claim, so a redelivered event
//! never queues a second one.
use crate::templates::{self, REFERRAL_ACKNOWLEDGEMENT};
use crate::{CONSUMER_REFERRAL_RECEIVED, store};
use async_trait::async_trait;
use eh_bus::consumer::{Handled, HandlerError};
use eh_bus::{Received, ServiceContext, inbox, subjects};
use eh_proto::intake::v1::ReferralReceived;
use prost::Message;
use sea_orm::TransactionTrait;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

pub struct ReferralReceivedHandler {
    pub ctx: ServiceContext,
    pub wake: Arc<Notify>,
}

fn retry(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Retryable(e.to_string())
}

#[async_trait]
impl eh_bus::Handler for ReferralReceivedHandler {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError> {
        let tenant = subjects::tenant_of(self.ctx.namespace(), &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let event = ReferralReceived::decode(msg.payload.as_ref())
            .map_err(|e| HandlerError::Permanent(format!("not a ReferralReceived: {e}")))?;
        let referral = event.referral.as_ref().ok_or_else(|| {
            HandlerError::Permanent("ReferralReceived without its referral".into())
        })?;
        let tenant_settings = self.ctx.settings.tenants.get(&tenant);
        let now = self.ctx.clock.now();

        let txn = self.ctx.db.begin().await.map_err(retry)?;
        if !inbox::claim(&txn, CONSUMER_REFERRAL_RECEIVED, &msg.key())
            .await
            .map_err(retry)?
        {
            txn.rollback().await.map_err(retry)?;
            return Ok(Handled::Duplicate);
        }
        for m in &referral.family_members {
            if m.safe_to_contact == Some(false)
                && let Some(email) = &m.email
            {
                store::suppress(
                    &txn,
                    &tenant,
                    email,
                    &format!("unsafe to contact (referral {})", event.referral_id),
                    now,
                )
                .await
                .map_err(retry)?;
            }
        }
        let referrer = referral.referrer.clone().unwrap_or_default();
        if let Some(email) = referrer.email.as_deref().filter(|e| !e.is_empty()) {
            let (subject_t, body_t) = templates::lookup(tenant_settings, REFERRAL_ACKNOWLEDGEMENT)
                .ok_or_else(|| HandlerError::Permanent("no acknowledgement template".into()))?;
            let source = referral.source.clone().unwrap_or_default();
            let received = chrono::DateTime::parse_from_rfc3339(&event.received_at)
                .map(|d| d.format("%-d %B %Y").to_string())
                .unwrap_or_else(|_| event.received_at.clone());
            let mut vars = BTreeMap::new();
            vars.insert(
                "council",
                tenant_settings
                    .map(|t| t.name.clone())
                    .unwrap_or_else(|| tenant.clone()),
            );
            vars.insert("reference", source.reference.clone());
            vars.insert("referrer_name", referrer.name.clone());
            vars.insert("received_date", received);
            vars.insert("referral_id", event.referral_id.clone());
            let subject = templates::render(&subject_t, &vars).map_err(HandlerError::Permanent)?;
            let body = templates::render(&body_t, &vars).map_err(HandlerError::Permanent)?;
            store::queue(
                &txn,
                &store::NewMessage {
                    tenant: &tenant,
                    template: REFERRAL_ACKNOWLEDGEMENT,
                    recipient: email,
                    related_id: &event.referral_id,
                    subject: &subject,
                    body: &body,
                },
                now,
            )
            .await
            .map_err(retry)?;
        }
        txn.commit().await.map_err(retry)?;
        self.wake.notify_one();
        Ok(Handled::Done)
    }
}
