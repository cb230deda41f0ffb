//! "Already known?": people matched against those the tenant holds, through the store path and
//! the gRPC door, on SQLite and PostgreSQL.
use super::{Env, person, received_events, req, stored, submit_to};
use eh_intake::domain::matching::CandidateStatus;
use eh_intake::handlers::Outcome;
use eh_intake::store;
use eh_intake::store::matches;
use eh_proto::intake::v1 as pb;
use eh_proto::intake::v1::intake_service_server::IntakeService;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use tonic::{Code, Request};

const LEO: &str = "2016-05-14";

pub(crate) fn doc(
    reference: &str,
    children: Vec<Value>,
    adults: Vec<Value>,
    postcode: Option<&str>,
) -> Value {
    let mut d = json!({
        "schema": "earlyhelp.referral.v1",
        "source": {"system": "school-mis", "reference": reference},
        "submitted_at": "2026-03-01T09:30:00Z",
        "route": "practitioner",
        "referrer": {"name": "A Teacher", "agency": "education"},
        "children": children,
        "family_members": adults,
        "needs": ["education"],
        "significant_harm_risk": false,
        "consent": {"obtained": true, "method": "signed", "date": "2026-03-01"}
    });
    if let Some(p) = postcode {
        d["address"] = json!({"line1": "4 Mill Lane", "postcode": p});
    }
    d
}

pub(crate) fn child(given: &str, family: &str, dob: &str) -> Value {
    json!({"given_name": given, "family_name": family, "date_of_birth": dob})
}

pub(crate) fn adult(given: &str, family: &str) -> Value {
    json!({"given_name": given, "family_name": family, "relationship": "mother",
           "parental_responsibility": true})
}

/// Leo Marsh (date of birth, no identifiers) and his mother Dana (no date of birth), DM1 4AB.
pub(crate) fn marsh(reference: &str) -> Value {
    doc(
        reference,
        vec![child("Leo", "Marsh", LEO)],
        vec![adult("Dana", "Marsh")],
        Some("DM1 4AB"),
    )
}

/// Ava Khan with an NHS number, at B60 1AA.
fn khan(reference: &str) -> Value {
    let mut ava = child("Ava", "Khan", "2015-03-04");
    ava["nhs_number"] = json!("9434765919");
    doc(reference, vec![ava], vec![], Some("B60 1AA"))
}

async fn people(e: &Env, tenant: &str) -> i64 {
    store::count_people(e.db(), tenant).await.unwrap()
}

