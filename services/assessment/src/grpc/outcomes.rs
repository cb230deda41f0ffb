//! Outcome measures, reviews, closure and the follow-up check over gRPC: `RecordScores`,
//! `RecordReview`, `CloseWithOutcomes`, `RecordFollowUp` (the lead or a team manager) and
//! `GetOutcomes` (as the reader may see it).
use super::{AssessmentApi, caller, internal, required};
use crate::domain::outcomes::{self as rules, CloseInput, Score, SfOutcome, Stage};
use crate::domain::view::{self, Item};
use crate::domain::{self, CATEGORIES, Lead, Refusal, Status as VersionStatus, Violation};
use crate::store::outcomes::{self as outs, ClosureRow, FollowUpAnswer, ReviewRow, ScoreSetRow};
use crate::store::{self, CaseRow, plan as plans};
use chrono::{DateTime, Utc};
use eh_auth::Principal;
use eh_proto::assessment::v1 as pb;
use eh_service::consent::Asker;
use eh_service::errors::invalid;
use prost::Message;
use sea_orm::DatabaseTransaction;
use std::collections::{BTreeMap, BTreeSet};
use tonic::Status;

/// The information category of a closure's words (impact, support given, step-down services).
const CLOSURE_CATEGORY: &str = "social_care";

fn scores_of(s: Vec<pb::Score>) -> Vec<Score> {
    s.into_iter()
        .map(|s| Score {
            headline: s.headline.trim().to_string(),
            score: s.score,
            note: s.note.trim().to_string(),
        })
        .collect()
}

fn score_pb(s: &Score) -> pb::Score {
    pb::Score {
        headline: s.headline.clone(),
        score: s.score,
        note: s.note.clone(),
    }
}

fn values(s: &[Score]) -> Vec<pb::ScoreValue> {
    s.iter()
        .map(|s| pb::ScoreValue {
            headline: s.headline.clone(),
            score: s.score,
        })
        .collect()
}

fn sf_pb(o: &SfOutcome) -> pb::SupportingFamiliesOutcome {
    pb::SupportingFamiliesOutcome {
        headline: o.headline.clone(),
        met: o.met,
        evidence: o.evidence.clone(),
    }
}

/// Everything recorded about a case's outcomes.
struct Recorded {
    scores: Vec<ScoreSetRow>,
    reviews: Vec<ReviewRow>,
    closure: Option<ClosureRow>,
}

fn category_of(headline: &str) -> String {
    domain::headline_category(headline)
        .unwrap_or(CLOSURE_CATEGORY)
        .to_string()
}

/// Each item of `r` a reader may be shown or not, by its category.
fn items(r: &Recorded) -> Vec<Item> {
    let mut out = Vec::new();
    for (i, set) in r.scores.iter().enumerate() {
        for s in &set.scores {
            out.push(Item {
                id: format!("scores:{}:{}", i + 1, s.headline),
                what: format!("a {} score", set.stage),
                category: category_of(&s.headline),
            });
        }
    }
    for rv in &r.reviews {
        out.push(Item {
            id: format!("review:{}", rv.number),
            what: format!("review {}", rv.number),
            category: rv.category.clone(),
        });
    }
    if let Some(c) = &r.closure {
        out.push(Item {
            id: "closure".into(),
            what: "the closure's impact, support given and step-down services".into(),
            category: CLOSURE_CATEGORY.into(),
        });
        for o in &c.outcomes {
            out.push(Item {
                id: format!("closure:{}", o.headline),
                what: "a Supporting Families outcome".into(),
                category: category_of(&o.headline),
            });
        }
    }
    out
}

fn ts(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339()).unwrap_or_default()
}

