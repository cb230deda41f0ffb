//! The gRPC door. Every call is admitted in one place ([`ACCESS`]: method → the roles that may
//! call it): a known tenant, the caller's own (PERMISSION_DENIED, audited, for another council),
//! and one of the method's roles (PERMISSION_DENIED, audited, otherwise). Input is checked
//! (INVALID_ARGUMENT with a violation per field, never quoting the value); a service the council's
//! directory does not hold is NOT_FOUND.
use crate::domain::matching::{self, Candidate, Family};
use crate::domain::{self, Kind, Period, Terms, Violation};
use crate::handlers::Allocation;
use crate::offers::{self, candidate};
use crate::store::{self, ImportRecord, StoredService};
use eh_auth::{Auditor, Principal};
use eh_proto::allocation::v1 as pb;
use eh_proto::allocation::v1::allocation_service_server::AllocationService;
use tonic::{Request, Response, Status};

/// Who may call what: each method and the roles that may (people only; upstream systems and the
/// platform's services have no business here yet). A method missing from the table is refused.
pub const ACCESS: &[(&str, &[&str])] = &[
    // Subject access (records asks, forwarding the caller's credential).
    (eh_service::rights::METHOD, eh_service::rights::ROLES),
    ("ImportDirectory", &["team_manager", "commissioner"]),
    (
        "ListImports",
        &["team_manager", "commissioner", "front_door"],
    ),
    (
        "SearchDirectory",
        &[
            "front_door",
            "team_manager",
            "practitioner",
            "commissioner",
            "business_support",
            eh_service::access::UPSTREAM_SYSTEM,
        ],
    ),
    (
        "GetService",
        &[
            "front_door",
            "team_manager",
            "practitioner",
            "commissioner",
            "business_support",
            "provider",
            eh_service::access::UPSTREAM_SYSTEM,
        ],
    ),
    ("SetServiceTerms", &["team_manager", "commissioner"]),
    ("ListOffers", &["front_door", "team_manager", "provider"]),
    ("AcceptOffer", &["team_manager", "provider"]),
    ("DeclineOffer", &["team_manager", "provider"]),
    (
        "GetWaitingList",
        &["front_door", "team_manager", "commissioner"],
    ),
    (
        "RecordFamilyPreference",
        &["front_door", "team_manager", "provider"],
    ),
    ("AskLeadPractitioner", &["team_manager", "provider"]),
    (
        "AnswerLeadRequest",
        &["practitioner", "provider", "team_manager"],
    ),
    (
        "ListLeadRequests",
        &["practitioner", "provider", "team_manager", "front_door"],
    ),
];

/// The role of a provider's staff: they see and answer only the offers made to their own
/// organisation (their token's agency is its ORUK organisation id).
pub const PROVIDER_ROLE: &str = "provider";

/// The roles that may call `method` (none for a method not in [`ACCESS`]).
pub fn roles_for(method: &str) -> &'static [&'static str] {
    eh_service::access::roles_for(ACCESS, method)
}

pub struct AllocationApi {
    pub allocation: Allocation,
    pub auditor: Auditor,
}

pub(crate) use eh_service::errors::invalid;

pub(crate) fn internal(e: impl std::fmt::Display) -> Status {
    eh_service::errors::internal(crate::SERVICE, e)
}

impl AllocationApi {
    /// As [`Self::admit`] for a list: the audit entry names the ids `ids` finds in `list`'s
    /// answer ([`eh_service::access::admit_list`]).
    pub(crate) async fn admit_list<T>(
        &self,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
        list: impl Future<Output = Result<T, Status>>,
        ids: impl FnOnce(&T) -> Vec<String>,
    ) -> Result<T, Status> {
        eh_service::access::admit_list(
            &self.auditor,
            &self.allocation.ctx.settings,
            ACCESS,
            &eh_service::access::Call {
                principal: p,
                tenant,
                method,
                record,
                service: "allocation",
            },
            list,
            ids,
        )
        .await
    }

    /// Admits `p` to `method` on `tenant`'s `record`, audited either way.
    pub(crate) async fn admit(
        &self,
        p: &Principal,
        tenant: &str,
        method: &str,
        record: &str,
    ) -> Result<(), Status> {
        eh_service::access::admit(
            &self.auditor,
            &self.allocation.ctx.settings,
            ACCESS,
            &eh_service::access::Call {
                principal: p,
                tenant,
                method,
                record,
                service: "allocation",
            },
        )
        .await
    }

