//! The council's directory of services, for those who look for help for a family:
//! `GET /v1/directory/services` (the services that could help a family like the one described,
//! ranked by the council's matching rules, with every service considered and why) and
//! `GET /v1/directory/services/{service_id}` (one service with the council's terms). Allocation's
//! `SearchDirectory` and `GetService` answer with the caller's own credential: its access table
//! decides who may (the council's people who find help for families and its upstream systems'
//! keys; a provider's staff read their own organisation's services only), and a council sees
//! only its own directory. The directory holds nothing of any
//! family; what describes the family searched for (postcode, needs, ages) is used for the search
//! only and never logged.
use super::{Api, json, refusal};
use crate::problem::{Problem, Violation};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use eh_proto::allocation::v1 as pb;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// The longest value of a query parameter taken.
pub const MAX_PARAM_LEN: usize = 100;
/// The most values of a repeated query parameter (`need`, `programme`, `age`).
pub const MAX_REPEATS: usize = 20;
/// The oldest age searched for, in years.
pub const MAX_AGE: u32 = 25;

/// What the council adds to a service (ORUK does not carry it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DirectoryServiceTerms {
    /// `early_help_team` (one of the council's own) or `commissioned`.
    #[schema(example = "early_help_team")]
    pub kind: String,
    /// Postcode areas (`WR`), districts (`WR1`), sectors (`WR1 2`) or the council's localities.
    pub coverage: Vec<String>,
    /// The headline needs it covers; empty: every need.
    pub needs: Vec<String>,
    /// Programmes it is commissioned for (e.g. `brfc`).
    pub programmes: Vec<String>,
    /// Open cases it can hold at once.
    pub capacity: u32,
    /// Cases commissioned per contract period; 0: no contract volume.
    pub contract_volume: u32,
    /// `month`, `quarter` or `year`, with a contract volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_period: Option<String>,
    /// The kind of agency it is in a family's consent (`voluntary`, `health`, …).
    pub agency: String,
}

/// A service of the council's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DirectoryService {
    pub service_id: String,
    pub name: String,
    /// Its organisation (Open Referral UK id).
    pub organization_id: String,
    pub organization_name: String,
    /// `active`, `inactive`, `defunct`, `temporarily closed` (ORUK) or `withdrawn` (no longer in
    /// the council's source).
    #[schema(example = "active")]
    pub status: String,
    pub withdrawn: bool,
    /// The youngest it serves, in years, when the source says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum_age: Option<u32>,
    /// The oldest it serves, in years, when the source says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_age: Option<u32>,
    /// The headline needs its taxonomy terms map to.
    pub taxonomy_needs: Vec<String>,
    /// `taxonomy:term`, as the source gave them.
    pub taxonomy_terms: Vec<String>,
    /// The postcodes of its locations.
    pub postcodes: Vec<String>,
    /// The council's terms; absent until it sets them (it is not offered cases until then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terms: Option<DirectoryServiceTerms>,
    /// Open cases it holds.
    pub open_cases: u32,
    /// Cases counted against its contract period.
    pub period_cases: u32,
}

/// A service considered for the family searched for: ranked, or excluded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DirectoryCandidate {
    pub service: DirectoryService,
    /// 1-based (1: the service the matcher would offer the case to); 0 when excluded.
    pub rank: u32,
    pub excluded: bool,
    /// Why it was ranked where it is, or why it was excluded.
    pub reasons: Vec<String>,
}

/// The services that could help a family like the one described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DirectorySearch {
    /// The version of the council's matching rules the ranking was made by.
    pub rule_version: String,
    /// `early_help_team` or `commissioned`: the kind of service the rules call for.
    pub wanted_kind: String,
    /// Why that kind.
    pub wanted_kind_reason: String,
    /// Ranked services first (in rank order), then those excluded.
    pub candidates: Vec<DirectoryCandidate>,
}

fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn service(s: pb::DirectoryService) -> DirectoryService {
    DirectoryService {
        service_id: s.service_id,
        name: s.name,
        organization_id: s.organization_id,
        organization_name: s.organization_name,
        status: s.status,
        withdrawn: s.withdrawn,
        minimum_age: s.has_minimum_age.then_some(s.minimum_age),
        maximum_age: s.has_maximum_age.then_some(s.maximum_age),
        taxonomy_needs: s.taxonomy_needs,
        taxonomy_terms: s.taxonomy_terms,
        postcodes: s.postcodes,
        // The address offers go to stays with the council.
        terms: s
            .terms
            .filter(|_| s.has_terms)
            .map(|t| DirectoryServiceTerms {
                kind: t.kind,
                coverage: t.coverage,
                needs: t.needs,
                programmes: t.programmes,
                capacity: t.capacity,
                contract_volume: t.contract_volume,
                contract_period: some(t.contract_period),
                agency: t.agency,
            }),
        open_cases: s.open_cases,
        period_cases: s.period_cases,
    }
}

