//! Casework's own tables: cases, the referrals attached to each, the timeline, the service-level
//! timers, and a read model of the families' consent (built from consent's events).
//!
//! Concurrency: every change to a family's cases first takes the family's lock row
//! ([`lock_family`]: `SELECT … FOR UPDATE` on PostgreSQL; SQLite has one writer), so the
//! referral, consent, screening and timer paths never interleave on one family — e.g. consent
//! arriving while the case is being opened cannot be missed.
use chrono::{DateTime, Utc};
use eh_proto::casework::v1 as pb;
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Value};

use crate::domain::{State, TimerKind};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        owner: "casework",
        version: 10,
        name: "cases, timeline, timers, consent read model",
        sql: "CREATE TABLE families (
            tenant TEXT NOT NULL,
            family_id TEXT NOT NULL,
            PRIMARY KEY (tenant, family_id)
          );
          CREATE TABLE cases (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            family_id TEXT NOT NULL,
            referral_id TEXT NOT NULL,
            route TEXT NOT NULL,
            state TEXT NOT NULL,
            source_system TEXT NOT NULL,
            source_reference TEXT NOT NULL,
            referrer TEXT NOT NULL,
            referrer_agency TEXT NOT NULL,
            family_contacts TEXT NOT NULL,
            needs TEXT NOT NULL,
            postcode TEXT NOT NULL,
            programmes_met TEXT NOT NULL,
            opened_at {ts} NOT NULL,
            updated_at {ts} NOT NULL
          );
          CREATE INDEX cases_tenant_family ON cases (tenant, family_id);
          CREATE INDEX cases_tenant_state ON cases (tenant, state, opened_at);
          CREATE TABLE case_referrals (
            tenant TEXT NOT NULL,
            referral_id TEXT NOT NULL,
            case_id TEXT NOT NULL REFERENCES cases (id),
            attached_at {ts} NOT NULL,
            PRIMARY KEY (tenant, referral_id)
          );
          CREATE TABLE timeline (
            seq {serial},
            case_id TEXT NOT NULL REFERENCES cases (id),
            tenant TEXT NOT NULL,
            at {ts} NOT NULL,
            kind TEXT NOT NULL,
            from_state TEXT NOT NULL,
            to_state TEXT NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            cause_id TEXT NOT NULL
          );
          CREATE INDEX timeline_case ON timeline (case_id, seq);
          CREATE TABLE timers (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            case_id TEXT NOT NULL REFERENCES cases (id),
            family_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            due_at {ts} NOT NULL,
            status TEXT NOT NULL,
            settled_at {ts} NULL,
            UNIQUE (case_id, kind)
          );
          CREATE INDEX timers_due ON timers (status, due_at);
          CREATE TABLE family_consent (
            tenant TEXT NOT NULL,
            record_id TEXT NOT NULL,
            family_id TEXT NOT NULL,
            person_id TEXT NOT NULL,
            to_receive_help BOOLEAN NOT NULL,
            withdrawn BOOLEAN NOT NULL,
            recorded_at {ts} NOT NULL,
            PRIMARY KEY (tenant, record_id)
          );
          CREATE INDEX family_consent_family ON family_consent (tenant, family_id)",
    },
    Migration {
        owner: "casework",
        version: 12,
        name: "the lead practitioner of each case",
        sql: "CREATE TABLE case_leads (
            case_id TEXT PRIMARY KEY REFERENCES cases (id),
            tenant TEXT NOT NULL,
            practitioner TEXT NOT NULL,
            organization_id TEXT NOT NULL,
            named_at {ts} NOT NULL
          )",
    },
    // A case's referrals are read by case id (every read of a case): without this, a scan of
    // every council's referrals.
    Migration {
        owner: "casework",
        version: 13,
        name: "case referrals by case",
        sql: "CREATE INDEX case_referrals_case ON case_referrals (case_id, attached_at)",
    },
];

/// The practitioner leading a case, and their organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lead {
    pub practitioner: String,
    pub organization_id: String,
}

