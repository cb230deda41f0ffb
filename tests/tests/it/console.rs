//! The web console's pages that change things, against the running platform in both modes (real
//! services over gRPC, each person's own token): consent withdrawal, the two-person safeguarding
//! override (the person who asks cannot approve; another team manager can; a restricted reader
//! and another council see nothing of it), and a provider's offers. Sessions are made as the
//! console makes them at sign-in (the sign-in itself is tested in services/gateway/tests and in
//! the browser).
use eh_gateway::session::{self, SignedIn, TokenKey};
use eh_proto::casework::v1 as cw;
use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
use eh_proto::consent::v1 as consent;
use eh_proto::consent::v1::consent_service_client::ConsentServiceClient;
use eh_tests::{TestApp, referral, with_token};
use sea_orm::ConnectionTrait;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A signed-in person of the console: their cookie and CSRF token.
struct Person {
    cookie: String,
    csrf: String,
}

struct Console<'a> {
    t: &'a TestApp,
    key: TokenKey,
    db: sea_orm::DatabaseConnection,
    http: reqwest::Client,
}

struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

impl<'a> Console<'a> {
    async fn new(t: &'a TestApp) -> anyhow::Result<Self> {
        let settings = &t.app().settings;
        let g = eh_gateway::settings::GatewaySettings::from_settings(settings)
            .map_err(anyhow::Error::msg)?;
        Ok(Self {
            t,
            key: TokenKey::from_settings(settings, &g.console).map_err(anyhow::Error::msg)?,
            db: t.db("gateway").await?,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    /// A session for `subject` of `tenant` with `roles`, as sign-in makes one.
    async fn person(&self, tenant: &str, subject: &str, roles: &[&str]) -> anyhow::Result<Person> {
        self.signed_in(tenant, subject, self.t.token(tenant, subject, roles))
            .await
    }

    /// A session for `subject` of `agency` (a provider's: its organisation id).
    async fn person_of(
        &self,
        tenant: &str,
        subject: &str,
        roles: &[&str],
        agency: &str,
    ) -> anyhow::Result<Person> {
        self.signed_in(
            tenant,
            subject,
            self.t.token_of(tenant, subject, roles, agency),
        )
        .await
    }

    async fn signed_in(
        &self,
        tenant: &str,
        subject: &str,
        token: String,
    ) -> anyhow::Result<Person> {
        let now = chrono::Utc::now();
        let user = SignedIn {
            subject: subject.into(),
            id_token: token,
            end_session_url: None,
        };
        let t = session::Timeouts {
            idle: chrono::Duration::minutes(30),
            absolute: chrono::Duration::hours(1),
        };
        let (id, csrf) = session::sign_in(
            &self.db,
            &self.key,
            None,
            tenant,
            &user,
            now + chrono::Duration::hours(1),
            now,
            t,
        )
        .await?;
        Ok(Person {
            cookie: format!("eh-session={id}"),
            csrf,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.t.app().http_addr)
    }

    async fn answer(res: reqwest::Response) -> anyhow::Result<Page> {
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Page {
            status,
            location,
            body: res.text().await?,
        })
    }

    async fn get(&self, p: &Person, path: &str) -> anyhow::Result<Page> {
        Self::answer(
            self.http
                .get(self.url(path))
                .header("cookie", &p.cookie)
                .send()
                .await?,
        )
        .await
    }

    /// Posts `fields` with the person's CSRF token.
    async fn post(&self, p: &Person, path: &str, fields: &[(&str, &str)]) -> anyhow::Result<Page> {
        let mut form: Vec<(&str, &str)> = vec![("csrf", p.csrf.as_str())];
        form.extend_from_slice(fields);
        Self::answer(
            self.http
                .post(self.url(path))
                .header("cookie", &p.cookie)
                .form(&form)
                .send()
                .await?,
        )
        .await
    }

    async fn request_rows(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        let b = self.db.get_database_backend();
        // Read across councils, as the operator would: the test checks what was kept.
        let txn = eh_store::begin_system(&self.db, eh_store::SystemWorker::ConsoleSessions).await?;
        let rows = txn
            .query_all_raw(eh_store::stmt(
                b,
                "SELECT tenant, requested_by, status FROM gateway_override_requests ORDER BY requested_at",
                [],
            ))
            .await?;
        eh_store::commit(txn).await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.try_get_by_index(0).unwrap_or_default(),
                    r.try_get_by_index(1).unwrap_or_default(),
                    r.try_get_by_index(2).unwrap_or_default(),
                )
            })
            .collect())
    }
}

