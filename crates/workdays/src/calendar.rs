//! A council's working calendar: which days count as working days, and counting forwards
//! and between dates in working days for service-level clocks.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc, Weekday};

use crate::{Division, Error, FIRST_DAY, LAST_DAY, Result, uk_local_date, uk_start_of_day};

/// The working days of one council (tenant): every Monday to Friday from [`FIRST_DAY`] to
/// [`LAST_DAY`] that is neither a bank holiday of the council's [`Division`] nor one of the
/// council's own closure days.
///
/// Every method refuses, with [`Error::OutOfRange`], a date it is given or would have to
/// look at outside that range.
#[derive(Clone)]
pub struct WorkingCalendar {
    division: Division,
    closures: BTreeSet<NaiveDate>,
    /// Every working day in the covered range, ascending: answers are binary searches.
    working_days: Vec<NaiveDate>,
}

impl WorkingCalendar {
    /// The calendar of a council that observes `division`'s bank holidays and also closes on
    /// `closures` (e.g. the days between Christmas and New Year). Closure days that fall on
    /// a weekend or a bank holiday change nothing; those outside the covered range are kept
    /// but cannot matter, since nothing outside the range can be asked.
    ///
    /// # Errors
    /// [`Error::HolidayData`] if the compiled-in bank-holiday data is malformed, which the
    /// crate's own tests rule out.
    pub fn new(division: Division, closures: impl IntoIterator<Item = NaiveDate>) -> Result<Self> {
        let closures: BTreeSet<NaiveDate> = closures.into_iter().collect();
        let bank_holidays: BTreeSet<NaiveDate> = division
            .bank_holidays()?
            .into_iter()
            .map(|holiday| holiday.date)
            .collect();
        let working_days = FIRST_DAY
            .iter_days()
            .take_while(|day| *day <= LAST_DAY)
            .filter(|day| {
                !is_weekend(*day) && !bank_holidays.contains(day) && !closures.contains(day)
            })
            .collect();
        Ok(Self {
            division,
            closures,
            working_days,
        })
    }

    /// The division whose bank holidays this calendar observes.
    pub fn division(&self) -> Division {
        self.division
    }

    /// The council's own closure days, in date order.
    pub fn closures(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.closures.iter().copied()
    }

    /// Whether `date` is a working day: a weekday that is neither a bank holiday nor a
    /// closure day.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] if `date` is outside [`FIRST_DAY`]..=[`LAST_DAY`].
    pub fn is_working_day(&self, date: NaiveDate) -> Result<bool> {
        check_covered(date)?;
        Ok(self.working_days.binary_search(&date).is_ok())
    }

    /// The date `n` working days after `from`: the `n`-th working day strictly after `from`,
    /// so `from` itself never counts, whether or not it is a working day. With `n = 0` the
    /// answer is `from` unchanged.
    ///
    /// For example, with no holidays about, 1 working day after a Friday is the Monday, and
    /// 1 working day after a Saturday is also the Monday (a request received at the weekend
    /// has the next working day as its day one).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] if `from` is outside the covered range, or if the answer would
    /// be after [`LAST_DAY`] (the error then names the first day past it).
    pub fn add_working_days(&self, from: NaiveDate, n: u32) -> Result<NaiveDate> {
        check_covered(from)?;
        if n == 0 {
            return Ok(from);
        }
        let after_from = self.working_days.partition_point(|day| *day <= from);
        usize::try_from(n - 1)
            .ok()
            .and_then(|offset| after_from.checked_add(offset))
            .and_then(|index| self.working_days.get(index))
            .copied()
            .ok_or(Error::OutOfRange {
                date: first_uncovered_day(),
            })
    }

    /// The first working day strictly after `date`; the same as
    /// [`add_working_days`](Self::add_working_days)`(date, 1)`.
    ///
    /// # Errors
    /// As for [`add_working_days`](Self::add_working_days).
    pub fn next_working_day(&self, date: NaiveDate) -> Result<NaiveDate> {
        self.add_working_days(date, 1)
    }

    /// `date` itself if it is a working day, otherwise the next working day: the day a clock
    /// started on `date` really starts.
    ///
    /// # Errors
    /// As for [`add_working_days`](Self::add_working_days).
    pub fn working_day_on_or_after(&self, date: NaiveDate) -> Result<NaiveDate> {
        if self.is_working_day(date)? {
            Ok(date)
        } else {
            self.next_working_day(date)
        }
    }