/// Names (or renames) the lead practitioner of `case_id`.
pub async fn set_lead(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    lead: &Lead,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO case_leads (case_id, tenant, practitioner, organization_id, named_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (case_id) DO UPDATE SET practitioner = EXCLUDED.practitioner,
           organization_id = EXCLUDED.organization_id, named_at = EXCLUDED.named_at",
        [
            case_id.into(),
            tenant.into(),
            lead.practitioner.clone().into(),
            lead.organization_id.clone().into(),
            at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The lead practitioner of `case_id`, once named.
pub async fn lead_of(db: &impl ConnectionTrait, case_id: &str) -> Result<Option<Lead>, DbErr> {
    let b = db.get_database_backend();
    db.query_one_raw(stmt(
        b,
        "SELECT practitioner, organization_id FROM case_leads WHERE case_id = $1",
        [case_id.into()],
    ))
    .await?
    .map(|r| {
        Ok(Lead {
            practitioner: r.try_get_by_index(0)?,
            organization_id: r.try_get_by_index(1)?,
        })
    })
    .transpose()
}

fn for_update(b: DbBackend) -> &'static str {
    if b == DbBackend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    }
}

fn json_err(e: serde_json::Error) -> DbErr {
    DbErr::Custom(e.to_string())
}

/// Serialises the family's changes (see the module note).
pub async fn lock_family(
    db: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO families (tenant, family_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [tenant.into(), family_id.into()],
    ))
    .await?;
    db.query_one_raw(stmt(
        b,
        &format!(
            "SELECT family_id FROM families WHERE tenant = $1 AND family_id = $2{}",
            for_update(b)
        ),
        [tenant.into(), family_id.into()],
    ))
    .await?;
    Ok(())
}

/// Locks every family of `families` (tenant, family id), in their sorted order — the order every
/// batch takes them in, so two batches never wait on each other in a cycle: one statement to
/// make sure each is on record, one to lock them all.
pub async fn lock_families(
    db: &impl ConnectionTrait,
    families: &[(String, String)],
) -> Result<(), DbErr> {
    if families.is_empty() {
        return Ok(());
    }
    let b = db.get_database_backend();
    let mut sorted = families.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut rows = eh_store::Rows::with_tail(
        "INSERT INTO families (tenant, family_id)",
        2,
        "ON CONFLICT DO NOTHING",
    );
    for (tenant, family) in &sorted {
        rows.push([tenant.clone().into(), family.clone().into()]);
    }
    rows.write(db).await?;
    let values: Vec<sea_orm::Value> = sorted
        .iter()
        .flat_map(|(t, f)| [t.clone().into(), f.clone().into()])
        .collect();
    db.query_all_raw(stmt(
        b,
        &format!(
            "SELECT family_id FROM families WHERE (tenant, family_id) IN ({})
             ORDER BY tenant, family_id{}",
            eh_store::tuples(1, sorted.len(), 2),
            for_update(b)
        ),
        values,
    ))
    .await?;
    Ok(())
}

/// A case as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRow {
    pub id: String,
    pub tenant: String,
    pub family_id: String,
    pub referral_id: String,
    pub route: String,
    pub state: State,
    pub source_system: String,
    pub source_reference: String,
    pub referrer: pb::Contact,
    pub referrer_agency: String,
    pub family_contacts: Vec<pb::Contact>,
    pub needs: Vec<String>,
    pub postcode: String,
    pub programmes_met: Vec<String>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl CaseRow {
    /// What every case event carries.
    pub fn case_ref(&self) -> pb::CaseRef {
        pb::CaseRef {
            case_id: self.id.clone(),
            family_id: self.family_id.clone(),
            referral_id: self.referral_id.clone(),
            source_system: self.source_system.clone(),
            source_reference: self.source_reference.clone(),
            route: self.route.clone(),
            referrer: Some(self.referrer.clone()),
            referrer_agency: self.referrer_agency.clone(),
        }
    }
}

const CASE_COLUMNS: &str = "id, tenant, family_id, referral_id, route, state, source_system, \
    source_reference, referrer, referrer_agency, family_contacts, needs, postcode, programmes_met, \
    opened_at, updated_at";

fn case_row(r: &QueryResult) -> Result<CaseRow, DbErr> {
    let state: String = r.try_get_by_index(5)?;
    let referrer: String = r.try_get_by_index(8)?;
    let contacts: String = r.try_get_by_index(10)?;
    let needs: String = r.try_get_by_index(11)?;
    let programmes: String = r.try_get_by_index(13)?;
    Ok(CaseRow {
        id: r.try_get_by_index(0)?,
        tenant: r.try_get_by_index(1)?,
        family_id: r.try_get_by_index(2)?,
        referral_id: r.try_get_by_index(3)?,
        route: r.try_get_by_index(4)?,
        state: state.parse().map_err(DbErr::Custom)?,
        source_system: r.try_get_by_index(6)?,
        source_reference: r.try_get_by_index(7)?,
        referrer: serde_json::from_str(&referrer).map_err(json_err)?,
        referrer_agency: r.try_get_by_index(9)?,
        family_contacts: serde_json::from_str(&contacts).map_err(json_err)?,
        needs: serde_json::from_str(&needs).map_err(json_err)?,
        postcode: r.try_get_by_index(12)?,
        programmes_met: serde_json::from_str(&programmes).map_err(json_err)?,
        opened_at: r.try_get_by_index(14)?,
        updated_at: r.try_get_by_index(15)?,
    })
}