/// The case of `reference`, once casework holds it with its consent recorded.
async fn case_with_consent(
    t: &TestApp,
    reference: &str,
) -> anyhow::Result<(cw::Case, consent::ListConsentResponse)> {
    let cases = CaseworkServiceClient::new(t.channel().await?);
    let ledger = ConsentServiceClient::new(t.channel().await?);
    let token = t.token("worcs", "reader", &["front_door"]);
    eh_testkit::eventually(WAIT, "the case and its consent", || {
        let (mut cases, mut ledger, token) = (cases.clone(), ledger.clone(), token.clone());
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
            let Some(case) = list
                .cases
                .into_iter()
                .find(|c| c.source_reference == reference)
            else {
                return Ok(None);
            };
            let l = ledger
                .list_consent(with_token(
                    consent::ListConsentRequest {
                        tenant: "worcs".into(),
                        family_id: case.family_id.clone(),
                    },
                    &token,
                ))
                .await?
                .into_inner();
            Ok((!l.records.is_empty()).then_some((case, l)))
        }
    })
    .await
}

async fn ledger(t: &TestApp, family_id: &str) -> anyhow::Result<consent::ListConsentResponse> {
    let token = t.token("worcs", "reader", &["front_door"]);
    Ok(ConsentServiceClient::new(t.channel().await?)
        .list_consent(with_token(
            consent::ListConsentRequest {
                tenant: "worcs".into(),
                family_id: family_id.into(),
            },
            &token,
        ))
        .await?
        .into_inner())
}

