//! The plan's tables: `plans` (one per case, with the mailbox reminders for the family's own
//! actions go to), `plan_versions` (each version whole and immutable: who set it, when, what it
//! changes, its outcomes and actions as JSON) and `plan_actions` (each action's live state: what
//! its latest version says, its status and note, whether it is still in the plan, and the due date
//! its owner was last reminded for).
use super::db_err;
use crate::domain::plan::{Outcome, PlannedAction};
use chrono::{DateTime, NaiveDate, Utc};
use eh_store::stmt;
use sea_orm::{ConnectionTrait, DbErr, QueryResult};

pub const SQL: &str = "CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    case_id TEXT NOT NULL,
    family_id TEXT NOT NULL,
    lead_email TEXT NOT NULL,
    UNIQUE (tenant, case_id)
  );
  CREATE TABLE plan_versions (
    tenant TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    version {bigint} NOT NULL,
    set_by TEXT NOT NULL,
    set_by_agency TEXT NOT NULL,
    set_at {ts} NOT NULL,
    what_changes TEXT NOT NULL,
    outcomes TEXT NOT NULL,
    actions TEXT NOT NULL,
    PRIMARY KEY (plan_id, version)
  );
  CREATE TABLE plan_actions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    plan_id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    plan_version {bigint} NOT NULL,
    active {bigint} NOT NULL,
    what TEXT NOT NULL,
    owner_kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    owner_email TEXT NOT NULL,
    due_date TEXT NOT NULL,
    category TEXT NOT NULL,
    headline TEXT NOT NULL,
    status TEXT NOT NULL,
    note TEXT NOT NULL,
    updated_at {ts} NOT NULL,
    updated_by TEXT NOT NULL,
    reminded_for TEXT NOT NULL,
    reminded_at {ts} NULL
  );
  CREATE INDEX plan_actions_due ON plan_actions (active, status, due_date);
  CREATE INDEX plan_actions_owner ON plan_actions (tenant, owner);
  CREATE INDEX plan_actions_case ON plan_actions (tenant, case_id);";

/// A case's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub id: String,
    pub tenant: String,
    pub case_id: String,
    pub family_id: String,
    pub lead_email: String,
}

pub async fn plan(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
) -> Result<Option<PlanRow>, DbErr> {
    let b = db.get_database_backend();
    db.query_one_raw(stmt(
        b,
        "SELECT id, tenant, case_id, family_id, lead_email FROM plans
         WHERE tenant = $1 AND case_id = $2",
        [tenant.into(), case_id.into()],
    ))
    .await?
    .map(|r| {
        Ok(PlanRow {
            id: r.try_get_by_index(0)?,
            tenant: r.try_get_by_index(1)?,
            case_id: r.try_get_by_index(2)?,
            family_id: r.try_get_by_index(3)?,
            lead_email: r.try_get_by_index(4)?,
        })
    })
    .transpose()
}

/// Creates the case's plan, or updates its lead mailbox.
pub async fn upsert_plan(db: &impl ConnectionTrait, p: &PlanRow) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO plans (id, tenant, case_id, family_id, lead_email) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant, case_id) DO UPDATE SET lead_email = EXCLUDED.lead_email",
        [
            p.id.clone().into(),
            p.tenant.clone().into(),
            p.case_id.clone().into(),
            p.family_id.clone().into(),
            p.lead_email.clone().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// One version of a plan, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanVersionRow {
    pub version: u32,
    pub set_by: String,
    pub set_by_agency: String,
    pub set_at: DateTime<Utc>,
    pub what_changes: String,
    pub outcomes: Vec<Outcome>,
    pub actions: Vec<PlannedAction>,
}

