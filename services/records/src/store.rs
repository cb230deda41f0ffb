//! Records' own tables. The family index (ids and dates learned from events: which referrals,
//! people and cases make up a family, children's dates of birth, when cases closed), legal holds,
//! the subject access log, destructions and each service's confirmation. Destruction certificates
//! are the `destructions` rows: records' own id, the rule, dates, counts and services — never a
//! family's ids, once a destruction is ordered.
use chrono::{DateTime, NaiveDate, Utc};
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Value};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        owner: "records",
        version: 1,
        name: "records: the family index, legal holds, the subject access log, destructions and confirmations",
        sql: "CREATE TABLE family_index (
            tenant TEXT NOT NULL,
            family_id TEXT NOT NULL,
            merged_into TEXT NULL,
            PRIMARY KEY (tenant, family_id)
          );
          CREATE TABLE referral_index (
            tenant TEXT NOT NULL,
            referral_id TEXT NOT NULL,
            family_id TEXT NOT NULL,
            PRIMARY KEY (tenant, referral_id)
          );
          CREATE TABLE person_index (
            tenant TEXT NOT NULL,
            person_id TEXT NOT NULL,
            family_id TEXT NOT NULL,
            child BOOLEAN NOT NULL,
            date_of_birth TEXT NULL,
            PRIMARY KEY (tenant, person_id, family_id)
          );
          CREATE TABLE case_index (
            tenant TEXT NOT NULL,
            case_id TEXT NOT NULL,
            family_id TEXT NOT NULL,
            state TEXT NOT NULL,
            closed_on TEXT NULL,
            PRIMARY KEY (tenant, case_id)
          );
          CREATE TABLE legal_holds (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            family_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            placed_by TEXT NOT NULL,
            placed_at {ts} NOT NULL,
            released_by TEXT NULL,
            released_at {ts} NULL,
            release_reason TEXT NULL,
            PRIMARY KEY (tenant, id)
          );
          CREATE TABLE sar_log (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            person_id TEXT NOT NULL,
            asked_by TEXT NOT NULL,
            asked_at {ts} NOT NULL,
            format TEXT NOT NULL,
            incomplete TEXT NOT NULL,
            PRIMARY KEY (tenant, id)
          );
          CREATE TABLE destructions (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            rule TEXT NOT NULL,
            due_on TEXT NOT NULL,
            ordered_at {ts} NOT NULL,
            completed_at {ts} NULL,
            event_id TEXT NOT NULL,
            referrals {bigint} NOT NULL,
            people {bigint} NOT NULL,
            cases {bigint} NOT NULL,
            PRIMARY KEY (tenant, id)
          );
          CREATE TABLE destruction_confirmations (
            tenant TEXT NOT NULL,
            destruction_id TEXT NOT NULL,
            service TEXT NOT NULL,
            rows_destroyed {bigint} NOT NULL,
            confirmed_at {ts} NOT NULL,
            PRIMARY KEY (tenant, destruction_id, service)
          )",
    },
    // How many dead letters carrying the family's ids a destruction discarded from the bus.
    Migration {
        owner: "records",
        version: 2,
        name: "records: dead letters discarded by a destruction",
        sql: "ALTER TABLE destructions ADD COLUMN dead_letters {bigint} NULL",
    },
    // How many events in the streams' replay window carrying the family's ids it erased.
    Migration {
        owner: "records",
        version: 3,
        name: "records: event copies erased by a destruction",
        sql: "ALTER TABLE destructions ADD COLUMN event_copies {bigint} NULL",
    },
    // Each referral's upstream reference, naming the document in the inbound stream.
    Migration {
        owner: "records",
        version: 4,
        name: "records: referrals' upstream references",
        sql: "ALTER TABLE referral_index ADD COLUMN source_system TEXT NULL;
              ALTER TABLE referral_index ADD COLUMN source_reference TEXT NULL",
    },
];

fn b(db: &impl ConnectionTrait) -> sea_orm::DbBackend {
    db.get_database_backend()
}

async fn exec(
    db: &impl ConnectionTrait,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<u64, DbErr> {
    Ok(db
        .execute_raw(stmt(b(db), sql, values))
        .await?
        .rows_affected())
}

async fn strings(
    db: &impl ConnectionTrait,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Vec<String>, DbErr> {
    let rows = db.query_all_raw(stmt(b(db), sql, values)).await?;
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0))
        .collect()
}

