//! The allocation service against a real database (SQLite, and PostgreSQL from `eh_testkit`): a
//! realistic Open Referral UK directory served over HTTP by a real server in the test (paged,
//! several taxonomies, inactive and withdrawn services, malformed records), imported, given the
//! council's terms, and searched through the gRPC API with the matcher's explanations; and the
//! access table walked for every method and role.
use eh_allocation::grpc::{ACCESS, AllocationApi};
use eh_allocation::handlers::Allocation;
use eh_auth::{Auditor, Principal};
use eh_bus::ServiceContext;
use eh_bus::embedded::EmbeddedTransport;
use eh_platform::clock::ManualClock;
use eh_platform::config::Section;
use eh_proto::allocation::v1 as pb;
use eh_proto::allocation::v1::allocation_service_server::AllocationService;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};
use std::sync::Arc;
use tonic::{Code, Request};
use tonic_types::StatusExt;

mod directory;
mod offers;
use directory::Directory;

struct Env {
    api: AllocationApi,
    ctx: ServiceContext,
    clock: Arc<ManualClock>,
    directory: Directory,
    location: eh_store::Location,
    _dir: tempfile::TempDir,
}

async fn env(postgres: bool, source: Option<Value>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let directory = Directory::serve().await;
    let mut settings = eh_testkit::settings(false, dir.path(), None, None)
        .await
        .unwrap();
    let source = source.unwrap_or_else(|| json!({"url": directory.url(), "per_page": 7}));
    let section = json!({
        "rule_version": "worcs-test-1",
        "programmes": [{"id": "brfc", "kind": "commissioned"}],
        "localities": {"Worcester City": ["WR1", "WR2", "WR3"]},
        "taxonomy_needs": [
            {"need": "domestic_abuse", "taxonomy": "esdServiceTypes", "terms": ["Domestic abuse support"]},
            {"need": "housing", "terms": ["Housing advice", "hsg-01"]},
            {"need": "mental_health", "taxonomy": "openActive", "terms": ["Wellbeing"]}
        ],
        "directory": source
    });
    settings.tenants.get_mut("worcs").unwrap().sections.insert(
        "allocation".into(),
        Section::from_json("tenants.worcs.allocation", section).unwrap(),
    );
    let location = eh_testkit::service_location(postgres, dir.path(), "allocation")
        .await
        .unwrap();
    let db = eh_store::connect(&location).await.unwrap();
    eh_store::migrate(&db, "allocation", &eh_allocation::migrations())
        .await
        .unwrap();
    let bus_db = eh_store::connect(&eh_testkit::sqlite(dir.path(), "bus.sqlite"))
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::parse_from_rfc3339("2026-11-02T09:00:00Z")
            .unwrap()
            .to_utc(),
    ));
    let ctx = ServiceContext::new(
        eh_allocation::SERVICE,
        Arc::new(settings),
        db.clone(),
        Arc::new(EmbeddedTransport::open(bus_db).await.unwrap()),
        clock.clone(),
    );
    let allocation = Allocation::new(ctx.clone()).unwrap();
    Env {
        api: AllocationApi {
            allocation,
            auditor: Auditor::new(db),
        },
        ctx,
        clock,
        directory,
        location,
        _dir: dir,
    }
}

