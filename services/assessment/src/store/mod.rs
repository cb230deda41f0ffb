//! Assessment's own tables: the cases it may assess (`assessment_cases`, from casework's
//! `lead_assigned`: who leads each), the assessments (`assessments`, one per case), their versions
//! (`assessment_versions`: open or finalised, who and when, what a later version changes) and the
//! agencies' sections (`contributions`, one row per section per version: a new version copies the
//! finalised one's sections, so a finalised version's rows are never written again). Every row
//! carries the tenant and every query filters by it.
use crate::domain::{Contribution, Status};
use chrono::{DateTime, Utc};
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};

pub mod outcomes;
pub mod plan;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        owner: "assessment",
        version: 1,
        name: "cases with their lead, assessments, versions, contributions",
        sql: "CREATE TABLE assessment_cases (
            tenant TEXT NOT NULL,
            case_id TEXT NOT NULL,
            family_id TEXT NOT NULL,
            lead_practitioner TEXT NOT NULL,
            lead_organization TEXT NOT NULL,
            service_name TEXT NOT NULL,
            lead_since {ts} NOT NULL,
            PRIMARY KEY (tenant, case_id)
          );
          CREATE TABLE assessments (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            case_id TEXT NOT NULL,
            family_id TEXT NOT NULL,
            opened_at {ts} NOT NULL,
            opened_by TEXT NOT NULL,
            UNIQUE (tenant, case_id)
          );
          CREATE TABLE assessment_versions (
            tenant TEXT NOT NULL,
            assessment_id TEXT NOT NULL,
            version {bigint} NOT NULL,
            status TEXT NOT NULL,
            opened_by TEXT NOT NULL,
            opened_at {ts} NOT NULL,
            finalised_by TEXT NOT NULL,
            finalised_at {ts} NULL,
            what_changes TEXT NOT NULL,
            PRIMARY KEY (assessment_id, version)
          );
          CREATE TABLE contributions (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            assessment_id TEXT NOT NULL,
            version {bigint} NOT NULL,
            section_id TEXT NOT NULL,
            author TEXT NOT NULL,
            agency TEXT NOT NULL,
            role TEXT NOT NULL,
            added_at {ts} NOT NULL,
            edited_at {ts} NULL,
            category TEXT NOT NULL,
            body TEXT NOT NULL
          );
          CREATE INDEX contributions_version ON contributions (tenant, assessment_id, version);",
    },
    Migration {
        owner: "assessment",
        version: 2,
        name: "plans with their versions and actions",
        sql: plan::SQL,
    },
    Migration {
        owner: "assessment",
        version: 3,
        name: "scores, reviews, closures and the follow-up check; cases that ended, their route; carried-over sections",
        sql: outcomes::SQL,
    },
];

pub(crate) fn db_err(e: impl std::fmt::Display) -> DbErr {
    DbErr::Custom(e.to_string())
}

/// A case assessment may assess, with its lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRow {
    pub tenant: String,
    pub case_id: String,
    pub family_id: String,
    pub lead_practitioner: String,
    pub lead_organization: String,
    pub service_name: String,
    /// When the case closed or stepped up (by any route): nothing more is done on it.
    pub ended_at: Option<DateTime<Utc>>,
    /// The route of the referral that opened it (`step_down`: its assessment may be carried over).
    pub route: String,
}

/// Records (or replaces) the lead of a case.
pub async fn upsert_case(
    db: &impl ConnectionTrait,
    c: &CaseRow,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO assessment_cases (tenant, case_id, family_id, lead_practitioner,
           lead_organization, service_name, lead_since, route)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant, case_id) DO UPDATE SET lead_practitioner = EXCLUDED.lead_practitioner,
           lead_organization = EXCLUDED.lead_organization, service_name = EXCLUDED.service_name,
           lead_since = EXCLUDED.lead_since",
        [
            c.tenant.clone().into(),
            c.case_id.clone().into(),
            c.family_id.clone().into(),
            c.lead_practitioner.clone().into(),
            c.lead_organization.clone().into(),
            c.service_name.clone().into(),
            at.into(),
            c.route.clone().into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn case(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
) -> Result<Option<CaseRow>, DbErr> {
    let b = db.get_database_backend();
    db.query_one_raw(stmt(
        b,
        "SELECT tenant, case_id, family_id, lead_practitioner, lead_organization, service_name,
           ended_at, route
         FROM assessment_cases WHERE tenant = $1 AND case_id = $2",
        [tenant.into(), case_id.into()],
    ))
    .await?
    .map(|r| {
        Ok(CaseRow {
            tenant: r.try_get_by_index(0)?,
            case_id: r.try_get_by_index(1)?,
            family_id: r.try_get_by_index(2)?,
            lead_practitioner: r.try_get_by_index(3)?,
            lead_organization: r.try_get_by_index(4)?,
            service_name: r.try_get_by_index(5)?,
            ended_at: r.try_get_by_index(6)?,
            route: r.try_get_by_index(7)?,
        })
    })
    .transpose()
}

/// An assessment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssessmentRow {
    pub id: String,
    pub tenant: String,
    pub case_id: String,
    pub family_id: String,
}

