//! The three UK bank-holiday divisions and the bank holidays of each, read from the data
//! files in `data/` that are compiled into the crate.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

use crate::{Error, FIRST_DAY, LAST_DAY, Result};

/// A part of the UK with its own bank holidays, named as in GOV.UK's `bank-holidays.json`
/// (`england-and-wales`, `scotland`, `northern-ireland`) when serialised or parsed.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Division {
    /// England and Wales: Easter Monday, and the summer bank holiday at the end of August.
    #[default]
    EnglandAndWales,
    /// Scotland: 2 January and St Andrew's Day, no Easter Monday, and the summer bank
    /// holiday at the start of August.
    Scotland,
    /// Northern Ireland: England's holidays plus St Patrick's Day and the Battle of the
    /// Boyne (Orangemen's Day).
    NorthernIreland,
}

impl Division {
    /// Every division, in GOV.UK's order.
    pub const ALL: [Division; 3] = [
        Division::EnglandAndWales,
        Division::Scotland,
        Division::NorthernIreland,
    ];

    /// GOV.UK's name for the division, e.g. `"england-and-wales"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Division::EnglandAndWales => "england-and-wales",
            Division::Scotland => "scotland",
            Division::NorthernIreland => "northern-ireland",
        }
    }

    /// The division's bank holidays from [`FIRST_DAY`] to [`LAST_DAY`], in date order.
    ///
    /// 2020 to 2027 are the dates GOV.UK publishes, one-off holidays included; 2028 to 2030
    /// were not yet published when the data was written and follow the standing rules.
    ///
    /// # Errors
    /// [`Error::HolidayData`] if the compiled-in data is malformed, which the crate's own
    /// tests rule out.
    pub fn bank_holidays(self) -> Result<Vec<BankHoliday>> {
        parse(self, self.data())
    }

    fn data(self) -> &'static str {
        match self {
            Division::EnglandAndWales => include_str!("../data/england-and-wales.csv"),
            Division::Scotland => include_str!("../data/scotland.csv"),
            Division::NorthernIreland => include_str!("../data/northern-ireland.csv"),
        }
    }
}

impl fmt::Display for Division {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Division {
    type Err = Error;

    /// Parses GOV.UK's name for the division, e.g. `"scotland"`.
    fn from_str(name: &str) -> Result<Self> {
        Division::ALL
            .into_iter()
            .find(|division| division.as_str() == name)
            .ok_or_else(|| Error::UnknownDivision(name.to_owned()))
    }
}

/// One bank holiday, in the shape of an event in GOV.UK's `bank-holidays.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankHoliday {
    /// The day the holiday is taken (for a substitute day, the weekday it moved to).
    pub date: NaiveDate,
    /// GOV.UK's title, e.g. `"Spring bank holiday"`.
    pub title: String,
    /// GOV.UK's notes: `"Substitute day"` when the holiday fell on a weekend and moved to a
    /// weekday, otherwise empty.
    pub notes: String,
}

impl BankHoliday {
    /// Whether this is a substitute day for a holiday that fell on a weekend.
    pub fn is_substitute(&self) -> bool {
        self.notes == SUBSTITUTE_DAY
    }
}

const SUBSTITUTE_DAY: &str = "Substitute day";
const HEADER: &str = "date,title,notes";

