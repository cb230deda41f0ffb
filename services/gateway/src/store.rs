//! The gateway's own table: each `Idempotency-Key` an API client used, with a digest of the
//! request it came with and the answer it got, so the same key and body get the same answer and
//! the same key with another body is refused. Nothing of the body itself is kept.
use eh_store::stmt;
use sea_orm::{ConnectionTrait, DbErr};

pub const MIGRATIONS: &[eh_store::Migration] = &[eh_store::Migration {
    owner: "gateway",
    version: 1,
    name: "idempotency keys",
    sql: "CREATE TABLE gateway_idempotency (
            tenant TEXT NOT NULL,
            client TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            request_sha256 TEXT NOT NULL,
            status INTEGER NOT NULL,
            response TEXT NOT NULL,
            location TEXT NULL,
            created_at {ts} NOT NULL,
            PRIMARY KEY (tenant, client, idempotency_key)
          );
          CREATE INDEX gateway_idempotency_created ON gateway_idempotency (created_at)",
}];

/// An answer kept for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub request_sha256: String,
    pub status: u16,
    pub response: String,
    pub location: Option<String>,
}

impl Kept {
    /// A JSON answer to keep; its request's digest is set where the key is kept
    /// ([`crate::api::Api::once`]).
    pub fn answer<T: serde::Serialize>(
        status: axum::http::StatusCode,
        body: &T,
        location: Option<String>,
    ) -> Result<Self, crate::problem::Problem> {
        Ok(Self {
            request_sha256: String::new(),
            status: status.as_u16(),
            response: serde_json::to_string(body)
                .map_err(|_| crate::problem::Problem::internal())?,
            location,
        })
    }
}

/// The answer kept for (`tenant`, `client`, `key`), if it was made after `since`.
pub async fn find(
    db: &impl ConnectionTrait,
    tenant: &str,
    client: &str,
    key: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Kept>, DbErr> {
    let b = db.get_database_backend();
    let row = db
        .query_one_raw(stmt(
            b,
            "SELECT request_sha256, status, response, location FROM gateway_idempotency
             WHERE tenant = $1 AND client = $2 AND idempotency_key = $3 AND created_at > $4",
            [tenant.into(), client.into(), key.into(), since.into()],
        ))
        .await?;
    row.map(|r| {
        Ok(Kept {
            request_sha256: r.try_get_by_index(0)?,
            status: u16::try_from(r.try_get_by_index::<i32>(1)?)
                .map_err(|e| DbErr::Custom(e.to_string()))?,
            response: r.try_get_by_index(2)?,
            location: r.try_get_by_index(3)?,
        })
    })
    .transpose()
}

/// Keeps `kept` for the key, replacing an entry older than `since` (an expired key is new).
/// `false` when another request kept an answer for the key first (read it with [`find`]).
pub async fn keep(
    db: &impl ConnectionTrait,
    tenant: &str,
    client: &str,
    key: &str,
    kept: &Kept,
    now: chrono::DateTime<chrono::Utc>,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "DELETE FROM gateway_idempotency
         WHERE tenant = $1 AND client = $2 AND idempotency_key = $3 AND created_at <= $4",
        [tenant.into(), client.into(), key.into(), since.into()],
    ))
    .await?;
    let res = db
        .execute_raw(stmt(
            b,
            "INSERT INTO gateway_idempotency
               (tenant, client, idempotency_key, request_sha256, status, response, location, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant, client, idempotency_key) DO NOTHING",
            [
                tenant.into(),
                client.into(),
                key.into(),
                kept.request_sha256.clone().into(),
                i32::from(kept.status).into(),
                kept.response.clone().into(),
                kept.location.clone().into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Forgets every key made before `before`; how many.
pub async fn purge(
    db: &impl ConnectionTrait,
    before: chrono::DateTime<chrono::Utc>,
) -> Result<u64, DbErr> {
    let b = db.get_database_backend();
    let res = db
        .execute_raw(stmt(
            b,
            "DELETE FROM gateway_idempotency WHERE created_at <= $1",
            [before.into()],
        ))
        .await?;
    Ok(res.rows_affected())
}
