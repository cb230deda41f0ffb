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
    assert!(denied.iter().all(|e| e.0 == "system:test-hub"));
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
            client: None,
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

// ------------------------------------------------------------------ the access tables, walked

use eh_auth::Principal;
use eh_service::access::{Table, allows, roles_for, roles_named};
use tonic::Code;

/// Each gRPC service's access table, by the service's name (its package's second part: the
/// database its audit trail is in).
fn tables() -> Vec<(&'static str, &'static Table)> {
    vec![
        ("intake", eh_intake::grpc::ACCESS),
        ("consent", eh_consent::grpc::ACCESS),
        ("casework", eh_casework::grpc::ACCESS),
        ("notifications", eh_notifications::grpc::ACCESS),
        ("allocation", eh_allocation::grpc::ACCESS),
        ("assessment", eh_assessment::grpc::ACCESS),
        ("reporting", eh_reporting::grpc::ACCESS),
        ("records", eh_records::grpc::ACCESS),
        ("gateway", eh_gateway::grpc::ACCESS),
    ]
}

fn table_of(service: &str) -> Option<&'static Table> {
    tables()
        .into_iter()
        .find(|(s, _)| *s == service)
        .map(|(_, t)| t)
}

/// One gRPC method the platform serves.
struct Method {
    /// The service's name (`intake`).
    service: String,
    /// Its path (`/earlyhelp.intake.v1.IntakeService/GetReferral`).
    path: String,
    /// Its name (`GetReferral`), the key of its row.
    name: String,
}