    fn today(&self) -> chrono::NaiveDate {
        self.allocation.ctx.clock.now().date_naive()
    }

    /// The council's services, read in its row-level-security scope.
    async fn services(&self, p: &Principal, tenant: &str) -> Result<Vec<StoredService>, Status> {
        let txn = eh_store::begin_scoped(&self.allocation.ctx.db, p.data_scope(tenant))
            .await
            .map_err(internal)?;
        let services = store::services(&txn, tenant, self.today())
            .await
            .map_err(internal)?;
        eh_store::end_read(txn).await.map_err(internal)?;
        Ok(services)
    }

    async fn one(
        &self,
        p: &Principal,
        tenant: &str,
        id: &str,
    ) -> Result<Option<StoredService>, Status> {
        let txn = eh_store::begin_scoped(&self.allocation.ctx.db, p.data_scope(tenant))
            .await
            .map_err(internal)?;
        let s = store::service(&txn, tenant, id, self.today())
            .await
            .map_err(internal)?;
        eh_store::end_read(txn).await.map_err(internal)?;
        Ok(s)
    }
}

/// The service as the API shows it.
pub fn service_pb(s: &StoredService) -> pb::DirectoryService {
    let o = &s.service;
    pb::DirectoryService {
        service_id: o.id.clone(),
        name: o.name.clone(),
        organization_id: o.organization_id.clone(),
        organization_name: o.organization_name.clone(),
        status: if s.withdrawn {
            "withdrawn".into()
        } else {
            o.status.clone()
        },
        withdrawn: s.withdrawn,
        minimum_age: o.minimum_age.unwrap_or_default(),
        maximum_age: o.maximum_age.unwrap_or_default(),
        has_minimum_age: o.minimum_age.is_some(),
        has_maximum_age: o.maximum_age.is_some(),
        taxonomy_needs: s.taxonomy_needs.clone(),
        taxonomy_terms: o.taxonomy_terms.iter().map(|t| t.label()).collect(),
        postcodes: o.postcodes.clone(),
        last_import_id: s.last_import_id.clone(),
        has_terms: s.terms.is_some(),
        terms: s.terms.as_ref().map(terms_pb),
        open_cases: s.open_cases,
        period_cases: s.period_cases,
    }
}

fn terms_pb(t: &Terms) -> pb::ServiceTerms {
    pb::ServiceTerms {
        kind: t.kind.as_str().into(),
        coverage: t.coverage.clone(),
        needs: t.needs.clone(),
        programmes: t.programmes.clone(),
        capacity: t.capacity,
        contract_volume: t.contract_volume.unwrap_or_default(),
        contract_period: t.contract_period.as_str().into(),
        offer_email: t.offer_email.clone(),
        agency: t.agency.clone(),
    }
}

/// The organisation a provider's staff act for; `None` for council staff (who see every offer).
pub(crate) fn acting_for(p: &Principal) -> Option<String> {
    match p {
        Principal::Person { roles, agency, .. }
            if roles.iter().any(|r| r == PROVIDER_ROLE)
                && !roles
                    .iter()
                    .any(|r| r == "team_manager" || r == "front_door") =>
        {
            Some(agency.clone().unwrap_or_default())
        }
        _ => None,
    }
}

/// An offer as the API shows it to `viewer_org` (`None`: council staff). A provider sees the
/// family's postcode district and children's ages; the family's needs are withheld from it until
/// allocation asks consent what that agency may see.
fn offer_pb(
    o: &store::OfferRow,
    service: Option<&StoredService>,
    case: Option<&store::CaseRow>,
    ages: &[u32],
    provider_view: bool,
) -> pb::Offer {
    pb::Offer {
        offer_id: o.id.clone(),
        case_id: o.case_id.clone(),
        service_id: o.service_id.clone(),
        service_name: service.map(|s| s.service.name.clone()).unwrap_or_default(),
        organization_id: service
            .map(|s| s.service.organization_id.clone())
            .unwrap_or_default(),
        status: o.status.clone(),
        offered_at: o.offered_at.to_rfc3339(),
        settled_at: o.settled_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        attempt: o.attempt,
        rule_version: o.rule_version.clone(),
        reasons: if provider_view {
            Vec::new()
        } else {
            o.reasons.clone()
        },
        decline_reason: o.decline_reason.clone(),
        settled_by: o.settled_by.clone(),
        needs: if provider_view {
            Vec::new()
        } else {
            case.map(|c| c.needs.clone()).unwrap_or_default()
        },
        district: case
            .and_then(|c| domain::Postcode::parse(&c.postcode))
            .map(|p| p.district)
            .unwrap_or_default(),
        children_ages: ages.to_vec(),
        respond_by: if o.status == "offered" {
            o.respond_by.map(|t| t.to_rfc3339()).unwrap_or_default()
        } else {
            String::new()
        },
        family_preference: String::new(),
        lead_practitioner: String::new(),
        withheld: Vec::new(),
    }
}

