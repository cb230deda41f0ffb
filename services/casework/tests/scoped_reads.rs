//! The gRPC reads of cases run in a transaction held to the caller's council: on PostgreSQL
//! (connected, as production must be, as an ordinary role — see `eh_testkit::APP_ROLE`) row-level
//! security hides another council's rows even from a query that filters by case id alone, as the
//! timeline's does. SQLite (embedded mode, no row-level security) shows the difference. A denial
//! for another council's case is still audited, in that council's name, with the chain intact.
mod common;

use chrono::Utc;
use eh_auth::{Auditor, Principal};
use eh_bus::{Handled, Handler};
use eh_casework::grpc::CaseworkApi;
use eh_casework::handlers::ReferralReceivedDoor;
use eh_casework::store;
use eh_proto::casework::v1 as pb;
use eh_proto::casework::v1::casework_service_server::CaseworkService;

struct Env {
    api: CaseworkApi,
    ns: String,
    _dir: tempfile::TempDir,
}

async fn env(postgres: bool) -> anyhow::Result<Env> {
    let dir = tempfile::tempdir()?;
    let casework = common::casework(postgres, dir.path()).await?;
    let (db, ns) = (
        casework.ctx.db.clone(),
        casework.ctx.namespace().to_string(),
    );
    Ok(Env {
        api: CaseworkApi {
            casework,
            auditor: Auditor::new(db.clone()),
            readers: eh_store::TenantReaders::new(db),
        },
        ns,
        _dir: dir,
    })
}

fn person(tenant: &str, subject: &str) -> Principal {
    Principal::Person {
        tenant: tenant.into(),
        subject: subject.into(),
        agency: None,
        roles: vec!["practitioner".into()],
    }
}

fn req<T>(p: &Principal, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.extensions_mut().insert(p.clone());
    r
}