async fn family_of(e: &Env, person_id: &str) -> String {
    let r = e
        .db()
        .query_one_raw(eh_store::stmt(
            e.db().get_database_backend(),
            "SELECT family_id FROM people WHERE id = $1",
            [person_id.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    r.try_get_by_index(0).unwrap()
}

fn practitioner() -> eh_auth::Principal {
    person("worcs", "worker-1", &["practitioner"])
}

fn manager() -> eh_auth::Principal {
    person("worcs", "mgr-1", &["team_manager"])
}

async fn list(e: &Env, status: Option<&str>) -> Vec<pb::MatchCandidate> {
    e.api
        .list_match_candidates(req(
            &practitioner(),
            pb::ListMatchCandidatesRequest {
                tenant: "worcs".into(),
                status: status.map(Into::into),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .candidates
}

fn resolve_req(id: &str, decision: &str, reason: &str) -> pb::ResolveMatchCandidateRequest {
    pb::ResolveMatchCandidateRequest {
        tenant: "worcs".into(),
        candidate_id: id.into(),
        decision: decision.into(),
        reason: reason.into(),
    }
}

async fn get_referral(e: &Env, id: &str) -> pb::ReferralRecord {
    e.api
        .get_referral(req(
            &practitioner(),
            pb::GetReferralRequest {
                tenant: "worcs".into(),
                referral_id: id.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

// ---------------------------------------------------------------- scenarios

pub async fn a_known_family_referred_again_is_attached_not_duplicated(e: Env) {
    let first = stored(&e.intake, "worcs", marsh("R-1")).await;
    assert!(!first.known_family && !first.re_referral);
    assert_eq!(people(&e, "worcs").await, 2);

    e.clock.advance(chrono::Duration::days(30));
    let mut again = marsh("R-2");
    again["children"][0]["given_name"] = json!("LEO");
    let second = stored(&e.intake, "worcs", again).await;
    assert_eq!(people(&e, "worcs").await, 2, "nobody was created again");
    assert_eq!(second.family_id, first.family_id);
    assert_eq!(second.children[0].person_id, first.children[0].person_id);
    assert_eq!(
        second.family_members[0].person_id,
        first.family_members[0].person_id
    );
    assert!(second.known_family && second.re_referral);
    assert_eq!(
        second.previous_referral_id.as_deref(),
        Some(first.id.as_str())
    );

    // Every decision is kept with its score and the fields behind it.
    let d = matches::decisions(e.db(), "worcs", &second.id)
        .await
        .unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].decision, "attach");
    assert_eq!(
        d[0].matched_person_id.as_deref(),
        Some(first.children[0].person_id.as_str())
    );
    assert_eq!(d[0].score, Some(6.5 + 7.5 + 11.0 + 5.0));
    let fields: Vec<String> = d[0]
        .fields
        .iter()
        .map(|f| format!("{:?}:{:?}", f.field, f.kind))
        .collect();
    assert_eq!(
        fields,
        [
            "GivenName:Exact",
            "FamilyName:Exact",
            "DateOfBirth:Exact",
            "Postcode:Exact"
        ]
    );
    // The mother has no date of birth: 19 points alone, attached with her son's household.
    assert_eq!(d[1].decision, "attach");
    assert_eq!(d[1].score, Some(6.5 + 7.5 + 5.0 + 4.0));
    assert!(
        d[1].fields
            .iter()
            .any(|f| f.field == eh_intake::domain::matching::Field::Household)
    );
    let d1 = matches::decisions(e.db(), "worcs", &first.id)
        .await
        .unwrap();
    assert_eq!(
        (d1[0].decision.as_str(), d1[0].score),
        ("new", None),
        "{d1:?}"
    );
    assert!(list(&e, None).await.is_empty());

    // The event and the record say so.
    let events = received_events(e.db()).await;
    assert_eq!(events.len(), 2);
    assert!(!events[0].known_family && !events[0].re_referral);
    assert!(events[1].known_family && events[1].re_referral);
    assert_eq!(events[1].family_id, first.family_id);
    assert_eq!(events[1].children[0].person_id, first.children[0].person_id);
    let rec = get_referral(&e, &second.id).await;
    assert!(rec.known_family && rec.re_referral);
    assert_eq!(rec.family_id, first.family_id);

    // A resubmission is still a duplicate, and changes nothing.
    match submit_to(&e.intake, "worcs", marsh("R-2")).await {
        Outcome::Duplicate { id, .. } => assert_eq!(id, second.id),
        other => panic!("{other:?}"),
    }
    assert_eq!(people(&e, "worcs").await, 2);
    assert_eq!(received_events(e.db()).await.len(), 2);
}

pub async fn identifiers_match_exactly_whatever_else_is_typed(e: Env) {
    let mut zak = child("Zak", "Khan", "2017-08-09");
    zak["upn"] = json!("B801200005001");
    let mut first = khan("K-1");
    first["children"].as_array_mut().unwrap().push(zak);
    let first = stored(&e.intake, "worcs", first).await;
    assert_eq!(people(&e, "worcs").await, 2);

    // The NHS number decides, though the names are misspelt, the date and the address differ.
    let mut eva = child("Eva", "Kahn", "2015-03-05");
    eva["nhs_number"] = json!("9434765919");
    let second = stored(
        &e.intake,
        "worcs",
        doc("K-2", vec![eva], vec![], Some("WR1 2AB")),
    )
    .await;
    assert_eq!(second.children[0].person_id, first.children[0].person_id);
    assert_eq!(second.family_id, first.family_id);
    let d = matches::decisions(e.db(), "worcs", &second.id)
        .await
        .unwrap();
    assert_eq!(d[0].decision, "exact");
    assert_eq!(d[0].identifier.as_deref(), Some("nhs_number"));
    assert!(d[0].score.is_some_and(|s| s > 0.0));

    // And so does the UPN.
    let mut zac = child("Zac", "Kahn", "2017-09-08");
    zac["upn"] = json!("B801200005001");
    let third = stored(&e.intake, "worcs", doc("K-3", vec![zac], vec![], None)).await;
    assert_eq!(third.children[0].person_id, first.children[1].person_id);
    let d = matches::decisions(e.db(), "worcs", &third.id)
        .await
        .unwrap();
    assert_eq!(
        (d[0].decision.as_str(), d[0].identifier.as_deref()),
        ("exact", Some("upn"))
    );
    assert_eq!(people(&e, "worcs").await, 2);
}

/// Whether `person_id` is marked unsafe to contact.
async fn unsafe_flag(e: &Env, person_id: &str) -> Option<bool> {
    e.db()
        .query_one_raw(eh_store::stmt(
            e.db().get_database_backend(),
            "SELECT safe_to_contact FROM people WHERE id = $1",
            [person_id.into()],
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

/// A safety flag follows the person: a referral that marks a held person unsafe marks the held
/// record; one that does not say so later clears nothing; and when a practitioner confirms that
/// a grey-zone person marked unsafe is a held person, the held person is unsafe and
/// `people_merged` says so (ids only), in the same transaction.
pub async fn an_unsafe_flag_follows_the_person_through_referrals_and_merges(e: Env) {
    let first = stored(&e.intake, "worcs", marsh("S-1")).await;
    let dana = first.family_members[0].person_id.clone();
    assert_eq!(unsafe_flag(&e, &dana).await, None);
    // Attached (the child by name and date of birth, Dana with the household), marked unsafe.
    let mut second = marsh("S-2");
    second["family_members"][0]["safe_to_contact"] = json!(false);
    let second = stored(&e.intake, "worcs", second).await;
    assert_eq!(second.family_members[0].person_id, dana);
    assert_eq!(unsafe_flag(&e, &dana).await, Some(false));
    // Saying she is safe clears nothing.
    let mut third = marsh("S-3");
    third["family_members"][0]["safe_to_contact"] = json!(true);
    stored(&e.intake, "worcs", third).await;
    assert_eq!(unsafe_flag(&e, &dana).await, Some(false));

    // A grey-zone father: a new record, marked unsafe; the held one is not (yet).
    let mut rob = adult("Rob", "Marsh");
    rob["relationship"] = json!("father");
    let mut held_rob = rob.clone();
    held_rob["email"] = json!("rob@example.org");
    let k1 = stored(
        &e.intake,
        "worcs",
        doc(
            "K-1",
            vec![child("Kai", "Marsh", "2019-02-02")],
            vec![held_rob],
            Some("DM2 9ZZ"),
        ),
    )
    .await;
    rob["safe_to_contact"] = json!(false);
    let k2 = stored(
        &e.intake,
        "worcs",
        doc(
            "K-2",
            vec![child("Zoe", "Marsh", "2025-12-01")],
            vec![rob],
            Some("DM2 9ZZ"),
        ),
    )
    .await;
    let (held, new) = (
        k1.family_members[0].person_id.clone(),
        k2.family_members[0].person_id.clone(),
    );
    assert_ne!(held, new, "left to a practitioner");
    assert_eq!(unsafe_flag(&e, &held).await, None);
    let pending = list(&e, Some("pending")).await;
    let c = pending
        .iter()
        .find(|c| c.referral_id == k2.id)
        .expect("a candidate for the father");
    e.api
        .resolve_match_candidate(req(
            &manager(),
            resolve_req(&c.candidate_id, "confirm", "same father"),
        ))
        .await
        .unwrap();
    assert_eq!(unsafe_flag(&e, &held).await, Some(false));
    let rows = e
        .db()
        .query_all_raw(eh_store::stmt(
            e.db().get_database_backend(),
            "SELECT payload FROM eh_outbox WHERE subject LIKE '%.intake.people_merged'",
            [],
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let ev = <pb::PeopleMerged as prost::Message>::decode(
        rows[0].try_get_by_index::<Vec<u8>>(0).unwrap().as_slice(),
    )
    .unwrap();
    assert_eq!(
        (ev.person_id.as_str(), ev.merged_person_id.as_str()),
        (held.as_str(), new.as_str())
    );
    assert!(ev.unsafe_to_contact);
    assert_eq!(ev.candidate_id, c.candidate_id);
}

pub async fn a_grey_zone_match_is_listed_and_confirmed_into_one_person(e: Env) {
    let first = stored(&e.intake, "worcs", marsh("G-1")).await;
    e.clock.advance(chrono::Duration::days(7));
    // A new baby and the mother, no date of birth for her: the mother scores 19 (grey zone).
    let second = stored(
        &e.intake,
        "worcs",
        doc(
            "G-2",
            vec![child("Mia", "Marsh", "2026-01-10")],
            vec![adult("Dana", "Marsh")],
            Some("DM1 4AB"),
        ),
    )
    .await;
    assert!(!second.known_family);
    assert_ne!(second.family_id, first.family_id);
    assert_eq!(people(&e, "worcs").await, 4, "the new people were created");
    let d = matches::decisions(e.db(), "worcs", &second.id)
        .await
        .unwrap();
    assert_eq!(
        (d[0].decision.as_str(), d[1].decision.as_str()),
        ("new", "candidates")
    );
    assert_eq!(d[1].score, Some(19.0));

    let pending = list(&e, Some("pending")).await;
    assert_eq!(pending.len(), 1);
    let c = &pending[0];
    assert_eq!(c.referral_id, second.id);
    assert_eq!(
        c.new_person.as_ref().unwrap().person_id,
        second.family_members[0].person_id
    );
    assert_eq!(
        c.existing_person.as_ref().unwrap().person_id,
        first.family_members[0].person_id
    );
    assert_eq!(c.existing_family_id, first.family_id);
    assert_eq!(c.referral_family_id, second.family_id);
    assert_eq!(c.score, 19.0);
    let fields: Vec<(&str, &str)> = c
        .fields
        .iter()
        .map(|f| (f.field.as_str(), f.kind.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("given_name", "exact"),
            ("family_name", "exact"),
            ("postcode", "exact")
        ]
    );
    assert_eq!(c.status, "pending");

    e.clock.advance(chrono::Duration::hours(2));
    let done = e
        .api
        .resolve_match_candidate(req(
            &manager(),
            resolve_req(
                &c.candidate_id,
                "confirm",
                "same mother: checked with the school",
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.status, "confirmed");
    assert_eq!(done.decided_by, "person:mgr-1");
    assert_eq!(done.reason, "same mother: checked with the school");
    assert_eq!(done.decided_at, e.ctx.clock.now().to_rfc3339());
    assert_eq!(done.referral_family_id, first.family_id);

    // Merged: one Dana, and the referral (with the baby) is the known family's.
    assert_eq!(people(&e, "worcs").await, 3);
    let rec = get_referral(&e, &second.id).await;
    assert_eq!(rec.family_id, first.family_id);
    assert!(rec.known_family && rec.re_referral);
    assert_eq!(
        rec.family_members[0].person_id,
        first.family_members[0].person_id
    );
    assert_eq!(
        family_of(&e, &rec.children[0].person_id).await,
        first.family_id
    );

    // Resolved once only.
    let err = e
        .api
        .resolve_match_candidate(req(
            &manager(),
            resolve_req(&c.candidate_id, "reject", "oops"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(list(&e, Some("pending")).await.is_empty());
    assert_eq!(list(&e, Some("confirmed")).await.len(), 1);

    // The merged record is out of the index: Dana is attached next time, not offered twice.
    let third = stored(
        &e.intake,
        "worcs",
        doc(
            "G-3",
            vec![child("Mia", "Marsh", "2026-01-10")],
            vec![adult("Dana", "Marsh")],
            Some("DM1 4AB"),
        ),
    )
    .await;
    assert_eq!(third.family_id, first.family_id);
    assert_eq!(
        third.family_members[0].person_id,
        first.family_members[0].person_id
    );
    assert_eq!(people(&e, "worcs").await, 3);
    assert!(list(&e, Some("pending")).await.is_empty());
}

pub async fn a_grey_zone_match_rejected_keeps_the_people_apart(e: Env) {
    let first = stored(&e.intake, "worcs", khan("X-1")).await;
    // Day and month swapped, no address, no NHS number: 20 points.
    let second = stored(
        &e.intake,
        "worcs",
        doc(
            "X-2",
            vec![child("Ava", "Khan", "2015-04-03")],
            vec![],
            None,
        ),
    )
    .await;
    assert_eq!(people(&e, "worcs").await, 2);
    let pending = list(&e, Some("pending")).await;
    assert_eq!(pending.len(), 1);
    let c = &pending[0];
    assert_eq!(c.score, 20.0);
    assert!(
        c.fields
            .iter()
            .any(|f| f.field == "date_of_birth" && f.kind == "transposed")
    );
    let done = e
        .api
        .resolve_match_candidate(req(
            &person("worcs", "fd-1", &["front_door"]),
            resolve_req(&c.candidate_id, "reject", "different child: other school"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (done.status.as_str(), done.decided_by.as_str()),
        ("rejected", "person:fd-1")
    );
    assert_eq!(people(&e, "worcs").await, 2);
    let rec = get_referral(&e, &second.id).await;
    assert_ne!(rec.family_id, first.family_id);
    assert!(!rec.known_family);
    assert_ne!(rec.children[0].person_id, first.children[0].person_id);
    let err = e
        .api
        .resolve_match_candidate(req(
            &manager(),
            resolve_req(&c.candidate_id, "confirm", "sure"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let all = list(&e, None).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, "rejected");
    let stored = matches::candidate(e.db(), "worcs", &c.candidate_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, CandidateStatus::Rejected);
}

pub async fn a_re_referral_is_flagged_within_twelve_months_only(e: Env) {
    let first = stored(&e.intake, "worcs", marsh("W-1")).await;
    e.clock.advance(chrono::Duration::days(90));
    let second = stored(&e.intake, "worcs", marsh("W-2")).await;
    assert!(second.known_family && second.re_referral);
    assert_eq!(
        second.previous_referral_id.as_deref(),
        Some(first.id.as_str())
    );
    // Thirteen months after the second: known, but not a re-referral.
    e.clock.advance(chrono::Duration::days(400));
    let third = stored(&e.intake, "worcs", marsh("W-3")).await;
    assert_eq!(third.family_id, first.family_id);
    assert!(third.known_family);
    assert!(!third.re_referral);
    assert_eq!(third.previous_referral_id, None);
    let flags: Vec<(bool, bool)> = received_events(e.db())
        .await
        .iter()
        .map(|ev| (ev.known_family, ev.re_referral))
        .collect();
    assert_eq!(flags, [(false, false), (true, true), (true, false)]);
    let rec = get_referral(&e, &third.id).await;
    assert!(rec.known_family && !rec.re_referral);
}

pub async fn a_person_held_by_one_council_is_never_matched_for_another(e: Env) {
    let worcs = stored(&e.intake, "worcs", khan("T-1")).await;
    let staffs = stored(&e.intake, "staffs", khan("T-1")).await;
    assert!(!staffs.known_family);
    assert_ne!(staffs.family_id, worcs.family_id);
    assert_ne!(staffs.children[0].person_id, worcs.children[0].person_id);
    let d = matches::decisions(e.db(), "staffs", &staffs.id)
        .await
        .unwrap();
    assert_eq!(d[0].decision, "new");
    assert_eq!(
        (people(&e, "worcs").await, people(&e, "staffs").await),
        (1, 1)
    );
    // Each council's next referral finds only its own.
    let again = stored(&e.intake, "staffs", khan("T-2")).await;
    assert_eq!(again.children[0].person_id, staffs.children[0].person_id);
    assert!(
        matches::candidates(e.db(), "staffs", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        (people(&e, "worcs").await, people(&e, "staffs").await),
        (1, 1)
    );
}

pub async fn another_replica_sees_every_change(e: Env) {
    let b = e.replica().await;
    // B builds its index first (holding one family), then A stores the Marshes.
    stored(&b, "worcs", khan("P-0")).await;
    let khans = people(&e, "worcs").await;
    assert!(khans > 0);
    assert_eq!(
        b.people.held("worcs").await,
        Some(khans as usize),
        "B's index holds the people its own batch created"
    );
    let first = stored(&e.intake, "worcs", marsh("P-1")).await;
    let second = stored(&b, "worcs", marsh("P-2")).await;
    assert_eq!(second.family_id, first.family_id);
    assert_eq!(second.children[0].person_id, first.children[0].person_id);
    assert_eq!(people(&e, "worcs").await, 3);

    // A grey-zone Dana through B, confirmed (merged) through A...
    stored(
        &b,
        "worcs",
        doc(
            "P-3",
            vec![child("Mia", "Marsh", "2026-01-10")],
            vec![adult("Dana", "Marsh")],
            Some("DM1 4AB"),
        ),
    )
    .await;
    let c = list(&e, Some("pending")).await;
    assert_eq!(c.len(), 1);
    e.api
        .resolve_match_candidate(req(
            &manager(),
            resolve_req(&c[0].candidate_id, "confirm", "same"),
        ))
        .await
        .unwrap();
    // ...and B no longer holds the merged record: Dana is attached, not offered twice.
    let after = stored(
        &b,
        "worcs",
        doc(
            "P-4",
            vec![child("Mia", "Marsh", "2026-01-10")],
            vec![adult("Dana", "Marsh")],
            Some("DM1 4AB"),
        ),
    )
    .await;
    assert_eq!(
        after.family_members[0].person_id,
        first.family_members[0].person_id
    );
    assert_eq!(after.family_id, first.family_id);
    assert_eq!(b.people.held("worcs").await, Some(4));
    assert_eq!(people(&e, "worcs").await, 4);
    // A replica that warms up ahead of its first referral reads the same people.
    let c2 = e.replica().await;
    assert_eq!(c2.people.warm(e.db(), "worcs").await.unwrap(), 4);
}

pub async fn two_replicas_taking_one_new_family_at_once_create_it_once(e: Env) {
    let b = e.replica().await;
    let (x, y) = tokio::join!(
        stored(&e.intake, "worcs", marsh("C-1")),
        stored(&b, "worcs", marsh("C-2"))
    );
    assert_eq!(people(&e, "worcs").await, 2);
    assert_eq!(x.family_id, y.family_id);
    assert_eq!(
        [x.known_family, y.known_family]
            .iter()
            .filter(|k| **k)
            .count(),
        1
    );
}

pub async fn match_candidates_are_for_people_roles_of_the_tenant_only(e: Env) {
    stored(&e.intake, "worcs", khan("D-1")).await;
    stored(
        &e.intake,
        "worcs",
        doc(
            "D-2",
            vec![child("Ava", "Khan", "2015-04-03")],
            vec![],
            None,
        ),
    )
    .await;
    let id = list(&e, Some("pending")).await[0].candidate_id.clone();
    let list_req = || pb::ListMatchCandidatesRequest {
        tenant: "worcs".into(),
        status: None,
    };

    // No principal.
    let err = e
        .api
        .list_match_candidates(Request::new(list_req()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = e
        .api
        .resolve_match_candidate(Request::new(resolve_req(&id, "confirm", "x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A role that may not see people, and an upstream system.
    let clerk = person("worcs", "clerk-1", &["business_support"]);
    let err = e
        .api
        .list_match_candidates(req(&clerk, list_req()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = e
        .api
        .resolve_match_candidate(req(&clerk, resolve_req(&id, "confirm", "x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let hub = eh_auth::Principal::System {
        tenant: "worcs".into(),
        name: "worcs-hub".into(),
    };
    let err = e
        .api
        .list_match_candidates(req(&hub, list_req()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Another council's practitioner.
    let other = person("staffs", "s-worker", &["practitioner", "team_manager"]);
    let err = e
        .api
        .list_match_candidates(req(&other, list_req()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = e
        .api
        .resolve_match_candidate(req(&other, resolve_req(&id, "confirm", "x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // ...who sees nothing of it under their own tenant either.
    let err = e
        .api
        .resolve_match_candidate(req(
            &other,
            pb::ResolveMatchCandidateRequest {
                tenant: "staffs".into(),
                ..resolve_req(&id, "confirm", "x")
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(list(&e, Some("pending")).await.len(), 1, "still pending");

    // Bad arguments.
    for (r, field) in [
        (resolve_req(&id, "merge", "x"), "decision"),
        (resolve_req(&id, "confirm", "  "), "reason"),
        (resolve_req("", "confirm", "x"), "candidate_id"),
    ] {
        let err = e
            .api
            .resolve_match_candidate(req(&manager(), r))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert!(err.message().contains(field), "{}", err.message());
    }
    let err = e
        .api
        .list_match_candidates(req(
            &practitioner(),
            pb::ListMatchCandidatesRequest {
                tenant: "worcs".into(),
                status: Some("maybe".into()),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = e
        .api
        .resolve_match_candidate(req(&manager(), resolve_req("no-such-id", "confirm", "x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Every access is on the trail, allowed or denied, with who and what.
    let audit = e.api.auditor.entries("worcs").await.unwrap();
    let denied = |actor: &str, action: &str| {
        audit
            .iter()
            .any(|a| a.0 == actor && a.1 == action && a.3 == "denied")
    };
    assert!(denied("person:clerk-1", "ListMatchCandidates"));
    assert!(denied("person:clerk-1", "ResolveMatchCandidate"));
    assert!(denied("system:worcs-hub", "ListMatchCandidates"));
    assert!(denied("person:s-worker", "ListMatchCandidates"));
    assert!(denied("person:s-worker", "ResolveMatchCandidate"));
    assert!(audit.iter().any(|a| a.0 == "person:worker-1"
        && a.1 == "ListMatchCandidates"
        && a.2 == "match_candidates:pending"
        && a.3 == "allowed"));
    assert!(audit.iter().any(|a| a.1 == "ResolveMatchCandidate"
        && a.2 == format!("match_candidate:{id}")
        && a.3 == "allowed"));
    assert_eq!(e.api.auditor.verify().await.unwrap(), None);
}