/// The terms a council sets, read and checked: every violation by field.
pub fn terms_from(t: Option<&pb::ServiceTerms>) -> Result<Terms, Vec<Violation>> {
    let Some(t) = t else {
        return Err(vec![Violation::new("terms", "required")]);
    };
    let mut v = Vec::new();
    let kind = t.kind.parse::<Kind>().unwrap_or_else(|e| {
        v.push(Violation::new("terms.kind", e));
        Kind::EarlyHelpTeam
    });
    let period = if t.contract_period.is_empty() {
        Period::Year
    } else {
        t.contract_period.parse::<Period>().unwrap_or_else(|e| {
            v.push(Violation::new("terms.contract_period", e));
            Period::Year
        })
    };
    let terms = Terms {
        kind,
        coverage: t.coverage.iter().map(|s| s.trim().to_string()).collect(),
        needs: t.needs.clone(),
        programmes: t.programmes.clone(),
        capacity: t.capacity,
        contract_volume: (t.contract_volume > 0).then_some(t.contract_volume),
        contract_period: period,
        offer_email: t.offer_email.trim().to_string(),
        agency: t.agency.trim().to_string(),
    };
    v.extend(terms.check());
    if v.is_empty() { Ok(terms) } else { Err(v) }
}

fn import_pb(i: &ImportRecord) -> pb::DirectoryImport {
    pb::DirectoryImport {
        import_id: i.id.clone(),
        tenant: i.tenant.clone(),
        source: i.source.clone(),
        started_at: i.started_at.to_rfc3339(),
        finished_at: i.finished_at.to_rfc3339(),
        outcome: i.outcome.clone(),
        error: i.error.clone(),
        created: i.created,
        updated: i.updated,
        unchanged: i.unchanged,
        withdrawn: i.withdrawn,
        refused: i
            .refused
            .iter()
            .map(|r| pb::RefusedRecord {
                record: r.record.clone(),
                path: r.path.clone(),
                reason: r.reason.clone(),
            })
            .collect(),
        trigger: i.trigger.clone(),
    }
}

/// The family a search describes, checked: every violation by field.
fn family_from(r: &pb::SearchDirectoryRequest) -> Result<Family, Vec<Violation>> {
    let mut v = Vec::new();
    if domain::Postcode::parse(&r.postcode).is_none() {
        v.push(Violation::new("postcode", "must be a UK postcode"));
    }
    for (i, n) in r.needs.iter().enumerate() {
        if !domain::is_need(n) {
            v.push(Violation::new(
                format!("needs[{i}]"),
                format!("not a headline need (one of {})", domain::NEEDS.join(", ")),
            ));
        }
    }
    for (i, p) in r.programmes.iter().enumerate() {
        if !eh_platform::config::is_token(p) {
            v.push(Violation::new(
                format!("programmes[{i}]"),
                "must be a programme id (lower-case letters, digits, - and _)",
            ));
        }
    }
    if r.children_ages.len() > 20 {
        v.push(Violation::new("children_ages", "at most 20 children"));
    }
    for (i, a) in r.children_ages.iter().enumerate() {
        if *a > 25 {
            v.push(Violation::new(
                format!("children_ages[{i}]"),
                "must be 0-25",
            ));
        }
    }
    if !v.is_empty() {
        return Err(v);
    }
    Ok(Family {
        postcode: r.postcode.clone(),
        needs: r.needs.clone(),
        programmes: r.programmes.clone(),
        children_ages: r.children_ages.clone(),
    })
}

