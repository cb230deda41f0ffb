//! The published referral contract (`earlyhelp.referral.v1`, JSON Schema 2020-12, formats
//! asserted) and the conversions between its JSON and the gRPC message, so both doors accept and
//! refuse exactly the same documents and report violations at the same paths.
//!
//! A violation names the path and the rule broken, never the value: a refused document is
//! still a child's name, an NHS number or a concern, and the reasons travel far (the
//! `referral_rejected` event, the log, the gRPC error). The validator's own messages quote the
//! instance, so the reasons are written here from the rule alone ([`rule_broken`]).
use eh_proto::intake::v1::{Referral, Violation};
use jsonschema::error::{TypeKind, ValidationErrorKind};
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
        .map(|e| {
            let path = e.instance_path().to_string();
            let reason = rule_broken(e.kind(), &path);
            Violation { path, reason }
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
    // The contract admits only what the message can hold, so this is a defect of ours; serde's
    // message may quote the value, so only its category is told.
    serde_json::from_value::<Referral>(doc.clone()).map_err(|e| {
        Rejection::single(
            "",
            format!(
                "the document meets the contract but cannot be read as a referral ({:?} error)",
                e.classify()
            ),
        )
    })
}

/// What a violation of `kind` breaks, in words taken from the contract alone: the limit, the
/// pattern, the allowed values, the required property; never the instance.
/// `path` is where the violation is, so the alternatives of a `oneOf` are told relative to it.
fn rule_broken(kind: &ValidationErrorKind, path: &str) -> String {
    let plural = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    match kind {
        ValidationErrorKind::Required { property } => match property.as_str() {
            Some(p) => format!("`{p}` is required"),
            None => format!("{property} is required"),
        },
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            // A property's name is the sender's, not the contract's: named only when it looks
            // like a field name, so a name or a number written as a key is not repeated.
            let named: Vec<String> = unexpected
                .iter()
                .filter(|k| is_field_name(k))
                .map(|k| format!("`{k}`"))
                .collect();
            let unnamed = unexpected.len() - named.len();
            let mut parts = named;
            if unnamed > 0 {
                parts.push(plural(
                    unnamed as u64,
                    "property whose name is not shown",
                    "properties whose names are not shown",
                ));
            }
            format!("not in the contract: {}", parts.join(", "))
        }
        ValidationErrorKind::Type { kind } => {
            let types: Vec<String> = match kind {
                TypeKind::Single(t) => vec![t.to_string()],
                TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect(),
            };
            format!("must be of type {}", types.join(" or "))
        }
        ValidationErrorKind::Enum { options } => {
            let allowed: Vec<String> = options
                .as_array()
                .map(|o| o.iter().map(allowed_value).collect())
                .unwrap_or_default();
            format!("must be one of: {}", allowed.join(", "))
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!("must be {}", allowed_value(expected_value))
        }
        ValidationErrorKind::Format { format } => format!("must be a valid {format} (format)"),
        ValidationErrorKind::Pattern { pattern } => format!("must match the pattern {pattern}"),
        ValidationErrorKind::MinLength { limit } if *limit == 1 => "must not be empty".into(),
        ValidationErrorKind::MinLength { limit } => {
            format!(
                "must be at least {} long",
                plural(*limit, "character", "characters")
            )
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!(
                "must be at most {} long",
                plural(*limit, "character", "characters")
            )
        }
        ValidationErrorKind::MinItems { limit } => {
            format!("must have at least {}", plural(*limit, "item", "items"))
        }
        ValidationErrorKind::MaxItems { limit } => {
            format!("must have at most {}", plural(*limit, "item", "items"))
        }
        ValidationErrorKind::UniqueItems => "items must be unique".into(),
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("must be more than {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            "must match exactly one of the alternatives (oneOf), but matches more than one".into()
        }
        ValidationErrorKind::OneOfNotValid { context } => {
            format!(
                "must match exactly one of the alternatives (oneOf), but matches none: {}",
                alternatives(context, path)
            )
        }
        ValidationErrorKind::AnyOf { context } => {
            format!(
                "must match at least one of the alternatives (anyOf), but matches none: {}",
                alternatives(context, path)
            )
        }
        other => format!("breaks the contract's `{}` rule", other.keyword()),
    }
}