async fn console_pages_that_change_things(distributed: bool) -> anyhow::Result<()> {
    let t = TestApp::spawn(distributed).await?;
    t.publish_inbound(
        "worcs",
        serde_json::to_vec(&referral("CON-1", None))?,
        "con-1",
    )
    .await?;
    let (case, held) = case_with_consent(&t, "CON-1").await?;
    let c = Console::new(&t).await?;
    let override_path = format!("/console/cases/{}/override", case.case_id);

    let asker = c.person("worcs", "tm-asks", &["team_manager"]).await?;
    let approver = c.person("worcs", "tm-approves", &["team_manager"]).await?;
    let practitioner = c.person("worcs", "eh-worker", &["practitioner"]).await?;
    let reader = c
        .person("worcs", "bs-reader", &["business_support"])
        .await?;
    let other = c.person("staffs", "staffs-tm", &["team_manager"]).await?;

    // ---- the two-person override ----
    let page = c.get(&asker, &override_path).await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Ask for an override"), "{}", page.body);
    // An incomplete request: every missing field named, nothing kept.
    let page = c
        .post(
            &asker,
            &override_path,
            &[("legal_basis", ""), ("days", "90")],
        )
        .await?;
    assert_eq!(page.status, 400);
    for e in [
        "Enter the legal basis",
        "Select the agencies",
        "Select what may be shared",
        "Select what it may be used for",
        "from 1 to 30",
    ] {
        assert!(page.body.contains(e), "{e} missing");
    }
    assert!(c.request_rows().await?.is_empty());
    // A forged request (another session's CSRF token): refused, nothing kept.
    let forged = Person {
        cookie: asker.cookie.clone(),
        csrf: approver.csrf.clone(),
    };
    let fields = [
        ("legal_basis", "Children Act 1989 s47"),
        (
            "reasoning",
            "Disclosure at school; asking the parents would put the child at risk.",
        ),
        ("agencies", "health"),
        ("agencies", "police"),
        ("categories", "all"),
        ("purposes", "sharing"),
        ("days", "7"),
    ];
    let page = c.post(&forged, &override_path, &fields).await?;
    assert_eq!(page.status, 403);
    assert!(c.request_rows().await?.is_empty());
    // The restricted reader may not read the family's consent: no request from them either.
    let page = c.post(&reader, &override_path, &fields).await?;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body
            .contains("Your role does not allow you to do this")
    );
    assert!(c.request_rows().await?.is_empty());
    // The asker asks.
    let page = c.post(&asker, &override_path, &fields).await?;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.location.as_deref(),
        Some(format!("{override_path}?done=requested").as_str())
    );
    assert_eq!(
        c.request_rows().await?,
        [(
            "worcs".to_string(),
            "person:tm-asks".to_string(),
            "pending".to_string()
        )]
    );
    // The asker's page says another must approve, and has no approve button for them.
    let page = c.get(&asker, &override_path).await?;
    assert!(page.body.contains("You asked for this override"));
    assert!(!page.body.contains("Approve the override"));
    let rid = {
        let list = c.get(&approver, "/console/override-requests").await?;
        assert_eq!(list.status, 200);
        assert!(list.body.contains("tm-asks"), "{}", list.body);
        let page = c.get(&approver, &override_path).await?;
        assert!(page.body.contains("Approve the override"));
        let at = page
            .body
            .find("/console/override-requests/")
            .expect("the approve form");
        let rest = &page.body[at + "/console/override-requests/".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    };
    let approve = format!("/console/override-requests/{rid}");
    // The asker cannot approve their own request, even by posting the form themselves.
    let page = c.post(&asker, &approve, &[]).await?;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("you cannot approve it"));
    // A practitioner is not a team manager: the consent service refuses, the request waits.
    let page = c.post(&practitioner, &approve, &[]).await?;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body
            .contains("Your role does not allow you to do this")
    );
    // Another council's manager: no such request for them.
    let page = c.post(&other, &approve, &[]).await?;
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(ledger(&t, &case.family_id).await?.overrides.is_empty());
    assert_eq!(c.request_rows().await?[0].2, "pending");
    // Another team manager approves: the consent service grants it, naming both.
    let page = c.post(&approver, &approve, &[]).await?;
    assert_eq!(page.status, 303, "{}", page.body);
    let l = ledger(&t, &case.family_id).await?;
    assert_eq!(l.overrides.len(), 1);
    assert_eq!(l.overrides[0].requested_by, "person:tm-asks");
    assert_eq!(l.overrides[0].authorised_by, "person:tm-approves");
    assert_eq!(l.overrides[0].legal_basis, "Children Act 1989 s47");
    assert_eq!(c.request_rows().await?[0].2, "granted");
    // Approving again changes nothing.
    let page = c.post(&approver, &approve, &[]).await?;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("no longer waiting"));
    assert_eq!(ledger(&t, &case.family_id).await?.overrides.len(), 1);
    // The restricted reader sees the page's withheld notice and nothing of the override.
    let page = c.get(&reader, &override_path).await?;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("withheld"), "{}", page.body);
    assert!(!page.body.contains("Children Act 1989 s47"));
    assert!(!page.body.contains("Ask for an override"));
    let list = c.get(&reader, "/console/override-requests").await?;
    assert!(list.body.contains("Only a team manager"));
    // Another council: no such case.
    let page = c.get(&other, &override_path).await?;
    assert_eq!(page.status, 404);
    assert!(!page.body.contains("Children Act"));

    // ---- consent withdrawal ----
    let record = &held.records[0].record_id;
    let withdraw = format!("/console/cases/{}/consent/{record}/withdraw", case.case_id);
    let case_page = c
        .get(&practitioner, &format!("/console/cases/{}", case.case_id))
        .await?;
    assert!(
        case_page.body.contains(&withdraw),
        "the case page links to it"
    );
    let page = c.get(&reader, &withdraw).await?;
    assert!(page.body.contains("Consent is withheld"));
    assert!(!page.body.contains("name=\"reason\""));
    // The reader's own (valid) form is refused by the consent service: nothing withdrawn.
    let page = c.post(&reader, &withdraw, &[("reason", "forged")]).await?;
    assert_eq!(page.status, 400);
    assert!(
        page.body
            .contains("Your role does not allow you to do this")
    );
    assert!(
        ledger(&t, &case.family_id).await?.records[0]
            .withdrawal
            .is_none()
    );
    let page = c.get(&practitioner, &withdraw).await?;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Withdraw consent"));
    let page = c.post(&practitioner, &withdraw, &[("reason", " ")]).await?;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("Enter why the consent is withdrawn"));
    let page = c
        .post(
            &practitioner,
            &withdraw,
            &[("reason", "The mother withdrew it by phone.")],
        )
        .await?;
    assert_eq!(page.status, 303, "{}", page.body);
    let l = ledger(&t, &case.family_id).await?;
    let w = l.records[0].withdrawal.as_ref().expect("withdrawn");
    assert_eq!(w.withdrawn_by, "person:eh-worker");
    assert_eq!(w.reason, "The mother withdrew it by phone.");
    // Another council's person gets no such case.
    let page = c.post(&other, &withdraw, &[("reason", "x")]).await?;
    assert_eq!(page.status, 404);

    // ---- offers ----
    let fd = c.person("worcs", "fd", &["front_door"]).await?;
    let page = c.get(&fd, "/console/offers").await?;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("There are no offers to answer"),
        "{}",
        page.body
    );
    let page = c.get(&reader, "/console/offers").await?;
    assert!(page.body.contains("Offers are withheld"), "{}", page.body);
    // An answer without a decision, or declining without a reason: the form says so.
    let page = c.post(&asker, "/console/offers/o-1", &[]).await?;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("Select whether you accept or decline"));
    let page = c
        .post(
            &asker,
            "/console/offers/o-1",
            &[("decision", "decline"), ("reason", "other")],
        )
        .await?;
    assert!(page.body.contains("Say why you decline"));
    // An offer the council does not hold: allocation says so.
    let page = c
        .post(
            &asker,
            "/console/offers/no-such-offer",
            &[("decision", "accept")],
        )
        .await?;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("no such record"), "{}", page.body);
    // A reader may not answer offers.
    let page = c
        .post(
            &reader,
            "/console/offers/no-such-offer",
            &[("decision", "accept")],
        )
        .await?;
    assert!(
        page.body
            .contains("Your role does not allow you to do this")
    );
    Ok(())
}

