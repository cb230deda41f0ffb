//! The published referral contract (`earlyhelp.referral.v1`, JSON Schema 2020-12, formats
//! asserted) and the conversions between its JSON and the gRPC message, so both doors accept and
//! refuse exactly the same documents and report violations at the same paths.
use eh_proto::intake::v1::{Referral, Violation};
use serde_json::Value;
use std::sync::LazyLock;

/// The contract, byte for byte as published (a test checks it against the shared copy).
pub const SCHEMA_TEXT: &str = include_str!("../../../../proto/contracts/referral.v1.schema.json");

static VALIDATOR: LazyLock<Result<jsonschema::Validator, String>> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(SCHEMA_TEXT).map_err(|e| e.to_string())?;
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| e.to_string())
});

/// Why a document was refused, every violation listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub violations: Vec<Violation>,
    pub source_system: String,
    pub source_reference: String,
}

impl Rejection {
    pub fn single(path: &str, reason: impl Into<String>) -> Self {
        Self {
            violations: vec![Violation {
                path: path.into(),
                reason: reason.into(),
            }],
            source_system: String::new(),
            source_reference: String::new(),
        }
    }

    pub fn summary(&self) -> String {
        self.violations
            .iter()
            .map(|v| {
                if v.path.is_empty() {
                    v.reason.clone()
                } else {
                    format!("{}: {}", v.path, v.reason)
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn source_of(doc: &Value) -> (String, String) {
    let s = |k: &str| {
        doc.pointer(&format!("/source/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect::<String>()
    };
    (s("system"), s("reference"))
}

/// Validates a document against the contract; the typed referral when valid.
pub fn validate(doc: &Value) -> Result<Referral, Rejection> {
    let validator = VALIDATOR
        .as_ref()
        .map_err(|e| Rejection::single("", format!("contract unavailable: {e}")))?;
    let mut violations: Vec<Violation> = validator
        .iter_errors(doc)
        .map(|e| Violation {
            path: e.instance_path().to_string(),
            reason: e.to_string(),
        })
        .collect();
    violations.sort_by(|a, b| a.path.cmp(&b.path).then(a.reason.cmp(&b.reason)));
    violations.dedup();
    if !violations.is_empty() {
        let (source_system, source_reference) = source_of(doc);
        return Err(Rejection {
            violations,
            source_system,
            source_reference,
        });
    }
    serde_json::from_value::<Referral>(doc.clone())
        .map_err(|e| Rejection::single("", format!("cannot read the referral: {e}")))
}

/// Parses and validates raw bytes from the inbound subject.
pub fn parse(bytes: &[u8], max_bytes: usize) -> Result<(Value, Referral), Rejection> {
    if bytes.len() > max_bytes {
        return Err(Rejection::single(
            "",
            format!(
                "payload of {} bytes exceeds the limit of {max_bytes} bytes",
                bytes.len()
            ),
        ));
    }
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| Rejection::single("", format!("not valid JSON (UTF-8): {e}")))?;
    let referral = validate(&doc)?;
    Ok((doc, referral))
}

/// The contract JSON of a gRPC referral: absent optional fields and empty repeated fields are
/// omitted (protobuf cannot tell an empty list from none), so a missing required field is
/// reported as missing rather than defaulted.
pub fn to_json(referral: &Referral) -> Value {
    let mut v = serde_json::to_value(referral).unwrap_or(Value::Null);
    strip_nulls(&mut v);
    v
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, x| !(x.is_null() || x.as_array().is_some_and(Vec::is_empty)));
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// A JSON pointer as a gRPC field path: `/children/0/given_name` → `referral.children[0].given_name`.
pub fn field_path(pointer: &str) -> String {
    let mut out = String::from("referral");
    for part in pointer.split('/').skip(1) {
        if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            out.push('.');
            out.push_str(&part.replace("~1", "/").replace("~0", "~"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn valid() -> Value {
        json!({
            "schema": "earlyhelp.referral.v1",
            "source": {"system": "school-mis", "reference": "R-1"},
            "submitted_at": "2026-11-20T09:30:00Z",
            "route": "practitioner",
            "referrer": {"name": "A Teacher", "agency": "education", "email": "teacher@school.example"},
            "children": [{"given_name": "Sam", "family_name": "Smith", "date_of_birth": "2015-04-01"}],
            "needs": ["education"],
            "significant_harm_risk": false,
            "consent": {"obtained": true, "method": "signed", "date": "2026-11-19"}
        })
    }

    #[test]
    fn the_shipped_contract_is_the_published_one() {
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/contracts/referral.v1.schema.json");
        if let Ok(published) = std::fs::read_to_string(&shared) {
            assert_eq!(
                published, SCHEMA_TEXT,
                "proto/contracts is out of date with shared/contracts"
            );
        }
    }

    #[test]
    fn a_valid_document_is_accepted_and_typed() {
        let r = validate(&valid()).unwrap();
        assert_eq!(r.children[0].given_name, "Sam");
        assert_eq!(r.significant_harm_risk, Some(false));
    }

    #[test]
    fn every_violation_is_listed_with_its_path() {
        let mut d = valid();
        d["children"][0]
            .as_object_mut()
            .unwrap()
            .remove("date_of_birth");
        d["needs"] = json!(["flying"]);
        d["referrer"]["email"] = json!("not-an-email");
        d["unexpected"] = json!(1);
        let e = validate(&d).unwrap_err();
        let paths: Vec<&str> = e.violations.iter().map(|v| v.path.as_str()).collect();
        assert!(paths.contains(&"/children/0"), "{paths:?}");
        assert!(paths.contains(&"/needs/0"), "{paths:?}");
        assert!(paths.contains(&"/referrer/email"), "{paths:?}");
        assert!(paths.contains(&""), "{paths:?}");
        assert_eq!(e.source_reference, "R-1");
    }

    #[test]
    fn formats_are_asserted() {
        let mut d = valid();
        d["children"][0]["date_of_birth"] = json!("2015-13-45");
        assert!(validate(&d).is_err());
    }

    #[test]
    fn unborn_child_needs_exactly_one_date() {
        let mut d = valid();
        d["children"][0] = json!({"given_name": "Baby", "family_name": "Smith", "expected_date_of_delivery": "2027-02-01"});
        assert!(validate(&d).is_ok());
        d["children"][0]["date_of_birth"] = json!("2026-01-01");
        assert!(validate(&d).is_err(), "oneOf: both dates is invalid");
    }

    #[test]
    fn oversized_and_malformed_are_refused_unread() {
        assert!(
            parse(b"{", 100)
                .unwrap_err()
                .summary()
                .contains("not valid JSON")
        );
        assert!(
            parse(&[b' '; 101], 100)
                .unwrap_err()
                .summary()
                .contains("exceeds")
        );
    }

    #[test]
    fn grpc_and_json_round_trip() {
        let r = validate(&valid()).unwrap();
        assert_eq!(to_json(&r), valid());
    }

    #[test]
    fn an_empty_grpc_message_reports_required_fields() {
        let e = validate(&to_json(&Referral::default())).unwrap_err();
        let text = e.summary();
        assert!(text.contains("significant_harm_risk"), "{text}");
        assert!(text.contains("source"), "{text}");
    }

    #[test]
    fn pointer_to_field_path() {
        assert_eq!(
            field_path("/children/0/given_name"),
            "referral.children[0].given_name"
        );
        assert_eq!(field_path(""), "referral");
    }
}
