//! The gateway's public HTTP API against the running platform: a referral submitted with an API
//! key and an idempotency key, read back by its council and by no other, and every refusal a
//! problem document (RFC 9457) that changes nothing.
use eh_platform::config::Section;
use eh_tests::{STAFFS_KEY, TestApp, WORCS_KEY, referral};
use serde_json::{Value, json};

const PROBLEM: &str = "application/problem+json";

fn base(t: &TestApp) -> String {
    format!("http://{}", t.app().http_addr)
}

async fn post(
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

async fn get(t: &TestApp, key: &str, path: &str) -> anyhow::Result<reqwest::Response> {
    Ok(reqwest::Client::new()
        .get(format!("{}{path}", base(t)))
        .header("x-api-key", key)
        .send()
        .await?)
}

/// The problem document of a refusal with `status`, after checking its media type and shape.
async fn problem(resp: reqwest::Response, status: u16) -> anyhow::Result<Value> {
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

fn violations(doc: &Value) -> Vec<(String, String)> {
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
    let mut t = TestApp::spawn(false).await?;
    t.stop().await?;
    t.settings.sections.insert(
        "gateway".into(),
        Section::from_json(
            "gateway",
            json!({"rate_limit": {"per_minute": 6, "burst": 3}}),
        )?,
    );
    t.start().await?;
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
