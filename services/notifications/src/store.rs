//! Notifications' own tables: messages with their delivery status, and the suppression list of
//! addresses nothing may be sent to.
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DbErr};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 10,
    name: "messages and suppressions",
    sql: "CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            template TEXT NOT NULL,
            channel TEXT NOT NULL,
            recipient TEXT NOT NULL,
            related_id TEXT NOT NULL,
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at {ts} NOT NULL,
            last_error TEXT NULL,
            created_at {ts} NOT NULL,
            sent_at {ts} NULL,
            UNIQUE (tenant, template, related_id, recipient)
          );
          CREATE INDEX messages_due ON messages (status, next_attempt_at);
          CREATE INDEX messages_related ON messages (tenant, related_id);
          CREATE TABLE suppressions (
            tenant TEXT NOT NULL,
            address TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_at {ts} NOT NULL,
            PRIMARY KEY (tenant, address)
          )",
}];

/// A message to record.
pub struct NewMessage<'a> {
    pub tenant: &'a str,
    pub template: &'a str,
    pub recipient: &'a str,
    pub related_id: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Records a queued email; false when the same (template, subject of it, recipient) is held.
pub async fn queue(
    db: &impl ConnectionTrait,
    m: &NewMessage<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    let res = db
        .execute_raw(stmt(
            db.get_database_backend(),
            "INSERT INTO messages (id, tenant, template, channel, recipient, related_id, subject, body, status,
               attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, 'email', $4, $5, $6, $7, 'queued', 0, $8, $8)
             ON CONFLICT (tenant, template, related_id, recipient) DO NOTHING",
            [
                uuid::Uuid::now_v7().to_string().into(),
                m.tenant.into(),
                m.template.into(),
                normalise(m.recipient).into(),
                m.related_id.into(),
                m.subject.into(),
                m.body.into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Addresses are compared case-insensitively and trimmed.
pub fn normalise(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

/// Marks `address` unsafe for `tenant`.
pub async fn suppress(
    db: &impl ConnectionTrait,
    tenant: &str,
    address: &str,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "INSERT INTO suppressions (tenant, address, reason, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant, address) DO NOTHING",
        [
            tenant.into(),
            normalise(address).into(),
            reason.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub async fn is_suppressed(
    db: &impl ConnectionTrait,
    tenant: &str,
    address: &str,
) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT reason FROM suppressions WHERE tenant = $1 AND address = $2",
            [tenant.into(), normalise(address).into()],
        ))
        .await?;
    row.map(|r| r.try_get_by_index(0)).transpose()
}

/// A message as listed.
#[derive(Debug, Clone)]
pub struct MessageRow {
    pub id: String,
    pub tenant: String,
    pub template: String,
    pub channel: String,
    pub recipient: String,
    pub related_id: String,
    pub subject: String,
    pub body: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
    pub last_error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

const COLUMNS: &str =
    "id, tenant, template, channel, recipient, related_id, subject, body, status, attempts,
    next_attempt_at, last_error, created_at, sent_at";

fn row(r: &sea_orm::QueryResult) -> Result<MessageRow, DbErr> {
    Ok(MessageRow {
        id: r.try_get_by_index(0)?,
        tenant: r.try_get_by_index(1)?,
        template: r.try_get_by_index(2)?,
        channel: r.try_get_by_index(3)?,
        recipient: r.try_get_by_index(4)?,
        related_id: r.try_get_by_index(5)?,
        subject: r.try_get_by_index(6)?,
        body: r.try_get_by_index(7)?,
        status: r.try_get_by_index(8)?,
        attempts: r.try_get_by_index(9)?,
        next_attempt_at: r.try_get_by_index(10)?,
        last_error: r.try_get_by_index(11)?,
        created_at: r.try_get_by_index(12)?,
        sent_at: r.try_get_by_index(13)?,
    })
}

/// Queued messages due now, oldest first.
pub async fn due(
    db: &impl ConnectionTrait,
    now: chrono::DateTime<chrono::Utc>,
    limit: u32,
) -> Result<Vec<MessageRow>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            &format!(
                "SELECT {COLUMNS} FROM messages WHERE status = 'queued' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at LIMIT {limit}"
            ),
            [now.into()],
        ))
        .await?;
    rows.iter().map(row).collect()
}

/// Claims a due message for one sending attempt (a lease until `lease_until`); false when another
/// sender took it first.
pub async fn claim(
    db: &impl ConnectionTrait,
    m: &MessageRow,
    lease_until: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    let res = db
        .execute_raw(stmt(
            db.get_database_backend(),
            "UPDATE messages SET attempts = attempts + 1, next_attempt_at = $1
             WHERE id = $2 AND status = 'queued' AND attempts = $3",
            [lease_until.into(), m.id.clone().into(), m.attempts.into()],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

pub async fn set_status(
    db: &impl ConnectionTrait,
    id: &str,
    status: &str,
    error: Option<&str>,
    next_attempt_at: chrono::DateTime<chrono::Utc>,
    sent_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "UPDATE messages SET status = $1, last_error = $2, next_attempt_at = $3, sent_at = $4 WHERE id = $5",
        [status.into(), error.map(String::from).into(), next_attempt_at.into(), sent_at.into(), id.into()],
    ))
    .await?;
    Ok(())
}

/// Messages of `tenant` about `related_id`, newest first.
pub async fn for_related(
    db: &impl ConnectionTrait,
    tenant: &str,
    related_id: &str,
) -> Result<Vec<MessageRow>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            &format!("SELECT {COLUMNS} FROM messages WHERE tenant = $1 AND related_id = $2 ORDER BY created_at DESC"),
            [tenant.into(), related_id.into()],
        ))
        .await?;
    rows.iter().map(row).collect()
}
