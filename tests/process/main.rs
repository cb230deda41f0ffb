//! The real `earlyhelp` binary as a process: SIGTERM under load exits 0 with no half-handled work.
use eh_proto::intake::v1::SubmitReferralRequest;
use eh_proto::intake::v1::intake_service_client::IntakeServiceClient;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn spawn(dir: &std::path::Path, grpc: u16, http: u16) -> std::io::Result<Child> {
    Command::new(env!("CARGO_BIN_EXE_earlyhelp"))
        .args(["run", "--target", "all"])
        .env("EH__DATA_DIR", dir)
        .env("EH__SERVER__GRPC_ADDR", format!("127.0.0.1:{grpc}"))
        .env("EH__SERVER__HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("EH__SERVER__SHUTDOWN_GRACE_SECS", "20")
        .env("EH__TELEMETRY__LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

async fn ready(http: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", http)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await?;
            let mut buf = String::new();
            s.read_to_string(&mut buf).await?;
            if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("never ready")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_zero_and_leaves_nothing_half_done() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (grpc, http) = (free_port(), free_port());
    let mut child = spawn(dir.path(), grpc, http)?;
    ready(http).await?;
    let issuer =
        eh_auth::demo::DemoIssuer::load_or_create(dir.path()).map_err(anyhow::Error::msg)?;
    let token = issuer
        .mint("load-tester", &["practitioner"], "education", 600)
        .map_err(anyhow::Error::msg)?;
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc}"))?
        .connect()
        .await?;

    // Eight clients submit continuously; SIGTERM lands in the middle.
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (channel, token, accepted) = (channel.clone(), token.clone(), accepted.clone());
        clients.push(tokio::spawn(async move {
            let mut client = IntakeServiceClient::new(channel);
            for i in 0..1000 {
                let doc =
                    earlyhelp::demo::example(&format!("SIG-{c}-{i}"), Some("ref@school.example"));
                let Ok(referral) = serde_json::from_value(doc) else {
                    return;
                };
                let mut req = tonic::Request::new(SubmitReferralRequest {
                    tenant: "demo".into(),
                    referral: Some(referral),
                });
                req.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {token}").parse().expect("ascii"),
                );
                match client.submit_referral(req).await {
                    Ok(r) => accepted
                        .lock()
                        .expect("lock")
                        .push(r.into_inner().referral_id),
                    Err(_) => return, // the server is going away
                }
            }
        }));
    }
    while accepted.lock().expect("lock").len() < 60 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await??;
    for c in clients {
        let _ = c.await;
    }
    assert!(exit.success(), "exit status {exit:?}");
    let accepted = accepted.lock().expect("lock").clone();

    // Every accepted referral is stored, its event published and its acknowledgement recorded once.
    let intake = eh_store::connect(&eh_store::Location {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("intake.sqlite").display()
        ),
        schema: None,
        max_connections: 1,
    })
    .await?;
    for id in &accepted {
        assert!(
            eh_intake::store::get(&intake, "demo", id).await?.is_some(),
            "accepted referral {id} is stored"
        );
    }
    let q = |db: &sea_orm::DatabaseConnection, sql: &str| {
        let db = db.clone();
        let sql = sql.to_string();
        async move {
            let row = sea_orm::ConnectionTrait::query_one_raw(
                &db,
                eh_store::stmt(db.get_database_backend(), &sql, []),
            )
            .await?
            .ok_or_else(|| anyhow::anyhow!("no row"))?;
            Ok::<i64, anyhow::Error>(row.try_get_by_index::<i64>(0)?)
        }
    };
    let stored = q(&intake, "SELECT COUNT(*) FROM referrals").await?;
    assert!(stored >= accepted.len() as i64);
    assert_eq!(
        q(
            &intake,
            "SELECT COUNT(*) FROM eh_outbox WHERE published_at IS NULL"
        )
        .await?,
        0,
        "outbox flushed at shutdown"
    );

    // Restart: whatever was in flight on the bus is finished, once.
    let mut child = spawn(dir.path(), grpc, http)?;
    ready(http).await?;
    let notifications = eh_store::connect(&eh_store::Location {
        url: format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("notifications.sqlite").display()
        ),
        schema: None,
        max_connections: 1,
    })
    .await?;
    let mut messages = 0;
    for _ in 0..300 {
        messages = q(
            &notifications,
            "SELECT COUNT(*) FROM messages WHERE template = 'referral_acknowledgement'",
        )
        .await?;
        if messages == stored {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        messages, stored,
        "one acknowledgement per stored referral, none twice"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(
        tokio::task::spawn_blocking(move || child.wait())
            .await??
            .success()
    );
    Ok(())
}

fn earlyhelp(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::io::Result<std::process::Output> {
    let mut c = Command::new(env!("CARGO_BIN_EXE_earlyhelp"));
    c.args(args)
        .current_dir(dir)
        .env("EH__DATA_DIR", dir)
        .env("EH__TELEMETRY__LOG_LEVEL", "error");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
}

#[test]
fn a_bad_config_value_stops_the_process_naming_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = earlyhelp(
        dir.path(),
        &["run"],
        &[("EH__SERVER__SHUTDOWN_GRACE_SECS", "soon")],
    )?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shutdown_grace_secs"), "{err}");
    let out = earlyhelp(dir.path(), &["run"], &[("EH__MODE", "distributed")])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("database.url"));
    Ok(())
}

