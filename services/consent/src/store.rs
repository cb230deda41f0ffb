//! Consent's own tables. The ledger is append-only: a record is never updated or deleted; a
//! withdrawal is a row of `consent_withdrawals` naming the record. Every row carries the tenant and
//! every query filters by it. Every sharing decision is kept in `sharing_decisions`.
use crate::domain::overrides::Override;
use crate::domain::sharing::{SharingDecision, SharingRequest};
use crate::domain::{Agency, Category, ConsentRecord, Method, Purpose, Restriction, parse_date};
use chrono::{DateTime, Utc};
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DbErr, QueryResult};

pub const MIGRATIONS: &[Migration] = &[Migration {
    owner: "consent",
    version: 10,
    name: "consent ledger, withdrawals, overrides, sharing decisions",
    sql: "CREATE TABLE consent_records (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            family_id TEXT NOT NULL,
            person_id TEXT NULL,
            given_by TEXT NOT NULL,
            giver_relationship TEXT NOT NULL,
            parental_responsibility BOOLEAN NOT NULL,
            competent_young_person BOOLEAN NOT NULL,
            method TEXT NULL,
            evidence_ref TEXT NOT NULL,
            given_on TEXT NOT NULL,
            expires_on TEXT NULL,
            purposes TEXT NOT NULL,
            source TEXT NOT NULL,
            source_key TEXT NULL,
            recorded_at {ts} NOT NULL,
            recorded_by TEXT NOT NULL,
            UNIQUE (tenant, source_key)
          );
          CREATE INDEX consent_records_family ON consent_records (tenant, family_id);
          CREATE TABLE consent_restrictions (
            record_id TEXT NOT NULL REFERENCES consent_records (id),
            tenant TEXT NOT NULL,
            position INTEGER NOT NULL,
            category TEXT NOT NULL,
            agency TEXT NULL,
            PRIMARY KEY (record_id, position)
          );
          CREATE TABLE consent_withdrawals (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            record_id TEXT NOT NULL UNIQUE REFERENCES consent_records (id),
            withdrawn_at {ts} NOT NULL,
            withdrawn_by TEXT NOT NULL,
            reason TEXT NOT NULL
          );
          CREATE TABLE safeguarding_overrides (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            family_id TEXT NOT NULL,
            person_id TEXT NULL,
            requested_by TEXT NOT NULL,
            authorised_by TEXT NOT NULL,
            legal_basis TEXT NOT NULL,
            reasoning TEXT NOT NULL,
            agencies TEXT NOT NULL,
            categories TEXT NOT NULL,
            purposes TEXT NOT NULL,
            granted_at {ts} NOT NULL,
            expires_at {ts} NOT NULL
          );
          CREATE INDEX safeguarding_overrides_family ON safeguarding_overrides (tenant, family_id);
          CREATE TABLE sharing_decisions (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            decided_at {ts} NOT NULL,
            asked_by TEXT NOT NULL,
            asked_role TEXT NOT NULL,
            family_id TEXT NOT NULL,
            person_id TEXT NULL,
            agency TEXT NOT NULL,
            category TEXT NOT NULL,
            purpose TEXT NOT NULL,
            allowed BOOLEAN NOT NULL,
            reason TEXT NOT NULL,
            record_id TEXT NULL,
            restriction TEXT NULL,
            override_id TEXT NULL
          );
          CREATE INDEX sharing_decisions_family ON sharing_decisions (tenant, family_id)",
}];

/// A record as held: the domain record plus where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub tenant: String,
    pub record: ConsentRecord,
    pub source: String,
    pub recorded_by: String,
    pub withdrawal: Option<StoredWithdrawal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredWithdrawal {
    pub id: String,
    pub record_id: String,
    pub withdrawn_at: DateTime<Utc>,
    pub withdrawn_by: String,
    pub reason: String,
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn split<T>(s: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, DbErr> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| parse(p).ok_or_else(|| DbErr::Custom(format!("unknown value {p:?} in the store"))))
        .collect()
}

