//! Notifications' own tables: messages with their delivery status, the suppression lists of
//! addresses and of people (intake's person ids) nothing may be sent to, the addresses held for
//! each family member (so a person marked unsafe is suppressed at every address we hold for them),
//! and two small read models built from `referral_received`:
//! the referrer's contact details (the front door wants a phone number that case events do not
//! carry) and keyed hashes of the children's names (so free text such as a step-up reason can be
//! cleaned of them before it goes into an email).
use eh_store::{Migration, Rows, stmt};
use sea_orm::{ConnectionTrait, DbErr};
use std::collections::{HashMap, HashSet};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        owner: "notifications",
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
    },
    // A priority the sender orders by (step-ups to the front door go before any backlog), and a
    // `dedupe_key` in the uniqueness rule: one case may rightly get the same template twice (two
    // service-level clocks, two screenings), but one occurrence must still be one message. SQLite
    // cannot drop a table constraint, so the table is rebuilt (portable to PostgreSQL too).
    Migration {
        owner: "notifications",
        version: 11,
        name: "message priority and dedupe key; referrer and child-name read models",
        sql: "CREATE TABLE messages_v11 (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            template TEXT NOT NULL,
            channel TEXT NOT NULL,
            recipient TEXT NOT NULL,
            related_id TEXT NOT NULL,
            dedupe_key TEXT NOT NULL DEFAULT '',
            priority INTEGER NOT NULL DEFAULT 0,
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at {ts} NOT NULL,
            last_error TEXT NULL,
            created_at {ts} NOT NULL,
            sent_at {ts} NULL,
            UNIQUE (tenant, template, related_id, recipient, dedupe_key)
          );
          INSERT INTO messages_v11 (id, tenant, template, channel, recipient, related_id, subject,
            body, status, attempts, next_attempt_at, last_error, created_at, sent_at)
            SELECT id, tenant, template, channel, recipient, related_id, subject, body, status,
              attempts, next_attempt_at, last_error, created_at, sent_at FROM messages;
          DROP TABLE messages;
          ALTER TABLE messages_v11 RENAME TO messages;
          CREATE INDEX messages_due ON messages (status, priority, next_attempt_at);
          CREATE INDEX messages_related ON messages (tenant, related_id);
          CREATE TABLE referrers (
            tenant TEXT NOT NULL,
            referral_id TEXT NOT NULL,
            name TEXT NOT NULL,
            agency TEXT NOT NULL,
            phone TEXT NULL,
            email TEXT NULL,
            recorded_at {ts} NOT NULL,
            PRIMARY KEY (tenant, referral_id)
          );
          CREATE TABLE child_name_tokens (
            tenant TEXT NOT NULL,
            scope TEXT NOT NULL,
            token_hash TEXT NOT NULL,
            PRIMARY KEY (tenant, scope, token_hash)
          )",
    },
    // An urgent message (the front door's) not sent within a minute is raised once, however
    // many replicas watch: the first to insert its row raises it (`urgent.rs`).
    Migration {
        owner: "notifications",
        version: 12,
        name: "overdue urgent messages raised",
        sql: "CREATE TABLE overdue_raised (
            message_id TEXT PRIMARY KEY,
            raised_at {ts} NOT NULL
          )",
    },
    // A safety flag follows the person, not one referral's address: a family member marked
    // unsafe by any referral (or any event naming them so) is on `person_suppressions` by
    // intake's person id, every address any event gave for them is in `person_addresses`, and
    // a message to a family member carries their person id. The sender withholds a message
    // whose address is suppressed, whose person is, or whose address belongs to a person who is.
    Migration {
        owner: "notifications",
        version: 13,
        name: "suppression by person; the addresses held for each person",
        sql: "ALTER TABLE messages ADD COLUMN person_id TEXT NULL;
          CREATE TABLE person_suppressions (
            tenant TEXT NOT NULL,
            person_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_at {ts} NOT NULL,
            PRIMARY KEY (tenant, person_id)
          );
          CREATE TABLE person_addresses (
            tenant TEXT NOT NULL,
            person_id TEXT NOT NULL,
            address TEXT NOT NULL,
            recorded_at {ts} NOT NULL,
            PRIMARY KEY (tenant, person_id, address)
          );
          CREATE INDEX person_addresses_address ON person_addresses (tenant, address)",
    },
    // A message that fails for good (not an urgent one: those are never given up) is a task for
    // the council's Early Help team manager, listed until someone resolves it.
    Migration {
        owner: "notifications",
        version: 14,
        name: "tasks for the team manager: messages that failed for good",
        sql: "CREATE TABLE tasks (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            kind TEXT NOT NULL,
            message_id TEXT NOT NULL UNIQUE,
            related_id TEXT NOT NULL,
            template TEXT NOT NULL,
            created_at {ts} NOT NULL,
            status TEXT NOT NULL,
            resolved_by TEXT NOT NULL,
            resolved_at {ts} NULL,
            note TEXT NOT NULL
          );
          CREATE INDEX tasks_open ON tasks (tenant, status, created_at)",
    },
    // Every table of a council's rows carries its council, under row-level security: the
    // overdue marks are given their message's.
    Migration {
        owner: "notifications",
        version: 21,
        name: "overdue marks by council",
        sql: "ALTER TABLE overdue_raised ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
          UPDATE overdue_raised SET tenant = COALESCE(
            (SELECT m.tenant FROM messages m WHERE m.id = overdue_raised.message_id), '')",
    },
];

