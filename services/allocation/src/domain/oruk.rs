//! Reading Open Referral UK (HSDS 3.0 UK profile) service records: what the platform takes from
//! them, and every record it refuses with the path and rule broken (never the value). Only `id`,
//! `name` and `status` are required by the standard; a record that breaks a rule is refused whole
//! so a half-read service is never offered families.
use serde_json::Value;

/// `status` values of the standard.
pub const STATUSES: &[&str] = &["active", "inactive", "defunct", "temporarily closed"];

/// The oldest age a service may name.
const MAX_AGE: f64 = 150.0;

/// A service as the platform keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrukService {
    pub id: String,
    pub name: String,
    pub organization_id: String,
    pub organization_name: String,
    pub status: String,
    pub minimum_age: Option<u32>,
    pub maximum_age: Option<u32>,
    pub email: String,
    pub taxonomy_terms: Vec<TermRef>,
    /// Postcodes of its locations, normalised ("WR1 2AB").
    pub postcodes: Vec<String>,
    pub service_areas: Vec<String>,
    pub last_modified: String,
}

/// A taxonomy term a service is tagged with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermRef {
    pub taxonomy: String,
    pub id: String,
    pub term: String,
}

impl TermRef {
    /// `taxonomy:term` (or the term alone when the source names no taxonomy).
    pub fn label(&self) -> String {
        if self.taxonomy.is_empty() {
            self.term.clone()
        } else {
            format!("{}:{}", self.taxonomy, self.term)
        }
    }
}

/// A record not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its id when readable, else its position (`#3`).
    pub record: String,
    /// JSON pointer within the record.
    pub path: String,
    pub reason: String,
}

/// A page of `GET /services`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub contents: Vec<Value>,
    pub total_pages: Option<u64>,
    pub last_page: Option<bool>,
}

/// Reads a page of `GET /services` (the standard's `Page` with `contents`).
///
/// # Errors
/// When it is not a page; the reason names the field.
pub fn read_page(v: &Value) -> Result<Page, String> {
    let o = v.as_object().ok_or("a page must be a JSON object")?;
    let contents = o
        .get("contents")
        .and_then(Value::as_array)
        .ok_or("a page must have a `contents` array")?
        .clone();
    Ok(Page {
        contents,
        total_pages: o.get("total_pages").and_then(Value::as_u64),
        last_page: o.get("last_page").and_then(Value::as_bool),
    })
}

/// The services a file holds: a page (`{"contents": [...]}`) or an array of services.
///
/// # Errors
/// When it is neither.
pub fn read_file(v: &Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(items) => Ok(items.clone()),
        Value::Object(_) => read_page(v).map(|p| p.contents),
        _ => Err("a directory file must hold an array of services or a page of them".into()),
    }
}

/// The id of a record in a listing, to fetch it in full.
pub fn listed_id(v: &Value) -> Option<String> {
    v.get("id")
        .and_then(Value::as_str)
        .filter(|s| valid_id(s))
        .map(str::to_string)
}

fn valid_id(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= 200 && !s.chars().any(char::is_control)
}

