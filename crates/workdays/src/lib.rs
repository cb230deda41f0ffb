//! Working days per council: weekends, the UK bank holidays of the council's division
//! (2020-2030) and the council's own closure days, for service-level clocks counted in
//! working days.
//!
//! A council (tenant) picks the [`Division`] whose bank holidays it observes, adds the days
//! it closes on its own account, and gets a [`WorkingCalendar`]:
//!
//! ```
//! use chrono::NaiveDate;
//! use eh_workdays::{Division, WorkingCalendar};
//!
//! let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
//! // A council in England that also closes on Christmas Eve 2024.
//! let calendar = WorkingCalendar::new(Division::EnglandAndWales, [date(2024, 12, 24)])?;
//!
//! // Thursday before Easter + 1 working day: Good Friday and Easter Monday are skipped.
//! assert_eq!(calendar.add_working_days(date(2024, 3, 28), 1)?, date(2024, 4, 2));
//! // Monday 23 December + 1: Christmas Eve (closure), Christmas Day and Boxing Day skipped.
//! assert_eq!(calendar.add_working_days(date(2024, 12, 23), 1)?, date(2024, 12, 27));
//! # Ok::<(), eh_workdays::Error>(())
//! ```
//!
//! # Range
//! The bank holidays are known for [`FIRST_DAY`] to [`LAST_DAY`] only. Any question that
//! needs a day outside that range fails with [`Error::OutOfRange`]; unknown years are never
//! treated as having no bank holidays.
//!
//! # Time of day
//! Working days are calendar dates in the UK. For instants, [`uk_local_date`] turns a UTC
//! timestamp into the date on a UK clock (GMT, or BST in summer), so a referral made at
//! 23:30 UTC in July counts from the next day. [`WorkingCalendar::deadline`] does this for
//! you.

mod calendar;
mod division;
mod error;
mod uk_time;

use chrono::NaiveDate;

pub use calendar::WorkingCalendar;
pub use division::{BankHoliday, Division};
pub use error::{Error, Result};
pub use uk_time::{is_british_summer_time, uk_local_date, uk_start_of_day};

/// The first day whose bank holidays this crate knows: 1 January 2020.
pub const FIRST_DAY: NaiveDate = ymd(2020, 1, 1);

/// The last day whose bank holidays this crate knows: 31 December 2030.
pub const LAST_DAY: NaiveDate = ymd(2030, 12, 31);

/// A date known to be valid, checked when the crate compiles.
const fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) => date,
        None => panic!("invalid date in a constant"),
    }
}