/// Delivery statuses a message can have.
pub mod status {
    /// Waiting for the sender (or for its next attempt).
    pub const QUEUED: &str = "queued";
    /// Accepted by the mail server.
    pub const SENT: &str = "sent";
    /// Attempts exhausted.
    pub const FAILED: &str = "failed";
    /// Not sent: the recipient is marked unsafe (in the event, or on a suppression list: the
    /// address, the person, or another address of the person).
    pub const SUPPRESSED: &str = "suppressed";
    /// Not sent: there is no address to send it to (e.g. the council has not configured its
    /// front-door mailbox); `last_error` says which.
    pub const UNDELIVERABLE: &str = "undeliverable";
}

/// Sender priority of ordinary messages.
pub const PRIORITY_NORMAL: i32 = 0;
/// Sender priority of messages that must go before any backlog (step-ups to the front door).
pub const PRIORITY_URGENT: i32 = 100;

/// A message to record.
#[derive(Clone, Copy)]
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
    record(
        db,
        &Recorded {
            message: *m,
            dedupe_key: "",
            priority: PRIORITY_NORMAL,
            status: status::QUEUED,
            reason: None,
            person_id: None,
        },
        now,
    )
    .await
}

/// A message to record with its initial status: `queued` for the sender, or settled at once
/// (`suppressed`, `undeliverable`) with the reason.
pub struct Recorded<'a> {
    pub message: NewMessage<'a>,
    /// Tells two occurrences of one template about one record apart (e.g. the clock of a
    /// service-level breach); "" when there is only ever one.
    pub dedupe_key: &'a str,
    pub priority: i32,
    pub status: &'a str,
    pub reason: Option<&'a str>,
    /// The family member it is for (intake's person id), when it is for one.
    pub person_id: Option<&'a str>,
}

/// Records a message; false when the same (template, related id, recipient, dedupe key) is held.
pub async fn record(
    db: &impl ConnectionTrait,
    r: &Recorded<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    let mut w = Writes::default();
    w.message(r, now);
    Ok(w.write(db).await? == 1)
}

/// Rows that events lead to, gathered so that the rows of many events go out in one statement
/// per table. Every row is "first write wins": a row already held is left as it is.
#[derive(Debug, Clone)]
pub struct Writes {
    suppressions: Rows,
    person_suppressions: Rows,
    person_addresses: Rows,
    messages: Rows,
    referrers: Rows,
    name_tokens: Rows,
}

