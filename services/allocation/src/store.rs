//! Allocation's own tables: the council's copy of its directory (`directory_services`, one row per
//! ORUK service, never deleted: a service gone from the source is marked withdrawn), the terms the
//! council adds (`service_terms`), every import's result (`directory_imports`), and the
//! allocations that hold a service's capacity and count against its contract (`allocations`).
//! Every row carries the tenant and every query filters by it.
use crate::domain::oruk::{OrukService, Refusal, TermRef};
use crate::domain::{Kind, Period, Terms};
use chrono::{DateTime, NaiveDate, Utc};
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};
use serde_json::json;
use sha2::{Digest, Sha256};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        owner: "allocation",
        version: 1,
        name: "directory services, council terms, imports, allocations",
        sql: "CREATE TABLE directory_services (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            organization_id TEXT NOT NULL,
            organization_name TEXT NOT NULL,
            status TEXT NOT NULL,
            withdrawn BOOLEAN NOT NULL,
            minimum_age {bigint} NULL,
            maximum_age {bigint} NULL,
            email TEXT NOT NULL,
            taxonomy_terms TEXT NOT NULL,
            taxonomy_needs TEXT NOT NULL,
            postcodes TEXT NOT NULL,
            service_areas TEXT NOT NULL,
            last_modified TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            last_import_id TEXT NOT NULL,
            updated_at {ts} NOT NULL,
            PRIMARY KEY (tenant, id)
          );
          CREATE TABLE service_terms (
            tenant TEXT NOT NULL,
            service_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            coverage TEXT NOT NULL,
            needs TEXT NOT NULL,
            programmes TEXT NOT NULL,
            capacity {bigint} NOT NULL,
            contract_volume {bigint} NULL,
            contract_period TEXT NOT NULL,
            offer_email TEXT NOT NULL,
            updated_at {ts} NOT NULL,
            updated_by TEXT NOT NULL,
            PRIMARY KEY (tenant, service_id)
          );
          CREATE TABLE directory_imports (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            source TEXT NOT NULL,
            trigger_kind TEXT NOT NULL,
            started_at {ts} NOT NULL,
            finished_at {ts} NOT NULL,
            outcome TEXT NOT NULL,
            error TEXT NOT NULL,
            created {bigint} NOT NULL,
            updated {bigint} NOT NULL,
            unchanged {bigint} NOT NULL,
            withdrawn {bigint} NOT NULL,
            refusals TEXT NOT NULL
          );
          CREATE INDEX directory_imports_tenant ON directory_imports (tenant, started_at);
          CREATE TABLE allocation_cases (
            tenant TEXT NOT NULL,
            case_id TEXT NOT NULL,
            family_id TEXT NOT NULL,
            referral_id TEXT NOT NULL,
            postcode TEXT NOT NULL,
            needs TEXT NOT NULL,
            programmes TEXT NOT NULL,
            significant_need BOOLEAN NOT NULL,
            ready_at {ts} NOT NULL,
            status TEXT NOT NULL,
            waiting_since {ts} NULL,
            waiting_reason TEXT NOT NULL,
            updated_at {ts} NOT NULL,
            PRIMARY KEY (tenant, case_id)
          );
          CREATE INDEX allocation_cases_status ON allocation_cases (tenant, status, ready_at);
          CREATE TABLE referral_children (
            tenant TEXT NOT NULL,
            referral_id TEXT NOT NULL,
            birth_dates TEXT NOT NULL,
            PRIMARY KEY (tenant, referral_id)
          );
          CREATE TABLE allocations (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            case_id TEXT NOT NULL,
            service_id TEXT NOT NULL,
            status TEXT NOT NULL,
            period_start TEXT NOT NULL,
            attempt {bigint} NOT NULL,
            rule_version TEXT NOT NULL,
            reasons TEXT NOT NULL,
            offered_at {ts} NOT NULL,
            settled_at {ts} NULL,
            settled_by TEXT NOT NULL,
            decline_reason TEXT NOT NULL,
            decline_detail TEXT NOT NULL
          );
          CREATE INDEX allocations_service ON allocations (tenant, service_id, status);
          CREATE INDEX allocations_case ON allocations (tenant, case_id)",
    },
    Migration {
        owner: "allocation",
        version: 2,
        name: "offers lapse unanswered; waiting-list breaches; family preferences; lead practitioners",
        sql: "ALTER TABLE allocations ADD COLUMN respond_by {ts} NULL;
          CREATE INDEX allocations_due ON allocations (status, respond_by);
          ALTER TABLE allocation_cases ADD COLUMN waiting_breached_at {ts} NULL;
          ALTER TABLE service_terms ADD COLUMN agency TEXT NOT NULL DEFAULT '';
          CREATE TABLE family_preferences (
            tenant TEXT NOT NULL,
            case_id TEXT NOT NULL,
            preference TEXT NOT NULL,
            recorded_by TEXT NOT NULL,
            recorded_at {ts} NOT NULL,
            PRIMARY KEY (tenant, case_id)
          );
          CREATE TABLE lead_requests (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            case_id TEXT NOT NULL,
            offer_id TEXT NOT NULL,
            service_id TEXT NOT NULL,
            organization_id TEXT NOT NULL,
            practitioner TEXT NOT NULL,
            asked_by TEXT NOT NULL,
            asked_at {ts} NOT NULL,
            note TEXT NOT NULL,
            family_preference TEXT NOT NULL,
            status TEXT NOT NULL,
            answered_at {ts} NULL,
            decline_reason TEXT NOT NULL,
            decline_detail TEXT NOT NULL
          );
          CREATE INDEX lead_requests_case ON lead_requests (tenant, case_id);
          CREATE INDEX lead_requests_practitioner ON lead_requests (tenant, practitioner, status)",
    },
];