#[tokio::test]
async fn console_pages_that_change_things_embedded() -> anyhow::Result<()> {
    console_pages_that_change_things(false).await
}

#[tokio::test]
async fn console_pages_that_change_things_distributed() -> anyhow::Result<()> {
    console_pages_that_change_things(true).await
}

/// A council whose directory has its Early Help Team North (run for it by a voluntary
/// organisation, `worcs-cc`), given terms; a consented referral (the family does not agree to
/// share mental health with voluntary agencies) is offered to it.
async fn offered(distributed: bool) -> anyhow::Result<(TestApp, cw::Case)> {
    use eh_proto::allocation::v1 as apb;
    use eh_proto::allocation::v1::allocation_service_client::AllocationServiceClient;
    let t = TestApp::spawn_configured(distributed, |s, dir| {
        let file = dir.join("directory.json");
        let services = serde_json::json!([
            {"id": "eht-north", "name": "Early Help Team North", "status": "active",
             "organization": {"id": "worcs-cc", "name": "Worcestershire County Council"}}
        ]);
        std::fs::write(&file, serde_json::to_vec(&services).expect("json")).expect("write");
        let section = serde_json::json!({"rule_version": "console-1", "directory": {"file": file}});
        if let Some(w) = s.tenants.get_mut("worcs") {
            w.sections.insert(
                "allocation".into(),
                eh_platform::config::Section::from_json("tenants.worcs.allocation", section)
                    .expect("section"),
            );
        }
    })
    .await?;
    let manager = t.token("worcs", "tm-1", &["team_manager"]);
    let mut alloc = AllocationServiceClient::new(t.channel().await?);
    alloc
        .import_directory(with_token(
            apb::ImportDirectoryRequest {
                tenant: "worcs".into(),
            },
            &manager,
        ))
        .await?;
    alloc
        .set_service_terms(with_token(
            apb::SetServiceTermsRequest {
                tenant: "worcs".into(),
                service_id: "eht-north".into(),
                terms: Some(apb::ServiceTerms {
                    kind: "early_help_team".into(),
                    coverage: vec!["DM1".into()],
                    capacity: 10,
                    agency: "voluntary".into(),
                    offer_email: "offers@eht-north.example".into(),
                    ..Default::default()
                }),
            },
            &manager,
        ))
        .await?;
    let mut doc = referral("CON-OFFER", None);
    doc["consent"]["restrictions"] =
        serde_json::json!([{"category": "mental_health", "agency": "voluntary"}]);
    t.publish_inbound("worcs", serde_json::to_vec(&doc)?, "con-offer")
        .await?;
    let cases = CaseworkServiceClient::new(t.channel().await?);
    let token = t.token("worcs", "reader", &["front_door"]);
    let case = eh_testkit::eventually(WAIT, "the case to be offered", || {
        let (mut cases, token) = (cases.clone(), token.clone());
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
                .find(|c| c.source_reference == "CON-OFFER" && c.state == "allocating"))
        }
    })
    .await?;
    Ok((t, case))
}