/// Stores version `v.version` of plan `plan_id`: `false` when another call stored that version
/// first (nothing written).
pub async fn insert_version(
    db: &impl ConnectionTrait,
    tenant: &str,
    plan_id: &str,
    v: &PlanVersionRow,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "INSERT INTO plan_versions (tenant, plan_id, version, set_by, set_by_agency, set_at,
               what_changes, outcomes, actions)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (plan_id, version) DO NOTHING",
            [
                tenant.into(),
                plan_id.into(),
                i64::from(v.version).into(),
                v.set_by.clone().into(),
                v.set_by_agency.clone().into(),
                v.set_at.into(),
                v.what_changes.clone().into(),
                serde_json::to_string(&v.outcomes).map_err(db_err)?.into(),
                serde_json::to_string(&v.actions).map_err(db_err)?.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Every version of a plan, oldest first.
pub async fn versions(
    db: &impl ConnectionTrait,
    tenant: &str,
    plan_id: &str,
) -> Result<Vec<PlanVersionRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            "SELECT version, set_by, set_by_agency, set_at, what_changes, outcomes, actions
             FROM plan_versions WHERE tenant = $1 AND plan_id = $2 ORDER BY version",
            [tenant.into(), plan_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let version: i64 = r.try_get_by_index(0)?;
            let outcomes: String = r.try_get_by_index(5)?;
            let actions: String = r.try_get_by_index(6)?;
            Ok(PlanVersionRow {
                version: u32::try_from(version).map_err(db_err)?,
                set_by: r.try_get_by_index(1)?,
                set_by_agency: r.try_get_by_index(2)?,
                set_at: r.try_get_by_index(3)?,
                what_changes: r.try_get_by_index(4)?,
                outcomes: serde_json::from_str(&outcomes).map_err(db_err)?,
                actions: serde_json::from_str(&actions).map_err(db_err)?,
            })
        })
        .collect()
}

/// An action's live state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRow {
    pub id: String,
    pub tenant: String,
    pub plan_id: String,
    pub case_id: String,
    pub plan_version: u32,
    pub active: bool,
    pub what: String,
    pub owner_kind: String,
    pub owner: String,
    pub owner_email: String,
    pub due_date: NaiveDate,
    pub category: String,
    pub headline: String,
    pub status: String,
    pub note: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    pub reminded_at: Option<DateTime<Utc>>,
}

const ACTION_COLUMNS: &str = "id, tenant, plan_id, case_id, plan_version, active, what, owner_kind,
    owner, owner_email, due_date, category, headline, status, note, updated_at, updated_by,
    reminded_at";

fn action_row(r: &QueryResult) -> Result<ActionRow, DbErr> {
    let version: i64 = r.try_get_by_index(4)?;
    let active: i64 = r.try_get_by_index(5)?;
    let due: String = r.try_get_by_index(10)?;
    Ok(ActionRow {
        id: r.try_get_by_index(0)?,
        tenant: r.try_get_by_index(1)?,
        plan_id: r.try_get_by_index(2)?,
        case_id: r.try_get_by_index(3)?,
        plan_version: u32::try_from(version).map_err(db_err)?,
        active: active != 0,
        what: r.try_get_by_index(6)?,
        owner_kind: r.try_get_by_index(7)?,
        owner: r.try_get_by_index(8)?,
        owner_email: r.try_get_by_index(9)?,
        due_date: due.parse().map_err(db_err)?,
        category: r.try_get_by_index(11)?,
        headline: r.try_get_by_index(12)?,
        status: r.try_get_by_index(13)?,
        note: r.try_get_by_index(14)?,
        updated_at: r.try_get_by_index(15)?,
        updated_by: r.try_get_by_index(16)?,
        reminded_at: r.try_get_by_index(17)?,
    })
}

/// Applies a new version's actions to the live ones: each is written as the version says (a new
/// one opens; a carried one keeps its status and note), and an action the version leaves out is
/// no longer in the plan.
pub async fn apply_version(
    db: &impl ConnectionTrait,
    tenant: &str,
    plan: &PlanRow,
    version: u32,
    actions: &[PlannedAction],
    by: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "UPDATE plan_actions SET active = 0 WHERE tenant = $1 AND plan_id = $2",
        [tenant.into(), plan.id.clone().into()],
    ))
    .await?;
    for a in actions {
        db.execute_raw(stmt(
            b,
            "INSERT INTO plan_actions (id, tenant, plan_id, case_id, plan_version, active, what,
               owner_kind, owner, owner_email, due_date, category, headline, status, note,
               updated_at, updated_by, reminded_for, reminded_at)
             VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9, $10, $11, $12, 'open', '', $13, $14,
               '', NULL)
             ON CONFLICT (id) DO UPDATE SET plan_version = EXCLUDED.plan_version, active = 1,
               what = EXCLUDED.what, owner_kind = EXCLUDED.owner_kind, owner = EXCLUDED.owner,
               owner_email = EXCLUDED.owner_email, due_date = EXCLUDED.due_date,
               category = EXCLUDED.category, headline = EXCLUDED.headline",
            [
                a.action_id.clone().into(),
                tenant.into(),
                plan.id.clone().into(),
                plan.case_id.clone().into(),
                i64::from(version).into(),
                a.what.clone().into(),
                a.owner_kind.clone().into(),
                a.owner.clone().into(),
                a.owner_email.clone().into(),
                a.due_date.to_string().into(),
                a.category.clone().into(),
                a.headline.clone().into(),
                at.into(),
                by.into(),
            ],
        ))
        .await?;
    }
    Ok(())
}

