//! Matching latency through the wired path, as intake runs it: people held in the database
//! (SQLite by default, PostgreSQL with `--postgres`), the tenant's index loaded from there, and
//! for each referral the tenant's people lock, the refresh of the index from the database by
//! watermark, and the match of every person named. Prints figures; asserts nothing about time.
//!
//!     cargo bench -p eh-intake --bench wired                         # 10k, 100k and 1M on SQLite
//!     cargo bench -p eh-intake --bench wired -- 10000 100000         # chosen sizes
//!     cargo bench -p eh-intake --bench wired -- --postgres 100000    # on PostgreSQL (eh_testkit)
//!
//! The people are those of the `matching` bench (see `world/mod.rs`), written straight into the
//! `people` table. Each referral names one query person (an exact NHS number, a near-duplicate
//! or someone not held) as the child, and an adult of the same family without a date of birth,
//! as referrals usually do. Two figures per referral:
//! - **match**: lock + refresh + match of both people (`HeldPeople::match_referral`), then the
//!   transaction is rolled back;
//! - **submit**: `Intake::submit` end to end and committed (match, people, decisions,
//!   candidates, outbox), so the next referral's refresh reads what it stored.
mod world;

use chrono::{TimeZone, Utc};
use eh_bus::ServiceContext;
use eh_bus::embedded::EmbeddedTransport;
use eh_intake::domain::contract;
use eh_intake::domain::matching::{HeldPerson, MatchDecision};
use eh_intake::handlers::{Door, Intake, Outcome};
use eh_platform::clock::ManualClock;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use world::{QueryKind, World, percentile, queries, rss_kib, us};

const REFERRALS: usize = 1_000;
const WARM_UP: usize = 100;
const TENANT: &str = "worcs";
/// People per INSERT statement when filling the table.
const BATCH: usize = 1_000;

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn database(
    postgres: bool,
    dir: &std::path::Path,
    size: usize,
) -> Result<eh_store::Location, Error> {
    Ok(if postgres {
        eh_store::Location {
            url: eh_testkit::fresh_database()
                .await
                .map_err(|e| e.to_string())?,
            schema: Some("intake".into()),
            max_connections: 4,
        }
    } else {
        eh_store::Location {
            url: format!(
                "sqlite://{}?mode=rwc",
                dir.join(format!("intake-{size}.sqlite")).display()
            ),
            schema: None,
            max_connections: 1,
        }
    })
}

/// Born on or before this day: 18 or over on the synthetic council's "today".
fn adult_before() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2008, 11, 20).unwrap_or_default()
}

