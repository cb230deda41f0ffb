//! A referral's consent is recorded by the consent service and enforced for every later check.
use eh_proto::consent::v1::CheckSharingRequest;
use eh_proto::consent::v1::consent_service_client::ConsentServiceClient;
use eh_proto::intake::v1::ReferralReceived;
use eh_tests::{TestApp, collect, referral, with_token};
use prost::Message;
use std::time::Duration;

async fn referral_consent_is_enforced(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    let mut events = t
        .watch(
            "intake",
            &format!("{}.worcs.intake.referral_received", t.ns()),
        )
        .await?;
    // The example family consents but refuses health information to the police.
    t.publish_inbound(
        "worcs",
        serde_json::to_vec(&referral("CS-1", None))?,
        "cs-1",
    )
    .await?;
    let got = collect(&mut events, 1, Duration::from_secs(20)).await?;
    let family_id = ReferralReceived::decode(got[0].payload.as_ref())?.family_id;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", t.app().grpc_addr))?
        .connect()
        .await?;
    let mut consent = ConsentServiceClient::new(channel);
    // A practitioner asks (an upstream system may not ask about a family's consent).
    let worcs = t.token("worcs", "eh-worker-1", &["practitioner"]);
    let staffs = t.token("staffs", "s-worker-1", &["practitioner"]);
    let check = |agency: &str, category: &str, token: &str, tenant: &str| {
        with_token(
            CheckSharingRequest {
                tenant: tenant.into(),
                family_id: family_id.clone(),
                person_id: String::new(),
                agency: agency.into(),
                category: category.into(),
                purpose: "sharing".into(),
            },
            token,
        )
    };
    let education =
        eh_testkit::eventually(Duration::from_secs(20), "consent to be recorded", || {
            let mut c = consent.clone();
            let r = check("education", "health", &worcs, "worcs");
            async move {
                Ok(c.check_sharing(r)
                    .await
                    .ok()
                    .map(|r| r.into_inner())
                    .filter(|d| !d.record_id.is_empty()))
            }
        })
        .await?;
    assert!(
        education.allowed,
        "health to education is allowed: {}",
        education.reason
    );
    let police = consent
        .check_sharing(check("police", "health", &worcs, "worcs"))
        .await?
        .into_inner();
    assert!(
        !police.allowed,
        "the family refused health information to the police"
    );
    assert_eq!(
        police.restriction.map(|r| r.category).as_deref(),
        Some("health")
    );
    let police_education = consent
        .check_sharing(check("police", "education", &worcs, "worcs"))
        .await?
        .into_inner();
    assert!(police_education.allowed, "{}", police_education.reason);
    // Another council asking about this family: refused.
    let e = consent
        .check_sharing(check("police", "education", &staffs, "worcs"))
        .await
        .expect_err("cross-tenant");
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_referral_consent_is_enforced() -> anyhow::Result<()> {
    referral_consent_is_enforced(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_referral_consent_is_enforced() -> anyhow::Result<()> {
    referral_consent_is_enforced(false).await
}
