//! Property tests: the working-day arithmetic against a straightforward day-by-day
//! reference built from the raw bank-holiday list, across weekends, Easter, Christmas and
//! random tenant closure days.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeDelta, Timelike, Utc, Weekday};
use eh_workdays::{
    Division, Error, FIRST_DAY, LAST_DAY, WorkingCalendar, uk_local_date, uk_start_of_day,
};
use proptest::prelude::*;

/// Days from 1 January 2020 to 31 December 2029: starts for which 200 working days still
/// land inside the covered range.
const START_DAYS: u64 = 3653;
/// Days from 1 January 2020 to 31 December 2030.
const COVERED_DAYS: u64 = 4018;

/// The obvious implementation: look at each day in turn.
struct Reference {
    non_working: HashSet<NaiveDate>,
}

impl Reference {
    fn new(division: Division, closures: &[NaiveDate]) -> Self {
        let mut non_working: HashSet<NaiveDate> = division
            .bank_holidays()
            .unwrap()
            .into_iter()
            .map(|holiday| holiday.date)
            .collect();
        non_working.extend(closures.iter().copied());
        Self { non_working }
    }

    fn is_working_day(&self, date: NaiveDate) -> bool {
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !self.non_working.contains(&date)
    }

    fn add_working_days(&self, from: NaiveDate, n: u32) -> NaiveDate {
        let mut day = from;
        let mut left = n;
        while left > 0 {
            day = day.succ_opt().unwrap();
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }

    fn working_days_between(&self, a: NaiveDate, b: NaiveDate) -> i64 {
        let (low, high, sign) = if a <= b { (a, b, 1) } else { (b, a, -1) };
        let mut count = 0;
        let mut day = low;
        while day < high {
            day = day.succ_opt().unwrap();
            if self.is_working_day(day) {
                count += 1;
            }
        }
        sign * count
    }
}

fn day(offset: u64) -> NaiveDate {
    FIRST_DAY.checked_add_days(Days::new(offset)).unwrap()
}

fn division() -> impl Strategy<Value = Division> {
    proptest::sample::select(Division::ALL.to_vec())
}

/// Up to 30 closure days anywhere in the covered range, plus a few just outside it.
fn closures() -> impl Strategy<Value = Vec<NaiveDate>> {
    proptest::collection::vec(0..COVERED_DAYS + 10, 0..30)
        .prop_map(|offsets| offsets.into_iter().map(day).collect())
}

/// Any date chrono can represent.
fn any_date() -> impl Strategy<Value = NaiveDate> {
    any::<i32>().prop_filter_map(
        "outside chrono's range",
        NaiveDate::from_num_days_from_ce_opt,
    )
}

#[test]
fn is_working_day_matches_the_reference_on_every_covered_day() {
    let closures = [
        NaiveDate::from_ymd_opt(2024, 12, 24).unwrap(),
        NaiveDate::from_ymd_opt(2026, 4, 7).unwrap(),
    ];
    for division in Division::ALL {
        let calendar = WorkingCalendar::new(division, closures).unwrap();
        let reference = Reference::new(division, &closures);
        for offset in 0..COVERED_DAYS {
            let date = day(offset);
            assert_eq!(
                calendar.is_working_day(date).unwrap(),
                reference.is_working_day(date),
                "{division} {date}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn add_working_days_matches_the_day_by_day_reference(
        division in division(),
        closures in closures(),
        start in 0..START_DAYS,
        n in 0u32..200,
    ) {
        let calendar = WorkingCalendar::new(division, closures.iter().copied()).unwrap();
        let reference = Reference::new(division, &closures);
        let from = day(start);
        prop_assert_eq!(calendar.add_working_days(from, n)?, reference.add_working_days(from, n));
    }

    #[test]
    fn counting_back_what_was_added_gives_n(
        division in division(),
        closures in closures(),
        start in 0..START_DAYS,
        n in 0u32..200,
    ) {
        let calendar = WorkingCalendar::new(division, closures).unwrap();
        let from = day(start);
        let due = calendar.add_working_days(from, n)?;
        prop_assert_eq!(calendar.working_days_between(from, due)?, i64::from(n));
        prop_assert_eq!(calendar.working_days_between(due, from)?, -i64::from(n));
    }

    #[test]
    fn the_result_is_a_working_day_when_n_is_positive(
        division in division(),
        closures in closures(),
        start in 0..START_DAYS,
        n in 1u32..200,
    ) {
        let calendar = WorkingCalendar::new(division, closures.iter().copied()).unwrap();
        let reference = Reference::new(division, &closures);
        let due = calendar.add_working_days(day(start), n)?;
        prop_assert!(calendar.is_working_day(due)?);
        prop_assert!(reference.is_working_day(due));
        prop_assert!(due > day(start));
    }

    #[test]
    fn add_working_days_is_strictly_increasing_in_n(
        division in division(),
        closures in closures(),
        start in 0..START_DAYS,
        n in 0u32..199,
    ) {
        let calendar = WorkingCalendar::new(division, closures).unwrap();
        let from = day(start);
        let earlier = calendar.add_working_days(from, n)?;
        let later = calendar.add_working_days(from, n + 1)?;
        prop_assert!(earlier < later, "{} then {}", earlier, later);
        prop_assert_eq!(calendar.next_working_day(earlier)?, later);
    }

    #[test]
    fn working_days_between_matches_the_reference(
        division in division(),
        closures in closures(),
        a in 0..COVERED_DAYS,
        b in 0..COVERED_DAYS,
    ) {
        let calendar = WorkingCalendar::new(division, closures.iter().copied()).unwrap();
        let reference = Reference::new(division, &closures);
        let (a, b) = (day(a), day(b));
        prop_assert_eq!(calendar.working_days_between(a, b)?, reference.working_days_between(a, b));
    }

    #[test]
    fn any_input_gives_an_answer_or_an_error_never_a_panic(
        division in division(),
        date in any_date(),
        other in any_date(),
        n in any::<u32>(),
    ) {
        let calendar = WorkingCalendar::new(division, [date]).unwrap();
        let covered = (FIRST_DAY..=LAST_DAY).contains(&date);
        prop_assert_eq!(calendar.is_working_day(date).is_ok(), covered);
        match calendar.add_working_days(date, n) {
            Ok(due) => prop_assert!(covered && (date..=LAST_DAY).contains(&due)),
            Err(Error::OutOfRange { date: missing }) => {
                prop_assert!(!(FIRST_DAY..=LAST_DAY).contains(&missing))
            }
            Err(other) => prop_assert!(false, "unexpected {}", other),
        }
        let _ = calendar.working_days_between(date, other);
        let _ = calendar.working_day_on_or_after(date);
        let at = date.and_hms_opt(12, 0, 0).unwrap().and_utc();
        let _ = calendar.deadline(at, n);
        let _ = calendar.overdue_from(at, n);
    }

    #[test]
    fn uk_days_start_at_uk_midnight(offset in 0..COVERED_DAYS) {
        let date = day(offset);
        let start = uk_start_of_day(date);
        prop_assert_eq!(uk_local_date(start), date);
        let just_before = start - TimeDelta::seconds(1);
        prop_assert_eq!(uk_local_date(just_before), date.pred_opt().unwrap());
        // UK midnight is 00:00 or 23:00 UTC.
        let hour = start.hour();
        prop_assert!(hour == 0 || hour == 23, "{}", start);
    }

    #[test]
    fn uk_date_is_the_utc_date_or_the_day_after(seconds in 1_577_836_800i64..1_924_991_999) {
        let at = DateTime::<Utc>::from_timestamp(seconds, 0).unwrap();
        let local = uk_local_date(at);
        let utc_date = at.date_naive();
        prop_assert!(local == utc_date || Some(local) == utc_date.succ_opt());
    }
}
