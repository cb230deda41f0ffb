//! UK civil time without a time-zone database: GMT in winter, BST (UTC+1) from 01:00 UTC on
//! the last Sunday of March to 01:00 UTC on the last Sunday of October.
//!
//! These are the rules in force since 1996 (the Summer Time Order 2002 keeps them); they are
//! applied to every year, which is right for the years this crate's calendar covers.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeDelta, Utc, Weekday};

/// Whether the UK is on British Summer Time at the instant `at`.
pub fn is_british_summer_time(at: DateTime<Utc>) -> bool {
    let year = at.year();
    match (bst_starts(year), bst_ends(year)) {
        (Some(starts), Some(ends)) => starts <= at && at < ends,
        // Only at the very ends of chrono's range, nowhere near a council's timers.
        _ => false,
    }
}

/// The date on a UK clock at the instant `at`: a referral at 23:30 UTC in July is made on
/// the next day in the UK, one at 23:30 UTC in December on the same day.
pub fn uk_local_date(at: DateTime<Utc>) -> NaiveDate {
    if is_british_summer_time(at)
        && let Some(local) = at.checked_add_signed(TimeDelta::hours(1))
    {
        return local.date_naive();
    }
    at.date_naive()
}

/// The instant at which `date` begins on a UK clock (00:00 GMT, or 00:00 BST = 23:00 UTC
/// the day before). Midnight is never skipped or repeated in the UK, so this is always one
/// instant; the end of `date` is the start of the next day.
pub fn uk_start_of_day(date: NaiveDate) -> DateTime<Utc> {
    let midnight_utc = date.and_time(NaiveTime::MIN).and_utc();
    // Local midnight is in summer time from the day after the spring change up to and
    // including the day of the autumn change (whose midnight precedes 01:00 UTC).
    let in_summer_time = match (last_sunday(date.year(), 3), last_sunday(date.year(), 10)) {
        (Some(spring), Some(autumn)) => spring < date && date <= autumn,
        _ => false,
    };
    if in_summer_time {
        midnight_utc
            .checked_sub_signed(TimeDelta::hours(1))
            .unwrap_or(midnight_utc)
    } else {
        midnight_utc
    }
}

/// 01:00 UTC on the last Sunday of March.
fn bst_starts(year: i32) -> Option<DateTime<Utc>> {
    Some(at_one_utc(last_sunday(year, 3)?))
}

/// 01:00 UTC on the last Sunday of October.
fn bst_ends(year: i32) -> Option<DateTime<Utc>> {
    Some(at_one_utc(last_sunday(year, 10)?))
}

fn at_one_utc(date: NaiveDate) -> DateTime<Utc> {
    let one_am = NaiveTime::from_hms_opt(1, 0, 0).unwrap_or(NaiveTime::MIN);
    date.and_time(one_am).and_utc()
}

/// The last Sunday of a 31-day month (March or October).
fn last_sunday(year: i32, month: u32) -> Option<NaiveDate> {
    let last = NaiveDate::from_ymd_opt(year, month, 31)?;
    let back = u64::from(last.weekday().num_days_from_sunday());
    let sunday = last.checked_sub_days(Days::new(back))?;
    debug_assert_eq!(sunday.weekday(), Weekday::Sun);
    Some(sunday)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn summer_time_changes_at_one_utc_on_the_last_sundays() {
        // 2024: 31 March and 27 October. 2025: 30 March and 26 October.
        assert!(!is_british_summer_time(utc(2024, 3, 31, 0, 59, 59)));
        assert!(is_british_summer_time(utc(2024, 3, 31, 1, 0, 0)));
        assert!(is_british_summer_time(utc(2024, 10, 27, 0, 59, 59)));
        assert!(!is_british_summer_time(utc(2024, 10, 27, 1, 0, 0)));
        assert!(!is_british_summer_time(utc(2025, 3, 30, 0, 59, 59)));
        assert!(is_british_summer_time(utc(2025, 3, 30, 1, 0, 0)));
        assert!(is_british_summer_time(utc(2025, 10, 26, 0, 59, 59)));
        assert!(!is_british_summer_time(utc(2025, 10, 26, 1, 0, 0)));
        assert!(!is_british_summer_time(utc(2025, 1, 15, 12, 0, 0)));
        assert!(is_british_summer_time(utc(2025, 7, 15, 12, 0, 0)));
    }

    #[test]
    fn summer_time_dates_2020_to_2030_match_the_tz_database() {
        // (year, March change day, October change day), both at 01:00 UTC, as in the
        // IANA tz database's Europe/London.
        let published = [
            (2020, 29, 25),
            (2021, 28, 31),
            (2022, 27, 30),
            (2023, 26, 29),
            (2024, 31, 27),
            (2025, 30, 26),
            (2026, 29, 25),
            (2027, 28, 31),
            (2028, 26, 29),
            (2029, 25, 28),
            (2030, 31, 27),
        ];
        for (year, march, october) in published {
            assert_eq!(
                bst_starts(year),
                Some(utc(year, 3, march, 1, 0, 0)),
                "{year}"
            );
            assert_eq!(
                bst_ends(year),
                Some(utc(year, 10, october, 1, 0, 0)),
                "{year}"
            );
        }
    }

    #[test]
    fn late_evening_utc_in_summer_is_the_next_day_in_the_uk() {
        assert_eq!(uk_local_date(utc(2024, 7, 1, 23, 30, 0)), date(2024, 7, 2));
        assert_eq!(uk_local_date(utc(2024, 7, 1, 22, 59, 59)), date(2024, 7, 1));
        assert_eq!(
            uk_local_date(utc(2024, 12, 1, 23, 30, 0)),
            date(2024, 12, 1)
        );
        // The autumn change: 00:30 UTC is 01:30 BST, still 27 October.
        assert_eq!(
            uk_local_date(utc(2024, 10, 26, 23, 0, 0)),
            date(2024, 10, 27)
        );
        assert_eq!(
            uk_local_date(utc(2024, 10, 26, 22, 59, 0)),
            date(2024, 10, 26)
        );
    }

    #[test]
    fn start_of_day_in_uk_time() {
        assert_eq!(
            uk_start_of_day(date(2024, 1, 10)),
            utc(2024, 1, 10, 0, 0, 0)
        );
        assert_eq!(uk_start_of_day(date(2024, 7, 2)), utc(2024, 7, 1, 23, 0, 0));
        // Spring change day begins in GMT; the day after begins in BST.
        assert_eq!(
            uk_start_of_day(date(2024, 3, 31)),
            utc(2024, 3, 31, 0, 0, 0)
        );
        assert_eq!(
            uk_start_of_day(date(2024, 4, 1)),
            utc(2024, 3, 31, 23, 0, 0)
        );
        // Autumn change day begins in BST; the day after begins in GMT.
        assert_eq!(
            uk_start_of_day(date(2024, 10, 27)),
            utc(2024, 10, 26, 23, 0, 0)
        );
        assert_eq!(
            uk_start_of_day(date(2024, 10, 28)),
            utc(2024, 10, 28, 0, 0, 0)
        );
    }

    #[test]
    fn extremes_of_chrono_do_not_panic() {
        let _ = uk_local_date(DateTime::<Utc>::MAX_UTC);
        let _ = uk_local_date(DateTime::<Utc>::MIN_UTC);
        let _ = uk_start_of_day(NaiveDate::MAX);
        let _ = uk_start_of_day(NaiveDate::MIN);
    }
}