#[test]
fn config_print_masks_secrets() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = earlyhelp(
        dir.path(),
        &["config", "print"],
        &[
            ("EH__SMTP__PASSWORD", "hunter2-secret"),
            ("EH__SMTP__HOST", "smtp.example"),
            (
                "EH__DATABASE__URL",
                "postgres://earlyhelp:pg-secret-4e1@db:5432/earlyhelp",
            ),
            ("EH__BUS__NATS_URL", "nats://svc:nats-secret-9b2@nats:4222"),
        ],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for secret in ["hunter2-secret", "pg-secret-4e1", "nats-secret-9b2"] {
        assert!(!text.contains(secret), "{secret}: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(v["smtp"]["password"], "********");
    assert_eq!(
        v["database"]["url"],
        "postgres://earlyhelp:********@db:5432/earlyhelp"
    );
    assert_eq!(v["bus"]["nats_url"], "nats://svc:********@nats:4222");
    assert_eq!(v["smtp"]["host"], "smtp.example");
    assert_eq!(v["mode"], "embedded");
    assert_eq!(v["tenants"]["demo"]["name"], "Demo Borough Council");
    Ok(())
}

#[test]
fn migrate_applies_once_then_finds_nothing_to_do() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = earlyhelp(dir.path(), &["migrate"], &[])?;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let text = String::from_utf8_lossy(&first.stdout);
    for (service, n) in [
        ("intake", eh_intake::migrations().len()),
        ("casework", eh_casework::migrations().len()),
    ] {
        assert!(
            text.contains(&format!("{service}: {n} migration(s) applied")),
            "{text}"
        );
    }
    let again = earlyhelp(dir.path(), &["migrate", "--target", "intake,consent"], &[])?;
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains("intake: 0 migration(s) applied")
            && text.contains("consent: 0 migration(s) applied"),
        "{text}"
    );
    let unknown = earlyhelp(dir.path(), &["migrate", "--target", "nosuch"], &[])?;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown target"));
    Ok(())
}

