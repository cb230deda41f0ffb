//! The console's sign-in and sessions, through its router: the session cookie's flags, idle and
//! absolute expiry, CSRF refusal, and the OIDC callback refusing an answer with a bad state, a
//! bad nonce or a PKCE verifier the provider does not accept. The provider here is a small one
//! of this test's own that checks PKCE (S256) as the standard says and signs ID tokens with the
//! demo issuer's key, so each refusal can be provoked on purpose; the real, certified provider
//! signs people in in the browser tests (tests/browser).
use axum::body::Body;
use axum::extract::{Form, State};
use axum::http::{Request, StatusCode, header};
use axum::routing::{get, post};
use base64::Engine;
use eh_auth::Authenticator;
use eh_auth::demo::DemoIssuer;
use eh_gateway::console::{Clients, Console};
use eh_gateway::session::{self, CookieSpec, Timeouts};
use eh_platform::clock::ManualClock;
use eh_platform::{Clock, Settings};
use sha2::Digest;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

const CLIENT_ID: &str = "console-test";

/// The test's provider: what it issued for each code, and whether to sign a wrong nonce.
#[derive(Default)]
struct Op {
    issuer: String,
    codes: Mutex<HashMap<String, (String, String)>>,
    wrong_nonce: Mutex<bool>,
    /// Every ID token it issued.
    issued: Mutex<Vec<String>>,
    demo: Option<Arc<DemoIssuer>>,
}

async fn discovery(State(op): State<Arc<Op>>) -> axum::Json<serde_json::Value> {
    let i = &op.issuer;
    axum::Json(serde_json::json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/auth"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "end_session_endpoint": format!("{i}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(op): State<Arc<Op>>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::to_value(op.demo.as_ref().unwrap().jwks()).unwrap())
}

async fn token(
    State(op): State<Arc<Op>>,
    Form(f): Form<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let refuse = || {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "invalid_grant"})),
        )
            .into_response()
    };
    let Some((challenge, nonce)) = f
        .get("code")
        .and_then(|c| op.codes.lock().unwrap().remove(c))
    else {
        return refuse();
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    if computed != challenge {
        return refuse();
    }
    let nonce = if *op.wrong_nonce.lock().unwrap() {
        "another-sign-in".to_string()
    } else {
        nonce
    };
    let now = chrono::Utc::now().timestamp();
    let id_token = op
        .demo
        .as_ref()
        .unwrap()
        .mint_claims(serde_json::json!({
            "iss": op.issuer, "aud": CLIENT_ID, "sub": "alice", "nonce": nonce,
            "iat": now, "exp": now + 600, "roles": ["front_door"], "agency": "council",
        }))
        .unwrap();
    op.issued.lock().unwrap().push(id_token.clone());
    axum::Json(serde_json::json!({
        "access_token": "opaque", "token_type": "Bearer", "expires_in": 600, "id_token": id_token,
    }))
    .into_response()
}

struct Harness {
    router: axum::Router,
    token_key: session::TokenKey,
    clock: Arc<ManualClock>,
    op: Arc<Op>,
    db: sea_orm::DatabaseConnection,
    _dir: tempfile::TempDir,
}

