//! What reporting consumes: one durable consumer per event of the catalogue's reporting
//! subscriptions, each keeping only the fact its figures need (ids, instants, codes) in the same
//! transaction as its inbox claim, so an event delivered twice is kept once. From a referral it
//! keeps the source system, the route, the need codes and the locality its postcode is in — not
//! the postcode, and nothing of the people.
use crate::domain::{
    CaseAt, Closure, Council, Finalised, FollowUp, Referral, Score, Screening, Transition,
};
use crate::store::{self, Fact};
use chrono::{DateTime, Utc};
use eh_bus::{Handled, HandlerError, Received, ServiceContext};
use eh_proto::catalogue::{self, Subscription};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which event a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    ReferralReceived,
    ScreeningDecided,
    CaseStateChanged,
    OfferAccepted,
    CaseWaiting,
    AssessmentFinalised,
    ScoresRecorded,
    CaseClosureRecorded,
    FollowUpRecorded,
}

impl Feed {
    /// Every feed and its subscription.
    pub const ALL: &[(Feed, &'static Subscription)] = &[
        (
            Feed::ReferralReceived,
            &catalogue::REPORTING_REFERRAL_RECEIVED,
        ),
        (
            Feed::ScreeningDecided,
            &catalogue::REPORTING_SCREENING_DECIDED,
        ),
        (
            Feed::CaseStateChanged,
            &catalogue::REPORTING_CASE_STATE_CHANGED,
        ),
        (Feed::OfferAccepted, &catalogue::REPORTING_OFFER_ACCEPTED),
        (Feed::CaseWaiting, &catalogue::REPORTING_CASE_WAITING),
        (
            Feed::AssessmentFinalised,
            &catalogue::REPORTING_ASSESSMENT_FINALISED,
        ),
        (Feed::ScoresRecorded, &catalogue::REPORTING_SCORES_RECORDED),
        (
            Feed::CaseClosureRecorded,
            &catalogue::REPORTING_CASE_CLOSURE_RECORDED,
        ),
        (
            Feed::FollowUpRecorded,
            &catalogue::REPORTING_FOLLOW_UP_RECORDED,
        ),
    ];
}

/// A durable consumer of one feed.
pub struct FactHandler {
    pub ctx: ServiceContext,
    pub name: &'static str,
    pub feed: Feed,
    /// Each council's localities (and rules), by tenant.
    pub councils: Arc<BTreeMap<String, Council>>,
}

fn permanent(what: &str, e: impl std::fmt::Display) -> HandlerError {
    HandlerError::Permanent(format!("not a {what}: {e}"))
}

fn required(what: &str, field: &str, value: &str) -> Result<(), HandlerError> {
    if value.trim().is_empty() {
        Err(HandlerError::Permanent(format!("{what} has no {field}")))
    } else {
        Ok(())
    }
}

/// The instant an event gives, else when its envelope says it occurred.
fn instant(at: &str, msg: &Received) -> Result<DateTime<Utc>, HandlerError> {
    DateTime::parse_from_rfc3339(at)
        .map(|t| t.to_utc())
        .ok()
        .or_else(|| msg.envelope().map(|e| e.occurred_at))
        .ok_or_else(|| HandlerError::Permanent("the event says nothing of when".into()))
}

impl FactHandler {
    /// The fact `msg` tells, for `tenant`.
    fn fact(&self, tenant: &str, msg: &Received) -> Result<Fact, HandlerError> {
        use eh_proto::allocation::v1 as alloc;
        use eh_proto::assessment::v1 as assess;
        use eh_proto::casework::v1 as case;
        use eh_proto::intake::v1 as intake;
        let p = msg.payload.as_ref();
        Ok(match self.feed {
            Feed::ReferralReceived => {
                let ev = intake::ReferralReceived::decode(p)
                    .map_err(|e| permanent("ReferralReceived", e))?;
                required("ReferralReceived", "referral_id", &ev.referral_id)?;
                let r = ev.referral.unwrap_or_default();
                // The family's address, else the first child's that has one.
                let postcode = r
                    .address
                    .as_ref()
                    .map(|a| a.postcode.as_str())
                    .filter(|p| !p.trim().is_empty())
                    .or_else(|| {
                        r.children
                            .iter()
                            .filter_map(|c| c.address.as_ref())
                            .map(|a| a.postcode.as_str())
                            .find(|p| !p.trim().is_empty())
                    });
                let locality = self.councils.get(tenant).map_or_else(
                    || crate::domain::Localities::default().of(postcode),
                    |c| c.localities.of(postcode),
                );
                Fact::Referral {
                    family_id: ev.family_id,
                    referral: Referral {
                        referral_id: ev.referral_id,
                        received_at: instant(&ev.received_at, msg)?,
                        source_system: r.source.map(|s| s.system).unwrap_or_default(),
                        route: r.route,
                        locality,
                        needs: r.needs,
                    },
                }
            }
            Feed::ScreeningDecided => {
                let ev = intake::ScreeningDecided::decode(p)
                    .map_err(|e| permanent("ScreeningDecided", e))?;
                required("ScreeningDecided", "referral_id", &ev.referral_id)?;
                Fact::Screening(Screening {
                    decided_at: instant(&ev.decided_at, msg)?,
                    referral_id: ev.referral_id,
                    case_id: ev.case_id,
                    outcome: ev.outcome,
                })
            }
            Feed::CaseStateChanged => {
                let ev = case::CaseStateChanged::decode(p)
                    .map_err(|e| permanent("CaseStateChanged", e))?;
                let c = ev.case.clone().unwrap_or_default();
                required("CaseStateChanged", "case", &c.case_id)?;
                Fact::Transition {
                    family_id: c.family_id,
                    transition: Transition {
                        case_id: c.case_id,
                        referral_id: c.referral_id,
                        from_state: ev.from_state,
                        to_state: ev.to_state,
                        at: instant(&ev.at, msg)?,
                    },
                }
            }
            Feed::OfferAccepted => {
                let ev =
                    alloc::OfferAccepted::decode(p).map_err(|e| permanent("OfferAccepted", e))?;
                required("OfferAccepted", "case_id", &ev.case_id)?;
                Fact::Moment {
                    kind: store::OFFER_ACCEPTED,
                    moment: CaseAt {
                        at: instant(&ev.at, msg)?,
                        case_id: ev.case_id,
                    },
                }
            }
            Feed::CaseWaiting => {
                let ev = alloc::CaseWaiting::decode(p).map_err(|e| permanent("CaseWaiting", e))?;
                required("CaseWaiting", "case_id", &ev.case_id)?;
                Fact::Moment {
                    kind: store::WAITING,
                    moment: CaseAt {
                        at: instant(&ev.at, msg)?,
                        case_id: ev.case_id,
                    },
                }
            }
            Feed::AssessmentFinalised => {
                let ev = assess::AssessmentFinalised::decode(p)
                    .map_err(|e| permanent("AssessmentFinalised", e))?;
                required("AssessmentFinalised", "case_id", &ev.case_id)?;
                Fact::Finalised(Finalised {
                    at: instant(&ev.at, msg)?,
                    case_id: ev.case_id,
                    version: ev.version,
                })
            }
            Feed::ScoresRecorded => {
                let ev = assess::ScoresRecorded::decode(p)
                    .map_err(|e| permanent("ScoresRecorded", e))?;
                required("ScoresRecorded", "case_id", &ev.case_id)?;
                let at = instant(&ev.at, msg)?;
                Fact::Scores(
                    ev.scores
                        .into_iter()
                        .map(|s| Score {
                            case_id: ev.case_id.clone(),
                            stage: ev.stage.clone(),
                            headline: s.headline,
                            score: s.score,
                            at,
                        })
                        .collect(),
                )
            }
            Feed::CaseClosureRecorded => {
                let ev = assess::CaseClosureRecorded::decode(p)
                    .map_err(|e| permanent("CaseClosureRecorded", e))?;
                required("CaseClosureRecorded", "case_id", &ev.case_id)?;
                Fact::Closure(Closure {
                    at: instant(&ev.at, msg)?,
                    case_id: ev.case_id,
                    kind: ev.kind,
                    outcomes: ev
                        .outcomes
                        .into_iter()
                        .map(|o| (o.headline, o.met))
                        .collect(),
                })
            }
            Feed::FollowUpRecorded => {
                let ev = assess::FollowUpRecorded::decode(p)
                    .map_err(|e| permanent("FollowUpRecorded", e))?;
                required("FollowUpRecorded", "case_id", &ev.case_id)?;
                Fact::FollowUp(FollowUp {
                    at: instant(&ev.at, msg)?,
                    case_id: ev.case_id,
                    sustained: ev.sustained,
                })
            }
        })
    }
}

#[async_trait::async_trait]
impl eh_bus::Handler for FactHandler {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError> {
        let ctx = &self.ctx;
        let tenant = eh_bus::subjects::tenant_of(ctx.namespace(), &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let fact = self.fact(&tenant, msg)?;
        let key = msg.key();
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
        store::record(&txn, &tenant, &key, &fact)
            .await
            .map_err(db)?;
        eh_store::commit(txn).await.map_err(db)?;
        Ok(Handled::Done)
    }
}
