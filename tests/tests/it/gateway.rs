//! The gateway's public HTTP API against the running platform: a referral submitted with an API
//! key and an idempotency key, read back by its council and by no other, and every refusal a
//! problem document (RFC 9457) that changes nothing.
use eh_platform::config::Section;
use eh_tests::{STAFFS_KEY, TestApp, WORCS_KEY, referral};
use serde_json::{Value, json};

const PROBLEM: &str = "application/problem+json";

pub(crate) fn base(t: &TestApp) -> String {
    format!("http://{}", t.app().http_addr)
}

pub(crate) async fn post(
    t: &TestApp,
    key: Option<&str>,
    idempotency: Option<&str>,
    body: &Value,
) -> anyhow::Result<reqwest::Response> {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/referrals", base(t)))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    if let Some(i) = idempotency {
        req = req.header("idempotency-key", i);
    }
    Ok(req.send().await?)
}

pub(crate) async fn get(t: &TestApp, key: &str, path: &str) -> anyhow::Result<reqwest::Response> {
    Ok(reqwest::Client::new()
        .get(format!("{}{path}", base(t)))
        .header("x-api-key", key)
        .send()
        .await?)
}

/// The problem document of a refusal with `status`, after checking its media type and shape.
pub(crate) async fn problem(resp: reqwest::Response, status: u16) -> anyhow::Result<Value> {
    assert_eq!(resp.status().as_u16(), status, "{resp:?}");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(ct, PROBLEM);
    let doc: Value = resp.json().await?;
    assert_eq!(doc["status"], status, "{doc}");
    assert!(
        doc["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:earlyhelp:problem:")),
        "{doc}"
    );
    assert!(doc["title"].is_string(), "{doc}");
    Ok(doc)
}

