//! Requests for a safeguarding override, waiting for a second person's approval. The consent
//! service grants an override in one call by the authorising team manager, naming the
//! practitioner who asked (and refusing when they are the same person); the console keeps the
//! request between the two people here, in the gateway's own table, each row its council's
//! (row-level security by `tenant`). The override itself is only ever the consent service's.
use eh_store::stmt;
use sea_orm::{ConnectionTrait, DbErr};

pub const MIGRATIONS: &[eh_store::Migration] = &[eh_store::Migration {
    owner: "console",
    version: 1,
    name: "safeguarding override requests",
    sql: "CREATE TABLE gateway_override_requests (
            request_id TEXT NOT NULL PRIMARY KEY,
            tenant TEXT NOT NULL,
            case_id TEXT NOT NULL,
            family_id TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            requested_at {ts} NOT NULL,
            legal_basis TEXT NOT NULL,
            reasoning TEXT NOT NULL,
            agencies TEXT NOT NULL,
            categories TEXT NOT NULL,
            purposes TEXT NOT NULL,
            days {bigint} NOT NULL,
            status TEXT NOT NULL,
            decided_by TEXT NULL,
            decided_at {ts} NULL,
            override_id TEXT NULL
          );
          CREATE INDEX gateway_override_requests_family
            ON gateway_override_requests (tenant, family_id, status)",
}];

/// A request, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub request_id: String,
    pub case_id: String,
    pub family_id: String,
    /// The requester's actor (`person:<subject>`), as the consent service names them.
    pub requested_by: String,
    pub requested_at: chrono::DateTime<chrono::Utc>,
    pub legal_basis: String,
    pub reasoning: String,
    pub agencies: Vec<String>,
    pub categories: Vec<String>,
    pub purposes: Vec<String>,
    /// How many days the override should last once granted.
    pub days: i64,
    /// `pending`, `approving` (a grant under way), `granted`.
    pub status: String,
    pub decided_by: Option<String>,
    pub override_id: Option<String>,
}

const COLUMNS: &str = "request_id, case_id, family_id, requested_by, requested_at, legal_basis, \
     reasoning, agencies, categories, purposes, days, status, decided_by, override_id";

fn from_row(r: &sea_orm::QueryResult) -> Result<Request, DbErr> {
    let list = |i: usize| -> Result<Vec<String>, DbErr> {
        Ok(r.try_get_by_index::<String>(i)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    };
    Ok(Request {
        request_id: r.try_get_by_index(0)?,
        case_id: r.try_get_by_index(1)?,
        family_id: r.try_get_by_index(2)?,
        requested_by: r.try_get_by_index(3)?,
        requested_at: r.try_get_by_index(4)?,
        legal_basis: r.try_get_by_index(5)?,
        reasoning: r.try_get_by_index(6)?,
        agencies: list(7)?,
        categories: list(8)?,
        purposes: list(9)?,
        days: r.try_get_by_index::<i64>(10)?,
        status: r.try_get_by_index(11)?,
        decided_by: r.try_get_by_index(12)?,
        override_id: r.try_get_by_index(13)?,
    })
}

/// Runs `f` in one transaction scoped to `tenant` (only its rows are seen or written).
async fn scoped<T>(
    db: &sea_orm::DatabaseConnection,
    tenant: &str,
    f: impl AsyncFnOnce(&sea_orm::DatabaseTransaction) -> Result<T, DbErr>,
) -> Result<T, DbErr> {
    let txn = eh_store::begin_scoped(db, tenant).await?;
    let out = f(&txn).await?;
    eh_store::commit(txn).await?;
    Ok(out)
}

/// Keeps a new pending request of `tenant`.
pub async fn create(
    db: &sea_orm::DatabaseConnection,
    tenant: &str,
    r: &Request,
) -> Result<(), DbErr> {
    scoped(db, tenant, async |t| {
        t.execute_raw(stmt(
            t.get_database_backend(),
            "INSERT INTO gateway_override_requests
               (request_id, tenant, case_id, family_id, requested_by, requested_at, legal_basis,
                reasoning, agencies, categories, purposes, days, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending')",
            [
                r.request_id.clone().into(),
                tenant.into(),
                r.case_id.clone().into(),
                r.family_id.clone().into(),
                r.requested_by.clone().into(),
                r.requested_at.into(),
                r.legal_basis.clone().into(),
                r.reasoning.clone().into(),
                r.agencies.join(",").into(),
                r.categories.join(",").into(),
                r.purposes.join(",").into(),
                r.days.into(),
            ],
        ))
        .await?;
        Ok(())
    })
    .await
}

/// The requests of `tenant` selected by `rest` (a condition after the council's, then the
/// order; its values from `$2`).
async fn select(
    db: &sea_orm::DatabaseConnection,
    tenant: &str,
    rest: &str,
    values: Vec<sea_orm::Value>,
) -> Result<Vec<Request>, DbErr> {
    let mut all: Vec<sea_orm::Value> = vec![tenant.into()];
    all.extend(values);
    scoped(db, tenant, async |t| {
        let rows = t
            .query_all_raw(stmt(
                t.get_database_backend(),
                &format!(
                    "SELECT {COLUMNS} FROM gateway_override_requests WHERE tenant = $1 {rest}"
                ),
                all,
            ))
            .await?;
        rows.iter().map(from_row).collect()
    })
    .await
}

/// The requests of `tenant` for `family_id` not yet granted, oldest first.
pub async fn open_for_family(
    db: &sea_orm::DatabaseConnection,
    tenant: &str,
    family_id: &str,
) -> Result<Vec<Request>, DbErr> {
    select(
        db,
        tenant,
        "AND family_id = $2 AND status <> 'granted' ORDER BY requested_at, request_id",
        vec![family_id.into()],
    )
    .await
}

/// Every request of `tenant` waiting for approval, oldest first.
pub async fn pending(
    db: &sea_orm::DatabaseConnection,
    tenant: &str,
) -> Result<Vec<Request>, DbErr> {
    select(
        db,
        tenant,
        "AND status = 'pending' ORDER BY requested_at, request_id LIMIT 500",
        vec![],
    )
    .await
}

/// The request `request_id` of `tenant`.
pub async fn find(
    db: &sea_orm::DatabaseConnection,
    tenant: &str,
    request_id: &str,
) -> Result<Option<Request>, DbErr> {
    Ok(
        select(db, tenant, "AND request_id = $2", vec![request_id.into()])
            .await?
            .pop(),
    )
}

/// Moves the request from `from` to `to` (with who decided and the override granted); whether
/// it was in `from` (so of two approvals at once, one goes ahead).
pub async fn advance(
    db: &sea_orm::DatabaseConnection,
    tenant: &str,
    request_id: &str,
    from: &str,
    to: &str,
    decided: Option<(&str, chrono::DateTime<chrono::Utc>)>,
    override_id: Option<&str>,
) -> Result<bool, DbErr> {
    scoped(db, tenant, async |t| {
        let res = t
            .execute_raw(stmt(
                t.get_database_backend(),
                "UPDATE gateway_override_requests
                 SET status = $4, decided_by = $5, decided_at = $6, override_id = $7
                 WHERE tenant = $1 AND request_id = $2 AND status = $3",
                [
                    tenant.into(),
                    request_id.into(),
                    from.into(),
                    to.into(),
                    decided.map(|d| d.0.to_string()).into(),
                    decided.map(|d| d.1).into(),
                    override_id.map(str::to_string).into(),
                ],
            ))
            .await?;
        Ok(res.rows_affected() == 1)
    })
    .await
}
