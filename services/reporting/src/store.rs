//! Reporting's own tables: the read model, one narrow table per kind of fact, each row a fact one
//! event told (keyed by the event's id, so the same event can never be two rows) — ids, instants
//! and codes, never a name, a date of birth, an address or free text. A report loads a council's
//! facts and the domain computes every figure from them, so the order the events arrived in does
//! not matter. Every row carries the tenant and every query filters by it.
use crate::domain::{
    CaseAt, Closure, Facts, Finalised, FollowUp, Referral, Score, Screening, Transition,
};
use chrono::{DateTime, Utc};
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};

pub const MIGRATIONS: &[Migration] = &[Migration {
    owner: "reporting",
    version: 1,
    name: "the reporting read model: referrals, screenings, case transitions, allocations, waits, assessments, scores, closures, follow-ups",
    sql: "CREATE TABLE referrals (
            tenant TEXT NOT NULL,
            referral_id TEXT NOT NULL,
            family_id TEXT NOT NULL,
            received_at {ts} NOT NULL,
            source_system TEXT NOT NULL,
            route TEXT NOT NULL,
            locality TEXT NOT NULL,
            needs TEXT NOT NULL,
            PRIMARY KEY (tenant, referral_id)
          );
          CREATE TABLE screenings (
            tenant TEXT NOT NULL,
            event_id TEXT NOT NULL,
            referral_id TEXT NOT NULL,
            case_id TEXT NOT NULL,
            outcome TEXT NOT NULL,
            decided_at {ts} NOT NULL,
            PRIMARY KEY (tenant, event_id)
          );
          CREATE TABLE case_transitions (
            tenant TEXT NOT NULL,
            event_id TEXT NOT NULL,
            case_id TEXT NOT NULL,
            family_id TEXT NOT NULL,
            referral_id TEXT NOT NULL,
            from_state TEXT NOT NULL,
            to_state TEXT NOT NULL,
            at {ts} NOT NULL,
            PRIMARY KEY (tenant, event_id)
          );
          CREATE TABLE case_moments (
            tenant TEXT NOT NULL,
            event_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            case_id TEXT NOT NULL,
            at {ts} NOT NULL,
            PRIMARY KEY (tenant, event_id)
          );
          CREATE TABLE assessments_finalised (
            tenant TEXT NOT NULL,
            event_id TEXT NOT NULL,
            case_id TEXT NOT NULL,
            version {bigint} NOT NULL,
            at {ts} NOT NULL,
            PRIMARY KEY (tenant, event_id)
          );
          CREATE TABLE scores (
            tenant TEXT NOT NULL,
            event_id TEXT NOT NULL,
            case_id TEXT NOT NULL,
            stage TEXT NOT NULL,
            headline TEXT NOT NULL,
            score {bigint} NOT NULL,
            at {ts} NOT NULL,
            PRIMARY KEY (tenant, event_id, headline)
          );
          CREATE TABLE closures (
            tenant TEXT NOT NULL,
            event_id TEXT NOT NULL,
            case_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            outcomes TEXT NOT NULL,
            at {ts} NOT NULL,
            PRIMARY KEY (tenant, event_id)
          );
          CREATE TABLE follow_ups (
            tenant TEXT NOT NULL,
            event_id TEXT NOT NULL,
            case_id TEXT NOT NULL,
            sustained BOOLEAN NOT NULL,
            at {ts} NOT NULL,
            PRIMARY KEY (tenant, event_id)
          );",
}];

/// `case_moments.kind` of an accepted offer (allocation).
pub const OFFER_ACCEPTED: &str = "offer_accepted";
/// `case_moments.kind` of a case joining the waiting list.
pub const WAITING: &str = "waiting";

/// One fact an event told, as it is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Referral {
        family_id: String,
        referral: Referral,
    },
    Screening(Screening),
    Transition {
        family_id: String,
        transition: Transition,
    },
    /// [`OFFER_ACCEPTED`] or [`WAITING`].
    Moment {
        kind: &'static str,
        moment: CaseAt,
    },
    Finalised(Finalised),
    Scores(Vec<Score>),
    Closure(Closure),
    FollowUp(FollowUp),
}