/// The actions still in a case's plan, by due date.
pub async fn case_actions(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
) -> Result<Vec<ActionRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {ACTION_COLUMNS} FROM plan_actions
                 WHERE tenant = $1 AND case_id = $2 AND active = 1 ORDER BY due_date, id"
            ),
            [tenant.into(), case_id.into()],
        ))
        .await?;
    rows.iter().map(action_row).collect()
}

/// The actions a practitioner owns (still in a plan), by due date.
pub async fn owned_actions(
    db: &impl ConnectionTrait,
    tenant: &str,
    owner: &str,
) -> Result<Vec<ActionRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {ACTION_COLUMNS} FROM plan_actions
                 WHERE tenant = $1 AND owner = $2 AND owner_kind = 'practitioner' AND active = 1
                 ORDER BY due_date, id"
            ),
            [tenant.into(), owner.into()],
        ))
        .await?;
    rows.iter().map(action_row).collect()
}

pub async fn action(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<ActionRow>, DbErr> {
    let b = db.get_database_backend();
    db.query_one_raw(stmt(
        b,
        &format!("SELECT {ACTION_COLUMNS} FROM plan_actions WHERE tenant = $1 AND id = $2"),
        [tenant.into(), id.into()],
    ))
    .await?
    .map(|r| action_row(&r))
    .transpose()
}

/// Moves an action from status `from` to `to` with `note`: `false` when it had moved meanwhile.
#[allow(clippy::too_many_arguments)]
pub async fn update_status(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    from: &str,
    to: &str,
    note: &str,
    by: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "UPDATE plan_actions SET status = $4, note = $5, updated_by = $6, updated_at = $7
             WHERE tenant = $1 AND id = $2 AND status = $3",
            [
                tenant.into(),
                id.into(),
                from.into(),
                to.into(),
                note.into(),
                by.into(),
                at.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// An overdue action not yet reminded for its due date, with what its reminder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    pub tenant: String,
    pub action_id: String,
    pub case_id: String,
    pub owner_kind: String,
    pub owner_email: String,
    pub lead_email: String,
    pub due_date: String,
}

/// Unfinished actions of open cases whose due date is before `today` and whose owner has not been
/// reminded for that date (every council: the clock's sweep).
pub async fn overdue_unreminded(
    db: &impl ConnectionTrait,
    today: NaiveDate,
    limit: u64,
) -> Result<Vec<Overdue>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            "SELECT a.tenant, a.id, a.case_id, a.owner_kind, a.owner_email, p.lead_email, a.due_date
             FROM plan_actions a
             JOIN plans p ON p.id = a.plan_id
             JOIN assessment_cases c ON c.tenant = a.tenant AND c.case_id = a.case_id
             WHERE a.active = 1 AND a.status IN ('open', 'in_progress') AND a.due_date < $1
               AND a.reminded_for <> a.due_date AND c.ended_at IS NULL
             ORDER BY a.due_date, a.id LIMIT $2",
            [
                today.to_string().into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Overdue {
                tenant: r.try_get_by_index(0)?,
                action_id: r.try_get_by_index(1)?,
                case_id: r.try_get_by_index(2)?,
                owner_kind: r.try_get_by_index(3)?,
                owner_email: r.try_get_by_index(4)?,
                lead_email: r.try_get_by_index(5)?,
                due_date: r.try_get_by_index(6)?,
            })
        })
        .collect()
}

/// Marks an action reminded for `due_date`: `false` when another replica did it first.
pub async fn mark_reminded(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    due_date: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "UPDATE plan_actions SET reminded_for = $3, reminded_at = $4
             WHERE tenant = $1 AND id = $2 AND reminded_for <> $3",
            [tenant.into(), id.into(), due_date.into(), at.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}