const NO_SERVICE: &str = "no such service in this council's directory";

/// Allocation's name of a search field as the query parameter's: `needs[1]` → `query:need`.
fn parameter(field: &str) -> String {
    let name = field.split('[').next().unwrap_or_default();
    let param = match name {
        "postcode" => "postcode",
        "needs" => "need",
        "programmes" => "programme",
        "children_ages" => "age",
        _ => return "query".into(),
    };
    format!("query:{param}")
}

/// The headline needs, as the referral contract names them (the document's `need` enum).
pub(crate) fn needs() -> Vec<String> {
    crate::contract::schema()
        .pointer("/properties/needs/items/enum")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The search the query describes, checked: every parameter that cannot be read (400) or breaks
/// a rule (422), named, never quoting the value. Unknown parameters are ignored.
fn search_of(
    query: &[(String, String)],
    tenant: &str,
) -> Result<pb::SearchDirectoryRequest, Problem> {
    let mut unreadable = Vec::new();
    let mut broken = Vec::new();
    let mut req = pb::SearchDirectoryRequest {
        tenant: tenant.to_string(),
        ..Default::default()
    };
    let known = needs();
    let mut postcodes = 0;
    for (name, value) in query {
        let path = format!("query:{name}");
        if !matches!(name.as_str(), "postcode" | "need" | "programme" | "age") {
            continue;
        }
        if name == "postcode" {
            postcodes += 1;
        }
        if value.chars().count() > MAX_PARAM_LEN {
            broken.push(Violation::new(path, "maxLength"));
            continue;
        }
        match name.as_str() {
            "postcode" if postcodes > 1 => broken.push(Violation::new(path, "maxItems")),
            "postcode" => req.postcode = value.clone(),
            "need" if !known.iter().any(|n| n == value) => {
                broken.push(Violation::new(path, "enum"));
            }
            "need" => req.needs.push(value.clone()),
            "programme" if !eh_platform::config::is_token(value) => {
                broken.push(Violation::new(path, "pattern"));
            }
            "programme" => req.programmes.push(value.clone()),
            _ => match value.trim().parse::<u32>() {
                Ok(age) if age <= MAX_AGE => req.children_ages.push(age),
                Ok(_) => broken.push(Violation::new(path, "maximum")),
                Err(_) => unreadable.push(Violation::new(path, "type")),
            },
        }
    }
    if postcodes == 0 {
        broken.push(Violation::new("query:postcode", "required"));
    }
    for (name, n) in [
        ("need", req.needs.len()),
        ("programme", req.programmes.len()),
        ("age", req.children_ages.len()),
    ] {
        if n > MAX_REPEATS {
            broken.push(Violation::new(format!("query:{name}"), "maxItems"));
        }
    }
    let dedup = |mut v: Vec<Violation>| {
        v.sort_by(|a, b| a.path.cmp(&b.path).then(a.rule.cmp(&b.rule)));
        v.dedup();
        v
    };
    if !unreadable.is_empty() {
        return Err(Problem::bad_request(
            dedup(unreadable),
            "a query parameter cannot be read as its type",
        ));
    }
    if !broken.is_empty() {
        return Err(Problem::validation(dedup(broken)));
    }
    Ok(req)
}

/// Allocation's refusal of a directory call ([`refusal`]); a council with no directory set up
/// says so.
fn directory_refusal(s: tonic::Status) -> Problem {
    if s.code() == tonic::Code::FailedPrecondition {
        return Problem::new(
            StatusCode::CONFLICT,
            "directory-not-configured",
            "The council's directory is not set up",
        )
        .detail("the council has no directory or matching rules configured yet");
    }
    refusal(s, NO_SERVICE, parameter)
}

/// Search the council's directory for a family like this one.
///
/// The services that could help a family with these needs, children of these ages, living at
/// this postcode, ranked by the council's matching rules (rank 1 is the one a case would be
/// offered to), then every service excluded, each with the reasons. The council is the
/// caller's; the search is not kept.
#[utoipa::path(
    get,
    path = "/v1/directory/services",
    tag = "directory",
    operation_id = "searchDirectory",
    params(
        ("postcode" = String, Query, description = "The family's postcode (e.g. `WR1 2AB`; spaces and case do not matter): used for this search only", max_length = 100, pattern = "^[A-Za-z]{1,2}[0-9][A-Za-z0-9]? ?[0-9][A-Za-z]{2}$"),
        ("need" = Option<Vec<String>>, Query, description = "A Supporting Families headline need (as in the referral contract); repeat for several", style = Form, explode, max_items = 20),
        ("programme" = Option<Vec<String>>, Query, description = "A programme the family meets (e.g. `brfc`); repeat for several", style = Form, explode, max_items = 20),
        ("age" = Option<Vec<u32>>, Query, description = "A child's age in years (0 to 25); repeat for each child", style = Form, explode, max_items = 20),
    ),
    responses(
        (status = 200, description = "The services considered, ranked then excluded", body = DirectorySearch),
        (status = 400, description = "A query parameter that cannot be read (e.g. an age that is not a whole number); each named", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credentials, or not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials do not allow this (a role that may not search the directory)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The council's directory is not set up", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A query parameter breaks its rule (an unknown need, a postcode that is not one, an age over 25, too long); every one named", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client's rate limit; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A service is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn search_directory(
    State(api): State<Arc<Api>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let answered = async {
        let caller = api.caller(&headers)?;
        let Query(query) = query.map_err(|_| {
            Problem::bad_request(
                vec![Violation::new("query", "format")],
                "the query cannot be read",
            )
        })?;
        let search = search_of(&query, &caller.tenant)?;
        let found = api
            .allocation
            .clone()
            .search_directory(caller.request(search))
            .await
            .map_err(directory_refusal)?
            .into_inner();
        Ok::<_, Problem>(DirectorySearch {
            rule_version: found.rule_version,
            wanted_kind: found.wanted_kind,
            wanted_kind_reason: found.wanted_kind_reason,
            candidates: found
                .candidates
                .into_iter()
                .filter_map(|c| {
                    Some(DirectoryCandidate {
                        service: service(c.service?),
                        rank: c.rank,
                        excluded: c.excluded,
                        reasons: c.reasons,
                    })
                })
                .collect(),
        })
    };
    json(answered.await)
}

/// One service of the council's directory, with the council's terms.
///
/// Another council's service is not found, as one that does not exist.
#[utoipa::path(
    get,
    path = "/v1/directory/services/{service_id}",
    tag = "directory",
    operation_id = "getDirectoryService",
    params(("service_id" = String, Path, description = "The service's id (Open Referral UK), as `searchDirectory` gives it")),
    responses(
        (status = 200, description = "The service", body = DirectoryService),
        (status = 401, description = "No credentials, or not accepted", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The credentials do not allow this (a role that may not read the directory)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service in this council's directory (for a provider's staff: among their organisation's)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The council's directory is not set up", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A service id that cannot be one", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over this client's rate limit; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A service is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_directory_service(
    State(api): State<Arc<Api>>,
    Path(service_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answered = async {
        let caller = api.caller(&headers)?;
        let found = api
            .allocation
            .clone()
            .get_service(caller.request(pb::GetServiceRequest {
                tenant: caller.tenant.clone(),
                service_id,
            }))
            .await
            .map_err(directory_refusal)?
            .into_inner();
        Ok::<_, Problem>(service(found))
    };
    json(answered.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_query_reads_as_the_search_with_every_parameter_repeated() {
        let req = search_of(
            &q(&[
                ("postcode", "DM1 1AA"),
                ("need", "education"),
                ("need", "housing"),
                ("age", "7"),
                ("age", " 12"),
                ("programme", "brfc"),
                ("page", "ignored"),
            ]),
            "worcs",
        )
        .unwrap();
        assert_eq!(req.tenant, "worcs");
        assert_eq!(req.postcode, "DM1 1AA");
        assert_eq!(req.needs, ["education", "housing"]);
        assert_eq!(req.children_ages, [7, 12]);
        assert_eq!(req.programmes, ["brfc"]);
    }

    #[test]
    fn bad_parameters_are_named_never_quoted() {
        let p = search_of(&q(&[("postcode", "DM1 1AA"), ("age", "-3")]), "w").unwrap_err();
        assert_eq!(p.status, 400);
        assert_eq!(p.violations, vec![Violation::new("query:age", "type")]);
        let long = "x".repeat(MAX_PARAM_LEN + 1);
        let p = search_of(
            &q(&[("need", "gossip"), ("age", "30"), ("programme", &long)]),
            "w",
        )
        .unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(
            p.violations,
            vec![
                Violation::new("query:age", "maximum"),
                Violation::new("query:need", "enum"),
                Violation::new("query:postcode", "required"),
                Violation::new("query:programme", "maxLength"),
            ]
        );
        assert!(!serde_json::to_string(&p).unwrap().contains("gossip"));
    }

    #[test]
    fn allocations_fields_are_the_query_parameters() {
        assert_eq!(parameter("needs[2]"), "query:need");
        assert_eq!(parameter("children_ages[0]"), "query:age");
        assert_eq!(parameter("children_ages"), "query:age");
        assert_eq!(parameter("postcode"), "query:postcode");
        assert_eq!(parameter("programmes[1]"), "query:programme");
        assert_eq!(parameter("tenant"), "query");
        assert_eq!(needs().len(), 10);
    }
}