/// An operator lists the dead letters with their reasons, replays one to its original subject and
/// discards another, through the binary; both are written to intake's audit trail first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_replay_and_discard_from_the_command_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bus: std::sync::Arc<dyn eh_bus::Transport> = std::sync::Arc::new(
        eh_bus::embedded::EmbeddedTransport::open(
            eh_store::connect(&eh_testkit::sqlite(dir.path(), "bus.sqlite")).await?,
        )
        .await?,
    );
    for (id, seq) in [("cmd-1", 1), ("cmd-2", 2)] {
        let poisoned = eh_bus::Received {
            subject: "eh.demo.intake.cmd.screen_referral".into(),
            headers: [("Eh-Id".to_string(), id.to_string())].into(),
            payload: b"not a command".to_vec().into(),
            delivered: 5,
            stream_seq: seq,
        };
        eh_bus::dlq::park(
            bus.as_ref(),
            "eh",
            "intake_screen_referral",
            &poisoned,
            "not a ScreenReferral: invalid wire type",
        )
        .await?;
    }
    let out = earlyhelp(dir.path(), &["dlq", "list"], &[])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["consumer"], "intake_screen_referral");
    assert_eq!(lines[0]["subject"], "eh.demo.intake.cmd.screen_referral");
    assert_eq!(lines[0]["attempts"], 5);
    assert!(
        lines[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not a ScreenReferral"))
    );
    let seq = lines[0]["seq"].as_u64().expect("seq").to_string();
    let other = lines[1]["seq"].as_u64().expect("seq").to_string();
    // Intake's audit trail must exist first (the chart's migration job makes it).
    let refused = earlyhelp(dir.path(), &["dlq", "replay", &seq, "--by", "alice"], &[])?;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("earlyhelp migrate --target intake"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = earlyhelp(dir.path(), &["migrate", "--target", "intake"], &[])?;
    assert!(out.status.success());
    let out = earlyhelp(
        dir.path(),
        &["dlq", "replay", &seq, "--reason", "screening fixed"],
        &[("EH_OPERATOR", "alice")],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("eh.demo.intake.cmd.screen_referral"));
    // Discard needs a reason.
    let out = earlyhelp(dir.path(), &["dlq", "discard", &other, "--by", "bob"], &[])?;
    assert!(!out.status.success());
    let out = earlyhelp(
        dir.path(),
        &[
            "dlq",
            "discard",
            &other,
            "--by",
            "bob",
            "--reason",
            "handled by hand",
        ],
        &[],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("discarded {other}")));
    // Gone from the dead letters; the replayed one back on its subject with its payload.
    let out = earlyhelp(dir.path(), &["dlq", "list"], &[])?;
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
    let back = bus
        .list(&eh_bus::subjects::service_stream("eh", "intake"), 10)
        .await?;
    assert!(
        back.iter()
            .any(|m| m.subject == "eh.demo.intake.cmd.screen_referral"
                && m.payload == b"not a command"
                && m.headers.get("Eh-Id").map(String::as_str) == Some("cmd-1")),
        "{back:?}"
    );
    assert!(
        !back
            .iter()
            .any(|m| m.headers.get("Eh-Id").map(String::as_str) == Some("cmd-2")),
        "{back:?}"
    );
    // Both in intake's audit trail, under the council of the subject.
    let audit = eh_auth::Auditor::new(
        eh_store::connect(&eh_testkit::sqlite(dir.path(), "intake.sqlite")).await?,
    );
    let entries = audit.entries("demo").await?;
    let summary: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|(actor, action, record, _, _)| (actor.as_str(), action.as_str(), record.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (
                "operator:alice",
                "dlq.replay",
                "dead_letter:intake_screen_referral:cmd-1"
            ),
            (
                "operator:bob",
                "dlq.discard",
                "dead_letter:intake_screen_referral:cmd-2"
            ),
        ]
    );
    assert!(entries[1].4.ends_with(": handled by hand"), "{entries:?}");
    let missing = earlyhelp(
        dir.path(),
        &["dlq", "replay", "999999", "--by", "alice"],
        &[],
    )?;
    assert!(!missing.status.success());
    Ok(())
}