/// Reads one service record (the `position`th of its source).
///
/// # Errors
/// Every rule it breaks.
pub fn read_service(v: &Value, position: usize) -> Result<OrukService, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let record = listed_id(v).unwrap_or_else(|| format!("#{position}"));
    let mut refuse = |path: &str, reason: &str| {
        refusals.push(Refusal {
            record: record.clone(),
            path: path.into(),
            reason: reason.into(),
        });
    };
    let Some(o) = v.as_object() else {
        refuse("", "a service must be a JSON object");
        return Err(refusals);
    };
    let text = |key: &str| o.get(key).and_then(Value::as_str).map(str::trim);
    let id = match o.get("id") {
        None | Some(Value::Null) => {
            refuse("/id", "required");
            String::new()
        }
        Some(Value::String(s)) if valid_id(s) => s.clone(),
        Some(_) => {
            refuse(
                "/id",
                "must be a non-empty string of at most 200 characters",
            );
            String::new()
        }
    };
    let name = match text("name") {
        Some(s) if !s.is_empty() && s.len() <= 500 => s.to_string(),
        Some(_) => {
            refuse("/name", "must be 1-500 characters");
            String::new()
        }
        None => {
            refuse("/name", "required, a string");
            String::new()
        }
    };
    let status = match text("status") {
        Some(s) if STATUSES.contains(&s) => s.to_string(),
        Some(_) => {
            refuse(
                "/status",
                "must be one of active, inactive, defunct, temporarily closed",
            );
            String::new()
        }
        None => {
            refuse("/status", "required, a string");
            String::new()
        }
    };
    let mut age = |key: &str| -> Option<u32> {
        match o.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(a) if (0.0..=MAX_AGE).contains(&a) => Some(a.floor() as u32),
                _ => {
                    refuse(&format!("/{key}"), "must be an age from 0 to 150");
                    None
                }
            },
            Some(_) => {
                refuse(&format!("/{key}"), "must be a number");
                None
            }
        }
    };
    let minimum_age = age("minimum_age");
    let maximum_age = age("maximum_age");
    if let (Some(lo), Some(hi)) = (minimum_age, maximum_age)
        && lo > hi
    {
        refuse("/maximum_age", "must not be below minimum_age");
    }
    let (organization_id, organization_name) = match o.get("organization") {
        Some(Value::Object(org)) => (
            org.get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            org.get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_string(),
        ),
        None | Some(Value::Null) => (
            text("organization_id").unwrap_or_default().to_string(),
            String::new(),
        ),
        Some(_) => {
            refuse("/organization", "must be an object");
            (String::new(), String::new())
        }
    };
    let mut taxonomy_terms = Vec::new();
    match o.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(attrs)) => {
            for (i, a) in attrs.iter().enumerate() {
                match a.get("taxonomy_term") {
                    // An attribute may link other things than taxonomy terms.
                    None | Some(Value::Null) => {}
                    Some(Value::Object(t)) => {
                        let s = |k: &str| {
                            t.get(k)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .trim()
                                .to_string()
                        };
                        let term = if s("term").is_empty() {
                            s("name")
                        } else {
                            s("term")
                        };
                        if term.is_empty() && s("id").is_empty() {
                            refuse(
                                &format!("/attributes/{i}/taxonomy_term"),
                                "a taxonomy term needs an id, a term or a name",
                            );
                        } else {
                            taxonomy_terms.push(TermRef {
                                taxonomy: s("taxonomy"),
                                id: s("id"),
                                term,
                            });
                        }
                    }
                    Some(_) => refuse(
                        &format!("/attributes/{i}/taxonomy_term"),
                        "must be an object",
                    ),
                }
            }
        }
        Some(_) => refuse("/attributes", "must be an array"),
    }
    let mut postcodes = Vec::new();
    match o.get("service_at_locations") {
        None | Some(Value::Null) => {}
        Some(Value::Array(sals)) => {
            for sal in sals {
                let addresses = sal
                    .pointer("/location/addresses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for a in addresses {
                    // A location whose postcode is not a UK one still is the service's: it just
                    // tells the matcher nothing.
                    if let Some(p) = a
                        .get("postal_code")
                        .and_then(Value::as_str)
                        .and_then(super::Postcode::parse)
                    {
                        let full = p.full;
                        if !postcodes.contains(&full) {
                            postcodes.push(full);
                        }
                    }
                }
            }
        }
        Some(_) => refuse("/service_at_locations", "must be an array"),
    }
    let service_areas = o
        .get("service_areas")
        .and_then(Value::as_array)
        .map(|areas| {
            areas
                .iter()
                .filter_map(|a| a.get("name").and_then(Value::as_str))
                .map(|s| s.trim().chars().take(200).collect::<String>())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !refusals.is_empty() {
        return Err(refusals);
    }
    Ok(OrukService {
        id,
        name,
        organization_id,
        organization_name,
        status,
        minimum_age,
        maximum_age,
        email: text("email").unwrap_or_default().to_string(),
        taxonomy_terms,
        postcodes,
        service_areas,
        last_modified: text("last_modified").unwrap_or_default().to_string(),
    })
}

/// How a council maps taxonomy terms to the platform's needs: a need, and the terms (by id, term
/// or name, any case), optionally within one taxonomy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TermMapping {
    pub need: String,
    #[serde(default)]
    pub taxonomy: Option<String>,
    pub terms: Vec<String>,
}

