//! Person-matching latency against 10,000 / 100,000 / 1,000,000 people already held by one
//! council. Prints figures; asserts nothing about time.
//!
//!     cargo bench -p eh-intake --bench matching            # all three sizes
//!     cargo bench -p eh-intake --bench matching -- 10000   # chosen sizes
//!
//! The people are synthetic and deterministic: families of one or two adults and one to four
//! children sharing a Worcestershire postcode, surnames skewed towards the common ones (Smith
//! is about 5% of people, four times its real share, so blocks are larger than in life), given
//! names from the most common lists, children born over the last 18 years. Queries mix exact
//! NHS numbers, near-duplicates (nicknames, typos, transposed or wrong-year dates, accents,
//! hyphens, moves) and people who are not held.
mod world;

use eh_intake::domain::matching::{MatchDecision, MatchPolicy, PersonIndex};
use std::hint::black_box;
use std::time::{Duration, Instant};
use world::{QueryKind, World, percentile, queries, rss_kib, us};

const QUERIES: usize = 2_000;
const WARM_UP: usize = 200;

struct Figures {
    size: usize,
    p50: Duration,
    p99: Duration,
}

fn run(world: &World, size: usize, policy: &MatchPolicy) -> Figures {
    let rss_before = rss_kib("VmRSS:").unwrap_or(0);
    let mut index = PersonIndex::new();
    let mut families = 0u64;
    let mut insert_time = Duration::ZERO;
    let started = Instant::now();
    'fill: loop {
        for person in world.family(families) {
            if index.len() >= size {
                break 'fill;
            }
            let t = Instant::now();
            index.insert(person);
            insert_time += t.elapsed();
        }
        families += 1;
    }
    let build = started.elapsed();
    let rss_after = rss_kib("VmRSS:").unwrap_or(0);

    let qs = queries(world, families, 0xC0FFEE ^ size as u64, QUERIES + WARM_UP);
    for q in &qs[..WARM_UP] {
        black_box(index.find(black_box(&q.details), policy));
    }
    let mut latencies = Vec::with_capacity(QUERIES);
    let mut by_kind: Vec<(QueryKind, Duration)> = Vec::with_capacity(QUERIES);
    let mut read = Vec::with_capacity(QUERIES);
    // [exact, attach right, attach wrong, candidates incl. right, candidates without, new]
    let mut tally = [[0usize; 6]; 3];
    let mut false_patterns: std::collections::BTreeMap<String, usize> = Default::default();
    let mut grey_patterns: std::collections::BTreeMap<String, usize> = Default::default();
    // MATCH_DEBUG=1 prints every case counted in the patterns below.
    let debug = std::env::var_os("MATCH_DEBUG").is_some();
    for q in &qs[WARM_UP..] {
        let t = Instant::now();
        let r = black_box(index.find(black_box(&q.details), policy));
        let elapsed = t.elapsed();
        latencies.push(elapsed);
        by_kind.push((q.kind, elapsed));
        read.push(index.records_read(&q.details));
        let right = |id: &str| q.truth.as_deref() == Some(id);
        let col = match &r.decision {
            MatchDecision::Exact { person_id, .. } if right(person_id) => 0,
            MatchDecision::Exact { .. } => 2,
            MatchDecision::Attach { person_id, .. } if right(person_id) => 1,
            MatchDecision::Attach { .. } => 2,
            MatchDecision::Candidates { candidates }
                if candidates.iter().any(|c| right(&c.person_id)) =>
            {
                3
            }
            MatchDecision::Candidates { .. } => 4,
            MatchDecision::New => 5,
        };
        let row = match q.kind {
            QueryKind::ExactNhs => 0,
            QueryKind::NearDuplicate => 1,
            QueryKind::NotHeld => 2,
        };
        tally[row][col] += 1;
        // What the practitioner would see: the best candidate's field verdicts, for strangers
        // who got candidates and for near-duplicates that were not attached.
        let shown = match q.kind {
            QueryKind::NotHeld => r.candidates.first(),
            QueryKind::NearDuplicate if col == 3 => {
                r.candidates.iter().find(|c| right(&c.person_id))
            }
            _ => None,
        };
        if let Some(c) = shown {
            let sig: Vec<String> = c
                .score
                .fields
                .iter()
                .map(|f| format!("{:?}:{:?}", f.field, f.kind))
                .collect();
            if debug {
                println!(
                    "    query {:?}\n     held {:?}\n     best {:?}",
                    q.details, q.held, c.score
                );
            }
            let map = if q.kind == QueryKind::NotHeld {
                &mut false_patterns
            } else {
                &mut grey_patterns
            };
            *map.entry(sig.join(" ")).or_insert(0usize) += 1;
        }
    }
    latencies.sort_unstable();
    read.sort_unstable();
    let mean_read = read.iter().sum::<usize>() as f64 / read.len().max(1) as f64;

    println!("== {size} people held ({families} families) ==");
    println!(
        "  build: {:.2} s total, {:.2} s in PersonIndex::insert ({:.2} µs/person); RSS +{} MiB (now {} MiB, peak {} MiB)",
        build.as_secs_f64(),
        insert_time.as_secs_f64(),
        us(insert_time) / size as f64,
        rss_after.saturating_sub(rss_before) / 1024,
        rss_after / 1024,
        rss_kib("VmHWM:").unwrap_or(0) / 1024,
    );
    println!(
        "  find ({} queries): p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs  max {:.1} µs",
        latencies.len(),
        us(percentile(&latencies, 0.50)),
        us(percentile(&latencies, 0.90)),
        us(percentile(&latencies, 0.99)),
        us(percentile(&latencies, 1.0)),
    );
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
            "    {kind:?}: n={} p50 {:.1} µs p99 {:.1} µs",
            l.len(),
            us(percentile(&l, 0.5)),
            us(percentile(&l, 0.99))
        );
    }
    println!(
        "  records read per query (blocks): mean {:.0}, p50 {}, p99 {}, max {}",
        mean_read,
        read.get(read.len() / 2).copied().unwrap_or(0),
        read.get((read.len() * 99).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or(0),
        read.last().copied().unwrap_or(0)
    );
    println!(
        "  decisions   [exact, attach right, attach WRONG, candidates incl. right, candidates other, new]"
    );
    println!("    ExactNhs      {:?}", tally[0]);
    println!("    NearDuplicate {:?}", tally[1]);
    println!("    NotHeld       {:?}", tally[2]);
    for (label, map) in [
        ("near-duplicate left to a practitioner", grey_patterns),
        ("not held, best candidate", false_patterns),
    ] {
        let mut patterns: Vec<(usize, String)> = map.into_iter().map(|(k, v)| (v, k)).collect();
        patterns.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (n, p) in patterns.iter().take(4) {
            println!("      {label} x{n}: {p}");
        }
    }
    Figures {
        size,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any numeric arguments choose the sizes.
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000, 1_000_000];
    }
    let world = World::new();
    let policy = MatchPolicy::default();
    let figures: Vec<Figures> = sizes.iter().map(|&n| run(&world, n, &policy)).collect();
    if let Some(base) = figures.first() {
        println!("== growth vs {} ==", base.size);
        for f in &figures {
            println!(
                "  {:>9} people: p50 {:>8.1} µs (x{:.2})  p99 {:>8.1} µs (x{:.2})",
                f.size,
                us(f.p50),
                us(f.p50) / us(base.p50),
                us(f.p99),
                us(f.p99) / us(base.p99),
            );
        }
        println!("  goal: p99 under 20 ms at 1,000,000 people");
    }
}
