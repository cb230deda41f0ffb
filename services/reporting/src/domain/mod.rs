//! Reporting's rules, with no I/O: what each figure of a council's report counts, from the facts
//! the read model keeps (ids, instants, codes — never a name, an address or free text).
//!
//! The period is a span of UK dates, both ends included; an instant belongs to it when its date on
//! a UK clock does. Service levels are counted in working days on the council's calendar exactly
//! as casework's clocks count them (`WorkingCalendar::overdue_from`: something due N working days
//! after an instant is late from the UK midnight that ends the Nth working day after it).
//!
//! - **Timeliness.** Requests screened in time: the referrals received in the period that have been
//!   screened, and of them those whose first decision came before the screening service level
//!   (`service_levels.screening_decision_days`, 1) ran out, counted from the referral's arrival
//!   (DOMAIN.md: "front-door screening decision after a request arrives"); and those still
//!   awaiting a decision (not those whose case closed or was stepped up without one). EHAs
//!   finalised in time:
//!   the cases whose assessment was first finalised in the period, and of them those finalised
//!   before `service_levels.assessment_days` (30) ran out, counted from allocation (the offer
//!   accepted — the moment casework starts the same clock). TAFs on time: unavailable until there
//!   is a meetings service.
//! - **Demand.** The referrals received in the period: all of them, by source system, by route, by
//!   need (a referral naming two needs counts under each) and by locality (the council's
//!   localities, from the family's postcode when the referral arrived).
//! - **Outcomes.** The closures recorded in the period (the latest per case): by kind; per headline
//!   problem the share met; every outcome met. Distance travelled per headline: for each case whose
//!   latest score of that headline was recorded in the period and that has an earlier one, latest
//!   minus first, averaged. Follow-up checks recorded in the period: the share sustained.
//! - **Waiting list**, as at the end of the period (or now, when that is earlier): the cases
//!   waiting for a place, how long in working days (mean and longest), and how many beyond the
//!   council's limit (`service_levels.waiting_list_days`).
pub mod csv;
pub mod locality;

#[cfg(test)]
mod tests;

use chrono::{DateTime, NaiveDate, Utc};
use eh_workdays::{WorkingCalendar, uk_local_date, uk_start_of_day};
use std::collections::{BTreeMap, BTreeSet};

pub use locality::Localities;

/// A council's rules for its report.
#[derive(Debug, Clone)]
pub struct Council {
    pub calendar: WorkingCalendar,
    /// `service_levels.screening_decision_days`.
    pub screening_days: u32,
    /// `service_levels.assessment_days`.
    pub assessment_days: u32,
    /// `service_levels.waiting_list_days`.
    pub waiting_list_days: u32,
    pub localities: Localities,
}

/// A span of UK dates, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// A field of a request that is wrong, and why (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: &'static str,
    pub reason: String,
}

impl Period {
    /// The period `from`..=`to` as a request gives it (`YYYY-MM-DD`), checked: both dates, inside
    /// the years the working-day calendar knows, `from` not after `to`.
    ///
    /// # Errors
    /// Every field that is wrong.
    pub fn parse(from: &str, to: &str) -> Result<Self, Vec<Violation>> {
        let date = |field: &'static str, s: &str| -> Result<NaiveDate, Violation> {
            if s.trim().is_empty() {
                return Err(Violation {
                    field,
                    reason: "is required (YYYY-MM-DD)".into(),
                });
            }
            let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| Violation {
                field,
                reason: "must be a date (YYYY-MM-DD)".into(),
            })?;
            if d < eh_workdays::FIRST_DAY || d > eh_workdays::LAST_DAY {
                return Err(Violation {
                    field,
                    reason: format!(
                        "must be between {} and {} (the years the working-day calendar knows)",
                        eh_workdays::FIRST_DAY,
                        eh_workdays::LAST_DAY
                    ),
                });
            }
            Ok(d)
        };
        match (date("from", from), date("to", to)) {
            (Ok(from), Ok(to)) if from > to => Err(vec![Violation {
                field: "to",
                reason: "must not be before from".into(),
            }]),
            (Ok(from), Ok(to)) => Ok(Self { from, to }),
            (a, b) => Err([a.err(), b.err()].into_iter().flatten().collect()),
        }
    }

    /// Whether the instant `at` falls on a UK date of the period.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let d = uk_local_date(at);
        self.from <= d && d <= self.to
    }

    /// The first instant after the period (the UK midnight ending its last day).
    pub fn end(&self) -> DateTime<Utc> {
        uk_start_of_day(self.to.succ_opt().unwrap_or(self.to))
    }
}

