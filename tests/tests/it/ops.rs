//! What an operator relies on: readiness that tells the truth about dependencies, gRPC health
//! and reflection, Prometheus metrics.
use std::time::Duration;

async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, buf))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_not_ready_while_nats_is_down_and_becomes_ready_when_it_returns()
-> anyhow::Result<()> {
    let mut nats = eh_testkit::NatsServer::start()?;
    nats.kill();
    let dir = tempfile::tempdir()?;
    let smtp = eh_testkit::SmtpSink::start()?;
    let settings = eh_tests::test_settings(true, dir.path(), smtp.port, Some(nats.url())).await?;
    let mut opts = earlyhelp::AppOptions::new(settings, earlyhelp::Target::ALL.to_vec());
    opts.http_listener = Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    opts.grpc_listener = Some(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    let app = earlyhelp::App::start(opts).await?;
    // Alive, not ready, and saying why.
    assert_eq!(http_get(app.http_addr, "/healthz").await?.0, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, body) = http_get(app.http_addr, "/readyz").await?;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("bus"), "{body}");
    nats.restart()?;
    app.wait_ready(Duration::from_secs(30)).await?;
    assert_eq!(http_get(app.http_addr, "/readyz").await?.0, 200);
    app.shutdown();
    app.stopped().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_reflection_and_metrics_are_served() -> anyhow::Result<()> {
    let t = eh_tests::TestApp::spawn(false).await?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", t.app().grpc_addr))?
        .connect()
        .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in [
        "",
        "earlyhelp.intake.v1.IntakeService",
        "earlyhelp.notifications.v1.NotificationsService",
    ] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    // Reflection lists the APIs.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await?
        .into_inner();
    let resp = stream.message().await?.and_then(|r| r.message_response);
    let Some(MessageResponse::ListServicesResponse(list)) = resp else {
        anyhow::bail!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"earlyhelp.intake.v1.IntakeService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    // Metrics in the Prometheus text format, counting real work.
    t.publish_inbound(
        "worcs",
        serde_json::to_vec(&eh_tests::referral("M-1", Some("m@x.example")))?,
        "m-1",
    )
    .await?;
    t.smtp.wait_for(1, Duration::from_secs(20)).await?;
    let (code, body) = http_get(t.app().http_addr, "/metrics").await?;
    assert_eq!(code, 200);
    assert!(
        body.contains(
            r#"earlyhelp_messages_handled_total{consumer="intake_inbound_referral",outcome="ok"} 1"#
        ),
        "{body}"
    );
    assert!(body.contains("earlyhelp_handler_seconds_bucket"), "{body}");
    assert!(
        body.contains(r#"earlyhelp_outbox_published_total{service="intake"}"#),
        "{body}"
    );
    Ok(())
}
