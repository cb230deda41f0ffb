//! Console and public API throughput (`just bench-console`): starts the platform in-process
//! (embedded; `EH_CONSOLE_BENCH_DISTRIBUTED=1` for PostgreSQL + NATS), lets one consented
//! referral become a case, signs a front-door officer in (a console session as sign-in makes
//! one), then measures over HTTP/1.1 keep-alive, from `EH_CONSOLE_BENCH_CONC` concurrent callers
//! (default 16) for `EH_CONSOLE_BENCH_SECS` seconds each (default 5):
//!   - static: a static file of the same server (`/console/static/console.css`: the console's
//!     router and security headers, no session, no service call) — the baseline;
//!   - case page: `/console/cases/{id}` as the officer (session lookup, then the case and six
//!     sections read over gRPC with the officer's token, each audited, rendered to HTML);
//!   - status read: the public API's `GET /v1/referrals/{id}` with the council's API key.
//!
//! Each once straight to the gateway and once through a TLS-terminating proxy in this process
//! (rustls, a self-signed certificate made by `openssl` for this run, the proxy forwarding to
//! the same listener). Prints requests/s, p50 and p99 for each, each rate as a ratio of the
//! static baseline's over the same transport, and TLS's cost as the TLS/plain ratio. Asserts
//! nothing about time.
use eh_gateway::session::{self, SignedIn, TokenKey};
use eh_proto::casework::v1 as cw;
use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
use eh_tests::{TestApp, WORCS_KEY, referral, with_token};
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A self-signed certificate for 127.0.0.1 (PEM certificate, PEM key), made by `openssl`.
fn certificate(dir: &std::path::Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let (cert, key, conf) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("openssl.cnf"),
    );
    // An end-entity certificate (not a CA: rustls refuses a CA as a server's certificate).
    std::fs::write(
        &conf,
        "[req]\ndistinguished_name = dn\nx509_extensions = v3\nprompt = no\n\
         [dn]\nCN = 127.0.0.1\n\
         [v3]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1\n",
    )?;
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-config"])
        .arg(&conf)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((std::fs::read(cert)?, std::fs::read(key)?))
}

/// A TLS-terminating proxy to `upstream` (plain TCP after the handshake); its address.
async fn tls_proxy(upstream: SocketAddr, cert: &[u8], key: &[u8]) -> anyhow::Result<SocketAddr> {
    let certs = rustls_pemfile::certs(&mut &cert[..]).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut &key[..])?
        .ok_or_else(|| anyhow::anyhow!("no private key"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = socket.set_nodelay(true);
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = up.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    Ok(addr)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Static,
    CasePage,
    StatusRead,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Static => "static file (baseline)",
            Target::CasePage => "console case page",
            Target::StatusRead => "API referral status",
        }
    }
}

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// `conc` callers asking `make()` for `secs` seconds (after a short warm-up).
async fn measure(
    client: &reqwest::Client,
    make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>,
    conc: usize,
    secs: u64,
) -> anyhow::Result<Figures> {
    // Warm-up: the connections open, the caches fill.
    for _ in 0..conc.min(8) {
        make(client).send().await?.bytes().await?;
    }
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, make) = (client.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            while Instant::now() < until {
                let t = Instant::now();
                let ok = match make(&client).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    h.saturating_record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                } else {
                    errors += 1;
                }
            }
            Ok::<_, anyhow::Error>((h, errors))
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await??;
        all.add(&h)?;
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    Ok(Figures {
        rps: all.len() as f64 / elapsed,
        p50_ms: all.value_at_quantile(0.50) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
        errors,
    })
}