/// The outcomes of `r` with only the `shown` items.
fn outcomes_pb(
    case_id: &str,
    scale: rules::Scale,
    r: &Recorded,
    shown: &BTreeSet<String>,
    withheld: Vec<pb::Withheld>,
) -> pb::Outcomes {
    let sets: Vec<(String, Vec<Score>, &ScoreSetRow)> = r
        .scores
        .iter()
        .enumerate()
        .map(|(i, set)| {
            let kept: Vec<Score> = set
                .scores
                .iter()
                .filter(|s| shown.contains(&format!("scores:{}:{}", i + 1, s.headline)))
                .cloned()
                .collect();
            (set.stage.clone(), kept, set)
        })
        .filter(|(_, kept, _)| !kept.is_empty())
        .collect();
    let distance = rules::distance(sets.iter().map(|(_, kept, _)| &kept[..]))
        .into_iter()
        .map(
            |(headline, (first, latest, change))| pb::DistanceTravelled {
                headline,
                first,
                latest,
                change: i32::try_from(change).unwrap_or(0),
            },
        )
        .collect();
    let closure = r.closure.as_ref().map(|c| {
        let words = shown.contains("closure");
        pb::Closure {
            kind: c.kind.clone(),
            outcomes: c
                .outcomes
                .iter()
                .filter(|o| shown.contains(&format!("closure:{}", o.headline)))
                .map(sf_pb)
                .collect(),
            impact: if words {
                c.impact.clone()
            } else {
                String::new()
            },
            support_given: if words {
                c.support_given.clone()
            } else {
                String::new()
            },
            step_down_to: if words {
                c.step_down_to.clone()
            } else {
                Vec::new()
            },
            closed_by: c.closed_by.clone(),
            closed_at: c.closed_at.to_rfc3339(),
            follow_up_due: ts(c.follow_up_due),
            follow_up_asked: c.follow_up_asked_at.is_some(),
            follow_up: c.follow_up.as_ref().map(|f| pb::FollowUp {
                sustained: f.sustained,
                needs_help_again: f.needs_help_again,
                note: if words { f.note.clone() } else { String::new() },
                recorded_by: f.recorded_by.clone(),
                recorded_at: f.recorded_at.to_rfc3339(),
            }),
        }
    });
    pb::Outcomes {
        case_id: case_id.to_string(),
        scale: scale.to_string(),
        scores: sets
            .iter()
            .map(|(stage, kept, set)| pb::ScoreSet {
                stage: stage.clone(),
                recorded_by: set.recorded_by.clone(),
                recorded_at: set.recorded_at.to_rfc3339(),
                scores: kept.iter().map(score_pb).collect(),
            })
            .collect(),
        distance,
        reviews: r
            .reviews
            .iter()
            .filter(|rv| shown.contains(&format!("review:{}", rv.number)))
            .map(|rv| pb::Review {
                number: rv.number,
                summary: rv.summary.clone(),
                category: rv.category.clone(),
                recorded_by: rv.recorded_by.clone(),
                recorded_at: rv.recorded_at.to_rfc3339(),
            })
            .collect(),
        closure,
        withheld,
    }
}

impl AssessmentApi {
    async fn recorded(
        txn: &DatabaseTransaction,
        tenant: &str,
        case_id: &str,
    ) -> Result<Recorded, Status> {
        Ok(Recorded {
            scores: outs::scores(txn, tenant, case_id).await.map_err(internal)?,
            reviews: outs::reviews(txn, tenant, case_id)
                .await
                .map_err(internal)?,
            closure: outs::closure(txn, tenant, case_id)
                .await
                .map_err(internal)?,
        })
    }

    /// The case's outcomes as its lead sees them right after a change, and commit.
    async fn answer_whole(
        &self,
        txn: DatabaseTransaction,
        tenant: &str,
        case_id: &str,
    ) -> Result<pb::Outcomes, Status> {
        let r = Self::recorded(&txn, tenant, case_id).await?;
        eh_store::commit(txn).await.map_err(internal)?;
        let shown = items(&r).into_iter().map(|i| i.id).collect();
        Ok(outcomes_pb(
            case_id,
            self.council(tenant)?.scale,
            &r,
            &shown,
            Vec::new(),
        ))
    }

    /// Admits `method` on an open case for its lead (or a team manager): the transaction and the
    /// case, or the refusal.
    async fn lead_call(
        &self,
        p: &Principal,
        tenant: &str,
        case_id: &str,
        method: &str,
        what: &str,
    ) -> Result<(DatabaseTransaction, CaseRow), Status> {
        let record = format!("case:{case_id}");
        self.admit(p, tenant, method, &record).await?;
        required("case_id", case_id)?;
        let txn = self.begin(p, tenant).await?;
        let case = match Self::open_case(&txn, tenant, case_id).await {
            Ok(c) => c,
            Err(s) => {
                txn.rollback().await.map_err(internal)?;
                return Err(s);
            }
        };
        let lead = Lead {
            practitioner: &case.lead_practitioner,
            organization: &case.lead_organization,
        };
        if let Err(r) = domain::lead_only(&caller(p), &lead, what) {
            return Err(self.refuse(txn, p, tenant, method, &record, r).await);
        }
        Ok((txn, case))
    }