/// Every method of every gRPC service in the platform's descriptor set (what gRPC reflection
/// serves), each checked to take a request whose field 1 is the string `tenant` (so one request
/// shape reaches every method).
fn methods() -> Vec<Method> {
    use prost::Message;
    let fds = prost_types::FileDescriptorSet::decode(eh_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut out = Vec::new();
    for file in &fds.file {
        let package = file.package();
        for service in &file.service {
            let short = package.split('.').nth(1).unwrap_or_default().to_string();
            for m in &service.method {
                assert!(
                    !m.client_streaming() && !m.server_streaming(),
                    "{}: the walk calls unary methods",
                    m.name()
                );
                // The request type, in this file or (a shared one, e.g. records'
                // ExportPersonDataRequest) in another of the set.
                let full = m.input_type().trim_start_matches('.');
                let (in_package, input) = full.rsplit_once('.').unwrap_or_default();
                let msg = fds
                    .file
                    .iter()
                    .filter(|f| f.package() == in_package)
                    .flat_map(|f| f.message_type.iter())
                    .find(|d| d.name() == input)
                    .unwrap_or_else(|| panic!("{input} is in {in_package}"));
                let tenant = msg.field.iter().find(|f| f.name() == "tenant");
                assert!(
                    tenant.is_some_and(|f| f.number() == 1
                        && f.r#type() == prost_types::field_descriptor_proto::Type::String),
                    "{input}: every request names its council as `string tenant = 1`"
                );
                out.push(Method {
                    service: short.clone(),
                    path: format!("/{package}.{}/{}", service.name(), m.name()),
                    name: m.name().to_string(),
                });
            }
        }
    }
    out
}

/// Any request: its council only.
#[derive(Clone, PartialEq, prost::Message)]
struct TenantOnly {
    #[prost(string, tag = "1")]
    tenant: String,
}

/// Any answer, unread.
#[derive(Clone, PartialEq, prost::Message)]
struct Ignored {}

/// How a walker authenticates.
#[derive(Clone)]
enum Credential {
    Bearer(String),
    ApiKey(&'static str),
    ServiceKey(&'static str),
}

/// Calls `path` with a request naming `tenant` only.
async fn call_raw(
    channel: &tonic::transport::Channel,
    path: &str,
    tenant: &str,
    credential: &Credential,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(TenantOnly {
        tenant: tenant.into(),
    });
    let (header, value) = match credential {
        Credential::Bearer(t) => ("authorization", format!("Bearer {t}")),
        Credential::ApiKey(k) => ("x-api-key", k.to_string()),
        Credential::ServiceKey(k) => ("x-eh-service-key", k.to_string()),
    };
    request
        .metadata_mut()
        .insert(header, value.parse().expect("ascii"));
    let path =
        tonic::codegen::http::uri::PathAndQuery::try_from(path.to_string()).expect("a method path");
    let codec = tonic_prost::ProstCodec::<TenantOnly, Ignored>::default();
    grpc.unary(request, path, codec).await.map(|_| ())
}

#[test]
fn every_method_of_every_grpc_service_has_a_row_and_every_row_a_method() {
    let methods = methods();
    assert!(methods.len() >= 30, "{} methods", methods.len());
    for m in &methods {
        let table = table_of(&m.service)
            .unwrap_or_else(|| panic!("the {} service has no access table", m.service));
        assert!(
            table.iter().any(|(row, _)| *row == m.name),
            "{}: no row in the {} service's access table (grpc::ACCESS) — say who may call it",
            m.name,
            m.service
        );
    }
    for (service, table) in tables() {
        assert!(
            methods.iter().any(|m| m.service == service),
            "{service} serves no gRPC method"
        );
        for (row, who) in table {
            assert!(
                methods
                    .iter()
                    .any(|m| m.service == service && m.name == *row),
                "{service}: the row {row} is no method of the service"
            );
            assert!(!who.is_empty(), "{service}: {row} admits no one");
            assert_eq!(
                table.iter().filter(|(r, _)| r == row).count(),
                1,
                "{service}: {row} has one row"
            );
        }
    }
}

const SERVICE_KEY: &str = "a-platform-service-key-for-tests";

/// One kind of caller the walk tries on every method.
struct Walker {
    /// What the audit trail records (`person:walk-front_door`).
    actor: String,
    principal: Principal,
    credential: Credential,
}

fn person(t: &TestApp, tenant: &str, subject: &str, roles: &[&str]) -> (Principal, Credential) {
    (
        Principal::Person {
            tenant: tenant.into(),
            subject: subject.into(),
            agency: Some("early_help".into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        },
        Credential::Bearer(t.token(tenant, subject, roles)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_of_every_access_table_is_enforced_and_every_refusal_audited_embedded()
-> anyhow::Result<()> {
    walk_every_table(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_of_every_access_table_is_enforced_and_every_refusal_audited_distributed()
-> anyhow::Result<()> {
    walk_every_table(true).await
}

/// Calls every method of every service as each role any table names (and one none does), an
/// upstream system, a platform service, and another council's person and system: each allowed
/// cell is let through (an empty request may then be NOT_FOUND or INVALID_ARGUMENT), each other
/// cell is PERMISSION_DENIED and on the refusing service's audit trail as denied.
async fn walk_every_table(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn_configured(distributed, |s, _| {
        s.service_keys.push(eh_platform::config::ApiKeySettings {
            name: "walker".into(),
            sha256: eh_auth::Authenticator::hash_key(SERVICE_KEY),
        });
    })
    .await?;
    let channel = t.channel().await?;
    let all: Vec<&'static Table> = tables().into_iter().map(|(_, t)| t).collect();
    // Every role any table names, and one none does.
    let mut roles = roles_named(&all);
    roles.push("caretaker");
    let mut walkers = Vec::new();
    for role in &roles {
        let subject = format!("walk-{role}");
        let (principal, credential) = person(&t, "worcs", &subject, &[role]);
        walkers.push(Walker {
            actor: format!("person:{subject}"),
            principal,
            credential,
        });
    }
    walkers.push(Walker {
        actor: format!("system:{}", eh_tests::TEST_HUB),
        principal: Principal::System {
            tenant: "worcs".into(),
            name: eh_tests::TEST_HUB.into(),
        },
        credential: Credential::ApiKey(WORCS_KEY),
    });
    walkers.push(Walker {
        actor: "service:walker".into(),
        principal: Principal::Service {
            name: "walker".into(),
        },
        credential: Credential::ServiceKey(SERVICE_KEY),
    });
    // Another council's person holding every role, and its system: refused everywhere.
    let (staffs_person, staffs_token) = person(&t, "staffs", "walk-staffs", &roles);
    let strangers = [
        Walker {
            actor: "person:walk-staffs".into(),
            principal: staffs_person,
            credential: staffs_token,
        },
        Walker {
            actor: format!("system:{}", eh_tests::TEST_HUB),
            principal: Principal::System {
                tenant: "staffs".into(),
                name: eh_tests::TEST_HUB.into(),
            },
            credential: Credential::ApiKey(STAFFS_KEY),
        },
    ];

    let mut refusals: Vec<(String, String, String)> = Vec::new();
    let mut admissions: Vec<(String, String, String)> = Vec::new();
    let mut cells = (0, 0);
    for m in methods() {
        let table = table_of(&m.service).expect("a table (the other test)");
        let row = roles_for(table, &m.name);
        for w in &walkers {
            let answer = call_raw(&channel, &m.path, "worcs", &w.credential).await;
            let code = answer.as_ref().err().map(tonic::Status::code);
            if allows(row, &w.principal) {
                cells.0 += 1;
                assert!(
                    !matches!(code, Some(Code::PermissionDenied | Code::Unauthenticated)),
                    "{} may call {}: {answer:?}",
                    w.actor,
                    m.name
                );
                admissions.push((m.service.clone(), w.actor.clone(), m.name.clone()));
            } else {
                cells.1 += 1;
                assert_eq!(
                    code,
                    Some(Code::PermissionDenied),
                    "{} may not call {}: {answer:?}",
                    w.actor,
                    m.name
                );
                refusals.push((m.service.clone(), w.actor.clone(), m.name.clone()));
            }
        }
        for w in &strangers {
            let answer = call_raw(&channel, &m.path, "worcs", &w.credential).await;
            assert_eq!(
                answer.as_ref().err().map(tonic::Status::code),
                Some(Code::PermissionDenied),
                "another council's {} on {}: {answer:?}",
                w.actor,
                m.name
            );
            cells.1 += 1;
            refusals.push((m.service.clone(), w.actor.clone(), m.name.clone()));
        }
    }
    assert!(cells.0 > 30 && cells.1 > 100, "cells walked: {cells:?}");
    // Every admission and every refusal is on the trail of the service that decided it, under the
    // method's name: the table is enforced before anything else is looked at.
    for (service, _) in tables() {
        let auditor = eh_auth::Auditor::new(t.db(service).await?);
        let trail = auditor.entries("worcs").await?;
        for (_, actor, method) in admissions.iter().filter(|r| r.0 == service) {
            assert!(
                trail
                    .iter()
                    .any(|e| e.0 == *actor && e.1 == *method && e.3 == "allowed"),
                "{service}: {actor} admitted to {method}, not audited"
            );
        }
        for (_, actor, method) in refusals.iter().filter(|r| r.0 == service) {
            let refused = refusals
                .iter()
                .filter(|r| r.0 == service && r.1 == *actor && r.2 == *method)
                .count();
            let audited = trail
                .iter()
                .filter(|e| e.0 == *actor && e.1 == *method && e.3 == "denied")
                .count();
            assert!(
                audited >= refused,
                "{service}: {actor} refused {method} {refused} time(s), audited {audited}"
            );
        }
        assert_eq!(
            auditor.verify().await?,
            None,
            "{service}: the chain is intact"
        );
    }
    Ok(())
}

const OTHER_HUB_KEY: &str = "worcs-other-hub-key-for-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_system_sees_only_what_it_sent_and_another_council_nothing_embedded()
-> anyhow::Result<()> {
    systems_and_councils_see_their_own(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_system_sees_only_what_it_sent_and_another_council_nothing_distributed()
-> anyhow::Result<()> {
    systems_and_councils_see_their_own(true).await
}

/// An upstream system sees the referrals it sent and their cases' status, nothing else; another
/// council's person and system see nothing of this council's, in any service.
async fn systems_and_councils_see_their_own(distributed: bool) -> anyhow::Result<()> {
    use eh_proto::casework::v1 as cw;
    use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
    use eh_proto::consent::v1::ListConsentRequest;
    use eh_proto::consent::v1::consent_service_client::ConsentServiceClient;
    use eh_proto::notifications::v1::ListMessagesRequest;
    use eh_proto::notifications::v1::notifications_service_client::NotificationsServiceClient;
    use eh_tests::with_token;
    let t = TestApp::spawn_configured(distributed, |s, _| {
        if let Some(worcs) = s.tenants.get_mut("worcs") {
            worcs.api_keys.push(eh_platform::config::ApiKeySettings {
                name: "other-hub".into(),
                sha256: eh_auth::Authenticator::hash_key(OTHER_HUB_KEY),
            });
        }
    })
    .await?;
    let mut intake = t.intake().await?;
    let submit = |reference: &str, system: &str, key: &str| {
        let mut doc = referral(reference, None);
        doc["source"]["system"] = serde_json::json!(system);
        if system != eh_tests::TEST_HUB {
            // Another family: its referral opens a case of its own.
            doc["children"] = serde_json::json!([{"given_name": "Kit", "family_name": "Other",
                "date_of_birth": "2016-05-04"}]);
            doc["family_members"] = serde_json::json!([{"given_name": "Jo", "family_name": "Other",
                "relationship": "mother", "parental_responsibility": true, "safe_to_contact": true}]);
            doc["consent"]["given_by"] = serde_json::json!("Jo Other");
        }
        let doc: eh_proto::intake::v1::Referral = serde_json::from_value(doc).expect("a referral");
        with_key(
            SubmitReferralRequest {
                tenant: "worcs".into(),
                referral: Some(doc),
            },
            key,
        )
    };
    let mine = intake
        .submit_referral(submit("MINE-1", eh_tests::TEST_HUB, WORCS_KEY))
        .await?
        .into_inner();
    // A system sends in its own name only: not as another system.
    let e = intake
        .submit_referral(submit("SPOOF-1", eh_tests::TEST_HUB, OTHER_HUB_KEY))
        .await
        .expect_err("in another system's name");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let theirs = intake
        .submit_referral(submit("THEIRS-1", "other-hub", OTHER_HUB_KEY))
        .await?
        .into_inner();
    assert_eq!(
        t.referral_count("worcs").await?,
        2,
        "the spoof stored nothing"
    );
    let get = |id: &str, tenant: &str, key: &str| {
        with_key(
            GetReferralRequest {
                tenant: tenant.into(),
                referral_id: id.into(),
            },
            key,
        )
    };
    let read = intake
        .get_referral(get(&mine.referral_id, "worcs", WORCS_KEY))
        .await?
        .into_inner();
    assert_eq!(read.referral_id, mine.referral_id);
    // Another system's referral of the same council is as absent as one that does not exist.
    let e = intake
        .get_referral(get(&theirs.referral_id, "worcs", WORCS_KEY))
        .await
        .expect_err("another system's referral");
    assert_eq!(e.code(), tonic::Code::NotFound);
    // Another council's system: refused on this council, nothing under its own.
    let e = intake
        .get_referral(get(&mine.referral_id, "worcs", STAFFS_KEY))
        .await
        .expect_err("another council");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = intake
        .get_referral(get(&mine.referral_id, "staffs", STAFFS_KEY))
        .await
        .expect_err("not under its own council");
    assert_eq!(e.code(), tonic::Code::NotFound);
    let trail = eh_auth::Auditor::new(t.db("intake").await?)
        .entries("worcs")
        .await?;
    let denied = |actor: &str, method: &str, record: &str| {
        trail
            .iter()
            .any(|e| e.0 == actor && e.1 == method && e.2 == record && e.3 == "denied")
    };
    assert!(denied("system:other-hub", "SubmitReferral", "referral:new"));
    let theirs_record = format!("referral:{}", theirs.referral_id);
    assert!(denied("system:test-hub", "GetReferral", &theirs_record));

    // Each referral opens a case; the front door sees both, whole.
    let front_door = t.token("worcs", "fd-1", &["front_door"]);
    let mut casework = CaseworkServiceClient::new(t.channel().await?);
    let list = |key: Option<&str>| {
        let msg = cw::ListCasesRequest {
            tenant: "worcs".into(),
            ..Default::default()
        };
        match key {
            Some(k) => with_key(msg, k),
            None => with_token(msg, &front_door),
        }
    };
    let cases = eh_testkit::eventually(
        std::time::Duration::from_secs(30),
        "both referrals' cases",
        || {
            let mut c = casework.clone();
            let r = list(None);
            async move {
                let cases = c.list_cases(r).await?.into_inner().cases;
                Ok((cases.len() == 2).then_some(cases))
            }
        },
    )
    .await?;
    let case_of = |referral_id: &str| {
        cases
            .iter()
            .find(|c| c.referral_id == referral_id)
            .cloned()
            .expect("its case")
    };
    let (my_case, their_case) = (case_of(&mine.referral_id), case_of(&theirs.referral_id));
    assert!(!my_case.family_id.is_empty() && !my_case.timeline.is_empty());
    // The system lists its own referral's case only, as its referral and status.
    let seen = casework
        .list_cases(list(Some(WORCS_KEY)))
        .await?
        .into_inner()
        .cases;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let seen = &seen[0];
    assert_eq!(seen.case_id, my_case.case_id);
    assert_eq!(seen.referral_id, mine.referral_id);
    assert!(!seen.state.is_empty());
    assert_eq!(seen.source_reference, "MINE-1");
    assert!(
        seen.family_id.is_empty()
            && seen.timeline.is_empty()
            && seen.timers.is_empty()
            && seen.lead_practitioner.is_empty(),
        "nothing of the family or the work: {seen:?}"
    );
    assert_eq!(seen.referral_ids, std::slice::from_ref(&mine.referral_id));
    let get_case = |id: &str, tenant: &str, key: &str| {
        with_key(
            cw::GetCaseRequest {
                tenant: tenant.into(),
                case_id: id.into(),
            },
            key,
        )
    };
    let one = casework
        .get_case(get_case(&my_case.case_id, "worcs", WORCS_KEY))
        .await?
        .into_inner();
    assert_eq!(
        (&one.case_id, &one.referral_id, &one.referral_ids),
        (&seen.case_id, &seen.referral_id, &seen.referral_ids)
    );
    assert!(one.family_id.is_empty() && one.timeline.is_empty() && one.timers.is_empty());
    let e = casework
        .get_case(get_case(&their_case.case_id, "worcs", WORCS_KEY))
        .await
        .expect_err("another system's case");
    assert_eq!(e.code(), tonic::Code::NotFound);
    let trail = eh_auth::Auditor::new(t.db("casework").await?)
        .entries("worcs")
        .await?;
    assert!(trail.iter().any(|e| e.0 == "system:test-hub"
        && e.1 == "GetCase"
        && e.2 == format!("case:{}", their_case.case_id)
        && e.3 == "denied"));
    // ... and never acts on its own.
    let e = casework
        .step_up(with_key(
            cw::StepUpRequest {
                tenant: "worcs".into(),
                case_id: my_case.case_id.clone(),
                reason: "x".into(),
            },
            WORCS_KEY,
        ))
        .await
        .expect_err("a system acts on no case");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    // Another council's staff, holding every role: refused on this council's case, its family's
    // consent and its messages; under their own council, none of it is there.
    let every_role = [
        "front_door",
        "team_manager",
        "practitioner",
        "social_worker",
        "business_support",
    ];
    let stranger = t.token("staffs", "s-1", &every_role);
    for tenant in ["worcs", "staffs"] {
        let want = if tenant == "worcs" {
            tonic::Code::PermissionDenied
        } else {
            tonic::Code::NotFound
        };
        let e = casework
            .get_case(with_token(
                cw::GetCaseRequest {
                    tenant: tenant.into(),
                    case_id: my_case.case_id.clone(),
                },
                &stranger,
            ))
            .await
            .expect_err("another council's case");
        assert_eq!(e.code(), want, "GetCase under {tenant}");
        let e = intake
            .get_referral(with_token(
                GetReferralRequest {
                    tenant: tenant.into(),
                    referral_id: mine.referral_id.clone(),
                },
                &stranger,
            ))
            .await
            .expect_err("another council's referral");
        assert_eq!(e.code(), want, "GetReferral under {tenant}");
    }
    let mut consent = ConsentServiceClient::new(t.channel().await?);
    let consent_of = |tenant: &str, token: &str| {
        with_token(
            ListConsentRequest {
                tenant: tenant.into(),
                family_id: my_case.family_id.clone(),
            },
            token,
        )
    };
    let e = consent
        .list_consent(consent_of("worcs", &stranger))
        .await
        .expect_err("another council's family");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let theirs_seen = consent
        .list_consent(consent_of("staffs", &stranger))
        .await?
        .into_inner();
    assert!(theirs_seen.records.is_empty() && theirs_seen.overrides.is_empty());
    let mut notifications = NotificationsServiceClient::new(t.channel().await?);
    let messages_of = |tenant: &str, token: &str| {
        with_token(
            ListMessagesRequest {
                tenant: tenant.into(),
                related_id: mine.referral_id.clone(),
            },
            token,
        )
    };
    let e = notifications
        .list_messages(messages_of("worcs", &stranger))
        .await
        .expect_err("another council's messages");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert!(
        notifications
            .list_messages(messages_of("staffs", &stranger))
            .await?
            .into_inner()
            .messages
            .is_empty()
    );
    // Nor does an upstream system read a family's consent or messages, even of its own referral.
    for e in [
        consent
            .list_consent(with_key(
                ListConsentRequest {
                    tenant: "worcs".into(),
                    family_id: my_case.family_id.clone(),
                },
                WORCS_KEY,
            ))
            .await
            .expect_err("a system reads no consent"),
        notifications
            .list_messages(with_key(
                ListMessagesRequest {
                    tenant: "worcs".into(),
                    related_id: mine.referral_id.clone(),
                },
                WORCS_KEY,
            ))
            .await
            .expect_err("a system reads no messages"),
    ] {
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
    }
    // The council's own practitioner does read the family's consent.
    let practitioner = t.token("worcs", "p-1", &["practitioner"]);
    consent
        .list_consent(consent_of("worcs", &practitioner))
        .await?;
    Ok(())
}