    /// The number of working days in `(a, b]`, that is after `a` up to and including `b`;
    /// negative, `-(working days in (b, a])`, when `b` is before `a`. So
    /// `working_days_between(a, add_working_days(a, n)) == n`, and `b` being a day late on
    /// a deadline `a` gives 1 if `b` is a working day.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] if `a` or `b` is outside the covered range.
    pub fn working_days_between(&self, a: NaiveDate, b: NaiveDate) -> Result<i64> {
        check_covered(a)?;
        check_covered(b)?;
        let up_to = |date: NaiveDate| self.working_days.partition_point(|day| *day <= date);
        let (after_a, after_b) = (up_to(a), up_to(b));
        // Both counts are at most the ~4,000 days of the covered range.
        let count = |small: usize, large: usize| i64::try_from(large - small).unwrap_or(i64::MAX);
        Ok(if after_b >= after_a {
            count(after_a, after_b)
        } else {
            -count(after_b, after_a)
        })
    }

    /// The deadline, as a UK date, for something due `n` working days after the instant
    /// `start`: [`add_working_days`](Self::add_working_days) from the date of `start` on a
    /// UK clock ([`uk_local_date`]). The work is on time if done by the end of that day.
    ///
    /// # Errors
    /// As for [`add_working_days`](Self::add_working_days).
    pub fn deadline(&self, start: DateTime<Utc>, n: u32) -> Result<NaiveDate> {
        self.add_working_days(uk_local_date(start), n)
    }

    /// The first instant at which something due `n` working days after `start` is overdue:
    /// the UK midnight that ends its [`deadline`](Self::deadline) day. Use it to set a timer.
    ///
    /// # Errors
    /// As for [`add_working_days`](Self::add_working_days).
    pub fn overdue_from(&self, start: DateTime<Utc>, n: u32) -> Result<DateTime<Utc>> {
        let deadline = self.deadline(start, n)?;
        let day_after = deadline
            .succ_opt()
            .ok_or(Error::OutOfRange { date: deadline })?;
        Ok(uk_start_of_day(day_after))
    }
}

impl fmt::Debug for WorkingCalendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkingCalendar")
            .field("division", &self.division)
            .field("closures", &self.closures)
            .finish_non_exhaustive()
    }
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

fn check_covered(date: NaiveDate) -> Result<()> {
    if (FIRST_DAY..=LAST_DAY).contains(&date) {
        Ok(())
    } else {
        Err(Error::OutOfRange { date })
    }
}