/// Allocation statuses that hold one of the service's places.
pub const HOLDING: &[&str] = &["offered", "accepted"];

/// What an import did to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// A directory service as held, with the council's terms and its load.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredService {
    pub service: OrukService,
    pub withdrawn: bool,
    pub taxonomy_needs: Vec<String>,
    pub last_import_id: String,
    pub terms: Option<Terms>,
    pub open_cases: u32,
    pub period_cases: u32,
}

impl StoredService {
    /// May it be offered cases (active in the source and still in it)? If not, why not.
    pub fn offerable(&self) -> Result<(), String> {
        if self.withdrawn {
            Err("withdrawn from the directory (no longer in the council's source)".into())
        } else if self.service.status != "active" {
            Err(format!("status {}", self.service.status))
        } else {
            Ok(())
        }
    }
}

/// The result of one import, as stored and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    pub id: String,
    pub tenant: String,
    pub source: String,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `completed` or `failed`.
    pub outcome: String,
    pub error: String,
    pub created: u32,
    pub updated: u32,
    pub unchanged: u32,
    pub withdrawn: u32,
    pub refused: Vec<Refusal>,
}

fn hash(s: &OrukService, needs: &[String]) -> String {
    let terms: Vec<_> = s
        .taxonomy_terms
        .iter()
        .map(|t| [&t.taxonomy, &t.id, &t.term])
        .collect();
    let canonical = json!([
        s.id,
        s.name,
        s.organization_id,
        s.organization_name,
        s.status,
        s.minimum_age,
        s.maximum_age,
        s.email,
        terms,
        needs,
        s.postcodes,
        s.service_areas,
        s.last_modified
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str, column: &str) -> Result<T, DbErr> {
    serde_json::from_str(s).map_err(|e| DbErr::Custom(format!("{column} in the store: {e}")))
}

fn age(v: Option<u32>) -> Value {
    v.map(i64::from).into()
}

/// Inserts or updates `s` as the import `import_id` read it; a service that was withdrawn and is
/// back in the source is no longer withdrawn.
pub async fn upsert_service(
    db: &impl ConnectionTrait,
    tenant: &str,
    s: &OrukService,
    taxonomy_needs: &[String],
    import_id: &str,
    now: DateTime<Utc>,
) -> Result<Change, DbErr> {
    let b = db.get_database_backend();
    let h = hash(s, taxonomy_needs);
    let held = db
        .query_one_raw(stmt(
            b,
            "SELECT content_hash, withdrawn FROM directory_services WHERE tenant = $1 AND id = $2",
            [tenant.into(), s.id.clone().into()],
        ))
        .await?;
    let terms: Vec<_> = s
        .taxonomy_terms
        .iter()
        .map(|t| json!({"taxonomy": t.taxonomy, "id": t.id, "term": t.term}))
        .collect();
    let values: Vec<Value> = vec![
        tenant.into(),
        s.id.clone().into(),
        s.name.clone().into(),
        s.organization_id.clone().into(),
        s.organization_name.clone().into(),
        s.status.clone().into(),
        age(s.minimum_age),
        age(s.maximum_age),
        s.email.clone().into(),
        to_json(&terms).into(),
        to_json(&taxonomy_needs).into(),
        to_json(&s.postcodes).into(),
        to_json(&s.service_areas).into(),
        s.last_modified.clone().into(),
        h.clone().into(),
        import_id.into(),
        now.into(),
    ];
    match held {
        None => {
            db.execute_raw(stmt(
                b,
                "INSERT INTO directory_services (tenant, id, name, organization_id, organization_name,
                   status, minimum_age, maximum_age, email, taxonomy_terms, taxonomy_needs, postcodes,
                   service_areas, last_modified, content_hash, last_import_id, updated_at, withdrawn)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, FALSE)",
                values,
            ))
            .await?;
            Ok(Change::Created)
        }
        Some(r) => {
            let old: String = r.try_get_by_index(0)?;
            let withdrawn: bool = r.try_get_by_index(1)?;
            if old == h && !withdrawn {
                db.execute_raw(stmt(
                    b,
                    "UPDATE directory_services SET last_import_id = $3 WHERE tenant = $1 AND id = $2",
                    [tenant.into(), s.id.clone().into(), import_id.into()],
                ))
                .await?;
                return Ok(Change::Unchanged);
            }
            db.execute_raw(stmt(
                b,
                "UPDATE directory_services SET name = $3, organization_id = $4, organization_name = $5,
                   status = $6, minimum_age = $7, maximum_age = $8, email = $9, taxonomy_terms = $10,
                   taxonomy_needs = $11, postcodes = $12, service_areas = $13, last_modified = $14,
                   content_hash = $15, last_import_id = $16, updated_at = $17, withdrawn = FALSE
                 WHERE tenant = $1 AND id = $2",
                values,
            ))
            .await?;
            Ok(Change::Updated)
        }
    }
}