    async fn emit_scores(
        &self,
        txn: &DatabaseTransaction,
        case: &CaseRow,
        stage: Stage,
        scores: &[Score],
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Status> {
        if scores.is_empty() {
            return Ok(());
        }
        let tenant = case.tenant.as_str();
        outs::insert_scores(
            txn,
            tenant,
            &case.case_id,
            &ScoreSetRow {
                stage: stage.as_str().into(),
                recorded_by: actor.into(),
                recorded_at: now,
                scores: scores.to_vec(),
            },
        )
        .await
        .map_err(internal)?;
        let ev = pb::ScoresRecorded {
            case_id: case.case_id.clone(),
            family_id: case.family_id.clone(),
            stage: stage.as_str().into(),
            scores: values(scores),
            at: now.to_rfc3339(),
        };
        self.emit(
            txn,
            tenant,
            &eh_proto::catalogue::SCORES_RECORDED,
            actor,
            ev.encode_to_vec(),
            now,
        )
        .await
    }

    pub(super) async fn record_scores_call(
        &self,
        p: &Principal,
        req: pb::RecordScoresRequest,
    ) -> Result<pb::Outcomes, Status> {
        let scale = self.council(&req.tenant)?.scale;
        let scores = scores_of(req.scores);
        let mut v = rules::check_scores("scores", &scores, scale, true);
        let stage = match Stage::parse(req.stage.trim()) {
            Some(Stage::Closure) => {
                v.push(Violation::new(
                    "stage",
                    "closing scores are given with the closure (CloseWithOutcomes)",
                ));
                None
            }
            Some(s) => Some(s),
            None => {
                v.push(Violation::new("stage", "must be start or review"));
                None
            }
        };
        let (txn, case) = self
            .lead_call(
                p,
                &req.tenant,
                &req.case_id,
                "RecordScores",
                "record scores",
            )
            .await?;
        let Some(stage) = stage.filter(|_| v.is_empty()) else {
            txn.rollback().await.map_err(internal)?;
            return Err(invalid("the scores are invalid", &v));
        };
        let now = self.ctx.clock.now();
        self.emit_scores(&txn, &case, stage, &scores, &p.actor(), now)
            .await?;
        self.answer_whole(txn, &req.tenant, &case.case_id).await
    }

    pub(super) async fn record_review_call(
        &self,
        p: &Principal,
        req: pb::RecordReviewRequest,
    ) -> Result<pb::Outcomes, Status> {
        let scale = self.council(&req.tenant)?.scale;
        let scores = scores_of(req.scores);
        let mut v = rules::check_scores("scores", &scores, scale, false);
        let summary = req.summary.trim();
        domain::text(&mut v, "summary", summary, true);
        let category = req.category.trim();
        if !CATEGORIES.contains(&category) {
            v.push(Violation::new(
                "category",
                format!("must be one of {}", CATEGORIES.join(", ")),
            ));
        }
        let (txn, case) = self
            .lead_call(
                p,
                &req.tenant,
                &req.case_id,
                "RecordReview",
                "record a review",
            )
            .await?;
        if !v.is_empty() {
            txn.rollback().await.map_err(internal)?;
            return Err(invalid("the review is invalid", &v));
        }
        if plans::plan(&txn, &req.tenant, &case.case_id)
            .await
            .map_err(internal)?
            .is_none()
        {
            let record = format!("case:{}", case.case_id);
            return Err(self
                .refuse(
                    txn,
                    p,
                    &req.tenant,
                    "RecordReview",
                    &record,
                    Refusal::Conflict("a review reviews the plan: set the plan first".into()),
                )
                .await);
        }
        let now = self.ctx.clock.now();
        let actor = p.actor();
        let number = outs::insert_review(
            &txn,
            &req.tenant,
            &case.case_id,
            summary,
            category,
            &actor,
            now,
        )
        .await
        .map_err(internal)?;
        self.emit_scores(&txn, &case, Stage::Review, &scores, &actor, now)
            .await?;
        let ev = pb::ReviewRecorded {
            case_id: case.case_id.clone(),
            family_id: case.family_id.clone(),
            number,
            at: now.to_rfc3339(),
        };
        self.emit(
            &txn,
            &req.tenant,
            &eh_proto::catalogue::REVIEW_RECORDED,
            &actor,
            ev.encode_to_vec(),
            now,
        )
        .await?;
        self.answer_whole(txn, &req.tenant, &case.case_id).await
    }

    pub(super) async fn close_call(
        &self,
        p: &Principal,
        req: pb::CloseWithOutcomesRequest,
    ) -> Result<pb::Outcomes, Status> {
        let scale = self.council(&req.tenant)?.scale;
        let scores = scores_of(req.scores);
        let mut v = rules::check_scores("scores", &scores, scale, false);
        let input = CloseInput {
            outcomes: req
                .outcomes
                .into_iter()
                .map(|o| SfOutcome {
                    headline: o.headline.trim().to_string(),
                    met: o.met,
                    evidence: o.evidence.trim().to_string(),
                })
                .collect(),
            impact: req.impact.trim().to_string(),
            support_given: req.support_given.trim().to_string(),
            step_down_to: req
                .step_down_to
                .into_iter()
                .map(|s| s.trim().to_string())
                .collect(),
        };
        let (txn, case) = self
            .lead_call(
                p,
                &req.tenant,
                &req.case_id,
                "CloseWithOutcomes",
                "close the case",
            )
            .await?;
        let record = format!("case:{}", case.case_id);
        // The headline problems the latest finalised version of the assessment identified.
        let finalised = match store::assessment(&txn, &req.tenant, "", &case.case_id)
            .await
            .map_err(internal)?
        {
            None => None,
            Some(a) => {
                let latest = store::versions(&txn, &req.tenant, &a.id)
                    .await
                    .map_err(internal)?
                    .into_iter()
                    .rev()
                    .find(|v| v.status == VersionStatus::Finalised);
                match latest {
                    None => None,
                    Some(ver) => Some(
                        store::contributions(&txn, &req.tenant, &a.id, ver.version)
                            .await
                            .map_err(internal)?,
                    ),
                }
            }
        };
        let Some(sections) = finalised else {
            return Err(self
                .refuse(
                    txn,
                    p,
                    &req.tenant,
                    "CloseWithOutcomes",
                    &record,
                    Refusal::Conflict(
                        "a case closes with its outcomes once its assessment is finalised (otherwise close it through casework with the reason)".into(),
                    ),
                )
                .await);
        };
        let identified: BTreeSet<String> = sections
            .iter()
            .flat_map(|s| s.body.needs.iter().map(|n| n.headline.clone()))
            .collect();
        let now = self.ctx.clock.now();
        let closing = match rules::close(&input, &identified, now) {
            Ok(c) if v.is_empty() => c,
            Ok(_) => {
                txn.rollback().await.map_err(internal)?;
                return Err(invalid("the closure is invalid", &v));
            }
            Err(mut e) => {
                txn.rollback().await.map_err(internal)?;
                v.append(&mut e);
                return Err(invalid("the closure is invalid", &v));
            }
        };
        let remind_email = plans::plan(&txn, &req.tenant, &case.case_id)
            .await
            .map_err(internal)?
            .map(|pl| pl.lead_email)
            .unwrap_or_default();
        let actor = p.actor();
        let row = ClosureRow {
            tenant: req.tenant.clone(),
            case_id: case.case_id.clone(),
            family_id: case.family_id.clone(),
            kind: closing.kind.as_str().into(),
            outcomes: input.outcomes.clone(),
            impact: input.impact.clone(),
            support_given: input.support_given.clone(),
            step_down_to: input.step_down_to.clone(),
            closed_by: actor.clone(),
            closed_at: now,
            remind_email,
            follow_up_due: closing.follow_up_due,
            follow_up_asked_at: None,
            follow_up: None,
        };
        if !outs::insert_closure(&txn, &row).await.map_err(internal)? {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::failed_precondition("the case is closed already"));
        }
        outs::end_case(&txn, &req.tenant, &case.case_id, now)
            .await
            .map_err(internal)?;
        self.emit_scores(&txn, &case, Stage::Closure, &scores, &actor, now)
            .await?;
        let ev = pb::CaseClosureRecorded {
            case_id: case.case_id.clone(),
            family_id: case.family_id.clone(),
            kind: row.kind.clone(),
            outcomes: row
                .outcomes
                .iter()
                .map(|o| pb::OutcomeValue {
                    headline: o.headline.clone(),
                    met: o.met,
                })
                .collect(),
            stepped_down_to: u32::try_from(row.step_down_to.len()).unwrap_or(u32::MAX),
            follow_up_due: ts(row.follow_up_due),
            at: now.to_rfc3339(),
        };
        self.emit(
            &txn,
            &req.tenant,
            &eh_proto::catalogue::CASE_CLOSURE_RECORDED,
            &actor,
            ev.encode_to_vec(),
            now,
        )
        .await?;
        self.answer_whole(txn, &req.tenant, &case.case_id).await
    }

