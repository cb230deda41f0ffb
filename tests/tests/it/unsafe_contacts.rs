//! Unsafe contacts learned late (issue 15), end to end in both modes through the real bus,
//! databases, gRPC and SMTP server, on a clock the test moves.
//!
//! The father refers his own family (route `self`), giving his address; the case waits for
//! consent. A second referral for the family, from a school, marks him unsafe to contact without
//! repeating his address, and attaches to the open case. From then on nothing the platform sends
//! reaches him at the address it holds for him, whichever template: the acknowledgement of a
//! third referral of his own (which says nothing about safety, and clears nothing), the consent
//! chase five working days later, the screening outcome of his referral, and the step-up told to
//! its referrer. Each is on the message list as `suppressed`, with a reason that names ids only;
//! the mother, the school and the front door still hear what they should. The two templates
//! left (`step_up_front_door`, `service_level_breach`) go to council mailboxes only, never to a
//! family member.
use chrono::{TimeZone, Utc};
use eh_platform::clock::ManualClock;
use eh_proto::casework::v1 as pb;
use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
use eh_tests::{TestApp, referral, with_token};
use sea_orm::ConnectionTrait;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const FATHER: &str = "rob.marsh@example.org";
const MOTHER: &str = "dana.marsh@example.org";
const SCHOOL: &str = "priya@school.test";
const FRONT_DOOR: &str = "front-door@worcs.test";

/// A referral for the Marsh family (the child known by NHS number), without consent, naming
/// the mother only.
fn marsh(reference: &str, referrer_email: &str) -> serde_json::Value {
    let mut doc = referral(reference, Some(referrer_email));
    doc["consent"] = json!({"obtained": false});
    doc["family_members"] = json!([
        {"given_name": "Dana", "family_name": "Marsh", "relationship": "mother",
         "parental_responsibility": true, "email": MOTHER, "safe_to_contact": true}
    ]);
    doc
}

/// The father's own referral: he is the referrer, at his own address.
fn fathers_own(reference: &str) -> serde_json::Value {
    let mut doc = marsh(reference, FATHER);
    doc["route"] = json!("self");
    doc["referrer"] = json!({"name": "Rob Marsh", "agency": "family", "email": FATHER});
    doc["family_members"] = json!([
        {"given_name": "Dana", "family_name": "Marsh", "relationship": "mother",
         "parental_responsibility": true, "email": MOTHER, "safe_to_contact": true},
        {"given_name": "Rob", "family_name": "Marsh", "relationship": "father",
         "parental_responsibility": true, "email": FATHER}
    ]);
    doc
}

