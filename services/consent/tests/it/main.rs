//! Store, handler and gRPC of the consent service against a real SQLite file (and PostgreSQL from
//! `eh_testkit`). Time is a ManualClock; the outbox is read straight from the database.
use chrono::{TimeZone, Utc};
use eh_auth::{Auditor, Principal};
use eh_bus::embedded::EmbeddedTransport;
use eh_bus::{Handled, Handler, Received, ServiceContext};
use eh_consent::grpc::ConsentApi;
use eh_consent::handlers::{Consent, ReferralReceivedHandler};
use eh_consent::{migrations, store};
use eh_platform::clock::ManualClock;
use eh_proto::consent::v1 as pb;
use eh_proto::consent::v1::consent_service_server::ConsentService;
use eh_proto::intake::v1 as intake;
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::{Code, Request};
use tonic_types::StatusExt;

struct Env {
    ctx: ServiceContext,
    api: ConsentApi,
    clock: Arc<ManualClock>,
    handler: ReferralReceivedHandler,
    _dir: tempfile::TempDir,
}

async fn env(postgres: bool) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let settings = eh_testkit::settings(false, dir.path(), None, None)
        .await
        .unwrap();
    let location = eh_testkit::service_location(postgres, dir.path(), "consent")
        .await
        .unwrap();
    let db = eh_store::connect(&location).await.unwrap();
    eh_store::migrate(&db, "consent", &migrations())
        .await
        .unwrap();
    let bus_db = eh_store::connect(&eh_testkit::sqlite(dir.path(), "bus.sqlite"))
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
    ));
    let ctx = ServiceContext::new(
        eh_consent::SERVICE,
        Arc::new(settings),
        db.clone(),
        Arc::new(EmbeddedTransport::open(bus_db).await.unwrap()),
        clock.clone(),
    );
    let consent = Consent { ctx: ctx.clone() };
    Env {
        api: ConsentApi {
            consent: consent.clone(),
            auditor: Auditor::new(db),
        },
        handler: ReferralReceivedHandler::new(consent),
        ctx,
        clock,
        _dir: dir,
    }
}

