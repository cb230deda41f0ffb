//! Offers: a case ready for allocation offered to the service the matcher ranks first, accepted
//! or declined by that service (a provider only for its own organisation), re-offered after a
//! decline (never to the same service), waiting when no service has a place — in the list's order
//! — and offered as soon as a place frees; two replicas racing for a service's last place.
use super::*;
use eh_allocation::handlers::{Consumer, Door};
use eh_allocation::offers::ClocksRun;
use eh_bus::{Handled, Handler, Received};
use prost::Message;
use std::collections::BTreeMap;

fn message(e: &Env, subject: &str, payload: Vec<u8>, id: &str) -> Received {
    let mut headers = BTreeMap::new();
    headers.insert("Eh-Id".to_string(), id.to_string());
    Received {
        subject: format!("{}.worcs.{subject}", e.ctx.namespace()),
        headers,
        payload: payload.into(),
        delivered: 1,
        stream_seq: 1,
    }
}

fn consumer(a: &Allocation, door: Door) -> Consumer {
    let name = match door {
        Door::ReferralReceived => "allocation_referral_received",
        Door::CaseReady => "allocation_case_ready",
        Door::CaseLeft => "allocation_case_closed",
    };
    Consumer {
        allocation: a.clone(),
        door,
        name,
    }
}

