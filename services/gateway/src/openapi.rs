//! The OpenAPI 3.1 document of the public API, generated from the code: the routes and their
//! annotations in [`crate::api`] (utoipa), the types they answer with, and — for the request
//! body — the published referral contract itself, so the document cannot describe another
//! contract than the one enforced. Served at `/openapi.json`; `earlyhelp openapi` prints it and
//! `docs/openapi.json` is the published copy (a test fails when the two differ).
use crate::problem::Violation;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// The document as served and published: pretty JSON with a final newline.
pub fn document() -> String {
    let mut text = serde_json::to_string_pretty(&value()).unwrap_or_default();
    text.push('\n');
    text
}

/// The document as JSON.
pub fn value() -> Value {
    let (_, doc) = crate::api::documented().split_for_parts();
    finish(serde_json::to_value(&doc).unwrap_or(Value::Null))
}

/// What utoipa cannot say from the types: the request body is the published contract (its
/// `$defs` become components `ReferralAddress`, …), and the idempotency key's syntax.
fn finish(mut doc: Value) -> Value {
    let mut contract = crate::contract::schema();
    let defs = contract
        .as_object_mut()
        .and_then(|o| {
            o.remove("$schema");
            o.remove("$id");
            o.remove("$defs")
        })
        .and_then(|d| match d {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    let component = |name: &str| {
        let mut c = name.chars();
        let head: String = c
            .next()
            .map(|h| h.to_uppercase().collect())
            .unwrap_or_default();
        format!("Referral{head}{}", c.as_str())
    };
    let names: Vec<(String, String)> = defs
        .keys()
        .map(|k| {
            (
                format!("#/$defs/{k}"),
                format!("#/components/schemas/{}", component(k)),
            )
        })
        .collect();
    rewrite_refs(&mut contract, &names);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (k, mut def) in defs {
            rewrite_refs(&mut def, &names);
            schemas.insert(component(&k), def);
        }
        schemas.insert("Referral".into(), contract);
    }
    if let Some(body) =
        doc.pointer_mut("/paths/~1v1~1referrals/post/requestBody/content/application~1json")
    {
        body["schema"] = json!({"$ref": "#/components/schemas/Referral"});
    }
    let header = |name: &str, description: &str| {
        json!({"name": name, "in": "header", "required": true, "description": description,
               "schema": {"type": "string"}})
    };
    doc["webhooks"] = json!({
        "caseStatusChanged": {"post": {
            "operationId": "caseStatusChanged",
            "tags": ["cases"],
            "summary": "A case the system's referral opened reached a new public status",
            "description": "Posted to the endpoint configured for the upstream system (`gateway.webhooks.endpoints`) \
    when a case its own referral opened reaches a new public status: ids, its own reference and the status, never \
    the family's details. Signed per Standard Webhooks: `webhook-signature` is `v1,` and the base64 of \
    HMAC-SHA256 (key: the base64 after `whsec_` of the endpoint's secret) over `<webhook-id>.<webhook-timestamp>.<body>`. \
    Any answer but 2xx is retried with backoff under the same `webhook-id`, then dead-lettered; a delivery can \
    arrive twice: `webhook-id` tells a repeat.",
            "parameters": [
                header("webhook-id", "The delivery's id, the same on every attempt (`msg_…`)"),
                header("webhook-timestamp", "When this attempt was signed (Unix seconds)"),
                header("webhook-signature", "`v1,<base64 HMAC-SHA256>`"),
            ],
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/CaseStatusChanged"}}}},
            "responses": {"2XX": {"description": "Received"}}
        }}
    });
    let operations = doc
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for params in operations.filter_map(|op| op.get_mut("parameters").and_then(Value::as_array_mut))
    {
        for p in params.iter_mut().filter(|p| p["name"] == "Idempotency-Key") {
            p["schema"] = json!({
                "type": "string", "minLength": 1, "maxLength": crate::api::MAX_KEY_LEN,
                "pattern": "^[!-~]+$"
            });
        }
    }
    // The directory search's repeated parameters: a need is one of the contract's, an age 0-25.
    if let Some(params) = doc
        .pointer_mut("/paths/~1v1~1directory~1services/get/parameters")
        .and_then(Value::as_array_mut)
    {
        for p in params.iter_mut() {
            let items = match p["name"].as_str() {
                Some("need") => json!({"type": "string", "enum": crate::api::directory::needs()}),
                Some("age") => json!({"type": "integer", "minimum": 0,
                                       "maximum": crate::api::directory::MAX_AGE}),
                // As `eh_platform::config::is_token`, which the gateway checks.
                Some("programme") => json!({"type": "string", "pattern": "^[A-Za-z0-9_-]+$",
                                             "minLength": 1, "maxLength": 64}),
                _ => continue,
            };
            p["schema"]["items"] = items;
        }
    }
    doc
}

/// Every violation of `body` against the document's schema `component` (its references
/// resolved within the document, formats asserted), by path and rule: a request body is checked
/// against exactly what the published document says of it.
///
/// # Errors
/// When the document's schema cannot be compiled (a build defect, not the caller's).
pub fn violations(component: &str, body: &Value) -> Result<Vec<Violation>, String> {
    static VALIDATORS: LazyLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
        LazyLock::new(Default::default);
    let found = VALIDATORS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(component)
        .cloned();
    let validator = match found {
        Some(v) => v,
        None => {
            let doc = value();
            let schema = json!({
                "$ref": format!("#/components/schemas/{component}"),
                "components": doc["components"].clone(),
            });
            let v = Arc::new(
                jsonschema::draft202012::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .map_err(|e| format!("schema {component}: {e}"))?,
            );
            VALIDATORS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(component.to_string(), v.clone());
            v
        }
    };
    Ok(crate::contract::listed(&validator, body))
}

fn rewrite_refs(v: &mut Value, names: &[(String, String)]) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some((_, to)) = names.iter().find(|(from, _)| from == r)
            {
                *r = to.clone();
            }
            m.values_mut().for_each(|x| rewrite_refs(x, names));
        }
        Value::Array(items) => items.iter_mut().for_each(|x| rewrite_refs(x, names)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published copy is what the code generates.
    #[test]
    fn docs_openapi_json_is_up_to_date() {
        let published = include_str!("../../../docs/openapi.json");
        assert!(
            published == document(),
            "docs/openapi.json is out of date: run `cargo run -- openapi > docs/openapi.json` (or `just openapi`)"
        );
    }

    #[test]
    fn bodies_are_checked_against_the_published_schemas() {
        let v = violations("OfferDeclineRequest", &json!({"reason": "bored", "x": 1})).unwrap();
        assert_eq!(
            v,
            vec![
                Violation::new("", "additionalProperties"),
                Violation::new("/reason", "enum")
            ]
        );
        let valid = json!({"family_id": "f", "given_by": "A Parent", "method": "verbal",
                           "given_on": "2026-01-02", "purposes": ["sharing"]});
        assert_eq!(violations("ConsentRecordRequest", &valid).unwrap(), vec![]);
        let mut bad = valid.clone();
        bad["given_on"] = json!("2nd January");
        bad["purposes"] = json!(["gossip"]);
        assert_eq!(
            violations("ConsentRecordRequest", &bad).unwrap(),
            vec![
                Violation::new("/given_on", "format"),
                Violation::new("/purposes/0", "enum")
            ]
        );
        assert!(violations("NoSuchComponent", &valid).is_err());
    }

    #[test]
    fn it_is_openapi_3_1_with_the_contract_as_the_body_and_problems_for_errors() {
        let doc = value();
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "{}",
            doc["openapi"]
        );
        let post = &doc["paths"]["/v1/referrals"]["post"];
        assert_eq!(
            post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Referral"
        );
        let referral = &doc["components"]["schemas"]["Referral"];
        assert_eq!(
            referral["properties"]["schema"]["const"],
            "earlyhelp.referral.v1"
        );
        // Every reference points at a component that exists.
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"").skip(1) {
            let target = r.split('"').next().unwrap_or_default();
            let name = target.strip_prefix("#/components/schemas/").expect(target);
            assert!(doc["components"]["schemas"][name].is_object(), "{target}");
        }
        let operations: Vec<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("path item")
                    .keys()
                    .map(|m| (path.clone(), m.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(operations.len(), 10, "{operations:?}");
        for (path, method) in &operations {
            let (path, method) = (path.as_str(), method.as_str());
            let responses = doc["paths"][path][method]["responses"]
                .as_object()
                .expect("responses");
            for (code, r) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    assert_eq!(
                        r["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{path} {method} {code}"
                    );
                }
            }
            assert!(
                responses.contains_key("429") && responses.contains_key("401"),
                "{path}"
            );
        }
    }
}