/// The ids of `tenant`'s services that may be offered cases now (active, not withdrawn).
pub async fn offerable_ids(db: &impl ConnectionTrait, tenant: &str) -> Result<Vec<String>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            "SELECT id FROM directory_services
             WHERE tenant = $1 AND NOT withdrawn AND status = 'active' ORDER BY id",
            [tenant.into()],
        ))
        .await?;
    rows.iter().map(|r| r.try_get_by_index(0)).collect()
}

/// How many services `tenant`'s directory holds (withdrawn ones too).
pub async fn count_services(db: &impl ConnectionTrait, tenant: &str) -> Result<u64, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .query_one_raw(stmt(
            b,
            "SELECT COUNT(*) FROM directory_services WHERE tenant = $1",
            [tenant.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("count returned no row".into()))?;
    let n: i64 = r.try_get_by_index(0)?;
    Ok(u64::try_from(n).unwrap_or_default())
}

/// Marks withdrawn every service of `tenant` not in `seen`; how many were not withdrawn before.
pub async fn withdraw_absent(
    db: &impl ConnectionTrait,
    tenant: &str,
    seen: &std::collections::HashSet<String>,
    import_id: &str,
    now: DateTime<Utc>,
) -> Result<u32, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            "SELECT id FROM directory_services WHERE tenant = $1 AND NOT withdrawn",
            [tenant.into()],
        ))
        .await?;
    let mut n = 0;
    for r in rows {
        let id: String = r.try_get_by_index(0)?;
        if seen.contains(&id) {
            continue;
        }
        db.execute_raw(stmt(
            b,
            "UPDATE directory_services SET withdrawn = TRUE, last_import_id = $3, updated_at = $4
             WHERE tenant = $1 AND id = $2",
            [tenant.into(), id.into(), import_id.into(), now.into()],
        ))
        .await?;
        n += 1;
    }
    Ok(n)
}

const SERVICE_COLUMNS: &str = "s.id, s.name, s.organization_id, s.organization_name, s.status,
    s.withdrawn, s.minimum_age, s.maximum_age, s.email, s.taxonomy_terms, s.taxonomy_needs,
    s.postcodes, s.service_areas, s.last_modified, s.last_import_id,
    t.kind, t.coverage, t.needs, t.programmes, t.capacity, t.contract_volume, t.contract_period,
    t.offer_email, t.agency";

fn service_row(r: &QueryResult) -> Result<StoredService, DbErr> {
    let ages = |i| -> Result<Option<u32>, DbErr> {
        let v: Option<i64> = r.try_get_by_index(i)?;
        Ok(v.and_then(|a| u32::try_from(a).ok()))
    };
    let terms_json: String = r.try_get_by_index(9)?;
    let taxonomy_terms: Vec<serde_json::Value> = from_json(&terms_json, "taxonomy_terms")?;
    let taxonomy_terms = taxonomy_terms
        .iter()
        .map(|t| TermRef {
            taxonomy: t["taxonomy"].as_str().unwrap_or_default().into(),
            id: t["id"].as_str().unwrap_or_default().into(),
            term: t["term"].as_str().unwrap_or_default().into(),
        })
        .collect();
    let kind: Option<String> = r.try_get_by_index(15)?;
    let terms = match kind {
        None => None,
        Some(kind) => {
            let bad = |what: &str| DbErr::Custom(format!("{what} in the store"));
            let coverage: String = r.try_get_by_index(16)?;
            let needs: String = r.try_get_by_index(17)?;
            let programmes: String = r.try_get_by_index(18)?;
            let capacity: i64 = r.try_get_by_index(19)?;
            let volume: Option<i64> = r.try_get_by_index(20)?;
            let period: String = r.try_get_by_index(21)?;
            Some(Terms {
                kind: kind.parse::<Kind>().map_err(|_| bad("kind"))?,
                coverage: from_json(&coverage, "coverage")?,
                needs: from_json(&needs, "needs")?,
                programmes: from_json(&programmes, "programmes")?,
                capacity: u32::try_from(capacity).map_err(|_| bad("capacity"))?,
                contract_volume: volume.and_then(|v| u32::try_from(v).ok()),
                contract_period: period
                    .parse::<Period>()
                    .map_err(|_| bad("contract_period"))?,
                offer_email: r.try_get_by_index(22)?,
                agency: r.try_get_by_index(23)?,
            })
        }
    };
    let needs: String = r.try_get_by_index(10)?;
    let postcodes: String = r.try_get_by_index(11)?;
    let areas: String = r.try_get_by_index(12)?;
    Ok(StoredService {
        service: OrukService {
            id: r.try_get_by_index(0)?,
            name: r.try_get_by_index(1)?,
            organization_id: r.try_get_by_index(2)?,
            organization_name: r.try_get_by_index(3)?,
            status: r.try_get_by_index(4)?,
            minimum_age: ages(6)?,
            maximum_age: ages(7)?,
            email: r.try_get_by_index(8)?,
            taxonomy_terms,
            postcodes: from_json(&postcodes, "postcodes")?,
            service_areas: from_json(&areas, "service_areas")?,
            last_modified: r.try_get_by_index(13)?,
        },
        withdrawn: r.try_get_by_index(5)?,
        taxonomy_needs: from_json(&needs, "taxonomy_needs")?,
        last_import_id: r.try_get_by_index(14)?,
        terms,
        open_cases: 0,
        period_cases: 0,
    })
}

