//! Allocation as it runs: its context, every council's checked settings, and the scheduled
//! directory imports.
use crate::settings::{self, Council};
use eh_bus::ServiceContext;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Consent's gRPC API, asked what a provider may see.
pub use eh_service::consent::ConsentClient;

#[derive(Clone)]
pub struct Allocation {
    pub ctx: ServiceContext,
    pub councils: Arc<BTreeMap<String, Council>>,
    /// Consent's API (connected when first asked).
    pub consent: ConsentClient,
}

impl Allocation {
    /// # Errors
    /// A council's settings are wrong (the message names the key).
    pub fn new(ctx: ServiceContext) -> Result<Self, String> {
        let councils = settings::councils(&ctx.settings)?;
        let consent = settings::GlobalSettings::from_settings(&ctx.settings, settings::SECTION)?
            .client(&ctx.settings, settings::SECTION)?;
        Ok(Self {
            ctx,
            councils: Arc::new(councils),
            consent,
        })
    }

    pub fn council(&self, tenant: &str) -> Option<&Council> {
        self.councils.get(tenant)
    }

    /// Starts each council's scheduled import (`directory.refresh_minutes` > 0): once at start,
    /// then every period. A failed import is recorded and logged; the next period tries again.
    /// Replicas may each run it: imports of one council are serialised by the database and an
    /// import that finds nothing new changes nothing.
    pub fn spawn_schedules(&self) {
        for (tenant, council) in self.councils.iter() {
            if council.directory.refresh_minutes == 0 || council.source.is_none() {
                continue;
            }
            let this = self.clone();
            let tenant = tenant.clone();
            let every = Duration::from_secs(council.directory.refresh_minutes * 60);
            let shutdown = self.ctx.shutdown.clone();
            self.ctx.tasks.spawn(async move {
                let mut trigger = "start";
                loop {
                    if let Some(council) = this.council(&tenant)
                        && let Err(e) =
                            crate::import::run(&this.ctx, &tenant, council, trigger, "system:allocation")
                                .await
                    {
                        tracing::warn!(tenant = %tenant, error = %e, "scheduled directory import failed");
                    }
                    trigger = "schedule";
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(every) => {}
                    }
                }
            });
        }
    }
}

/// How often the allocation clocks are looked at.
pub const CLOCK_POLL: Duration = Duration::from_secs(30);

