//! The webhook deliveries: one row per status update for one system, its body as it will be sent
//! (ids and a status, never the family's details), where it stands (`pending`, `delivered`,
//! `dead`; an operator may then replay it, back to `pending`, or mark it `discarded`), its
//! attempts, when the next is due and the last failure's reason.
use eh_store::stmt;
use sea_orm::{ConnectionTrait, DbErr};

pub const MIGRATIONS: &[eh_store::Migration] = &[
    eh_store::Migration {
        owner: "gateway_webhooks",
        version: 1,
        name: "webhook deliveries",
        sql: "CREATE TABLE gateway_webhook_deliveries (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            system TEXT NOT NULL,
            event_type TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            next_attempt_at {ts} NOT NULL,
            last_error TEXT NULL,
            created_at {ts} NOT NULL,
            settled_at {ts} NULL,
            PRIMARY KEY (tenant, id)
          );
          CREATE INDEX gateway_webhook_pending ON gateway_webhook_deliveries (tenant, system, status, created_at)",
    },
    // The family's data rights find a family's deliveries by their case and referral (until
    // now only inside the payload).
    eh_store::Migration {
        owner: "gateway_webhooks",
        version: 2,
        name: "webhook deliveries' case and referral",
        sql: "ALTER TABLE gateway_webhook_deliveries ADD COLUMN case_id TEXT NULL;
          ALTER TABLE gateway_webhook_deliveries ADD COLUMN referral_id TEXT NULL;
          UPDATE gateway_webhook_deliveries
            SET case_id = payload{as_json} -> 'data' ->> 'case_id',
                referral_id = payload{as_json} -> 'data' ->> 'referral_id';
          CREATE INDEX gateway_webhook_case ON gateway_webhook_deliveries (tenant, case_id)",
    },
];

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const DEAD: &str = "dead";
/// A dead delivery an operator decided not to send again (`earlyhelp webhook discard`).
pub const DISCARDED: &str = "discarded";
pub const STATUSES: &[&str] = &[PENDING, DELIVERED, DEAD, DISCARDED];

/// A delivery as the sender reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub tenant: String,
    pub id: String,
    pub system: String,
    pub payload: String,
    pub attempts: i32,
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
}

/// A delivery to store: about which case (and the referral that opened it), for which system.
#[derive(Debug, Clone, Copy)]
pub struct NewDelivery<'a> {
    pub id: &'a str,
    pub system: &'a str,
    pub case_id: &'a str,
    pub referral_id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a str,
}

/// Stores a delivery; `false` when one with its id is held already (nothing changed).
pub async fn insert(
    db: &impl ConnectionTrait,
    tenant: &str,
    d: &NewDelivery<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    let res = db
        .execute_raw(stmt(
            db.get_database_backend(),
            "INSERT INTO gateway_webhook_deliveries
               (tenant, id, system, event_type, payload, status, attempts, next_attempt_at,
                created_at, case_id, referral_id)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $7, $8)
             ON CONFLICT (tenant, id) DO NOTHING",
            [
                tenant.into(),
                d.id.into(),
                d.system.into(),
                d.event_type.into(),
                d.payload.into(),
                now.into(),
                d.case_id.into(),
                d.referral_id.into(),
            ],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

/// The oldest pending delivery of `system` (each system's go out in the order they happened).
pub async fn oldest_pending(
    db: &impl ConnectionTrait,
    tenant: &str,
    system: &str,
) -> Result<Option<Delivery>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT tenant, id, system, payload, attempts, next_attempt_at
             FROM gateway_webhook_deliveries
             WHERE tenant = $1 AND system = $2 AND status = 'pending'
             ORDER BY created_at, id LIMIT 1",
            [tenant.into(), system.into()],
        ))
        .await?;
    row.map(|r| {
        Ok(Delivery {
            tenant: r.try_get_by_index(0)?,
            id: r.try_get_by_index(1)?,
            system: r.try_get_by_index(2)?,
            payload: r.try_get_by_index(3)?,
            attempts: r.try_get_by_index(4)?,
            next_attempt_at: r.try_get_by_index(5)?,
        })
    })
    .transpose()
}

