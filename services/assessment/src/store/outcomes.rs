//! Outcome measures, reviews and closure: `score_sets` (each set of scores as taken, with its
//! stage), `reviews` (numbered per case), `closures` (one per case: its kind, the Supporting
//! Families outcomes, impact, support given, step-down services, and the follow-up check: when it
//! falls due, when it was asked, the answer).
use super::db_err;
use crate::domain::outcomes::{Score, SfOutcome};
use chrono::{DateTime, Utc};
use eh_store::stmt;
use sea_orm::{ConnectionTrait, DbErr};

pub const SQL: &str = "CREATE TABLE score_sets (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    case_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at {ts} NOT NULL,
    scores TEXT NOT NULL
  );
  CREATE INDEX score_sets_case ON score_sets (tenant, case_id, recorded_at);
  CREATE TABLE reviews (
    tenant TEXT NOT NULL,
    case_id TEXT NOT NULL,
    number {bigint} NOT NULL,
    summary TEXT NOT NULL,
    category TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at {ts} NOT NULL,
    PRIMARY KEY (tenant, case_id, number)
  );
  CREATE TABLE closures (
    tenant TEXT NOT NULL,
    case_id TEXT NOT NULL,
    family_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    outcomes TEXT NOT NULL,
    impact TEXT NOT NULL,
    support_given TEXT NOT NULL,
    step_down_to TEXT NOT NULL,
    closed_by TEXT NOT NULL,
    closed_at {ts} NOT NULL,
    remind_email TEXT NOT NULL,
    follow_up_due {ts} NULL,
    follow_up_asked_at {ts} NULL,
    follow_up TEXT NULL,
    PRIMARY KEY (tenant, case_id)
  );
  CREATE INDEX closures_follow_up ON closures (follow_up_due);
  ALTER TABLE assessment_cases ADD COLUMN ended_at {ts} NULL;
  ALTER TABLE assessment_cases ADD COLUMN route TEXT NOT NULL DEFAULT '';
  ALTER TABLE contributions ADD COLUMN carried_from TEXT NOT NULL DEFAULT '';";

/// A set of scores as taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreSetRow {
    pub stage: String,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
    pub scores: Vec<Score>,
}

pub async fn insert_scores(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    s: &ScoreSetRow,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO score_sets (id, tenant, case_id, stage, recorded_by, recorded_at, scores)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            uuid::Uuid::now_v7().to_string().into(),
            tenant.into(),
            case_id.into(),
            s.stage.clone().into(),
            s.recorded_by.clone().into(),
            s.recorded_at.into(),
            serde_json::to_string(&s.scores).map_err(db_err)?.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// A case's score sets, in the order taken.
pub async fn scores(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
) -> Result<Vec<ScoreSetRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            "SELECT stage, recorded_by, recorded_at, scores FROM score_sets
             WHERE tenant = $1 AND case_id = $2 ORDER BY recorded_at, id",
            [tenant.into(), case_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let scores: String = r.try_get_by_index(3)?;
            Ok(ScoreSetRow {
                stage: r.try_get_by_index(0)?,
                recorded_by: r.try_get_by_index(1)?,
                recorded_at: r.try_get_by_index(2)?,
                scores: serde_json::from_str(&scores).map_err(db_err)?,
            })
        })
        .collect()
}

/// A review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRow {
    pub number: u32,
    pub summary: String,
    pub category: String,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

/// Adds the case's next review: its number.
pub async fn insert_review(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    summary: &str,
    category: &str,
    by: &str,
    at: DateTime<Utc>,
) -> Result<u32, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .query_one_raw(stmt(
            b,
            "INSERT INTO reviews (tenant, case_id, number, summary, category, recorded_by,
               recorded_at)
             SELECT $1, $2, COALESCE(MAX(number), 0) + 1, $3, $4, $5, $6 FROM reviews
               WHERE tenant = $1 AND case_id = $2
             RETURNING number",
            [
                tenant.into(),
                case_id.into(),
                summary.into(),
                category.into(),
                by.into(),
                at.into(),
            ],
        ))
        .await?
        .ok_or_else(|| db_err("a review insert returned no number"))?;
    let n: i64 = r.try_get_by_index(0)?;
    u32::try_from(n).map_err(db_err)
}

pub async fn reviews(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
) -> Result<Vec<ReviewRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            "SELECT number, summary, category, recorded_by, recorded_at FROM reviews
             WHERE tenant = $1 AND case_id = $2 ORDER BY number",
            [tenant.into(), case_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let n: i64 = r.try_get_by_index(0)?;
            Ok(ReviewRow {
                number: u32::try_from(n).map_err(db_err)?,
                summary: r.try_get_by_index(1)?,
                category: r.try_get_by_index(2)?,
                recorded_by: r.try_get_by_index(3)?,
                recorded_at: r.try_get_by_index(4)?,
            })
        })
        .collect()
}

/// The answer to the follow-up check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FollowUpAnswer {
    pub sustained: bool,
    pub needs_help_again: bool,
    pub note: String,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