fn person(tenant: &str, roles: &[&str]) -> Principal {
    Principal::Person {
        tenant: tenant.into(),
        subject: format!("{}-user", roles.first().unwrap_or(&"no-role")),
        agency: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

fn manager() -> Principal {
    person("worcs", &["team_manager"])
}

fn req<T>(p: &Principal, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.extensions_mut().insert(p.clone());
    r
}

async fn import(e: &Env) -> pb::DirectoryImport {
    e.api
        .import_directory(req(
            &manager(),
            pb::ImportDirectoryRequest {
                tenant: "worcs".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn search(
    e: &Env,
    postcode: &str,
    needs: &[&str],
    programmes: &[&str],
    ages: &[u32],
) -> pb::SearchDirectoryResponse {
    e.api
        .search_directory(req(
            &person("worcs", &["front_door"]),
            pb::SearchDirectoryRequest {
                tenant: "worcs".into(),
                postcode: postcode.into(),
                needs: needs.iter().map(|s| s.to_string()).collect(),
                programmes: programmes.iter().map(|s| s.to_string()).collect(),
                children_ages: ages.to_vec(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn set_terms(
    e: &Env,
    id: &str,
    terms: pb::ServiceTerms,
) -> Result<pb::DirectoryService, tonic::Status> {
    e.api
        .set_service_terms(req(
            &manager(),
            pb::SetServiceTermsRequest {
                tenant: "worcs".into(),
                service_id: id.into(),
                terms: Some(terms),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn eht(coverage: &[&str], capacity: u32) -> pb::ServiceTerms {
    pb::ServiceTerms {
        kind: "early_help_team".into(),
        coverage: coverage.iter().map(|s| s.to_string()).collect(),
        capacity,
        ..Default::default()
    }
}

fn commissioned(coverage: &[&str], needs: &[&str], capacity: u32, volume: u32) -> pb::ServiceTerms {
    pb::ServiceTerms {
        kind: "commissioned".into(),
        coverage: coverage.iter().map(|s| s.to_string()).collect(),
        needs: needs.iter().map(|s| s.to_string()).collect(),
        programmes: vec!["brfc".into()],
        capacity,
        contract_volume: volume,
        contract_period: "quarter".into(),
        offer_email: "offers@provider.test".into(),
        agency: String::new(),
    }
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let r = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await
        .unwrap()
        .unwrap();
    r.try_get_by_index(0).unwrap()
}

async fn imports_directory_with_every_refusal_named(postgres: bool) {
    let e = env(postgres, None).await;
    let first = import(&e).await;
    assert_eq!(first.outcome, "completed", "{first:?}");
    let d = &e.directory;
    // Every readable service is stored, the malformed ones refused with the path broken.
    assert_eq!(first.created as usize, d.readable(), "{first:?}");
    assert_eq!((first.updated, first.unchanged, first.withdrawn), (0, 0, 0));
    let mut refused: Vec<(String, String)> = first
        .refused
        .iter()
        .map(|r| (r.record.clone(), r.path.clone()))
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        [
            ("#45".to_string(), "/id".to_string()),
            ("svc-bad-age".into(), "/maximum_age".into()),
            ("svc-bad-name".into(), "/name".into()),
            ("svc-bad-status".into(), "/status".into()),
            ("svc-bad-term".into(), "/attributes/0/taxonomy_term".into()),
            ("svc-gone".into(), "".into()),
        ],
        "{:#?}",
        first.refused
    );
    // No refusal quotes the record's content.
    for r in &first.refused {
        assert!(!r.reason.contains("Broken"), "{r:?}");
    }
    // Taxonomy terms map to needs, case-insensitively, within their taxonomy.
    let da = e
        .api
        .get_service(req(
            &manager(),
            pb::GetServiceRequest {
                tenant: "worcs".into(),
                service_id: "svc-03".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(da.taxonomy_needs, ["domestic_abuse"], "{da:?}");
    assert!(!da.has_terms);

    // The same directory again: nothing changes.
    let again = import(&e).await;
    assert_eq!(
        (
            again.created,
            again.updated,
            again.unchanged as usize,
            again.withdrawn
        ),
        (0, 0, d.readable(), 0)
    );

    // Two services leave the source, one is renamed, one becomes inactive.
    d.remove("svc-01");
    d.remove("svc-02");
    d.edit("svc-04", |s| s["name"] = json!("Renamed family support"));
    d.edit("svc-05", |s| s["status"] = json!("inactive"));
    let third = import(&e).await;
    assert_eq!(third.withdrawn, 3, "two gone, one inactive: {third:?}");
    assert_eq!(third.updated, 2, "renamed and inactive: {third:?}");
    let withdrawn = count(
        &eh_testkit::inspector_of(&e.ctx.db).await.unwrap(),
        "SELECT COUNT(*) FROM directory_services WHERE withdrawn",
    )
    .await;
    assert_eq!(withdrawn, 2, "kept, marked withdrawn, not deleted");

    // A source answering with nothing withdraws nothing.
    d.set_empty(true);
    let empty = import(&e).await;
    assert_eq!(empty.outcome, "failed");
    assert!(
        empty.error.contains("nothing was changed"),
        "{}",
        empty.error
    );
    d.set_empty(false);
    // A source answering 500 fails the import, naming the request, changing nothing.
    d.set_failing(true);
    let broken = import(&e).await;
    assert_eq!(broken.outcome, "failed");
    assert!(broken.error.contains("HTTP 500"), "{}", broken.error);
    assert_eq!(
        count(
            &eh_testkit::inspector_of(&e.ctx.db).await.unwrap(),
            "SELECT COUNT(*) FROM directory_services WHERE withdrawn"
        )
        .await,
        2
    );
    // Every import is listed, newest first, and announced.
    let list = e
        .api
        .list_imports(req(
            &manager(),
            pb::ListImportsRequest {
                tenant: "worcs".into(),
                limit: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let outcomes: Vec<&str> = list.imports.iter().map(|i| i.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["failed", "failed", "completed", "completed", "completed"]
    );
    assert_eq!(
        count(
            &eh_testkit::inspector_of(&e.ctx.db).await.unwrap(),
            "SELECT COUNT(*) FROM eh_outbox WHERE subject LIKE '%.worcs.allocation.directory_imported'"
        )
        .await,
        5
    );
}

#[tokio::test]
async fn imports_a_served_directory_sqlite() {
    imports_directory_with_every_refusal_named(false).await;
}

#[tokio::test]
async fn imports_a_served_directory_postgres() {
    imports_directory_with_every_refusal_named(true).await;
}

#[tokio::test]
async fn imports_a_directory_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let services = directory::services();
    std::fs::write(file.path(), serde_json::to_vec(&services).unwrap()).unwrap();
    let e = env(false, Some(json!({"file": file.path()}))).await;
    let r = import(&e).await;
    assert_eq!(r.outcome, "completed");
    assert!(r.source.starts_with("file:"));
    // The file holds in full the two records the API lists without an id or answers 404 for, so:
    // every readable one and those two, and the four malformed refused.
    assert_eq!(r.created as usize, e.directory.readable() + 2, "{r:?}");
    assert_eq!(r.refused.len(), 4, "{:?}", r.refused);
}

#[tokio::test]
async fn search_ranks_by_the_councils_rules_and_explains_every_service() {
    let e = env(false, None).await;
    import(&e).await;
    // The council's own teams by locality; two commissioned BRFC providers.
    set_terms(&e, "svc-10", eht(&["Worcester City"], 20))
        .await
        .unwrap();
    set_terms(&e, "svc-15", eht(&["WR10", "WR11"], 20))
        .await
        .unwrap();
    set_terms(
        &e,
        "svc-03",
        commissioned(&["WR"], &["domestic_abuse"], 5, 30),
    )
    .await
    .unwrap();
    set_terms(
        &e,
        "svc-04",
        commissioned(&["WR1"], &["housing", "domestic_abuse"], 5, 30),
    )
    .await
    .unwrap();

    let s = search(&e, "wr1 4ab", &["housing"], &[], &[6, 12]).await;
    assert_eq!(
        (s.rule_version.as_str(), s.wanted_kind.as_str()),
        ("worcs-test-1", "early_help_team")
    );
    let first = &s.candidates[0];
    assert_eq!(
        (
            first.service.as_ref().unwrap().service_id.as_str(),
            first.rank
        ),
        ("svc-10", 1)
    );
    assert!(
        first
            .reasons
            .iter()
            .any(|r| r.contains("locality Worcester City")),
        "{first:?}"
    );
    let south = s
        .candidates
        .iter()
        .find(|c| c.service.as_ref().unwrap().service_id == "svc-15")
        .unwrap();
    assert!(
        south.excluded && south.reasons == ["does not cover WR1"],
        "{south:?}"
    );
    // Every service of the directory is accounted for, ranked or excluded.
    assert_eq!(s.candidates.len(), e.directory.readable());
    assert!(s.candidates.iter().filter(|c| !c.excluded).count() == 1);

    // BRFC: the commissioned provider that covers the family's needs best.
    let s = search(
        &e,
        "WR1 4AB",
        &["housing", "domestic_abuse"],
        &["brfc"],
        &[6],
    )
    .await;
    assert_eq!(s.wanted_kind, "commissioned");
    let ranked: Vec<(&str, u32)> = s
        .candidates
        .iter()
        .filter(|c| !c.excluded)
        .map(|c| (c.service.as_ref().unwrap().service_id.as_str(), c.rank))
        .collect();
    assert_eq!(ranked, [("svc-04", 1), ("svc-03", 2)]);

    // Bad searches: every field named, nothing quoted.
    let err = e
        .api
        .search_directory(req(
            &person("worcs", &["practitioner"]),
            pb::SearchDirectoryRequest {
                tenant: "worcs".into(),
                postcode: "SECRET".into(),
                needs: vec!["knitting".into()],
                programmes: vec![],
                children_ages: vec![40],
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
    assert_eq!(fields, ["postcode", "needs[0]", "children_ages[0]"]);
    assert!(!err.message().contains("SECRET"));

    // Bad terms: every field named; an unknown service is NOT_FOUND.
    let err = set_terms(
        &e,
        "svc-10",
        pb::ServiceTerms {
            kind: "team".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["terms.kind", "terms.coverage", "terms.capacity"]);
    let err = set_terms(&e, "svc-nope", eht(&["WR"], 3))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

/// Walks the access table: for every method, each role in it is admitted and every other role,
/// an upstream system and another council's manager are refused with PERMISSION_DENIED, audited.
#[tokio::test]
async fn every_method_is_behind_its_roles() {
    let e = env(false, None).await;
    import(&e).await;
    let all_roles = [
        "front_door",
        "team_manager",
        "practitioner",
        "commissioner",
        "business_support",
        "social_worker",
        "provider",
        "information_governance",
    ];
    let methods: Vec<&str> = ACCESS.iter().map(|(m, _)| *m).collect();
    assert_eq!(
        methods,
        [
            "ExportPersonData",
            "ImportDirectory",
            "ListImports",
            "SearchDirectory",
            "GetService",
            "SetServiceTerms",
            "ListOffers",
            "AcceptOffer",
            "DeclineOffer",
            "GetWaitingList",
            "RecordFamilyPreference",
            "AskLeadPractitioner",
            "AnswerLeadRequest",
            "ListLeadRequests"
        ],
        "a method of the service is missing from the walk"
    );
    async fn call(e: &Env, method: &str, p: &Principal) -> Result<(), tonic::Status> {
        let t = || "worcs".to_string();
        match method {
            "ExportPersonData" => e
                .api
                .export_person_data(req(
                    p,
                    eh_proto::records::v1::ExportPersonDataRequest {
                        tenant: t(),
                        person_id: "no-such-person".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "ImportDirectory" => e
                .api
                .import_directory(req(p, pb::ImportDirectoryRequest { tenant: t() }))
                .await
                .map(drop),
            "ListImports" => e
                .api
                .list_imports(req(
                    p,
                    pb::ListImportsRequest {
                        tenant: t(),
                        limit: 1,
                    },
                ))
                .await
                .map(drop),
            "SearchDirectory" => e
                .api
                .search_directory(req(
                    p,
                    pb::SearchDirectoryRequest {
                        tenant: t(),
                        postcode: "WR1 1AA".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "GetService" => e
                .api
                .get_service(req(
                    p,
                    pb::GetServiceRequest {
                        tenant: t(),
                        service_id: "svc-01".into(),
                    },
                ))
                .await
                .map(drop),
            "SetServiceTerms" => e
                .api
                .set_service_terms(req(
                    p,
                    pb::SetServiceTermsRequest {
                        tenant: t(),
                        service_id: "svc-01".into(),
                        terms: Some(eht(&["WR"], 3)),
                    },
                ))
                .await
                .map(drop),
            "ListOffers" => e
                .api
                .list_offers(req(
                    p,
                    pb::ListOffersRequest {
                        tenant: t(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "AcceptOffer" => e
                .api
                .accept_offer(req(
                    p,
                    pb::AcceptOfferRequest {
                        tenant: t(),
                        offer_id: "no-such-offer".into(),
                    },
                ))
                .await
                .map(drop),
            "DeclineOffer" => e
                .api
                .decline_offer(req(
                    p,
                    pb::DeclineOfferRequest {
                        tenant: t(),
                        offer_id: "no-such-offer".into(),
                        reason: "no_capacity".into(),
                        detail: String::new(),
                    },
                ))
                .await
                .map(drop),
            "GetWaitingList" => e
                .api
                .get_waiting_list(req(p, pb::GetWaitingListRequest { tenant: t() }))
                .await
                .map(drop),
            "RecordFamilyPreference" => e
                .api
                .record_family_preference(req(
                    p,
                    pb::RecordFamilyPreferenceRequest {
                        tenant: t(),
                        case_id: "no-such-case".into(),
                        preference: "a worker who speaks Polish".into(),
                    },
                ))
                .await
                .map(drop),
            "AskLeadPractitioner" => e
                .api
                .ask_lead_practitioner(req(
                    p,
                    pb::AskLeadPractitionerRequest {
                        tenant: t(),
                        case_id: "no-such-case".into(),
                        practitioner: "jdoe".into(),
                        note: String::new(),
                    },
                ))
                .await
                .map(drop),
            "AnswerLeadRequest" => e
                .api
                .answer_lead_request(req(
                    p,
                    pb::AnswerLeadRequestRequest {
                        tenant: t(),
                        request_id: "no-such-request".into(),
                        accept: true,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            "ListLeadRequests" => e
                .api
                .list_lead_requests(req(
                    p,
                    pb::ListLeadRequestsRequest {
                        tenant: t(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
            other => panic!("no call for {other}"),
        }
    }
    for (method, allowed) in ACCESS {
        for role in all_roles {
            let r = call(&e, method, &person("worcs", &[role])).await;
            if allowed.contains(&role) {
                // Admitted: it works, or fails for what it was asked (an offer, case or request
                // that does not exist is NOT_FOUND), never PERMISSION_DENIED.
                let code = r.as_ref().err().map(tonic::Status::code);
                let names_a_record = method.ends_with("Offer")
                    || matches!(
                        *method,
                        "RecordFamilyPreference" | "AskLeadPractitioner" | "AnswerLeadRequest"
                    )
                    // A provider's staff: another organisation's service is not found.
                    || (*method == "GetService" && role == "provider");
                assert!(
                    code.is_none() || (code == Some(Code::NotFound) && names_a_record),
                    "{method} as {role}: {r:?}"
                );
            } else {
                assert_eq!(
                    r.unwrap_err().code(),
                    Code::PermissionDenied,
                    "{method} as {role}"
                );
            }
        }
        let system = Principal::System {
            tenant: "worcs".into(),
            name: "school-mis".into(),
        };
        // An upstream system only where its row names one (the directory's reads).
        let r = call(&e, method, &system).await;
        if allowed.contains(&eh_service::access::UPSTREAM_SYSTEM) {
            let code = r.as_ref().err().map(tonic::Status::code);
            assert!(
                code.is_none() || code == Some(Code::NotFound),
                "{method} as a system: {r:?}"
            );
        } else {
            assert_eq!(
                r.unwrap_err().code(),
                Code::PermissionDenied,
                "{method} as a system"
            );
        }
        let other = person("staffs", &["team_manager", "commissioner", "front_door"]);
        assert_eq!(
            call(&e, method, &other).await.unwrap_err().code(),
            Code::PermissionDenied,
            "{method} from another council"
        );
    }
    let denied = count(
        &eh_testkit::inspector_of(&e.ctx.db).await.unwrap(),
        "SELECT COUNT(*) FROM eh_audit WHERE decision = 'denied'",
    )
    .await;
    // Each role its row does not name, a system unless it names one, and another council.
    let expected: usize = ACCESS
        .iter()
        .map(|(_, a)| {
            let system = !a.contains(&eh_service::access::UPSTREAM_SYSTEM);
            all_roles.iter().filter(|r| !a.contains(r)).count() + usize::from(system) + 1
        })
        .sum();
    assert_eq!(denied as usize, expected, "every refusal audited");
}

/// Two councils side by side: one council's directory and terms are invisible to the other.
#[tokio::test]
async fn another_councils_directory_is_not_visible() {
    let e = env(true, None).await;
    import(&e).await;
    let staffs = person("staffs", &["team_manager"]);
    let r = e
        .api
        .search_directory(req(
            &staffs,
            pb::SearchDirectoryRequest {
                tenant: "staffs".into(),
                postcode: "ST16 2AB".into(),
                ..Default::default()
            },
        ))
        .await;
    // Staffordshire has no allocation settings of its own here, but it is a council: its search
    // runs over its own (empty) directory.
    assert!(r.unwrap().into_inner().candidates.is_empty());
    let r = e
        .api
        .get_service(req(
            &staffs,
            pb::GetServiceRequest {
                tenant: "staffs".into(),
                service_id: "svc-01".into(),
            },
        ))
        .await;
    assert_eq!(r.unwrap_err().code(), Code::NotFound);
}