#[tonic::async_trait]
impl AllocationService for AllocationApi {
    async fn export_person_data(
        &self,
        request: tonic::Request<eh_proto::records::v1::ExportPersonDataRequest>,
    ) -> Result<tonic::Response<eh_proto::records::v1::PersonDataExport>, tonic::Status> {
        eh_service::rights::export_person_data(
            crate::SERVICE,
            &self.allocation.ctx.db,
            &self.allocation.ctx.settings,
            &self.auditor,
            ACCESS,
            crate::rights::HOLDINGS,
            request,
        )
        .await
    }

    async fn import_directory(
        &self,
        request: Request<pb::ImportDirectoryRequest>,
    ) -> Result<Response<pb::DirectoryImport>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.admit(&p, &req.tenant, "ImportDirectory", "directory")
            .await?;
        let council = self
            .allocation
            .council(&req.tenant)
            .ok_or_else(|| Status::failed_precondition("the council has no allocation settings"))?;
        if council.source.is_none() {
            return Err(Status::failed_precondition(format!(
                "tenants.{}.allocation.directory: no url or file is configured",
                req.tenant
            )));
        }
        let record = crate::import::run(
            &self.allocation.ctx,
            &req.tenant,
            council,
            "api",
            &p.actor(),
        )
        .await
        .map_err(internal)?;
        Ok(Response::new(import_pb(&record)))
    }

    async fn list_imports(
        &self,
        request: Request<pb::ListImportsRequest>,
    ) -> Result<Response<pb::ListImportsResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.admit(&p, &req.tenant, "ListImports", "directory")
            .await?;
        let limit = match req.limit {
            0 => 20,
            n => n.min(200),
        };
        let txn = eh_store::begin_scoped(&self.allocation.ctx.db, p.data_scope(&req.tenant))
            .await
            .map_err(internal)?;
        let imports = store::imports(&txn, &req.tenant, limit)
            .await
            .map_err(internal)?;
        eh_store::end_read(txn).await.map_err(internal)?;
        Ok(Response::new(pb::ListImportsResponse {
            imports: imports.iter().map(import_pb).collect(),
        }))
    }

    async fn search_directory(
        &self,
        request: Request<pb::SearchDirectoryRequest>,
    ) -> Result<Response<pb::SearchDirectoryResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        self.admit(&p, &req.tenant, "SearchDirectory", "directory")
            .await?;
        let family = family_from(&req).map_err(|v| invalid("the search is invalid", &v))?;
        let council = self
            .allocation
            .council(&req.tenant)
            .ok_or_else(|| Status::failed_precondition("the council has no allocation settings"))?;
        let services = self.services(&p, &req.tenant).await?;
        let candidates: Vec<Candidate> = services.iter().map(|s| candidate(s, false)).collect();
        let decision = matching::decide(&family, &council.rules, &candidates);
        let by_id: std::collections::HashMap<&str, &StoredService> = services
            .iter()
            .map(|s| (s.service.id.as_str(), s))
            .collect();
        Ok(Response::new(pb::SearchDirectoryResponse {
            rule_version: decision.rule_version.clone(),
            wanted_kind: decision.wanted_kind.as_str().into(),
            wanted_kind_reason: decision.wanted_kind_reason.clone(),
            candidates: decision
                .placed
                .iter()
                .map(|c| pb::Candidate {
                    service: by_id.get(c.id.as_str()).map(|s| service_pb(s)),
                    rank: c.rank,
                    excluded: c.excluded(),
                    reasons: c.reasons.clone(),
                })
                .collect(),
        }))
    }

    async fn get_service(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> Result<Response<pb::DirectoryService>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("service:{}", req.service_id);
        self.admit(&p, &req.tenant, "GetService", &record).await?;
        // A provider's staff read their own organisation's services only (another's is as one
        // that does not exist).
        let org = acting_for(&p);
        match self.one(&p, &req.tenant, &req.service_id).await? {
            Some(s) if org.as_ref().is_none_or(|o| *o == s.service.organization_id) => {
                Ok(Response::new(service_pb(&s)))
            }
            _ => Err(Status::not_found(
                "no such service in the council's directory",
            )),
        }
    }

    async fn set_service_terms(
        &self,
        request: Request<pb::SetServiceTermsRequest>,
    ) -> Result<Response<pb::DirectoryService>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("service:{}", req.service_id);
        self.admit(&p, &req.tenant, "SetServiceTerms", &record)
            .await?;
        let terms =
            terms_from(req.terms.as_ref()).map_err(|v| invalid("the terms are invalid", &v))?;
        let ctx = &self.allocation.ctx;
        let txn = eh_store::begin_scoped(&ctx.db, p.data_scope(&req.tenant))
            .await
            .map_err(internal)?;
        let today = self.today();
        if store::service(&txn, &req.tenant, &req.service_id, today)
            .await
            .map_err(internal)?
            .is_none()
        {
            return Err(Status::not_found(
                "no such service in the council's directory",
            ));
        }
        store::set_terms(
            &txn,
            &req.tenant,
            &req.service_id,
            &terms,
            &p.actor(),
            ctx.clock.now(),
        )
        .await
        .map_err(internal)?;
        let s = store::service(&txn, &req.tenant, &req.service_id, today)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("the service vanished"))?;
        // More places may let waiting cases in.
        if let Some(council) = self.allocation.council(&req.tenant) {
            offers::lock_council(&txn, &req.tenant)
                .await
                .map_err(internal)?;
            offers::offer_waiting(
                &self.allocation,
                &txn,
                council,
                &req.tenant,
                &p.actor(),
                ctx.clock.now(),
            )
            .await
            .map_err(internal)?;
        }
        eh_store::commit(txn).await.map_err(internal)?;
        Ok(Response::new(service_pb(&s)))
    }

    async fn list_offers(
        &self,
        request: Request<pb::ListOffersRequest>,
    ) -> Result<Response<pb::ListOffersResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        let mut asker =
            crate::sharing::Asker::new(self.allocation.consent.clone(), request.metadata());
        let req = request.into_inner();
        let list = async {
            const STATUSES: &[&str] = &[
                "",
                "offered",
                "accepted",
                "declined",
                "expired",
                "withdrawn",
                "closed",
            ];
            if !STATUSES.contains(&req.status.as_str()) {
                return Err(invalid(
                    "the request is invalid",
                    &[Violation::new(
                        "status",
                        "must be offered, accepted, declined, expired, withdrawn or closed (or empty)",
                    )],
                ));
            }
            let org = acting_for(&p);
            let today = self.today();
            let txn = eh_store::begin_scoped(&self.allocation.ctx.db, p.data_scope(&req.tenant))
                .await
                .map_err(internal)?;
            let rows = store::offer_views(
                &txn,
                &req.tenant,
                Some(req.status.as_str()),
                Some(req.case_id.as_str()),
            )
            .await
            .map_err(internal)?;
            let services = store::services(&txn, &req.tenant, today)
                .await
                .map_err(internal)?;
            // Each offer, and for a provider's view what consent is to be asked about: the family,
            // the service's agency and the needs.
            let mut out = Vec::new();
            for v in rows {
                let o = &v.offer;
                let service = services.iter().find(|s| s.service.id == o.service_id);
                if let Some(org) = &org
                    && service.is_none_or(|s| &s.service.organization_id != org)
                {
                    continue;
                }
                let case = v.case;
                let ages: Vec<u32> = if case.is_some() {
                    v.birth_dates
                        .iter()
                        .map(|d| domain::age_on(*d, today))
                        .collect()
                } else {
                    Vec::new()
                };
                let mut offer = offer_pb(o, service, case.as_ref(), &ages, org.is_some());
                offer.family_preference = v.preference.unwrap_or_default();
                offer.lead_practitioner = v.lead_practitioner.unwrap_or_default();
                let ask = match (&org, &case) {
                    (Some(_), Some(c)) => {
                        let agency = service
                            .and_then(|s| s.terms.as_ref())
                            .map_or("other", |t| t.consent_agency())
                            .to_string();
                        Some((c.family_id.clone(), agency, c.needs.clone()))
                    }
                    _ => None,
                };
                out.push((offer, ask));
            }
            eh_store::end_read(txn).await.map_err(internal)?;
            // Consent is asked with no transaction open.
            let mut offers = Vec::with_capacity(out.len());
            for (mut offer, ask) in out {
                if let Some((family, agency, needs)) = ask {
                    let (shown, withheld) =
                        asker.needs(&req.tenant, &family, &agency, &needs).await;
                    offer.needs = shown;
                    offer.withheld = withheld;
                }
                offers.push(offer);
            }
            Ok(pb::ListOffersResponse { offers })
        };
        let listed = self
            .admit_list(&p, &req.tenant, "ListOffers", "offers", list, |r| {
                r.offers
                    .iter()
                    .map(|o| format!("offer:{}", o.offer_id))
                    .collect()
            })
            .await?;
        Ok(Response::new(listed))
    }

    async fn accept_offer(
        &self,
        request: Request<pb::AcceptOfferRequest>,
    ) -> Result<Response<pb::Offer>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("offer:{}", req.offer_id);
        self.admit(&p, &req.tenant, "AcceptOffer", &record).await?;
        self.answer(&p, &req.tenant, &req.offer_id, None).await
    }

    async fn decline_offer(
        &self,
        request: Request<pb::DeclineOfferRequest>,
    ) -> Result<Response<pb::Offer>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let record = format!("offer:{}", req.offer_id);
        self.admit(&p, &req.tenant, "DeclineOffer", &record).await?;
        let v = domain::check_decline(&req.reason, &req.detail);
        if !v.is_empty() {
            return Err(invalid("the decline is invalid", &v));
        }
        self.answer(
            &p,
            &req.tenant,
            &req.offer_id,
            Some((req.reason.as_str(), req.detail.trim())),
        )
        .await
    }

    async fn get_waiting_list(
        &self,
        request: Request<pb::GetWaitingListRequest>,
    ) -> Result<Response<pb::WaitingList>, Status> {
        let p = eh_auth::principal(&request)?;
        let req = request.into_inner();
        let list = async {
            let txn = eh_store::begin_scoped(&self.allocation.ctx.db, p.data_scope(&req.tenant))
                .await
                .map_err(internal)?;
            let waiting = store::waiting(&txn, &req.tenant).await.map_err(internal)?;
            eh_store::end_read(txn).await.map_err(internal)?;
            let now = self.allocation.ctx.clock.now();
            Ok(pb::WaitingList {
                cases: waiting
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let since = c.waiting_since.unwrap_or(c.ready_at);
                        pb::WaitingCase {
                            case_id: c.case_id.clone(),
                            position: u32::try_from(i + 1).unwrap_or(u32::MAX),
                            significant_need: c.significant_need,
                            waiting_since: since.to_rfc3339(),
                            days_waiting: u32::try_from((now - since).num_days().max(0))
                                .unwrap_or(u32::MAX),
                            district: domain::Postcode::parse(&c.postcode)
                                .map(|p| p.district)
                                .unwrap_or_default(),
                            needs: c.needs.clone(),
                            reason: c.waiting_reason.clone(),
                        }
                    })
                    .collect(),
            })
        };
        let listed = self
            .admit_list(
                &p,
                &req.tenant,
                "GetWaitingList",
                "waiting_list",
                list,
                |r| {
                    r.cases
                        .iter()
                        .map(|c| format!("case:{}", c.case_id))
                        .collect()
                },
            )
            .await?;
        Ok(Response::new(listed))
    }

    async fn record_family_preference(
        &self,
        request: Request<pb::RecordFamilyPreferenceRequest>,
    ) -> Result<Response<pb::FamilyPreference>, Status> {
        let p = eh_auth::principal(&request)?;
        self.record_preference(&p, request.into_inner()).await
    }

    async fn ask_lead_practitioner(
        &self,
        request: Request<pb::AskLeadPractitionerRequest>,
    ) -> Result<Response<pb::LeadRequest>, Status> {
        let p = eh_auth::principal(&request)?;
        self.ask_lead(&p, request.into_inner()).await
    }

    async fn answer_lead_request(
        &self,
        request: Request<pb::AnswerLeadRequestRequest>,
    ) -> Result<Response<pb::LeadRequest>, Status> {
        let p = eh_auth::principal(&request)?;
        self.answer_lead(&p, request.into_inner()).await
    }

    async fn list_lead_requests(
        &self,
        request: Request<pb::ListLeadRequestsRequest>,
    ) -> Result<Response<pb::ListLeadRequestsResponse>, Status> {
        let p = eh_auth::principal(&request)?;
        self.list_leads(&p, request.into_inner()).await
    }
}