impl Default for Writes {
    fn default() -> Self {
        Self {
            suppressions: Rows::with_tail(
                "INSERT INTO suppressions (tenant, address, reason, created_at)",
                4,
                "ON CONFLICT (tenant, address) DO NOTHING",
            ),
            person_suppressions: Rows::with_tail(
                "INSERT INTO person_suppressions (tenant, person_id, reason, created_at)",
                4,
                "ON CONFLICT (tenant, person_id) DO NOTHING",
            ),
            person_addresses: Rows::with_tail(
                "INSERT INTO person_addresses (tenant, person_id, address, recorded_at)",
                4,
                "ON CONFLICT (tenant, person_id, address) DO NOTHING",
            ),
            messages: Rows::with_tail(
                "INSERT INTO messages (id, tenant, template, channel, recipient, related_id,
                   dedupe_key, priority, subject, body, status, attempts, next_attempt_at,
                   last_error, created_at, person_id)",
                16,
                "ON CONFLICT (tenant, template, related_id, recipient, dedupe_key) DO NOTHING",
            ),
            referrers: Rows::with_tail(
                "INSERT INTO referrers (tenant, referral_id, name, agency, phone, email, recorded_at)",
                7,
                "ON CONFLICT (tenant, referral_id) DO NOTHING",
            ),
            name_tokens: Rows::with_tail(
                "INSERT INTO child_name_tokens (tenant, scope, token_hash)",
                3,
                "ON CONFLICT (tenant, scope, token_hash) DO NOTHING",
            ),
        }
    }
}

impl Writes {
    /// Marks `address` unsafe for `tenant`.
    pub fn suppress(
        &mut self,
        tenant: &str,
        address: &str,
        reason: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        self.suppressions.push([
            tenant.into(),
            normalise(address).into(),
            reason.into(),
            now.into(),
        ]);
    }

    /// Marks the family member `person_id` unsafe for `tenant`: nothing is sent to them at any
    /// address (`reason`: ids only). Never cleared by a later event.
    pub fn suppress_person(
        &mut self,
        tenant: &str,
        person_id: &str,
        reason: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        if person_id.trim().is_empty() {
            return;
        }
        self.person_suppressions
            .push([tenant.into(), person_id.into(), reason.into(), now.into()]);
    }

    /// Keeps `address` as one of the family member `person_id`'s.
    pub fn person_address(
        &mut self,
        tenant: &str,
        person_id: &str,
        address: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        if person_id.trim().is_empty() || address.trim().is_empty() {
            return;
        }
        self.person_addresses.push([
            tenant.into(),
            person_id.into(),
            normalise(address).into(),
            now.into(),
        ]);
    }

    /// Records a message.
    pub fn message(&mut self, r: &Recorded<'_>, now: chrono::DateTime<chrono::Utc>) {
        let m = &r.message;
        self.messages.push([
            uuid::Uuid::now_v7().to_string().into(),
            m.tenant.into(),
            m.template.into(),
            "email".into(),
            normalise(m.recipient).into(),
            m.related_id.into(),
            r.dedupe_key.into(),
            r.priority.into(),
            m.subject.into(),
            m.body.into(),
            r.status.into(),
            0i32.into(),
            now.into(),
            r.reason.map(String::from).into(),
            now.into(),
            r.person_id
                .filter(|p| !p.trim().is_empty())
                .map(String::from)
                .into(),
        ]);
    }

    /// Keeps the referrer of `referral_id` (the first record wins; a referral does not change).
    pub fn referrer(
        &mut self,
        tenant: &str,
        referral_id: &str,
        r: &ReferrerContact,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        self.referrers.push([
            tenant.into(),
            referral_id.into(),
            r.name.clone().into(),
            r.agency.clone().into(),
            r.phone.clone().into(),
            r.email.clone().into(),
            now.into(),
        ]);
    }

    /// Adds keyed hashes of children's name tokens (see `domain::name_token_hash`) under `scope`.
    pub fn child_name_tokens(
        &mut self,
        tenant: &str,
        scope: &str,
        hashes: &std::collections::BTreeSet<String>,
    ) {
        for h in hashes {
            self.name_tokens
                .push([tenant.into(), scope.into(), h.clone().into()]);
        }
    }