fn first_uncovered_day() -> NaiveDate {
    LAST_DAY.checked_add_days(Days::new(1)).unwrap_or(LAST_DAY)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn calendar(division: Division) -> WorkingCalendar {
        WorkingCalendar::new(division, []).unwrap()
    }

    #[test]
    fn friday_plus_one_is_monday_and_weekend_plus_one_is_monday() {
        let cal = calendar(Division::EnglandAndWales);
        // Friday 7 June 2024 → Monday 10 June.
        assert_eq!(
            cal.add_working_days(date(2024, 6, 7), 1).unwrap(),
            date(2024, 6, 10)
        );
        assert_eq!(
            cal.add_working_days(date(2024, 6, 8), 1).unwrap(),
            date(2024, 6, 10)
        );
        assert_eq!(
            cal.add_working_days(date(2024, 6, 9), 1).unwrap(),
            date(2024, 6, 10)
        );
        assert_eq!(
            cal.add_working_days(date(2024, 6, 7), 5).unwrap(),
            date(2024, 6, 14)
        );
        assert_eq!(
            cal.add_working_days(date(2024, 6, 8), 0).unwrap(),
            date(2024, 6, 8)
        );
        assert_eq!(
            cal.next_working_day(date(2024, 6, 7)).unwrap(),
            date(2024, 6, 10)
        );
        assert_eq!(
            cal.working_day_on_or_after(date(2024, 6, 7)).unwrap(),
            date(2024, 6, 7)
        );
        assert_eq!(
            cal.working_day_on_or_after(date(2024, 6, 8)).unwrap(),
            date(2024, 6, 10)
        );
    }

    #[test]
    fn easter_2024_differs_between_england_and_scotland() {
        let england = calendar(Division::EnglandAndWales);
        let scotland = calendar(Division::Scotland);
        let maundy_thursday = date(2024, 3, 28);
        assert_eq!(
            england.add_working_days(maundy_thursday, 1).unwrap(),
            date(2024, 4, 2)
        );
        assert_eq!(
            scotland.add_working_days(maundy_thursday, 1).unwrap(),
            date(2024, 4, 1)
        );
        assert!(!england.is_working_day(date(2024, 4, 1)).unwrap());
        assert!(scotland.is_working_day(date(2024, 4, 1)).unwrap());
        assert!(!scotland.is_working_day(date(2024, 3, 29)).unwrap());
        assert_eq!(
            england
                .working_days_between(maundy_thursday, date(2024, 4, 2))
                .unwrap(),
            1
        );
        assert_eq!(
            scotland
                .working_days_between(maundy_thursday, date(2024, 4, 2))
                .unwrap(),
            2
        );
    }

    #[test]
    fn christmas_substitute_days() {
        for division in Division::ALL {
            let cal = calendar(division);
            // 2026: Fri 25 Christmas, Sat 26 Boxing Day → substitute Mon 28.
            assert!(!cal.is_working_day(date(2026, 12, 25)).unwrap());
            assert!(!cal.is_working_day(date(2026, 12, 28)).unwrap());
            assert_eq!(
                cal.add_working_days(date(2026, 12, 24), 1).unwrap(),
                date(2026, 12, 29)
            );
            // 2027: Sat/Sun → substitutes Mon 27 and Tue 28.
            assert!(!cal.is_working_day(date(2027, 12, 27)).unwrap());
            assert!(!cal.is_working_day(date(2027, 12, 28)).unwrap());
            assert_eq!(
                cal.add_working_days(date(2027, 12, 24), 1).unwrap(),
                date(2027, 12, 29)
            );
        }
    }

    #[test]
    fn st_andrews_day_2025_moves_to_monday_in_scotland_only() {
        let scotland = calendar(Division::Scotland);
        let england = calendar(Division::EnglandAndWales);
        assert!(!scotland.is_working_day(date(2025, 12, 1)).unwrap());
        assert!(england.is_working_day(date(2025, 12, 1)).unwrap());
        // Friday 28 November + 1.
        assert_eq!(
            scotland.add_working_days(date(2025, 11, 28), 1).unwrap(),
            date(2025, 12, 2)
        );
        assert_eq!(
            england.add_working_days(date(2025, 11, 28), 1).unwrap(),
            date(2025, 12, 1)
        );
    }

    #[test]
    fn northern_ireland_keeps_st_patrick_and_the_boyne() {
        let ni = calendar(Division::NorthernIreland);
        let england = calendar(Division::EnglandAndWales);
        // 2024: 17 March a Sunday → Monday 18 March.
        assert!(!ni.is_working_day(date(2024, 3, 18)).unwrap());
        assert!(england.is_working_day(date(2024, 3, 18)).unwrap());
        // 2025: 12 July a Saturday → Monday 14 July.
        assert!(!ni.is_working_day(date(2025, 7, 14)).unwrap());
        assert!(england.is_working_day(date(2025, 7, 14)).unwrap());
    }

    #[test]
    fn one_off_holidays_are_skipped() {
        let cal = calendar(Division::EnglandAndWales);
        // 2022: Wed 1 June + 1 skips the Thu 2 June Spring bank holiday and Fri 3 June
        // Platinum Jubilee; Monday 30 May 2022 was an ordinary working day.
        assert_eq!(
            cal.add_working_days(date(2022, 6, 1), 1).unwrap(),
            date(2022, 6, 6)
        );
        assert!(cal.is_working_day(date(2022, 5, 30)).unwrap());
        assert!(!cal.is_working_day(date(2022, 9, 19)).unwrap());
        assert!(!cal.is_working_day(date(2023, 5, 8)).unwrap());
        assert!(!cal.is_working_day(date(2020, 5, 8)).unwrap());
        assert!(cal.is_working_day(date(2020, 5, 4)).unwrap());
    }

    #[test]
    fn a_tenant_closure_day_is_skipped() {
        // A council that closes on Christmas Eve and between Christmas and New Year 2024.
        let closures = [
            date(2024, 12, 24),
            date(2024, 12, 27),
            date(2024, 12, 30),
            date(2024, 12, 31),
        ];
        let cal = WorkingCalendar::new(Division::EnglandAndWales, closures).unwrap();
        assert!(!cal.is_working_day(date(2024, 12, 24)).unwrap());
        assert_eq!(
            cal.add_working_days(date(2024, 12, 23), 1).unwrap(),
            date(2025, 1, 2)
        );
        assert_eq!(
            cal.working_days_between(date(2024, 12, 20), date(2025, 1, 3))
                .unwrap(),
            3
        );
        assert_eq!(cal.closures().collect::<Vec<_>>(), closures);
        // Without the closures, the 24th is an ordinary working day.
        let plain = calendar(Division::EnglandAndWales);
        assert_eq!(
            plain.add_working_days(date(2024, 12, 23), 1).unwrap(),
            date(2024, 12, 24)
        );
    }

    #[test]
    fn working_days_between_is_half_open_and_antisymmetric() {
        let cal = calendar(Division::EnglandAndWales);
        let monday = date(2024, 6, 10);
        let friday = date(2024, 6, 14);
        assert_eq!(cal.working_days_between(monday, monday).unwrap(), 0);
        assert_eq!(cal.working_days_between(monday, friday).unwrap(), 4);
        assert_eq!(cal.working_days_between(friday, monday).unwrap(), -4);
        // Saturday to Sunday: nothing in (Sat, Sun].
        assert_eq!(
            cal.working_days_between(date(2024, 6, 8), date(2024, 6, 9))
                .unwrap(),
            0
        );
        // A whole ordinary year: 2025 has 261 weekdays and 8 weekday bank holidays.
        assert_eq!(
            cal.working_days_between(date(2024, 12, 31), date(2025, 12, 31))
                .unwrap(),
            253
        );
    }

    #[test]
    fn outside_the_covered_years_is_an_error() {
        let cal = calendar(Division::Scotland);
        let too_early = date(2019, 12, 31);
        let too_late = date(2031, 1, 1);
        assert_eq!(
            cal.is_working_day(too_early),
            Err(Error::OutOfRange { date: too_early })
        );
        assert_eq!(
            cal.is_working_day(too_late),
            Err(Error::OutOfRange { date: too_late })
        );
        assert_eq!(
            cal.add_working_days(too_early, 1),
            Err(Error::OutOfRange { date: too_early })
        );
        assert_eq!(
            cal.working_days_between(FIRST_DAY, too_late),
            Err(Error::OutOfRange { date: too_late })
        );
        // Running off the end of the data.
        assert_eq!(
            cal.add_working_days(date(2030, 12, 20), 10),
            Err(Error::OutOfRange { date: too_late })
        );
        assert_eq!(
            cal.add_working_days(FIRST_DAY, u32::MAX),
            Err(Error::OutOfRange { date: too_late })
        );
        // The last working day of the range can still be reached.
        assert_eq!(
            cal.add_working_days(date(2030, 12, 30), 1).unwrap(),
            date(2030, 12, 31)
        );
        assert!(cal.next_working_day(LAST_DAY).is_err());
        assert!(cal.is_working_day(NaiveDate::MAX).is_err());
        assert!(cal.add_working_days(NaiveDate::MIN, u32::MAX).is_err());
        assert!(cal.overdue_from(DateTime::<Utc>::MAX_UTC, 1).is_err());
    }

    #[test]
    fn deadline_counts_from_the_uk_date_of_the_start() {
        let cal = calendar(Division::EnglandAndWales);
        // Thursday 11 July 2024, 23:30 UTC = 00:30 BST on Friday 12 July: 1 working day
        // after Friday is Monday 15 July.
        let late_thursday = Utc.with_ymd_and_hms(2024, 7, 11, 23, 30, 0).unwrap();
        assert_eq!(cal.deadline(late_thursday, 1).unwrap(), date(2024, 7, 15));
        // Same time of day in winter is still Thursday in the UK: due Friday.
        let winter_thursday = Utc.with_ymd_and_hms(2024, 1, 11, 23, 30, 0).unwrap();
        assert_eq!(cal.deadline(winter_thursday, 1).unwrap(), date(2024, 1, 12));
        // Overdue from UK midnight at the end of Monday 15 July (BST): 23:00 UTC.
        assert_eq!(
            cal.overdue_from(late_thursday, 1).unwrap(),
            Utc.with_ymd_and_hms(2024, 7, 15, 23, 0, 0).unwrap()
        );
        assert_eq!(
            cal.overdue_from(winter_thursday, 1).unwrap(),
            Utc.with_ymd_and_hms(2024, 1, 13, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn debug_names_the_division_and_closures_only() {
        let cal = WorkingCalendar::new(Division::Scotland, [date(2024, 12, 24)]).unwrap();
        let shown = format!("{cal:?}");
        assert!(
            shown.contains("Scotland") && shown.contains("2024-12-24"),
            "{shown}"
        );
        assert_eq!(cal.division(), Division::Scotland);
    }
}