/// Appends `record` (its id, family and content as given). With a `source_key`, at most one record
/// per (tenant, key): `false` when one was held already (nothing stored).
pub async fn insert_record(
    txn: &impl ConnectionTrait,
    tenant: &str,
    record: &ConsentRecord,
    source: &str,
    source_key: Option<&str>,
    recorded_by: &str,
) -> Result<bool, DbErr> {
    let b = txn.get_database_backend();
    let r = record;
    let res = txn
        .execute_raw(stmt(
            b,
            "INSERT INTO consent_records (id, tenant, family_id, person_id, given_by, giver_relationship,
               parental_responsibility, competent_young_person, method, evidence_ref, given_on, expires_on,
               purposes, source, source_key, recorded_at, recorded_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (tenant, source_key) DO NOTHING",
            [
                r.id.clone().into(),
                tenant.into(),
                r.family_id.clone().into(),
                r.person_id.clone().into(),
                r.given_by.clone().into(),
                r.giver_relationship.clone().into(),
                r.parental_responsibility.into(),
                r.competent_young_person.into(),
                r.method.map(|m| m.as_str().to_string()).into(),
                r.evidence_ref.clone().into(),
                r.given_on.to_string().into(),
                r.expires_on.map(|d| d.to_string()).into(),
                join(&r.purposes).into(),
                source.into(),
                source_key.map(str::to_string).into(),
                r.recorded_at.into(),
                recorded_by.into(),
            ],
        ))
        .await?;
    if res.rows_affected() == 0 {
        return Ok(false);
    }
    for (i, x) in r.restrictions.iter().enumerate() {
        txn.execute_raw(stmt(
            b,
            "INSERT INTO consent_restrictions (record_id, tenant, position, category, agency)
             VALUES ($1, $2, $3, $4, $5)",
            [
                r.id.clone().into(),
                tenant.into(),
                (i as i32).into(),
                x.category.as_str().into(),
                x.agency.map(|a| a.as_str().to_string()).into(),
            ],
        ))
        .await?;
    }
    Ok(true)
}

const RECORD_COLUMNS: &str =
    "r.id, r.tenant, r.family_id, r.person_id, r.given_by, r.giver_relationship,
    r.parental_responsibility, r.competent_young_person, r.method, r.evidence_ref, r.given_on,
    r.expires_on, r.purposes, r.source, r.recorded_at, r.recorded_by,
    w.id, w.withdrawn_at, w.withdrawn_by, w.reason";

fn record_from_row(row: &QueryResult) -> Result<StoredRecord, DbErr> {
    let bad = |what: &str| DbErr::Custom(format!("bad {what} in the store"));
    let method: Option<String> = row.try_get_by_index(8)?;
    let given_on: String = row.try_get_by_index(10)?;
    let expires_on: Option<String> = row.try_get_by_index(11)?;
    let purposes: String = row.try_get_by_index(12)?;
    let id: String = row.try_get_by_index(0)?;
    let withdrawal = match row.try_get_by_index::<Option<String>>(16)? {
        Some(wid) => Some(StoredWithdrawal {
            id: wid,
            record_id: id.clone(),
            withdrawn_at: row.try_get_by_index(17)?,
            withdrawn_by: row.try_get_by_index(18)?,
            reason: row.try_get_by_index(19)?,
        }),
        None => None,
    };
    let record = ConsentRecord {
        id,
        family_id: row.try_get_by_index(2)?,
        person_id: row.try_get_by_index(3)?,
        given_by: row.try_get_by_index(4)?,
        giver_relationship: row.try_get_by_index(5)?,
        parental_responsibility: row.try_get_by_index(6)?,
        competent_young_person: row.try_get_by_index(7)?,
        method: match method {
            Some(m) => Some(Method::parse(&m).ok_or_else(|| bad("method"))?),
            None => None,
        },
        evidence_ref: row.try_get_by_index(9)?,
        given_on: parse_date(&given_on).ok_or_else(|| bad("given_on"))?,
        expires_on: match expires_on {
            Some(d) => Some(parse_date(&d).ok_or_else(|| bad("expires_on"))?),
            None => None,
        },
        purposes: split(&purposes, Purpose::parse)?,
        restrictions: Vec::new(),
        recorded_at: row.try_get_by_index(14)?,
        withdrawn_at: withdrawal.as_ref().map(|w| w.withdrawn_at),
    };
    Ok(StoredRecord {
        tenant: row.try_get_by_index(1)?,
        record,
        source: row.try_get_by_index(13)?,
        recorded_by: row.try_get_by_index(15)?,
        withdrawal,
    })
}

