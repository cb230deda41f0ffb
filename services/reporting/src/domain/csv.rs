//! The report as CSV (RFC 4180): a header row, then one row per figure, every line ended by CRLF.
//! A field holding a comma, a double quote, CR or LF is quoted, its quotes doubled.
use super::{Figure, Report};

/// The header row's fields.
pub const HEADER: [&str; 8] = [
    "section",
    "measure",
    "dimension",
    "value",
    "numerator",
    "denominator",
    "kind",
    "note",
];

/// One field, quoted when it must be.
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A figure's value as written: at most four decimal places, no trailing zeros (`0.6667`, `4`).
pub fn number(v: f64) -> String {
    let r = (v * 10_000.0).round() / 10_000.0;
    if r == 0.0 { "0".into() } else { format!("{r}") }
}

fn row(fields: &[&str]) -> String {
    let mut line = fields
        .iter()
        .map(|f| field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

fn figure_row(section: &str, f: &Figure) -> String {
    let value = f.value.map(number).unwrap_or_default();
    let (numerator, denominator) = if f.unavailable.is_some() {
        (String::new(), String::new())
    } else {
        (f.numerator.to_string(), f.denominator.to_string())
    };
    row(&[
        section,
        f.measure,
        &f.dimension,
        &value,
        &numerator,
        &denominator,
        f.kind.as_str(),
        f.unavailable.unwrap_or(""),
    ])
}

/// The whole report.
pub fn render(report: &Report) -> String {
    let mut out = row(&HEADER);
    for (section, figures) in report.sections() {
        for f in figures {
            out.push_str(&figure_row(section, f));
        }
    }
    out
}
