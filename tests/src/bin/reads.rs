//! Read-path harness (`just bench-reads`): starts the platform in-process, lets one consented
//! referral become a case with its timeline, gives it a lead (casework's `lead_assigned`, as
//! casework publishes it) and a finalised Early Help Assessment of 10 agencies' contributions,
//! then measures the main audited reads — casework `GetCase`, consent `ListConsent`, intake
//! `GetReferral`, notifications `ListMessages`, assessment `GetAssessment` (read by one of the
//! contributing agencies, consent asked for every other agency's categories) — beside
//! `grpc.health.v1.Health/Check` on the same server in the same run: one caller at a time, then
//! 128 concurrent streams (16 connections × 8 streams); requests/s, p50 and p99, and each read's
//! rate as a ratio of the health check's; last, `GetCase` paced at half its measured 128-stream
//! rate. Both modes (EH_READS_MODES=distributed,embedded picks), loopback only, each measurement
//! bounded by EH_READS_SECS seconds (default 3) and EH_READS_MAX requests (default 200,000).
//! Prints figures; asserts nothing about time. Every read is audited, as in production.
use eh_proto::assessment::v1 as apb;
use eh_proto::assessment::v1::assessment_service_client::AssessmentServiceClient;
use eh_proto::casework::v1::{GetCaseRequest, casework_service_client::CaseworkServiceClient};
use eh_proto::consent::v1::{ListConsentRequest, consent_service_client::ConsentServiceClient};
use eh_proto::intake::v1::{GetReferralRequest, intake_service_client::IntakeServiceClient};
use eh_proto::notifications::v1::{
    ListMessagesRequest, notifications_service_client::NotificationsServiceClient,
};
use eh_tests::{TestApp, with_token};
use sea_orm::ConnectionTrait;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const CONNECTIONS: usize = 16;
const STREAMS_PER_CONNECTION: usize = 8;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The ids the reads ask for: one case with its timeline and what it came from.
#[derive(Clone)]
struct Subject {
    token: Arc<str>,
    case_id: String,
    family_id: String,
    referral_id: String,
    /// The finalised assessment, and a contributing agency's reader of it.
    assessment_id: String,
    assessment_reader: Arc<str>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Read {
    Health,
    GetCase,
    ListConsent,
    GetReferral,
    ListMessages,
    GetAssessment,
}

impl Read {
    const ALL: [Read; 6] = [
        Read::Health,
        Read::GetCase,
        Read::ListConsent,
        Read::GetReferral,
        Read::ListMessages,
        Read::GetAssessment,
    ];

    fn name(self) -> &'static str {
        match self {
            Read::Health => "Health/Check (baseline)",
            Read::GetCase => "CaseworkService/GetCase",
            Read::ListConsent => "ConsentService/ListConsent",
            Read::GetReferral => "IntakeService/GetReferral",
            Read::ListMessages => "NotificationsService/ListMessages",
            Read::GetAssessment => "AssessmentService/GetAssessment",
        }
    }

    /// One call on `ch`; the answer's encoded size in bytes.
    async fn call(self, ch: &Channel, s: &Subject) -> anyhow::Result<usize> {
        use prost::Message;
        let tenant = "worcs".to_string();
        Ok(match self {
            Read::Health => HealthClient::new(ch.clone())
                .check(HealthCheckRequest::default())
                .await?
                .into_inner()
                .encoded_len(),
            Read::GetCase => CaseworkServiceClient::new(ch.clone())
                .get_case(with_token(
                    GetCaseRequest {
                        tenant,
                        case_id: s.case_id.clone(),
                    },
                    &s.token,
                ))
                .await?
                .into_inner()
                .encoded_len(),
            Read::ListConsent => ConsentServiceClient::new(ch.clone())
                .list_consent(with_token(
                    ListConsentRequest {
                        tenant,
                        family_id: s.family_id.clone(),
                    },
                    &s.token,
                ))
                .await?
                .into_inner()
                .encoded_len(),
            Read::GetReferral => IntakeServiceClient::new(ch.clone())
                .get_referral(with_token(
                    GetReferralRequest {
                        tenant,
                        referral_id: s.referral_id.clone(),
                    },
                    &s.token,
                ))
                .await?
                .into_inner()
                .encoded_len(),
            Read::ListMessages => NotificationsServiceClient::new(ch.clone())
                .list_messages(with_token(
                    ListMessagesRequest {
                        tenant,
                        related_id: s.referral_id.clone(),
                    },
                    &s.token,
                ))
                .await?
                .into_inner()
                .encoded_len(),
            Read::GetAssessment => AssessmentServiceClient::new(ch.clone())
                .get_assessment(with_token(
                    apb::GetAssessmentRequest {
                        tenant,
                        assessment_id: s.assessment_id.clone(),
                        case_id: String::new(),
                        version: 0,
                    },
                    &s.assessment_reader,
                ))
                .await?
                .into_inner()
                .encoded_len(),
        })
    }
}

