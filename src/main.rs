//! `earlyhelp`: run the platform, migrate, inspect config, verify the audit trails, operate dead
//! letters and dead webhook deliveries, run the demo.
use anyhow::Context;
use clap::{Parser, Subcommand};
use earlyhelp::dlq::Action;
use earlyhelp::{App, AppOptions, Target};
use eh_platform::Settings;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "earlyhelp",
    version,
    about = "Early Help for children and families: every service in one binary.",
    long_about = "Early Help for children and families: every service in one binary.\n\n\
    Configuration: built-in defaults < --config FILE (TOML, YAML or JSON) < environment EH__SECTION__KEY\n\
    (e.g. EH__MODE=distributed, EH__DATABASE__URL=postgres://…). With no configuration at all it runs\n\
    in embedded mode (SQLite files under ./data, in-process bus) with a demo council."
)]
struct Cli {
    /// Configuration file (TOML, YAML or JSON); repeat to layer several, later ones winning.
    #[arg(long, global = true)]
    config: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run services until SIGTERM/Ctrl-C: `--target all` (default) or a comma-separated list of
    /// services.
    Run {
        #[arg(long, default_value = "all", help = target_help())]
        target: String,
    },
    /// Apply every pending database migration of the targets, then exit.
    Migrate {
        #[arg(long, default_value = "all", help = target_help())]
        target: String,
    },
    /// Print the name of every service this binary runs, one a line (the chart's target list is
    /// checked against it).
    Targets,
    /// Show configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check the audit trails: each council's chain recomputed with the audit key.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Operate on dead-lettered messages.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Operate on the gateway's webhook deliveries (a dead one: replay or discard).
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Re-publish a service's events published in a time range (after a broker loss).
    /// Consumers' inboxes absorb the repeats.
    Republish {
        #[arg(long)]
        service: String,
        /// RFC 3339 start (inclusive).
        #[arg(long)]
        from: String,
        /// RFC 3339 end (exclusive).
        #[arg(long)]
        to: String,
    },
    /// Run the platform with the demo council, submit example referrals and print what happened.
    Demo {
        /// Stop after printing instead of running on.
        #[arg(long)]
        exit: bool,
    },
    /// Mint a demo practitioner token (demo mode only), for grpcurl and the like.
    Token {
        #[arg(long, default_value = "demo-practitioner")]
        sub: String,
        #[arg(long, default_value = "practitioner")]
        roles: String,
        #[arg(long, default_value = "education")]
        agency: String,
    },
    /// Print the NATS accounts (`accounts.conf`) that keep councils apart on the bus: the
    /// platform's services' users, each allowed exactly its subjects, and an account per council
    /// whose upstream systems may publish only that council's inbound subjects.
    NatsConfig {
        /// These councils (comma-separated ids) instead of the settings' `tenants`.
        #[arg(long)]
        tenants: Option<String>,
    },
    /// Print the rights table the Helm chart renders the NATS accounts from
    /// (`charts/earlyhelp/files/nats-rights.json`): those accounts with the namespace and the
    /// council as placeholders.
    NatsRights,
    /// Print the AsyncAPI document of every subject, its payload, publisher and consumers.
    Asyncapi,
    /// Print the OpenAPI 3.1 document of the public HTTP API (the gateway's).
    Openapi,
    /// A subject access request: everything every service holds about one person (records'
    /// `SubjectAccess`, as the token's team manager or information governance officer; audited),
    /// printed as JSON or as a readable HTML document with third parties' information marked.
    Sar {
        #[arg(long)]
        tenant: String,
        /// The person's id (intake's).
        #[arg(long)]
        person: String,
        #[arg(long, default_value = "json")]
        format: String,
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        grpc: String,
        /// The caller's bearer token.
        #[arg(long, env = "EH_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Exit 0 when the gRPC server at --grpc reports SERVING (for probes and `helm test`).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        grpc: String,
        /// A service name; the whole server when empty.
        #[arg(long, default_value = "")]
        service: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, secrets masked.
    Print,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Sign the head of each council's audit chain of each service (or of one) and keep it
    /// outside the database now (a running process does so every 5 minutes): the JetStream
    /// stream `<NS>_AUDIT` in distributed mode, `data_dir/audit-checkpoints.jsonl` in embedded.
    Checkpoint {
        /// One service (default: every service with an audit trail).
        #[arg(long)]
        service: Option<String>,
    },
    /// Recompute each council's audit chain with the key (`audit.hmac_key`) and report, per
    /// service and council, OK with counts or the first entry that does not follow (exit 1).
    Verify {
        /// One service (default: every service with an audit trail).
        #[arg(long)]
        service: Option<String>,
        /// One council (tenant id).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List parked messages with their reasons (JSON lines).
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publish parked message SEQ again on its original subject and remove it from the dead
    /// letters; audited first.
    Replay {
        seq: u64,
        /// Why (recorded in the audit trail).
        #[arg(long, default_value = "replayed")]
        reason: String,
        #[command(flatten)]
        who: Operator,
    },
    /// Remove parked message SEQ for good without handling it; audited first.
    Discard {
        seq: u64,
        /// Why it is not to be handled (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        who: Operator,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// List a council's deliveries, oldest first (JSON lines: ids, status, attempts; never the
    /// body).
    List {
        #[arg(long)]
        tenant: String,
        /// Only those of this status: pending, delivered, dead or discarded.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Send dead delivery ID again (back to pending, its attempts from none, due now; the same
    /// webhook-id); audited first.
    Replay {
        id: String,
        #[arg(long)]
        tenant: String,
        /// Why (recorded in the audit trail).
        #[arg(long, default_value = "replayed")]
        reason: String,
        #[command(flatten)]
        who: Operator,
    },
    /// Never send dead delivery ID (kept as discarded); audited first.
    Discard {
        id: String,
        #[arg(long)]
        tenant: String,
        /// Why it is not to be sent (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        who: Operator,
    },
}

/// Who runs a dead-letter or webhook command, and whose audit trail records it.
#[derive(clap::Args)]
struct Operator {
    /// Who you are, as the audit trail records it (`operator:<NAME>`); default $EH_OPERATOR,
    /// else $USER.
    #[arg(long, env = "EH_OPERATOR")]
    by: Option<String>,
    /// The service whose audit trail records it; by default, for a dead letter the one whose
    /// consumer parked it, for a webhook delivery the gateway's.
    #[arg(long)]
    service: Option<String>,
}

impl Operator {
    fn name(&self) -> anyhow::Result<String> {
        self.by
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|n| !n.trim().is_empty())
            .context("say who you are: --by NAME (or EH_OPERATOR)")
    }
}

/// `--target`'s help, from the table of services.
fn target_help() -> String {
    format!(
        "`all` or a comma-separated list of: {}",
        earlyhelp::Target::names()
    )
}

/// The settings, with every key read by the platform or a service of the table.
fn load(cli: &Cli) -> anyhow::Result<Settings> {
    let settings = Settings::from_env(&cli.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    earlyhelp::targets::check_settings(&settings, &[]).map_err(anyhow::Error::msg)?;
    Ok(settings)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("earlyhelp: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match &cli.command {
        Command::Asyncapi => {
            print!("{}", earlyhelp::asyncapi::document());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Openapi => {
            print!("{}", eh_gateway::openapi::document());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Targets => {
            for t in Target::ALL {
                println!("{t}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Config {
            command: ConfigCommand::Print,
        } => {
            let s = earlyhelp::app::with_demo_tenant(load(&cli)?);
            let mut printed = s.to_masked_json();
            // The services' top-level sections as they read them: defaults in, secrets masked.
            if let Some(out) = printed.as_object_mut() {
                for t in Target::ALL {
                    for (key, value) in t.service().settings_json(&s) {
                        out.insert(key.to_string(), value);
                    }
                }
            }
            eh_platform::config::mask_secrets(&mut printed);
            println!("{}", serde_json::to_string_pretty(&printed)?);
        }
        Command::Healthcheck { grpc, service } => {
            let channel = eh_platform::net::endpoint(grpc.clone())?
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(3))
                .connect()
                .await
                .with_context(|| format!("connect {grpc}"))?;
            let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
            let resp = client
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.clone(),
                })
                .await?
                .into_inner();
            let serving = resp.status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
            println!("{}", if serving { "SERVING" } else { "NOT_SERVING" });
            return Ok(if serving {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Sar {
            tenant,
            person,
            format,
            grpc,
            token,
        } => {
            print!(
                "{}",
                earlyhelp::sar::request(grpc, token, tenant, person, format).await?
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::NatsConfig { tenants } => {
            let s = load(&cli)?;
            match tenants {
                Some(list) => {
                    let list: Vec<&str> = list.split(',').map(str::trim).collect();
                    print!(
                        "{}",
                        earlyhelp::natsconf::accounts_conf(
                            &s.bus.namespace,
                            &list,
                            earlyhelp::Target::ALL
                        )
                    );
                }
                None => print!("{}", earlyhelp::natsconf::for_settings(&s)),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::NatsRights => {
            print!("{}", earlyhelp::natsconf::rights_json());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Token { sub, roles, agency } => {
            let s = load(&cli)?;
            anyhow::ensure!(s.demo_enabled(), "tokens are minted only in demo mode");
            let issuer = eh_auth::demo::DemoIssuer::load_or_create(&s.data_dir)
                .map_err(anyhow::Error::msg)?;
            let roles: Vec<&str> = roles.split(',').collect();
            println!(
                "{}",
                issuer
                    .mint(sub, &roles, agency, 3600)
                    .map_err(anyhow::Error::msg)?
            );
        }
        _ => {}
    }
    let settings = match &cli.command {
        Command::Config { .. }
        | Command::Healthcheck { .. }
        | Command::Token { .. }
        | Command::Sar { .. } => {
            return Ok(ExitCode::SUCCESS);
        }
        _ => load(&cli)?,
    };
    let _telemetry =
        eh_platform::telemetry::init(&settings.telemetry).map_err(anyhow::Error::msg)?;
    match cli.command {
        Command::Run { target } => {
            let targets = Target::parse_list(&target).map_err(anyhow::Error::msg)?;
            let app = App::start(AppOptions::new(settings, targets)).await?;
            eh_platform::shutdown::cancel_on_signal(app.shutdown_token()).await;
            app.stopped().await?;
        }
        Command::Migrate { target } => {
            for t in Target::parse_list(&target).map_err(anyhow::Error::msg)? {
                let n = earlyhelp::app::migrate(&settings, t).await?;
                println!("{t}: {n} migration(s) applied");
            }
        }
        Command::Audit {
            command: AuditCommand::Checkpoint { service },
        } => {
            let targets = match service {
                Some(s) => vec![Target::named(&s).map_err(anyhow::Error::msg)?],
                None => Target::ALL.to_vec(),
            };
            let mut c = earlyhelp::audit::Checkpointer::connect(&settings, &targets).await?;
            for cp in c.run_once().await? {
                println!(
                    "{} {}: entry {} checkpointed ({})",
                    cp.service, cp.tenant, cp.seq, cp.at
                );
            }
        }
        Command::Audit {
            command: AuditCommand::Verify { service, tenant },
        } => {
            let reports =
                earlyhelp::audit::verify(&settings, service.as_deref(), tenant.as_deref()).await?;
            let mut ok = true;
            for r in &reports {
                for line in r.lines() {
                    println!("{line}");
                }
                ok &= r.ok();
            }
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Dlq { command } => {
            let transport = earlyhelp::app::transport(&settings, None).await?;
            wait_for_bus(transport.as_ref()).await?;
            let ns = &settings.bus.namespace;
            match command {
                DlqCommand::List { limit } => {
                    for d in eh_bus::dlq::list(transport.as_ref(), ns, limit).await? {
                        println!(
                            "{}",
                            serde_json::json!({
                                "seq": d.seq, "consumer": d.consumer, "subject": d.original_subject,
                                "reason": d.reason, "attempts": d.attempts, "parked_at": d.parked_at,
                                "event_id": d.headers.get("Eh-Id"), "bytes": d.payload.len(),
                            })
                        );
                    }
                }
                DlqCommand::Replay { seq, reason, who } => {
                    let d = earlyhelp::dlq::act(
                        &settings,
                        transport.as_ref(),
                        seq,
                        Action::Replay,
                        &who.name()?,
                        &reason,
                        who.service.as_deref(),
                    )
                    .await?;
                    println!("replayed {seq} to {}", d.original_subject);
                }
                DlqCommand::Discard { seq, reason, who } => {
                    let d = earlyhelp::dlq::act(
                        &settings,
                        transport.as_ref(),
                        seq,
                        Action::Discard,
                        &who.name()?,
                        &reason,
                        who.service.as_deref(),
                    )
                    .await?;
                    println!(
                        "discarded {seq} (consumer {}, subject {})",
                        d.consumer, d.original_subject
                    );
                }
            }
        }
        Command::Webhook { command } => match command {
            WebhookCommand::List {
                tenant,
                status,
                limit,
            } => {
                for d in
                    earlyhelp::webhook::list(&settings, &tenant, status.as_deref(), limit).await?
                {
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": d.id, "system": d.system, "type": d.event_type,
                            "status": d.status, "attempts": d.attempts, "reason": d.last_error,
                            "created_at": d.created_at.to_rfc3339(),
                            "settled_at": d.settled_at.map(|t| t.to_rfc3339()),
                        })
                    );
                }
            }
            WebhookCommand::Replay {
                id,
                tenant,
                reason,
                who,
            } => settle_webhook(&settings, Action::Replay, &id, &tenant, &reason, &who).await?,
            WebhookCommand::Discard {
                id,
                tenant,
                reason,
                who,
            } => settle_webhook(&settings, Action::Discard, &id, &tenant, &reason, &who).await?,
        },
        Command::Republish { service, from, to } => {
            let target = Target::named(&service).map_err(anyhow::Error::msg)?;
            let parse = |s: &str| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .map(|d| d.with_timezone(&chrono::Utc))
                    .with_context(|| format!("{s}: not an RFC 3339 time"))
            };
            let loc = eh_store::Location::for_service(&settings, target.name())?;
            let db = eh_store::connect(&loc).await?;
            let n = eh_bus::relay::republish_range(&db, parse(&from)?, parse(&to)?).await?;
            println!(
                "{n} event(s) of {target} marked for re-publishing; running services publish them now"
            );
        }
        Command::Demo { exit } => {
            anyhow::ensure!(
                settings.demo_enabled(),
                "the demo runs in demo mode (embedded, demo = true)"
            );
            let app = App::start(AppOptions::new(settings, Target::ALL.to_vec())).await?;
            app.wait_ready(Duration::from_secs(30)).await?;
            println!(
                "Early Help platform running (embedded mode, demo council \"Demo Borough Council\")"
            );
            println!(
                "  gRPC {}   health/metrics http://{}/readyz",
                app.grpc_addr, app.http_addr
            );
            let mut console = app.http_addr;
            if console.ip().is_unspecified() {
                console.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            println!(
                "  web console http://{console}/console/   (sign in as a demo user: no set-up)"
            );
            println!("Submitting example requests for support as an upstream system would…");
            earlyhelp::demo::run(&app).await?;
            if !exit {
                println!(
                    "Running; Ctrl-C to stop. Try: earlyhelp token   (a practitioner token for grpcurl)"
                );
                eh_platform::shutdown::cancel_on_signal(app.shutdown_token()).await;
            }
            app.shutdown();
            app.stopped().await?;
        }
        Command::Config { .. }
        | Command::Healthcheck { .. }
        | Command::Token { .. }
        | Command::Sar { .. }
        | Command::Asyncapi
        | Command::Openapi
        | Command::Targets
        | Command::NatsConfig { .. }
        | Command::NatsRights => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `webhook replay` or `webhook discard` of delivery `id` of council `tenant`.
async fn settle_webhook(
    settings: &Settings,
    action: Action,
    id: &str,
    tenant: &str,
    reason: &str,
    who: &Operator,
) -> anyhow::Result<()> {
    let d = earlyhelp::webhook::act(
        settings,
        tenant,
        id,
        action,
        &who.name()?,
        reason,
        who.service.as_deref(),
    )
    .await?;
    match action {
        Action::Replay => println!(
            "replayed {id} (to {}): pending, due now; the gateway sends it again",
            d.system
        ),
        Action::Discard => println!("discarded {id} (to {}): never sent", d.system),
    }
    Ok(())
}

async fn wait_for_bus(t: &dyn eh_bus::Transport) -> anyhow::Result<()> {
    for _ in 0..50 {
        if t.ping().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.ping().await.context("bus not reachable")
}
