//! Every request is authenticated; one tenant never sees another's data; denials are audited.
use eh_proto::intake::v1::{GetReferralRequest, SubmitReferralRequest};
use eh_tests::{STAFFS_KEY, TestApp, WORCS_KEY, referral, with_key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_or_bad_credentials_are_unauthenticated() -> anyhow::Result<()> {
    let t = TestApp::spawn(false).await?;
    let mut client = t.intake().await?;
    let req = || SubmitReferralRequest {
        tenant: "worcs".into(),
        referral: None,
    };
    let e = client
        .submit_referral(tonic::Request::new(req()))
        .await
        .expect_err("no principal");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = client
        .submit_referral(with_key(req(), "not-a-key"))
        .await
        .expect_err("bad key");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);

    let issuer = t
        .app()
        .demo_issuer
        .clone()
        .expect("demo issuer in embedded mode");
    let bearer = |token: String| {
        let mut r = tonic::Request::new(req());
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        r
    };
    let now = chrono::Utc::now().timestamp();
    let expired = issuer
        .mint_claims(serde_json::json!({"iss": issuer.issuer, "aud": issuer.audience, "sub": "x", "exp": now - 3600}))
        .map_err(anyhow::Error::msg)?;
    let e = client
        .submit_referral(bearer(expired))
        .await
        .expect_err("expired");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let wrong_aud = issuer
        .mint_claims(
            serde_json::json!({"iss": issuer.issuer, "aud": "other", "sub": "x", "exp": now + 600}),
        )
        .map_err(anyhow::Error::msg)?;
    let e = client
        .submit_referral(bearer(wrong_aud))
        .await
        .expect_err("audience");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let not_yet = issuer
        .mint_claims(serde_json::json!({"iss": issuer.issuer, "aud": issuer.audience, "sub": "x", "exp": now + 7200, "nbf": now + 3600}))
        .map_err(anyhow::Error::msg)?;
    let e = client
        .submit_referral(bearer(not_yet))
        .await
        .expect_err("nbf");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // An HS256 token (a shared-secret algorithm) is refused whatever its content.
    let hs = jsonwebtoken_hs256(&issuer.issuer);
    let e = client.submit_referral(bearer(hs)).await.expect_err("alg");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(e.message().contains("algorithm"), "{}", e.message());
    Ok(())
}

