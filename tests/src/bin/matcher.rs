//! The allocation matcher's latency against directories of 100, 1,000 and 10,000 services: p50 and
//! p99 of one decision (every service considered and explained), beside a baseline measured in the
//! same run — one pass over the same services checking coverage alone, the least any matcher must
//! do — and the ratio between them. `EH_MATCHER_ROUNDS` decisions per size (default 2,000).
use eh_allocation::domain::matching::{Candidate, Family, Rules, decide};
use eh_allocation::domain::{Kind, NEEDS, Period, Postcode, Terms};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

fn directory(n: usize, seed: &mut fastrand::Rng) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            let commissioned = i % 4 == 0;
            let district = format!("WR{}", seed.usize(1..16));
            let needs: Vec<String> = if commissioned {
                (0..seed.usize(1..4))
                    .map(|_| NEEDS[seed.usize(0..NEEDS.len())].to_string())
                    .collect()
            } else {
                Vec::new()
            };
            Candidate {
                id: format!("svc-{i:05}"),
                name: format!("Service {i}"),
                active: i % 50 != 0,
                inactive_reason: "status inactive".into(),
                minimum_age: Some(seed.u32(0..6)),
                maximum_age: Some(seed.u32(11..19)),
                taxonomy_needs: Vec::new(),
                terms: Some(Terms {
                    kind: if commissioned {
                        Kind::Commissioned
                    } else {
                        Kind::EarlyHelpTeam
                    },
                    coverage: vec![district, "Worcester City".into()],
                    needs,
                    programmes: if commissioned {
                        vec!["brfc".into()]
                    } else {
                        Vec::new()
                    },
                    capacity: seed.u32(5..40),
                    contract_volume: commissioned.then(|| seed.u32(10..60)),
                    contract_period: Period::Quarter,
                    offer_email: String::new(),
                    agency: String::new(),
                }),
                open_cases: seed.u32(0..30),
                period_cases: seed.u32(0..40),
                declined: false,
            }
        })
        .collect()
}

fn family(seed: &mut fastrand::Rng) -> Family {
    Family {
        postcode: format!("WR{} {}AB", seed.usize(1..16), seed.usize(1..9)),
        needs: (0..seed.usize(1..4))
            .map(|_| NEEDS[seed.usize(0..NEEDS.len())].to_string())
            .collect(),
        programmes: if seed.bool() {
            vec!["brfc".into()]
        } else {
            Vec::new()
        },
        children_ages: (0..seed.usize(1..4)).map(|_| seed.u32(0..18)).collect(),
    }
}

fn main() {
    let rounds: usize = std::env::var("EH_MATCHER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let rules = Rules {
        rule_version: "bench".into(),
        default_kind: Kind::EarlyHelpTeam,
        programmes: vec![("brfc".into(), Kind::Commissioned)],
        localities: BTreeMap::from([(
            "Worcester City".to_string(),
            vec!["WR1".into(), "WR2".into(), "WR3".into()],
        )]),
    };
    println!("matcher: one decision over the whole directory, {rounds} decisions per size");
    println!(
        "| services | matcher p50 | matcher p99 | baseline p50 (coverage scan) | p50 ratio | ranked (mean) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for n in [100usize, 1_000, 10_000] {
        let mut seed = fastrand::Rng::with_seed(7);
        let services = directory(n, &mut seed);
        let families: Vec<Family> = (0..rounds).map(|_| family(&mut seed)).collect();
        let mut m = Histogram::<u64>::new(3).expect("histogram");
        let mut b = Histogram::<u64>::new(3).expect("histogram");
        let mut ranked = 0usize;
        for f in &families {
            // Baseline: one pass, coverage only.
            let t = Instant::now();
            let pc = Postcode::parse(&f.postcode);
            let covered = services
                .iter()
                .filter(|c| {
                    pc.as_ref().is_some_and(|p| {
                        c.terms
                            .as_ref()
                            .is_some_and(|t| t.coverage.iter().any(|e| p.within(e)))
                    })
                })
                .count();
            black_box(covered);
            b.record(t.elapsed().as_nanos() as u64).ok();
            let t = Instant::now();
            let d = decide(f, &rules, &services);
            m.record(t.elapsed().as_nanos() as u64).ok();
            ranked += d.placed.iter().filter(|p| !p.excluded()).count();
            black_box(d);
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        println!(
            "| {n} | {:.1} µs | {:.1} µs | {:.1} µs | {:.1}× | {:.1} |",
            us(m.value_at_quantile(0.5)),
            us(m.value_at_quantile(0.99)),
            us(b.value_at_quantile(0.5)),
            m.value_at_quantile(0.5) as f64 / b.value_at_quantile(0.5).max(1) as f64,
            ranked as f64 / rounds as f64
        );
    }
}