async fn harness(tls: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    // The council's provider signs with a key of its own (a demo issuer's, kept in its own dir).
    let op_dir = dir.path().join("op");
    let op_key = Arc::new(DemoIssuer::load_or_create(&op_dir).unwrap());
    let jwks_file = dir.path().join("op-jwks.json");
    std::fs::write(&jwks_file, serde_json::to_string(&op_key.jwks()).unwrap()).unwrap();
    let op = Arc::new(Op {
        issuer: issuer.clone(),
        demo: Some(op_key),
        ..Default::default()
    });
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .with_state(op.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = dir.path().join("earlyhelp.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[tenants.worcs]
name = "Worcestershire"
[tenants.worcs.oidc]
issuer = "{issuer}"
audience = "{CLIENT_ID}"
jwks_url = "{jwks}"
[tenants.worcs.oidc.client]
client_id = "{CLIENT_ID}"
client_secret = "s3cret"
redirect_url = "http://127.0.0.1:8080/console/callback"
"#,
            data = dir.path().display(),
            jwks = jwks_file.display(),
        ),
    )
    .unwrap();
    let settings = Settings::load(&[config], std::iter::empty()).unwrap();
    let demo = DemoIssuer::load_or_create(&dir.path().join("data")).unwrap();
    let auth = Authenticator::from_settings(&settings, Some(&demo)).unwrap();
    let loc = eh_store::Location {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("gateway.sqlite").display()
        ),
        schema: None,
        max_connections: 1,
    };
    let db = eh_store::connect(&loc).await.unwrap();
    eh_store::migrate(&db, "gateway", &eh_gateway::migrations())
        .await
        .unwrap();
    let nowhere = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    use eh_proto::{allocation, assessment, casework, consent, intake, notifications};
    let clients = Clients {
        casework: casework::v1::casework_service_client::CaseworkServiceClient::new(
            nowhere.clone(),
        ),
        intake: intake::v1::intake_service_client::IntakeServiceClient::new(nowhere.clone()),
        consent: consent::v1::consent_service_client::ConsentServiceClient::new(nowhere.clone()),
        notifications:
            notifications::v1::notifications_service_client::NotificationsServiceClient::new(
                nowhere.clone(),
            ),
        allocation: allocation::v1::allocation_service_client::AllocationServiceClient::new(
            nowhere.clone(),
        ),
        assessment: assessment::v1::assessment_service_client::AssessmentServiceClient::new(
            nowhere,
        ),
    };
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let token_key = session::TokenKey::generate();
    let console = Console {
        db: db.clone(),
        token_key: token_key.clone(),
        clock: clock.clone(),
        auth,
        oidc: eh_gateway::oidc::Oidc::from_settings(&settings).unwrap(),
        demo: Some(demo),
        cookie: CookieSpec { tls },
        timeouts: Timeouts {
            idle: chrono::Duration::minutes(30),
            absolute: chrono::Duration::hours(2),
        },
        assets: None::<PathBuf>,
        clients,
        councils: [("worcs".to_string(), "Worcestershire".to_string())].into(),
        form_origins: "'self'".into(),
    };
    Harness {
        router: eh_gateway::console::router(Arc::new(console)),
        token_key,
        clock,
        op,
        db,
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Vec<String>,
    body: String,
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let location = res
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        let set_cookie = res
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        Answer {
            status,
            location,
            set_cookie,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut b = Request::get(path);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &str) -> Answer {
        let mut b =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        self.send(b.body(Body::from(form.to_string())).unwrap())
            .await
    }

    /// Signs in as the demo front-door officer: the session cookie (`name=value`) and its CSRF.
    async fn demo_sign_in(&self) -> (String, String) {
        let page = self.get("/console/demo", None).await;
        assert_eq!(page.status, StatusCode::OK);
        let pending = cookie_pair(&page.set_cookie[0]);
        let csrf = hidden(&page.body, "csrf");
        let signed = self
            .post(
                "/console/demo",
                Some(&pending),
                &format!("csrf={csrf}&user=demo-front-door&return_to=/console/"),
            )
            .await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
        let cookie = cookie_pair(&signed.set_cookie[0]);
        assert_ne!(cookie, pending, "the session id changes at sign-in");
        let page = self.get("/console/step-up-not-a-page", Some(&cookie)).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        let form = self.get("/console/cases/c-1/step-up", Some(&cookie)).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        (cookie, hidden(&form.body, "csrf"))
    }

    /// The `id_token` column of every session row.
    async fn stored_tokens(&self) -> Vec<String> {
        use sea_orm::ConnectionTrait;
        self.db
            .query_all_raw(eh_store::stmt(
                self.db.get_database_backend(),
                "SELECT id_token FROM gateway_sessions WHERE id_token IS NOT NULL ORDER BY id_sha256",
                [],
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect()
    }

    async fn session_rows(&self) -> i64 {
        use sea_orm::ConnectionTrait;
        let r = self
            .db
            .query_one_raw(eh_store::stmt(
                self.db.get_database_backend(),
                "SELECT COUNT(*) FROM gateway_sessions",
                [],
            ))
            .await
            .unwrap()
            .unwrap();
        r.try_get_by_index::<i64>(0).unwrap()
    }
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

fn hidden(html: &str, name: &str) -> String {
    let at = html
        .find(&format!(r#"name="{name}" value=""#))
        .unwrap_or_else(|| panic!("no hidden {name} in {html}"));
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn signed_in(a: &Answer) -> bool {
    a.status == StatusCode::OK && a.body.contains("Sign out")
}

#[tokio::test]
async fn session_cookie_flags_over_tls_and_plain_http() {
    let h = harness(true).await;
    let page = h.get("/console/demo", None).await;
    let c = &page.set_cookie[0];
    assert!(c.starts_with("__Host-eh-session="), "{c}");
    for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(c.split("; ").any(|f| f == flag), "{c} lacks {flag}");
    }
    assert!(!c.contains("Domain"), "{c}");
    let h = harness(false).await;
    let page = h.get("/console/demo", None).await;
    let c = &page.set_cookie[0];
    assert!(c.starts_with("eh-session="), "{c}");
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && !c.contains("Secure"));
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_absolute_end() {
    let h = harness(false).await;
    let (cookie, _) = h.demo_sign_in().await;
    // In use every 20 minutes: still signed in at 1 h 40 min, never idle for 30.
    for _ in 0..5 {
        h.clock.advance(chrono::Duration::minutes(20));
        let page = h.get("/console/matches", Some(&cookie)).await;
        assert!(signed_in(&page), "{} {:?}", page.status, page.location);
    }
    // Past the absolute end (2 h) however it is used.
    h.clock.advance(chrono::Duration::minutes(21));
    let page = h.get("/console/matches", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.location.as_deref(),
        Some("/console/sign-in?return_to=/console/matches")
    );
    assert_eq!(h.session_rows().await, 0, "the ended session is deleted");

    // Idle: 29 minutes is fine, then 30 unused minutes end it.
    let (cookie, _) = h.demo_sign_in().await;
    h.clock.advance(chrono::Duration::minutes(29));
    assert!(signed_in(&h.get("/console/matches", Some(&cookie)).await));
    h.clock.advance(chrono::Duration::minutes(30));
    let page = h.get("/console/matches", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    // And a session id nobody issued is no session.
    let page = h
        .get("/console/matches", Some("eh-session=forged-id"))
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn session_store_expiry_at_its_edges() {
    let h = harness(false).await;
    let t = Timeouts {
        idle: chrono::Duration::minutes(30),
        absolute: chrono::Duration::hours(2),
    };
    let now = h.clock.now();
    let user = session::SignedIn {
        subject: "s".into(),
        id_token: "t".into(),
        end_session_url: None,
    };
    // The token expires before the absolute timeout: the session ends with it.
    let (id, _) = session::sign_in(
        &h.db,
        &h.token_key,
        None,
        "worcs",
        &user,
        now + chrono::Duration::minutes(50),
        now,
        t,
    )
    .await
    .unwrap();
    let at = |m| now + chrono::Duration::minutes(m);
    assert!(
        session::load(&h.db, &h.token_key, &id, at(25), t)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        session::load(&h.db, &h.token_key, &id, at(49), t)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        session::load(&h.db, &h.token_key, &id, at(50), t)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        session::load(&h.db, &h.token_key, &id, at(1), t)
            .await
            .unwrap()
            .is_none(),
        "deleted"
    );
    // Purge forgets the idle and the ended.
    let (_a, _) = session::sign_in(&h.db, &h.token_key, None, "worcs", &user, at(600), now, t)
        .await
        .unwrap();
    assert_eq!(session::purge(&h.db, at(10), at(-1)).await.unwrap(), 0);
    assert_eq!(session::purge(&h.db, at(10), at(1)).await.unwrap(), 1);
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let h = harness(false).await;
    let (cookie, csrf) = h.demo_sign_in().await;
    for form in [
        "reason=forged".to_string(),
        "csrf=&reason=forged".to_string(),
        format!("csrf={}x&reason=forged", &csrf[..csrf.len() - 1]),
    ] {
        let a = h
            .post("/console/cases/c-1/step-up", Some(&cookie), &form)
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{form}");
        assert!(a.body.contains("Nothing was changed"), "{}", a.body);
    }
    // Another session's token is not this one's.
    let (_, other_csrf) = h.demo_sign_in().await;
    let a = h
        .post(
            "/console/cases/c-1/close",
            Some(&cookie),
            &format!("csrf={other_csrf}&outcome=closed_advice_given&reason=x"),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Sign-out needs the token too: refused, the session lives on.
    let a = h
        .post("/console/sign-out", Some(&cookie), "csrf=wrong")
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(signed_in(&h.get("/console/matches", Some(&cookie)).await));
    // The right token passes the check (the form is then validated: an empty reason is its error).
    let a = h
        .post(
            "/console/cases/c-1/step-up",
            Some(&cookie),
            &format!("csrf={csrf}&reason="),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("Enter why the case is stepped up"));
    // And signs out.
    let a = h
        .post("/console/sign-out", Some(&cookie), &format!("csrf={csrf}"))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        h.get("/console/matches", Some(&cookie)).await.status,
        StatusCode::SEE_OTHER
    );
}

/// Starts a sign-in with the provider: the pending session's cookie and the authorization URL's
/// query (state, nonce, code challenge).
async fn start(h: &Harness) -> (String, HashMap<String, String>) {
    let a = h
        .get("/console/sign-in/worcs?return_to=/console/matches", None)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let url = openidconnect::url::Url::parse(a.location.as_deref().unwrap()).unwrap();
    assert!(url.as_str().starts_with(&format!("{}/auth?", h.op.issuer)));
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    (cookie_pair(&a.set_cookie[0]), q)
}

/// The provider's answer: a code bound to the challenge and nonce the browser brought.
fn issue_code(h: &Harness, q: &HashMap<String, String>, code: &str) {
    h.op.codes.lock().unwrap().insert(
        code.into(),
        (q["code_challenge"].clone(), q["nonce"].clone()),
    );
}

#[tokio::test]
async fn the_callback_signs_in_with_the_right_state_nonce_and_verifier() {
    let h = harness(false).await;
    let (pending, q) = start(&h).await;
    issue_code(&h, &q, "good");
    let a = h
        .get(
            &format!("/console/callback?code=good&state={}", q["state"]),
            Some(&pending),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location.as_deref(), Some("/console/matches"));
    let cookie = cookie_pair(&a.set_cookie[0]);
    assert_ne!(cookie, pending);
    let page = h.get("/console/matches", Some(&cookie)).await;
    assert!(signed_in(&page), "{}", page.body);
    assert!(page.body.contains("alice"));
    // The ID token is stored sealed: neither the token nor any of its parts is in the table.
    let issued = h.op.issued.lock().unwrap().clone();
    assert_eq!(issued.len(), 1);
    let stored = h.stored_tokens().await;
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], issued[0]);
    for part in issued[0].split('.') {
        assert!(!stored[0].contains(part), "a part of the token is stored");
    }
    // The pending session was used up: the same answer again is refused.
    issue_code(&h, &q, "again");
    let a = h
        .get(
            &format!("/console/callback?code=again&state={}", q["state"]),
            Some(&pending),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_callback_refuses_a_bad_state() {
    let h = harness(false).await;
    let (pending, q) = start(&h).await;
    issue_code(&h, &q, "c");
    let a = h
        .get("/console/callback?code=c&state=forged", Some(&pending))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("could not be signed in"));
    assert!(
        a.set_cookie.iter().all(|c| c.contains("Max-Age=0")),
        "{:?}",
        a.set_cookie
    );
    assert!(
        h.op.codes.lock().unwrap().contains_key("c"),
        "the code was never redeemed"
    );
    // Without the browser's pending session, even the right state is refused.
    let a = h
        .get(
            &format!("/console/callback?code=c&state={}", q["state"]),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.session_rows().await, 0);
}

#[tokio::test]
async fn the_callback_refuses_an_id_token_with_another_nonce() {
    let h = harness(false).await;
    let (pending, q) = start(&h).await;
    issue_code(&h, &q, "c");
    *h.op.wrong_nonce.lock().unwrap() = true;
    let a = h
        .get(
            &format!("/console/callback?code=c&state={}", q["state"]),
            Some(&pending),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(h.session_rows().await, 0, "no session");
}

#[tokio::test]
async fn the_callback_refuses_when_the_pkce_verifier_does_not_match() {
    use sea_orm::ConnectionTrait;
    let h = harness(false).await;
    let (pending, q) = start(&h).await;
    issue_code(&h, &q, "c");
    // The verifier held for this sign-in is not the one the challenge was made from.
    let b = h.db.get_database_backend();
    let row =
        h.db.query_one_raw(eh_store::stmt(
            b,
            "SELECT pending FROM gateway_sessions",
            [],
        ))
        .await
        .unwrap()
        .unwrap();
    let mut p: eh_gateway::oidc::Pending =
        serde_json::from_str(&row.try_get_by_index::<String>(0).unwrap()).unwrap();
    p.pkce_verifier = "x".repeat(43);
    h.db.execute_raw(eh_store::stmt(
        b,
        "UPDATE gateway_sessions SET pending = $1",
        [serde_json::to_string(&p).unwrap().into()],
    ))
    .await
    .unwrap();
    let a = h
        .get(
            &format!("/console/callback?code=c&state={}", q["state"]),
            Some(&pending),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(h.session_rows().await, 0, "no session");
}

#[tokio::test]
async fn pages_carry_the_security_headers() {
    let h = harness(false).await;
    let res = h
        .router
        .clone()
        .oneshot(
            Request::get("/console/sign-in")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let hd = res.headers();
    let csp = hd[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(hd[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(hd[header::CACHE_CONTROL], "no-store");
    assert_eq!(hd[header::REFERRER_POLICY], "no-referrer");
    // Not signed in: every personal page sends the browser to sign in.
    for path in ["/console/", "/console/cases/x", "/console/matches"] {
        let a = h.get(path, None).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            a.location
                .unwrap()
                .starts_with("/console/sign-in?return_to=")
        );
    }
}

#[tokio::test]
async fn a_sealed_token_opens_only_in_its_own_row_unchanged() {
    use sea_orm::ConnectionTrait;
    let h = harness(false).await;
    let (first, _) = h.demo_sign_in().await;
    let (second, _) = h.demo_sign_in().await;
    let stored = h.stored_tokens().await;
    assert_eq!(stored.len(), 2);
    for s in &stored {
        assert!(
            s.starts_with("v1.") && !s.contains("eyJ"),
            "not sealed: {s}"
        );
    }
    assert!(signed_in(&h.get("/console/matches", Some(&first)).await));
    // Each row's sealed token copied into the other row: neither opens, both sessions end.
    let b = h.db.get_database_backend();
    h.db.execute_raw(eh_store::stmt(
        b,
        "UPDATE gateway_sessions SET id_token = CASE WHEN id_token = $1 THEN $2 ELSE $1 END \
         WHERE id_token IS NOT NULL",
        [stored[0].clone().into(), stored[1].clone().into()],
    ))
    .await
    .unwrap();
    for cookie in [&first, &second] {
        let page = h.get("/console/matches", Some(cookie)).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    }
    assert_eq!(h.session_rows().await, 0, "both ended");
}