/// The case of `reference`, once casework lists it.
async fn case_of(t: &TestApp, reference: &str) -> anyhow::Result<cw::Case> {
    let cases = CaseworkServiceClient::new(t.channel().await?);
    let token = t.token("worcs", "bench-reader", &["front_door"]);
    eh_testkit::eventually(Duration::from_secs(60), "the bench's case", || {
        let (mut cases, token) = (cases.clone(), token.clone());
        let reference = reference.to_string();
        async move {
            let list = cases
                .list_cases(with_token(
                    cw::ListCasesRequest {
                        tenant: "worcs".into(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await?
                .into_inner();
            Ok(list
                .cases
                .into_iter()
                .find(|c| c.source_reference == reference))
        }
    })
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let distributed = env_or("EH_CONSOLE_BENCH_DISTRIBUTED", 0u8) == 1;
    let conc: usize = env_or("EH_CONSOLE_BENCH_CONC", 16);
    let secs: u64 = env_or("EH_CONSOLE_BENCH_SECS", 5);
    let mut t = TestApp::spawn(distributed).await?;
    // The API's rate limit is per key: lifted here, or the status read would measure it.
    t.stop().await?;
    t.settings.sections.insert(
        "gateway".into(),
        eh_platform::config::Section::from_json(
            "gateway",
            serde_json::json!({"rate_limit": {"per_minute": 1_000_000_000u32, "burst": 1_000_000u32}}),
        )?,
    );
    t.start().await?;
    t.publish_inbound(
        "worcs",
        serde_json::to_vec(&referral("BENCH-1", None))?,
        "bench-1",
    )
    .await?;
    let case = case_of(&t, "BENCH-1").await?;

    // A front-door officer's console session, as sign-in makes one.
    let settings = &t.app().settings;
    let g = eh_gateway::settings::GatewaySettings::from_settings(settings)
        .map_err(anyhow::Error::msg)?;
    let key = TokenKey::from_settings(settings, &g.console).map_err(anyhow::Error::msg)?;
    let now = chrono::Utc::now();
    let (sid, _) = session::sign_in(
        &t.db("gateway").await?,
        &key,
        None,
        "worcs",
        &SignedIn {
            subject: "bench-front-door".into(),
            id_token: t.token("worcs", "bench-front-door", &["front_door"]),
            end_session_url: None,
        },
        now + chrono::Duration::hours(1),
        now,
        session::Timeouts {
            idle: chrono::Duration::hours(1),
            absolute: chrono::Duration::hours(1),
        },
    )
    .await?;
    let cookie = format!("eh-session={sid}");

    let dir = tempfile::tempdir()?;
    let (cert_pem, key_pem) = certificate(dir.path())?;
    let plain = t.app().http_addr;
    let tls = tls_proxy(plain, &cert_pem, &key_pem).await?;
    let plain_client = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .http1_only()
        .build()?;
    let tls_client = reqwest::Client::builder()
        .pool_max_idle_per_host(conc)
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert_pem)?)
        .build()?;

    println!(
        "console and API throughput: {} mode, {conc} concurrent callers, {secs} s each, HTTP/1.1 keep-alive, loopback",
        if distributed {
            "distributed"
        } else {
            "embedded"
        }
    );
    let targets = [Target::Static, Target::CasePage, Target::StatusRead];
    let mut results: Vec<(Target, bool, Figures)> = Vec::new();
    for (over_tls, client, base) in [
        (false, &plain_client, format!("http://{plain}")),
        (true, &tls_client, format!("https://{tls}")),
    ] {
        for target in targets {
            let url = match target {
                Target::Static => format!("{base}/console/static/console.css"),
                Target::CasePage => format!("{base}/console/cases/{}", case.case_id),
                Target::StatusRead => format!("{base}/v1/referrals/{}", case.referral_id),
            };
            // Each target answers 200 before it is measured.
            let check = |c: &reqwest::Client| match target {
                Target::Static => c.get(&url),
                Target::CasePage => c.get(&url).header("cookie", &cookie),
                Target::StatusRead => c.get(&url).header("x-api-key", WORCS_KEY),
            };
            let r = check(client).send().await?;
            anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
            let body = r.text().await?;
            if target == Target::CasePage {
                anyhow::ensure!(body.contains("Timeline"), "the case page is not the case");
            }
            let (url, cookie) = (url.clone(), cookie.clone());
            let make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync> =
                Arc::new(move |c: &reqwest::Client| match target {
                    Target::Static => c.get(&url),
                    Target::CasePage => c.get(&url).header("cookie", &cookie),
                    Target::StatusRead => c.get(&url).header("x-api-key", WORCS_KEY),
                });
            let f = measure(client, make, conc, secs).await?;
            results.push((target, over_tls, f));
        }
    }

    println!(
        "\n{:<24} {:<6} {:>10} {:>9} {:>9} {:>7} {:>11} {:>10}",
        "target", "via", "req/s", "p50 ms", "p99 ms", "errors", "vs static", "TLS/plain"
    );
    let find = |t: Target, over_tls: bool| {
        results
            .iter()
            .find(|r| r.0 == t && r.1 == over_tls)
            .map(|r| &r.2)
    };
    for (target, over_tls, f) in &results {
        let baseline = find(Target::Static, *over_tls).map_or(f64::NAN, |b| f.rps / b.rps);
        let tls_ratio = if *over_tls {
            find(*target, false).map_or(String::new(), |p| format!("{:.2}", f.rps / p.rps))
        } else {
            String::new()
        };
        println!(
            "{:<24} {:<6} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>11.3} {:>10}",
            target.name(),
            if *over_tls { "TLS" } else { "plain" },
            f.rps,
            f.p50_ms,
            f.p99_ms,
            f.errors,
            baseline,
            tls_ratio
        );
    }
    println!(
        "\n(vs static: the rate as a share of the static file's over the same transport; TLS/plain: the rate through the TLS proxy as a share of the rate straight to the gateway)"
    );
    t.stop().await?;
    Ok(())
}