/// Writes `size` people (whole families) of the synthetic council; the number of families.
async fn fill(db: &DatabaseConnection, world: &World, size: usize) -> Result<u64, Error> {
    let b = db.get_database_backend();
    let now = Utc::now();
    let mut families = 0u64;
    let mut held = 0usize;
    while held < size {
        let txn = eh_store::begin(db).await?;
        let mut fam_rows: Vec<sea_orm::Value> = Vec::new();
        let mut rows: Vec<HeldPerson> = Vec::new();
        while rows.len() < BATCH && held + rows.len() < size {
            let people = world.family(families);
            if let Some(first) = people.first() {
                fam_rows.extend([
                    first.family_id.clone().into(),
                    TENANT.into(),
                    first.details.postcode.clone().into(),
                    now.into(),
                ]);
            }
            let room = size - held - rows.len();
            rows.extend(people.into_iter().take(room));
            families += 1;
        }
        let marks = |n: usize, width: usize| {
            (0..n)
                .map(|r| {
                    let cols: Vec<String> =
                        (1..=width).map(|c| format!("${}", r * width + c)).collect();
                    format!("({})", cols.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let n_fam = fam_rows.len() / 4;
        txn.execute_raw(eh_store::stmt(
            b,
            &format!(
                "INSERT INTO families (id, tenant, postcode, created_at) VALUES {}",
                marks(n_fam, 4)
            ),
            fam_rows,
        ))
        .await?;
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(rows.len() * 11);
        for p in &rows {
            // Kind does not take part in matching; children are the under-18s.
            let kind = match p.details.date_of_birth {
                Some(d) if d > adult_before() => "child",
                _ => "adult",
            };
            values.extend([
                p.person_id.clone().into(),
                TENANT.into(),
                p.family_id.clone().into(),
                kind.into(),
                p.details.given_name.clone().into(),
                p.details.family_name.clone().into(),
                p.details
                    .date_of_birth
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .into(),
                p.details.nhs_number.clone().into(),
                p.details.upn.clone().into(),
                p.details.postcode.clone().into(),
                now.into(),
            ]);
        }
        txn.execute_raw(eh_store::stmt(
            b,
            &format!(
                "INSERT INTO people (id, tenant, family_id, kind, given_name, family_name,
                   date_of_birth, nhs_number, upn, postcode, created_at, version) VALUES {}",
                // Every row at version 1.
                marks(rows.len(), 11).replace(')', ", 1)")
            ),
            values,
        ))
        .await?;
        eh_store::commit(txn).await?;
        held += rows.len();
    }
    db.execute_raw(eh_store::stmt(
        b,
        "INSERT INTO people_versions (tenant, version) VALUES ($1, 1)",
        [TENANT.into()],
    ))
    .await?;
    // What autovacuum does after a bulk load: without statistics the planner sorts the whole
    // tenant for each page of the index load.
    db.execute_unprepared("ANALYZE people").await?;
    Ok(families)
}

fn person_json(d: &eh_intake::domain::matching::PersonDetails) -> Value {
    let mut p = json!({"given_name": d.given_name, "family_name": d.family_name});
    if let Some(dob) = d.date_of_birth {
        p["date_of_birth"] = json!(dob.format("%Y-%m-%d").to_string());
    }
    if let Some(n) = &d.nhs_number {
        p["nhs_number"] = json!(n);
    }
    if let Some(u) = &d.upn {
        p["upn"] = json!(u);
    }
    p
}

/// A referral naming the query person as the child and, as referrals usually do, another adult
/// of their family without a date of birth (`None` when the query has no date of birth, which
/// the contract requires of a child).
fn referral(
    world: &World,
    q: &world::Query,
    reference: &str,
) -> Option<(Value, eh_proto::intake::v1::Referral)> {
    q.details.date_of_birth?;
    let child = person_json(&q.details);
    let family = world.family(q.family);
    let adults: Vec<Value> = family
        .iter()
        .take(2)
        .filter(|p| q.truth.as_deref() != Some(p.person_id.as_str()))
        .filter(|p| p.details.date_of_birth.is_some_and(|d| d <= adult_before()))
        .take(1)
        .map(|a| {
            json!({"given_name": a.details.given_name, "family_name": a.details.family_name,
                   "relationship": "mother"})
        })
        .collect();
    let mut doc = json!({
        "schema": "earlyhelp.referral.v1",
        "source": {"system": "bench", "reference": reference},
        "submitted_at": "2026-11-20T09:30:00Z",
        "route": "practitioner",
        "referrer": {"name": "A Teacher", "agency": "education"},
        "children": [child],
        "family_members": adults,
        "needs": ["education"],
        "significant_harm_risk": false,
        "consent": {"obtained": true, "method": "signed", "date": "2026-11-19"}
    });
    if let Some(p) = &q.details.postcode {
        doc["address"] = json!({"postcode": p});
    }
    let typed = contract::validate(&doc).ok()?;
    Some((doc, typed))
}

async fn context(
    location: &eh_store::Location,
    dir: &std::path::Path,
) -> Result<ServiceContext, Error> {
    let settings = eh_testkit::settings(false, dir, None, None)
        .await
        .map_err(|e| e.to_string())?;
    let db = eh_store::connect(location).await?;
    let bus_db = eh_store::connect(&eh_store::Location {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.join(format!("bus-{}.sqlite", uuid::Uuid::new_v4().simple()))
                .display()
        ),
        schema: None,
        max_connections: 1,
    })
    .await?;
    Ok(ServiceContext::new(
        eh_intake::SERVICE,
        Arc::new(settings),
        db,
        Arc::new(EmbeddedTransport::open(bus_db).await?),
        Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0)
                .single()
                .unwrap_or_default(),
        )),
    ))
}

fn line(label: &str, mut l: Vec<Duration>) {
    l.sort_unstable();
    println!(
        "  {label} ({} referrals): p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        l.len(),
        us(percentile(&l, 0.50)) / 1e3,
        us(percentile(&l, 0.90)) / 1e3,
        us(percentile(&l, 0.99)) / 1e3,
        us(percentile(&l, 1.0)) / 1e3,
    );
}

