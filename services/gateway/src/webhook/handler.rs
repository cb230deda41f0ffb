//! casework's `case_state_changed` → a delivery for the system whose referral opened the case,
//! when the case reached a new public status and that system has an endpoint. The delivery and
//! the message's inbox entry are written in one transaction; a redelivered event finds its
//! inbox entry and adds nothing, and one about a family destroyed here (in flight at the
//! destruction, or replayed) adds nothing either: nothing is sent about it.
use super::{Endpoint, STATUS_CHANGED, payload, store};
use crate::api::cases::PublicStatus;
use eh_bus::consumer::{Handled, HandlerError};
use eh_bus::{Received, ServiceContext};
use eh_proto::casework::v1::CaseStateChanged;
use prost::Message;
use std::sync::Arc;
use tokio::sync::Notify;

/// The durable consumer's name (the catalogue's).
pub const CONSUMER: &str = eh_proto::catalogue::GATEWAY_CASE_STATE_CHANGED.consumer;

pub struct CaseStateChangedHandler {
    pub ctx: ServiceContext,
    pub endpoints: Arc<Vec<Endpoint>>,
    /// Wakes the sender when a delivery is stored.
    pub wake: Arc<Notify>,
}

/// The public status a change announces: `None` when the case's public status did not change.
/// A case is `requested` only within its opening (casework announces the opening as the move
/// from `requested` to its first state), so that move always announces the first status.
pub fn announced(from_state: &str, to_state: &str) -> Option<PublicStatus> {
    let to = PublicStatus::of_state(to_state)?;
    let from = match from_state {
        "" | "requested" => None,
        s => PublicStatus::of_state(s),
    };
    (from != Some(to)).then_some(to)
}

#[async_trait::async_trait]
impl eh_bus::Handler for CaseStateChangedHandler {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError> {
        let ctx = &self.ctx;
        let tenant = eh_bus::subjects::tenant_of(ctx.namespace(), &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let ev = CaseStateChanged::decode(msg.payload.as_ref())
            .map_err(|e| HandlerError::Permanent(format!("not a CaseStateChanged: {e}")))?;
        let case = ev
            .case
            .as_ref()
            .ok_or_else(|| HandlerError::Permanent("CaseStateChanged without its case".into()))?;
        let Some(status) = announced(&ev.from_state, &ev.to_state) else {
            return Ok(Handled::Done);
        };
        if !self
            .endpoints
            .iter()
            .any(|e| e.tenant == tenant && e.system == case.source_system)
        {
            // The system wants no status updates: nothing to keep.
            return Ok(Handled::Done);
        }
        let body = payload(
            &case.case_id,
            &case.referral_id,
            &case.source_reference,
            status,
            &ev.at,
        )
        .to_string();
        let id = format!("msg_{}", msg.id());
        let db = |e: sea_orm::DbErr| HandlerError::db(&e);
        let txn = eh_store::begin_scoped(&ctx.db, &tenant).await.map_err(db)?;
        if !eh_bus::inbox::claim_live(&txn, CONSUMER, msg)
            .await
            .map_err(|e| HandlerError::bus(&e))?
        {
            // Committed: a message about a destroyed family stays claimed too.
            eh_store::commit(txn).await.map_err(db)?;
            return Ok(Handled::Duplicate);
        }
        let delivery = store::NewDelivery {
            id: &id,
            system: &case.source_system,
            case_id: &case.case_id,
            referral_id: &case.referral_id,
            event_type: STATUS_CHANGED,
            payload: &body,
        };
        store::insert(&txn, &tenant, &delivery, ctx.clock.now())
            .await
            .map_err(db)?;
        eh_store::commit(txn).await.map_err(db)?;
        self.wake.notify_one();
        Ok(Handled::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_public_status_is_announced() {
        assert_eq!(announced("", "requested"), Some(PublicStatus::Received));
        // The opening: from `requested` to the first state.
        assert_eq!(
            announced("requested", "awaiting_consent"),
            Some(PublicStatus::Received)
        );
        assert_eq!(
            announced("requested", "screening"),
            Some(PublicStatus::Received)
        );
        assert_eq!(
            announced("requested", "stepped_up"),
            Some(PublicStatus::SteppedUp)
        );
        assert_eq!(announced("awaiting_consent", "screening"), None);
        assert_eq!(
            announced("screening", "ready_for_allocation"),
            Some(PublicStatus::Screened)
        );
        assert_eq!(announced("ready_for_allocation", "allocating"), None);
        assert_eq!(
            announced("allocating", "allocated"),
            Some(PublicStatus::Allocated)
        );
        assert_eq!(announced("allocated", "assessment_open"), None);
        assert_eq!(
            announced("screening", "closed_advice_given"),
            Some(PublicStatus::Closed)
        );
        assert_eq!(
            announced("screening", "stepped_up"),
            Some(PublicStatus::SteppedUp)
        );
        assert_eq!(announced("screening", "unknown"), None);
    }
}