/// An operator lists a council's webhook deliveries and replays a dead one through the binary
/// (audited in casework's trail first); a delivery that is not dead, an unknown id and an unknown
/// council are refused with a non-zero exit, nothing changed. The output holds no body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_list_and_replay_from_the_command_line() -> anyhow::Result<()> {
    use eh_gateway::webhook::store;
    let dir = tempfile::tempdir()?;
    // A command that must succeed: its output.
    let ok = |args: &[&str], env: &[(&str, &str)]| {
        let out = earlyhelp(dir.path(), args, env).expect("run");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}: {err}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    ok(&["migrate", "--target", "gateway,casework"], &[]);
    // Two deliveries to the demo council's hub: the first dead after its one attempt.
    let db = eh_store::connect(&eh_testkit::sqlite(dir.path(), "gateway.sqlite")).await?;
    let now = chrono::Utc::now();
    for id in ["wh-1", "wh-2"] {
        let body = r#"{"type":"case.status_changed","data":{"status":"received","source_reference":"PRIVATE-REF"}}"#;
        store::insert(
            &db,
            "demo",
            &store::NewDelivery {
                id,
                system: "demo-hub",
                case_id: "case-1",
                referral_id: "referral-1",
                event_type: "case.status_changed",
                payload: body,
            },
            now,
        )
        .await?;
    }
    let d = store::oldest_pending(&db, "demo", "demo-hub")
        .await?
        .expect("pending");
    assert!(store::claim(&db, &d, now).await?);
    store::settle(&db, "demo", &d.id, 1, Err(("answered HTTP 500", None)), now).await?;
    db.close().await?;
    let list = |status: Option<&'static str>| {
        let mut args = vec!["webhook", "list", "--tenant", "demo"];
        args.extend(status.map(|s| ["--status", s]).into_iter().flatten());
        let text = ok(&args, &[]);
        assert!(!text.contains("PRIVATE-REF"), "no body: {text}");
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .map(|v| {
                (
                    v["id"].as_str().unwrap_or_default().to_string(),
                    v["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let pair = |id: &str, status: &str| (id.to_string(), status.to_string());
    assert_eq!(list(None), [pair("wh-1", "dead"), pair("wh-2", "pending")]);
    assert_eq!(list(Some("dead")), [pair("wh-1", "dead")]);
    // Refused, non-zero, nothing changed.
    for (args, says) in [
        (vec!["wh-2", "--tenant", "demo"], "is pending, not dead"),
        (
            vec!["wh-404", "--tenant", "demo"],
            "holds no webhook delivery",
        ),
        (vec!["wh-1", "--tenant", "elsewhere"], "no council"),
    ] {
        let mut all = vec!["webhook", "replay", "--by", "alice"];
        all.extend(args);
        let out = earlyhelp(dir.path(), &all, &[])?;
        assert!(!out.status.success(), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{all:?}: {err}");
    }
    let out = earlyhelp(
        dir.path(),
        &["webhook", "list", "--tenant", "demo", "--status", "lost"],
        &[],
    )?;
    assert!(!out.status.success());
    assert_eq!(list(None), [pair("wh-1", "dead"), pair("wh-2", "pending")]);
    // Replayed: pending again, audited.
    let said = ok(
        &[
            "webhook",
            "replay",
            "wh-1",
            "--tenant",
            "demo",
            "--reason",
            "hub fixed",
        ],
        &[("EH_OPERATOR", "alice")],
    );
    assert!(said.contains("replayed wh-1"), "{said}");
    assert_eq!(
        list(None),
        [pair("wh-1", "pending"), pair("wh-2", "pending")]
    );
    // In the gateway's own audit trail, under the council.
    let trail = eh_store::connect(&eh_testkit::sqlite(dir.path(), "gateway.sqlite")).await?;
    let entries = eh_auth::Auditor::new(trail).entries("demo").await?;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (actor, action, record, _, reason) = &entries[0];
    assert_eq!(
        [actor.as_str(), action.as_str(), record.as_str()],
        [
            "operator:alice",
            "webhook.replay",
            "webhook_delivery:demo-hub:wh-1"
        ]
    );
    assert!(reason.ends_with(": hub fixed"), "{reason}");
    Ok(())
}

/// After a (pretended) broker loss an operator re-publishes a time range through the binary; the
/// running services publish it again, and the repeat is absorbed (the bus drops an id it holds;
/// past that, the consumers' inboxes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_from_the_command_line_is_absorbed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (grpc, http) = (free_port(), free_port());
    let mut child = spawn(dir.path(), grpc, http)?;
    ready(http).await?;
    let bus: std::sync::Arc<dyn eh_bus::Transport> = std::sync::Arc::new(
        eh_bus::embedded::EmbeddedTransport::open(
            eh_store::connect(&eh_testkit::sqlite(dir.path(), "bus.sqlite")).await?,
        )
        .await?,
    );
    let before = chrono::Utc::now();
    bus.publish(&eh_bus::OutboundMessage {
        msg_id: "rp-1".into(),
        subject: "eh.demo.inbound.referral".into(),
        headers: Default::default(),
        payload: serde_json::to_vec(&earlyhelp::demo::example("RP-1", Some("rp@school.example")))?,
    })
    .await?;
    let intake = eh_store::connect(&eh_testkit::sqlite(dir.path(), "intake.sqlite")).await?;
    let notifications =
        eh_store::connect(&eh_testkit::sqlite(dir.path(), "notifications.sqlite")).await?;
    let count = |db: &sea_orm::DatabaseConnection, sql: &'static str| {
        let db = db.clone();
        async move {
            let row = sea_orm::ConnectionTrait::query_one_raw(
                &db,
                eh_store::stmt(db.get_database_backend(), sql, []),
            )
            .await?;
            Ok::<i64, anyhow::Error>(row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0))
        }
    };
    let acks = "SELECT COUNT(*) FROM messages WHERE template = 'referral_acknowledgement'";
    for _ in 0..300 {
        if count(&notifications, acks).await? == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&notifications, acks).await?, 1);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(
        tokio::task::spawn_blocking(move || child.wait())
            .await??
            .success()
    );
    // Counted once the process has stopped (intake keeps publishing until then, e.g. the
    // screening decision).
    let published = "SELECT COUNT(*) FROM eh_outbox WHERE published_at IS NOT NULL";
    let events = count(&intake, published).await?;
    assert!(events >= 1);

    let from = before.to_rfc3339();
    let to = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let out = earlyhelp(
        dir.path(),
        &[
            "republish",
            "--service",
            "intake",
            "--from",
            &from,
            "--to",
            &to,
        ],
        &[],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&format!("{events} event(s) of intake")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        count(&intake, published).await?,
        0,
        "marked for re-publishing"
    );

    // Running again, the services publish the range anew; nothing is handled twice.
    let mut child = spawn(dir.path(), grpc, http)?;
    ready(http).await?;
    // (Work left in flight at the stop may add events of its own once running again.)
    let unpublished = "SELECT COUNT(*) FROM eh_outbox WHERE published_at IS NULL";
    for _ in 0..300 {
        if count(&intake, published).await? >= events && count(&intake, unpublished).await? == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(count(&intake, published).await? >= events, "re-published");
    assert_eq!(count(&intake, unpublished).await?, 0, "re-published");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        count(&notifications, acks).await?,
        1,
        "still one acknowledgement"
    );
    assert_eq!(count(&intake, "SELECT COUNT(*) FROM referrals").await?, 1);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(
        tokio::task::spawn_blocking(move || child.wait())
            .await??
            .success()
    );
    Ok(())
}