fn assessment_row(r: &QueryResult) -> Result<AssessmentRow, DbErr> {
    Ok(AssessmentRow {
        id: r.try_get_by_index(0)?,
        tenant: r.try_get_by_index(1)?,
        case_id: r.try_get_by_index(2)?,
        family_id: r.try_get_by_index(3)?,
    })
}

/// Creates the case's assessment: `false` when it already has one (nothing written).
pub async fn insert_assessment(
    db: &impl ConnectionTrait,
    a: &AssessmentRow,
    by: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "INSERT INTO assessments (id, tenant, case_id, family_id, opened_at, opened_by)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, case_id) DO NOTHING",
            [
                a.id.clone().into(),
                a.tenant.clone().into(),
                a.case_id.clone().into(),
                a.family_id.clone().into(),
                at.into(),
                by.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The assessment `id`, or the one of case `case_id` (whichever is given).
pub async fn assessment(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    case_id: &str,
) -> Result<Option<AssessmentRow>, DbErr> {
    let b = db.get_database_backend();
    db.query_one_raw(stmt(
        b,
        "SELECT id, tenant, case_id, family_id FROM assessments
         WHERE tenant = $1 AND (($2 <> '' AND id = $2) OR ($2 = '' AND case_id = $3))",
        [tenant.into(), id.into(), case_id.into()],
    ))
    .await?
    .map(|r| assessment_row(&r))
    .transpose()
}

/// One version of an assessment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub version: u32,
    pub status: Status,
    pub opened_by: String,
    pub opened_at: DateTime<Utc>,
    pub finalised_by: String,
    pub finalised_at: Option<DateTime<Utc>>,
    pub what_changes: String,
}

/// Adds version `version` (open).
pub async fn insert_version(
    db: &impl ConnectionTrait,
    tenant: &str,
    assessment_id: &str,
    version: u32,
    by: &str,
    what_changes: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO assessment_versions (tenant, assessment_id, version, status, opened_by,
           opened_at, finalised_by, finalised_at, what_changes)
         VALUES ($1, $2, $3, 'open', $4, $5, '', NULL, $6)",
        [
            tenant.into(),
            assessment_id.into(),
            i64::from(version).into(),
            by.into(),
            at.into(),
            what_changes.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Every version of an assessment, oldest first.
pub async fn versions(
    db: &impl ConnectionTrait,
    tenant: &str,
    assessment_id: &str,
) -> Result<Vec<VersionRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            "SELECT version, status, opened_by, opened_at, finalised_by, finalised_at, what_changes
             FROM assessment_versions WHERE tenant = $1 AND assessment_id = $2 ORDER BY version",
            [tenant.into(), assessment_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let version: i64 = r.try_get_by_index(0)?;
            let status: String = r.try_get_by_index(1)?;
            Ok(VersionRow {
                version: u32::try_from(version).map_err(db_err)?,
                status: Status::parse(&status)
                    .ok_or_else(|| db_err(format!("unknown version status {status:?}")))?,
                opened_by: r.try_get_by_index(2)?,
                opened_at: r.try_get_by_index(3)?,
                finalised_by: r.try_get_by_index(4)?,
                finalised_at: r.try_get_by_index(5)?,
                what_changes: r.try_get_by_index(6)?,
            })
        })
        .collect()
}

/// Locks version `version` if it is still open: `false` when it was not (nothing written).
pub async fn finalise_version(
    db: &impl ConnectionTrait,
    tenant: &str,
    assessment_id: &str,
    version: u32,
    by: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "UPDATE assessment_versions SET status = 'finalised', finalised_by = $4, finalised_at = $5
             WHERE tenant = $1 AND assessment_id = $2 AND version = $3 AND status = 'open'",
            [
                tenant.into(),
                assessment_id.into(),
                i64::from(version).into(),
                by.into(),
                at.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// A stored section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContributionRow {
    pub id: String,
    pub tenant: String,
    pub assessment_id: String,
    pub version: u32,
    /// The section across versions: the id it was first added under.
    pub section_id: String,
    pub author: String,
    pub agency: String,
    pub role: String,
    pub added_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub body: Contribution,
    /// Where a section carried over from a step-down's assessment came from (empty otherwise).
    pub carried_from: String,
}

const CONTRIBUTION_COLUMNS: &str = "id, tenant, assessment_id, version, section_id, author, agency,
    role, added_at, edited_at, body, carried_from";

fn contribution_row(r: &QueryResult) -> Result<ContributionRow, DbErr> {
    let version: i64 = r.try_get_by_index(3)?;
    let body: String = r.try_get_by_index(10)?;
    Ok(ContributionRow {
        id: r.try_get_by_index(0)?,
        tenant: r.try_get_by_index(1)?,
        assessment_id: r.try_get_by_index(2)?,
        version: u32::try_from(version).map_err(db_err)?,
        section_id: r.try_get_by_index(4)?,
        author: r.try_get_by_index(5)?,
        agency: r.try_get_by_index(6)?,
        role: r.try_get_by_index(7)?,
        added_at: r.try_get_by_index(8)?,
        edited_at: r.try_get_by_index(9)?,
        body: serde_json::from_str(&body).map_err(db_err)?,
        carried_from: r.try_get_by_index(11)?,
    })
}

fn contribution_values(c: &ContributionRow) -> Result<Vec<Value>, DbErr> {
    Ok(vec![
        c.id.clone().into(),
        c.tenant.clone().into(),
        c.assessment_id.clone().into(),
        i64::from(c.version).into(),
        c.section_id.clone().into(),
        c.author.clone().into(),
        c.agency.clone().into(),
        c.role.clone().into(),
        c.added_at.into(),
        c.edited_at.into(),
        c.body.category.clone().into(),
        serde_json::to_string(&c.body).map_err(db_err)?.into(),
        c.carried_from.clone().into(),
    ])
}

pub async fn insert_contribution(
    db: &impl ConnectionTrait,
    c: &ContributionRow,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO contributions (id, tenant, assessment_id, version, section_id, author, agency,
           role, added_at, edited_at, category, body, carried_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        contribution_values(c)?,
    ))
    .await?;
    Ok(())
}

/// Replaces a section's body, only while its version is open: `false` when it was not.
pub async fn edit_contribution(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    body: &Contribution,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "UPDATE contributions SET body = $3, category = $4, edited_at = $5
             WHERE tenant = $1 AND id = $2 AND EXISTS (
               SELECT 1 FROM assessment_versions v WHERE v.tenant = contributions.tenant
                 AND v.assessment_id = contributions.assessment_id
                 AND v.version = contributions.version AND v.status = 'open')",
            [
                tenant.into(),
                id.into(),
                serde_json::to_string(body).map_err(db_err)?.into(),
                body.category.clone().into(),
                at.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn contribution(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<ContributionRow>, DbErr> {
    let b = db.get_database_backend();
    db.query_one_raw(stmt(
        b,
        &format!("SELECT {CONTRIBUTION_COLUMNS} FROM contributions WHERE tenant = $1 AND id = $2"),
        [tenant.into(), id.into()],
    ))
    .await?
    .map(|r| contribution_row(&r))
    .transpose()
}

/// The sections of one version, in the order they were added.
pub async fn contributions(
    db: &impl ConnectionTrait,
    tenant: &str,
    assessment_id: &str,
    version: u32,
) -> Result<Vec<ContributionRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {CONTRIBUTION_COLUMNS} FROM contributions
                 WHERE tenant = $1 AND assessment_id = $2 AND version = $3
                 ORDER BY added_at, id"
            ),
            [
                tenant.into(),
                assessment_id.into(),
                i64::from(version).into(),
            ],
        ))
        .await?;
    rows.iter().map(contribution_row).collect()
}