async fn with_restrictions(
    db: &impl ConnectionTrait,
    tenant: &str,
    mut records: Vec<StoredRecord>,
) -> Result<Vec<StoredRecord>, DbErr> {
    for r in &mut records {
        let rows = db
            .query_all_raw(stmt(
                db.get_database_backend(),
                "SELECT category, agency FROM consent_restrictions WHERE tenant = $1 AND record_id = $2 ORDER BY position",
                [tenant.into(), r.record.id.clone().into()],
            ))
            .await?;
        for row in rows {
            let category: String = row.try_get_by_index(0)?;
            let agency: Option<String> = row.try_get_by_index(1)?;
            r.record.restrictions.push(Restriction {
                category: Category::parse(&category)
                    .ok_or_else(|| DbErr::Custom(format!("bad category {category:?}")))?,
                agency: match agency {
                    Some(a) => Some(
                        Agency::parse(&a)
                            .ok_or_else(|| DbErr::Custom(format!("bad agency {a:?}")))?,
                    ),
                    None => None,
                },
            });
        }
    }
    Ok(records)
}

/// Every record of one family of `tenant`, in ledger order, with restrictions and withdrawals.
pub async fn family_records(
    db: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
) -> Result<Vec<StoredRecord>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            &format!(
                "SELECT {RECORD_COLUMNS} FROM consent_records r
                 LEFT JOIN consent_withdrawals w ON w.record_id = r.id AND w.tenant = r.tenant
                 WHERE r.tenant = $1 AND r.family_id = $2 ORDER BY r.recorded_at, r.id"
            ),
            [tenant.into(), family_id.into()],
        ))
        .await?;
    let records = rows
        .iter()
        .map(record_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    with_restrictions(db, tenant, records).await
}