impl Allocation {
    /// Runs every council's allocation clocks once ([`crate::offers::run_clocks`]).
    ///
    /// # Errors
    /// The first council whose clocks could not be run (the others still ran).
    pub async fn run_clocks(&self) -> Result<crate::offers::ClocksRun, sea_orm::DbErr> {
        let now = self.ctx.clock.now();
        let mut total = crate::offers::ClocksRun::default();
        let mut first_error = None;
        for (tenant, council) in self.councils.iter() {
            match crate::offers::run_clocks(self, tenant, council, now).await {
                Ok(r) => {
                    total.expired += r.expired;
                    total.breached += r.breached;
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant, error = %e, "allocation clocks could not run; will retry");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(total), Err)
    }

    /// Looks at the clocks every [`CLOCK_POLL`] until shutdown.
    pub fn spawn_clocks(&self) {
        let this = self.clone();
        let shutdown = self.ctx.shutdown.clone();
        self.ctx.tasks.spawn(async move {
            loop {
                if let Ok(r) = this.run_clocks().await
                    && (r.expired > 0 || r.breached > 0)
                {
                    tracing::info!(
                        expired = r.expired,
                        breached = r.breached,
                        "allocation clocks ran"
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(CLOCK_POLL) => {}
                }
            }
        });
    }
}

/// What allocation does with each message it consumes, in one transaction with its inbox claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// `intake.referral_received`: keep the children's dates of birth (no names).
    ReferralReceived,
    /// `casework.case_ready_for_allocation`: take the case on and place it.
    CaseReady,
    /// `casework.case_closed` / `case_stepped_up`: release what the case held.
    CaseLeft,
}

/// A durable consumer of allocation.
pub struct Consumer {
    pub allocation: Allocation,
    pub door: Door,
    pub name: &'static str,
}

/// The actor allocation's own steps are published under.
pub const ACTOR: &str = "service:allocation";

fn permanent(what: &str, e: impl std::fmt::Display) -> eh_bus::HandlerError {
    eh_bus::HandlerError::Permanent(format!("not a {what}: {e}"))
}

impl Consumer {
    async fn run(&self, msg: &eh_bus::Received) -> Result<eh_bus::Handled, eh_bus::HandlerError> {
        use eh_bus::HandlerError;
        use prost::Message;
        let a = &self.allocation;
        let tenant = eh_bus::subjects::tenant_of(a.ctx.namespace(), &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let Some(council) = a.council(&tenant) else {
            return Err(HandlerError::Permanent(format!(
                "tenant {tenant:?} is not in the settings"
            )));
        };
        let now = a.ctx.clock.now();
        let db = |e: sea_orm::DbErr| HandlerError::db(&e);
        let txn = eh_store::begin_scoped(&a.ctx.db, &tenant)
            .await
            .map_err(db)?;
        if !eh_bus::inbox::claim_live(&txn, self.name, msg)
            .await
            .map_err(|e| HandlerError::bus(&e))?
        {
            // Committed: a message about a destroyed family stays claimed too.
            eh_store::commit(txn)
                .await
                .map_err(|e| eh_bus::HandlerError::db(&e))?;
            return Ok(eh_bus::Handled::Duplicate);
        }
        match self.door {
            Door::ReferralReceived => {
                let ev = eh_proto::intake::v1::ReferralReceived::decode(msg.payload.as_ref())
                    .map_err(|e| permanent("ReferralReceived", e))?;
                let dates: Vec<chrono::NaiveDate> = ev
                    .referral
                    .as_ref()
                    .map(|r| {
                        r.children
                            .iter()
                            // An unborn child counts from its expected date (age 0).
                            .filter_map(|c| {
                                c.date_of_birth
                                    .as_deref()
                                    .or(c.expected_date_of_delivery.as_deref())
                                    .and_then(|d| {
                                        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()
                                    })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                crate::store::insert_birth_dates(&txn, &tenant, &ev.referral_id, &dates)
                    .await
                    .map_err(db)?;
            }
            Door::CaseReady => {
                let ev =
                    eh_proto::casework::v1::CaseReadyForAllocation::decode(msg.payload.as_ref())
                        .map_err(|e| permanent("CaseReadyForAllocation", e))?;
                let case = ev.case.clone().unwrap_or_default();
                if case.case_id.is_empty() {
                    return Err(HandlerError::Permanent("the event names no case".into()));
                }
                let row = crate::store::CaseRow {
                    tenant: tenant.clone(),
                    case_id: case.case_id.clone(),
                    family_id: case.family_id.clone(),
                    referral_id: case.referral_id.clone(),
                    postcode: ev.postcode.clone(),
                    significant_need: crate::domain::significant_need(
                        &ev.needs,
                        council.significant_need_min_needs,
                        &council.significant_needs,
                    ),
                    needs: ev.needs.clone(),
                    programmes: ev.programmes_met.clone(),
                    ready_at: chrono::DateTime::parse_from_rfc3339(&ev.at)
                        .map_or(now, |t| t.to_utc()),
                    status: "matching".into(),
                    waiting_since: None,
                    waiting_reason: String::new(),
                };
                crate::offers::lock_council(&txn, &tenant)
                    .await
                    .map_err(db)?;
                if crate::store::insert_case(&txn, &row).await.map_err(db)? {
                    crate::offers::place(a, &txn, council, &row, ACTOR, now)
                        .await
                        .map_err(db)?;
                }
            }
            Door::CaseLeft => {
                let case_id = if msg.subject.ends_with(".case_closed") {
                    eh_proto::casework::v1::CaseClosed::decode(msg.payload.as_ref())
                        .map_err(|e| permanent("CaseClosed", e))?
                        .case
                } else {
                    eh_proto::casework::v1::CaseSteppedUp::decode(msg.payload.as_ref())
                        .map_err(|e| permanent("CaseSteppedUp", e))?
                        .case
                }
                .unwrap_or_default()
                .case_id;
                crate::offers::lock_council(&txn, &tenant)
                    .await
                    .map_err(db)?;
                crate::offers::release(a, &txn, council, &tenant, &case_id, ACTOR, now)
                    .await
                    .map_err(db)?;
            }
        }
        eh_store::commit(txn).await.map_err(db)?;
        Ok(eh_bus::Handled::Done)
    }
}

#[async_trait::async_trait]
impl eh_bus::Handler for Consumer {
    async fn handle(
        &self,
        msg: &eh_bus::Received,
    ) -> Result<eh_bus::Handled, eh_bus::HandlerError> {
        self.run(msg).await
    }
}