async fn run(world: &World, size: usize, postgres: bool) -> Result<(Duration, Duration), Error> {
    let dir = tempfile::tempdir()?;
    let location = database(postgres, dir.path(), size).await?;
    let ctx = context(&location, dir.path()).await?;
    eh_store::migrate(&ctx.db, "intake", &eh_intake::migrations()).await?;
    let t = Instant::now();
    let families = fill(&ctx.db, world, size).await?;
    let filled = t.elapsed();
    let intake = Intake::new(ctx.clone());
    let rss_before = rss_kib("VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let loaded = intake.people.warm(&ctx.db, TENANT).await?;
    let warm = t.elapsed();
    let rss_after = rss_kib("VmRSS:").unwrap_or(0);
    println!(
        "== {size} people held ({families} families) on {} ==",
        if postgres { "PostgreSQL" } else { "SQLite" }
    );
    println!(
        "  fill {:.1} s; index loaded from the database in {:.2} s ({loaded} people, RSS +{} MiB)",
        filled.as_secs_f64(),
        warm.as_secs_f64(),
        rss_after.saturating_sub(rss_before) / 1024
    );

    let qs = queries(world, families, 0x5EED ^ size as u64, REFERRALS + WARM_UP);
    let mut matched = Vec::with_capacity(REFERRALS);
    let mut submitted = Vec::with_capacity(REFERRALS);
    let mut tally = [0usize; 4]; // [attached, candidates, new, not stored]
    let mut by_kind: Vec<(QueryKind, Duration)> = Vec::new();
    for (i, q) in qs.iter().enumerate() {
        let Some((doc, typed)) = referral(world, q, &format!("B-{size}-{i}")) else {
            continue;
        };
        // Matching alone, as submit runs it, then rolled back.
        let txn = eh_store::begin(&ctx.db).await?;
        let t = Instant::now();
        let stamp = eh_intake::store::people::lock_people(&txn, TENANT).await?;
        let m = intake
            .people
            .match_referral(&txn, TENANT, &typed, stamp)
            .await?;
        let match_time = t.elapsed();
        txn.rollback().await?;
        // The whole submission, committed.
        let t = Instant::now();
        let outcome = intake
            .submit(
                TENANT,
                Ok((doc, typed)),
                Door {
                    actor: "system:bench",
                    inbound: None,
                },
            )
            .await?;
        let submit_time = t.elapsed();
        if i < WARM_UP {
            continue;
        }
        matched.push(match_time);
        submitted.push(submit_time);
        by_kind.push((q.kind, match_time));
        let child = m.people.first().map(|p| &p.result.decision);
        tally[match (child, &outcome) {
            (_, Outcome::Duplicate { .. } | Outcome::Rejected(_) | Outcome::AlreadyHandled) => 3,
            (Some(MatchDecision::Exact { .. } | MatchDecision::Attach { .. }), _) => 0,
            (Some(MatchDecision::Candidates { .. }), _) => 1,
            _ => 2,
        }] += 1;
    }
    let p99 = {
        let mut l = matched.clone();
        l.sort_unstable();
        percentile(&l, 0.99)
    };
    let p50 = {
        let mut l = matched.clone();
        l.sort_unstable();
        percentile(&l, 0.50)
    };
    line("match (lock + refresh + 2 people)", matched);
    for kind in [
        QueryKind::ExactNhs,
        QueryKind::NearDuplicate,
        QueryKind::NotHeld,
    ] {
        let mut l: Vec<Duration> = by_kind
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, d)| *d)
            .collect();
        l.sort_unstable();
        println!(
            "    {kind:?}: n={} p50 {:.2} ms p99 {:.2} ms",
            l.len(),
            us(percentile(&l, 0.5)) / 1e3,
            us(percentile(&l, 0.99)) / 1e3
        );
    }
    line("submit (end to end, committed)", submitted);
    println!(
        "  child decisions [attached, candidates, new, not stored]: {tally:?}; index now {} people",
        intake.people.held(TENANT).await.unwrap_or(0)
    );
    Ok((p50, p99))
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let postgres = args.iter().any(|a| a == "--postgres");
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000, 1_000_000];
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let world = World::new();
    let mut figures = Vec::new();
    for size in sizes {
        figures.push((size, rt.block_on(run(&world, size, postgres))?));
    }
    println!("== match latency through the wired path ==");
    for (size, (p50, p99)) in figures {
        println!(
            "  {size:>9} people: p50 {:>7.2} ms  p99 {:>7.2} ms",
            us(p50) / 1e3,
            us(p99) / 1e3
        );
    }
    println!("  goal: p99 under 20 ms at 1,000,000 people");
    Ok(())
}