pub async fn insert_case(db: &impl ConnectionTrait, c: &CaseRow) -> Result<(), DbErr> {
    let values: Vec<Value> = vec![
        c.id.clone().into(),
        c.tenant.clone().into(),
        c.family_id.clone().into(),
        c.referral_id.clone().into(),
        c.route.clone().into(),
        c.state.as_str().into(),
        c.source_system.clone().into(),
        c.source_reference.clone().into(),
        serde_json::to_string(&c.referrer).map_err(json_err)?.into(),
        c.referrer_agency.clone().into(),
        serde_json::to_string(&c.family_contacts)
            .map_err(json_err)?
            .into(),
        serde_json::to_string(&c.needs).map_err(json_err)?.into(),
        c.postcode.clone().into(),
        serde_json::to_string(&c.programmes_met)
            .map_err(json_err)?
            .into(),
        c.opened_at.into(),
        c.updated_at.into(),
    ];
    db.execute_raw(stmt(
        db.get_database_backend(),
        &format!(
            "INSERT INTO cases ({CASE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ),
        values,
    ))
    .await?;
    Ok(())
}

/// Attaches `referral_id` to a case; false when the referral is attached already (to any case).
pub async fn attach_referral(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    referral_id: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let r = db
        .execute_raw(stmt(
            db.get_database_backend(),
            "INSERT INTO case_referrals (tenant, referral_id, case_id, attached_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            [tenant.into(), referral_id.into(), case_id.into(), at.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn referrals_of(db: &impl ConnectionTrait, case_id: &str) -> Result<Vec<String>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT referral_id FROM case_referrals WHERE case_id = $1 ORDER BY attached_at, referral_id",
            [case_id.into()],
        ))
        .await?;
    rows.iter().map(|r| r.try_get_by_index(0)).collect()
}

/// The case `referral_id` of `tenant` opened or was attached to.
pub async fn case_of_referral(
    db: &impl ConnectionTrait,
    tenant: &str,
    referral_id: &str,
) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT case_id FROM case_referrals WHERE tenant = $1 AND referral_id = $2",
            [tenant.into(), referral_id.into()],
        ))
        .await?;
    row.map(|r| r.try_get_by_index::<String>(0)).transpose()
}

/// One case of `tenant` (another tenant's id finds nothing).
pub async fn get_case(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<CaseRow>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            &format!("SELECT {CASE_COLUMNS} FROM cases WHERE tenant = $1 AND id = $2"),
            [tenant.into(), id.into()],
        ))
        .await?;
    row.as_ref().map(case_row).transpose()
}

/// The parts of [`case_view`]'s one statement, in the order it returns them.
const VIEW_CASE: i32 = 0;
const VIEW_TIMELINE: i32 = 1;
const VIEW_TIMER: i32 = 2;
const VIEW_REFERRAL: i32 = 3;

