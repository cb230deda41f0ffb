//! The referral contract at the gateway's door: the published JSON Schema
//! (`proto/contracts/referral.v1.schema.json`, `earlyhelp.referral.v1`, formats asserted), so a
//! refused body lists every violation by path and rule before anything is sent on, and the gRPC
//! message intake takes is read from a document known to be well-formed.
use crate::problem::Violation;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;
use std::sync::LazyLock;

/// The contract, byte for byte as published.
pub const SCHEMA_TEXT: &str = include_str!("../../../proto/contracts/referral.v1.schema.json");

static VALIDATOR: LazyLock<Result<jsonschema::Validator, String>> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(SCHEMA_TEXT).map_err(|e| e.to_string())?;
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| e.to_string())
});

/// The contract as a JSON value (the OpenAPI document embeds it).
pub fn schema() -> Value {
    serde_json::from_str(SCHEMA_TEXT).unwrap_or(Value::Null)
}

/// Every violation of `doc`, by path and rule, sorted; empty when it keeps the contract.
///
/// A missing property is reported at its own path (`/source/reference`, rule `required`); the
/// rule is the schema keyword, so no message carrying the value sent is ever built into an answer.
///
/// # Errors
/// When the contract itself cannot be compiled (a build defect, not the caller's).
pub fn violations(doc: &Value) -> Result<Vec<Violation>, String> {
    let validator = VALIDATOR.as_ref().map_err(Clone::clone)?;
    Ok(listed(validator, doc))
}

/// Every violation of `doc` against `validator`, by path and rule (the schema keyword), sorted.
pub fn listed(validator: &jsonschema::Validator, doc: &Value) -> Vec<Violation> {
    let mut out: Vec<Violation> = validator
        .iter_errors(doc)
        .map(|e| {
            let mut path = e.instance_path().to_string();
            if let ValidationErrorKind::Required { property } = e.kind()
                && let Some(name) = property.as_str()
            {
                path.push('/');
                path.push_str(&name.replace('~', "~0").replace('/', "~1"));
            }
            Violation::new(path, e.kind().keyword())
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path).then(a.rule.cmp(&b.rule)));
    out.dedup();
    out
}

/// A gRPC field path as a JSON pointer into the body: `referral.children[0].given_name` →
/// `/children/0/given_name` (intake names its violations this way).
pub fn pointer(field: &str) -> String {
    pointer_under("referral", field)
}

/// A gRPC field path under message field `prefix` as a JSON pointer into the body:
/// (`consent`, `consent.restrictions[1].agency`) → `/restrictions/1/agency`.
pub fn pointer_under(prefix: &str, field: &str) -> String {
    let rest = field
        .strip_prefix(prefix)
        .filter(|r| r.is_empty() || r.starts_with('.'))
        .map(|r| r.strip_prefix('.').unwrap_or(r))
        .unwrap_or(field);
    let mut out = String::new();
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        let mut segments = part.split('[');
        if let Some(name) = segments.next() {
            out.push('/');
            out.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        for index in segments {
            out.push('/');
            out.push_str(index.trim_end_matches(']'));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "schema": "earlyhelp.referral.v1",
            "source": {"system": "hub", "reference": "R-1"},
            "submitted_at": "2026-11-23T09:30:00Z",
            "route": "practitioner",
            "referrer": {"name": "A Teacher", "agency": "education"},
            "children": [{"given_name": "Sam", "family_name": "Smith", "date_of_birth": "2015-04-01"}],
            "needs": ["education"],
            "significant_harm_risk": false,
            "consent": {"obtained": true, "given_by": "Dana Smith", "method": "signed", "date": "2026-11-20"}
        })
    }

    #[test]
    fn a_valid_document_has_no_violations() {
        assert_eq!(violations(&valid()).unwrap(), vec![]);
    }

    #[test]
    fn violations_name_path_and_rule_never_the_value() {
        let mut doc = valid();
        doc["children"][0]["date_of_birth"] = json!("Sam-1-April");
        doc["route"] = json!("SECRET-ROUTE");
        doc["source"].as_object_mut().unwrap().remove("reference");
        let v = violations(&doc).unwrap();
        assert_eq!(
            v,
            vec![
                Violation::new("/children/0/date_of_birth", "format"),
                Violation::new("/route", "enum"),
                Violation::new("/source/reference", "required"),
            ]
        );
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains("Sam") && !text.contains("SECRET"), "{text}");
    }

    #[test]
    fn grpc_field_paths_become_pointers() {
        assert_eq!(
            pointer("referral.children[0].given_name"),
            "/children/0/given_name"
        );
        assert_eq!(pointer("referral.route"), "/route");
        assert_eq!(pointer("referral"), "");
        assert_eq!(pointer("tenant"), "/tenant");
    }
}