fn jsonwebtoken_hs256(iss: &str) -> String {
    use base64::Engine;
    let b = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.c2ln",
        b(serde_json::json!({"alg": "HS256", "typ": "JWT"})),
        b(serde_json::json!({"iss": iss}))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_touch_anothers_data_and_the_denial_is_audited() -> anyhow::Result<()> {
    let t = TestApp::spawn(true).await?;
    let mut client = t.intake().await?;
    let doc: eh_proto::intake::v1::Referral = serde_json::from_value(referral("T-1", None))?;
    let mine = client
        .submit_referral(with_key(
            SubmitReferralRequest {
                tenant: "worcs".into(),
                referral: Some(doc.clone()),
            },
            WORCS_KEY,
        ))
        .await?
        .into_inner();
    // Staffordshire's system submits into, and reads from, Worcestershire.
    let e = client
        .submit_referral(with_key(
            SubmitReferralRequest {
                tenant: "worcs".into(),
                referral: Some(doc),
            },
            STAFFS_KEY,
        ))
        .await
        .expect_err("cross-tenant submit");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = client
        .get_referral(with_key(
            GetReferralRequest {
                tenant: "worcs".into(),
                referral_id: mine.referral_id.clone(),
            },
            STAFFS_KEY,
        ))
        .await
        .expect_err("cross-tenant read");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    // Asking under its own tenant for the other's id finds nothing.
    let e = client
        .get_referral(with_key(
            GetReferralRequest {
                tenant: "staffs".into(),
                referral_id: mine.referral_id.clone(),
            },
            STAFFS_KEY,
        ))
        .await
        .expect_err("not theirs");
    assert_eq!(e.code(), tonic::Code::NotFound);

    let auditor = eh_auth::Auditor::new(t.db("intake").await?);
    let entries = auditor.entries("worcs").await?;
    let denied: Vec<_> = entries.iter().filter(|e| e.3 == "denied").collect();
    assert_eq!(denied.len(), 2, "{entries:?}");
    assert!(denied.iter().all(|e| e.0 == "system:staffs-hub"));
    assert!(
        denied
            .iter()
            .any(|e| e.2 == format!("referral:{}", mine.referral_id))
    );
    assert_eq!(auditor.verify().await?, None, "the chain is intact");

    // Tampering with an entry breaks the chain.
    let db = t.db("intake").await?;
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        "UPDATE eh_audit SET decision = 'allowed' WHERE decision = 'denied'",
    )
    .await?;
    assert!(
        auditor.verify().await?.is_some(),
        "an edited audit entry is detected"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn practitioner_tokens_are_checked_against_the_councils_published_keys() -> anyhow::Result<()>
{
    use axum::{Router, routing::get};
    // The council's identity provider publishes its keys over HTTP (loopback here; https in production).
    let idp_dir = tempfile::tempdir()?;
    let idp =
        eh_auth::demo::DemoIssuer::load_or_create(idp_dir.path()).map_err(anyhow::Error::msg)?;
    let jwks = serde_json::to_string(&idp.jwks())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let app = Router::new().route("/jwks.json", get(move || async move { jwks.clone() }));
        let _ = axum::serve(listener, app).await;
    });

    let dir = tempfile::tempdir()?;
    let smtp = eh_testkit::SmtpSink::start()?;
    let mut settings = eh_tests::test_settings(false, dir.path(), smtp.port, None).await?;
    if let Some(worcs) = settings.tenants.get_mut("worcs") {
        worcs.oidc = Some(eh_platform::config::OidcSettings {
            issuer: "https://idp.worcs.test".into(),
            audience: "earlyhelp".into(),
            jwks_url: format!("http://127.0.0.1:{port}/jwks.json"),
            roles_claim: "roles".into(),
            agency_claim: "agency".into(),
        });
    }
    let mut opts = earlyhelp::AppOptions::new(settings, earlyhelp::Target::ALL.to_vec());
    opts.http_listener = Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    opts.grpc_listener = Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    let app = earlyhelp::App::start(opts).await?;
    app.wait_ready(std::time::Duration::from_secs(30)).await?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr))?
        .connect()
        .await?;
    let mut client = eh_proto::intake::v1::intake_service_client::IntakeServiceClient::new(channel);

    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({"iss": "https://idp.worcs.test", "aud": "earlyhelp", "sub": "alice",
        "roles": ["practitioner"], "agency": "education", "exp": now + 600});
    let token = idp
        .mint_claims(claims.clone())
        .map_err(anyhow::Error::msg)?;
    let doc: eh_proto::intake::v1::Referral = serde_json::from_value(referral("P-1", None))?;
    let request = |tenant: &str, token: &str| {
        let mut r = tonic::Request::new(SubmitReferralRequest {
            tenant: tenant.into(),
            referral: Some(doc.clone()),
        });
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        r
    };
    // Accepted once the keys are fetched (at start, in the background).
    let accepted = eh_testkit::eventually(
        std::time::Duration::from_secs(10),
        "the JWKS to be fetched",
        || {
            let mut client = client.clone();
            let r = request("worcs", &token);
            async move { Ok(client.submit_referral(r).await.ok()) }
        },
    )
    .await?;
    assert!(!accepted.into_inner().referral_id.is_empty());

    // Signed by a key the council never published: refused.
    let other_dir = tempfile::tempdir()?;
    let impostor =
        eh_auth::demo::DemoIssuer::load_or_create(other_dir.path()).map_err(anyhow::Error::msg)?;
    let forged = impostor.mint_claims(claims).map_err(anyhow::Error::msg)?;
    let e = client
        .submit_referral(request("worcs", &forged))
        .await
        .expect_err("forged");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    // A Worcestershire practitioner acting on Staffordshire: denied.
    let e = client
        .submit_referral(request("staffs", &token))
        .await
        .expect_err("other council");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    app.shutdown();
    app.stopped().await?;
    Ok(())
}