fn db_err(e: impl std::fmt::Display) -> DbErr {
    DbErr::Custom(e.to_string())
}

/// Keeps `fact`, told by event `event_id` of `tenant` (a second telling of the same event changes
/// nothing).
pub async fn record(
    db: &impl ConnectionTrait,
    tenant: &str,
    event_id: &str,
    fact: &Fact,
) -> Result<(), DbErr> {
    let b = db.get_database_backend();
    let (sql, values): (&str, Vec<Value>) = match fact {
        Fact::Referral {
            family_id,
            referral: r,
        } => (
            "INSERT INTO referrals (tenant, referral_id, family_id, received_at, source_system,
               route, locality, needs)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            vec![
                tenant.into(),
                r.referral_id.clone().into(),
                family_id.clone().into(),
                r.received_at.into(),
                r.source_system.clone().into(),
                r.route.clone().into(),
                r.locality.clone().into(),
                serde_json::to_string(&r.needs).map_err(db_err)?.into(),
            ],
        ),
        Fact::Screening(s) => (
            "INSERT INTO screenings (tenant, event_id, referral_id, case_id, outcome, decided_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            vec![
                tenant.into(),
                event_id.into(),
                s.referral_id.clone().into(),
                s.case_id.clone().into(),
                s.outcome.clone().into(),
                s.decided_at.into(),
            ],
        ),
        Fact::Transition {
            family_id,
            transition: t,
        } => (
            "INSERT INTO case_transitions (tenant, event_id, case_id, family_id, referral_id,
               from_state, to_state, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            vec![
                tenant.into(),
                event_id.into(),
                t.case_id.clone().into(),
                family_id.clone().into(),
                t.referral_id.clone().into(),
                t.from_state.clone().into(),
                t.to_state.clone().into(),
                t.at.into(),
            ],
        ),
        Fact::Moment { kind, moment } => (
            "INSERT INTO case_moments (tenant, event_id, kind, case_id, at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            vec![
                tenant.into(),
                event_id.into(),
                (*kind).into(),
                moment.case_id.clone().into(),
                moment.at.into(),
            ],
        ),
        Fact::Finalised(f) => (
            "INSERT INTO assessments_finalised (tenant, event_id, case_id, version, at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            vec![
                tenant.into(),
                event_id.into(),
                f.case_id.clone().into(),
                i64::from(f.version).into(),
                f.at.into(),
            ],
        ),
        Fact::Scores(scores) => {
            for s in scores {
                db.execute_raw(stmt(
                    b,
                    "INSERT INTO scores (tenant, event_id, case_id, stage, headline, score, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    [
                        tenant.into(),
                        event_id.into(),
                        s.case_id.clone().into(),
                        s.stage.clone().into(),
                        s.headline.clone().into(),
                        i64::from(s.score).into(),
                        s.at.into(),
                    ],
                ))
                .await?;
            }
            return Ok(());
        }
        Fact::Closure(c) => (
            "INSERT INTO closures (tenant, event_id, case_id, kind, outcomes, at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            vec![
                tenant.into(),
                event_id.into(),
                c.case_id.clone().into(),
                c.kind.clone().into(),
                serde_json::to_string(&c.outcomes).map_err(db_err)?.into(),
                c.at.into(),
            ],
        ),
        Fact::FollowUp(f) => (
            "INSERT INTO follow_ups (tenant, event_id, case_id, sustained, at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            vec![
                tenant.into(),
                event_id.into(),
                f.case_id.clone().into(),
                f.sustained.into(),
                f.at.into(),
            ],
        ),
    };
    db.execute_raw(stmt(b, sql, values)).await?;
    Ok(())
}

fn text(r: &QueryResult, i: usize) -> Result<String, DbErr> {
    r.try_get_by_index(i)
}

fn time(r: &QueryResult, i: usize) -> Result<DateTime<Utc>, DbErr> {
    r.try_get_by_index(i)
}