async fn offers_are_answered_in_the_console(distributed: bool) -> anyhow::Result<()> {
    let (t, case) = offered(distributed).await?;
    let c = Console::new(&t).await?;
    let provider = c
        .person_of("worcs", "worker-1", &["provider"], "worcs-cc")
        .await?;
    let stranger = c
        .person_of("worcs", "worker-9", &["provider"], "other-org")
        .await?;
    let reader = c
        .person("worcs", "bs-reader", &["business_support"])
        .await?;
    // The provider's staff see their offer, with what consent withholds from them said so.
    let page = c.get(&provider, "/console/offers").await?;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Early Help Team North"), "{}", page.body);
    assert!(page.body.contains(&case.case_id[case.case_id.len() - 8..]));
    assert!(page.body.contains("withheld"), "the withheld need is said");
    assert!(!page.body.contains("Mental health"), "{}", page.body);
    let at = page.body.find("/console/offers/").expect("the answer form");
    let rest = &page.body[at + "/console/offers/".len()..];
    let offer = format!("/console/offers/{}", &rest[..rest.find('"').unwrap()]);
    // Another organisation's provider sees none of it, and cannot answer it.
    let page = c.get(&stranger, "/console/offers").await?;
    assert!(page.body.contains("There are no offers to answer"));
    assert!(!page.body.contains("Early Help Team North"));
    let page = c.post(&stranger, &offer, &[("decision", "accept")]).await?;
    assert_eq!(page.status, 400);
    // A restricted reader: withheld.
    let page = c.get(&reader, "/console/offers").await?;
    assert!(page.body.contains("Offers are withheld"));
    // Declining needs a reason from the list; "other" needs words.
    // Each error links to its field in this offer's form, the answer kept.
    let page = c
        .post(&provider, &offer, &[("decision", "decline")])
        .await?;
    assert!(page.body.contains("Select why you decline"));
    assert!(page.body.contains(r##"href="#reason""##), "{}", page.body);
    assert!(
        page.body
            .contains(r#"id="reason" name="reason" type="radio""#)
    );
    assert!(page.body.contains(r#"id="reason-error""#));
    assert!(
        page.body
            .contains(r#"id="decision-1" name="decision" type="radio" value="decline" checked"#)
    );
    let page = c
        .post(
            &provider,
            &offer,
            &[("decision", "decline"), ("reason", "other")],
        )
        .await?;
    assert!(page.body.contains("Say why you decline"));
    assert!(page.body.contains(r##"href="#detail""##), "{}", page.body);
    assert!(page.body.contains(r#"id="detail" name="detail""#));
    // Accepted: the case is allocated to the service.
    let page = c.post(&provider, &offer, &[("decision", "accept")]).await?;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(
        page.location.as_deref(),
        Some("/console/offers?done=accept")
    );
    let page = c.get(&provider, "/console/offers?done=accept").await?;
    assert!(page.body.contains("You accepted the offer"));
    assert!(page.body.contains("There are no offers to answer"));
    // Answering again: allocation says it is no longer open.
    let page = c
        .post(
            &provider,
            &offer,
            &[("decision", "decline"), ("reason", "no_capacity")],
        )
        .await?;
    assert_eq!(page.status, 400);
    assert!(
        page.body.contains("This cannot be done now"),
        "{}",
        page.body
    );
    Ok(())
}

#[tokio::test]
async fn offers_are_answered_in_the_console_embedded() -> anyhow::Result<()> {
    offers_are_answered_in_the_console(false).await
}

#[tokio::test]
async fn offers_are_answered_in_the_console_distributed() -> anyhow::Result<()> {
    offers_are_answered_in_the_console(true).await
}