/// The agencies (and their sections' categories) of the benchmark's 10 contributions.
const CONTRIBUTORS: [(&str, &str); 10] = [
    ("education", "education"),
    ("health", "health"),
    ("police", "police"),
    ("housing", "housing"),
    ("social_care", "social_care"),
    ("youth_support", "substance_use"),
    ("jobcentre", "finances"),
    ("voluntary", "domestic_abuse"),
    ("other", "mental_health"),
    ("health", "mental_health"),
];

/// Gives the case a lead (casework's `lead_assigned`, published as casework publishes it), then
/// the lead opens its assessment, 10 agencies contribute and the lead finalises it: the
/// assessment's id.
async fn finalised_assessment(
    t: &TestApp,
    case_id: &str,
    family_id: &str,
) -> anyhow::Result<String> {
    use prost::Message;
    let spec = &eh_proto::catalogue::LEAD_ASSIGNED;
    let ev = eh_proto::casework::v1::LeadAssigned {
        case: Some(eh_proto::casework::v1::CaseRef {
            case_id: case_id.into(),
            family_id: family_id.into(),
            ..Default::default()
        }),
        practitioner: "bench-lead".into(),
        organization_id: "bench-org".into(),
        service_name: "Bench Early Help Team".into(),
        ..Default::default()
    };
    let env = eh_bus::Envelope::new(
        spec.payload,
        "worcs",
        "service:casework",
        chrono::Utc::now(),
    );
    let out =
        eh_bus::OutboundMessage::event(spec.subject(&t.ns(), "worcs"), &env, ev.encode_to_vec());
    t.app().transport.publish(&out).await?;
    let api = AssessmentServiceClient::new(t.channel().await?);
    let lead = t.token_of("worcs", "bench-lead", &["practitioner"], "bench-org");
    let opened = eh_testkit::eventually(Duration::from_secs(60), "the lead known", || {
        let mut api = api.clone();
        let lead = lead.clone();
        let req = apb::OpenAssessmentRequest {
            tenant: "worcs".into(),
            case_id: case_id.into(),
            carried_over: vec![],
        };
        async move {
            match api.open_assessment(with_token(req, &lead)).await {
                Ok(a) => Ok(Some(a.into_inner())),
                Err(s) if s.code() == tonic::Code::FailedPrecondition => Ok(None),
                Err(s) => Err(s.into()),
            }
        }
    })
    .await?;
    let headlines = ["education", "health", "crime", "housing", "mental_health"];
    for (i, (agency, category)) in CONTRIBUTORS.iter().enumerate() {
        let token = t.token_of("worcs", &format!("bench-{i}"), &["practitioner"], agency);
        api.clone()
            .add_contribution(with_token(
                apb::AddContributionRequest {
                    tenant: "worcs".into(),
                    assessment_id: opened.assessment_id.clone(),
                    body: Some(apb::SignsOfSafety {
                        category: (*category).into(),
                        worries: vec![format!("what agency {i} is worried about")],
                        working_well: vec!["what is working well".into()],
                        next_steps: vec!["what needs to happen".into()],
                        needs: vec![apb::Need {
                            headline: headlines[i % headlines.len()].into(),
                            detail: String::new(),
                        }],
                        ..Default::default()
                    }),
                },
                &token,
            ))
            .await?;
    }
    api.clone()
        .finalise_assessment(with_token(
            apb::FinaliseAssessmentRequest {
                tenant: "worcs".into(),
                assessment_id: opened.assessment_id.clone(),
            },
            &lead,
        ))
        .await?;
    Ok(opened.assessment_id)
}

/// Requests/s, p50 and p99 (ms) of one measurement.
#[derive(Clone, Copy)]
struct Figures {
    rate: f64,
    p50: f64,
    p99: f64,
}

