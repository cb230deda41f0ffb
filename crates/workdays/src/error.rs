//! The one error type of this crate and its `Result` alias.

use chrono::NaiveDate;

use crate::{Division, FIRST_DAY, LAST_DAY};

/// Result of the working-day operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a working-day question could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The question needs a day outside the years whose bank holidays this crate ships
    /// ([`FIRST_DAY`] to [`LAST_DAY`]). Unknown years are refused rather than treated as
    /// having no bank holidays, which would quietly shorten every deadline in them.
    #[error(
        "{date} is outside the working-day calendar, which knows bank holidays from {} to {}",
        FIRST_DAY,
        LAST_DAY
    )]
    OutOfRange {
        /// The first day that the calendar would have needed and does not cover.
        date: NaiveDate,
    },

    /// A division name that is not one of GOV.UK's `england-and-wales`, `scotland` or
    /// `northern-ireland`.
    #[error(
        "unknown bank-holiday division {0:?}: expected england-and-wales, scotland or northern-ireland"
    )]
    UnknownDivision(String),

    /// The bank-holiday data compiled into this crate could not be read. The crate's tests
    /// read every file, so this means the data was edited without running them.
    #[error("bank-holiday data for {division} is malformed at line {line}: {reason}")]
    HolidayData {
        /// Whose data file.
        division: Division,
        /// 1-based line number in the data file.
        line: usize,
        /// What was wrong with the line.
        reason: String,
    },
}