/// Each alternative of a `oneOf`/`anyOf` as what it would need, e.g. "`date_of_birth` is
/// required | `expected_date_of_delivery` is required".
fn alternatives(context: &[Vec<jsonschema::ValidationError<'static>>], parent: &str) -> String {
    context
        .iter()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    let path = e.instance_path().to_string();
                    let rule = rule_broken(e.kind(), &path);
                    match path.strip_prefix(parent) {
                        Some("") => rule,
                        Some(rest) => format!("{rest} {rule}"),
                        None => format!("{path} {rule}"),
                    }
                })
                .collect::<Vec<_>>()
                .join(" and ")
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A value the contract itself allows, as written in it (`education`, not `"education"`).
fn allowed_value(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// Whether a property name looks like one of the contract's (`extra_field`, `line3`: lowercase
/// snake case, a few digits at most), not like data (`Sam`, `9434765819`).
fn is_field_name(k: &str) -> bool {
    k.len() <= 64
        && k.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && k.chars().filter(char::is_ascii_digit).count() <= 3
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
    // Located by line and column only: a syntax error's message never needs the text.
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| {
        Rejection::single(
            "",
            format!(
                "not valid JSON (UTF-8): {:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })?;
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

    /// Values only a leak could carry into a reason: each breaks a different rule.
    const SECRETS: &[&str] = &[
        "Wilhelmina",
        "Quuxley",
        "9434765X19",
        "zebedee.at.nowhere",
        "Auntie Zelda",
        "hit-by-Marmaduke",
        "Zanzibar Lane",
        "earlyhelp.referral.v0-Ophelia",
        "Persephone",
        "W1LHELMINA",
    ];

    #[test]
    fn reasons_name_the_path_and_the_rule_never_the_value() {
        let mut d = valid();
        d["schema"] = json!("earlyhelp.referral.v0-Ophelia"); // const
        d["referrer"]["email"] = json!("zebedee.at.nowhere"); // format
        d["children"] = json!([
            // oneOf: neither date; both names too long, of the wrong type
            {"given_name": "Wilhelmina".repeat(11), "family_name": ["Quuxley"],
             "nhs_number": "9434765X19", "upn": "W1LHELMINA"},
            // oneOf: both dates
            {"given_name": "Persephone", "family_name": "Quuxley", "date_of_birth": "2015-01-01",
             "expected_date_of_delivery": "2027-01-01"}
        ]);
        d["family_members"] = json!([{"given_name": "Wilhelmina", "family_name": "Quuxley",
            "relationship": "Auntie Zelda", "address": {"postcode": "Zanzibar Lane"}}]);
        d["needs"] = json!(["hit-by-Marmaduke", "hit-by-Marmaduke"]);
        d["concerns"] = json!("Wilhelmina said Quuxley ".repeat(1000));
        d["Persephone"] = json!("Wilhelmina"); // a property outside the contract
        let e = validate(&d).unwrap_err();
        let text = format!("{} {:?}", e.summary(), e.violations);
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret:?} quoted: {text}");
        }
        let has = |path: &str, rule: &str| {
            e.violations
                .iter()
                .any(|v| v.path == path && v.reason.contains(rule))
        };
        for (path, rule) in [
            ("/schema", "earlyhelp.referral.v1"),
            ("/referrer/email", "email"),
            ("/children/0", "date_of_birth"),
            ("/children/0", "expected_date_of_delivery"),
            ("/children/0/given_name", "100 characters"),
            ("/children/0/family_name", "string"),
            ("/children/0/nhs_number", "^[0-9]{10}$"),
            ("/children/0/upn", "pattern"),
            ("/children/1", "more than one"),
            ("/family_members/0/relationship", "mother"),
            ("/family_members/0/address/postcode", "10 characters"),
            ("/needs", "unique"),
            ("/needs/0", "education"),
            ("/concerns", "20000 characters"),
            ("", "not in the contract"),
        ] {
            assert!(has(path, rule), "{path} {rule}: {:#?}", e.violations);
        }
    }

    #[test]
    fn a_property_name_outside_the_contract_is_named_only_when_it_is_an_identifier() {
        let mut d = valid();
        d["extra_field"] = json!(1);
        d["Sam Smith 9434765819"] = json!(1);
        let e = validate(&d).unwrap_err();
        let text = e.summary();
        assert!(text.contains("extra_field"), "{text}");
        assert!(
            !text.contains("Sam Smith") && !text.contains("9434765819"),
            "{text}"
        );
    }

    #[test]
    fn unreadable_json_is_located_not_quoted() {
        let e = parse(br#"{"given_name": "Wilhelmina" "#, 1000).unwrap_err();
        let text = e.summary();
        assert!(
            text.contains("not valid JSON") && text.contains("line 1"),
            "{text}"
        );
        assert!(!text.contains("Wilhelmina"), "{text}");
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
