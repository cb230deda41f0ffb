//! Rectification, pure: whether a correction to a person's details is valid (each field as the
//! referral contract checks it), and what it changes of the person as held.
use eh_proto::intake::v1::{CorrectPersonRequest, PersonCorrected};

fn is_date(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// A plausible email address (the contract's `format: email`, as far as a correction needs):
/// one `@`, something before it, a dotted domain after it, no spaces.
fn is_email(s: &str) -> bool {
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
        && s.len() <= 254
}

/// Every rule a correction breaks, as (field, rule): one per field, never quoting the value.
/// `today` is the council's date (a date of birth may not be after it).
pub fn check(
    req: &CorrectPersonRequest,
    today: chrono::NaiveDate,
) -> Vec<(&'static str, &'static str)> {
    let mut v = Vec::new();
    if req.person_id.trim().is_empty() {
        v.push(("person_id", "required"));
    }
    if req.reason.trim().is_empty() {
        v.push(("reason", "required: why the details are corrected"));
    } else if req.reason.len() > 2000 {
        v.push(("reason", "at most 2000 characters"));
    }
    for (field, value) in [
        ("given_name", &req.given_name),
        ("family_name", &req.family_name),
    ] {
        if let Some(s) = value
            && (s.trim().is_empty() || s.chars().count() > 100)
        {
            v.push((field, "1 to 100 characters"));
        }
    }
    if let Some(d) = &req.date_of_birth {
        if !is_date(d) {
            v.push(("date_of_birth", "a date, YYYY-MM-DD"));
        } else if d.parse::<chrono::NaiveDate>().is_ok_and(|d| d > today) {
            v.push(("date_of_birth", "not in the future"));
        }
    }
    if let Some(n) = &req.nhs_number
        && !crate::domain::matching::nhs_number_valid(n)
    {
        v.push((
            "nhs_number",
            "10 digits with a valid check digit (modulus 11)",
        ));
    }
    if let Some(e) = &req.email
        && !e.is_empty()
        && !is_email(e)
    {
        v.push(("email", "an email address (or empty to remove it)"));
    }
    if let Some(p) = &req.phone
        && p.chars().count() > 40
    {
        v.push(("phone", "at most 40 characters"));
    }
    if [
        &req.given_name,
        &req.family_name,
        &req.date_of_birth,
        &req.nhs_number,
        &req.email,
        &req.phone,
    ]
    .iter()
    .all(|f| f.is_none())
    {
        v.push(("person", "no field to correct"));
    }
    v
}

/// The person as held, for a correction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub family_id: String,
    pub given_name: String,
    pub family_name: String,
    pub date_of_birth: Option<String>,
    pub nhs_number: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// What a valid correction changes: each column and its new value (`None`: cleared), and the
/// event announcing it (the changed fields; both names as they now are when either changed; the
/// email and the one it replaces). Nothing when it changes nothing.
pub fn changes(
    held: &Held,
    req: &CorrectPersonRequest,
    at: &str,
) -> (Vec<(&'static str, Option<String>)>, PersonCorrected) {
    let trimmed = |s: &Option<String>| s.as_ref().map(|s| s.trim().to_string());
    let mut event = PersonCorrected {
        person_id: req.person_id.clone(),
        family_id: held.family_id.clone(),
        at: at.into(),
        ..Default::default()
    };
    let mut sets = Vec::new();
    let given = trimmed(&req.given_name).filter(|g| *g != held.given_name);
    let family = trimmed(&req.family_name).filter(|f| *f != held.family_name);
    if given.is_some() || family.is_some() {
        event.given_name = Some(given.clone().unwrap_or_else(|| held.given_name.clone()));
        event.family_name = Some(family.clone().unwrap_or_else(|| held.family_name.clone()));
    }
    if let Some(g) = given {
        sets.push(("given_name", Some(g)));
        event.fields.push("given_name".into());
    }
    if let Some(f) = family {
        sets.push(("family_name", Some(f)));
        event.fields.push("family_name".into());
    }
    if let Some(d) = trimmed(&req.date_of_birth).filter(|d| Some(d) != held.date_of_birth.as_ref())
    {
        sets.push(("date_of_birth", Some(d.clone())));
        event.fields.push("date_of_birth".into());
        event.date_of_birth = Some(d);
    }
    if let Some(n) = trimmed(&req.nhs_number).filter(|n| Some(n) != held.nhs_number.as_ref()) {
        sets.push(("nhs_number", Some(n)));
        event.fields.push("nhs_number".into());
    }
    let held_email = held.email.clone().unwrap_or_default();
    if let Some(e) = trimmed(&req.email).filter(|e| *e != held_email) {
        sets.push(("email", (!e.is_empty()).then(|| e.clone())));
        event.fields.push("email".into());
        event.email = Some(e);
        event.previous_email = held_email;
    }
    let held_phone = held.phone.clone().unwrap_or_default();
    if let Some(ph) = trimmed(&req.phone).filter(|ph| *ph != held_phone) {
        sets.push(("phone", (!ph.is_empty()).then_some(ph)));
        event.fields.push("phone".into());
    }
    (sets, event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> CorrectPersonRequest {
        CorrectPersonRequest {
            tenant: "worcs".into(),
            person_id: "p1".into(),
            reason: "the family told us".into(),
            ..Default::default()
        }
    }

    fn fields(v: &[(&str, &str)]) -> Vec<String> {
        v.iter().map(|(f, _)| f.to_string()).collect()
    }

    #[test]
    fn a_correction_is_checked_field_by_field_without_quoting_values() {
        let today: chrono::NaiveDate = "2026-11-29".parse().expect("date");
        let mut r = req();
        r.given_name = Some(" ".into());
        r.date_of_birth = Some("2027-01-01".into());
        r.nhs_number = Some("9434765918".into());
        r.email = Some("not an email".into());
        r.reason = String::new();
        let v = check(&r, today);
        assert_eq!(
            fields(&v),
            [
                "reason",
                "given_name",
                "date_of_birth",
                "nhs_number",
                "email"
            ]
        );
        assert!(v.iter().all(|(_, rule)| !rule.contains("not an email")));
        let mut ok = req();
        ok.date_of_birth = Some("2016-05-14".into());
        ok.nhs_number = Some("9434765919".into());
        ok.email = Some(String::new());
        assert!(check(&ok, today).is_empty());
        assert_eq!(fields(&check(&req(), today)), ["person"]);
        let mut bad_date = req();
        bad_date.date_of_birth = Some("14/05/2016".into());
        assert_eq!(fields(&check(&bad_date, today)), ["date_of_birth"]);
    }

    #[test]
    fn only_what_differs_changes_and_the_event_carries_both_names() {
        let held = Held {
            family_id: "f1".into(),
            given_name: "Dana".into(),
            family_name: "Marsh".into(),
            email: Some("dana@old.example".into()),
            ..Default::default()
        };
        let mut r = req();
        r.given_name = Some(" Danielle ".into());
        r.family_name = Some("Marsh".into());
        r.email = Some("danielle@example.org".into());
        let (sets, ev) = changes(&held, &r, "now");
        assert_eq!(
            sets,
            [
                ("given_name", Some("Danielle".to_string())),
                ("email", Some("danielle@example.org".to_string()))
            ]
        );
        assert_eq!(ev.fields, ["given_name", "email"]);
        assert_eq!(ev.given_name.as_deref(), Some("Danielle"));
        assert_eq!(ev.family_name.as_deref(), Some("Marsh"));
        assert_eq!(ev.previous_email, "dana@old.example");
        // The same correction of the corrected person changes nothing.
        let now_held = Held {
            given_name: "Danielle".into(),
            email: Some("danielle@example.org".into()),
            ..held
        };
        let (sets, ev) = changes(&now_held, &r, "now");
        assert!(sets.is_empty() && ev.fields.is_empty());
    }
}
