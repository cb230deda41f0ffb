//! Nothing personal in the logs: the journeys run with the process's log output captured — the
//! binary's JSON format at its default level (`info`), every span's fields included — and the
//! captured text is scanned for the test data's names, NHS numbers and email addresses. A test
//! binary of its own, so its subscriber is the process's only one.
use eh_proto::intake::v1::SubmitReferralRequest;
use eh_tests::{TestApp, WORCS_KEY, collect, referral, with_key};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Everything the process logs, from the first test on.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(move || Sink(sink.clone()))
            .finish();
        // Cannot fail: nothing else in this binary installs one.
        let _ = tracing::subscriber::set_global_default(subscriber);
        log
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The personal values of the test data: the example referral's people, its NHS number, the
/// family's and the referrer's email addresses, and a rejected document's.
const PERSONAL: &[&str] = &[
    "Leo",
    "Marsh",
    "Dana",
    "Priya Shah",
    "9434765919",
    "dana.marsh@example.org",
    "rob.marsh@example.org",
    "referrer.logscan@school.example",
    "Ottoline",
    "9434765X19",
    "ottoline.at.nowhere",
];

async fn journey(distributed: bool) -> anyhow::Result<()> {
    let log = captured();
    let t = TestApp::spawn(distributed).await?;
    let mut rejected = t
        .watch(
            "intake",
            &format!("{}.worcs.intake.referral_rejected", t.ns()),
        )
        .await?;
    // Stored and acknowledged by email, screened, its case made ready.
    let doc = referral("LOGS-1", Some("referrer.logscan@school.example"));
    t.publish_inbound("worcs", serde_json::to_vec(&doc)?, "logs-1")
        .await?;
    t.smtp
        .wait_for_template(eh_tests::ACK, 1, Duration::from_secs(30))
        .await?;
    // Refused on the bus and over gRPC with personal values in the fields at fault.
    let mut bad = referral("LOGS-2", None);
    bad["children"][0]["given_name"] = serde_json::json!("Ottoline".repeat(20));
    bad["children"][0]["nhs_number"] = serde_json::json!("9434765X19");
    bad["referrer"]["email"] = serde_json::json!("ottoline.at.nowhere");
    t.publish_inbound("worcs", serde_json::to_vec(&bad)?, "logs-2")
        .await?;
    let mut client = t.intake().await?;
    let refused = client
        .submit_referral(with_key(
            SubmitReferralRequest {
                tenant: "worcs".into(),
                referral: Some(serde_json::from_value(bad)?),
            },
            WORCS_KEY,
        ))
        .await;
    assert!(refused.is_err());
    // Let the rejection on the bus, the screening and the outcome email be handled and logged.
    let got = collect(&mut rejected, 1, Duration::from_secs(30)).await?;
    assert_eq!(got.len(), 1, "the bus rejection");
    t.smtp
        .wait_for_template("screening_outcome", 1, Duration::from_secs(30))
        .await?;
    drop(t);

    let text = String::from_utf8_lossy(&log.lock().unwrap_or_else(|e| e.into_inner())).to_string();
    assert!(
        text.contains("referral rejected") && text.contains("referral received"),
        "the journey was logged: {text}"
    );
    for value in PERSONAL {
        let line = text.lines().find(|l| l.contains(value));
        assert!(
            line.is_none(),
            "{value:?} logged: {}",
            line.unwrap_or_default()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_journey_logs_nothing_personal() -> anyhow::Result<()> {
    journey(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_journey_logs_nothing_personal() -> anyhow::Result<()> {
    journey(false).await
}