/// Fills in each service's load: places held (offered or accepted) and, for a service with a
/// contract, the cases counted against its current period (the one `today` falls in).
async fn with_load(
    db: &impl ConnectionTrait,
    tenant: &str,
    mut services: Vec<StoredService>,
    today: NaiveDate,
) -> Result<Vec<StoredService>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            "SELECT service_id, status, period_start, COUNT(*) FROM allocations
             WHERE tenant = $1 AND status IN ('offered', 'accepted', 'closed')
             GROUP BY service_id, status, period_start",
            [tenant.into()],
        ))
        .await?;
    let mut load: std::collections::HashMap<String, Vec<(String, String, i64)>> =
        std::collections::HashMap::new();
    for r in rows {
        let service: String = r.try_get_by_index(0)?;
        load.entry(service).or_default().push((
            r.try_get_by_index(1)?,
            r.try_get_by_index(2)?,
            r.try_get_by_index(3)?,
        ));
    }
    for s in &mut services {
        let Some(rows) = load.get(&s.service.id) else {
            continue;
        };
        let period = s
            .terms
            .as_ref()
            .map(|t| t.contract_period.start(today).to_string());
        for (status, start, n) in rows {
            let n = u32::try_from(*n).unwrap_or(u32::MAX);
            if HOLDING.contains(&status.as_str()) {
                s.open_cases += n;
            }
            if period.as_deref() == Some(start.as_str()) {
                s.period_cases += n;
            }
        }
    }
    Ok(services)
}

/// Every service of `tenant`'s directory (withdrawn ones too), by name, with terms and load.
pub async fn services(
    db: &impl ConnectionTrait,
    tenant: &str,
    today: NaiveDate,
) -> Result<Vec<StoredService>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {SERVICE_COLUMNS} FROM directory_services s
                 LEFT JOIN service_terms t ON t.tenant = s.tenant AND t.service_id = s.id
                 WHERE s.tenant = $1 ORDER BY s.name, s.id"
            ),
            [tenant.into()],
        ))
        .await?;
    let services = rows
        .iter()
        .map(service_row)
        .collect::<Result<Vec<_>, _>>()?;
    with_load(db, tenant, services, today).await
}

/// One service of `tenant`'s directory, with terms and load.
pub async fn service(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    today: NaiveDate,
) -> Result<Option<StoredService>, DbErr> {
    let b = db.get_database_backend();
    let row = db
        .query_one_raw(stmt(
            b,
            &format!(
                "SELECT {SERVICE_COLUMNS} FROM directory_services s
                 LEFT JOIN service_terms t ON t.tenant = s.tenant AND t.service_id = s.id
                 WHERE s.tenant = $1 AND s.id = $2"
            ),
            [tenant.into(), id.into()],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let one = with_load(db, tenant, vec![service_row(&row)?], today).await?;
    Ok(one.into_iter().next())
}

/// Sets the council's terms for a service of its directory.
pub async fn set_terms(
    db: &impl ConnectionTrait,
    tenant: &str,
    service_id: &str,
    t: &Terms,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    let values: Vec<Value> = vec![
        tenant.into(),
        service_id.into(),
        t.kind.as_str().into(),
        to_json(&t.coverage).into(),
        to_json(&t.needs).into(),
        to_json(&t.programmes).into(),
        i64::from(t.capacity).into(),
        t.contract_volume.map(i64::from).into(),
        t.contract_period.as_str().into(),
        t.offer_email.clone().into(),
        now.into(),
        actor.into(),
        t.agency.clone().into(),
    ];
    db.execute_raw(stmt(
        b,
        "INSERT INTO service_terms (tenant, service_id, kind, coverage, needs, programmes, capacity,
           contract_volume, contract_period, offer_email, updated_at, updated_by, agency)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (tenant, service_id) DO UPDATE SET kind = EXCLUDED.kind,
           coverage = EXCLUDED.coverage, needs = EXCLUDED.needs, programmes = EXCLUDED.programmes,
           capacity = EXCLUDED.capacity, contract_volume = EXCLUDED.contract_volume,
           contract_period = EXCLUDED.contract_period, offer_email = EXCLUDED.offer_email,
           updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by,
           agency = EXCLUDED.agency",
        values,
    ))
    .await?;
    Ok(())
}

/// Stores an import's result.
pub async fn insert_import(db: &impl ConnectionTrait, i: &ImportRecord) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    let refusals: Vec<_> = i
        .refused
        .iter()
        .map(|r| json!({"record": r.record, "path": r.path, "reason": r.reason}))
        .collect();
    db.execute_raw(stmt(
        b,
        "INSERT INTO directory_imports (id, tenant, source, trigger_kind, started_at, finished_at,
           outcome, error, created, updated, unchanged, withdrawn, refusals)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        [
            i.id.clone().into(),
            i.tenant.clone().into(),
            i.source.clone().into(),
            i.trigger.clone().into(),
            i.started_at.into(),
            i.finished_at.into(),
            i.outcome.clone().into(),
            i.error.clone().into(),
            i64::from(i.created).into(),
            i64::from(i.updated).into(),
            i64::from(i.unchanged).into(),
            i64::from(i.withdrawn).into(),
            to_json(&refusals).into(),
        ],
    ))
    .await?;
    Ok(())
}