impl AllocationApi {
    /// Accepts (`decline` None) or declines an open offer, as `p`: a provider only for its own
    /// organisation's offers (another's is NOT_FOUND, audited as denied). A decline places the case
    /// again and lets the waiting cases try the freed place.
    async fn answer(
        &self,
        p: &Principal,
        tenant: &str,
        offer_id: &str,
        decline: Option<(&str, &str)>,
    ) -> Result<Response<pb::Offer>, Status> {
        let a = &self.allocation;
        let now = a.ctx.clock.now();
        let today = now.date_naive();
        let council = a
            .council(tenant)
            .ok_or_else(|| Status::failed_precondition("the council has no allocation settings"))?;
        let txn = eh_store::begin_scoped(&a.ctx.db, p.data_scope(tenant))
            .await
            .map_err(internal)?;
        offers::lock_council(&txn, tenant).await.map_err(internal)?;
        let Some(offer) = store::offer(&txn, tenant, offer_id)
            .await
            .map_err(internal)?
        else {
            return Err(Status::not_found("no such offer"));
        };
        let service = store::service(&txn, tenant, &offer.service_id, today)
            .await
            .map_err(internal)?;
        if let Some(org) = acting_for(p)
            && service
                .as_ref()
                .is_none_or(|s| s.service.organization_id != org)
        {
            txn.rollback().await.map_err(internal)?;
            let action = if decline.is_some() {
                "DeclineOffer"
            } else {
                "AcceptOffer"
            };
            self.auditor
                .decide(
                    p,
                    tenant,
                    action,
                    &format!("offer:{offer_id}"),
                    "allocation",
                    false,
                    "the offer was made to another organisation".into(),
                )
                .await?;
            return Err(Status::not_found("no such offer"));
        }
        let (to, reason, detail) = match decline {
            None => ("accepted", "", ""),
            Some((r, d)) => ("declined", r, d),
        };
        if !store::settle_offer(
            &txn,
            tenant,
            offer_id,
            "offered",
            to,
            &p.actor(),
            reason,
            detail,
            now,
        )
        .await
        .map_err(internal)?
        {
            return Err(Status::failed_precondition(format!(
                "the offer is {}, not open",
                offer.status
            )));
        }
        let case = store::case(&txn, tenant, &offer.case_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("an offer without its case"))?;
        let s = service.as_ref();
        match decline {
            None => {
                store::set_case_status(&txn, tenant, &case.case_id, "allocated", "", now)
                    .await
                    .map_err(internal)?;
                let ev = pb::OfferAccepted {
                    offer_id: offer.id.clone(),
                    case_id: case.case_id.clone(),
                    family_id: case.family_id.clone(),
                    referral_id: case.referral_id.clone(),
                    service_id: offer.service_id.clone(),
                    service_name: s.map(|s| s.service.name.clone()).unwrap_or_default(),
                    organization_id: s
                        .map(|s| s.service.organization_id.clone())
                        .unwrap_or_default(),
                    kind: s
                        .and_then(|s| s.terms.as_ref())
                        .map(|t| t.kind.as_str().to_string())
                        .unwrap_or_default(),
                    at: now.to_rfc3339(),
                };
                offers::emit(
                    a,
                    &txn,
                    tenant,
                    &eh_proto::catalogue::OFFER_ACCEPTED,
                    &p.actor(),
                    prost::Message::encode_to_vec(&ev),
                    now,
                )
                .await
                .map_err(internal)?;
            }
            Some((reason, _)) => {
                let ev = pb::OfferDeclined {
                    offer_id: offer.id.clone(),
                    case_id: case.case_id.clone(),
                    service_id: offer.service_id.clone(),
                    reason: reason.into(),
                    at: now.to_rfc3339(),
                };
                offers::emit(
                    a,
                    &txn,
                    tenant,
                    &eh_proto::catalogue::OFFER_DECLINED,
                    &p.actor(),
                    prost::Message::encode_to_vec(&ev),
                    now,
                )
                .await
                .map_err(internal)?;
                offers::place(a, &txn, council, &case, &p.actor(), now)
                    .await
                    .map_err(internal)?;
                offers::offer_waiting(a, &txn, council, tenant, &p.actor(), now)
                    .await
                    .map_err(internal)?;
            }
        }
        let settled = store::offer(&txn, tenant, offer_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("the offer vanished"))?;
        eh_store::commit(txn).await.map_err(internal)?;
        tracing::info!(tenant, offer_id, status = to, "offer answered");
        Ok(Response::new(offer_pb(
            &settled,
            s,
            Some(&case),
            &[],
            acting_for(p).is_some(),
        )))
    }
}