async fn case_of(
    t: &TestApp,
    reference: &str,
    what: &str,
    ok: impl Fn(&pb::Case) -> bool,
) -> anyhow::Result<pb::Case> {
    let cw = CaseworkServiceClient::new(t.channel().await?);
    let ok = &ok;
    // The front door sees the whole case (an upstream system only its referral's status).
    let token = t.token("worcs", "front-door-reader", &["front_door"]);
    eh_testkit::eventually(WAIT, what, || {
        let mut cw = cw.clone();
        let reference = reference.to_string();
        let token = token.clone();
        async move {
            let cases = cw
                .list_cases(with_token(
                    pb::ListCasesRequest {
                        tenant: "worcs".into(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await?
                .into_inner()
                .cases;
            Ok(cases
                .into_iter()
                .find(|c| c.source_reference == reference && ok(c)))
        }
    })
    .await
}

fn count(c: &pb::Case, kind: &str) -> usize {
    c.timeline.iter().filter(|e| e.kind == kind).count()
}

/// The one message of `template` about `related_id` to `recipient`, once it is settled (not
/// queued).
async fn settled(
    t: &TestApp,
    related_id: &str,
    template: &str,
    recipient: &str,
) -> anyhow::Result<eh_notifications::store::MessageRow> {
    let db = t.db("notifications").await?;
    eh_testkit::eventually(
        WAIT,
        &format!("{template} about {related_id} settled"),
        || async {
            let all = eh_notifications::store::for_related(&db, "worcs", related_id).await?;
            Ok(all.into_iter().find(|m| {
                m.template == template && m.recipient == recipient && m.status != "queued"
            }))
        },
    )
    .await
}

/// `m` was withheld, with a reason naming one of `ids` (the referral that marked him unsafe, or
/// the case whose contacts say so) and no personal data.
fn assert_suppressed_for_ids_only(m: &eh_notifications::store::MessageRow, ids: &[&str]) {
    assert_eq!(
        m.status, "suppressed",
        "{} to the father: {m:?}",
        m.template
    );
    let reason = m.last_error.clone().unwrap_or_default();
    assert!(
        reason.contains("unsafe") && ids.iter().any(|id| reason.contains(id)),
        "{}: the reason says why, by ids: {reason}",
        m.template
    );
    assert!(
        !reason.contains('@') && !reason.contains("Rob") && !reason.contains("Marsh"),
        "{}: no personal data in the reason: {reason}",
        m.template
    );
}

async fn unsafe_contact_learned_late(distributed: bool) -> anyhow::Result<()> {
    // Monday 14 December 2026, 10:00: the consent chase is due from Tuesday 22 December.
    let start = Utc
        .with_ymd_and_hms(2026, 12, 14, 10, 0, 0)
        .single()
        .expect("date");
    let clock = Arc::new(ManualClock::new(start));
    let t = TestApp::spawn_with_clock(distributed, clock.clone()).await?;

    // 1. The father's own referral: a case waiting for consent; he is acknowledged (he is safe).
    t.publish_inbound("worcs", serde_json::to_vec(&fathers_own("UC-1"))?, "uc-1")
        .await?;
    let case = case_of(&t, "UC-1", "the case to await consent", |c| {
        c.state == "awaiting_consent"
    })
    .await?;
    let ack = settled(&t, &case.referral_id, "referral_acknowledgement", FATHER).await?;
    assert_eq!(ack.status, "sent");

    // 2. The school's referral marks him unsafe, without his address; it joins the open case.
    let mut second = marsh("UC-2", SCHOOL);
    second["family_members"]
        .as_array_mut()
        .expect("family members")
        .push(
            json!({"given_name": "Rob", "family_name": "Marsh", "relationship": "father",
                     "safe_to_contact": false}),
        );
    t.publish_inbound("worcs", serde_json::to_vec(&second)?, "uc-2")
        .await?;
    let case = case_of(&t, "UC-1", "the second referral on the case", |c| {
        c.referral_ids.len() == 2
    })
    .await?;
    let unsafe_referral = case.referral_ids[1].clone();
    let note = case
        .timeline
        .iter()
        .find(|e| e.kind == "contact_unsafe")
        .expect("the case says a contact became unsafe");
    assert!(note.reason.contains(&unsafe_referral), "{}", note.reason);
    assert!(!note.reason.contains("Rob") && !note.reason.contains('@'));
    assert_eq!(
        settled(&t, &unsafe_referral, "referral_acknowledgement", SCHOOL)
            .await?
            .status,
        "sent"
    );

    // 3. Another referral of his own, saying nothing about safety: acknowledged to nobody, and
    //    the flag stays.
    t.publish_inbound("worcs", serde_json::to_vec(&fathers_own("UC-3"))?, "uc-3")
        .await?;
    let case = case_of(&t, "UC-1", "the third referral on the case", |c| {
        c.referral_ids.len() == 3
    })
    .await?;
    assert_eq!(
        count(&case, "contact_unsafe"),
        1,
        "nothing cleared, nothing new"
    );
    // Intake holds him once (each referral matched him to the person it held), unsafe.
    let intake = t.db("intake").await?;
    let fathers = intake
        .query_all_raw(eh_store::stmt(
            intake.get_database_backend(),
            "SELECT safe_to_contact FROM people WHERE tenant = $1 AND relationship = $2
               AND merged_into IS NULL",
            ["worcs".into(), "father".into()],
        ))
        .await?;
    let flags: Vec<Option<bool>> = fathers
        .iter()
        .map(|r| r.try_get_by_index(0))
        .collect::<Result<_, _>>()?;
    assert_eq!(flags, [Some(false)]);
    let third_ack = settled(
        &t,
        &case.referral_ids[2],
        "referral_acknowledgement",
        FATHER,
    )
    .await?;
    assert_suppressed_for_ids_only(&third_ack, &[&unsafe_referral]);

    // 4. Five working days on: the chase asks the mother, and not him.
    clock.advance(chrono::Duration::days(7) + chrono::Duration::hours(15)); // Tue 22 Dec 01:00
    let chased = case_of(&t, "UC-1", "the consent chase", |c| {
        count(c, "consent_chased") == 1
    })
    .await?;
    let to_mother = settled(&t, &chased.case_id, "consent_request", MOTHER).await?;
    assert_eq!(to_mother.status, "sent");
    let to_father = settled(&t, &chased.case_id, "consent_request", FATHER).await?;
    assert_suppressed_for_ids_only(&to_father, &[&unsafe_referral, &case.case_id]);

    // 5. Consent arrives with a further referral: his referral is screened, and its outcome is
    //    not sent to him.
    let mut consenting = marsh("UC-4", SCHOOL);
    consenting["consent"] = referral("x", None)["consent"].clone();
    t.publish_inbound("worcs", serde_json::to_vec(&consenting)?, "uc-4")
        .await?;
    let screened = settled(&t, &case.referral_id, "screening_outcome", FATHER).await?;
    assert_suppressed_for_ids_only(&screened, &[&unsafe_referral, &case.case_id]);

    // 6. A significant-harm referral steps the case up: the front door is told, the case's
    //    referrer (him) is not.
    let mut harm = marsh("UC-5", SCHOOL);
    harm["significant_harm_risk"] = json!(true);
    t.publish_inbound("worcs", serde_json::to_vec(&harm)?, "uc-5")
        .await?;
    let stepped = settled(&t, &case.case_id, "step_up_referrer", FATHER).await?;
    assert_suppressed_for_ids_only(&stepped, &[&unsafe_referral, &case.case_id]);
    assert_eq!(
        settled(&t, &case.case_id, "step_up_front_door", FRONT_DOOR)
            .await?
            .status,
        "sent"
    );

    // What reached the SMTP server: of everything, only the acknowledgement sent before he was
    // marked unsafe went to him.
    t.smtp.wait_for_template("consent_request", 1, WAIT).await?;
    let mails = t.smtp.messages();
    let to_him: Vec<_> = mails
        .iter()
        .filter(|m| m.to.iter().any(|a| a.eq_ignore_ascii_case(FATHER)))
        .collect();
    assert_eq!(to_him.len(), 1, "{to_him:#?}");
    assert!(
        mails.iter().any(|m| m.to.iter().any(|a| a == MOTHER)),
        "the mother was asked"
    );
    assert!(
        mails.iter().any(|m| m.to.iter().any(|a| a == FRONT_DOOR)),
        "the front door was told"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_contact_learned_late_embedded() -> anyhow::Result<()> {
    unsafe_contact_learned_late(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_contact_learned_late_distributed() -> anyhow::Result<()> {
    unsafe_contact_learned_late(true).await
}