fn count(r: &QueryResult, i: usize) -> Result<u32, DbErr> {
    let n: i64 = r.try_get_by_index(i)?;
    u32::try_from(n).map_err(db_err)
}

async fn rows(
    db: &impl ConnectionTrait,
    sql: &str,
    tenant: &str,
) -> Result<Vec<QueryResult>, DbErr> {
    db.query_all_raw(stmt(db.get_database_backend(), sql, [tenant.into()]))
        .await
}

/// Every fact held for `tenant`.
pub async fn facts(db: &impl ConnectionTrait, tenant: &str) -> Result<Facts, DbErr> {
    let mut f = Facts::default();
    for r in rows(
        db,
        "SELECT referral_id, received_at, source_system, route, locality, needs
         FROM referrals WHERE tenant = $1",
        tenant,
    )
    .await?
    {
        f.referrals.push(Referral {
            referral_id: text(&r, 0)?,
            received_at: time(&r, 1)?,
            source_system: text(&r, 2)?,
            route: text(&r, 3)?,
            locality: text(&r, 4)?,
            needs: serde_json::from_str(&text(&r, 5)?).map_err(db_err)?,
        });
    }
    for r in rows(
        db,
        "SELECT referral_id, case_id, outcome, decided_at FROM screenings WHERE tenant = $1",
        tenant,
    )
    .await?
    {
        f.screenings.push(Screening {
            referral_id: text(&r, 0)?,
            case_id: text(&r, 1)?,
            outcome: text(&r, 2)?,
            decided_at: time(&r, 3)?,
        });
    }
    for r in rows(
        db,
        "SELECT case_id, referral_id, from_state, to_state, at FROM case_transitions
         WHERE tenant = $1",
        tenant,
    )
    .await?
    {
        f.transitions.push(Transition {
            case_id: text(&r, 0)?,
            referral_id: text(&r, 1)?,
            from_state: text(&r, 2)?,
            to_state: text(&r, 3)?,
            at: time(&r, 4)?,
        });
    }
    for r in rows(
        db,
        "SELECT kind, case_id, at FROM case_moments WHERE tenant = $1",
        tenant,
    )
    .await?
    {
        let moment = CaseAt {
            case_id: text(&r, 1)?,
            at: time(&r, 2)?,
        };
        match text(&r, 0)?.as_str() {
            OFFER_ACCEPTED => f.offers_accepted.push(moment),
            WAITING => f.waits.push(moment),
            other => return Err(db_err(format!("case_moments: unknown kind {other:?}"))),
        }
    }
    for r in rows(
        db,
        "SELECT case_id, version, at FROM assessments_finalised WHERE tenant = $1",
        tenant,
    )
    .await?
    {
        f.finalised.push(Finalised {
            case_id: text(&r, 0)?,
            version: count(&r, 1)?,
            at: time(&r, 2)?,
        });
    }
    for r in rows(
        db,
        "SELECT case_id, stage, headline, score, at FROM scores WHERE tenant = $1",
        tenant,
    )
    .await?
    {
        f.scores.push(Score {
            case_id: text(&r, 0)?,
            stage: text(&r, 1)?,
            headline: text(&r, 2)?,
            score: count(&r, 3)?,
            at: time(&r, 4)?,
        });
    }
    for r in rows(
        db,
        "SELECT case_id, kind, outcomes, at FROM closures WHERE tenant = $1",
        tenant,
    )
    .await?
    {
        f.closures.push(Closure {
            case_id: text(&r, 0)?,
            kind: text(&r, 1)?,
            outcomes: serde_json::from_str(&text(&r, 2)?).map_err(db_err)?,
            at: time(&r, 3)?,
        });
    }
    for r in rows(
        db,
        "SELECT case_id, sustained, at FROM follow_ups WHERE tenant = $1",
        tenant,
    )
    .await?
    {
        f.follow_ups.push(FollowUp {
            case_id: text(&r, 0)?,
            sustained: r.try_get_by_index(1)?,
            at: time(&r, 2)?,
        });
    }
    Ok(f)
}