fn person(tenant: &str, subject: &str, roles: &[&str]) -> Principal {
    Principal::Person {
        tenant: tenant.into(),
        subject: subject.into(),
        agency: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

fn worker() -> Principal {
    person("worcs", "worker-1", &["practitioner"])
}

fn manager() -> Principal {
    person("worcs", "mgr-1", &["practitioner", "team_manager"])
}

fn req<T>(p: &Principal, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.extensions_mut().insert(p.clone());
    r
}

/// (subject, payload) of every outbox row, oldest first.
async fn outbox(db: &DatabaseConnection) -> Vec<(String, Vec<u8>)> {
    let rows = db
        .query_all_raw(eh_store::stmt(
            db.get_database_backend(),
            "SELECT subject, payload FROM eh_outbox ORDER BY id",
            [],
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
            )
        })
        .collect()
}

async fn events(e: &Env, event: &str) -> Vec<Vec<u8>> {
    outbox(&eh_testkit::inspector_of(&e.ctx.db).await.unwrap())
        .await
        .into_iter()
        .filter(|(s, _)| s.ends_with(&format!(".consent.{event}")))
        .map(|(_, p)| p)
        .collect()
}

fn referral_event(
    ns: &str,
    tenant: &str,
    event_id: &str,
    referral_id: &str,
    family: &str,
    obtained: bool,
) -> Received {
    let event = intake::ReferralReceived {
        referral_id: referral_id.into(),
        family_id: family.into(),
        received_at: "2026-03-02T09:00:00Z".into(),
        referral: Some(intake::Referral {
            family_members: vec![intake::FamilyMember {
                given_name: "Jo".into(),
                family_name: "Bloggs".into(),
                relationship: "mother".into(),
                parental_responsibility: Some(true),
                ..Default::default()
            }],
            consent: Some(intake::Consent {
                obtained: Some(obtained),
                given_by: Some("Jo Bloggs".into()),
                method: Some("signed".into()),
                date: Some("2026-03-01".into()),
                evidence_ref: Some("scan-77".into()),
                restrictions: vec![intake::ConsentRestriction {
                    category: "health".into(),
                    agency: Some("police".into()),
                }],
            }),
            ..Default::default()
        }),
        children: vec![],
        family_members: vec![],
        ..Default::default()
    };
    let mut headers = BTreeMap::new();
    headers.insert("Eh-Id".to_string(), event_id.to_string());
    Received {
        subject: format!("{ns}.{tenant}.intake.referral_received"),
        headers,
        payload: event.encode_to_vec().into(),
        delivered: 1,
        stream_seq: 1,
    }
}

fn check(family: &str, agency: &str, category: &str) -> pb::CheckSharingRequest {
    pb::CheckSharingRequest {
        tenant: "worcs".into(),
        family_id: family.into(),
        person_id: String::new(),
        agency: agency.into(),
        category: category.into(),
        purpose: "sharing".into(),
    }
}

fn consent(family: &str) -> pb::Consent {
    pb::Consent {
        family_id: family.into(),
        given_by: "Jo Bloggs".into(),
        giver_relationship: "mother".into(),
        parental_responsibility: true,
        method: "signed".into(),
        evidence_ref: "scan-1".into(),
        given_on: "2026-03-01".into(),
        purposes: vec!["assessment".into(), "sharing".into()],
        restrictions: vec![pb::Restriction {
            category: "mental_health".into(),
            agency: None,
        }],
        ..Default::default()
    }
}

async fn decide(e: &Env, p: &Principal, q: pb::CheckSharingRequest) -> pb::SharingDecision {
    e.api.check_sharing(req(p, q)).await.unwrap().into_inner()
}

// ---------------------------------------------------------------- scenarios

/// Referral events arriving together are handled in one transaction, each in a savepoint: 20
/// with consent, three without, four of them delivered twice at the same moment and one
/// republished under another event id give 20 records and 20 `consent_recorded`, each once. On
/// PostgreSQL (which cannot store a NUL) a referral whose consent evidence holds one fails alone,
/// and the records all come from one transaction or few.
async fn referrals_arriving_together_are_recorded_once_each(e: Env) {
    let ns = e.ctx.namespace().to_string();
    let postgres = e.ctx.db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let stored_in = match postgres {
        true => Some(
            eh_testkit::TopTransactions::watch(
                &eh_testkit::inspector_of(&e.ctx.db).await.unwrap(),
                "consent_records",
            )
            .await
            .unwrap(),
        ),
        false => None,
    };
    let event = |i: usize, obtained: bool| {
        referral_event(
            &ns,
            "worcs",
            &format!("0190f000-0000-7000-8000-{i:012}"),
            &format!("ref-b{i}"),
            &format!("fam-b{i}"),
            obtained,
        )
    };
    let mut deliveries: Vec<Received> = (0..23).map(|i| event(i, i < 20)).collect();
    let mut republished = event(0, true);
    republished.headers.insert(
        "Eh-Id".into(),
        "0190f000-0000-7000-8000-999999999999".into(),
    );
    deliveries.extend(deliveries[..4].to_vec());
    deliveries.push(republished);
    let mut poison = event(30, true);
    if postgres {
        let mut ev = intake::ReferralReceived::decode(poison.payload.as_ref()).unwrap();
        if let Some(c) = ev.referral.as_mut().and_then(|r| r.consent.as_mut()) {
            c.evidence_ref = Some("scan\0-77".into());
        }
        poison.payload = ev.encode_to_vec().into();
        deliveries.push(poison);
    }
    let results = futures::future::join_all(deliveries.iter().map(|m| e.handler.handle(m))).await;
    let (done, duplicates, failed) =
        eh_testkit::tally(results, &Handled::Done, &Handled::Duplicate);
    assert_eq!((done, duplicates), (24, 4), "{failed:?}");
    assert_eq!(failed.len(), usize::from(postgres), "{failed:?}");
    assert_eq!(
        store::count_records(&eh_testkit::inspector_of(&e.ctx.db).await.unwrap(), "worcs")
            .await
            .unwrap(),
        20
    );
    assert_eq!(events(&e, "consent_recorded").await.len(), 20);
    if postgres {
        assert!(failed[0].contains("0x00"), "{failed:?}");
        let (records, transactions) = stored_in
            .unwrap()
            .count(&eh_testkit::inspector_of(&e.ctx.db).await.unwrap())
            .await
            .unwrap();
        assert_eq!(records, 20, "the failed record went with its savepoint");
        assert!(
            transactions < 20,
            "{transactions} transactions for 20 records: not batched"
        );
    }
}

async fn referral_consent_is_recorded_once(e: Env) {
    let ns = e.ctx.namespace().to_string();
    let msg = referral_event(
        &ns,
        "worcs",
        "0190f000-0000-7000-8000-000000000001",
        "ref-1",
        "fam-1",
        true,
    );
    assert_eq!(e.handler.handle(&msg).await.unwrap(), Handled::Done);
    assert_eq!(e.handler.handle(&msg).await.unwrap(), Handled::Duplicate);
    // The same referral under another event id (a republish) is still one record.
    let again = referral_event(
        &ns,
        "worcs",
        "0190f000-0000-7000-8000-000000000002",
        "ref-1",
        "fam-1",
        true,
    );
    assert_eq!(e.handler.handle(&again).await.unwrap(), Handled::Done);
    assert_eq!(
        store::count_records(&eh_testkit::inspector_of(&e.ctx.db).await.unwrap(), "worcs")
            .await
            .unwrap(),
        1
    );
    let recorded = events(&e, "consent_recorded").await;
    assert_eq!(recorded.len(), 1);
    let ev = pb::ConsentRecorded::decode(recorded[0].as_slice()).unwrap();
    let rec = ev.record.unwrap();
    assert_eq!(rec.source, "referral:ref-1");
    let c = rec.consent.unwrap();
    assert_eq!((c.family_id.as_str(), c.person_id.as_str()), ("fam-1", ""));
    assert_eq!(c.purposes, ["assessment", "sharing", "contacting"]);
    assert_eq!(c.giver_relationship, "mother");
    assert!(c.parental_responsibility);
    assert_eq!(c.given_on, "2026-03-01");
    // The referral's restriction is enforced.
    let d = decide(&e, &worker(), check("fam-1", "police", "health")).await;
    assert!(!d.allowed, "{}", d.reason);
    assert_eq!(d.restriction.unwrap().agency.as_deref(), Some("police"));
    let d = decide(&e, &worker(), check("fam-1", "education", "health")).await;
    assert!(d.allowed, "{}", d.reason);
    assert_eq!(d.record_id, rec.record_id);
}

async fn referral_without_consent_records_and_emits_nothing(e: Env) {
    let ns = e.ctx.namespace().to_string();
    let msg = referral_event(
        &ns,
        "worcs",
        "0190f000-0000-7000-8000-000000000003",
        "ref-2",
        "fam-2",
        false,
    );
    assert_eq!(e.handler.handle(&msg).await.unwrap(), Handled::Done);
    assert_eq!(e.handler.handle(&msg).await.unwrap(), Handled::Duplicate);
    assert_eq!(
        store::count_records(&eh_testkit::inspector_of(&e.ctx.db).await.unwrap(), "worcs")
            .await
            .unwrap(),
        0
    );
    assert!(
        outbox(&eh_testkit::inspector_of(&e.ctx.db).await.unwrap())
            .await
            .is_empty()
    );
    let d = decide(&e, &worker(), check("fam-2", "health", "health")).await;
    assert!(!d.allowed);
    assert!(d.reason.contains("no consent"), "{}", d.reason);
}

async fn record_check_withdraw(e: Env) {
    let rec = e
        .api
        .record_consent(req(
            &worker(),
            pb::RecordConsentRequest {
                tenant: "worcs".into(),
                consent: Some(consent("fam-3")),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(events(&e, "consent_recorded").await.len(), 1);
    let d = decide(&e, &worker(), check("fam-3", "health", "education")).await;
    assert!(d.allowed, "{}", d.reason);
    assert_eq!(d.record_id, rec.record_id);
    let d = decide(&e, &worker(), check("fam-3", "voluntary", "mental_health")).await;
    assert!(!d.allowed);
    let mut contacting = check("fam-3", "health", "education");
    contacting.purpose = "contacting".into();
    assert!(!decide(&e, &worker(), contacting).await.allowed);

    e.clock.advance(chrono::Duration::hours(1));
    let w = e
        .api
        .withdraw_consent(req(
            &worker(),
            pb::WithdrawConsentRequest {
                tenant: "worcs".into(),
                record_id: rec.record_id.clone(),
                reason: "mother withdrew by phone".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(w.newly_withdrawn);
    let withdrawn = events(&e, "consent_withdrawn").await;
    assert_eq!(withdrawn.len(), 1);
    let ev = pb::ConsentWithdrawn::decode(withdrawn[0].as_slice()).unwrap();
    assert_eq!(ev.family_id, "fam-3");
    // At once: the very next check is denied.
    let d = decide(&e, &worker(), check("fam-3", "health", "education")).await;
    assert!(!d.allowed);
    assert!(d.reason.contains("withdrawn"), "{}", d.reason);
    // Again: the withdrawal held, no second event.
    let again = e
        .api
        .withdraw_consent(req(
            &worker(),
            pb::WithdrawConsentRequest {
                tenant: "worcs".into(),
                record_id: rec.record_id.clone(),
                reason: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.newly_withdrawn);
    assert_eq!(again.withdrawal_id, w.withdrawal_id);
    assert_eq!(events(&e, "consent_withdrawn").await.len(), 1);
    // The ledger keeps the record, with its withdrawal.
    let list = e
        .api
        .list_consent(req(
            &worker(),
            pb::ListConsentRequest {
                tenant: "worcs".into(),
                family_id: "fam-3".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.records.len(), 1);
    assert_eq!(
        list.records[0].withdrawal.as_ref().unwrap().withdrawal_id,
        w.withdrawal_id
    );
    // Every check was kept, with who asked.
    let kept = store::decisions(&eh_testkit::inspector_of(&e.ctx.db).await.unwrap(), "worcs")
        .await
        .unwrap();
    assert_eq!(kept.len(), 4);
    assert!(kept.iter().all(|k| k.0 == "person:worker-1"));
    assert_eq!(kept.iter().filter(|k| k.5).count(), 1);
    let audit = e.api.auditor.entries("worcs").await.unwrap();
    let decisions: Vec<_> = audit.iter().filter(|a| a.1 == "sharing_decision").collect();
    assert_eq!(decisions.len(), 4);
    assert_eq!(decisions.iter().filter(|a| a.3 == "allowed").count(), 1);
    // Unknown record: NOT_FOUND.
    let err = e
        .api
        .withdraw_consent(req(
            &worker(),
            pb::WithdrawConsentRequest {
                tenant: "worcs".into(),
                record_id: "nope".into(),
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

async fn tenants_are_kept_apart(e: Env) {
    let staffs = person("staffs", "s-worker", &["practitioner"]);
    // Same family id in both tenants; only worcs has consent.
    e.api
        .record_consent(req(
            &worker(),
            pb::RecordConsentRequest {
                tenant: "worcs".into(),
                consent: Some(consent("fam-x")),
            },
        ))
        .await
        .unwrap();
    let mut q = check("fam-x", "health", "education");
    q.tenant = "staffs".into();
    let d = decide(&e, &staffs, q).await;
    assert!(!d.allowed);
    assert!(d.reason.contains("no consent"), "{}", d.reason);
    let list = e
        .api
        .list_consent(req(
            &staffs,
            pb::ListConsentRequest {
                tenant: "staffs".into(),
                family_id: "fam-x".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(list.records.is_empty());
    // A staffs principal asking about worcs: PERMISSION_DENIED, audited as denied.
    let err = e
        .api
        .check_sharing(req(&staffs, check("fam-x", "health", "education")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let rec_id = store::family_records(
        &eh_testkit::inspector_of(&e.ctx.db).await.unwrap(),
        "worcs",
        "fam-x",
    )
    .await
    .unwrap()[0]
        .record
        .id
        .clone();
    let err = e
        .api
        .withdraw_consent(req(
            &staffs,
            pb::WithdrawConsentRequest {
                tenant: "worcs".into(),
                record_id: rec_id.clone(),
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Under its own tenant, staffs cannot reach the worcs record either.
    let err = e
        .api
        .withdraw_consent(req(
            &staffs,
            pb::WithdrawConsentRequest {
                tenant: "staffs".into(),
                record_id: rec_id,
                reason: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let audit = e.api.auditor.entries("worcs").await.unwrap();
    assert!(
        audit
            .iter()
            .any(|(actor, action, _, decision, _)| actor == "person:s-worker"
                && action == "CheckSharing"
                && decision == "denied")
    );
    assert!(
        store::decisions(&eh_testkit::inspector_of(&e.ctx.db).await.unwrap(), "worcs")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store::decisions(
            &eh_testkit::inspector_of(&e.ctx.db).await.unwrap(),
            "staffs"
        )
        .await
        .unwrap()
        .len(),
        1
    );
}

async fn invalid_input_is_reported_by_field(e: Env) {
    let mut c = consent("");
    c.method = "telepathy".into();
    c.given_on = "yesterday".into();
    c.purposes = vec!["gossip".into()];
    c.restrictions = vec![pb::Restriction {
        category: "shoes".into(),
        agency: Some("mi5".into()),
    }];
    let err = e
        .api
        .record_consent(req(
            &worker(),
            pb::RecordConsentRequest {
                tenant: "worcs".into(),
                consent: Some(c),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    for f in [
        "consent.family_id",
        "consent.method",
        "consent.given_on",
        "consent.purposes[0]",
        "consent.restrictions[0].category",
        "consent.restrictions[0].agency",
    ] {
        assert!(
            fields.contains(&f.to_string()),
            "{f} missing from {fields:?}"
        );
    }
    let err = e
        .api
        .check_sharing(req(&worker(), check("fam", "mi5", "shoes")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut q = check("fam", "health", "health");
    q.tenant = "nowhere".into();
    let err = e.api.check_sharing(req(&worker(), q)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        store::count_records(&eh_testkit::inspector_of(&e.ctx.db).await.unwrap(), "worcs")
            .await
            .unwrap(),
        0
    );
}

/// Several categories at once (`CheckSharingAll`): a decision per category as `CheckSharing`
/// would give it, each recorded with its own id, all on one audit entry; wrong input named by
/// field (the category by its place), nothing recorded.
async fn several_categories_at_once(e: Env) {
    e.api
        .record_consent(req(
            &worker(),
            pb::RecordConsentRequest {
                tenant: "worcs".into(),
                consent: Some(consent("fam-9")),
            },
        ))
        .await
        .unwrap();
    let ask = |categories: &[&str]| pb::CheckSharingAllRequest {
        tenant: "worcs".into(),
        family_id: "fam-9".into(),
        person_id: String::new(),
        agency: "police".into(),
        categories: categories.iter().map(|c| (*c).to_string()).collect(),
        purpose: "sharing".into(),
    };
    let before = e.api.auditor.entries("worcs").await.unwrap().len();
    let all = e
        .api
        .check_sharing_all(req(
            &worker(),
            ask(&["education", "mental_health", "housing"]),
        ))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(&str, bool)> = all
        .decisions
        .iter()
        .map(|d| {
            (
                d.category.as_str(),
                d.decision.as_ref().is_some_and(|d| d.allowed),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("education", true),
            ("mental_health", false),
            ("housing", true)
        ]
    );
    // As CheckSharing decides each.
    for d in &all.decisions {
        let one = decide(&e, &worker(), check("fam-9", "police", &d.category)).await;
        let many = d.decision.as_ref().unwrap();
        assert_eq!(
            (one.allowed, &one.record_id),
            (many.allowed, &many.record_id)
        );
        assert_ne!(
            one.decision_id, many.decision_id,
            "each decision is its own"
        );
    }
    let audit = e.api.auditor.entries("worcs").await.unwrap();
    // The admission, then one entry for the three decisions (then three single checks' pairs).
    let entry = &audit[before + 1];
    assert_eq!(entry.1, "sharing_decision");
    for d in &all.decisions {
        let id = &d.decision.as_ref().unwrap().decision_id;
        assert!(entry.2.contains(id.as_str()), "{}", entry.2);
    }
    assert!(entry.2.contains("mental_health:denied"), "{}", entry.2);

    for (bad, field) in [
        (ask(&[]), "categories"),
        (ask(&["education", "education"]), "categories[1]"),
        (ask(&["education", "shoes"]), "categories[1]"),
    ] {
        let err = e
            .api
            .check_sharing_all(req(&worker(), bad))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
}

fn override_request(requested_by: &str, expires_at: &str) -> pb::GrantOverrideRequest {
    pb::GrantOverrideRequest {
        tenant: "worcs".into(),
        family_id: "fam-o".into(),
        person_id: String::new(),
        requested_by: requested_by.into(),
        legal_basis: "Children Act 1989 s47 / DfE information sharing advice 2024".into(),
        reasoning: "disclosure of domestic abuse; risk to the children".into(),
        agencies: vec!["police".into()],
        categories: vec!["domestic_abuse".into()],
        purposes: vec!["sharing".into()],
        expires_at: expires_at.into(),
    }
}

async fn safeguarding_override(e: Env) {
    let until = "2026-03-09T09:00:00Z";
    // Not a manager: refused and audited.
    let err = e
        .api
        .grant_override(req(&worker(), override_request("worker-2", until)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // The manager cannot be the requester.
    let err = e
        .api
        .grant_override(req(&manager(), override_request("mgr-1", until)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["requested_by"]);
    // No legal basis; too long.
    let mut no_basis = override_request("worker-1", until);
    no_basis.legal_basis = " ".into();
    assert_eq!(
        e.api
            .grant_override(req(&manager(), no_basis))
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let err = e
        .api
        .grant_override(req(
            &manager(),
            override_request("worker-1", "2026-05-01T00:00:00Z"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(events(&e, "safeguarding_override_granted").await.is_empty());

    let q = || check("fam-o", "police", "domestic_abuse");
    assert!(!decide(&e, &worker(), q()).await.allowed);
    let o = e
        .api
        .grant_override(req(&manager(), override_request("worker-1", until)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(o.authorised_by, "person:mgr-1");
    assert_eq!(o.requested_by, "worker-1");
    let granted = events(&e, "safeguarding_override_granted").await;
    assert_eq!(granted.len(), 1);
    let ev = pb::SafeguardingOverrideGranted::decode(granted[0].as_slice()).unwrap();
    assert_eq!(ev.r#override.unwrap().override_id, o.override_id);
    let d = decide(&e, &worker(), q()).await;
    assert!(d.allowed, "{}", d.reason);
    assert_eq!(d.override_id, o.override_id);
    assert!(d.reason.contains("safeguarding override"), "{}", d.reason);
    // Out of scope: another agency.
    assert!(
        !decide(&e, &worker(), check("fam-o", "health", "domestic_abuse"))
            .await
            .allowed
    );
    // Expired: no longer applies.
    e.clock.advance(chrono::Duration::days(7));
    let d = decide(&e, &worker(), q()).await;
    assert!(!d.allowed, "{}", d.reason);
    assert!(d.override_id.is_empty());
    let list = e
        .api
        .list_consent(req(
            &worker(),
            pb::ListConsentRequest {
                tenant: "worcs".into(),
                family_id: "fam-o".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.overrides.len(), 1);
}

/// The wiring of `start`: the consumer takes `referral_received` from the intake stream, and the
/// relay publishes `consent_recorded` on the consent stream (embedded transport).
#[tokio::test]
async fn start_consumes_referrals_and_publishes_events() {
    let e = env(false).await;
    let ns = e.ctx.namespace().to_string();
    let transport = e.ctx.transport.clone();
    transport
        .ensure_streams(&eh_consent::streams(&ns))
        .await
        .unwrap();
    let auth = eh_auth::Authenticator::from_settings(&e.ctx.settings, None).unwrap();
    let _svc = eh_consent::start(e.ctx.clone(), &auth);
    let inbound = referral_event(&ns, "worcs", "", "ref-9", "fam-9", true);
    let envelope = eh_bus::Envelope::new(
        "earlyhelp.intake.v1.ReferralReceived",
        "worcs",
        "service:intake",
        Utc::now(),
    );
    transport
        .publish(&eh_bus::OutboundMessage::event(
            inbound.subject.clone(),
            &envelope,
            inbound.payload.to_vec(),
        ))
        .await
        .unwrap();
    let within = std::time::Duration::from_secs(20);
    eh_testkit::eventually(within, "consent recorded", || async {
        Ok(
            (store::count_records(&eh_testkit::inspector_of(&e.ctx.db).await.unwrap(), "worcs")
                .await?
                == 1)
                .then_some(()),
        )
    })
    .await
    .unwrap();
    let consent_stream = eh_bus::subjects::service_stream(&ns, eh_consent::SERVICE);
    let published = eh_testkit::eventually(within, "consent_recorded published", || async {
        let held = transport.list(&consent_stream, 10).await?;
        Ok((!held.is_empty()).then_some(held))
    })
    .await
    .unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(
        published[0].subject,
        format!("{ns}.worcs.consent.consent_recorded")
    );
    // The event continues the referral's chain.
    assert_eq!(
        published[0].headers.get("Eh-Correlation-Id"),
        Some(&envelope.correlation_id.to_string())
    );
    e.ctx.shutdown.cancel();
    e.ctx.tasks.close();
    e.ctx.tasks.wait().await;
    e.ctx.relay_shutdown.cancel();
    e.ctx.relay_tasks.close();
    e.ctx.relay_tasks.wait().await;
}

/// The ledger is append-only: the store never updates or deletes a row.
#[test]
fn the_store_never_updates_or_deletes() {
    let src = include_str!("../../src/store.rs").to_ascii_uppercase();
    assert!(!src.contains("UPDATE "), "store.rs contains an UPDATE");
    assert!(!src.contains("DELETE "), "store.rs contains a DELETE");
}

macro_rules! both {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::env(false).await).await })+
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::env(true).await).await })+
        }
    };
}

both!(
    referrals_arriving_together_are_recorded_once_each,
    referral_consent_is_recorded_once,
    referral_without_consent_records_and_emits_nothing,
    record_check_withdraw,
    tenants_are_kept_apart,
    invalid_input_is_reported_by_field,
    safeguarding_override,
    several_categories_at_once,
);