/// The referral (one child born on `born`) and the case it opened, ready for allocation.
async fn ready(e: &Env, a: &Allocation, case: &str, needs: &[&str], born: &str) -> Handled {
    let referral = eh_proto::intake::v1::ReferralReceived {
        referral_id: format!("ref-{case}"),
        family_id: format!("fam-{case}"),
        referral: Some(eh_proto::intake::v1::Referral {
            children: vec![eh_proto::intake::v1::Child {
                given_name: "Leo".into(),
                date_of_birth: Some(born.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    consumer(a, Door::ReferralReceived)
        .handle(&message(
            e,
            "intake.referral_received",
            referral.encode_to_vec(),
            &format!("rr-{case}"),
        ))
        .await
        .unwrap();
    let ev = eh_proto::casework::v1::CaseReadyForAllocation {
        case: Some(eh_proto::casework::v1::CaseRef {
            case_id: case.into(),
            family_id: format!("fam-{case}"),
            referral_id: format!("ref-{case}"),
            ..Default::default()
        }),
        needs: needs.iter().map(|s| s.to_string()).collect(),
        programmes_met: vec![],
        postcode: "WR1 4AB".into(),
        at: "2026-11-02T09:00:00Z".into(),
    };
    consumer(a, Door::CaseReady)
        .handle(&message(
            e,
            "casework.case_ready_for_allocation",
            ev.encode_to_vec(),
            &format!("ready-{case}"),
        ))
        .await
        .unwrap()
}

async fn closed(e: &Env, case: &str) {
    let ev = eh_proto::casework::v1::CaseClosed {
        case: Some(eh_proto::casework::v1::CaseRef {
            case_id: case.into(),
            ..Default::default()
        }),
        outcome: "closed_withdrawn".into(),
        ..Default::default()
    };
    consumer(&e.api.allocation, Door::CaseLeft)
        .handle(&message(
            e,
            "casework.case_closed",
            ev.encode_to_vec(),
            &format!("closed-{case}"),
        ))
        .await
        .unwrap();
}

/// (case, service) of every offer_made published, in order.
async fn offers_made(e: &Env) -> Vec<(String, String)> {
    outbox::<pb::OfferMade>(e, "offer_made")
        .await
        .into_iter()
        .map(|m| (m.case_id, m.service_id))
        .collect()
}

async fn outbox<T: Message + Default>(e: &Env, name: &str) -> Vec<T> {
    let db = &eh_testkit::inspector_of(&e.ctx.db).await.unwrap();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT payload FROM eh_outbox WHERE subject LIKE '%.allocation.{name}' ORDER BY id"
            ),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let b: Vec<u8> = r.try_get_by_index(0).unwrap();
            T::decode(b.as_slice()).unwrap()
        })
        .collect()
}

async fn offers(e: &Env, p: &Principal, case: &str) -> Vec<pb::Offer> {
    e.api
        .list_offers(req(
            p,
            pb::ListOffersRequest {
                tenant: "worcs".into(),
                case_id: case.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .offers
}

fn provider(org: &str) -> Principal {
    Principal::Person {
        tenant: "worcs".into(),
        subject: format!("worker-at-{org}"),
        agency: Some(org.into()),
        roles: vec!["provider".into()],
    }
}

async fn accept(e: &Env, p: &Principal, offer: &str) -> Result<pb::Offer, tonic::Status> {
    e.api
        .accept_offer(req(
            p,
            pb::AcceptOfferRequest {
                tenant: "worcs".into(),
                offer_id: offer.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn decline(
    e: &Env,
    p: &Principal,
    offer: &str,
    reason: &str,
    detail: &str,
) -> Result<pb::Offer, tonic::Status> {
    e.api
        .decline_offer(req(
            p,
            pb::DeclineOfferRequest {
                tenant: "worcs".into(),
                offer_id: offer.into(),
                reason: reason.into(),
                detail: detail.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn waiting_list(e: &Env) -> Vec<pb::WaitingCase> {
    e.api
        .get_waiting_list(req(
            &manager(),
            pb::GetWaitingListRequest {
                tenant: "worcs".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .cases
}

async fn ready_offered_accepted(postgres: bool) {
    let e = env(postgres, None).await;
    import(&e).await;
    // svc-10 is organisation org-4's, svc-15 org-3's.
    set_terms(&e, "svc-10", eht(&["Worcester City"], 3))
        .await
        .unwrap();
    let a = &e.api.allocation;
    assert_eq!(
        ready(&e, a, "case-1", &["housing"], "2018-01-01").await,
        Handled::Done
    );
    assert_eq!(
        offers_made(&e).await,
        [("case-1".to_string(), "svc-10".to_string())]
    );
    // The same event again changes nothing.
    assert_eq!(
        ready(&e, a, "case-1", &["housing"], "2018-01-01").await,
        Handled::Duplicate
    );
    assert_eq!(offers_made(&e).await.len(), 1);

    // The council sees the offer and why; the provider sees it without the reasons, and the
    // family's needs only as consent allows.
    let council = offers(&e, &manager(), "case-1").await;
    assert_eq!(council.len(), 1);
    assert_eq!(council[0].needs, ["housing"]);
    assert!(
        council[0]
            .reasons
            .iter()
            .any(|r| r.contains("Worcester City")),
        "{:?}",
        council[0]
    );
    let mine = offers(&e, &provider("org-4"), "case-1").await;
    assert_eq!(mine.len(), 1);
    assert!(
        mine[0].needs.is_empty() && mine[0].reasons.is_empty(),
        "{:?}",
        mine[0]
    );
    // No consent service answers here: the need is withheld, saying so (fail closed).
    assert_eq!(mine[0].withheld.len(), 1, "{:?}", mine[0].withheld);
    assert_eq!(mine[0].withheld[0].what, "1 of the family's needs");
    assert!(
        mine[0].withheld[0].reason.contains("could not be checked"),
        "{}",
        mine[0].withheld[0].reason
    );
    assert_eq!(
        (mine[0].district.as_str(), mine[0].children_ages.as_slice()),
        ("WR1", &[8][..])
    );
    // Another organisation sees nothing and cannot answer it.
    assert!(offers(&e, &provider("org-3"), "case-1").await.is_empty());
    let id = council[0].offer_id.clone();
    assert_eq!(
        accept(&e, &provider("org-3"), &id)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        decline(&e, &provider("org-3"), &id, "no_capacity", "")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // Neither attempt changed the offer; both are audited as denied.
    assert_eq!(offers(&e, &manager(), "case-1").await[0].status, "offered");
    assert_eq!(
        count(
            &eh_testkit::inspector_of(&e.ctx.db).await.unwrap(),
            "SELECT COUNT(*) FROM eh_audit WHERE decision = 'denied' AND reason LIKE '%another organisation%'"
        )
        .await,
        2
    );
    // A status the list does not know is refused, naming the field.
    let err = e
        .api
        .list_offers(req(
            &manager(),
            pb::ListOffersRequest {
                tenant: "worcs".into(),
                status: "pending".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "status"
    );

    let accepted = accept(&e, &provider("org-4"), &id).await.unwrap();
    assert_eq!(accepted.status, "accepted");
    let ev = outbox::<pb::OfferAccepted>(&e, "offer_accepted").await;
    assert_eq!(
        (ev.len(), ev[0].case_id.as_str(), ev[0].service_id.as_str()),
        (1, "case-1", "svc-10")
    );
    let again = accept(&e, &provider("org-4"), &id).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    // The place is held: one open case of three.
    let s = e
        .api
        .get_service(req(
            &manager(),
            pb::GetServiceRequest {
                tenant: "worcs".into(),
                service_id: "svc-10".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((s.open_cases, s.period_cases), (1, 1));
}

#[tokio::test]
async fn a_ready_case_is_offered_and_accepted_sqlite() {
    ready_offered_accepted(false).await;
}

#[tokio::test]
async fn a_ready_case_is_offered_and_accepted_postgres() {
    ready_offered_accepted(true).await;
}

#[tokio::test]
async fn a_decline_goes_to_the_next_service_and_never_back() {
    let e = env(false, None).await;
    import(&e).await;
    set_terms(&e, "svc-10", eht(&["WR1"], 3)).await.unwrap();
    set_terms(&e, "svc-15", eht(&["WR1"], 3)).await.unwrap();
    let a = &e.api.allocation;
    ready(&e, a, "case-1", &["housing"], "2018-01-01").await;
    let first = offers(&e, &manager(), "case-1").await.remove(0);
    let org = |svc: &str| if svc == "svc-10" { "org-4" } else { "org-3" };
    // "other" needs words; nothing changes when they are missing.
    let err = decline(
        &e,
        &provider(org(&first.service_id)),
        &first.offer_id,
        "other",
        " ",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(offers(&e, &manager(), "case-1").await.len(), 1);

    decline(
        &e,
        &provider(org(&first.service_id)),
        &first.offer_id,
        "no_capacity",
        "",
    )
    .await
    .unwrap();
    let made = offers_made(&e).await;
    assert_eq!(made.len(), 2);
    assert_ne!(made[1].1, first.service_id, "offered to the other service");
    let second = offers(&e, &manager(), "case-1")
        .await
        .into_iter()
        .find(|o| o.status == "offered")
        .unwrap();
    assert_eq!(second.attempt, 2);
    decline(
        &e,
        &provider(org(&second.service_id)),
        &second.offer_id,
        "outside_area",
        "",
    )
    .await
    .unwrap();
    // Both declined: never offered again to either, the case waits.
    assert_eq!(offers_made(&e).await.len(), 2);
    let waiting = outbox::<pb::CaseWaiting>(&e, "case_waiting").await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].case_id, "case-1");
    let list = waiting_list(&e).await;
    assert_eq!(list.len(), 1);
    assert!(
        list[0].reason.contains("declined this case before"),
        "{}",
        list[0].reason
    );
    let declined = outbox::<pb::OfferDeclined>(&e, "offer_declined").await;
    let reasons: Vec<&str> = declined.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons, ["no_capacity", "outside_area"]);
}

/// An offer unanswered within two working days lapses — counted on the council's calendar, across
/// Christmas (Friday 25 December and the substitute Boxing Day, Monday 28, 2026) — and the case
/// goes to the next service, never back; the clocks run once however often they are looked at.
async fn an_unanswered_offer_lapses_after_two_working_days(postgres: bool) {
    let e = env(postgres, None).await;
    import(&e).await;
    set_terms(&e, "svc-10", eht(&["WR1"], 3)).await.unwrap();
    set_terms(&e, "svc-15", eht(&["WR1"], 3)).await.unwrap();
    let a = &e.api.allocation;
    // Thursday 24 December 2026, 09:00.
    e.clock.advance(chrono::Duration::days(52));
    assert_eq!(e.ctx.clock.now().to_rfc3339(), "2026-12-24T09:00:00+00:00");
    ready(&e, a, "case-1", &["housing"], "2018-01-01").await;
    let first = offers(&e, &manager(), "case-1").await.remove(0);
    // Answered by the end of Wednesday 30 December (working days: 29th, 30th).
    assert_eq!(first.respond_by, "2026-12-31T00:00:00+00:00");
    let made = outbox::<pb::OfferMade>(&e, "offer_made").await;
    assert_eq!(made[0].respond_by, first.respond_by);

    // The evening of the 30th: still open.
    e.clock.advance(chrono::Duration::hours(6 * 24 + 14));
    assert_eq!(a.run_clocks().await.unwrap(), ClocksRun::default());
    assert_eq!(offers(&e, &manager(), "case-1").await[0].status, "offered");

    // Midnight: it lapses and the case goes to the other service.
    e.clock.advance(chrono::Duration::hours(1));
    assert_eq!(
        a.run_clocks().await.unwrap(),
        ClocksRun {
            expired: 1,
            breached: 0
        }
    );
    let all = offers(&e, &manager(), "case-1").await;
    let lapsed = all.iter().find(|o| o.offer_id == first.offer_id).unwrap();
    assert_eq!(
        (lapsed.status.as_str(), lapsed.settled_by.as_str()),
        ("expired", "system:allocation")
    );
    assert!(
        lapsed.respond_by.is_empty(),
        "a settled offer has no deadline"
    );
    let second = all.iter().find(|o| o.status == "offered").unwrap();
    assert_ne!(second.service_id, first.service_id);
    assert_eq!(second.attempt, 2);
    // Made on Thursday 31 December; Friday 1 January is a bank holiday, so the working days are
    // Monday 4th and Tuesday 5th → overdue from Wednesday 6th.
    assert_eq!(second.respond_by, "2027-01-06T00:00:00+00:00");
    let expired = outbox::<pb::OfferExpired>(&e, "offer_expired").await;
    assert_eq!(expired.len(), 1);
    assert_eq!(
        (expired[0].offer_id.as_str(), expired[0].service_id.as_str()),
        (first.offer_id.as_str(), first.service_id.as_str())
    );
    // Looked at again: nothing more.
    assert_eq!(a.run_clocks().await.unwrap(), ClocksRun::default());
    // The lapsed one can no longer be answered.
    let org = |svc: &str| if svc == "svc-10" { "org-4" } else { "org-3" };
    let late = accept(&e, &provider(org(&first.service_id)), &first.offer_id)
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);

    // The second lapses too: nobody else can take it, so it waits — never back to the first.
    e.clock.advance(chrono::Duration::days(6));
    assert_eq!(a.run_clocks().await.unwrap().expired, 1);
    assert_eq!(offers_made(&e).await.len(), 2);
    let list = waiting_list(&e).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].case_id, "case-1");
}

#[tokio::test]
async fn an_unanswered_offer_lapses_after_two_working_days_sqlite() {
    an_unanswered_offer_lapses_after_two_working_days(false).await;
}

#[tokio::test]
async fn an_unanswered_offer_lapses_after_two_working_days_postgres() {
    an_unanswered_offer_lapses_after_two_working_days(true).await;
}

/// A case waiting longer than the council's limit (20 working days by default) is reported once.
#[tokio::test]
async fn a_case_waiting_beyond_the_limit_is_reported_once() {
    let e = env(false, None).await;
    import(&e).await;
    let a = &e.api.allocation;
    // No service has terms: the case waits from Monday 2 November 2026, 09:00.
    ready(&e, a, "case-1", &["housing"], "2018-01-01").await;
    assert_eq!(waiting_list(&e).await.len(), 1);
    // 20 working days: 3 November … 30 November; overdue from Tuesday 1 December.
    e.clock
        .advance(chrono::Duration::days(28) + chrono::Duration::hours(14));
    assert_eq!(a.run_clocks().await.unwrap(), ClocksRun::default());
    e.clock.advance(chrono::Duration::hours(2));
    assert_eq!(
        a.run_clocks().await.unwrap(),
        ClocksRun {
            expired: 0,
            breached: 1
        }
    );
    let ev = outbox::<pb::WaitingLimitBreached>(&e, "waiting_limit_breached").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (
            ev[0].case_id.as_str(),
            ev[0].limit_days,
            ev[0].due_at.as_str(),
            ev[0].position
        ),
        ("case-1", 20, "2026-12-01T00:00:00+00:00", 1)
    );
    e.clock.advance(chrono::Duration::days(3));
    assert_eq!(a.run_clocks().await.unwrap(), ClocksRun::default());
    assert_eq!(
        outbox::<pb::WaitingLimitBreached>(&e, "waiting_limit_breached")
            .await
            .len(),
        1
    );
}

fn practitioner(subject: &str, org: &str) -> Principal {
    Principal::Person {
        tenant: "worcs".into(),
        subject: subject.into(),
        agency: Some(org.into()),
        roles: vec!["practitioner".into()],
    }
}

async fn ask_lead(
    e: &Env,
    p: &Principal,
    case: &str,
    who: &str,
) -> Result<pb::LeadRequest, tonic::Status> {
    e.api
        .ask_lead_practitioner(req(
            p,
            pb::AskLeadPractitionerRequest {
                tenant: "worcs".into(),
                case_id: case.into(),
                practitioner: who.into(),
                note: "works Wednesdays, as the family asked".into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn answer_lead(
    e: &Env,
    p: &Principal,
    request: &str,
    decline: Option<(&str, &str)>,
) -> Result<pb::LeadRequest, tonic::Status> {
    let (reason, detail) = decline.unwrap_or_default();
    e.api
        .answer_lead_request(req(
            p,
            pb::AnswerLeadRequestRequest {
                tenant: "worcs".into(),
                request_id: request.into(),
                accept: decline.is_none(),
                reason: reason.into(),
                detail: detail.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn lead_requests(e: &Env, p: &Principal) -> Vec<pb::LeadRequest> {
    e.api
        .list_lead_requests(req(
            p,
            pb::ListLeadRequestsRequest {
                tenant: "worcs".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .requests
}

/// The family's preference is recorded and shown to the service; once it accepts, it asks a
/// practitioner to lead, who may decline only with a listed reason and words (recorded, the
/// reason published without the words), and the next one asked accepts: the case has its lead.
/// Only the practitioner asked answers; another organisation sees and does nothing.
async fn a_lead_practitioner_is_named_after_a_decline(postgres: bool) {
    let e = env(postgres, None).await;
    import(&e).await;
    // svc-10 is organisation org-4's.
    set_terms(&e, "svc-10", eht(&["WR1"], 3)).await.unwrap();
    let a = &e.api.allocation;
    ready(&e, a, "case-1", &["housing"], "2018-01-01").await;
    let offer = offers(&e, &manager(), "case-1").await.remove(0);
    assert_eq!(offer.service_id, "svc-10");

    // The family's preference, recorded by the front door; checked, and not for another org.
    let preference = |p: Principal, text: &str| {
        let api = &e.api;
        let text = text.to_string();
        async move {
            api.record_family_preference(req(
                &p,
                pb::RecordFamilyPreferenceRequest {
                    tenant: "worcs".into(),
                    case_id: "case-1".into(),
                    preference: text,
                },
            ))
            .await
            .map(tonic::Response::into_inner)
        }
    };
    let wants = "Mum asks for a worker she has not met before, not on Tuesdays";
    let err = preference(person("worcs", &["front_door"]), "bell\u{7}")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(!err.message().contains("bell"), "{}", err.message());
    let err = preference(provider("org-3"), wants).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let recorded = preference(person("worcs", &["front_door"]), wants)
        .await
        .unwrap();
    assert_eq!(recorded.preference, wants);
    assert_eq!(recorded.recorded_by, "person:front_door-user");
    let mine = offers(&e, &provider("org-4"), "case-1").await;
    assert_eq!(mine[0].family_preference, wants);

    // No lead before the service accepts.
    let early = ask_lead(&e, &provider("org-4"), "case-1", "worker-a")
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    accept(&e, &provider("org-4"), &offer.offer_id)
        .await
        .unwrap();
    // Another organisation cannot ask.
    let other = ask_lead(&e, &provider("org-3"), "case-1", "worker-x")
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);

    let first = ask_lead(&e, &provider("org-4"), "case-1", "worker-a")
        .await
        .unwrap();
    assert_eq!(
        (first.status.as_str(), first.family_preference.as_str()),
        ("asked", wants)
    );
    let open = ask_lead(&e, &provider("org-4"), "case-1", "worker-b")
        .await
        .unwrap_err();
    assert_eq!(open.code(), Code::FailedPrecondition);
    // Only worker-a answers it.
    let not_mine = answer_lead(
        &e,
        &practitioner("worker-b", "org-4"),
        &first.request_id,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(not_mine.code(), Code::NotFound);
    // A decline needs a listed reason and words.
    let bare = answer_lead(
        &e,
        &practitioner("worker-a", "org-4"),
        &first.request_id,
        Some(("caseload_full", " ")),
    )
    .await
    .unwrap_err();
    assert_eq!(bare.code(), Code::InvalidArgument);
    assert_eq!(
        bare.get_details_bad_request().unwrap().field_violations[0].field,
        "detail"
    );
    let why = "I hold 31 families and cannot visit weekly";
    let declined = answer_lead(
        &e,
        &practitioner("worker-a", "org-4"),
        &first.request_id,
        Some(("caseload_full", why)),
    )
    .await
    .unwrap();
    assert_eq!(
        (
            declined.status.as_str(),
            declined.decline_reason.as_str(),
            declined.decline_detail.as_str()
        ),
        ("declined", "caseload_full", why)
    );
    let ev = outbox::<pb::LeadPractitionerDeclined>(&e, "lead_practitioner_declined").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].practitioner.as_str(), ev[0].reason.as_str()),
        ("worker-a", "caseload_full")
    );
    assert!(
        !format!("{:?}", ev[0]).contains("31 families"),
        "the words stay in allocation"
    );
    // Answered once only.
    let twice = answer_lead(
        &e,
        &practitioner("worker-a", "org-4"),
        &first.request_id,
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);

    let second = ask_lead(&e, &provider("org-4"), "case-1", "worker-b")
        .await
        .unwrap();
    answer_lead(
        &e,
        &practitioner("worker-b", "org-4"),
        &second.request_id,
        None,
    )
    .await
    .unwrap();
    let named = outbox::<pb::LeadPractitionerNamed>(&e, "lead_practitioner_named").await;
    assert_eq!(named.len(), 1);
    assert_eq!(
        (
            named[0].case_id.as_str(),
            named[0].practitioner.as_str(),
            named[0].organization_id.as_str()
        ),
        ("case-1", "worker-b", "org-4")
    );
    assert_eq!(
        offers(&e, &manager(), "case-1").await[0].lead_practitioner,
        "worker-b"
    );
    let again = ask_lead(&e, &provider("org-4"), "case-1", "worker-c")
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    // Who sees which requests.
    let n = |v: Vec<pb::LeadRequest>| v.len();
    assert_eq!(n(lead_requests(&e, &manager()).await), 2);
    assert_eq!(n(lead_requests(&e, &provider("org-4")).await), 2);
    assert_eq!(n(lead_requests(&e, &provider("org-3")).await), 0);
    let a_sees = lead_requests(&e, &practitioner("worker-a", "org-4")).await;
    assert_eq!(a_sees.len(), 1);
    assert_eq!(a_sees[0].request_id, first.request_id);
    // Every refusal of another organisation or person is audited.
    assert_eq!(
        count(
            &eh_testkit::inspector_of(&e.ctx.db).await.unwrap(),
            "SELECT COUNT(*) FROM eh_audit WHERE decision = 'denied'
               AND (reason LIKE '%another organisation%' OR reason LIKE '%practitioner asked%')"
        )
        .await,
        3
    );
}

#[tokio::test]
async fn a_lead_practitioner_is_named_after_a_decline_sqlite() {
    a_lead_practitioner_is_named_after_a_decline(false).await;
}

#[tokio::test]
async fn a_lead_practitioner_is_named_after_a_decline_postgres() {
    a_lead_practitioner_is_named_after_a_decline(true).await;
}

#[tokio::test]
async fn with_no_place_cases_wait_in_order_and_a_freed_place_goes_to_the_first() {
    let e = env(false, None).await;
    import(&e).await;
    set_terms(&e, "svc-10", eht(&["WR1"], 1)).await.unwrap();
    let a = &e.api.allocation;
    ready(&e, a, "case-a", &["housing"], "2018-01-01").await;
    ready(&e, a, "case-b", &["housing"], "2017-01-01").await;
    // Later, but of significant need (three headline needs): ahead of case-b.
    ready(
        &e,
        a,
        "case-c",
        &["housing", "education", "health"],
        "2016-01-01",
    )
    .await;
    assert_eq!(
        offers_made(&e).await,
        [("case-a".to_string(), "svc-10".to_string())]
    );
    let list = waiting_list(&e).await;
    let order: Vec<(&str, u32, bool)> = list
        .iter()
        .map(|c| (c.case_id.as_str(), c.position, c.significant_need))
        .collect();
    assert_eq!(order, [("case-c", 1, true), ("case-b", 2, false)]);
    assert!(
        list[0].reason.contains("no free capacity"),
        "{}",
        list[0].reason
    );
    assert_eq!(list[0].district, "WR1");

    let offer = offers(&e, &manager(), "case-a").await.remove(0);
    accept(&e, &manager(), &offer.offer_id).await.unwrap();
    // Accepted, the place stays taken; closing the case frees it for the first waiting case.
    assert_eq!(offers_made(&e).await.len(), 1);
    closed(&e, "case-a").await;
    let made = offers_made(&e).await;
    assert_eq!(
        made.last().unwrap(),
        &("case-c".to_string(), "svc-10".to_string())
    );
    assert_eq!(
        waiting_list(&e)
            .await
            .iter()
            .map(|c| c.case_id.as_str())
            .collect::<Vec<_>>(),
        ["case-b"]
    );
    // More capacity lets the next one in at once.
    set_terms(&e, "svc-10", eht(&["WR1"], 2)).await.unwrap();
    assert_eq!(offers_made(&e).await.last().unwrap().0, "case-b");
    assert!(waiting_list(&e).await.is_empty());
}

/// Two replicas of allocation on one PostgreSQL database, each handling a different case at the
/// same moment, for a service with one place: one case is offered, the other waits — every round.
#[tokio::test]
async fn two_replicas_racing_for_the_last_place_one_wins() {
    let e = env(true, None).await;
    import(&e).await;
    set_terms(&e, "svc-10", eht(&["WR1"], 1)).await.unwrap();
    let db2 = eh_store::connect(&e.location).await.unwrap();
    let ctx2 = ServiceContext::new(
        eh_allocation::SERVICE,
        e.ctx.settings.clone(),
        db2,
        e.ctx.transport.clone(),
        e.ctx.clock.clone(),
    );
    let one = e.api.allocation.clone();
    let two = Allocation::new(ctx2).unwrap();
    for round in 0..5 {
        let (x, y) = (format!("r{round}-x"), format!("r{round}-y"));
        let (rx, ry) = tokio::join!(
            ready(&e, &one, &x, &["housing"], "2018-01-01"),
            ready(&e, &two, &y, &["housing"], "2018-01-01"),
        );
        assert_eq!((rx, ry), (Handled::Done, Handled::Done));
        let open: Vec<pb::Offer> = e
            .api
            .list_offers(req(
                &manager(),
                pb::ListOffersRequest {
                    tenant: "worcs".into(),
                    status: "offered".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .offers;
        assert_eq!(open.len(), 1, "round {round}: {open:?}");
        let waiting = waiting_list(&e).await;
        assert_eq!(waiting.len(), 1, "round {round}");
        // Withdraw both for the next round.
        closed(&e, &open[0].case_id).await;
        let next = offers(&e, &manager(), &waiting[0].case_id).await;
        assert_eq!(next.len(), 1, "the waiting case took the freed place");
        closed(&e, &waiting[0].case_id).await;
    }
}