/// Indexes a referral: its family, and each person it names (children with their dates of birth).
pub async fn index_referral(
    db: &impl ConnectionTrait,
    tenant: &str,
    referral_id: &str,
    family_id: &str,
    source: (&str, &str),
    people: &[(String, bool, Option<String>)],
) -> Result<(), DbErr> {
    exec(
        db,
        "INSERT INTO family_index (tenant, family_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [tenant.into(), family_id.into()],
    )
    .await?;
    exec(
        db,
        "INSERT INTO referral_index (tenant, referral_id, family_id, source_system,
                                     source_reference)
         VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''))
         ON CONFLICT (tenant, referral_id) DO UPDATE
           SET source_system = COALESCE(referral_index.source_system, excluded.source_system),
               source_reference =
                 COALESCE(referral_index.source_reference, excluded.source_reference)",
        [
            tenant.into(),
            referral_id.into(),
            family_id.into(),
            source.0.into(),
            source.1.into(),
        ],
    )
    .await?;
    for (person_id, child, dob) in people {
        if person_id.trim().is_empty() {
            continue;
        }
        exec(
            db,
            "INSERT INTO person_index (tenant, person_id, family_id, child, date_of_birth)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant, person_id, family_id) DO UPDATE
               SET date_of_birth = COALESCE(excluded.date_of_birth, person_index.date_of_birth),
                   child = excluded.child OR person_index.child",
            [
                tenant.into(),
                person_id.as_str().into(),
                family_id.into(),
                (*child).into(),
                dob.clone().into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// A person's corrected date of birth.
pub async fn correct_birth(
    db: &impl ConnectionTrait,
    tenant: &str,
    person_id: &str,
    date_of_birth: &str,
) -> Result<(), DbErr> {
    exec(
        db,
        "UPDATE person_index SET date_of_birth = $3 WHERE tenant = $1 AND person_id = $2",
        [tenant.into(), person_id.into(), date_of_birth.into()],
    )
    .await?;
    Ok(())
}

/// Two people are one: the merged person belongs to the kept one's family too, and a family the
/// referral had started is merged into it.
pub async fn merge_people(
    db: &impl ConnectionTrait,
    tenant: &str,
    person_id: &str,
    merged_person_id: &str,
    family_id: &str,
    previous_family_id: &str,
) -> Result<(), DbErr> {
    if !family_id.is_empty() {
        exec(
            db,
            "INSERT INTO family_index (tenant, family_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [tenant.into(), family_id.into()],
        )
        .await?;
        for p in [person_id, merged_person_id] {
            if p.is_empty() {
                continue;
            }
            exec(
                db,
                "INSERT INTO person_index (tenant, person_id, family_id, child, date_of_birth)
                 SELECT $1, $2, $3, COALESCE(MAX(CASE WHEN child THEN 1 ELSE 0 END), 0) = 1, MAX(date_of_birth)
                 FROM person_index WHERE tenant = $1 AND person_id IN ($4, $5)
                 ON CONFLICT (tenant, person_id, family_id) DO NOTHING",
                [
                    tenant.into(),
                    p.into(),
                    family_id.into(),
                    person_id.into(),
                    merged_person_id.into(),
                ],
            )
            .await?;
        }
        if !previous_family_id.is_empty() && previous_family_id != family_id {
            exec(
                db,
                "INSERT INTO family_index (tenant, family_id, merged_into) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, family_id) DO UPDATE SET merged_into = excluded.merged_into",
                [tenant.into(), previous_family_id.into(), family_id.into()],
            )
            .await?;
        }
    }
    Ok(())
}

/// Indexes a case's state (and the day it closed, or its reopening).
pub async fn index_case(
    db: &impl ConnectionTrait,
    tenant: &str,
    case_id: &str,
    family_id: &str,
    state: &str,
    closed_on: Option<NaiveDate>,
) -> Result<(), DbErr> {
    exec(
        db,
        "INSERT INTO family_index (tenant, family_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [tenant.into(), family_id.into()],
    )
    .await?;
    exec(
        db,
        "INSERT INTO case_index (tenant, case_id, family_id, state, closed_on)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant, case_id) DO UPDATE
           SET state = excluded.state, closed_on = excluded.closed_on",
        [
            tenant.into(),
            case_id.into(),
            family_id.into(),
            state.into(),
            closed_on.map(|d| d.to_string()).into(),
        ],
    )
    .await?;
    Ok(())
}

/// The families a family id stands for: itself and every family merged into it (or it into).
pub async fn family_group(
    db: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
) -> Result<Vec<String>, DbErr> {
    let root = strings(
        db,
        "SELECT COALESCE(merged_into, family_id) FROM family_index WHERE tenant = $1 AND family_id = $2",
        [tenant.into(), family_id.into()],
    )
    .await?
    .pop()
    .unwrap_or_else(|| family_id.to_string());
    let mut group = strings(
        db,
        "SELECT family_id FROM family_index WHERE tenant = $1 AND (family_id = $2 OR merged_into = $2)
         ORDER BY family_id",
        [tenant.into(), root.clone().into()],
    )
    .await?;
    if !group.contains(&root) {
        group.push(root);
    }
    Ok(group)
}

/// The families a person is known in (each as its group's root), empty for a person records does
/// not know.
pub async fn families_of(
    db: &impl ConnectionTrait,
    tenant: &str,
    person_id: &str,
) -> Result<Vec<String>, DbErr> {
    strings(
        db,
        "SELECT DISTINCT COALESCE(f.merged_into, p.family_id)
         FROM person_index p LEFT JOIN family_index f
           ON f.tenant = p.tenant AND f.family_id = p.family_id
         WHERE p.tenant = $1 AND p.person_id = $2 ORDER BY 1",
        [tenant.into(), person_id.into()],
    )
    .await
}

/// Is `family_id` a family records knows?
pub async fn family_known(
    db: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
) -> Result<bool, DbErr> {
    Ok(!strings(
        db,
        "SELECT family_id FROM family_index WHERE tenant = $1 AND family_id = $2",
        [tenant.into(), family_id.into()],
    )
    .await?
    .is_empty())
}

fn in_list(first: usize, n: usize) -> String {
    let marks: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    format!("({})", marks.join(", "))
}

fn values(tenant: &str, ids: &[String]) -> Vec<Value> {
    std::iter::once(tenant.into())
        .chain(ids.iter().map(|s| s.clone().into()))
        .collect()
}

/// Every id that makes up the families of `group` (a family and those merged into it).
pub async fn ids_of(
    db: &impl ConnectionTrait,
    tenant: &str,
    group: &[String],
) -> Result<eh_service::rights::Ids, DbErr> {
    let list = in_list(2, group.len());
    let of = |table: &str, col: &str| {
        format!(
            "SELECT DISTINCT {col} FROM {table} WHERE tenant = $1 AND family_id IN {list} ORDER BY 1"
        )
    };
    Ok(eh_service::rights::Ids {
        tenant: tenant.into(),
        family: group.to_vec(),
        person: strings(db, &of("person_index", "person_id"), values(tenant, group)).await?,
        referral: strings(
            db,
            &of("referral_index", "referral_id"),
            values(tenant, group),
        )
        .await?,
        case: strings(db, &of("case_index", "case_id"), values(tenant, group)).await?,
    })
}

/// The upstream references of the referrals of the families of `group`.
pub async fn sources_of(
    db: &impl ConnectionTrait,
    tenant: &str,
    group: &[String],
) -> Result<Vec<eh_proto::records::v1::UpstreamReference>, DbErr> {
    let list = in_list(2, group.len());
    let rows = db
        .query_all_raw(stmt(
            b(db),
            &format!(
                "SELECT DISTINCT source_system, source_reference FROM referral_index
                 WHERE tenant = $1 AND family_id IN {list} AND source_system IS NOT NULL
                   AND source_reference IS NOT NULL
                 ORDER BY 1, 2"
            ),
            values(tenant, group),
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(eh_proto::records::v1::UpstreamReference {
            system: r.try_get_by_index(0)?,
            reference: r.try_get_by_index(1)?,
        });
    }
    Ok(out)
}

/// What retention needs of the families of `group`.
pub async fn facts_of(
    db: &impl ConnectionTrait,
    tenant: &str,
    group: &[String],
) -> Result<crate::domain::FamilyFacts, DbErr> {
    let list = in_list(2, group.len());
    let births = strings(
        db,
        &format!(
            "SELECT date_of_birth FROM person_index WHERE tenant = $1 AND family_id IN {list}
             AND child AND date_of_birth IS NOT NULL"
        ),
        values(tenant, group),
    )
    .await?;
    let rows = db
        .query_all_raw(stmt(
            b(db),
            &format!(
                "SELECT state, closed_on FROM case_index WHERE tenant = $1 AND family_id IN {list}"
            ),
            values(tenant, group),
        ))
        .await?;
    let mut cases = Vec::new();
    for r in rows {
        let state: String = r.try_get_by_index(0)?;
        let closed: Option<String> = r.try_get_by_index(1)?;
        cases.push(if crate::domain::is_over(&state) {
            closed.and_then(|c| c.parse().ok())
        } else {
            None
        });
    }
    Ok(crate::domain::FamilyFacts {
        child_births: births
            .iter()
            .filter_map(|d| d.get(..10)?.parse().ok())
            .collect(),
        cases,
    })
}

/// Every family of a council that is no other's merge (the roots of the index).
pub async fn root_families(db: &impl ConnectionTrait, tenant: &str) -> Result<Vec<String>, DbErr> {
    strings(
        db,
        "SELECT family_id FROM family_index WHERE tenant = $1 AND merged_into IS NULL ORDER BY family_id",
        [tenant.into()],
    )
    .await
}

/// Is any family of `group` under a legal hold not released?
pub async fn held(
    db: &impl ConnectionTrait,
    tenant: &str,
    group: &[String],
) -> Result<bool, DbErr> {
    let list = in_list(2, group.len());
    Ok(!strings(
        db,
        &format!(
            "SELECT id FROM legal_holds WHERE tenant = $1 AND family_id IN {list} AND released_at IS NULL"
        ),
        values(tenant, group),
    )
    .await?
    .is_empty())
}

/// A legal hold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: String,
    pub family_id: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: DateTime<Utc>,
    pub released_by: Option<String>,
    pub released_at: Option<DateTime<Utc>>,
    pub release_reason: Option<String>,
}

pub async fn place_hold(db: &impl ConnectionTrait, tenant: &str, hold: &Hold) -> Result<(), DbErr> {
    exec(
        db,
        "INSERT INTO legal_holds (tenant, id, family_id, reason, placed_by, placed_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        [
            tenant.into(),
            hold.id.clone().into(),
            hold.family_id.clone().into(),
            hold.reason.clone().into(),
            hold.placed_by.clone().into(),
            hold.placed_at.into(),
        ],
    )
    .await?;
    Ok(())
}

pub async fn hold(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<Hold>, DbErr> {
    let r = db
        .query_one_raw(stmt(
            b(db),
            "SELECT id, family_id, reason, placed_by, placed_at, released_by, released_at, release_reason
             FROM legal_holds WHERE tenant = $1 AND id = $2",
            [tenant.into(), id.into()],
        ))
        .await?;
    r.map(|r| {
        Ok(Hold {
            id: r.try_get_by_index(0)?,
            family_id: r.try_get_by_index(1)?,
            reason: r.try_get_by_index(2)?,
            placed_by: r.try_get_by_index(3)?,
            placed_at: r.try_get_by_index(4)?,
            released_by: r.try_get_by_index(5)?,
            released_at: r.try_get_by_index(6)?,
            release_reason: r.try_get_by_index(7)?,
        })
    })
    .transpose()
}

/// Releases a hold not yet released; false when there is none.
pub async fn release_hold(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    by: &str,
    at: DateTime<Utc>,
    reason: &str,
) -> Result<bool, DbErr> {
    Ok(exec(
        db,
        "UPDATE legal_holds SET released_by = $3, released_at = $4, release_reason = $5
         WHERE tenant = $1 AND id = $2 AND released_at IS NULL",
        [
            tenant.into(),
            id.into(),
            by.into(),
            at.into(),
            reason.into(),
        ],
    )
    .await?
        == 1)
}

/// Logs a subject access.
#[allow(clippy::too_many_arguments)]
pub async fn log_sar(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    person_id: &str,
    asked_by: &str,
    at: DateTime<Utc>,
    format: &str,
    incomplete: &[String],
) -> Result<(), DbErr> {
    exec(
        db,
        "INSERT INTO sar_log (tenant, id, person_id, asked_by, asked_at, format, incomplete)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            tenant.into(),
            id.into(),
            person_id.into(),
            asked_by.into(),
            at.into(),
            format.into(),
            incomplete.join(",").into(),
        ],
    )
    .await?;
    Ok(())
}

/// A destruction as ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destruction {
    pub id: String,
    pub rule: String,
    pub due_on: NaiveDate,
    pub ordered_at: DateTime<Utc>,
    pub event_id: String,
    pub referrals: i64,
    pub people: i64,
    pub cases: i64,
}

/// Records a destruction and forgets the family: every index row, hold and subject access log
/// entry of `ids` is deleted in the same transaction (the certificate keeps counts only).
pub async fn order_destruction(
    db: &impl ConnectionTrait,
    tenant: &str,
    d: &Destruction,
    ids: &eh_service::rights::Ids,
) -> Result<bool, DbErr> {
    // First the family index, which decides: a replica whose sweep found the same family waits
    // here for the other's transaction, then deletes nothing, and orders nothing (one order, one
    // certificate, however many replicas sweep).
    // The ids buried first (before any row lock is taken: records' claims under way wait for
    // nothing this holds): an event about the family that reaches records later indexes nothing
    // again, which would order its destruction a second time. Undone with the rest when another
    // replica ordered it first.
    eh_bus::inbox::bury(db, tenant, &ids.all())
        .await
        .map_err(|e| DbErr::Custom(e.to_string()))?;
    let fams = in_list(2, ids.family.len());
    let forgotten = exec(
        db,
        &format!(
            "DELETE FROM family_index WHERE tenant = $1 AND (family_id IN {fams} OR merged_into IN {fams})"
        ),
        values(tenant, &ids.family),
    )
    .await?;
    if forgotten == 0 {
        return Ok(false);
    }
    exec(
        db,
        "INSERT INTO destructions (tenant, id, rule, due_on, ordered_at, event_id, referrals, people, cases)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            tenant.into(),
            d.id.clone().into(),
            d.rule.clone().into(),
            d.due_on.to_string().into(),
            d.ordered_at.into(),
            d.event_id.clone().into(),
            d.referrals.into(),
            d.people.into(),
            d.cases.into(),
        ],
    )
    .await?;
    for sql in [
        format!("DELETE FROM person_index WHERE tenant = $1 AND family_id IN {fams}"),
        format!("DELETE FROM referral_index WHERE tenant = $1 AND family_id IN {fams}"),
        format!("DELETE FROM case_index WHERE tenant = $1 AND family_id IN {fams}"),
        format!("DELETE FROM legal_holds WHERE tenant = $1 AND family_id IN {fams}"),
    ] {
        exec(db, &sql, values(tenant, &ids.family)).await?;
    }
    if !ids.person.is_empty() {
        let people = in_list(2, ids.person.len());
        exec(
            db,
            &format!("DELETE FROM sar_log WHERE tenant = $1 AND person_id IN {people}"),
            values(tenant, &ids.person),
        )
        .await?;
    }
    Ok(true)
}