/// The needs a service's terms map to, in [`super::NEEDS`] order.
pub fn needs_of(terms: &[TermRef], mapping: &[TermMapping]) -> Vec<String> {
    let hit = |m: &TermMapping| {
        terms.iter().any(|t| {
            m.taxonomy
                .as_deref()
                .is_none_or(|x| x.eq_ignore_ascii_case(&t.taxonomy))
                && m.terms
                    .iter()
                    .any(|w| w.eq_ignore_ascii_case(&t.term) || (!t.id.is_empty() && w == &t.id))
        })
    };
    super::NEEDS
        .iter()
        .filter(|n| mapping.iter().any(|m| m.need == **n && hit(m)))
        .map(|n| n.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full() -> Value {
        json!({
            "id": "svc-1", "name": " Family Support ", "status": "active",
            "minimum_age": 0, "maximum_age": 18.5, "email": "referrals@example.org",
            "organization": {"id": "org-1", "name": "Helping Hands"},
            "attributes": [
                {"id": "a1", "taxonomy_term": {"id": "t1", "term": "Domestic abuse", "taxonomy": "esdServiceTypes"}},
                {"id": "a2", "link_type": "other"},
                {"id": "a3", "taxonomy_term": {"id": "t2", "name": "Housing advice"}}
            ],
            "service_at_locations": [
                {"location": {"addresses": [{"postal_code": "wr1 2ab"}, {"postal_code": "not one"}]}},
                {"location": {"addresses": [{"postal_code": "WR12AB"}]}}
            ],
            "service_areas": [{"name": "Worcester"}],
            "last_modified": "2026-10-01T09:00:00Z"
        })
    }

    #[test]
    fn a_full_record_is_read() {
        let s = read_service(&full(), 0).unwrap();
        assert_eq!(s.id, "svc-1");
        assert_eq!(s.name, "Family Support");
        assert_eq!(s.organization_name, "Helping Hands");
        assert_eq!((s.minimum_age, s.maximum_age), (Some(0), Some(18)));
        assert_eq!(
            s.postcodes,
            ["WR1 2AB"],
            "normalised once, the bad one skipped"
        );
        assert_eq!(s.service_areas, ["Worcester"]);
        let labels: Vec<String> = s.taxonomy_terms.iter().map(TermRef::label).collect();
        assert_eq!(labels, ["esdServiceTypes:Domestic abuse", "Housing advice"]);
    }

    #[test]
    fn every_broken_rule_is_named_by_path_without_the_value() {
        let v = json!({
            "id": "svc-9", "name": "", "status": "open",
            "minimum_age": 20, "maximum_age": 12,
            "organization": "Helping Hands",
            "attributes": [{"taxonomy_term": "Domestic abuse"}],
        });
        let r = read_service(&v, 4).unwrap_err();
        let paths: Vec<&str> = r.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/name",
                "/status",
                "/maximum_age",
                "/organization",
                "/attributes/0/taxonomy_term"
            ]
        );
        assert!(r.iter().all(|x| x.record == "svc-9"));
        for x in &r {
            assert!(!x.reason.contains("open") || x.reason.contains("active"));
            assert!(!x.reason.contains("Helping Hands") && !x.reason.contains("Domestic"));
        }
    }

    #[test]
    fn a_record_without_a_usable_id_is_named_by_position() {
        for v in [
            json!({"name": "x", "status": "active"}),
            json!({"id": 7, "name": "x", "status": "active"}),
            json!("svc"),
        ] {
            let r = read_service(&v, 12).unwrap_err();
            assert_eq!(r[0].record, "#12");
        }
        let r = read_service(
            &json!({"id": "ok", "status": "active", "minimum_age": -1}),
            0,
        )
        .unwrap_err();
        assert_eq!(
            r.iter().map(|x| x.path.as_str()).collect::<Vec<_>>(),
            ["/name", "/minimum_age"]
        );
    }

    #[test]
    fn pages_and_files() {
        let page = json!({"total_pages": 3, "page_number": 1, "last_page": false, "contents": [{"id": "a"}]});
        let p = read_page(&page).unwrap();
        assert_eq!(
            (p.contents.len(), p.total_pages, p.last_page),
            (1, Some(3), Some(false))
        );
        assert!(read_page(&json!({"items": []})).is_err());
        assert_eq!(
            read_file(&json!([{"id": "a"}, {"id": "b"}])).unwrap().len(),
            2
        );
        assert_eq!(read_file(&page).unwrap().len(), 1);
        assert!(read_file(&json!("x")).is_err());
        assert_eq!(listed_id(&json!({"id": " "})), None);
    }

    #[test]
    fn terms_map_to_needs_by_term_name_or_id_within_a_taxonomy() {
        let s = read_service(&full(), 0).unwrap();
        let mapping = vec![
            TermMapping {
                need: "domestic_abuse".into(),
                taxonomy: Some("ESDSERVICETYPES".into()),
                terms: vec!["domestic abuse".into()],
            },
            TermMapping {
                need: "housing".into(),
                taxonomy: None,
                terms: vec!["t2".into()],
            },
            TermMapping {
                need: "crime".into(),
                taxonomy: Some("other".into()),
                terms: vec!["Domestic abuse".into()],
            },
        ];
        assert_eq!(
            needs_of(&s.taxonomy_terms, &mapping),
            ["domestic_abuse", "housing"]
        );
    }
}