    pub(super) async fn follow_up_call(
        &self,
        p: &Principal,
        req: pb::RecordFollowUpRequest,
    ) -> Result<pb::Outcomes, Status> {
        let record = format!("case:{}", req.case_id);
        self.admit(p, &req.tenant, "RecordFollowUp", &record)
            .await?;
        required("case_id", &req.case_id)?;
        let note = req.note.trim().to_string();
        if note.chars().count() > 2000 {
            return Err(invalid(
                "the follow-up is invalid",
                &[Violation::new("note", "is longer than 2000 characters")],
            ));
        }
        let txn = self.begin(p, &req.tenant).await?;
        let case = store::case(&txn, &req.tenant, req.case_id.trim())
            .await
            .map_err(internal)?;
        let closure = outs::closure(&txn, &req.tenant, req.case_id.trim())
            .await
            .map_err(internal)?;
        let (Some(case), Some(closure)) = (case, closure) else {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::failed_precondition(
                "the case has not closed with its outcomes: there is no follow-up check",
            ));
        };
        let lead = Lead {
            practitioner: &case.lead_practitioner,
            organization: &case.lead_organization,
        };
        let decided =
            domain::lead_only(&caller(p), &lead, "answer the follow-up check").and_then(|()| {
                rules::may_follow_up(
                    closure.follow_up_asked_at.is_some(),
                    closure.follow_up.is_some(),
                    closure.follow_up_due.is_some(),
                )
            });
        if let Err(r) = decided {
            return Err(self
                .refuse(txn, p, &req.tenant, "RecordFollowUp", &record, r)
                .await);
        }
        let now = self.ctx.clock.now();
        let actor = p.actor();
        let answer = FollowUpAnswer {
            sustained: req.sustained,
            needs_help_again: req.needs_help_again,
            note,
            recorded_by: actor.clone(),
            recorded_at: now,
        };
        if !outs::record_follow_up(&txn, &req.tenant, &case.case_id, &answer)
            .await
            .map_err(internal)?
        {
            txn.rollback().await.map_err(internal)?;
            return Err(Status::failed_precondition(
                "the follow-up check was already answered",
            ));
        }
        let ev = pb::FollowUpRecorded {
            case_id: case.case_id.clone(),
            family_id: case.family_id.clone(),
            sustained: answer.sustained,
            needs_help_again: answer.needs_help_again,
            at: now.to_rfc3339(),
        };
        self.emit(
            &txn,
            &req.tenant,
            &eh_proto::catalogue::FOLLOW_UP_RECORDED,
            &actor,
            ev.encode_to_vec(),
            now,
        )
        .await?;
        self.answer_whole(txn, &req.tenant, &case.case_id).await
    }

    pub(super) async fn get_outcomes_call(
        &self,
        p: &Principal,
        mut asker: Asker,
        req: pb::GetOutcomesRequest,
    ) -> Result<pb::Outcomes, Status> {
        let record = format!("case:{}:outcomes", req.case_id);
        self.admit(p, &req.tenant, "GetOutcomes", &record).await?;
        required("case_id", &req.case_id)?;
        let scale = self.council(&req.tenant)?.scale;
        let txn = self.begin(p, &req.tenant).await?;
        let Some(case) = store::case(&txn, &req.tenant, req.case_id.trim())
            .await
            .map_err(internal)?
        else {
            eh_store::end_read(txn).await.map_err(internal)?;
            return Err(Status::not_found("no such case"));
        };
        let r = Self::recorded(&txn, &req.tenant, &case.case_id).await?;
        let agencies = self.contributing_agencies(&txn, &req.tenant, &case).await?;
        eh_store::end_read(txn).await.map_err(internal)?;
        self.check_related(
            p,
            &req.tenant,
            "GetOutcomes",
            &record,
            &case,
            &agencies,
            false,
        )
        .await?;
        let who = caller(p);
        let reader = super::reader_agency(&who);
        let all = items(&r);
        // The lead's organisation recorded them: it sees them all.
        let own =
            who.id == case.lead_practitioner || who.agency == Some(case.lead_organization.as_str());
        let mut answers = BTreeMap::new();
        if !own {
            answers = asker
                .ask_all(
                    &req.tenant,
                    &case.family_id,
                    &reader,
                    &view::item_categories(&all),
                )
                .await;
        }
        let (shown, withheld) = view::filter_items(&all, own, &reader, &answers);
        let withheld: Vec<pb::Withheld> = withheld.into_iter().map(super::withheld_pb).collect();
        let ids: Vec<String> = shown.iter().cloned().collect();
        self.audit_read(p, &req.tenant, "GetOutcomes", &record, &withheld, || ids)
            .await?;
        Ok(outcomes_pb(&case.case_id, scale, &r, &shown, withheld))
    }
}
