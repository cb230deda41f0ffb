//! Records' rules, pure: when a family's records are due for destruction under the council's
//! policy, and the subject access report as a readable document.
use chrono::{Datelike, Days, NaiveDate};
use eh_proto::records::v1 as pb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Kept until the family's youngest child reaches `years` (and every case is closed).
    YoungestChildAge,
    /// Kept `years` and `days` after the family's last case closed.
    AfterClosure,
}

/// A council's retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub rule: Rule,
    pub years: u32,
    pub days: u32,
}

impl Policy {
    /// The rule as a certificate names it (`youngest_child_age:25`, `after_closure:6y0d`).
    pub fn name(&self) -> String {
        match self.rule {
            Rule::YoungestChildAge => format!("youngest_child_age:{}y{}d", self.years, self.days),
            Rule::AfterClosure => format!("after_closure:{}y{}d", self.years, self.days),
        }
    }
}

/// What records knows of one family for retention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilyFacts {
    /// Each child's date of birth (when the referral gave one).
    pub child_births: Vec<NaiveDate>,
    /// Each case: when it closed, `None` while open.
    pub cases: Vec<Option<NaiveDate>>,
}

/// A case in this state is over (closed, or stepped up out of Early Help).
pub fn is_over(state: &str) -> bool {
    state.starts_with("closed") || state == "stepped_up"
}

fn plus(date: NaiveDate, years: u32, days: u32) -> Option<NaiveDate> {
    let y = date.year().checked_add(i32::try_from(years).ok()?)?;
    // 29 February plus years lands on 28 February when the year has none.
    let moved = date
        .with_year(y)
        .or_else(|| NaiveDate::from_ymd_opt(y, date.month(), 28))?;
    moved.checked_add_days(Days::new(u64::from(days)))
}

/// The day a family's records fall due under `policy`; `None` while any case is open, when it
/// has no case, or (youngest child's age) when no child's date of birth is known: nothing is
/// destroyed on a guess.
pub fn due(policy: &Policy, facts: &FamilyFacts) -> Option<NaiveDate> {
    if facts.cases.is_empty() || facts.cases.iter().any(Option::is_none) {
        return None;
    }
    let last_closed = facts.cases.iter().flatten().max().copied()?;
    match policy.rule {
        Rule::AfterClosure => plus(last_closed, policy.years, policy.days),
        Rule::YoungestChildAge => {
            let youngest = facts.child_births.iter().max().copied()?;
            let grown = plus(youngest, policy.years, policy.days)?;
            Some(grown.max(last_closed))
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as one HTML document: each service, each table, each row's fields; every field
/// flagged for redaction marked (with why) for the reviewer, nothing removed.
pub fn html(report: &pb::SubjectAccessReport) -> String {
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<title>Subject access report</title>");
    h.push_str("<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #999;padding:2px 6px;text-align:left;vertical-align:top}.redact{background:#fde68a}</style>");
    h.push_str("</head><body>\n<h1>Subject access report</h1>\n");
    h.push_str(&format!(
        "<p>Council: {} · person: {} · request: {} · produced: {}</p>\n",
        esc(&report.tenant),
        esc(&report.person_id),
        esc(&report.request_id),
        esc(&report.produced_at)
    ));
    h.push_str("<p>Fields marked <span class=\"redact\">like this</span> are a third party's information: review them before disclosure.</p>\n");
    if !report.incomplete.is_empty() {
        h.push_str(&format!(
            "<p><strong>Incomplete:</strong> {}</p>\n",
            esc(&report.incomplete.join(", "))
        ));
    }
    for s in &report.services {
        h.push_str(&format!("<h2>{}</h2>\n", esc(&s.service)));
        if s.tables.is_empty() {
            h.push_str("<p>Nothing held.</p>\n");
        }
        for t in &s.tables {
            h.push_str(&format!("<h3>{}</h3>\n", esc(&t.table)));
            for (i, row) in t.rows_json.iter().enumerate() {
                let flags: Vec<&pb::Redaction> = s
                    .redactions
                    .iter()
                    .filter(|r| r.table == t.table && r.row as usize == i)
                    .collect();
                h.push_str("<table>\n");
                let fields: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(row).unwrap_or_default();
                for (k, v) in &fields {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    match flags.iter().find(|r| &r.field == k) {
                        Some(r) => h.push_str(&format!(
                            "<tr class=\"redact\"><th>{}</th><td>{}</td><td>redact? {}</td></tr>\n",
                            esc(k),
                            esc(&text),
                            esc(&r.reason)
                        )),
                        None => h.push_str(&format!(
                            "<tr><th>{}</th><td colspan=\"2\">{}</td></tr>\n",
                            esc(k),
                            esc(&text)
                        )),
                    }
                }
                h.push_str("</table>\n");
            }
        }
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("a date")
    }

    #[test]
    fn nothing_is_due_while_a_case_is_open_or_without_a_case() {
        let p = Policy {
            rule: Rule::AfterClosure,
            years: 0,
            days: 0,
        };
        assert_eq!(due(&p, &FamilyFacts::default()), None);
        let open = FamilyFacts {
            child_births: vec![],
            cases: vec![Some(d("2020-01-01")), None],
        };
        assert_eq!(due(&p, &open), None);
    }

    #[test]
    fn after_closure_counts_from_the_last_case_closed() {
        let p = Policy {
            rule: Rule::AfterClosure,
            years: 6,
            days: 1,
        };
        let f = FamilyFacts {
            child_births: vec![],
            cases: vec![Some(d("2020-03-01")), Some(d("2021-02-28"))],
        };
        assert_eq!(due(&p, &f), Some(d("2027-03-01")));
        assert_eq!(p.name(), "after_closure:6y1d");
    }

    #[test]
    fn youngest_child_age_waits_for_the_youngest_and_for_closure() {
        let p = Policy {
            rule: Rule::YoungestChildAge,
            years: 25,
            days: 0,
        };
        let f = FamilyFacts {
            child_births: vec![d("2010-05-01"), d("2012-02-29")],
            cases: vec![Some(d("2020-01-01"))],
        };
        assert_eq!(due(&p, &f), Some(d("2037-02-28")));
        let no_births = FamilyFacts {
            child_births: vec![],
            cases: vec![Some(d("2020-01-01"))],
        };
        assert_eq!(due(&p, &no_births), None);
    }

    #[test]
    fn the_document_marks_flagged_fields_and_escapes_everything() {
        let r = pb::SubjectAccessReport {
            tenant: "worcs".into(),
            person_id: "p1".into(),
            services: vec![pb::PersonDataExport {
                service: "intake".into(),
                tables: vec![pb::HeldRows {
                    table: "referrals".into(),
                    rows_json: vec![r#"{"referrer_name":"<b>Ms Head</b>","route":"x"}"#.into()],
                }],
                redactions: vec![pb::Redaction {
                    service: "intake".into(),
                    table: "referrals".into(),
                    row: 0,
                    field: "referrer_name".into(),
                    reason: "referrer".into(),
                }],
            }],
            ..Default::default()
        };
        let h = html(&r);
        assert!(h.contains("&lt;b&gt;Ms Head&lt;/b&gt;"), "{h}");
        assert!(h.contains("redact? referrer"));
        assert!(!h.contains("<b>Ms Head"));
    }

    #[test]
    fn over_means_closed_or_stepped_up() {
        assert!(is_over("closed_no_consent"));
        assert!(is_over("stepped_up"));
        assert!(!is_over("allocated"));
    }
}
