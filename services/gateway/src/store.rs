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

/// Where a key stands when a request with it arrives ([`reserve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// The key is this request's now: run it, then [`complete`] (or [`release`] on failure).
    Fresh,
    /// A request with the key is under way (its request's digest).
    InProgress { request_sha256: String },
    /// A request with the key was answered.
    Answered(Kept),
}

/// The status a reservation is kept with until its answer replaces it (no HTTP status is 0).
const UNDER_WAY: i32 = 0;

/// Takes the key for a request with digest `request_sha256` before it runs, so two requests with
/// one key never both run: an entry made before `since` is expired (the key is new again), and a
/// reservation made before `abandoned` was left by a request that never finished (a crash) and
/// is taken over.
#[allow(clippy::too_many_arguments)]
pub async fn reserve(
    db: &impl ConnectionTrait,
    tenant: &str,
    client: &str,
    key: &str,
    request_sha256: &str,
    now: chrono::DateTime<chrono::Utc>,
    since: chrono::DateTime<chrono::Utc>,
    abandoned: chrono::DateTime<chrono::Utc>,
) -> Result<Reserved, DbErr> {
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "DELETE FROM gateway_idempotency
         WHERE tenant = $1 AND client = $2 AND idempotency_key = $3
           AND (created_at <= $4 OR (status = $5 AND created_at <= $6))",
        [
            tenant.into(),
            client.into(),
            key.into(),
            since.into(),
            UNDER_WAY.into(),
            abandoned.into(),
        ],
    ))
    .await?;
    let res = db
        .execute_raw(stmt(
            b,
            "INSERT INTO gateway_idempotency
               (tenant, client, idempotency_key, request_sha256, status, response, location, created_at)
             VALUES ($1, $2, $3, $4, $5, '', NULL, $6)
             ON CONFLICT (tenant, client, idempotency_key) DO NOTHING",
            [
                tenant.into(),
                client.into(),
                key.into(),
                request_sha256.into(),
                UNDER_WAY.into(),
                now.into(),
            ],
        ))
        .await?;
    if res.rows_affected() == 1 {
        return Ok(Reserved::Fresh);
    }
    Ok(match find(db, tenant, client, key, since).await? {
        Some(k) if k.status == 0 => Reserved::InProgress {
            request_sha256: k.request_sha256,
        },
        Some(k) => Reserved::Answered(k),
        // Gone between the two statements (released): under way as far as this request knows.
        None => Reserved::InProgress {
            request_sha256: request_sha256.into(),
        },
    })
}

/// The answer to the request that reserved the key, kept in place of its reservation.
pub async fn complete(
    db: &impl ConnectionTrait,
    tenant: &str,
    client: &str,
    key: &str,
    kept: &Kept,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "UPDATE gateway_idempotency SET status = $4, response = $5, location = $6
         WHERE tenant = $1 AND client = $2 AND idempotency_key = $3 AND status = $7",
        [
            tenant.into(),
            client.into(),
            key.into(),
            i32::from(kept.status).into(),
            kept.response.clone().into(),
            kept.location.clone().into(),
            UNDER_WAY.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Gives the key back after its request failed (nothing was done): a retry with it runs.
pub async fn release(
    db: &impl ConnectionTrait,
    tenant: &str,
    client: &str,
    key: &str,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "DELETE FROM gateway_idempotency
         WHERE tenant = $1 AND client = $2 AND idempotency_key = $3 AND status = $4",
        [tenant.into(), client.into(), key.into(), UNDER_WAY.into()],
    ))
    .await?;
    Ok(())
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