    /// Adds every row of `other`.
    pub fn append(&mut self, other: &Writes) {
        self.suppressions.append(&other.suppressions);
        self.person_suppressions.append(&other.person_suppressions);
        self.person_addresses.append(&other.person_addresses);
        self.messages.append(&other.messages);
        self.referrers.append(&other.referrers);
        self.name_tokens.append(&other.name_tokens);
    }

    /// Writes the rows (suppressions first, so the sender never sees a message before the
    /// suppression that withholds it); returns how many rows were new.
    pub async fn write(&self, db: &impl ConnectionTrait) -> Result<u64, DbErr> {
        let mut written = 0;
        for rows in [
            &self.suppressions,
            &self.person_suppressions,
            &self.person_addresses,
            &self.messages,
            &self.referrers,
            &self.name_tokens,
        ] {
            written += rows.write(db).await?;
        }
        Ok(written)
    }
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
    let mut w = Writes::default();
    w.suppress(tenant, address, reason, now);
    w.write(db).await?;
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
    pub priority: i32,
    pub attempts: i32,
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
    pub last_error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The family member it is for (intake's person id), when it is for one.
    pub person_id: Option<String>,
}

const COLUMNS: &str =
    "id, tenant, template, channel, recipient, related_id, subject, body, status, attempts,
    next_attempt_at, last_error, created_at, sent_at, priority, person_id";

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
        priority: r.try_get_by_index(14)?,
        person_id: r.try_get_by_index(15)?,
    })
}

/// Queued messages due now: the most urgent first, then the oldest.
pub async fn due(
    db: &impl ConnectionTrait,
    now: chrono::DateTime<chrono::Utc>,
    limit: u32,
) -> Result<Vec<MessageRow>, DbErr> {
    due_at_least(db, now, i32::MIN, limit).await
}

/// [`due`], of priority `min_priority` or above (the urgent sender's: [`PRIORITY_URGENT`]).
pub async fn due_at_least(
    db: &impl ConnectionTrait,
    now: chrono::DateTime<chrono::Utc>,
    min_priority: i32,
    limit: u32,
) -> Result<Vec<MessageRow>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            &format!(
                "SELECT {COLUMNS} FROM messages WHERE status = 'queued' AND next_attempt_at <= $1
                 AND priority >= $2
                 ORDER BY priority DESC, next_attempt_at, created_at LIMIT {limit}"
            ),
            [now.into(), min_priority.into()],
        ))
        .await?;
    rows.iter().map(row).collect()
}

/// Urgent messages still queued (not sent) that were queued at or before `queued_before`, with
/// whether each was raised as overdue already; oldest first.
pub async fn overdue_urgent(
    db: &impl ConnectionTrait,
    queued_before: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(MessageRow, bool)>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            &format!(
                "SELECT {COLUMNS}, (SELECT COUNT(*) FROM overdue_raised o WHERE o.message_id = messages.id)
                 FROM messages WHERE status = 'queued' AND priority >= $1 AND created_at <= $2
                 ORDER BY created_at LIMIT 1000"
            ),
            [PRIORITY_URGENT.into(), queued_before.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| Ok((row(r)?, r.try_get_by_index::<i64>(16)? > 0)))
        .collect()
}