/// `tenant`'s imports, newest first.
pub async fn imports(
    db: &impl ConnectionTrait,
    tenant: &str,
    limit: u32,
) -> Result<Vec<ImportRecord>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            "SELECT id, tenant, source, trigger_kind, started_at, finished_at, outcome, error,
                    created, updated, unchanged, withdrawn, refusals
             FROM directory_imports WHERE tenant = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
            [tenant.into(), i64::from(limit).into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let n = |i| -> Result<u32, DbErr> {
                let v: i64 = r.try_get_by_index(i)?;
                Ok(u32::try_from(v).unwrap_or_default())
            };
            let refusals: String = r.try_get_by_index(12)?;
            let refusals: Vec<serde_json::Value> = from_json(&refusals, "refusals")?;
            Ok(ImportRecord {
                id: r.try_get_by_index(0)?,
                tenant: r.try_get_by_index(1)?,
                source: r.try_get_by_index(2)?,
                trigger: r.try_get_by_index(3)?,
                started_at: r.try_get_by_index(4)?,
                finished_at: r.try_get_by_index(5)?,
                outcome: r.try_get_by_index(6)?,
                error: r.try_get_by_index(7)?,
                created: n(8)?,
                updated: n(9)?,
                unchanged: n(10)?,
                withdrawn: n(11)?,
                refused: refusals
                    .iter()
                    .map(|x| Refusal {
                        record: x["record"].as_str().unwrap_or_default().into(),
                        path: x["path"].as_str().unwrap_or_default().into(),
                        reason: x["reason"].as_str().unwrap_or_default().into(),
                    })
                    .collect(),
            })
        })
        .collect()
}

/// A case allocation is working on.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRow {
    pub tenant: String,
    pub case_id: String,
    pub family_id: String,
    pub referral_id: String,
    pub postcode: String,
    pub needs: Vec<String>,
    pub programmes: Vec<String>,
    pub significant_need: bool,
    pub ready_at: DateTime<Utc>,
    /// `offered`, `waiting`, `allocated` or `closed`.
    pub status: String,
    pub waiting_since: Option<DateTime<Utc>>,
    pub waiting_reason: String,
}

/// Takes a case on; `false` when it was taken on before (nothing written).
pub async fn insert_case(db: &impl ConnectionTrait, c: &CaseRow) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "INSERT INTO allocation_cases (tenant, case_id, family_id, referral_id, postcode, needs,
               programmes, significant_need, ready_at, status, waiting_since, waiting_reason, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, '', $9)
             ON CONFLICT (tenant, case_id) DO NOTHING",
            [
                c.tenant.clone().into(),
                c.case_id.clone().into(),
                c.family_id.clone().into(),
                c.referral_id.clone().into(),
                c.postcode.clone().into(),
                to_json(&c.needs).into(),
                to_json(&c.programmes).into(),
                c.significant_need.into(),
                c.ready_at.into(),
                c.status.clone().into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

const CASE_COLUMNS: &str = "tenant, case_id, family_id, referral_id, postcode, needs, programmes,
    significant_need, ready_at, status, waiting_since, waiting_reason";

fn case_row(r: &QueryResult) -> Result<CaseRow, DbErr> {
    case_row_at(r, 0)
}

/// A case from the columns of [`CASE_COLUMNS`] starting at index `at`.
fn case_row_at(r: &QueryResult, at: usize) -> Result<CaseRow, DbErr> {
    let needs: String = r.try_get_by_index(at + 5)?;
    let programmes: String = r.try_get_by_index(at + 6)?;
    Ok(CaseRow {
        tenant: r.try_get_by_index(at)?,
        case_id: r.try_get_by_index(at + 1)?,
        family_id: r.try_get_by_index(at + 2)?,
        referral_id: r.try_get_by_index(at + 3)?,
        postcode: r.try_get_by_index(at + 4)?,
        needs: from_json(&needs, "needs")?,
        programmes: from_json(&programmes, "programmes")?,
        significant_need: r.try_get_by_index(at + 7)?,
        ready_at: r.try_get_by_index(at + 8)?,
        status: r.try_get_by_index(at + 9)?,
        waiting_since: r.try_get_by_index(at + 10)?,
        waiting_reason: r.try_get_by_index(at + 11)?,
    })
}

/// `columns` (a comma-separated list) each qualified by `table`.
fn qualified(columns: &str, table: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{table}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn case(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
) -> Result<Option<CaseRow>, DbErr> {
    let b = db.get_database_backend();
    db.query_one_raw(stmt(
        b,
        &format!("SELECT {CASE_COLUMNS} FROM allocation_cases WHERE tenant = $1 AND case_id = $2"),
        [tenant.into(), case_id.into()],
    ))
    .await?
    .map(|r| case_row(&r))
    .transpose()
}

/// The council's waiting cases in the list's order: significant need first, then the longest
/// waiting (by when the case became ready), then by id.
pub async fn waiting(db: &impl ConnectionTrait, tenant: &str) -> Result<Vec<CaseRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {CASE_COLUMNS} FROM allocation_cases WHERE tenant = $1 AND status = 'waiting'
                 ORDER BY significant_need DESC, ready_at, case_id"
            ),
            [tenant.into()],
        ))
        .await?;
    rows.iter().map(case_row).collect()
}

