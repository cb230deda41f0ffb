//! The gateway's public HTTP API, continued: the council's directory searched and read over
//! HTTP (each council its own), consent recorded and withdrawn once per idempotency key, and
//! every rate-limited endpoint answering 429 once a key's burst is spent.
use crate::gateway::{
    base, consent_body, directory_of, import_directory_of, problem, rate_limited, send_as,
    send_key, violations,
};
use eh_tests::{STAFFS_KEY, TestApp, WORCS_KEY, referral, with_token};
use reqwest::Method;
use serde_json::{Value, json};

/// Worcestershire's directory: a team for children of any age to 18 and one for the under-5s,
/// both covering DM1; Staffordshire's: one service of its own.
fn directories(s: &mut eh_platform::Settings, dir: &std::path::Path) {
    let worcs = json!([
        {"id": "eht-north", "name": "Early Help Team North", "status": "active",
         "organization": {"id": "worcs-cc", "name": "Worcestershire County Council"},
         "minimum_age": 0, "maximum_age": 18},
        {"id": "eht-little", "name": "Little Steps", "status": "active",
         "organization": {"id": "worcs-cc", "name": "Worcestershire County Council"},
         "minimum_age": 0, "maximum_age": 5}
    ]);
    directory_of(s, dir, "worcs", &worcs);
    let staffs = json!([
        {"id": "staffs-hub", "name": "Stafford Family Hub", "status": "active",
         "organization": {"id": "staffs-cc", "name": "Staffordshire County Council"}}
    ]);
    directory_of(s, dir, "staffs", &staffs);
}

/// The ids of a search's candidates, ranked ones with their rank, excluded ones with 0.
fn placed(search: &Value) -> Vec<(String, u64)> {
    search["candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["service"]["service_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                c["rank"].as_u64().unwrap_or(99),
            )
        })
        .collect()
}