/// One exported span: (name, trace id, the resource's service.name).
type ExportedSpan = (String, Vec<u8>, String);

/// What an OTLP/gRPC collector receives, for the test to read.
#[derive(Clone, Default)]
struct Collector {
    spans: std::sync::Arc<std::sync::Mutex<Vec<ExportedSpan>>>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Collector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut spans = self.spans.lock().expect("lock");
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{v:?}"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((span.name, span.trace_id, service.clone()));
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// With an OTLP endpoint configured, the process exports its spans over OTLP/gRPC, and one
/// referral's hops — intake taking it, the services that consume its event — share one trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_as_one_trace_per_referral() -> anyhow::Result<()> {
    let collector = Collector::default();
    let otlp = free_port();
    let server = tonic::transport::Server::builder()
        .add_service(
            opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(
                collector.clone(),
            ),
        )
        .serve(([127, 0, 0, 1], otlp).into());
    tokio::spawn(server);
    let dir = tempfile::tempdir()?;
    let (grpc, http) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_earlyhelp"))
        .args(["run", "--target", "all"])
        .env("EH__DATA_DIR", dir.path())
        .env("EH__SERVER__GRPC_ADDR", format!("127.0.0.1:{grpc}"))
        .env("EH__SERVER__HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("EH__TELEMETRY__LOG_LEVEL", "warn")
        .env(
            "EH__TELEMETRY__OTLP_ENDPOINT",
            format!("http://127.0.0.1:{otlp}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    ready(http).await?;
    let bus: std::sync::Arc<dyn eh_bus::Transport> = std::sync::Arc::new(
        eh_bus::embedded::EmbeddedTransport::open(
            eh_store::connect(&eh_testkit::sqlite(dir.path(), "bus.sqlite")).await?,
        )
        .await?,
    );
    bus.publish(&eh_bus::OutboundMessage {
        msg_id: "otel-1".into(),
        subject: "eh.demo.inbound.referral".into(),
        headers: Default::default(),
        payload: serde_json::to_vec(&earlyhelp::demo::example(
            "OTEL-1",
            Some("o@school.example"),
        ))?,
    })
    .await?;
    // Wait until the acknowledgement's consumer span has been exported.
    let mut trace = None;
    for _ in 0..300 {
        {
            let spans = collector.spans.lock().expect("lock");
            let inbound = spans.iter().find(|s| s.0.contains("inbound.referral"));
            let ack = spans
                .iter()
                .find(|s| s.0.contains("intake.referral_received process"));
            if let (Some(a), Some(b)) = (inbound, ack) {
                trace = Some((a.1.clone(), b.1.clone(), a.2.clone()));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(
        tokio::task::spawn_blocking(move || child.wait())
            .await??
            .success()
    );
    let names: Vec<String> = collector
        .spans
        .lock()
        .expect("lock")
        .iter()
        .map(|s| s.0.clone())
        .collect();
    let (intake, consumer, service) =
        trace.ok_or_else(|| anyhow::anyhow!("spans not exported; got {names:?}"))?;
    assert_eq!(intake.len(), 16, "a W3C trace id");
    assert_eq!(
        intake, consumer,
        "intake and its event's consumers share one trace"
    );
    assert!(service.contains("earlyhelp"), "{service}");
    Ok(())
}

/// Distributed mode as production runs it: `earlyhelp migrate` as the database's owner
/// (`database.migrate_url`, the chart's migration Job), then the services as a role that owns
/// nothing: they become ready, connected as that role alone, the tables still the owner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_migrations_run_as_the_owner_and_services_as_a_role_that_owns_nothing()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (owner, service) = eh_testkit::fresh_database_split().await?;
    let (grpc, http) = (free_port(), free_port());
    let env: Vec<(String, String)> = [
        ("EH__MODE", "distributed".to_string()),
        ("EH__DATABASE__URL", service.clone()),
        ("EH__DATABASE__MIGRATE_ON_START", "false".into()),
        ("EH__BUS__NATS_URL", eh_testkit::nats_url()?),
        ("EH__BUS__NAMESPACE", eh_testkit::namespace()),
        ("EH__AUDIT__HMAC_KEY", eh_testkit::AUDIT_KEY.into()),
        (
            "EH__TENANTS__WORCS__NAME",
            "Worcestershire County Council".into(),
        ),
        ("EH__DATA_DIR", dir.path().display().to_string()),
        ("EH__SERVER__GRPC_ADDR", format!("127.0.0.1:{grpc}")),
        ("EH__SERVER__HTTP_ADDR", format!("127.0.0.1:{http}")),
        ("EH__TELEMETRY__LOG_LEVEL", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_earlyhelp"));
    let migrated = eh_testkit::migrate_as_owner(&bin, &[], &env, &owner)?;
    assert!(migrated.contains("casework: "), "{migrated}");
    let mut p = eh_testkit::ServiceProcess::spawn(
        "intake+consent+casework",
        &bin,
        &["run", "--target", "intake,consent,casework"],
        &env,
        &dir.path().join("run.log"),
    )?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !eh_testkit::http_ready(http).await {
        if let Some(status) = p.exited() {
            anyhow::bail!("exited at start ({status}):\n{}", p.log_tail(30));
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "never ready:\n{}",
            p.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin = eh_testkit::postgres_admin_url()?;
    let (sessions, owners) = eh_testkit::database_roles(&admin, &service).await?;
    assert_eq!(owners, [eh_testkit::OWNER_ROLE.to_string()].into());
    assert_eq!(sessions, [eh_testkit::APP_ROLE.to_string()].into());
    let ended = p.terminate(Duration::from_secs(30)).await?;
    assert!(ended.is_some_and(|s| s.success()), "{ended:?}");
    Ok(())
}

/// `earlyhelp sar` against the running binary: a team manager's token gets the person's report
/// as JSON (naming the child) and as the readable HTML document; a practitioner's is refused with
/// PERMISSION_DENIED and a non-zero exit, as is an unknown format, and a person records does not
/// know is NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_access_from_the_command_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (grpc, http) = (free_port(), free_port());
    let mut child = spawn(dir.path(), grpc, http)?;
    let outcome = async {
        ready(http).await?;
        let issuer =
            eh_auth::demo::DemoIssuer::load_or_create(dir.path()).map_err(anyhow::Error::msg)?;
        let practitioner = issuer
            .mint("p-1", &["practitioner"], "education", 600)
            .map_err(anyhow::Error::msg)?;
        let manager = issuer
            .mint("tm-1", &["team_manager"], "early_help", 600)
            .map_err(anyhow::Error::msg)?;
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc}"))?
            .connect()
            .await?;
        let doc = earlyhelp::demo::example("SAR-CLI-1", Some("ref@school.example"));
        let nhs = doc["children"][0]["nhs_number"]
            .as_str()
            .expect("the example child's NHS number")
            .to_string();
        let mut req = tonic::Request::new(SubmitReferralRequest {
            tenant: "demo".into(),
            referral: Some(serde_json::from_value(doc)?),
        });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {practitioner}").parse()?);
        IntakeServiceClient::new(channel)
            .submit_referral(req)
            .await?;
        let intake = eh_store::connect(&eh_store::Location {
            url: format!(
                "sqlite://{}?mode=ro",
                dir.path().join("intake.sqlite").display()
            ),
            schema: None,
            max_connections: 1,
        })
        .await?;
        let person: String =
            eh_testkit::eventually(Duration::from_secs(30), "the child stored", || async {
                use sea_orm::ConnectionTrait;
                Ok(intake
                    .query_one_raw(eh_store::stmt(
                        intake.get_database_backend(),
                        "SELECT id FROM people WHERE nhs_number = $1",
                        [nhs.clone().into()],
                    ))
                    .await?
                    .map(|r| r.try_get_by_index::<String>(0))
                    .transpose()?)
            })
            .await?;
        let grpc_url = format!("http://127.0.0.1:{grpc}");
        let sar = |token: &str, person: &str, format: &str| {
            earlyhelp(
                dir.path(),
                &[
                    "sar", "--tenant", "demo", "--person", person, "--format", format, "--grpc",
                    &grpc_url,
                ],
                &[("EH_TOKEN", token)],
            )
        };
        // Records learns of the child from the bus: asked until it knows him.
        let mut report = None;
        for _ in 0..100 {
            let out = sar(&manager, &person, "json")?;
            if out.status.success() {
                report = Some(out);
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            anyhow::ensure!(err.contains("NotFound"), "refused: {err}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let report = report.ok_or_else(|| anyhow::anyhow!("records never knew the child"))?;
        let json: serde_json::Value = serde_json::from_slice(&report.stdout)?;
        let text = json.to_string();
        assert!(text.contains(&person), "the report names its subject");
        assert!(text.contains(&nhs), "the report holds the child's record");
        let html = sar(&manager, &person, "html")?;
        assert!(html.status.success());
        let html = String::from_utf8_lossy(&html.stdout);
        assert!(html.contains("<html") && html.contains("Leo"), "{html}");
        // Refusals: a non-zero exit naming why, nothing on stdout.
        for (token, person, format, why) in [
            (&practitioner, person.as_str(), "json", "PermissionDenied"),
            (&manager, "no-such-person", "json", "NotFound"),
            (&manager, person.as_str(), "pdf", "--format"),
        ] {
            let out = sar(token, person, format)?;
            assert!(!out.status.success(), "{why}: exit 0");
            assert!(out.stdout.is_empty(), "{why}: printed a report");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(why), "{why}: {err}");
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    outcome
}