/// Sets a case's status; entering `waiting` keeps the first time it started waiting.
pub async fn set_case_status(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    status: &str,
    waiting_reason: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "UPDATE allocation_cases SET status = $3, waiting_reason = $4, updated_at = $5,
           waiting_since = CASE WHEN $3 = 'waiting' THEN COALESCE(waiting_since, $5) ELSE waiting_since END
         WHERE tenant = $1 AND case_id = $2",
        [
            tenant.into(),
            case_id.into(),
            status.into(),
            waiting_reason.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Keeps the children's dates of birth of a referral (once).
pub async fn insert_birth_dates(
    db: &impl ConnectionTrait,
    tenant: &str,
    referral_id: &str,
    dates: &[NaiveDate],
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    let dates: Vec<String> = dates.iter().map(ToString::to_string).collect();
    db.execute_raw(stmt(
        b,
        "INSERT INTO referral_children (tenant, referral_id, birth_dates) VALUES ($1, $2, $3)
         ON CONFLICT (tenant, referral_id) DO NOTHING",
        [tenant.into(), referral_id.into(), to_json(&dates).into()],
    ))
    .await?;
    Ok(())
}

/// The children's dates of birth of a referral, when its `referral_received` was seen.
pub async fn birth_dates(
    db: &impl ConnectionTrait,
    tenant: &str,
    referral_id: &str,
) -> Result<Option<Vec<NaiveDate>>, DbErr> {
    let b = db.get_database_backend();
    let Some(r) = db
        .query_one_raw(stmt(
            b,
            "SELECT birth_dates FROM referral_children WHERE tenant = $1 AND referral_id = $2",
            [tenant.into(), referral_id.into()],
        ))
        .await?
    else {
        return Ok(None);
    };
    let s: String = r.try_get_by_index(0)?;
    let dates: Vec<String> = from_json(&s, "birth_dates")?;
    Ok(Some(
        dates
            .iter()
            .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .collect(),
    ))
}

/// An offer of a case to a service.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferRow {
    pub id: String,
    pub tenant: String,
    pub case_id: String,
    pub service_id: String,
    /// `offered`, `accepted`, `declined`, `withdrawn` or `closed`.
    pub status: String,
    pub period_start: String,
    pub attempt: u32,
    pub rule_version: String,
    pub reasons: Vec<String>,
    pub offered_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
    pub settled_by: String,
    pub decline_reason: String,
    pub decline_detail: String,
    /// When the open offer lapses unanswered.
    pub respond_by: Option<DateTime<Utc>>,
}

pub async fn insert_offer(db: &impl ConnectionTrait, o: &OfferRow) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO allocations (id, tenant, case_id, service_id, status, period_start, attempt,
           rule_version, reasons, offered_at, settled_at, settled_by, decline_reason, decline_detail,
           respond_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, '', '', '', $11)",
        [
            o.id.clone().into(),
            o.tenant.clone().into(),
            o.case_id.clone().into(),
            o.service_id.clone().into(),
            o.status.clone().into(),
            o.period_start.clone().into(),
            i64::from(o.attempt).into(),
            o.rule_version.clone().into(),
            to_json(&o.reasons).into(),
            o.offered_at.into(),
            o.respond_by.into(),
        ],
    ))
    .await?;
    Ok(())
}

const OFFER_COLUMNS: &str = "id, tenant, case_id, service_id, status, period_start, attempt,
    rule_version, reasons, offered_at, settled_at, settled_by, decline_reason, decline_detail,
    respond_by";

fn offer_row(r: &QueryResult) -> Result<OfferRow, DbErr> {
    let attempt: i64 = r.try_get_by_index(6)?;
    let reasons: String = r.try_get_by_index(8)?;
    Ok(OfferRow {
        id: r.try_get_by_index(0)?,
        tenant: r.try_get_by_index(1)?,
        case_id: r.try_get_by_index(2)?,
        service_id: r.try_get_by_index(3)?,
        status: r.try_get_by_index(4)?,
        period_start: r.try_get_by_index(5)?,
        attempt: u32::try_from(attempt).unwrap_or_default(),
        rule_version: r.try_get_by_index(7)?,
        reasons: from_json(&reasons, "reasons")?,
        offered_at: r.try_get_by_index(9)?,
        settled_at: r.try_get_by_index(10)?,
        settled_by: r.try_get_by_index(11)?,
        decline_reason: r.try_get_by_index(12)?,
        decline_detail: r.try_get_by_index(13)?,
        respond_by: r.try_get_by_index(14)?,
    })
}

pub async fn offer(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<OfferRow>, DbErr> {
    let b = db.get_database_backend();
    db.query_one_raw(stmt(
        b,
        &format!("SELECT {OFFER_COLUMNS} FROM allocations WHERE tenant = $1 AND id = $2"),
        [tenant.into(), id.into()],
    ))
    .await?
    .map(|r| offer_row(&r))
    .transpose()
}

/// A case's offers, oldest first.
pub async fn offers_of_case(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
) -> Result<Vec<OfferRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {OFFER_COLUMNS} FROM allocations WHERE tenant = $1 AND case_id = $2
                 ORDER BY attempt"
            ),
            [tenant.into(), case_id.into()],
        ))
        .await?;
    rows.iter().map(offer_row).collect()
}

/// The council's offers, newest first, optionally of one status and one case (at most 500).
pub async fn offers(
    db: &impl ConnectionTrait,
    tenant: &str,
    status: Option<&str>,
    case_id: Option<&str>,
) -> Result<Vec<OfferRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {OFFER_COLUMNS} FROM allocations WHERE tenant = $1
                   AND ($2 = '' OR status = $2) AND ($3 = '' OR case_id = $3)
                 ORDER BY offered_at DESC, id DESC LIMIT 500"
            ),
            [
                tenant.into(),
                status.unwrap_or_default().into(),
                case_id.unwrap_or_default().into(),
            ],
        ))
        .await?;
    rows.iter().map(offer_row).collect()
}