/// Reads a data file: `#` comment lines, the header `date,title,notes`, then one holiday a
/// line, on weekdays, within the covered range, in strictly increasing date order.
pub(crate) fn parse(division: Division, text: &str) -> Result<Vec<BankHoliday>> {
    let mut holidays: Vec<BankHoliday> = Vec::new();
    let mut seen_header = false;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = |reason: String| Error::HolidayData {
            division,
            line: index + 1,
            reason,
        };
        if !seen_header {
            if line != HEADER {
                return Err(malformed(format!("expected the header {HEADER:?}")));
            }
            seen_header = true;
            continue;
        }
        let mut fields = line.splitn(3, ',');
        let (Some(date), Some(title), Some(notes)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed(
                "expected three fields: date,title,notes".to_owned(),
            ));
        };
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|err| malformed(format!("bad date {date:?}: {err}")))?;
        if title.trim().is_empty() {
            return Err(malformed("empty title".to_owned()));
        }
        if !(FIRST_DAY..=LAST_DAY).contains(&date) {
            return Err(malformed(format!(
                "{date} is outside {FIRST_DAY} to {LAST_DAY}"
            )));
        }
        if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
            return Err(malformed(format!("{date} is a weekend")));
        }
        if let Some(previous) = holidays.last()
            && previous.date >= date
        {
            return Err(malformed(format!(
                "{date} does not come after {}",
                previous.date
            )));
        }
        holidays.push(BankHoliday {
            date,
            title: title.trim().to_owned(),
            notes: notes.trim().to_owned(),
        });
    }
    if !seen_header {
        return Err(Error::HolidayData {
            division,
            line: 0,
            reason: "no header line".to_owned(),
        });
    }
    Ok(holidays)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn holidays(division: Division) -> Vec<BankHoliday> {
        division.bank_holidays().unwrap()
    }

    fn in_year(division: Division, year: i32) -> Vec<BankHoliday> {
        holidays(division)
            .into_iter()
            .filter(|h| h.date.year() == year)
            .collect()
    }

    fn has(division: Division, day: NaiveDate, title: &str) -> bool {
        holidays(division)
            .iter()
            .any(|h| h.date == day && h.title == title)
    }

    /// Easter Sunday by the anonymous Gregorian algorithm (Meeus/Jones/Butcher), written
    /// independently of the data so the data's Easter holidays can be checked against it.
    fn easter_sunday(year: i32) -> NaiveDate {
        let a = year % 19;
        let b = year / 100;
        let c = year % 100;
        let d = b / 4;
        let e = b % 4;
        let f = (b + 8) / 25;
        let g = (b - f + 1) / 3;
        let h = (19 * a + b - d - g + 15) % 30;
        let i = c / 4;
        let k = c % 4;
        let l = (32 + 2 * e + 2 * i - h - k) % 7;
        let m = (a + 11 * h + 22 * l) / 451;
        let month = (h + l - 7 * m + 114) / 31;
        let day = (h + l - 7 * m + 114) % 31 + 1;
        date(year, month as u32, day as u32)
    }

    #[test]
    fn easter_algorithm_matches_known_easters() {
        assert_eq!(easter_sunday(2019), date(2019, 4, 21));
        assert_eq!(easter_sunday(2024), date(2024, 3, 31));
        assert_eq!(easter_sunday(2025), date(2025, 4, 20));
        assert_eq!(easter_sunday(2038), date(2038, 4, 25));
        assert_eq!(easter_sunday(2285), date(2285, 3, 22));
    }

    #[test]
    fn every_data_file_parses_and_covers_every_year() {
        for division in Division::ALL {
            let all = holidays(division);
            for year in FIRST_DAY.year()..=LAST_DAY.year() {
                assert!(
                    all.iter().any(|h| h.date.year() == year),
                    "{division} has nothing in {year}"
                );
            }
        }
    }

    #[test]
    fn no_bank_holiday_falls_on_a_weekend() {
        for division in Division::ALL {
            for holiday in holidays(division) {
                assert!(
                    !matches!(holiday.date.weekday(), Weekday::Sat | Weekday::Sun),
                    "{division}: {holiday:?}"
                );
            }
        }
    }

    #[test]
    fn good_friday_everywhere_and_easter_monday_outside_scotland_match_easter() {
        for year in FIRST_DAY.year()..=LAST_DAY.year() {
            let easter = easter_sunday(year);
            let good_friday = easter - chrono::Days::new(2);
            let easter_monday = easter + chrono::Days::new(1);
            for division in Division::ALL {
                let titled = |title: &str| -> Vec<NaiveDate> {
                    in_year(division, year)
                        .into_iter()
                        .filter(|h| h.title == title)
                        .map(|h| h.date)
                        .collect()
                };
                assert_eq!(titled("Good Friday"), [good_friday], "{division} {year}");
                let expected_monday: &[NaiveDate] = match division {
                    Division::Scotland => &[],
                    _ => &[easter_monday],
                };
                assert_eq!(
                    titled("Easter Monday"),
                    expected_monday,
                    "{division} {year}"
                );
            }
        }
    }

    #[test]
    fn counts_per_year_are_as_published() {
        // The ordinary number per division, and the years with one-offs:
        // 2022 Platinum Jubilee and State Funeral (+2), 2023 Coronation (+1).
        let ordinary = |division| match division {
            Division::EnglandAndWales => 8,
            Division::Scotland => 9,
            Division::NorthernIreland => 10,
        };
        for division in Division::ALL {
            let mut per_year = BTreeMap::new();
            for holiday in holidays(division) {
                *per_year.entry(holiday.date.year()).or_insert(0) += 1;
            }
            for (year, count) in per_year {
                let extra = match year {
                    2022 => 2,
                    2023 => 1,
                    _ => 0,
                };
                assert_eq!(count, ordinary(division) + extra, "{division} {year}");
            }
        }
    }

    #[test]
    fn one_off_holidays_apply_in_every_division() {
        for division in Division::ALL {
            assert!(has(
                division,
                date(2020, 5, 8),
                "Early May bank holiday (VE day)"
            ));
            assert!(
                !holidays(division)
                    .iter()
                    .any(|h| h.date == date(2020, 5, 4))
            );
            assert!(has(division, date(2022, 6, 2), "Spring bank holiday"));
            assert!(
                !holidays(division)
                    .iter()
                    .any(|h| h.date == date(2022, 5, 30))
            );
            assert!(has(
                division,
                date(2022, 6, 3),
                "Platinum Jubilee bank holiday"
            ));
            assert!(has(
                division,
                date(2022, 9, 19),
                "Bank Holiday for the State Funeral of Queen Elizabeth II"
            ));
            assert!(has(division, date(2023, 5, 1), "Early May bank holiday"));
            assert!(has(
                division,
                date(2023, 5, 8),
                "Bank holiday for the coronation of King Charles III"
            ));
        }
    }

    #[test]
    fn summer_bank_holiday_is_first_monday_in_scotland_and_last_monday_elsewhere() {
        for division in Division::ALL {
            for year in FIRST_DAY.year()..=LAST_DAY.year() {
                let summer: Vec<_> = in_year(division, year)
                    .into_iter()
                    .filter(|h| h.title == "Summer bank holiday")
                    .map(|h| h.date)
                    .collect();
                assert_eq!(summer.len(), 1, "{division} {year}");
                let day = summer[0];
                assert_eq!((day.month(), day.weekday()), (8, Weekday::Mon));
                match division {
                    Division::Scotland => assert!(day.day() <= 7, "{day}"),
                    _ => assert!(day.day() >= 25, "{day}"),
                }
            }
        }
    }

    #[test]
    fn regional_holidays_move_to_monday_from_a_weekend() {
        // St Andrew's Day (Scotland), St Patrick's Day and the Boyne (Northern Ireland).
        let cases = [
            (Division::Scotland, 11, 30, "St Andrew’s Day"),
            (Division::NorthernIreland, 3, 17, "St Patrick’s Day"),
            (
                Division::NorthernIreland,
                7,
                12,
                "Battle of the Boyne (Orangemen’s Day)",
            ),
        ];
        for (division, month, day, title) in cases {
            for year in FIRST_DAY.year()..=LAST_DAY.year() {
                let nominal = date(year, month, day);
                let expected = match nominal.weekday() {
                    Weekday::Sat => nominal + chrono::Days::new(2),
                    Weekday::Sun => nominal + chrono::Days::new(1),
                    _ => nominal,
                };
                let found: Vec<_> = in_year(division, year)
                    .into_iter()
                    .filter(|h| h.title == title)
                    .collect();
                assert_eq!(found.len(), 1, "{division} {year} {title}");
                assert_eq!(found[0].date, expected, "{division} {year} {title}");
                assert_eq!(found[0].is_substitute(), expected != nominal);
            }
        }
        assert!(has(
            Division::Scotland,
            date(2025, 12, 1),
            "St Andrew’s Day"
        ));
        assert!(has(
            Division::NorthernIreland,
            date(2025, 7, 14),
            "Battle of the Boyne (Orangemen’s Day)"
        ));
    }

    #[test]
    fn christmas_and_new_year_substitutes() {
        for division in Division::ALL {
            // 2026: Christmas Friday, Boxing Day Saturday → Monday 28.
            assert!(has(division, date(2026, 12, 25), "Christmas Day"));
            assert!(has(division, date(2026, 12, 28), "Boxing Day"));
            // 2027: Christmas Saturday, Boxing Day Sunday → Monday 27 and Tuesday 28.
            assert!(has(division, date(2027, 12, 27), "Christmas Day"));
            assert!(has(division, date(2027, 12, 28), "Boxing Day"));
            // 2022: Christmas Sunday → Boxing Day Monday 26, Christmas Tuesday 27.
            assert!(has(division, date(2022, 12, 26), "Boxing Day"));
            assert!(has(division, date(2022, 12, 27), "Christmas Day"));
            // 2022 and 2028: New Year's Day Saturday → Monday 3 January.
            assert!(has(division, date(2022, 1, 3), "New Year’s Day"));
            assert!(has(division, date(2028, 1, 3), "New Year’s Day"));
        }
        // Scotland also keeps 2 January: 2023 (1st a Sunday) → Monday 2 and Tuesday 3;
        // 2021 (2nd a Saturday) → Monday 4.
        assert!(has(Division::Scotland, date(2023, 1, 2), "New Year’s Day"));
        assert!(has(Division::Scotland, date(2023, 1, 3), "2nd January"));
        assert!(has(Division::Scotland, date(2021, 1, 4), "2nd January"));
        assert!(!has(
            Division::EnglandAndWales,
            date(2021, 1, 4),
            "2nd January"
        ));
    }

    #[test]
    fn division_names_match_gov_uk() {
        for (division, name) in [
            (Division::EnglandAndWales, "england-and-wales"),
            (Division::Scotland, "scotland"),
            (Division::NorthernIreland, "northern-ireland"),
        ] {
            assert_eq!(division.to_string(), name);
            assert_eq!(name.parse::<Division>().unwrap(), division);
            let json = serde_json::to_string(&division).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Division>(&json).unwrap(), division);
        }
        assert_eq!(
            "wales".parse::<Division>(),
            Err(Error::UnknownDivision("wales".to_owned()))
        );
    }

    #[test]
    fn malformed_data_is_an_error_not_a_panic() {
        let cases = [
            ("", "no header line"),
            ("2024-01-01,New Year,\n", "header"),
            ("date,title,notes\n2024-01-01\n", "three fields"),
            ("date,title,notes\n2024-13-01,X,\n", "bad date"),
            ("date,title,notes\n2024-01-01,,\n", "empty title"),
            ("date,title,notes\n2019-12-25,X,\n", "outside"),
            ("date,title,notes\n2024-01-06,X,\n", "weekend"),
            (
                "date,title,notes\n2024-01-02,X,\n2024-01-01,Y,\n",
                "does not come after",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(Division::Scotland, text).unwrap_err();
            assert!(err.to_string().contains(expected), "{text:?}: {err}");
        }
    }
}