/// A referral as reporting keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub referral_id: String,
    pub received_at: DateTime<Utc>,
    pub source_system: String,
    pub route: String,
    /// Locality name, [`locality::UNKNOWN`] or [`locality::OUTSIDE`].
    pub locality: String,
    pub needs: Vec<String>,
}

/// A screening decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screening {
    pub referral_id: String,
    pub case_id: String,
    pub outcome: String,
    pub decided_at: DateTime<Utc>,
}

/// A case moved from one state to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub case_id: String,
    /// The referral the case was opened from.
    pub referral_id: String,
    pub from_state: String,
    pub to_state: String,
    pub at: DateTime<Utc>,
}

/// Something that happened to a case at an instant (an offer accepted, a wait begun).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseAt {
    pub case_id: String,
    pub at: DateTime<Utc>,
}

/// A version of a case's assessment finalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalised {
    pub case_id: String,
    pub version: u32,
    pub at: DateTime<Utc>,
}

/// One headline's score at a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Score {
    pub case_id: String,
    /// start | review | closure
    pub stage: String,
    pub headline: String,
    pub score: u32,
    pub at: DateTime<Utc>,
}

/// A closure with its outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    pub case_id: String,
    /// outcomes_met | outcomes_not_met | stepped_down
    pub kind: String,
    /// Per headline problem: met or not.
    pub outcomes: Vec<(String, bool)>,
    pub at: DateTime<Utc>,
}

/// The answer to a follow-up check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    pub case_id: String,
    pub sustained: bool,
    pub at: DateTime<Utc>,
}

/// Everything the read model holds for one council.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub referrals: Vec<Referral>,
    pub screenings: Vec<Screening>,
    pub transitions: Vec<Transition>,
    pub offers_accepted: Vec<CaseAt>,
    pub waits: Vec<CaseAt>,
    pub finalised: Vec<Finalised>,
    pub scores: Vec<Score>,
    pub closures: Vec<Closure>,
    pub follow_ups: Vec<FollowUp>,
}

/// What a figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// How many: the numerator; the denominator is the whole it is part of.
    Count,
    /// numerator / denominator.
    Rate,
    /// numerator / denominator, an average.
    Mean,
    /// The largest of the denominator's members.
    Max,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Count => "count",
            Kind::Rate => "rate",
            Kind::Mean => "mean",
            Kind::Max => "max",
        }
    }
}

/// One figure of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub measure: &'static str,
    /// `key=value`, or empty.
    pub dimension: String,
    pub kind: Kind,
    /// `None` when unavailable, or a rate or mean over nothing.
    pub value: Option<f64>,
    pub numerator: i64,
    pub denominator: i64,
    /// Why the platform cannot compute it (`None`: available).
    pub unavailable: Option<&'static str>,
}