/// Marks `message_id` raised as overdue; false when it was raised before (by any replica).
pub async fn raise_overdue(
    db: &impl ConnectionTrait,
    message_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    let r = db
        .execute_raw(stmt(
            db.get_database_backend(),
            "INSERT INTO overdue_raised (message_id, raised_at, tenant)
             SELECT id, $2, tenant FROM messages WHERE id = $1
             ON CONFLICT DO NOTHING",
            [message_id.into(), now.into()],
        ))
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Claims due messages for one sending attempt each (a lease until `lease_until`), in one
/// statement; returns the ids claimed (those another sender took first are not).
pub async fn claim(
    db: &impl ConnectionTrait,
    due: &[MessageRow],
    lease_until: chrono::DateTime<chrono::Utc>,
) -> Result<HashSet<String>, DbErr> {
    let mut claimed = HashSet::new();
    // Two values per message, well under every bound-parameter limit per chunk.
    for chunk in due.chunks(1000) {
        let mut values: Vec<sea_orm::Value> = vec![lease_until.into()];
        for m in chunk {
            values.push(m.id.clone().into());
            values.push(m.attempts.into());
        }
        let rows = db
            .query_all_raw(stmt(
                db.get_database_backend(),
                &format!(
                    "UPDATE messages SET attempts = attempts + 1, next_attempt_at = $1
                     WHERE status = 'queued' AND (id, attempts) IN ({}) RETURNING id",
                    eh_store::tuples(2, chunk.len(), 2)
                ),
                values,
            ))
            .await?;
        for r in rows {
            claimed.insert(r.try_get_by_index::<String>(0)?);
        }
    }
    Ok(claimed)
}

/// Which of `recipients` ((tenant, address) pairs) are on their tenant's suppression list: the
/// reason, by (tenant, normalised address).
pub async fn suppressed(
    db: &impl ConnectionTrait,
    recipients: &[(String, String)],
) -> Result<HashMap<(String, String), String>, DbErr> {
    let mut found = HashMap::new();
    for chunk in recipients.chunks(1000) {
        let mut values: Vec<sea_orm::Value> = Vec::new();
        for (tenant, address) in chunk {
            values.push(tenant.clone().into());
            values.push(normalise(address).into());
        }
        let rows = db
            .query_all_raw(stmt(
                db.get_database_backend(),
                &format!(
                    "SELECT tenant, address, reason FROM suppressions WHERE (tenant, address) IN ({})",
                    eh_store::tuples(1, chunk.len(), 2)
                ),
                values,
            ))
            .await?;
        for r in rows {
            found.insert(
                (r.try_get_by_index(0)?, r.try_get_by_index(1)?),
                r.try_get_by_index(2)?,
            );
        }
    }
    Ok(found)
}

/// Why each of `messages` must not be sent, by message id: its address is on its tenant's
/// suppression list, its person is (`person_suppressions`), or its address is one of a
/// suppressed person's (`person_addresses`) — whoever the message was meant for. Messages not in
/// the map may be sent. The reasons are the lists' own (ids only).
pub async fn withheld(
    db: &impl ConnectionTrait,
    messages: &[MessageRow],
) -> Result<HashMap<String, String>, DbErr> {
    let recipients: Vec<(String, String)> = messages
        .iter()
        .map(|m| (m.tenant.clone(), normalise(&m.recipient)))
        .collect();
    let by_address = suppressed(db, &recipients).await?;
    let people: Vec<(String, String)> = messages
        .iter()
        .filter_map(|m| {
            m.person_id
                .as_ref()
                .filter(|p| !p.is_empty())
                .map(|p| (m.tenant.clone(), p.clone()))
        })
        .collect();
    let by_person = pairs(
        db,
        "SELECT tenant, person_id, reason FROM person_suppressions WHERE (tenant, person_id) IN",
        &people,
    )
    .await?;
    let of_person = pairs(
        db,
        "SELECT a.tenant, a.address, s.reason FROM person_addresses a
         JOIN person_suppressions s ON s.tenant = a.tenant AND s.person_id = a.person_id
         WHERE (a.tenant, a.address) IN",
        &recipients,
    )
    .await?;
    let mut out = HashMap::new();
    for m in messages {
        let address = (m.tenant.clone(), normalise(&m.recipient));
        let person = m.person_id.as_ref().map(|p| (m.tenant.clone(), p.clone()));
        let reason = by_address
            .get(&address)
            .cloned()
            .or_else(|| person.and_then(|p| by_person.get(&p).cloned()))
            .or_else(|| {
                of_person
                    .get(&address)
                    .map(|r| format!("the address is held for a person marked unsafe: {r}"))
            });
        if let Some(reason) = reason {
            out.insert(m.id.clone(), reason);
        }
    }
    Ok(out)
}

/// Runs `select` (ending `… IN`, answering (tenant, key, reason)) for `keys` ((tenant, key)
/// pairs); the reasons by (tenant, key).
async fn pairs(
    db: &impl ConnectionTrait,
    select: &str,
    keys: &[(String, String)],
) -> Result<HashMap<(String, String), String>, DbErr> {
    let mut found = HashMap::new();
    for chunk in keys.chunks(1000) {
        let values: Vec<sea_orm::Value> = chunk
            .iter()
            .flat_map(|(t, k)| [t.clone().into(), k.clone().into()])
            .collect();
        let rows = db
            .query_all_raw(stmt(
                db.get_database_backend(),
                &format!("{select} ({})", eh_store::tuples(1, chunk.len(), 2)),
                values,
            ))
            .await?;
        for r in rows {
            found.insert(
                (r.try_get_by_index(0)?, r.try_get_by_index(1)?),
                r.try_get_by_index(2)?,
            );
        }
    }
    Ok(found)
}

/// The reason `person_id` of `tenant` is on the person suppression list, when it is.
pub async fn is_person_suppressed(
    db: &impl ConnectionTrait,
    tenant: &str,
    person_id: &str,
) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT reason FROM person_suppressions WHERE tenant = $1 AND person_id = $2",
            [tenant.into(), person_id.into()],
        ))
        .await?;
    row.map(|r| r.try_get_by_index(0)).transpose()
}