/// One case of `tenant` as a read shows it (the case with its lead practitioner, timeline, clocks
/// and referrals; not the family's contacts, needs or postcode), or none when `tenant` holds no
/// such case. One statement, so one round trip and one snapshot: the case's row, then its
/// timeline, clocks and referrals, each a part of a `UNION ALL` padded to the same columns (part,
/// three sort keys, ten texts, two timestamps). The case's own row is found by tenant and id; the
/// other parts by case id, as [`timeline`], [`timers`], [`referrals_of`] and [`lead_of`] find them.
pub async fn case_view(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<pb::Case>, DbErr> {
    const SQL: &str = "
        SELECT 0, CAST(NULL AS {ts}), CAST(NULL AS BIGINT), CAST(NULL AS TEXT),
               c.id, c.tenant, c.family_id, c.referral_id, c.route, c.state, c.source_system,
               c.source_reference, COALESCE(l.practitioner, ''), COALESCE(l.organization_id, ''),
               c.opened_at, c.updated_at
        FROM cases c LEFT JOIN case_leads l ON l.case_id = c.id
        WHERE c.tenant = $1 AND c.id = $2
        UNION ALL
        SELECT 1, NULL, t.seq, NULL,
               t.kind, t.from_state, t.to_state, t.actor, t.reason, t.cause_id,
               NULL, NULL, NULL, NULL, t.at, NULL
        FROM timeline t
        WHERE t.case_id = $2 AND EXISTS (SELECT 1 FROM cases WHERE tenant = $1 AND id = $2)
        UNION ALL
        SELECT 2, m.due_at, NULL, m.id,
               m.id, m.kind, m.status, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               m.due_at, m.settled_at
        FROM timers m
        WHERE m.case_id = $2 AND EXISTS (SELECT 1 FROM cases WHERE tenant = $1 AND id = $2)
        UNION ALL
        SELECT 3, r.attached_at, NULL, r.referral_id,
               r.referral_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
        FROM case_referrals r
        WHERE r.case_id = $2 AND EXISTS (SELECT 1 FROM cases WHERE tenant = $1 AND id = $2)
        ORDER BY 1, 2, 3, 4";
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(b, &eh_store::ddl(b, SQL), [tenant.into(), id.into()]))
        .await?;
    let text = |r: &QueryResult, i: usize| -> Result<String, DbErr> {
        Ok(r.try_get_by_index::<Option<String>>(i)?.unwrap_or_default())
    };
    let time = |r: &QueryResult, i: usize| -> Result<String, DbErr> {
        Ok(r.try_get_by_index::<Option<DateTime<Utc>>>(i)?
            .map(|t| t.to_rfc3339())
            .unwrap_or_default())
    };
    let mut case: Option<pb::Case> = None;
    for r in &rows {
        let part: i32 = r.try_get_by_index(0)?;
        if part == VIEW_CASE {
            case = Some(pb::Case {
                case_id: text(r, 4)?,
                tenant: text(r, 5)?,
                family_id: text(r, 6)?,
                referral_id: text(r, 7)?,
                route: text(r, 8)?,
                state: text(r, 9)?,
                source_system: text(r, 10)?,
                source_reference: text(r, 11)?,
                lead_practitioner: text(r, 12)?,
                lead_organization: text(r, 13)?,
                opened_at: time(r, 14)?,
                updated_at: time(r, 15)?,
                ..Default::default()
            });
            continue;
        }
        // The case's row sorts first: without it the others are not shown.
        let Some(c) = case.as_mut() else { break };
        match part {
            VIEW_TIMELINE => c.timeline.push(pb::TimelineEntry {
                at: time(r, 14)?,
                kind: text(r, 4)?,
                from_state: text(r, 5)?,
                to_state: text(r, 6)?,
                actor: text(r, 7)?,
                reason: text(r, 8)?,
                cause_id: text(r, 9)?,
            }),
            VIEW_TIMER => c.timers.push(pb::Timer {
                timer_id: text(r, 4)?,
                kind: text(r, 5)?,
                status: text(r, 6)?,
                due_at: time(r, 14)?,
                settled_at: time(r, 15)?,
            }),
            VIEW_REFERRAL => c.referral_ids.push(text(r, 4)?),
            other => return Err(DbErr::Custom(format!("case view: no part {other}"))),
        }
    }
    Ok(case)
}

/// The family's cases that are still open, oldest first.
pub async fn open_cases_of_family(
    db: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
) -> Result<Vec<CaseRow>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            &format!(
                "SELECT {CASE_COLUMNS} FROM cases WHERE tenant = $1 AND family_id = $2 ORDER BY opened_at, id"
            ),
            [tenant.into(), family_id.into()],
        ))
        .await?;
    Ok(rows
        .iter()
        .map(case_row)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|c| c.state.is_open())
        .collect())
}

/// Cases of `tenant`, newest first.
pub async fn list_cases(
    db: &impl ConnectionTrait,
    tenant: &str,
    state: Option<State>,
    family_id: Option<&str>,
    limit: u64,
) -> Result<Vec<CaseRow>, DbErr> {
    let mut sql = format!("SELECT {CASE_COLUMNS} FROM cases WHERE tenant = $1");
    let mut values: Vec<Value> = vec![tenant.into()];
    if let Some(s) = state {
        values.push(s.as_str().into());
        sql.push_str(&format!(" AND state = ${}", values.len()));
    }
    if let Some(f) = family_id {
        values.push(f.into());
        sql.push_str(&format!(" AND family_id = ${}", values.len()));
    }
    values.push((limit as i64).into());
    sql.push_str(&format!(
        " ORDER BY opened_at DESC, id DESC LIMIT ${}",
        values.len()
    ));
    let rows = db
        .query_all_raw(stmt(db.get_database_backend(), &sql, values))
        .await?;
    rows.iter().map(case_row).collect()
}