/// Records a service's confirmation (once); when every service has confirmed, the destruction is
/// complete and records' own outbox row of its order (which carried the family's ids) is
/// deleted. Completed now: the order's payloads (a `DestructionOrdered`: the ids, for the
/// caller's last step before its commit); else `None`.
pub async fn confirm(
    db: &impl ConnectionTrait,
    tenant: &str,
    destruction_id: &str,
    service: &str,
    rows: i64,
    at: DateTime<Utc>,
    services: &[&str],
) -> Result<Option<Vec<Vec<u8>>>, DbErr> {
    // One confirmation at a time per destruction: the order's row locked first. Without it the
    // last two services' confirmations, handled at once by two consumers, each saw the other's
    // row missing (neither committed yet) and neither completed the destruction — for good.
    if b(db) == DbBackend::Postgres {
        exec(
            db,
            "SELECT id FROM destructions WHERE tenant = $1 AND id = $2 FOR UPDATE",
            [tenant.into(), destruction_id.into()],
        )
        .await?;
    }
    exec(
        db,
        "INSERT INTO destruction_confirmations (tenant, destruction_id, service, rows_destroyed, confirmed_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        [
            tenant.into(),
            destruction_id.into(),
            service.into(),
            rows.into(),
            at.into(),
        ],
    )
    .await?;
    let confirmed = strings(
        db,
        "SELECT service FROM destruction_confirmations WHERE tenant = $1 AND destruction_id = $2",
        [tenant.into(), destruction_id.into()],
    )
    .await?;
    if !services.iter().all(|s| confirmed.iter().any(|c| c == s)) {
        return Ok(None);
    }
    let done = exec(
        db,
        "UPDATE destructions SET completed_at = $3 WHERE tenant = $1 AND id = $2 AND completed_at IS NULL",
        [tenant.into(), destruction_id.into(), at.into()],
    )
    .await?;
    if done != 1 {
        return Ok(None);
    }
    let event = strings(
        db,
        "SELECT event_id FROM destructions WHERE tenant = $1 AND id = $2",
        [tenant.into(), destruction_id.into()],
    )
    .await?;
    let mut orders = Vec::new();
    for e in event {
        for r in db
            .query_all_raw(stmt(
                b(db),
                "SELECT payload FROM eh_outbox WHERE id = $1",
                [e.clone().into()],
            ))
            .await?
        {
            orders.push(r.try_get_by_index::<Vec<u8>>(0)?);
        }
        exec(db, "DELETE FROM eh_outbox WHERE id = $1", [e.into()]).await?;
    }
    Ok(Some(orders))
}