pub async fn set_status(
    db: &impl ConnectionTrait,
    id: &str,
    status: &str,
    error: Option<&str>,
    next_attempt_at: chrono::DateTime<chrono::Utc>,
    sent_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), DbErr> {
    set_statuses(
        db,
        &[StatusChange {
            id,
            status,
            error,
            next_attempt_at,
            sent_at,
        }],
    )
    .await
}

/// A message's status after an attempt (or a decision not to attempt it).
#[derive(Debug, Clone, Copy)]
pub struct StatusChange<'a> {
    pub id: &'a str,
    pub status: &'a str,
    pub error: Option<&'a str>,
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Sets the status of every message of `changes`, in one statement per few thousand.
pub async fn set_statuses(
    db: &impl ConnectionTrait,
    changes: &[StatusChange<'_>],
) -> Result<(), DbErr> {
    // `UPDATE … FROM (VALUES …)`; both backends name a VALUES list's columns column1, column2…
    let mut rows = Rows::with_tail(
        "UPDATE messages SET status = v.column2, last_error = v.column3,
           next_attempt_at = v.column4, sent_at = v.column5 FROM (",
        5,
        ") AS v WHERE messages.id = v.column1",
    );
    for c in changes {
        rows.push([
            c.id.into(),
            c.status.into(),
            c.error.map(String::from).into(),
            c.next_attempt_at.into(),
            c.sent_at.into(),
        ]);
    }
    rows.write(db).await?;
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

/// The referrer of a referral, as `referral_received` gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrerContact {
    pub name: String,
    pub agency: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// The referrer of `referral_id`, when `referral_received` has been seen.
pub async fn referrer_of(
    db: &impl ConnectionTrait,
    tenant: &str,
    referral_id: &str,
) -> Result<Option<ReferrerContact>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT name, agency, phone, email FROM referrers WHERE tenant = $1 AND referral_id = $2",
            [tenant.into(), referral_id.into()],
        ))
        .await?;
    row.map(|r| {
        Ok(ReferrerContact {
            name: r.try_get_by_index(0)?,
            agency: r.try_get_by_index(1)?,
            phone: r.try_get_by_index(2)?,
            email: r.try_get_by_index(3)?,
        })
    })
    .transpose()
}

/// The scope children's names are kept under: their family, else their referral.
pub fn family_scope(family_id: &str) -> String {
    format!("family:{family_id}")
}

pub fn referral_scope(referral_id: &str) -> String {
    format!("referral:{referral_id}")
}

/// The children's name-token hashes kept under any of `scopes`.
pub async fn child_name_tokens(
    db: &impl ConnectionTrait,
    tenant: &str,
    scopes: &[String],
) -> Result<std::collections::BTreeSet<String>, DbErr> {
    let mut rows = Vec::new();
    for scope in scopes {
        rows.extend(
            db.query_all_raw(stmt(
                db.get_database_backend(),
                "SELECT token_hash FROM child_name_tokens WHERE tenant = $1 AND scope = $2",
                [tenant.into(), scope.clone().into()],
            ))
            .await?,
        );
    }
    rows.iter().map(|r| r.try_get_by_index(0)).collect()
}