/// An offer with what its views show beside it, read in one query.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferView {
    pub offer: OfferRow,
    /// The case offered (allocation's record of it).
    pub case: Option<CaseRow>,
    /// The children's dates of birth (or expected dates), when the referral was seen.
    pub birth_dates: Vec<NaiveDate>,
    /// The family's stated preference for a lead practitioner.
    pub preference: Option<String>,
    /// The practitioner who accepted to lead the case under this offer.
    pub lead_practitioner: Option<String>,
}

/// [`offers`] with each offer's case, children's dates of birth, family preference and lead, in
/// one query (a list of 500 offers is one round trip, not 2,000).
pub async fn offer_views(
    db: &impl ConnectionTrait,
    tenant: &str,
    status: Option<&str>,
    case_id: Option<&str>,
) -> Result<Vec<OfferView>, DbErr> {
    let b = db.get_database_backend();
    let offer_cols = OFFER_COLUMNS.split(',').count();
    let case_cols = CASE_COLUMNS.split(',').count();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {}, {}, rc.birth_dates, fp.preference,
                   (SELECT lr.practitioner FROM lead_requests lr
                     WHERE lr.tenant = a.tenant AND lr.case_id = a.case_id AND lr.offer_id = a.id
                       AND lr.status = 'accepted'
                     ORDER BY lr.asked_at DESC LIMIT 1)
                 FROM allocations a
                 LEFT JOIN allocation_cases c ON c.tenant = a.tenant AND c.case_id = a.case_id
                 LEFT JOIN referral_children rc
                   ON rc.tenant = c.tenant AND rc.referral_id = c.referral_id
                 LEFT JOIN family_preferences fp
                   ON fp.tenant = a.tenant AND fp.case_id = a.case_id
                 WHERE a.tenant = $1 AND ($2 = '' OR a.status = $2) AND ($3 = '' OR a.case_id = $3)
                 ORDER BY a.offered_at DESC, a.id DESC LIMIT 500",
                qualified(OFFER_COLUMNS, "a"),
                qualified(CASE_COLUMNS, "c"),
            ),
            [
                tenant.into(),
                status.unwrap_or_default().into(),
                case_id.unwrap_or_default().into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let case_present: Option<String> = r.try_get_by_index(offer_cols + 1)?;
            let dates: Option<String> = r.try_get_by_index(offer_cols + case_cols)?;
            let birth_dates = match dates {
                Some(s) => from_json::<Vec<String>>(&s, "birth_dates")?
                    .iter()
                    .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                    .collect(),
                None => Vec::new(),
            };
            Ok(OfferView {
                offer: offer_row(r)?,
                case: case_present
                    .map(|_| case_row_at(r, offer_cols))
                    .transpose()?,
                birth_dates,
                preference: r.try_get_by_index(offer_cols + case_cols + 1)?,
                lead_practitioner: r.try_get_by_index(offer_cols + case_cols + 2)?,
            })
        })
        .collect()
}

/// Settles an offer that is still `from`: `false` when it was not (nothing written).
#[allow(clippy::too_many_arguments)]
pub async fn settle_offer(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    from: &str,
    to: &str,
    by: &str,
    decline_reason: &str,
    decline_detail: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "UPDATE allocations SET status = $4, settled_by = $5, decline_reason = $6,
               decline_detail = $7, settled_at = $8
             WHERE tenant = $1 AND id = $2 AND status = $3",
            [
                tenant.into(),
                id.into(),
                from.into(),
                to.into(),
                by.into(),
                decline_reason.into(),
                decline_detail.into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The council's open offers whose answer is overdue at `now`, oldest first (at most `limit`).
pub async fn lapsed_offers(
    db: &impl ConnectionTrait,
    tenant: &str,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<OfferRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {OFFER_COLUMNS} FROM allocations
                 WHERE status = 'offered' AND respond_by <= $2 AND tenant = $1
                 ORDER BY respond_by, id LIMIT $3"
            ),
            [
                tenant.into(),
                now.into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    rows.iter().map(offer_row).collect()
}

/// The council's waiting cases not yet reported as over the limit, with when each started waiting.
pub async fn waiting_unbreached(
    db: &impl ConnectionTrait,
    tenant: &str,
) -> Result<Vec<CaseRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {CASE_COLUMNS} FROM allocation_cases
                 WHERE tenant = $1 AND status = 'waiting' AND waiting_breached_at IS NULL
                 ORDER BY waiting_since, case_id"
            ),
            [tenant.into()],
        ))
        .await?;
    rows.iter().map(case_row).collect()
}