#[allow(clippy::cast_precision_loss)] // counts of cases, far below 2^52
fn ratio(n: i64, d: i64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

impl Figure {
    #[allow(clippy::cast_precision_loss)] // counts of cases, far below 2^52
    fn count(measure: &'static str, dimension: String, n: usize, of: usize) -> Self {
        let (n, of) = (to_i64(n), to_i64(of));
        Self {
            measure,
            dimension,
            kind: Kind::Count,
            value: Some(n as f64),
            numerator: n,
            denominator: of,
            unavailable: None,
        }
    }
    fn rate(measure: &'static str, dimension: String, n: usize, of: usize) -> Self {
        let (n, of) = (to_i64(n), to_i64(of));
        Self {
            measure,
            dimension,
            kind: Kind::Rate,
            value: ratio(n, of),
            numerator: n,
            denominator: of,
            unavailable: None,
        }
    }
    fn mean(measure: &'static str, dimension: String, total: i64, of: usize) -> Self {
        let of = to_i64(of);
        Self {
            measure,
            dimension,
            kind: Kind::Mean,
            value: ratio(total, of),
            numerator: total,
            denominator: of,
            unavailable: None,
        }
    }
    fn unavailable(measure: &'static str, reason: &'static str) -> Self {
        Self {
            measure,
            dimension: String::new(),
            kind: Kind::Rate,
            value: None,
            numerator: 0,
            denominator: 0,
            unavailable: Some(reason),
        }
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Why TAF timeliness is not reported.
pub const TAF_UNAVAILABLE: &str = "not recorded yet: the platform has no meetings service, so TAF meetings and their dates are not known to it";

/// A council's report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub period: Period,
    pub waiting_list_as_at: DateTime<Utc>,
    pub timeliness: Vec<Figure>,
    pub demand: Vec<Figure>,
    pub outcomes: Vec<Figure>,
    pub waiting_list: Vec<Figure>,
}

impl Report {
    /// Every figure with its section's name, in the report's order.
    pub fn sections(&self) -> [(&'static str, &[Figure]); 4] {
        [
            ("timeliness", &self.timeliness),
            ("demand", &self.demand),
            ("outcomes", &self.outcomes),
            ("waiting_list", &self.waiting_list),
        ]
    }
}

/// The report of `period` from `facts`, under `council`'s calendar and service levels, at `now`.
pub fn report(facts: &Facts, period: &Period, council: &Council, now: DateTime<Utc>) -> Report {
    let as_at = period.end().min(now);
    Report {
        period: *period,
        waiting_list_as_at: as_at,
        timeliness: timeliness(facts, period, council),
        demand: demand(facts, period),
        outcomes: outcomes(facts, period),
        waiting_list: waiting_list(facts, council, period, as_at),
    }
}

/// Whether something that started at `start` and was done at `done` was done within `days` working
/// days; `None` when the calendar does not know the years it needs.
pub fn in_time(
    calendar: &WorkingCalendar,
    start: DateTime<Utc>,
    days: u32,
    done: DateTime<Utc>,
) -> Option<bool> {
    calendar
        .overdue_from(start, days)
        .ok()
        .map(|late| done < late)
}

fn earliest<'a, T>(
    items: impl Iterator<Item = &'a T>,
    key: impl Fn(&T) -> &str,
    at: impl Fn(&T) -> DateTime<Utc>,
) -> BTreeMap<String, DateTime<Utc>>
where
    T: 'a,
{
    let mut out: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for i in items {
        let e = out.entry(key(i).to_string()).or_insert(at(i));
        *e = (*e).min(at(i));
    }
    out
}

/// When each case was allocated: its first accepted offer or move to `allocated`, whichever was
/// first (both say the same; either may be all the read model has heard yet).
fn allocated_at(facts: &Facts) -> BTreeMap<String, DateTime<Utc>> {
    let mut out = earliest(facts.offers_accepted.iter(), |c| &c.case_id, |c| c.at);
    for t in facts
        .transitions
        .iter()
        .filter(|t| t.to_state == "allocated")
    {
        let e = out.entry(t.case_id.clone()).or_insert(t.at);
        *e = (*e).min(t.at);
    }
    out
}

fn timeliness(facts: &Facts, period: &Period, council: &Council) -> Vec<Figure> {
    let cal = &council.calendar;
    // Screening: the referrals of the period, each by its first decision.
    let decided = earliest(
        facts.screenings.iter(),
        |s| &s.referral_id,
        |s| s.decided_at,
    );
    let received: Vec<&Referral> = facts
        .referrals
        .iter()
        .filter(|r| period.contains(r.received_at))
        .collect();
    // A referral whose case closed or went to the front door without a decision (no consent, a
    // step-up) is not waiting for one.
    let ended: BTreeSet<&str> = facts
        .transitions
        .iter()
        .filter(|t| is_final(&t.to_state))
        .map(|t| t.referral_id.as_str())
        .collect();
    let awaiting = received
        .iter()
        .filter(|r| {
            !decided.contains_key(&r.referral_id) && !ended.contains(r.referral_id.as_str())
        })
        .count();
    let (mut screened, mut screened_in_time) = (0, 0);
    for r in &received {
        if let Some(at) = decided.get(&r.referral_id)
            && let Some(ok) = in_time(cal, r.received_at, council.screening_days, *at)
        {
            screened += 1;
            screened_in_time += usize::from(ok);
        }
    }
    // Assessment: the cases whose assessment was first finalised in the period.
    let allocated = allocated_at(facts);
    let first_finalised = earliest(facts.finalised.iter(), |f| &f.case_id, |f| f.at);
    let (mut finalised, mut finalised_in_time) = (0, 0);
    for (case, at) in first_finalised
        .iter()
        .filter(|(_, at)| period.contains(**at))
    {
        if let Some(start) = allocated.get(case)
            && let Some(ok) = in_time(cal, *start, council.assessment_days, *at)
        {
            finalised += 1;
            finalised_in_time += usize::from(ok);
        }
    }
    vec![
        Figure::rate(
            "screened_in_time",
            format!("within_working_days={}", council.screening_days),
            screened_in_time,
            screened,
        ),
        Figure::count(
            "awaiting_screening",
            String::new(),
            awaiting,
            received.len(),
        ),
        Figure::rate(
            "eha_finalised_in_time",
            format!("within_working_days={}", council.assessment_days),
            finalised_in_time,
            finalised,
        ),
        Figure::unavailable("taf_on_time", TAF_UNAVAILABLE),
    ]
}

fn demand(facts: &Facts, period: &Period) -> Vec<Figure> {
    let received: Vec<&Referral> = facts
        .referrals
        .iter()
        .filter(|r| period.contains(r.received_at))
        .collect();
    let total = received.len();
    let mut out = vec![Figure::count("referrals", String::new(), total, total)];
    let mut by = |key: &str, values: &dyn Fn(&Referral) -> Vec<String>| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in &received {
            for v in values(r) {
                *counts.entry(v).or_default() += 1;
            }
        }
        out.extend(
            counts
                .into_iter()
                .map(|(v, n)| Figure::count("referrals", format!("{key}={v}"), n, total)),
        );
    };
    by("source_system", &|r| vec![r.source_system.clone()]);
    by("route", &|r| vec![r.route.clone()]);
    by("need", &|r| {
        r.needs
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    });
    by("locality", &|r| vec![r.locality.clone()]);
    out
}

/// The stages in the order they happen (a tie of instants is broken by it).
fn stage_rank(stage: &str) -> u8 {
    match stage {
        "start" => 0,
        "review" => 1,
        _ => 2,
    }
}

fn outcomes(facts: &Facts, period: &Period) -> Vec<Figure> {
    // The latest closure of each case recorded in the period.
    let mut closures: BTreeMap<&str, &Closure> = BTreeMap::new();
    for c in facts.closures.iter().filter(|c| period.contains(c.at)) {
        let e = closures.entry(c.case_id.as_str()).or_insert(c);
        if c.at > e.at {
            *e = c;
        }
    }
    let total = closures.len();
    let mut out = vec![Figure::count("closures", String::new(), total, total)];
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut headlines: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for c in closures.values() {
        *kinds.entry(c.kind.as_str()).or_default() += 1;
        let mut seen = BTreeSet::new();
        for (h, met) in &c.outcomes {
            if seen.insert(h.as_str()) {
                let e = headlines.entry(h.as_str()).or_default();
                e.0 += usize::from(*met);
                e.1 += 1;
            }
        }
    }
    out.extend(
        kinds
            .iter()
            .map(|(k, n)| Figure::count("closures", format!("kind={k}"), *n, total)),
    );
    out.push(Figure::rate(
        "all_outcomes_met",
        String::new(),
        kinds.get("outcomes_met").copied().unwrap_or(0),
        total,
    ));
    out.extend(
        headlines
            .iter()
            .map(|(h, (met, of))| Figure::rate("outcome_met", format!("headline={h}"), *met, *of)),
    );
    // Distance travelled: per case and headline, first score → latest.
    let mut series: BTreeMap<(&str, &str), Vec<&Score>> = BTreeMap::new();
    for s in &facts.scores {
        series
            .entry((s.headline.as_str(), s.case_id.as_str()))
            .or_default()
            .push(s);
    }
    let mut change: BTreeMap<&str, (i64, usize, usize)> = BTreeMap::new();
    for ((headline, _), mut scores) in series {
        scores.sort_by_key(|s| (s.at, stage_rank(&s.stage)));
        let (Some(first), Some(latest)) = (scores.first(), scores.last()) else {
            continue;
        };
        if scores.len() < 2 || !period.contains(latest.at) {
            continue;
        }
        let e = change.entry(headline).or_default();
        e.0 += i64::from(latest.score) - i64::from(first.score);
        e.1 += 1;
        e.2 += usize::from(latest.score > first.score);
    }
    for (h, (total, cases, improved)) in change {
        out.push(Figure::mean(
            "score_change",
            format!("headline={h}"),
            total,
            cases,
        ));
        out.push(Figure::rate(
            "score_improved",
            format!("headline={h}"),
            improved,
            cases,
        ));
    }
    let follow_ups: Vec<&FollowUp> = facts
        .follow_ups
        .iter()
        .filter(|f| period.contains(f.at))
        .collect();
    out.push(Figure::rate(
        "outcomes_sustained",
        String::new(),
        follow_ups.iter().filter(|f| f.sustained).count(),
        follow_ups.len(),
    ));
    out
}

/// Whether `state` ends the case's time with Early Help (closed, or stepped up to the front door).
fn is_final(state: &str) -> bool {
    state.starts_with("closed") || state == "stepped_up"
}

/// The cases waiting at `as_at`, each with when its current wait began.
pub fn waiting_at(facts: &Facts, as_at: DateTime<Utc>) -> BTreeMap<String, DateTime<Utc>> {
    // (instant, starts a wait?) per case; at one instant a leave sorts after a start.
    let mut events: BTreeMap<&str, Vec<(DateTime<Utc>, bool)>> = BTreeMap::new();
    for w in &facts.waits {
        events
            .entry(w.case_id.as_str())
            .or_default()
            .push((w.at, true));
    }
    for o in &facts.offers_accepted {
        events
            .entry(o.case_id.as_str())
            .or_default()
            .push((o.at, false));
    }
    for t in &facts.transitions {
        if t.to_state == "waiting_for_provider" {
            events
                .entry(t.case_id.as_str())
                .or_default()
                .push((t.at, true));
        } else if t.from_state == "waiting_for_provider" || is_final(&t.to_state) {
            events
                .entry(t.case_id.as_str())
                .or_default()
                .push((t.at, false));
        }
    }
    let mut out = BTreeMap::new();
    for (case, mut evs) in events {
        evs.sort_by_key(|(at, start)| (*at, !*start));
        let mut since = None;
        for (at, start) in evs.into_iter().filter(|(at, _)| *at <= as_at) {
            since = match (since, start) {
                (None, true) => Some(at),
                (Some(s), true) => Some(s),
                (_, false) => None,
            };
        }
        if let Some(s) = since {
            out.insert(case.to_string(), s);
        }
    }
    out
}

fn waiting_list(
    facts: &Facts,
    council: &Council,
    period: &Period,
    as_at: DateTime<Utc>,
) -> Vec<Figure> {
    let cal = &council.calendar;
    // Waited up to the period's last day, or today when that is earlier.
    let today = if as_at >= period.end() {
        period.to
    } else {
        uk_local_date(as_at)
    };
    let waited: Vec<i64> = waiting_at(facts, as_at)
        .values()
        .map(|since| {
            cal.working_days_between(uk_local_date(*since), today)
                .unwrap_or(0)
                .max(0)
        })
        .collect();
    let n = waited.len();
    let limit = i64::from(council.waiting_list_days);
    let longest = waited.iter().copied().max().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let longest_figure = Figure {
        measure: "longest_wait_working_days",
        dimension: String::new(),
        kind: Kind::Max,
        value: (n > 0).then_some(longest as f64),
        numerator: longest,
        denominator: to_i64(n),
        unavailable: None,
    };
    vec![
        Figure::count("waiting", String::new(), n, n),
        Figure::mean("wait_working_days", String::new(), waited.iter().sum(), n),
        longest_figure,
        Figure::rate(
            "waiting_beyond_limit",
            format!("limit_working_days={limit}"),
            waited.iter().filter(|d| **d > limit).count(),
            n,
        ),
    ]
}