async fn another_councils_row_is_hidden_from_a_case_read(postgres: bool) -> anyhow::Result<()> {
    let e = env(postgres).await?;
    let cw = &e.api.casework;
    assert_eq!(
        ReferralReceivedDoor(cw.clone())
            .handle(&common::referral(&e.ns, "1", "fam-1", false))
            .await?,
        Handled::Done
    );
    let case = store::list_cases(
        &eh_testkit::inspector_of(&cw.ctx.db).await?,
        "worcs",
        None,
        None,
        10,
    )
    .await?
    .into_iter()
    .next()
    .expect("a case");
    // A staffs row under worcs' case id: what a query filtering by case id alone would disclose
    // (written in the system scope, as a handler acting for staffs could).
    store::add_step(
        &eh_testkit::inspector_of(&cw.ctx.db).await?,
        "staffs",
        &case.id,
        Utc::now(),
        &store::Step {
            kind: "note",
            from: None,
            to: None,
            actor: "person:staffs-worker",
            reason: "staffs only",
            cause_id: "x",
        },
    )
    .await?;

    let worcs = person("worcs", "w-worker");
    let got = e
        .api
        .get_case(req(
            &worcs,
            pb::GetCaseRequest {
                tenant: "worcs".into(),
                case_id: case.id.clone(),
            },
        ))
        .await?
        .into_inner();
    let listed = e
        .api
        .list_cases(req(
            &worcs,
            pb::ListCasesRequest {
                tenant: "worcs".into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    assert_eq!(listed.cases.len(), 1);
    for timeline in [&got.timeline, &listed.cases[0].timeline] {
        assert!(!timeline.is_empty(), "worcs' own steps are shown");
        let leaked = timeline.iter().any(|t| t.reason == "staffs only");
        // Row-level security on PostgreSQL; embedded mode relies on the queries' filters alone.
        assert_eq!(leaked, !postgres, "{timeline:?}");
    }

    // A staffs practitioner asking for worcs' case: refused, and audited in worcs' name although
    // the caller belongs to staffs (the audit writes in the system scope, not the caller's).
    let staffs = person("staffs", "s-worker");
    let err = e
        .api
        .get_case(req(
            &staffs,
            pb::GetCaseRequest {
                tenant: "worcs".into(),
                case_id: case.id.clone(),
            },
        ))
        .await
        .expect_err("another council's case");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // Under its own council, the worcs case does not exist for staffs.
    let err = e
        .api
        .get_case(req(
            &staffs,
            pb::GetCaseRequest {
                tenant: "staffs".into(),
                case_id: case.id.clone(),
            },
        ))
        .await
        .expect_err("not theirs");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let entries = e.api.auditor.entries("worcs").await?;
    assert!(
        entries
            .iter()
            .any(|(actor, action, _, decision, _)| actor == "person:s-worker"
                && action == "GetCase"
                && decision == "denied"),
        "{entries:?}"
    );
    assert_eq!(e.api.auditor.verify().await?, None, "the chain is intact");
    Ok(())
}

#[tokio::test]
async fn postgres_another_councils_row_is_hidden_from_a_case_read() -> anyhow::Result<()> {
    another_councils_row_is_hidden_from_a_case_read(true).await
}

#[tokio::test]
async fn sqlite_has_no_row_level_security_so_a_case_read_shows_the_stray_row() -> anyhow::Result<()>
{
    another_councils_row_is_hidden_from_a_case_read(false).await
}

/// `GetCase` reads a case in one statement: it shows exactly what the separate reads of the case,
/// its lead, timeline, clocks and referrals show, in their order — here with a lead named, a
/// second referral attached and a clock settled — and nothing for another council's id.
async fn one_statement_shows_what_the_separate_reads_show(postgres: bool) -> anyhow::Result<()> {
    let e = env(postgres).await?;
    let cw = &e.api.casework;
    // No consent: the case waits with its consent clocks running.
    ReferralReceivedDoor(cw.clone())
        .handle(&common::referral(&e.ns, "1", "fam-1", false))
        .await?;
    let db = &eh_testkit::inspector_of(&cw.ctx.db).await?;
    let case = store::list_cases(db, "worcs", None, None, 10)
        .await?
        .into_iter()
        .next()
        .expect("a case");
    let later = Utc::now();
    store::attach_referral(db, "worcs", &case.id, "ref-0-earlier-id", later).await?;
    store::set_lead(
        db,
        "worcs",
        &case.id,
        &store::Lead {
            practitioner: "p-1".into(),
            organization_id: "org-1".into(),
        },
        later,
    )
    .await?;
    let timers = store::timers(db, &case.id).await?;
    assert!(!timers.is_empty(), "the consent clocks run");
    store::settle_timer(db, &timers[0].timer_id, "cancelled", later).await?;

    let got = e
        .api
        .get_case(req(
            &person("worcs", "w-worker"),
            pb::GetCaseRequest {
                tenant: "worcs".into(),
                case_id: case.id.clone(),
            },
        ))
        .await?
        .into_inner();
    let c = store::get_case(db, "worcs", &case.id).await?.expect("case");
    let lead = store::lead_of(db, &case.id).await?.expect("a lead");
    let expected = pb::Case {
        case_id: c.id.clone(),
        tenant: c.tenant.clone(),
        family_id: c.family_id.clone(),
        referral_id: c.referral_id.clone(),
        route: c.route.clone(),
        state: c.state.as_str().into(),
        opened_at: c.opened_at.to_rfc3339(),
        updated_at: c.updated_at.to_rfc3339(),
        source_system: c.source_system.clone(),
        source_reference: c.source_reference.clone(),
        timeline: store::timeline(db, &c.id).await?,
        timers: store::timers(db, &c.id).await?,
        referral_ids: store::referrals_of(db, &c.id).await?,
        lead_practitioner: lead.practitioner,
        lead_organization: lead.organization_id,
    };
    assert_eq!(got, expected);
    assert!(got.timeline.len() >= 2, "{:?}", got.timeline);
    assert_eq!(got.referral_ids.len(), 2);
    assert!(got.timers.iter().any(|t| !t.settled_at.is_empty()));

    // The same id under another council: not found (and no parts of it shown).
    assert_eq!(store::case_view(db, "staffs", &case.id).await?, None);
    Ok(())
}

#[tokio::test]
async fn postgres_one_statement_shows_what_the_separate_reads_show() -> anyhow::Result<()> {
    one_statement_shows_what_the_separate_reads_show(true).await
}

#[tokio::test]
async fn sqlite_one_statement_shows_what_the_separate_reads_show() -> anyhow::Result<()> {
    one_statement_shows_what_the_separate_reads_show(false).await
}