/// Calls `read` from `callers` concurrent streams over `channels` until `secs` or `max` calls,
/// each stream at most one call per `pace` when given.
async fn measure(
    read: Read,
    channels: &[Channel],
    callers: usize,
    subject: &Subject,
    pace: Option<Duration>,
) -> anyhow::Result<Figures> {
    let secs = env_or("EH_READS_SECS", 3.0_f64);
    let max = env_or("EH_READS_MAX", 200_000_u64);
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let workers = (0..callers).map(|i| {
        let ch = channels[i % channels.len()].clone();
        let subject = subject.clone();
        let issued = issued.clone();
        tokio::spawn(async move {
            let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
            let mut tick = pace.map(|p| {
                let mut t = tokio::time::interval_at(
                    tokio::time::Instant::now() + p.mul_f64(i as f64 / callers as f64),
                    p,
                );
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < max {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let sent = Instant::now();
                read.call(&ch, &subject).await?;
                hist.record(sent.elapsed().as_micros() as u64)?;
            }
            Ok::<_, anyhow::Error>(hist)
        })
    });
    let mut all = hdrhistogram::Histogram::<u64>::new(3)?;
    for w in futures::future::join_all(workers).await {
        all.add(w??)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Figures {
        rate: all.len() as f64 / elapsed,
        p50: all.value_at_quantile(0.5) as f64 / 1000.0,
        p99: all.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// Publishes one consented referral and waits until its case is ready for allocation (opened,
/// consent, screening, ready: a timeline of several entries) and its acknowledgement recorded.
async fn case_with_timeline(t: &TestApp) -> anyhow::Result<Subject> {
    let reference = format!("R-{}", eh_testkit::namespace());
    let doc = eh_tests::referral(&reference, Some("reads@school.example"));
    t.publish_inbound("worcs", serde_json::to_vec(&doc)?, &reference)
        .await?;
    let casework = t.db("casework").await?;
    let notifications = t.db("notifications").await?;
    let row = eh_testkit::eventually(Duration::from_secs(60), "the case ready", || {
        let casework = casework.clone();
        async move {
            Ok(casework
                .query_one_raw(eh_store::stmt(
                    casework.get_database_backend(),
                    "SELECT id, family_id, referral_id FROM cases
                     WHERE state IN ('ready_for_allocation', 'waiting_for_provider', 'allocating', 'allocated')",
                    [],
                ))
                .await?)
        }
    })
    .await?;
    let referral_id: String = row.try_get_by_index(2)?;
    eh_testkit::eventually(Duration::from_secs(60), "the acknowledgement", || {
        let notifications = notifications.clone();
        let referral_id = referral_id.clone();
        async move {
            Ok(notifications
                .query_one_raw(eh_store::stmt(
                    notifications.get_database_backend(),
                    "SELECT 1 FROM messages WHERE related_id = $1",
                    [referral_id.into()],
                ))
                .await?)
        }
    })
    .await?;
    let case_id: String = row.try_get_by_index(0)?;
    let family_id: String = row.try_get_by_index(1)?;
    let assessment_id = finalised_assessment(t, &case_id, &family_id).await?;
    Ok(Subject {
        token: t
            .token("worcs", "bench-practitioner", &["practitioner"])
            .into(),
        case_id,
        family_id,
        referral_id,
        assessment_id,
        // The police contributed: they read the whole assessment, consent asked for every other
        // agency's section.
        assessment_reader: t
            .token_of("worcs", "bench-2", &["practitioner"], "police")
            .into(),
    })
}

async fn mode(distributed: bool) -> anyhow::Result<()> {
    let name = if distributed {
        "distributed"
    } else {
        "embedded"
    };
    let mut t = TestApp::spawn(distributed).await?;
    let subject = case_with_timeline(&t).await?;
    let url = format!("http://{}", t.app().grpc_addr);
    let mut channels = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        channels.push(Channel::from_shared(url.clone())?.connect().await?);
    }
    let mut sizes = Vec::new();
    for read in Read::ALL {
        sizes.push(read.call(&channels[0], &subject).await?);
    }
    let case = CaseworkServiceClient::new(channels[0].clone())
        .get_case(with_token(
            GetCaseRequest {
                tenant: "worcs".into(),
                case_id: subject.case_id.clone(),
            },
            &subject.token,
        ))
        .await?
        .into_inner();
    println!(
        "{name}: one case with {} timeline entries; answers {} bytes (health, GetCase, ListConsent, GetReferral, ListMessages, GetAssessment)",
        case.timeline.len(),
        sizes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let streams = CONNECTIONS * STREAMS_PER_CONNECTION;
    let mut get_case_at_128 = None;
    for (label, callers, conns) in [
        ("1 caller", 1, &channels[..1]),
        ("128 streams", streams, &channels[..]),
    ] {
        let mut baseline = None;
        for read in Read::ALL {
            let f = measure(read, conns, callers, &subject, None).await?;
            let base = *baseline.get_or_insert(f.rate);
            if read == Read::GetCase && callers > 1 {
                get_case_at_128 = Some(f.rate);
            }
            println!(
                "{name:<11} {label:<11} {:<34} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  = {:.3}× health",
                read.name(),
                f.rate,
                f.p50,
                f.p99,
                f.rate / base,
            );
        }
    }
    if let Some(rate) = get_case_at_128.filter(|r| *r > 0.0) {
        // Half the measured rate, spread over the same 128 streams.
        let half = rate / 2.0;
        let pace = Duration::from_secs_f64(streams as f64 / half);
        let f = measure(Read::GetCase, &channels, streams, &subject, Some(pace)).await?;
        println!(
            "{name:<11} {:<11} {:<34} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  (paced at {half:.0}/s)",
            "half load",
            Read::GetCase.name(),
            f.rate,
            f.p50,
            f.p99,
        );
    }
    let casework = t.db("casework").await?;
    let audited = casework
        .query_one_raw(eh_store::stmt(
            casework.get_database_backend(),
            "SELECT COUNT(*) FROM eh_audit WHERE action = 'GetCase'",
            [],
        ))
        .await?
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    println!("{name:<11} GetCase calls in casework's audit trail: {audited}");
    t.stop().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!(
        "read harness: {CONNECTIONS} connections × {STREAMS_PER_CONNECTION} streams, {} cores",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(1)
    );
    let picked = std::env::var("EH_READS_MODES").unwrap_or_default();
    for (name, distributed) in [("distributed", true), ("embedded", false)] {
        if picked.is_empty() || picked.split(',').any(|p| p.trim() == name) {
            mode(distributed).await?;
        }
    }
    Ok(())
}