/// Claims `d` for one attempt until `lease_until` (another sender, or this one restarted, may try
/// it again only then); `false` when another sender claimed it first.
pub async fn claim(
    db: &impl ConnectionTrait,
    d: &Delivery,
    lease_until: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    let res = db
        .execute_raw(stmt(
            db.get_database_backend(),
            "UPDATE gateway_webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $1
             WHERE tenant = $2 AND id = $3 AND attempts = $4 AND status = 'pending'",
            [
                lease_until.into(),
                d.tenant.clone().into(),
                d.id.clone().into(),
                d.attempts.into(),
            ],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Records how attempt number `attempt` of delivery `id` ended: delivered, to be retried at
/// `retry_at`, or (with no retry) dead with `error`.
pub async fn settle(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    attempt: i32,
    outcome: Result<(), (&str, Option<chrono::DateTime<chrono::Utc>>)>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    let (status, next, error, settled): (&str, _, Option<String>, Option<_>) = match outcome {
        Ok(()) => (DELIVERED, now, None, Some(now)),
        Err((e, Some(at))) => (PENDING, at, Some(e.to_string()), None),
        Err((e, None)) => (DEAD, now, Some(e.to_string()), Some(now)),
    };
    db.execute_raw(stmt(
        db.get_database_backend(),
        "UPDATE gateway_webhook_deliveries
         SET status = $1, next_attempt_at = $2, last_error = $3, settled_at = $4
         WHERE tenant = $5 AND id = $6 AND attempts = $7 AND status = 'pending'",
        [
            status.into(),
            next.into(),
            error.into(),
            settled.into(),
            tenant.into(),
            id.into(),
            attempt.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Deliveries of `tenant` by status, e.g. to count the dead ones.
pub async fn count(db: &impl ConnectionTrait, tenant: &str, status: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM gateway_webhook_deliveries WHERE tenant = $1 AND status = $2",
            [tenant.into(), status.into()],
        ))
        .await?;
    row.map(|r| r.try_get_by_index::<i64>(0))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// A delivery as an operator sees it: its ids and where it stands, never its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub system: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    /// Why its last attempt failed, in the sender's words (never the URL or the body).
    pub last_error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub settled_at: Option<chrono::DateTime<chrono::Utc>>,
}

const LISTED: &str =
    "SELECT id, system, event_type, status, attempts, last_error, created_at, settled_at
     FROM gateway_webhook_deliveries";

fn listed(r: &sea_orm::QueryResult) -> Result<Listed, DbErr> {
    Ok(Listed {
        id: r.try_get_by_index(0)?,
        system: r.try_get_by_index(1)?,
        event_type: r.try_get_by_index(2)?,
        status: r.try_get_by_index(3)?,
        attempts: r.try_get_by_index(4)?,
        last_error: r.try_get_by_index(5)?,
        created_at: r.try_get_by_index(6)?,
        settled_at: r.try_get_by_index(7)?,
    })
}

/// The deliveries of `tenant` (of `status` only, when given), oldest first, at most `limit`.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &str,
    status: Option<&str>,
    limit: u32,
) -> Result<Vec<Listed>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            &format!(
                "{LISTED} WHERE tenant = $1 AND ($2 = '' OR status = $2)
                 ORDER BY created_at, id LIMIT $3"
            ),
            [
                tenant.into(),
                status.unwrap_or_default().into(),
                i64::from(limit).into(),
            ],
        ))
        .await?;
    rows.iter().map(listed).collect()
}

/// Delivery `id` of `tenant`, if it holds one.
pub async fn find(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<Listed>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            &format!("{LISTED} WHERE tenant = $1 AND id = $2"),
            [tenant.into(), id.into()],
        ))
        .await?;
    row.as_ref().map(listed).transpose()
}

/// Dead delivery `id` back to `pending`, its attempts from none, due at `now`: the sender posts
/// it again (same `webhook-id`). `false` when it is not dead (nothing changed).
pub async fn replay(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    from_dead(
        db,
        tenant,
        id,
        "status = 'pending', attempts = 0, next_attempt_at = $1, last_error = NULL, settled_at = NULL",
        now,
    )
    .await
}

/// Dead delivery `id` marked `discarded`: kept, never sent. `false` when it is not dead
/// (nothing changed).
pub async fn discard(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    from_dead(db, tenant, id, "status = 'discarded', settled_at = $1", now).await
}

/// Sets `set` (`$1` is `now`) on delivery `id` if it is dead; whether it was.
async fn from_dead(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    set: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    let res = db
        .execute_raw(stmt(
            db.get_database_backend(),
            &format!(
                "UPDATE gateway_webhook_deliveries SET {set}
                 WHERE tenant = $2 AND id = $3 AND status = 'dead'"
            ),
            [now.into(), tenant.into(), id.into()],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery stored before its case and referral had columns of their own is found by them
    /// once migrated (the family's data rights select and delete by them).
    #[tokio::test]
    async fn deliveries_kept_before_are_given_their_case_and_referral() {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        eh_store::migrate(&db, "gateway", &MIGRATIONS[..1])
            .await
            .unwrap();
        let body = crate::webhook::payload(
            "case-1",
            "referral-1",
            "SRC-1",
            crate::api::cases::PublicStatus::Received,
            "2026-01-01T00:00:00Z",
        );
        db.execute_raw(stmt(
            db.get_database_backend(),
            "INSERT INTO gateway_webhook_deliveries
               (tenant, id, system, event_type, payload, status, attempts, next_attempt_at, created_at)
             VALUES ('worcs', 'msg_1', 'hub', 'case.status_changed', $1, 'pending', 0, $2, $2)",
            [body.to_string().into(), chrono::Utc::now().into()],
        ))
        .await
        .unwrap();
        eh_store::migrate(&db, "gateway", MIGRATIONS).await.unwrap();
        let row = db
            .query_one_raw(stmt(
                db.get_database_backend(),
                "SELECT case_id, referral_id FROM gateway_webhook_deliveries WHERE id = 'msg_1'",
                [],
            ))
            .await
            .unwrap()
            .expect("the delivery");
        assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "case-1");
        assert_eq!(row.try_get_by_index::<String>(1).unwrap(), "referral-1");
    }
}