/// A case's closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosureRow {
    pub tenant: String,
    pub case_id: String,
    pub family_id: String,
    pub kind: String,
    pub outcomes: Vec<SfOutcome>,
    pub impact: String,
    pub support_given: String,
    pub step_down_to: Vec<String>,
    pub closed_by: String,
    pub closed_at: DateTime<Utc>,
    pub remind_email: String,
    pub follow_up_due: Option<DateTime<Utc>>,
    pub follow_up_asked_at: Option<DateTime<Utc>>,
    pub follow_up: Option<FollowUpAnswer>,
}

/// Records the case's closure: `false` when it is closed already (nothing written).
pub async fn insert_closure(db: &impl ConnectionTrait, c: &ClosureRow) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "INSERT INTO closures (tenant, case_id, family_id, kind, outcomes, impact,
               support_given, step_down_to, closed_by, closed_at, remind_email, follow_up_due,
               follow_up_asked_at, follow_up)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, NULL)
             ON CONFLICT (tenant, case_id) DO NOTHING",
            [
                c.tenant.clone().into(),
                c.case_id.clone().into(),
                c.family_id.clone().into(),
                c.kind.clone().into(),
                serde_json::to_string(&c.outcomes).map_err(db_err)?.into(),
                c.impact.clone().into(),
                c.support_given.clone().into(),
                serde_json::to_string(&c.step_down_to)
                    .map_err(db_err)?
                    .into(),
                c.closed_by.clone().into(),
                c.closed_at.into(),
                c.remind_email.clone().into(),
                c.follow_up_due.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

const CLOSURE_COLUMNS: &str = "tenant, case_id, family_id, kind, outcomes, impact, support_given,
    step_down_to, closed_by, closed_at, remind_email, follow_up_due, follow_up_asked_at,
    follow_up";

fn closure_row(r: &sea_orm::QueryResult) -> Result<ClosureRow, DbErr> {
    let outcomes: String = r.try_get_by_index(4)?;
    let step_down: String = r.try_get_by_index(7)?;
    let follow_up: Option<String> = r.try_get_by_index(13)?;
    Ok(ClosureRow {
        tenant: r.try_get_by_index(0)?,
        case_id: r.try_get_by_index(1)?,
        family_id: r.try_get_by_index(2)?,
        kind: r.try_get_by_index(3)?,
        outcomes: serde_json::from_str(&outcomes).map_err(db_err)?,
        impact: r.try_get_by_index(5)?,
        support_given: r.try_get_by_index(6)?,
        step_down_to: serde_json::from_str(&step_down).map_err(db_err)?,
        closed_by: r.try_get_by_index(8)?,
        closed_at: r.try_get_by_index(9)?,
        remind_email: r.try_get_by_index(10)?,
        follow_up_due: r.try_get_by_index(11)?,
        follow_up_asked_at: r.try_get_by_index(12)?,
        follow_up: follow_up
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(db_err)?,
    })
}

pub async fn closure(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
) -> Result<Option<ClosureRow>, DbErr> {
    let b = db.get_database_backend();
    db.query_one_raw(stmt(
        b,
        &format!("SELECT {CLOSURE_COLUMNS} FROM closures WHERE tenant = $1 AND case_id = $2"),
        [tenant.into(), case_id.into()],
    ))
    .await?
    .map(|r| closure_row(&r))
    .transpose()
}

/// Closures whose follow-up check has fallen due by `now` and has not been asked (every council).
pub async fn follow_ups_due(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<ClosureRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {CLOSURE_COLUMNS} FROM closures
                 WHERE follow_up_due IS NOT NULL AND follow_up_due <= $1
                   AND follow_up_asked_at IS NULL
                 ORDER BY follow_up_due LIMIT $2"
            ),
            [now.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
        ))
        .await?;
    rows.iter().map(closure_row).collect()
}

/// Marks the follow-up check asked: `false` when another replica did it first.
pub async fn mark_follow_up_asked(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "UPDATE closures SET follow_up_asked_at = $3
             WHERE tenant = $1 AND case_id = $2 AND follow_up_asked_at IS NULL",
            [tenant.into(), case_id.into(), at.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Records the follow-up answer: `false` when it was answered already.
pub async fn record_follow_up(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    answer: &FollowUpAnswer,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "UPDATE closures SET follow_up = $3
             WHERE tenant = $1 AND case_id = $2 AND follow_up IS NULL
               AND follow_up_asked_at IS NOT NULL",
            [
                tenant.into(),
                case_id.into(),
                serde_json::to_string(answer).map_err(db_err)?.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Marks a case ended (closed or stepped up, by whatever route): its actions are no longer
/// chased. Idempotent.
pub async fn end_case(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "UPDATE assessment_cases SET ended_at = $3
         WHERE tenant = $1 AND case_id = $2 AND ended_at IS NULL",
        [tenant.into(), case_id.into(), at.into()],
    ))
    .await?;
    Ok(())
}