async fn directory_over_http(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn_configured(distributed, directories).await?;
    import_directory_of(&t, "worcs", &["eht-north", "eht-little"]).await?;
    import_directory_of(&t, "staffs", &["staffs-hub"]).await?;
    let pr = t.token("worcs", "pr-1", &["practitioner"]);
    let get = |path: String, token: String| {
        let t = &t;
        async move { send_as(t, Method::GET, &path, &token, None).await }
    };

    // A family with an education need and a child of 7 in DM1: the team for every age ranks,
    // the under-5s' service is excluded for the child's age.
    let search = "/v1/directory/services?postcode=DM1%201AA&need=education&age=7";
    let r = get(search.into(), pr.clone()).await?;
    assert_eq!(r.status().as_u16(), 200);
    let found: Value = r.json().await?;
    assert_eq!(
        placed(&found),
        [("eht-north".into(), 1), ("eht-little".into(), 0)],
        "{found}"
    );
    assert_eq!(found["rule_version"], "gw-1");
    assert_eq!(found["wanted_kind"], "early_help_team");
    let little = &found["candidates"][1];
    assert_eq!(little["excluded"], true);
    assert!(
        little["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .any(|r| r
                .as_str()
                .is_some_and(|r| r.contains("no child within its ages"))),
        "{little}"
    );
    // A baby too: both rank.
    let r = get(format!("{search}&age=1"), pr.clone()).await?;
    let found: Value = r.json().await?;
    assert_eq!(
        placed(&found),
        [("eht-north".into(), 1), ("eht-little".into(), 2)],
        "{found}"
    );

    // One service by id, with the council's terms but not the address offers go to.
    let r = get("/v1/directory/services/eht-north".into(), pr.clone()).await?;
    assert_eq!(r.status().as_u16(), 200);
    let service: Value = r.json().await?;
    assert_eq!(service["service_id"], "eht-north");
    assert_eq!(service["name"], "Early Help Team North");
    assert_eq!(service["organization_id"], "worcs-cc");
    assert_eq!(service["minimum_age"], 0);
    assert_eq!(service["maximum_age"], 18);
    assert_eq!(service["terms"]["kind"], "early_help_team");
    assert_eq!(service["terms"]["coverage"], json!(["DM1"]));
    assert!(!service.to_string().contains("offers@"), "{service}");
    let none = problem(
        get("/v1/directory/services/no-such-service".into(), pr.clone()).await?,
        404,
    )
    .await?;
    assert_eq!(none["type"], "urn:earlyhelp:problem:not-found");

    // Another council sees its own directory only: its service, and Worcestershire's not found.
    let staffs = t.token("staffs", "pr-9", &["practitioner"]);
    let found: Value = get(search.into(), staffs.clone()).await?.json().await?;
    assert_eq!(placed(&found), [("staffs-hub".into(), 1)], "{found}");
    let p = problem(
        get("/v1/directory/services/eht-north".into(), staffs.clone()).await?,
        404,
    )
    .await?;
    assert_eq!(p, none);
    let p = problem(
        get("/v1/directory/services/staffs-hub".into(), pr.clone()).await?,
        404,
    )
    .await?;
    assert_eq!(p, none);

    // The council's upstream systems search it with their API key (each its own council's);
    // allocation decides who may: a provider's staff (who see only the offers made to them)
    // are refused (403); no credentials, 401.
    let by_key: Value = send_key(&t, Method::GET, search, WORCS_KEY, None)
        .await?
        .json()
        .await?;
    assert_eq!(
        placed(&by_key),
        [("eht-north".into(), 1), ("eht-little".into(), 0)],
        "{by_key}"
    );
    let by_key: Value = send_key(&t, Method::GET, search, STAFFS_KEY, None)
        .await?
        .json()
        .await?;
    assert_eq!(placed(&by_key), [("staffs-hub".into(), 1)], "{by_key}");
    let r = send_key(
        &t,
        Method::GET,
        "/v1/directory/services/eht-north",
        WORCS_KEY,
        None,
    )
    .await?;
    assert_eq!(r.status().as_u16(), 200);
    problem(
        send_key(
            &t,
            Method::GET,
            "/v1/directory/services/eht-north",
            STAFFS_KEY,
            None,
        )
        .await?,
        404,
    )
    .await?;
    // A provider's staff read their own organisation's services, another's is not found, and
    // they may not search (matching families to services is the council's).
    let provider = t.token_of("worcs", "worker-1", &["provider"], "worcs-cc");
    let own = get("/v1/directory/services/eht-north".into(), provider.clone()).await?;
    assert_eq!(own.status().as_u16(), 200);
    let elsewhere = t.token_of("worcs", "worker-2", &["provider"], "other-org");
    let p = problem(
        get("/v1/directory/services/eht-north".into(), elsewhere).await?,
        404,
    )
    .await?;
    assert_eq!(p, none);
    let p = problem(get(search.into(), provider).await?, 403).await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:forbidden");
    for path in [search, "/v1/directory/services/eht-north"] {
        problem(reqwest::get(format!("{}{path}", base(&t))).await?, 401).await?;
    }

    // Bad parameters: named, never quoted. One that cannot be read is 400; one that breaks a
    // rule 422, whether the gateway or allocation (`contract`) finds it.
    let long = "x".repeat(101);
    // (query, status, violations by path and rule)
    type Bad = (String, u16, &'static [(&'static str, &'static str)]);
    let bad: [Bad; 4] = [
        (
            "postcode=DM1%201AA&age=-1".into(),
            400,
            &[("query:age", "type")],
        ),
        (
            "need=gossip&age=26&programme=no%20spaces".into(),
            422,
            &[
                ("query:age", "maximum"),
                ("query:need", "enum"),
                ("query:postcode", "required"),
                ("query:programme", "pattern"),
            ],
        ),
        (
            "postcode=SECRET-PLACE&need=health".into(),
            422,
            &[("query:postcode", "contract")],
        ),
        (
            format!("postcode={long}"),
            422,
            &[("query:postcode", "maxLength")],
        ),
    ];
    for (query, status, expected) in bad {
        let p = problem(
            get(format!("/v1/directory/services?{query}"), pr.clone()).await?,
            status,
        )
        .await?;
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(path, rule)| (path.to_string(), rule.to_string()))
            .collect();
        assert_eq!(violations(&p), expected, "{query}");
        for value in ["gossip", "SECRET", "spaces", "xxxx"] {
            assert!(!p.to_string().contains(value), "{p}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_councils_directory_is_searched_and_read_over_http_each_council_its_own_embedded()
-> anyhow::Result<()> {
    directory_over_http(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_councils_directory_is_searched_and_read_over_http_each_council_its_own_distributed()
-> anyhow::Result<()> {
    directory_over_http(true).await
}

/// A `POST` with a person's token and the `Idempotency-Key` given (none: no header).
async fn post_keyed(
    t: &TestApp,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: &Value,
) -> anyhow::Result<reqwest::Response> {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", base(t)))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    Ok(req.send().await?)
}

/// The family's consent ledger, as the consent service holds it.
async fn ledger(
    t: &TestApp,
    token: &str,
    family: &str,
) -> anyhow::Result<Vec<eh_proto::consent::v1::ConsentRecord>> {
    use eh_proto::consent::v1 as cpb;
    let mut consent = cpb::consent_service_client::ConsentServiceClient::new(t.channel().await?);
    Ok(consent
        .list_consent(with_token(
            cpb::ListConsentRequest {
                tenant: "worcs".into(),
                family_id: family.into(),
            },
            token,
        ))
        .await?
        .into_inner()
        .records)
}

async fn consent_once_per_key(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let fd = t.token("worcs", "fd-1", &["front_door"]);
    let body = consent_body();
    let family = body["family_id"].as_str().expect("family").to_string();

    // No key, or one that cannot be one: refused as a referral's submission is; nothing recorded.
    let p = problem(post_keyed(&t, "/v1/consent", &fd, None, &body).await?, 400).await?;
    assert_eq!(
        violations(&p),
        [("header:Idempotency-Key".into(), "required".into())]
    );
    let long = "k".repeat(256);
    let p = problem(
        post_keyed(&t, "/v1/consent", &fd, Some(&long), &body).await?,
        400,
    )
    .await?;
    assert_eq!(
        violations(&p),
        [("header:Idempotency-Key".into(), "format".into())]
    );
    assert!(ledger(&t, &fd, &family).await?.is_empty());

    // Recorded once; retried with the same key and body: the same answer, marked, nothing new.
    let first = post_keyed(&t, "/v1/consent", &fd, Some("consent-1"), &body).await?;
    assert_eq!(first.status().as_u16(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let recorded: Value = first.json().await?;
    for _ in 0..2 {
        let again = post_keyed(&t, "/v1/consent", &fd, Some("consent-1"), &body).await?;
        assert_eq!(again.status().as_u16(), 201);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.json::<Value>().await?, recorded);
    }
    let records = ledger(&t, &fd, &family).await?;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].record_id,
        recorded["record_id"].as_str().expect("id")
    );

    // The same key with another body: refused as for a referral, nothing recorded.
    let mut other = body.clone();
    other["given_by"] = json!("Someone Else");
    let p = problem(
        post_keyed(&t, "/v1/consent", &fd, Some("consent-1"), &other).await?,
        422,
    )
    .await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:idempotency-key-reused");
    assert_eq!(
        violations(&p),
        [(
            "header:Idempotency-Key".into(),
            "idempotency_key_reused".into()
        )]
    );
    assert_eq!(ledger(&t, &fd, &family).await?.len(), 1);

    // A withdrawal, once per key too; the consent's key on another route is another request.
    let path = format!(
        "/v1/consent/{}/withdrawal",
        recorded["record_id"].as_str().expect("id")
    );
    let reason = json!({"reason": "the family asked"});
    let p = problem(
        post_keyed(&t, &path, &fd, Some("consent-1"), &reason).await?,
        422,
    )
    .await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:idempotency-key-reused");
    problem(post_keyed(&t, &path, &fd, None, &reason).await?, 400).await?;
    assert!(ledger(&t, &fd, &family).await?[0].withdrawal.is_none());
    let first = post_keyed(&t, &path, &fd, Some("withdraw-1"), &reason).await?;
    assert_eq!(first.status().as_u16(), 201);
    let withdrawn: Value = first.json().await?;
    let again = post_keyed(&t, &path, &fd, Some("withdraw-1"), &reason).await?;
    assert_eq!(again.status().as_u16(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await?, withdrawn);
    let p = problem(
        post_keyed(
            &t,
            &path,
            &fd,
            Some("withdraw-1"),
            &json!({"reason": "another reason"}),
        )
        .await?,
        422,
    )
    .await?;
    assert_eq!(p["type"], "urn:earlyhelp:problem:idempotency-key-reused");
    // A new key: the consent service's own answer, the withdrawal held (200), not a second one.
    let held = post_keyed(&t, &path, &fd, Some("withdraw-2"), &reason).await?;
    assert_eq!(held.status().as_u16(), 200);
    assert_eq!(
        held.json::<Value>().await?["withdrawal_id"],
        withdrawn["withdrawal_id"]
    );
    let records = ledger(&t, &fd, &family).await?;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0]
            .withdrawal
            .as_ref()
            .map(|w| w.withdrawal_id.as_str()),
        withdrawn["withdrawal_id"].as_str()
    );

    // Keys are the client's own: another practitioner's `consent-1` records its own request.
    let pr = t.token("worcs", "pr-2", &["practitioner"]);
    let r = post_keyed(&t, "/v1/consent", &pr, Some("consent-1"), &other).await?;
    assert_eq!(r.status().as_u16(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());
    assert_eq!(ledger(&t, &fd, &family).await?.len(), 2);

    // Sent several times at once under one new key (a client retrying on a timeout while its
    // first request is still under way): recorded once. Each answer is the record, or 409 with
    // `Retry-After` while the first is under way; retried after, the record.
    let mut third = body.clone();
    third["given_by"] = json!("A Third Person");
    let all = futures::future::join_all(
        (0..6).map(|_| post_keyed(&t, "/v1/consent", &fd, Some("consent-at-once"), &third)),
    )
    .await;
    let mut recorded_at_once = Vec::new();
    for r in all {
        let r = r?;
        match r.status().as_u16() {
            201 => recorded_at_once.push(r.json::<Value>().await?["record_id"].clone()),
            409 => {
                assert!(r.headers().get("retry-after").is_some());
                let p: Value = r.json().await?;
                assert_eq!(
                    p["type"],
                    "urn:earlyhelp:problem:idempotency-key-in-progress"
                );
            }
            other => anyhow::bail!("at once: {other}"),
        }
    }
    assert!(!recorded_at_once.is_empty());
    recorded_at_once.dedup();
    assert_eq!(recorded_at_once.len(), 1, "{recorded_at_once:?}");
    let after = post_keyed(&t, "/v1/consent", &fd, Some("consent-at-once"), &third).await?;
    assert_eq!(after.status().as_u16(), 201);
    assert_eq!(
        after.json::<Value>().await?["record_id"],
        recorded_at_once[0]
    );
    assert_eq!(ledger(&t, &fd, &family).await?.len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_recorded_and_withdrawn_once_per_idempotency_key_embedded() -> anyhow::Result<()>
{
    consent_once_per_key(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_recorded_and_withdrawn_once_per_idempotency_key_distributed()
-> anyhow::Result<()> {
    consent_once_per_key(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rate_limited_endpoint_answers_429_once_the_burst_is_spent() -> anyhow::Result<()> {
    // A burst of one and no refill within the test.
    let t = rate_limited(1, 1).await?;
    // Every documented operation: (method, path as documented, path requested, body).
    let table: Vec<(Method, &str, &str, Option<Value>)> = vec![
        (
            Method::POST,
            "/v1/referrals",
            "/v1/referrals",
            Some(referral("RL-429", None)),
        ),
        (
            Method::GET,
            "/v1/referrals/{id}",
            "/v1/referrals/none",
            None,
        ),
        (
            Method::GET,
            "/v1/referrals/{id}/case",
            "/v1/referrals/none/case",
            None,
        ),
        (
            Method::POST,
            "/v1/consent",
            "/v1/consent",
            Some(consent_body()),
        ),
        (
            Method::POST,
            "/v1/consent/{record_id}/withdrawal",
            "/v1/consent/none/withdrawal",
            Some(json!({"reason": "the family asked"})),
        ),
        (Method::GET, "/v1/offers", "/v1/offers", None),
        (
            Method::POST,
            "/v1/offers/{offer_id}/accept",
            "/v1/offers/none/accept",
            None,
        ),
        (
            Method::POST,
            "/v1/offers/{offer_id}/decline",
            "/v1/offers/none/decline",
            Some(json!({"reason": "no_capacity"})),
        ),
        (
            Method::GET,
            "/v1/directory/services",
            "/v1/directory/services?postcode=DM1%201AA&need=health&age=4",
            None,
        ),
        (
            Method::GET,
            "/v1/directory/services/{service_id}",
            "/v1/directory/services/none",
            None,
        ),
    ];
    // The table is the API: an operation added to the document and not here fails.
    let doc = eh_gateway::openapi::value();
    let mut documented: Vec<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("item")
                .keys()
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    documented.sort();
    let mut tested: Vec<String> = table
        .iter()
        .map(|(m, p, _, _)| format!("{m} {p}"))
        .collect();
    tested.sort();
    assert_eq!(tested, documented);

    for (i, (method, documented, path, body)) in table.iter().enumerate() {
        // Each endpoint with a client of its own (the limit is per client): its one request
        // is taken, whatever the answer; the next is refused before anything is done.
        let token = t.token(
            "worcs",
            &format!("rl-{i}"),
            &["front_door", "team_manager", "practitioner"],
        );
        let first = send_as(&t, method.clone(), path, &token, body.as_ref()).await?;
        assert_ne!(first.status().as_u16(), 429, "{method} {documented}");
        assert!(
            first.status().as_u16() < 500,
            "{method} {documented}: {first:?}"
        );
        let second = send_as(&t, method.clone(), path, &token, body.as_ref()).await?;
        let retry: u64 = second
            .headers()
            .get("retry-after")
            .unwrap_or_else(|| panic!("{method} {documented}: no Retry-After"))
            .to_str()?
            .parse()?;
        // One request a minute.
        assert!((1..=60).contains(&retry), "{method} {documented}: {retry}");
        let p = problem(second, 429).await?;
        assert_eq!(
            p["type"], "urn:earlyhelp:problem:rate-limited",
            "{method} {documented}"
        );
    }
    // The one submission and the one consent taken; the refused ones did nothing.
    assert_eq!(t.referral_count("worcs").await?, 1);
    let fd = t.token("worcs", "fd-1", &["front_door"]);
    assert_eq!(ledger(&t, &fd, "fam-http-1").await?.len(), 1);
    // An API key has its own allowance too.
    let r = send_key(&t, Method::GET, "/v1/referrals/none", WORCS_KEY, None).await?;
    assert_eq!(r.status().as_u16(), 404);
    Ok(())
}