pub(crate) fn violations(doc: &Value) -> Vec<(String, String)> {
    doc["violations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["path"].as_str().unwrap_or_default().to_string(),
                v["rule"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn submit_read_back_and_idempotency(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let doc = referral("GW-1", None);

    let first = post(&t, Some(WORCS_KEY), Some("key-1"), &doc).await?;
    assert_eq!(first.status().as_u16(), 201);
    let location = first.headers()["location"].to_str()?.to_string();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let created: Value = first.json().await?;
    let id = created["referral_id"].as_str().expect("id").to_string();
    assert_eq!(location, format!("/v1/referrals/{id}"));
    assert_eq!(created["duplicate"], false);
    assert_eq!(t.referral_count("worcs").await?, 1);

    // The same key and body: the same answer, marked as a replay; nothing new.
    let again = post(&t, Some(WORCS_KEY), Some("key-1"), &doc).await?;
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await?, created);

    // The same key with another body: refused, naming the header, nothing stored.
    let other = referral("GW-2", None);
    let p = problem(post(&t, Some(WORCS_KEY), Some("key-1"), &other).await?, 422).await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:idempotency-key-reused");
    assert_eq!(
        violations(&p),
        vec![(
            "header:Idempotency-Key".into(),
            "idempotency_key_reused".into()
        )]
    );
    assert_eq!(t.referral_count("worcs").await?, 1);

    // Another council's system may use the same idempotency key: keys are per client.
    let staffs = post(&t, Some(STAFFS_KEY), Some("key-1"), &other).await?;
    assert_eq!(staffs.status().as_u16(), 201);
    let staffs_id = staffs.json::<Value>().await?["referral_id"]
        .as_str()
        .expect("id")
        .to_string();

    // A new key for a referral already held (same source reference): intake's duplicate.
    let dup = post(&t, Some(WORCS_KEY), Some("key-2"), &doc).await?;
    assert_eq!(dup.status().as_u16(), 200);
    let dup: Value = dup.json().await?;
    assert_eq!(dup["referral_id"], created["referral_id"]);
    assert_eq!(dup["duplicate"], true);
    assert_eq!(t.referral_count("worcs").await?, 1);

    // Its status, for its council.
    let status = get(&t, WORCS_KEY, &location).await?;
    assert_eq!(status.status().as_u16(), 200);
    let status: Value = status.json().await?;
    assert_eq!(
        status,
        json!({"referral_id": id, "status": "received", "received_at": created["received_at"],
               "source": {"system": "test-hub", "reference": "GW-1"}})
    );
    // Nothing about the family is in it.
    assert!(!status.to_string().contains("Marsh"), "{status}");

    // Another council's referral is not found, exactly as one that does not exist.
    let p = problem(get(&t, STAFFS_KEY, &location).await?, 404).await?;
    let none = problem(
        get(&t, STAFFS_KEY, "/v1/referrals/no-such-referral").await?,
        404,
    )
    .await?;
    assert_eq!(p, none);
    let p = problem(
        get(&t, WORCS_KEY, &format!("/v1/referrals/{staffs_id}")).await?,
        404,
    )
    .await?;
    assert_eq!(p, none);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_submitted_over_http_is_taken_once_and_read_by_its_council_only_embedded()
-> anyhow::Result<()> {
    submit_read_back_and_idempotency(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referral_submitted_over_http_is_taken_once_and_read_by_its_council_only_distributed()
-> anyhow::Result<()> {
    submit_read_back_and_idempotency(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_problem_document_and_changes_nothing() -> anyhow::Result<()> {
    let t = TestApp::spawn(false).await?;
    let doc = referral("GW-BAD", None);

    let p = problem(post(&t, None, Some("k"), &doc).await?, 401).await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:unauthenticated");
    problem(post(&t, Some("not-a-key"), Some("k"), &doc).await?, 401).await?;
    // A platform service's key is not taken from outside.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/referrals/x", base(&t)))
        .header("x-eh-service-key", "anything")
        .send()
        .await?;
    problem(resp, 401).await?;

    let p = problem(post(&t, Some(WORCS_KEY), None, &doc).await?, 400).await?;
    assert_eq!(
        violations(&p),
        vec![("header:Idempotency-Key".into(), "required".into())]
    );

    // The contract broken three ways: every violation by path and rule, no value quoted.
    let mut bad = doc.clone();
    bad["children"][0]["date_of_birth"] = json!("Leo-born-May");
    bad["route"] = json!("PRIVATE-ROUTE");
    bad["source"]
        .as_object_mut()
        .expect("source")
        .remove("reference");
    let p = problem(post(&t, Some(WORCS_KEY), Some("k-bad"), &bad).await?, 422).await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:validation");
    assert_eq!(
        violations(&p),
        vec![
            ("/children/0/date_of_birth".into(), "format".into()),
            ("/route".into(), "enum".into()),
            ("/source/reference".into(), "required".into()),
        ]
    );
    let text = p.to_string();
    assert!(!text.contains("Leo") && !text.contains("PRIVATE"), "{text}");
    // Refused content keeps no key: the same key may carry the corrected referral.
    assert_eq!(
        post(&t, Some(WORCS_KEY), Some("k-bad"), &doc)
            .await?
            .status()
            .as_u16(),
        201
    );

    let client = reqwest::Client::new();
    let url = format!("{}/v1/referrals", base(&t));
    // Not JSON.
    let resp = client
        .post(&url)
        .header("x-api-key", WORCS_KEY)
        .header("idempotency-key", "k2")
        .header("content-type", "application/json")
        .body("{\"schema\": ")
        .send()
        .await?;
    let p = problem(resp, 400).await?;
    assert_eq!(violations(&p), vec![(String::new(), "json".into())]);
    // Another media type.
    let resp = client
        .post(&url)
        .header("x-api-key", WORCS_KEY)
        .header("idempotency-key", "k3")
        .header("content-type", "text/plain")
        .body(doc.to_string())
        .send()
        .await?;
    problem(resp, 415).await?;
    // Larger than the limit (256 KiB by default), declared or streamed.
    let mut big = doc.clone();
    big["concerns"] = json!("x".repeat(300 * 1024));
    problem(post(&t, Some(WORCS_KEY), Some("k4"), &big).await?, 413).await?;
    let (status, head) = chunked_post(&t, 300).await?;
    assert_eq!(status, 413, "{head}");
    assert!(head.to_ascii_lowercase().contains(PROBLEM), "{head}");

    // Unknown route, wrong method.
    let p = problem(get(&t, WORCS_KEY, "/v1/nothing-here").await?, 404).await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:not-found");
    let resp = client
        .delete(&url)
        .header("x-api-key", WORCS_KEY)
        .send()
        .await?;
    assert_eq!(resp.headers()["allow"], "POST");
    problem(resp, 405).await?;
    let resp = client.put(format!("{url}/some-id")).send().await?;
    problem(resp, 405).await?;

    // The platform's own routes are unchanged.
    let resp = client.get(format!("{}/readyz", base(&t))).send().await?;
    assert_eq!(resp.status().as_u16(), 200);

    // Only the one corrected referral was stored.
    assert_eq!(t.referral_count("worcs").await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_api_key_is_rate_limited_on_its_own() -> anyhow::Result<()> {
    let t = rate_limited(6, 3).await?;
    for _ in 0..3 {
        let r = get(&t, WORCS_KEY, "/v1/referrals/none").await?;
        assert_eq!(r.status().as_u16(), 404);
    }
    let r = get(&t, WORCS_KEY, "/v1/referrals/none").await?;
    let retry: u64 = r.headers()["retry-after"].to_str()?.parse()?;
    // One request in ten seconds at 6 a minute.
    assert!((1..=10).contains(&retry), "{retry}");
    let p = problem(r, 429).await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:rate-limited");
    // A submission is refused too, before anything is read or stored.
    let p = problem(
        post(&t, Some(WORCS_KEY), Some("k"), &referral("RL-1", None)).await?,
        429,
    )
    .await?;
    assert_eq!(p["status"], 429);
    assert_eq!(t.referral_count("worcs").await?, 0);
    // Another council's key has its own allowance.
    assert_eq!(
        get(&t, STAFFS_KEY, "/v1/referrals/none")
            .await?
            .status()
            .as_u16(),
        404
    );
    Ok(())
}

/// The platform (embedded) with the gateway's rate limit per client set.
pub(crate) async fn rate_limited(per_minute: u32, burst: u32) -> anyhow::Result<TestApp> {
    let mut t = TestApp::spawn(false).await?;
    t.stop().await?;
    t.settings.sections.insert(
        "gateway".into(),
        Section::from_json(
            "gateway",
            json!({"rate_limit": {"per_minute": per_minute, "burst": burst}}),
        )?,
    );
    t.start().await?;
    Ok(t)
}

/// Posts a body of `kib` KiB of spaces with no length given (chunked), as a client streaming
/// it would; the status line's code and the response head.
async fn chunked_post(t: &TestApp, kib: usize) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(t.app().http_addr).await?;
    let head = format!(
        "POST /v1/referrals HTTP/1.1\r\nhost: gateway\r\nx-api-key: {WORCS_KEY}\r\n\
         idempotency-key: k-chunked\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
    for _ in 0..kib {
        // The server may answer and close before the whole body is sent.
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    Ok((code, head))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_as_published() -> anyhow::Result<()> {
    let t = TestApp::spawn(false).await?;
    let resp = reqwest::get(format!("{}/openapi.json", base(&t))).await?;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await?, eh_gateway::openapi::document());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The case's public status, consent over HTTP, providers' offers and outbound webhooks.

use eh_proto::allocation::v1 as apb;
use eh_proto::allocation::v1::allocation_service_client::AllocationServiceClient;
use eh_tests::with_token;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// A second upstream system of Worcestershire.
const OTHER_KEY: &str = "worcs-other-system-key-for-tests";
/// A `whsec_` secret for the tests' receiver.
pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A new `Idempotency-Key` on a `POST`, as a client sends one per request.
fn fresh_key(req: reqwest::RequestBuilder, method: &reqwest::Method) -> reqwest::RequestBuilder {
    if method == reqwest::Method::POST {
        req.header("idempotency-key", uuid::Uuid::new_v4().to_string())
    } else {
        req
    }
}

/// A request with a person's bearer token (a `POST` with a new `Idempotency-Key`).
pub(crate) async fn send_as(
    t: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> anyhow::Result<reqwest::Response> {
    let mut req = fresh_key(
        reqwest::Client::new()
            .request(method.clone(), format!("{}{path}", base(t)))
            .bearer_auth(token),
        &method,
    );
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    Ok(req.send().await?)
}

/// A request with an API key (a `POST` with a new `Idempotency-Key`).
pub(crate) async fn send_key(
    t: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> anyhow::Result<reqwest::Response> {
    let mut req = fresh_key(
        reqwest::Client::new()
            .request(method.clone(), format!("{}{path}", base(t)))
            .header("x-api-key", key),
        &method,
    );
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    Ok(req.send().await?)
}

/// Adds a second upstream system to Worcestershire.
fn other_system(s: &mut eh_platform::Settings) {
    if let Some(w) = s.tenants.get_mut("worcs") {
        w.api_keys.push(eh_platform::config::ApiKeySettings {
            name: "other-system".into(),
            sha256: eh_auth::Authenticator::hash_key(OTHER_KEY),
        });
    }
}

/// Submits `reference` over HTTP with Worcestershire's hub key; its referral id.
pub(crate) async fn submit(t: &TestApp, doc: &Value) -> anyhow::Result<String> {
    let reference = doc["source"]["reference"]
        .as_str()
        .unwrap_or("x")
        .to_string();
    let resp = post(t, Some(WORCS_KEY), Some(&reference), doc).await?;
    assert_eq!(resp.status().as_u16(), 201);
    Ok(resp.json::<Value>().await?["referral_id"]
        .as_str()
        .expect("id")
        .to_string())
}

/// Waits until the referral's case, read over HTTP with `key`, is in `state`.
pub(crate) async fn case_state(
    t: &TestApp,
    key: &str,
    id: &str,
    state: &str,
) -> anyhow::Result<Value> {
    eh_testkit::eventually(
        WAIT,
        &format!("case of {id} to be {state}"),
        move || async move {
            let r = get(t, key, &format!("/v1/referrals/{id}/case")).await?;
            if r.status().as_u16() != 200 {
                return Ok(None);
            }
            let v: Value = r.json().await?;
            Ok((v["state"] == state).then_some(v))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_status_is_read_by_the_system_that_sent_its_referral_only() -> anyhow::Result<()> {
    let t = TestApp::spawn_configured(false, |s, _| other_system(s)).await?;
    let id = submit(&t, &referral("GW-CASE-1", None)).await?;
    // With no directory the accepted case waits on the council's list: screened.
    let status = case_state(&t, WORCS_KEY, &id, "waiting_for_provider").await?;
    assert_eq!(status["status"], "screened");
    assert_eq!(status["referral_id"], id.as_str());
    let mut keys: Vec<&str> = status
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "case_id",
            "opened_at",
            "referral_id",
            "state",
            "status",
            "updated_at"
        ]
    );
    // Nothing about the family.
    for private in ["Marsh", "Dana", "DM1"] {
        assert!(!status.to_string().contains(private), "{status}");
    }
    // A front-door officer of the council reads it too.
    let fd = t.token("worcs", "fd-1", &["front_door"]);
    let r = send_as(
        &t,
        reqwest::Method::GET,
        &format!("/v1/referrals/{id}/case"),
        &fd,
        None,
    )
    .await?;
    assert_eq!(r.status().as_u16(), 200);

    // Another system of the council, another council's system, and no such referral: one 404.
    let none = problem(
        get(&t, WORCS_KEY, "/v1/referrals/no-such-referral/case").await?,
        404,
    )
    .await?;
    let other = problem(
        get(&t, OTHER_KEY, &format!("/v1/referrals/{id}/case")).await?,
        404,
    )
    .await?;
    assert_eq!(other, none);
    let staffs = problem(
        get(&t, STAFFS_KEY, &format!("/v1/referrals/{id}/case")).await?,
        404,
    )
    .await?;
    assert_eq!(staffs, none);
    // A role that may not read cases; no credentials.
    let provider = t.token_of("worcs", "worker-1", &["provider"], "worcs-cc");
    let p = problem(
        send_as(
            &t,
            reqwest::Method::GET,
            &format!("/v1/referrals/{id}/case"),
            &provider,
            None,
        )
        .await?,
        403,
    )
    .await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:forbidden");
    let r = reqwest::get(format!("{}/v1/referrals/{id}/case", base(&t))).await?;
    problem(r, 401).await?;
    Ok(())
}

pub(crate) fn consent_body() -> Value {
    json!({
        "family_id": "fam-http-1",
        "given_by": "Dana Marsh",
        "giver_relationship": "mother",
        "parental_responsibility": true,
        "method": "signed",
        "given_on": "2026-01-05",
        "purposes": ["assessment", "sharing"],
        "restrictions": [{"category": "mental_health", "agency": "police"}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_recorded_and_withdrawn_over_http_by_practitioners_only() -> anyhow::Result<()> {
    use eh_proto::consent::v1 as cpb;
    let t = TestApp::spawn(false).await?;
    let fd = t.token("worcs", "fd-1", &["front_door"]);
    let body = consent_body();

    let r = send_as(&t, reqwest::Method::POST, "/v1/consent", &fd, Some(&body)).await?;
    assert_eq!(r.status().as_u16(), 201);
    let recorded: Value = r.json().await?;
    let record_id = recorded["record_id"].as_str().expect("id").to_string();
    assert_eq!(recorded["family_id"], "fam-http-1");
    // It is in the family's ledger, as the consent service holds it.
    let mut consent = eh_proto::consent::v1::consent_service_client::ConsentServiceClient::new(
        t.channel().await?,
    );
    let ledger = consent
        .list_consent(with_token(
            cpb::ListConsentRequest {
                tenant: "worcs".into(),
                family_id: "fam-http-1".into(),
            },
            &fd,
        ))
        .await?
        .into_inner();
    assert_eq!(ledger.records.len(), 1);
    let held = ledger.records[0].consent.clone().expect("consent");
    assert_eq!(held.purposes, ["assessment", "sharing"]);
    assert_eq!(held.restrictions[0].agency.as_deref(), Some("police"));
    assert_eq!(ledger.records[0].recorded_by, "person:fd-1");

    // Bad input: every violation by path and rule, never the value; nothing recorded.
    let mut bad = body.clone();
    bad["method"] = json!("carrier-pigeon");
    bad["given_on"] = json!("fifth of January");
    bad["purposes"] = json!([]);
    bad["colour"] = json!("SECRET-EXTRA");
    bad.as_object_mut().expect("object").remove("given_by");
    let p = problem(
        send_as(&t, reqwest::Method::POST, "/v1/consent", &fd, Some(&bad)).await?,
        422,
    )
    .await?;
    let v = violations(&p);
    for expected in [
        ("/given_by", "required"),
        ("/given_on", "format"),
        ("/method", "enum"),
        ("/purposes", "minItems"),
        ("", "additionalProperties"),
    ] {
        assert!(
            v.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} not in {v:?}"
        );
    }
    let text = p.to_string();
    assert!(
        !text.contains("pigeon") && !text.contains("SECRET"),
        "{text}"
    );
    // What only the consent service knows: a date in the future, by its path.
    let mut future = body.clone();
    future["given_on"] = json!("2999-01-01");
    let p = problem(
        send_as(&t, reqwest::Method::POST, "/v1/consent", &fd, Some(&future)).await?,
        422,
    )
    .await?;
    assert_eq!(
        violations(&p),
        vec![("/given_on".into(), "contract".into())]
    );
    // Not JSON, not declared JSON, too large.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/consent", base(&t)))
        .bearer_auth(&fd)
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await?;
    problem(resp, 415).await?;
    let mut big = body.clone();
    big["evidence_ref"] = json!("x".repeat(300 * 1024));
    problem(
        send_as(&t, reqwest::Method::POST, "/v1/consent", &fd, Some(&big)).await?,
        413,
    )
    .await?;

    // Who may not: an upstream system, a provider, a business-support reader.
    let p = problem(
        send_key(
            &t,
            reqwest::Method::POST,
            "/v1/consent",
            WORCS_KEY,
            Some(&body),
        )
        .await?,
        403,
    )
    .await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:forbidden");
    let provider = t.token_of("worcs", "worker-1", &["provider"], "worcs-cc");
    problem(
        send_as(
            &t,
            reqwest::Method::POST,
            "/v1/consent",
            &provider,
            Some(&body),
        )
        .await?,
        403,
    )
    .await?;
    let reader = t.token("worcs", "bs-1", &["business_support"]);
    let withdrawal = json!({"reason": "the family asked"});
    let path = format!("/v1/consent/{record_id}/withdrawal");
    problem(
        send_as(&t, reqwest::Method::POST, &path, &reader, Some(&withdrawal)).await?,
        403,
    )
    .await?;
    // Another council's practitioner: not found, as a record that does not exist.
    let staffs = t.token("staffs", "fd-9", &["front_door"]);
    let p = problem(
        send_as(&t, reqwest::Method::POST, &path, &staffs, Some(&withdrawal)).await?,
        404,
    )
    .await?;
    let none = problem(
        send_as(
            &t,
            reqwest::Method::POST,
            "/v1/consent/no-such-record/withdrawal",
            &fd,
            Some(&withdrawal),
        )
        .await?,
        404,
    )
    .await?;
    assert_eq!(p, none);
    let p = problem(
        send_as(
            &t,
            reqwest::Method::POST,
            &path,
            &fd,
            Some(&json!({"reason": ""})),
        )
        .await?,
        422,
    )
    .await?;
    assert_eq!(violations(&p), vec![("/reason".into(), "minLength".into())]);
    // Still one record, not withdrawn.
    let ledger = consent
        .list_consent(with_token(
            cpb::ListConsentRequest {
                tenant: "worcs".into(),
                family_id: "fam-http-1".into(),
            },
            &fd,
        ))
        .await?
        .into_inner();
    assert_eq!(ledger.records.len(), 1);
    assert!(ledger.records[0].withdrawal.is_none());

    // Withdrawn by the council's practitioner; again: the withdrawal held.
    let r = send_as(&t, reqwest::Method::POST, &path, &fd, Some(&withdrawal)).await?;
    assert_eq!(r.status().as_u16(), 201);
    let w: Value = r.json().await?;
    assert_eq!(w["record_id"], record_id.as_str());
    assert_eq!(w["newly_withdrawn"], true);
    let r = send_as(&t, reqwest::Method::POST, &path, &fd, Some(&withdrawal)).await?;
    assert_eq!(r.status().as_u16(), 200);
    let again: Value = r.json().await?;
    assert_eq!(again["withdrawal_id"], w["withdrawal_id"]);
    assert_eq!(again["newly_withdrawn"], false);
    Ok(())
}

/// One request the test receiver took.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    pub(crate) id: String,
    pub(crate) timestamp: String,
    pub(crate) signature: String,
    pub(crate) body: String,
    pub(crate) answered: u16,
}

/// A real HTTP receiver: records every request; answers 503 to the first attempt of each
/// webhook id when `fail_first`, 500 to every one when `always_fail`, else 204.
async fn receiver(
    fail_first: bool,
    always_fail: bool,
) -> anyhow::Result<(String, Arc<Mutex<Vec<Captured>>>)> {
    let refusing = Arc::new(std::sync::atomic::AtomicBool::new(always_fail));
    switched_receiver(fail_first, refusing).await
}

/// [`receiver`] that answers 500 to every request while `refusing` holds (the test switches it).
pub(crate) async fn switched_receiver(
    fail_first: bool,
    refusing: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<(String, Arc<Mutex<Vec<Captured>>>)> {
    use axum::http::HeaderMap;
    let seen: Arc<Mutex<Vec<Captured>>> = Arc::default();
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            let always_fail = refusing.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let mut seen = state.lock().expect("lock");
                let id = h("webhook-id");
                let first = !seen.iter().any(|c| c.id == id);
                let answered = if always_fail {
                    500
                } else if fail_first && first {
                    503
                } else {
                    204
                };
                seen.push(Captured {
                    id,
                    timestamp: h("webhook-timestamp"),
                    signature: h("webhook-signature"),
                    body,
                    answered,
                });
                axum::http::StatusCode::from_u16(answered).expect("status")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, seen))
}

/// The gateway's webhook settings for Worcestershire's hub, quick retries.
pub(crate) fn webhooks(s: &mut eh_platform::Settings, url: &str, max_attempts: u32) {
    s.sections.insert(
        "gateway".into(),
        Section::from_json(
            "gateway",
            json!({"webhooks": {
                "max_attempts": max_attempts, "retry_base_ms": 20, "retry_max_ms": 100, "poll_ms": 50,
                "endpoints": [{"tenant": "worcs", "system": "test-hub", "url": url, "secret": SECRET}]
            }}),
        )
        .expect("section"),
    );
}

/// Checks a delivery's signature independently of the gateway: HMAC-SHA256 with the secret's
/// key over `id.timestamp.body`, as the Standard Webhooks convention defines it.
pub(crate) fn verify(c: &Captured) {
    use base64::Engine;
    use hmac::{Mac, SimpleHmac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(SECRET.trim_start_matches("whsec_"))
        .expect("secret");
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{}.{}.{}", c.id, c.timestamp, c.body).as_bytes());
    let expected = format!("v1,{}", b64.encode(mac.finalize().into_bytes()));
    assert_eq!(c.signature, expected, "signature of {}", c.id);
    let ts: i64 = c.timestamp.parse().expect("timestamp");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 300, "{ts}");
}

/// Checks every captured delivery with the Standard Webhooks Python library when it is
/// installed (`pip install standardwebhooks`); says so when it is not.
pub(crate) fn verify_with_python(captured: &[Captured]) -> anyhow::Result<()> {
    let have = std::process::Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        eprintln!(
            "standardwebhooks (PyPI) not installed: signatures checked by the Rust HMAC only"
        );
        return Ok(());
    }
    let cases: Vec<Value> = captured
        .iter()
        .map(|c| json!({"id": c.id, "timestamp": c.timestamp, "signature": c.signature, "body": c.body}))
        .collect();
    let script = r#"
import json, sys
from standardwebhooks import Webhook
secret, cases = sys.argv[1], json.loads(sys.stdin.read())
wh = Webhook(secret)
for c in cases:
    wh.verify(c["body"], {"webhook-id": c["id"], "webhook-timestamp": c["timestamp"], "webhook-signature": c["signature"]})
print(len(cases))
"#;
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, SECRET])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(&cases)?.as_bytes())?;
    let out = child.wait_with_output()?;
    assert!(out.status.success(), "standardwebhooks refused a delivery");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        captured.len().to_string()
    );
    Ok(())
}

/// The directory of the allocation journey: a team of organisation `worcs-cc` covering DM1.
fn directory(s: &mut eh_platform::Settings, dir: &std::path::Path) {
    let services = json!([
        {"id": "eht-north", "name": "Early Help Team North", "status": "active",
         "organization": {"id": "worcs-cc", "name": "Worcestershire County Council"},
         "minimum_age": 0, "maximum_age": 18}
    ]);
    directory_of(s, dir, "worcs", &services);
}

/// Gives `tenant` a directory file of `services` (ORUK) and allocation settings naming it.
pub(crate) fn directory_of(
    s: &mut eh_platform::Settings,
    dir: &std::path::Path,
    tenant: &str,
    services: &Value,
) {
    let file = dir.join(format!("directory-{tenant}.json"));
    std::fs::write(&file, serde_json::to_vec(services).expect("json")).expect("write");
    let section = json!({"rule_version": "gw-1", "directory": {"file": file}});
    if let Some(w) = s.tenants.get_mut(tenant) {
        w.sections.insert(
            "allocation".into(),
            Section::from_json(format!("tenants.{tenant}.allocation"), section).expect("section"),
        );
    }
}

async fn import_directory(t: &TestApp) -> anyhow::Result<()> {
    import_directory_of(t, "worcs", &["eht-north"]).await
}

/// Imports `tenant`'s directory and sets each service's terms: an Early Help Team covering DM1.
pub(crate) async fn import_directory_of(
    t: &TestApp,
    tenant: &str,
    services: &[&str],
) -> anyhow::Result<()> {
    let manager = t.token(tenant, "tm-1", &["team_manager"]);
    let mut alloc = AllocationServiceClient::new(t.channel().await?);
    alloc
        .import_directory(with_token(
            apb::ImportDirectoryRequest {
                tenant: tenant.into(),
            },
            &manager,
        ))
        .await?;
    for id in services {
        alloc
            .set_service_terms(with_token(
                apb::SetServiceTermsRequest {
                    tenant: tenant.into(),
                    service_id: (*id).into(),
                    terms: Some(apb::ServiceTerms {
                        kind: "early_help_team".into(),
                        coverage: vec!["DM1".into()],
                        capacity: 10,
                        agency: "voluntary".into(),
                        offer_email: "offers@example.org".into(),
                        ..Default::default()
                    }),
                },
                &manager,
            ))
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_answers_its_offers_and_the_referring_system_hears_each_status_by_webhook()
-> anyhow::Result<()> {
    offers_and_webhooks(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_answers_its_offers_and_the_referring_system_hears_each_status_by_webhook_distributed()
-> anyhow::Result<()> {
    offers_and_webhooks(true).await
}

async fn offers_and_webhooks(distributed: bool) -> anyhow::Result<()> {
    use eh_proto::consent::v1 as cpb;
    use eh_proto::intake::v1 as ipb;
    let (url, seen) = receiver(true, false).await?;
    let t = TestApp::spawn_configured(distributed, |s, dir| {
        directory(s, dir);
        webhooks(s, &url, 5);
    })
    .await?;
    import_directory(&t).await?;
    let id = submit(&t, &referral("GW-WH-1", None)).await?;
    let case = case_state(&t, WORCS_KEY, &id, "allocating").await?;
    let case_id = case["case_id"].as_str().expect("case").to_string();

    // The provider's staff see the offer made to their organisation.
    let provider = t.token_of("worcs", "worker-1", &["provider"], "worcs-cc");
    let r = send_as(
        &t,
        reqwest::Method::GET,
        "/v1/offers?status=offered",
        &provider,
        None,
    )
    .await?;
    assert_eq!(r.status().as_u16(), 200);
    let offers: Value = r.json().await?;
    let list = offers["offers"].as_array().expect("offers");
    assert_eq!(list.len(), 1, "{offers}");
    assert_eq!(list[0]["case_id"], case_id.as_str());
    assert_eq!(list[0]["organization_id"], "worcs-cc");
    let offer_id = list[0]["offer_id"].as_str().expect("offer").to_string();
    for private in ["Marsh", "Dana"] {
        assert!(!offers.to_string().contains(private), "{offers}");
    }
    // Another organisation's provider sees none of it, and cannot answer it.
    let stranger = t.token_of("worcs", "worker-9", &["provider"], "other-org");
    let r = send_as(&t, reqwest::Method::GET, "/v1/offers", &stranger, None).await?;
    assert_eq!(r.json::<Value>().await?["offers"], json!([]));
    let accept = format!("/v1/offers/{offer_id}/accept");
    let decline = format!("/v1/offers/{offer_id}/decline");
    problem(
        send_as(&t, reqwest::Method::POST, &accept, &stranger, None).await?,
        404,
    )
    .await?;
    // Another council's provider: not found either.
    let staffs = t.token_of("staffs", "worker-1", &["provider"], "worcs-cc");
    problem(
        send_as(&t, reqwest::Method::POST, &accept, &staffs, None).await?,
        404,
    )
    .await?;
    // Roles that may not: a practitioner, an upstream system.
    let practitioner = t.token("worcs", "pr-1", &["practitioner"]);
    problem(
        send_as(&t, reqwest::Method::GET, "/v1/offers", &practitioner, None).await?,
        403,
    )
    .await?;
    problem(
        send_as(&t, reqwest::Method::POST, &accept, &practitioner, None).await?,
        403,
    )
    .await?;
    problem(
        send_key(&t, reqwest::Method::GET, "/v1/offers", WORCS_KEY, None).await?,
        403,
    )
    .await?;
    // Bad input: an unknown status; `other` without words; an unknown reason.
    let p = problem(
        send_as(
            &t,
            reqwest::Method::GET,
            "/v1/offers?status=maybe",
            &provider,
            None,
        )
        .await?,
        422,
    )
    .await?;
    assert_eq!(violations(&p), vec![("query:status".into(), "enum".into())]);
    let p = problem(
        send_as(
            &t,
            reqwest::Method::POST,
            &decline,
            &provider,
            Some(&json!({"reason": "other"})),
        )
        .await?,
        422,
    )
    .await?;
    assert_eq!(violations(&p), vec![("/detail".into(), "required".into())]);
    let p = problem(
        send_as(
            &t,
            reqwest::Method::POST,
            &decline,
            &provider,
            Some(&json!({"reason": "bored"})),
        )
        .await?,
        422,
    )
    .await?;
    assert_eq!(violations(&p), vec![("/reason".into(), "enum".into())]);

    // Accepted by its provider; answered again: the offer has moved on.
    let r = send_as(&t, reqwest::Method::POST, &accept, &provider, None).await?;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await?["status"], "accepted");
    let p = problem(
        send_as(
            &t,
            reqwest::Method::POST,
            &decline,
            &provider,
            Some(&json!({"reason": "no_capacity"})),
        )
        .await?,
        409,
    )
    .await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:conflict");
    case_state(&t, WORCS_KEY, &id, "allocated").await?;

    // The family withdraws its consent (over HTTP, by the front door): the case closes.
    let fd = t.token("worcs", "fd-1", &["front_door"]);
    let mut intake = t.intake().await?;
    let family = intake
        .get_referral(with_token(
            ipb::GetReferralRequest {
                tenant: "worcs".into(),
                referral_id: id.clone(),
            },
            &fd,
        ))
        .await?
        .into_inner()
        .family_id;
    let mut consent = eh_proto::consent::v1::consent_service_client::ConsentServiceClient::new(
        t.channel().await?,
    );
    let records = consent
        .list_consent(with_token(
            cpb::ListConsentRequest {
                tenant: "worcs".into(),
                family_id: family,
            },
            &fd,
        ))
        .await?
        .into_inner()
        .records;
    assert_eq!(records.len(), 1);
    let r = send_as(
        &t,
        reqwest::Method::POST,
        &format!("/v1/consent/{}/withdrawal", records[0].record_id),
        &fd,
        Some(&json!({"reason": "the family asked"})),
    )
    .await?;
    assert_eq!(r.status().as_u16(), 201);
    let closed = case_state(&t, WORCS_KEY, &id, "closed_withdrawn").await?;
    assert_eq!(closed["status"], "closed");

    // The hub heard each public status once, in order, each signed; each first attempt was
    // refused and retried under the same id.
    let seen_ref = &seen;
    let delivered =
        eh_testkit::eventually(WAIT, "four status updates delivered", move || async move {
            let seen = seen_ref;
            let seen = seen.lock().expect("lock").clone();
            let ok: Vec<Captured> = seen.into_iter().filter(|c| c.answered == 204).collect();
            Ok((ok.len() >= 4).then_some(ok))
        })
        .await?;
    let all = seen.lock().expect("lock").clone();
    let statuses: Vec<String> = delivered
        .iter()
        .map(|c| {
            let v: Value = serde_json::from_str(&c.body).expect("json");
            v["data"]["status"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(statuses, ["received", "screened", "allocated", "closed"]);
    for c in &delivered {
        verify(c);
        let v: Value = serde_json::from_str(&c.body)?;
        assert_eq!(v["type"], "case.status_changed");
        assert_eq!(
            v["data"],
            json!({"case_id": case_id, "referral_id": id, "source_reference": "GW-WH-1",
                   "status": v["data"]["status"]})
        );
        for private in ["Marsh", "Dana", "DM1", "education"] {
            assert!(!c.body.contains(private), "{private} in {}", c.body);
        }
        let attempts: Vec<&Captured> = all.iter().filter(|a| a.id == c.id).collect();
        assert_eq!(attempts.len(), 2, "{}: {attempts:?}", c.id);
        assert_eq!(attempts[0].answered, 503);
    }
    let ids: std::collections::HashSet<&str> = delivered.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 4);
    verify_with_python(&all)?;
    // Recorded as delivered, none pending or dead.
    let db = t.db("gateway").await?;
    let txn = eh_store::begin_scoped(&db, "worcs").await?;
    for (status, n) in [("delivered", 4), ("pending", 0), ("dead", 0)] {
        assert_eq!(
            eh_gateway::webhook::store::count(&txn, "worcs", status).await?,
            n,
            "{status}"
        );
    }
    eh_store::end_read(txn).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_refused_every_time_is_dead_lettered_after_its_attempts() -> anyhow::Result<()> {
    let (url, seen) = receiver(false, true).await?;
    let t = TestApp::spawn_configured(false, |s, _| webhooks(s, &url, 3)).await?;
    let id = submit(&t, &referral("GW-WH-DEAD", None)).await?;
    case_state(&t, WORCS_KEY, &id, "waiting_for_provider").await?;
    let db = t.db("gateway").await?;
    let db_ref = &db;
    // Both updates (received, screened) dead-lettered, each after exactly three attempts.
    let waited = eh_testkit::eventually(WAIT, "two deliveries dead-lettered", move || async move {
        let txn = eh_store::begin_scoped(db_ref, "worcs").await?;
        let dead = eh_gateway::webhook::store::count(&txn, "worcs", "dead").await?;
        eh_store::end_read(txn).await?;
        Ok((dead == 2).then_some(()))
    })
    .await;
    if let Err(e) = waited {
        use sea_orm::ConnectionTrait;
        let rows = db
            .query_all_raw(eh_store::stmt(
                db.get_database_backend(),
                "SELECT id, status, attempts, payload FROM gateway_webhook_deliveries",
                [],
            ))
            .await?;
        for r in rows {
            eprintln!(
                "DELIVERY {:?} {:?} {:?} {:?}",
                r.try_get_by_index::<String>(0)?,
                r.try_get_by_index::<String>(1)?,
                r.try_get_by_index::<i32>(2)?,
                r.try_get_by_index::<String>(3)?
            );
        }
        eprintln!(
            "CASE {:?}",
            get(&t, WORCS_KEY, &format!("/v1/referrals/{id}/case"))
                .await?
                .text()
                .await?
        );
        return Err(e);
    }
    let all = seen.lock().expect("lock").clone();
    let mut ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 2, "{ids:?}");
    for id in ids {
        assert_eq!(all.iter().filter(|c| c.id == id).count(), 3, "{id}");
    }
    // In order: every attempt of the first before any of the second.
    assert_eq!(all[0].id, all[2].id);
    let txn = eh_store::begin_scoped(&db, "worcs").await?;
    assert_eq!(
        eh_gateway::webhook::store::count(&txn, "worcs", "pending").await?,
        0
    );
    assert_eq!(
        eh_gateway::webhook::store::count(&txn, "worcs", "delivered").await?,
        0
    );
    eh_store::end_read(txn).await?;
    Ok(())
}