pub async fn set_state(
    db: &impl ConnectionTrait,
    case_id: &str,
    state: State,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "UPDATE cases SET state = $1, updated_at = $2 WHERE id = $3",
        [state.as_str().into(), at.into(), case_id.into()],
    ))
    .await?;
    Ok(())
}

/// Stores the case's family contacts (a further referral changed them).
pub async fn set_family_contacts(
    db: &impl ConnectionTrait,
    case_id: &str,
    contacts: &[pb::Contact],
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "UPDATE cases SET family_contacts = $1 WHERE id = $2",
        [
            serde_json::to_string(contacts).map_err(json_err)?.into(),
            case_id.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The family contacts of every case the family has had (open or closed), oldest case first.
pub async fn family_contacts_of_family(
    db: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
) -> Result<Vec<pb::Contact>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT family_contacts FROM cases WHERE tenant = $1 AND family_id = $2 ORDER BY opened_at, id",
            [tenant.into(), family_id.into()],
        ))
        .await?;
    let mut all = Vec::new();
    for r in rows {
        let contacts: String = r.try_get_by_index(0)?;
        let contacts: Vec<pb::Contact> = serde_json::from_str(&contacts).map_err(json_err)?;
        all.extend(contacts);
    }
    Ok(all)
}

pub async fn set_programmes(
    db: &impl ConnectionTrait,
    case_id: &str,
    programmes: &[String],
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "UPDATE cases SET programmes_met = $1 WHERE id = $2",
        [
            serde_json::to_string(programmes).map_err(json_err)?.into(),
            case_id.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// One timeline step to record.
#[derive(Debug, Clone)]
pub struct Step<'a> {
    pub kind: &'a str,
    pub from: Option<State>,
    pub to: Option<State>,
    pub actor: &'a str,
    pub reason: &'a str,
    pub cause_id: &'a str,
}

pub async fn add_step(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    at: DateTime<Utc>,
    s: &Step<'_>,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "INSERT INTO timeline (case_id, tenant, at, kind, from_state, to_state, actor, reason, cause_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            case_id.into(),
            tenant.into(),
            at.into(),
            s.kind.into(),
            s.from.map(State::as_str).unwrap_or_default().into(),
            s.to.map(State::as_str).unwrap_or_default().into(),
            s.actor.into(),
            s.reason.into(),
            s.cause_id.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn timeline(
    db: &impl ConnectionTrait,
    case_id: &str,
) -> Result<Vec<pb::TimelineEntry>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT at, kind, from_state, to_state, actor, reason, cause_id FROM timeline
             WHERE case_id = $1 ORDER BY seq",
            [case_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let at: DateTime<Utc> = r.try_get_by_index(0)?;
            Ok(pb::TimelineEntry {
                at: at.to_rfc3339(),
                kind: r.try_get_by_index(1)?,
                from_state: r.try_get_by_index(2)?,
                to_state: r.try_get_by_index(3)?,
                actor: r.try_get_by_index(4)?,
                reason: r.try_get_by_index(5)?,
                cause_id: r.try_get_by_index(6)?,
            })
        })
        .collect()
}

/// Starts a clock of a case (once per case and kind).
pub async fn schedule_timer(
    db: &impl ConnectionTrait,
    case: &CaseRow,
    kind: TimerKind,
    due_at: DateTime<Utc>,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "INSERT INTO timers (id, tenant, case_id, family_id, kind, due_at, status)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending') ON CONFLICT DO NOTHING",
        [
            uuid::Uuid::now_v7().to_string().into(),
            case.tenant.clone().into(),
            case.id.clone().into(),
            case.family_id.clone().into(),
            kind.as_str().into(),
            due_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Cancels the case's pending clocks of these kinds.
pub async fn cancel_timers(
    db: &impl ConnectionTrait,
    case_id: &str,
    kinds: &[TimerKind],
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    for k in kinds {
        db.execute_raw(stmt(
            db.get_database_backend(),
            "UPDATE timers SET status = 'cancelled', settled_at = $1
             WHERE case_id = $2 AND kind = $3 AND status = 'pending'",
            [at.into(), case_id.into(), k.as_str().into()],
        ))
        .await?;
    }
    Ok(())
}

/// When the case's `kind` clock is due (whatever its status), if it has one.
pub async fn timer_due(
    db: &impl ConnectionTrait,
    case_id: &str,
    kind: TimerKind,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT due_at FROM timers WHERE case_id = $1 AND kind = $2",
            [case_id.into(), kind.as_str().into()],
        ))
        .await?;
    row.map(|r| r.try_get_by_index(0)).transpose()
}