/// Notes how many copies carrying the family's ids a completed destruction removed from the bus:
/// dead letters discarded, events erased.
pub async fn note_discarded(
    db: &impl ConnectionTrait,
    tenant: &str,
    destruction_id: &str,
    dead_letters: i64,
    event_copies: i64,
) -> Result<(), DbErr> {
    exec(
        db,
        "UPDATE destructions SET dead_letters = $3, event_copies = $4 WHERE tenant = $1 AND id = $2",
        [
            tenant.into(),
            destruction_id.into(),
            dead_letters.into(),
            event_copies.into(),
        ],
    )
    .await?;
    Ok(())
}

/// A council's destruction certificates, newest first.
pub async fn certificates(
    db: &impl ConnectionTrait,
    tenant: &str,
    services: &[&str],
) -> Result<Vec<eh_proto::records::v1::DestructionCertificate>, DbErr> {
    let rows = db
        .query_all_raw(stmt(
            b(db),
            "SELECT id, rule, due_on, ordered_at, completed_at, referrals, people, cases,
                    dead_letters, event_copies
             FROM destructions WHERE tenant = $1 ORDER BY ordered_at DESC, id",
            [tenant.into()],
        ))
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let id: String = r.try_get_by_index(0)?;
        let ordered_at: DateTime<Utc> = r.try_get_by_index(3)?;
        let completed_at: Option<DateTime<Utc>> = r.try_get_by_index(4)?;
        let confirmations = db
            .query_all_raw(stmt(
                b(db),
                "SELECT service, rows_destroyed FROM destruction_confirmations
                 WHERE tenant = $1 AND destruction_id = $2 ORDER BY service",
                [tenant.into(), id.clone().into()],
            ))
            .await?;
        let mut confirmed = Vec::new();
        let mut names = Vec::new();
        for c in confirmations {
            let s: String = c.try_get_by_index(0)?;
            let n: i64 = c.try_get_by_index(1)?;
            confirmed.push(format!("{s}:{n}"));
            names.push(s);
        }
        let count = |i: usize| -> Result<u32, DbErr> {
            let n: i64 = r.try_get_by_index(i)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        };
        let maybe = |i: usize| -> Result<Option<u32>, DbErr> {
            let n: Option<i64> = r.try_get_by_index(i)?;
            Ok(n.map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
        };
        out.push(eh_proto::records::v1::DestructionCertificate {
            certificate_id: id,
            tenant: tenant.into(),
            rule: r.try_get_by_index(1)?,
            due_on: r.try_get_by_index(2)?,
            ordered_at: ordered_at.to_rfc3339(),
            completed_at: completed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            confirmed,
            pending: services
                .iter()
                .filter(|s| !names.iter().any(|n| n == *s))
                .map(|s| s.to_string())
                .collect(),
            dead_letters_discarded: maybe(8)?,
            event_copies_erased: maybe(9)?,
            referrals: count(5)?,
            people: count(6)?,
            cases: count(7)?,
        });
    }
    Ok(out)
}