/// Marks a waiting case as reported over the limit: `false` when it was already (nothing written).
pub async fn mark_waiting_breached(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "UPDATE allocation_cases SET waiting_breached_at = $3
             WHERE tenant = $1 AND case_id = $2 AND waiting_breached_at IS NULL",
            [tenant.into(), case_id.into(), now.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// What the family said about who should help them.
#[derive(Debug, Clone, PartialEq)]
pub struct Preference {
    pub preference: String,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

/// Records (or replaces) the family's preference for `case_id`.
pub async fn set_preference(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    p: &Preference,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO family_preferences (tenant, case_id, preference, recorded_by, recorded_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant, case_id) DO UPDATE SET preference = EXCLUDED.preference,
           recorded_by = EXCLUDED.recorded_by, recorded_at = EXCLUDED.recorded_at",
        [
            tenant.into(),
            case_id.into(),
            p.preference.clone().into(),
            p.recorded_by.clone().into(),
            p.recorded_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn preference(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
) -> Result<Option<Preference>, DbErr> {
    let b = db.get_database_backend();
    db.query_one_raw(stmt(
        b,
        "SELECT preference, recorded_by, recorded_at FROM family_preferences
         WHERE tenant = $1 AND case_id = $2",
        [tenant.into(), case_id.into()],
    ))
    .await?
    .map(|r| {
        Ok(Preference {
            preference: r.try_get_by_index(0)?,
            recorded_by: r.try_get_by_index(1)?,
            recorded_at: r.try_get_by_index(2)?,
        })
    })
    .transpose()
}

/// A request to a practitioner to lead a case.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadRow {
    pub id: String,
    pub tenant: String,
    pub case_id: String,
    pub offer_id: String,
    pub service_id: String,
    pub organization_id: String,
    pub practitioner: String,
    pub asked_by: String,
    pub asked_at: DateTime<Utc>,
    pub note: String,
    pub family_preference: String,
    /// `asked`, `accepted` or `declined`.
    pub status: String,
    pub answered_at: Option<DateTime<Utc>>,
    pub decline_reason: String,
    pub decline_detail: String,
}

pub async fn insert_lead_request(db: &impl ConnectionTrait, l: &LeadRow) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO lead_requests (id, tenant, case_id, offer_id, service_id, organization_id,
           practitioner, asked_by, asked_at, note, family_preference, status, answered_at,
           decline_reason, decline_detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL, '', '')",
        [
            l.id.clone().into(),
            l.tenant.clone().into(),
            l.case_id.clone().into(),
            l.offer_id.clone().into(),
            l.service_id.clone().into(),
            l.organization_id.clone().into(),
            l.practitioner.clone().into(),
            l.asked_by.clone().into(),
            l.asked_at.into(),
            l.note.clone().into(),
            l.family_preference.clone().into(),
            l.status.clone().into(),
        ],
    ))
    .await?;
    Ok(())
}

const LEAD_COLUMNS: &str = "id, tenant, case_id, offer_id, service_id, organization_id,
    practitioner, asked_by, asked_at, note, family_preference, status, answered_at,
    decline_reason, decline_detail";

fn lead_row(r: &QueryResult) -> Result<LeadRow, DbErr> {
    Ok(LeadRow {
        id: r.try_get_by_index(0)?,
        tenant: r.try_get_by_index(1)?,
        case_id: r.try_get_by_index(2)?,
        offer_id: r.try_get_by_index(3)?,
        service_id: r.try_get_by_index(4)?,
        organization_id: r.try_get_by_index(5)?,
        practitioner: r.try_get_by_index(6)?,
        asked_by: r.try_get_by_index(7)?,
        asked_at: r.try_get_by_index(8)?,
        note: r.try_get_by_index(9)?,
        family_preference: r.try_get_by_index(10)?,
        status: r.try_get_by_index(11)?,
        answered_at: r.try_get_by_index(12)?,
        decline_reason: r.try_get_by_index(13)?,
        decline_detail: r.try_get_by_index(14)?,
    })
}

pub async fn lead_request(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<LeadRow>, DbErr> {
    let b = db.get_database_backend();
    db.query_one_raw(stmt(
        b,
        &format!("SELECT {LEAD_COLUMNS} FROM lead_requests WHERE tenant = $1 AND id = $2"),
        [tenant.into(), id.into()],
    ))
    .await?
    .map(|r| lead_row(&r))
    .transpose()
}

/// The council's lead requests, newest first, optionally of one case, status, practitioner and
/// organisation (empty: any; at most 500).
pub async fn lead_requests(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    status: &str,
    practitioner: &str,
    organization_id: &str,
) -> Result<Vec<LeadRow>, DbErr> {
    let b = db.get_database_backend();
    let rows = db
        .query_all_raw(stmt(
            b,
            &format!(
                "SELECT {LEAD_COLUMNS} FROM lead_requests WHERE tenant = $1
                   AND ($2 = '' OR case_id = $2) AND ($3 = '' OR status = $3)
                   AND ($4 = '' OR practitioner = $4) AND ($5 = '' OR organization_id = $5)
                 ORDER BY asked_at DESC, id DESC LIMIT 500"
            ),
            [
                tenant.into(),
                case_id.into(),
                status.into(),
                practitioner.into(),
                organization_id.into(),
            ],
        ))
        .await?;
    rows.iter().map(lead_row).collect()
}

/// Answers an open request: `false` when it was not open (nothing written).
pub async fn answer_lead_request(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    status: &str,
    decline_reason: &str,
    decline_detail: &str,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let r = db
        .execute_raw(stmt(
            b,
            "UPDATE lead_requests SET status = $3, decline_reason = $4, decline_detail = $5,
               answered_at = $6
             WHERE tenant = $1 AND id = $2 AND status = 'asked'",
            [
                tenant.into(),
                id.into(),
                status.into(),
                decline_reason.into(),
                decline_detail.into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}
