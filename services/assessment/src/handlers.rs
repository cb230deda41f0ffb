//! What assessment consumes: casework's `lead_assigned` — the case has a lead practitioner, so its
//! assessment may be opened, by them (or a team manager). The lead is recorded in the same
//! transaction as the inbox claim; a later lead for the same case replaces the earlier one.
use crate::store::{self, CaseRow};
use eh_bus::{Handled, HandlerError, Received, ServiceContext};
use eh_proto::casework::v1::LeadAssigned;
use prost::Message;

/// The durable consumer of `lead_assigned`.
pub struct LeadAssignedHandler {
    pub ctx: ServiceContext,
    pub name: &'static str,
}

#[async_trait::async_trait]
impl eh_bus::Handler for LeadAssignedHandler {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError> {
        let ctx = &self.ctx;
        let tenant = eh_bus::subjects::tenant_of(ctx.namespace(), &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let ev = LeadAssigned::decode(msg.payload.as_ref())
            .map_err(|e| HandlerError::Permanent(format!("not a LeadAssigned: {e}")))?;
        let case = ev.case.unwrap_or_default();
        if case.case_id.is_empty() || ev.practitioner.is_empty() {
            return Err(HandlerError::Permanent(
                "LeadAssigned names no case or no practitioner".into(),
            ));
        }
        let at = chrono::DateTime::parse_from_rfc3339(&ev.at)
            .map_or_else(|_| ctx.clock.now(), |t| t.to_utc());
        let db = |e: sea_orm::DbErr| HandlerError::db(&e);
        let txn = eh_store::begin_scoped(&ctx.db, &tenant).await.map_err(db)?;
        if !eh_bus::inbox::claim_live(&txn, self.name, msg)
            .await
            .map_err(|e| HandlerError::bus(&e))?
        {
            // Committed: a message about a destroyed family stays claimed too.
            eh_store::commit(txn)
                .await
                .map_err(|e| eh_bus::HandlerError::db(&e))?;
            return Ok(Handled::Duplicate);
        }
        store::upsert_case(
            &txn,
            &CaseRow {
                tenant,
                case_id: case.case_id,
                family_id: case.family_id,
                lead_practitioner: ev.practitioner,
                lead_organization: ev.organization_id,
                service_name: ev.service_name,
                ended_at: None,
                route: case.route,
            },
            at,
        )
        .await
        .map_err(db)?;
        eh_store::commit(txn).await.map_err(db)?;
        Ok(Handled::Done)
    }
}

/// Which of casework's endings a [`CaseEndedHandler`] consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `case_closed` (any reason, including the closure assessment recorded).
    Closed,
    /// `case_stepped_up` (to the front door).
    SteppedUp,
}

/// The durable consumers of casework's `case_closed` and `case_stepped_up`: the case has ended,
/// so its plan's actions are no longer chased and nothing more is recorded on it.
pub struct CaseEndedHandler {
    pub ctx: ServiceContext,
    pub name: &'static str,
    pub ending: Ending,
}

#[async_trait::async_trait]
impl eh_bus::Handler for CaseEndedHandler {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError> {
        use eh_proto::casework::v1::{CaseClosed, CaseSteppedUp};
        let ctx = &self.ctx;
        let tenant = eh_bus::subjects::tenant_of(ctx.namespace(), &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let (case, at) = match self.ending {
            Ending::Closed => CaseClosed::decode(msg.payload.as_ref())
                .map(|e| (e.case, e.at))
                .map_err(|e| HandlerError::Permanent(format!("not a CaseClosed: {e}")))?,
            Ending::SteppedUp => CaseSteppedUp::decode(msg.payload.as_ref())
                .map(|e| (e.case, e.at))
                .map_err(|e| HandlerError::Permanent(format!("not a CaseSteppedUp: {e}")))?,
        };
        let case_id = case.unwrap_or_default().case_id;
        if case_id.is_empty() {
            return Err(HandlerError::Permanent("the event names no case".into()));
        }
        let at = chrono::DateTime::parse_from_rfc3339(&at)
            .map_or_else(|_| ctx.clock.now(), |t| t.to_utc());
        let db = |e: sea_orm::DbErr| HandlerError::db(&e);
        let txn = eh_store::begin_scoped(&ctx.db, &tenant).await.map_err(db)?;
        if !eh_bus::inbox::claim_live(&txn, self.name, msg)
            .await
            .map_err(|e| HandlerError::bus(&e))?
        {
            // Committed: a message about a destroyed family stays claimed too.
            eh_store::commit(txn)
                .await
                .map_err(|e| eh_bus::HandlerError::db(&e))?;
            return Ok(Handled::Duplicate);
        }
        store::outcomes::end_case(&txn, &tenant, &case_id, at)
            .await
            .map_err(db)?;
        eh_store::commit(txn).await.map_err(db)?;
        Ok(Handled::Done)
    }
}