/// A clock that has run out.
#[derive(Debug, Clone)]
pub struct DueTimer {
    pub id: String,
    pub tenant: String,
    pub case_id: String,
    pub family_id: String,
    pub kind: TimerKind,
    pub due_at: DateTime<Utc>,
}

/// Pending clocks due at `now`, earliest first.
pub async fn due_timers(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<DueTimer>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT id, tenant, case_id, family_id, kind, due_at FROM timers
             WHERE status = 'pending' AND due_at <= $1 ORDER BY due_at, id LIMIT $2",
            [now.into(), (limit as i64).into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get_by_index(4)?;
            Ok(DueTimer {
                id: r.try_get_by_index(0)?,
                tenant: r.try_get_by_index(1)?,
                case_id: r.try_get_by_index(2)?,
                family_id: r.try_get_by_index(3)?,
                kind: kind.parse().map_err(DbErr::Custom)?,
                due_at: r.try_get_by_index(5)?,
            })
        })
        .collect()
}

/// Settles a pending clock (`fired` or `cancelled`); false when it was no longer pending — another
/// replica settled it — so the caller does nothing.
pub async fn settle_timer(
    db: &impl ConnectionTrait,
    id: &str,
    status: &str,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let r = db
        .execute_raw(stmt(
            db.get_database_backend(),
            "UPDATE timers SET status = $1, settled_at = $2 WHERE id = $3 AND status = 'pending'",
            [status.into(), at.into(), id.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn timers(db: &impl ConnectionTrait, case_id: &str) -> Result<Vec<pb::Timer>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT id, kind, due_at, status, settled_at FROM timers WHERE case_id = $1 ORDER BY due_at, id",
            [case_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let due: DateTime<Utc> = r.try_get_by_index(2)?;
            let settled: Option<DateTime<Utc>> = r.try_get_by_index(4)?;
            Ok(pb::Timer {
                timer_id: r.try_get_by_index(0)?,
                kind: r.try_get_by_index(1)?,
                due_at: due.to_rfc3339(),
                status: r.try_get_by_index(3)?,
                settled_at: settled.map(|s| s.to_rfc3339()).unwrap_or_default(),
            })
        })
        .collect()
}

/// Records a consent record of the family (idempotent by record id).
pub async fn record_consent(
    db: &impl ConnectionTrait,
    tenant: &str,
    record_id: &str,
    family_id: &str,
    person_id: &str,
    to_receive_help: bool,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "INSERT INTO family_consent (tenant, record_id, family_id, person_id, to_receive_help, withdrawn, recorded_at)
         VALUES ($1, $2, $3, $4, $5, FALSE, $6) ON CONFLICT DO NOTHING",
        [
            tenant.into(),
            record_id.into(),
            family_id.into(),
            person_id.into(),
            to_receive_help.into(),
            at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Marks a record withdrawn. A withdrawal seen before its record (events on different streams)
/// leaves a withdrawn placeholder, so the record arriving later cannot revive it.
pub async fn withdraw_consent(
    db: &impl ConnectionTrait,
    tenant: &str,
    record_id: &str,
    family_id: &str,
    person_id: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO family_consent (tenant, record_id, family_id, person_id, to_receive_help, withdrawn, recorded_at)
         VALUES ($1, $2, $3, $4, FALSE, TRUE, $5) ON CONFLICT DO NOTHING",
        [tenant.into(), record_id.into(), family_id.into(), person_id.into(), at.into()],
    ))
    .await?;
    db.execute_raw(stmt(
        b,
        "UPDATE family_consent SET withdrawn = TRUE WHERE tenant = $1 AND record_id = $2",
        [tenant.into(), record_id.into()],
    ))
    .await?;
    Ok(())
}

/// Does the family hold consent to receive Early Help (a family-wide record, not withdrawn)?
pub async fn consent_held(
    db: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
) -> Result<bool, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM family_consent
             WHERE tenant = $1 AND family_id = $2 AND to_receive_help AND NOT withdrawn",
            [tenant.into(), family_id.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0)
        > 0)
}