/// One record of `tenant` (another tenant's id finds nothing).
pub async fn get_record(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<StoredRecord>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            &format!(
                "SELECT {RECORD_COLUMNS} FROM consent_records r
                 LEFT JOIN consent_withdrawals w ON w.record_id = r.id AND w.tenant = r.tenant
                 WHERE r.tenant = $1 AND r.id = $2"
            ),
            [tenant.into(), id.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let records = with_restrictions(db, tenant, vec![record_from_row(&row)?]).await?;
    Ok(records.into_iter().next())
}

/// Appends a withdrawal of record `w.record_id`; `false` when the record was withdrawn already.
pub async fn insert_withdrawal(
    txn: &impl ConnectionTrait,
    tenant: &str,
    w: &StoredWithdrawal,
) -> Result<bool, DbErr> {
    let res = txn
        .execute_raw(stmt(
            txn.get_database_backend(),
            "INSERT INTO consent_withdrawals (id, tenant, record_id, withdrawn_at, withdrawn_by, reason)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (record_id) DO NOTHING",
            [
                w.id.clone().into(),
                tenant.into(),
                w.record_id.clone().into(),
                w.withdrawn_at.into(),
                w.withdrawn_by.clone().into(),
                w.reason.clone().into(),
            ],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

pub async fn insert_override(
    txn: &impl ConnectionTrait,
    tenant: &str,
    o: &Override,
) -> Result<(), DbErr> {
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "INSERT INTO safeguarding_overrides (id, tenant, family_id, person_id, requested_by, authorised_by,
           legal_basis, reasoning, agencies, categories, purposes, granted_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        [
            o.id.clone().into(),
            tenant.into(),
            o.family_id.clone().into(),
            o.person_id.clone().into(),
            o.requested_by.clone().into(),
            o.authorised_by.clone().into(),
            o.legal_basis.clone().into(),
            o.reasoning.clone().into(),
            join(&o.agencies).into(),
            join(&o.categories).into(),
            join(&o.purposes).into(),
            o.granted_at.into(),
            o.expires_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Every override granted for one family of `tenant`, oldest first.
pub async fn family_overrides(
    db: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
) -> Result<Vec<Override>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT id, family_id, person_id, requested_by, authorised_by, legal_basis, reasoning,
               agencies, categories, purposes, granted_at, expires_at
             FROM safeguarding_overrides WHERE tenant = $1 AND family_id = $2 ORDER BY granted_at, id",
            [tenant.into(), family_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let agencies: String = r.try_get_by_index(7)?;
            let categories: String = r.try_get_by_index(8)?;
            let purposes: String = r.try_get_by_index(9)?;
            Ok(Override {
                id: r.try_get_by_index(0)?,
                family_id: r.try_get_by_index(1)?,
                person_id: r.try_get_by_index(2)?,
                requested_by: r.try_get_by_index(3)?,
                authorised_by: r.try_get_by_index(4)?,
                legal_basis: r.try_get_by_index(5)?,
                reasoning: r.try_get_by_index(6)?,
                agencies: split(&agencies, Agency::parse)?,
                categories: split(&categories, Category::parse)?,
                purposes: split(&purposes, Purpose::parse)?,
                granted_at: r.try_get_by_index(10)?,
                expires_at: r.try_get_by_index(11)?,
            })
        })
        .collect()
}

/// Who asked a sharing question.
#[derive(Debug, Clone)]
pub struct Asker {
    pub actor: String,
    pub role: String,
}

/// Keeps one sharing decision.
pub async fn insert_decision(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    at: DateTime<Utc>,
    asker: &Asker,
    req: &SharingRequest,
    d: &SharingDecision,
) -> Result<(), DbErr> {
    insert_decisions(db, tenant, at, asker, &[(id, req, d)]).await
}

/// Keeps several decisions asked together, in one statement.
pub async fn insert_decisions(
    db: &impl ConnectionTrait,
    tenant: &str,
    at: DateTime<Utc>,
    asker: &Asker,
    decided: &[(&str, &SharingRequest, &SharingDecision)],
) -> Result<(), DbErr> {
    let mut rows = eh_store::Rows::new(
        "INSERT INTO sharing_decisions (id, tenant, decided_at, asked_by, asked_role, family_id,
           person_id, agency, category, purpose, allowed, reason, record_id, restriction,
           override_id)",
        15,
    );
    for (id, req, d) in decided {
        rows.push([
            (*id).into(),
            tenant.into(),
            at.into(),
            asker.actor.clone().into(),
            asker.role.clone().into(),
            req.family_id.clone().into(),
            req.person_id.clone().into(),
            req.agency.as_str().into(),
            req.category.as_str().into(),
            req.purpose.as_str().into(),
            d.allowed.into(),
            d.reason.clone().into(),
            d.record_id.clone().into(),
            d.restriction.map(|r| r.to_string()).into(),
            d.override_id.clone().into(),
        ]);
    }
    rows.write(db).await.map(|_| ())
}

/// A kept decision: (asked_by, family_id, agency, category, purpose, allowed, reason).
pub type DecisionRow = (String, String, String, String, String, bool, String);

/// The decisions kept for `tenant`, oldest first.
pub async fn decisions(db: &impl ConnectionTrait, tenant: &str) -> Result<Vec<DecisionRow>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            "SELECT asked_by, family_id, agency, category, purpose, allowed, reason
             FROM sharing_decisions WHERE tenant = $1 ORDER BY decided_at, id",
            [tenant.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get_by_index(0)?,
                r.try_get_by_index(1)?,
                r.try_get_by_index(2)?,
                r.try_get_by_index(3)?,
                r.try_get_by_index(4)?,
                r.try_get_by_index(5)?,
                r.try_get_by_index(6)?,
            ))
        })
        .collect()
}

/// How many records `tenant` holds (tests).
pub async fn count_records(db: &impl ConnectionTrait, tenant: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM consent_records WHERE tenant = $1",
            [tenant.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}