/// Extends the lease of claimed messages still queued under the lease `held` to `until`: a round
/// still working keeps its messages; one that died lets them go when its lease ends. A message
/// whose attempt was recorded meanwhile (its due time changed) is left alone.
pub async fn renew(
    db: &impl ConnectionTrait,
    ids: &[String],
    held: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
) -> Result<u64, DbErr> {
    let mut renewed = 0;
    for chunk in ids.chunks(1000) {
        let mut values: Vec<sea_orm::Value> = vec![until.into(), held.into()];
        values.extend(chunk.iter().map(|id| sea_orm::Value::from(id.clone())));
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
        let r = db
            .execute_raw(stmt(
                db.get_database_backend(),
                &format!(
                    "UPDATE messages SET next_attempt_at = $1
                     WHERE status = 'queued' AND next_attempt_at = $2 AND id IN ({})",
                    placeholders.join(", ")
                ),
                values,
            ))
            .await?;
        renewed += r.rows_affected();
    }
    Ok(renewed)
}

/// A task for the council's team manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub id: String,
    pub tenant: String,
    /// `message_failed`
    pub kind: String,
    pub message_id: String,
    pub related_id: String,
    pub template: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// `open` | `resolved`
    pub status: String,
    pub resolved_by: String,
    pub resolved_at: Option<chrono::DateTime<chrono::Utc>>,
    pub note: String,
}

const TASK_COLUMNS: &str = "id, tenant, kind, message_id, related_id, template, created_at, status,
    resolved_by, resolved_at, note";

fn task_row(r: &sea_orm::QueryResult) -> Result<TaskRow, DbErr> {
    Ok(TaskRow {
        id: r.try_get_by_index(0)?,
        tenant: r.try_get_by_index(1)?,
        kind: r.try_get_by_index(2)?,
        message_id: r.try_get_by_index(3)?,
        related_id: r.try_get_by_index(4)?,
        template: r.try_get_by_index(5)?,
        created_at: r.try_get_by_index(6)?,
        status: r.try_get_by_index(7)?,
        resolved_by: r.try_get_by_index(8)?,
        resolved_at: r.try_get_by_index(9)?,
        note: r.try_get_by_index(10)?,
    })
}

/// Opens a task for message `m`, which failed for good (once per message).
pub async fn open_failed_task(
    db: &impl ConnectionTrait,
    m: &MessageRow,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db.get_database_backend(),
        "INSERT INTO tasks (id, tenant, kind, message_id, related_id, template, created_at, status,
           resolved_by, resolved_at, note)
         VALUES ($1, $2, 'message_failed', $3, $4, $5, $6, 'open', '', NULL, '')
         ON CONFLICT (message_id) DO NOTHING",
        [
            uuid::Uuid::now_v7().to_string().into(),
            m.tenant.clone().into(),
            m.id.clone().into(),
            m.related_id.clone().into(),
            m.template.clone().into(),
            at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// A council's tasks (`status` empty: every one), oldest first, at most `limit`.
pub async fn tasks(
    db: &impl ConnectionTrait,
    tenant: &str,
    status: &str,
    limit: u64,
) -> Result<Vec<TaskRow>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            db.get_database_backend(),
            &format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE tenant = $1 AND ($2 = '' OR status = $2)
                 ORDER BY created_at, id LIMIT $3"
            ),
            [
                tenant.into(),
                status.into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    rows.iter().map(task_row).collect()
}

/// Resolves an open task: the task, or `None` when there is no such open task.
pub async fn resolve_task(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    by: &str,
    note: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Option<TaskRow>, DbErr> {
    db.query_one_raw(stmt(
        db.get_database_backend(),
        &format!(
            "UPDATE tasks SET status = 'resolved', resolved_by = $3, resolved_at = $4, note = $5
             WHERE tenant = $1 AND id = $2 AND status = 'open' RETURNING {TASK_COLUMNS}"
        ),
        [tenant.into(), id.into(), by.into(), at.into(), note.into()],
    ))
    .await?
    .map(|r| task_row(&r))
    .transpose()
}
