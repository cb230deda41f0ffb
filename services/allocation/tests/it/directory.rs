//! A council's Open Referral UK directory, written as a council publishes one: dozens of services
//! from several organisations, tagged in several taxonomies, with locations and age ranges; some
//! inactive or defunct; a few malformed; one listed without an id and one listed but gone when
//! fetched. Served by a real HTTP server (axum) with `GET /api/services?page&per_page` (the
//! standard's Page) and `GET /api/services/{id}`.
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    services: Vec<Value>,
    empty: bool,
    failing: bool,
}

#[derive(Clone)]
pub struct Directory {
    inner: Arc<Mutex<Inner>>,
    addr: std::net::SocketAddr,
}

const ORGS: &[&str] = &[
    "Worcestershire County Council",
    "Family Matters CIC",
    "Safe Homes Trust",
    "Young Minds Worcs",
    "Early Years Partnership",
    "Home-Start Wyre Forest",
];

fn term(taxonomy: &str, id: &str, term: &str) -> Value {
    json!({"id": format!("attr-{id}"), "link_type": "service", "taxonomy_term": {"id": id, "term": term, "name": term, "taxonomy": taxonomy}})
}

/// Every service the directory publishes, in full.
pub fn services() -> Vec<Value> {
    let mut out = Vec::new();
    for i in 1..=40 {
        let id = format!("svc-{i:02}");
        let org = ORGS[i % ORGS.len()];
        let attributes = match i % 5 {
            0 => vec![term("esdServiceTypes", "hsg-01", "Housing Advice")],
            1 => vec![
                term("openActive", "oa-9", "Wellbeing"),
                term("esdServiceTypes", "x-1", "Parenting"),
            ],
            2 => vec![],
            3 => vec![term("esdServiceTypes", "da-1", "domestic abuse support")],
            _ => vec![term("otherTaxonomy", "da-2", "Domestic abuse support")],
        };
        let status = match i {
            37 => "inactive",
            38 => "defunct",
            39 => "temporarily closed",
            _ => "active",
        };
        out.push(json!({
            "id": id,
            "name": format!("Family service {i}"),
            "description": "Support for families.",
            "status": status,
            "email": format!("service{i}@example.org"),
            "minimum_age": (i % 3) * 5,
            "maximum_age": 18,
            "organization": {"id": format!("org-{}", i % ORGS.len()), "name": org},
            "service_at_locations": [{"id": format!("sal-{i}"), "location": {"id": format!("loc-{i}"), "addresses": [{"postal_code": format!("WR{} {}AB", i % 12 + 1, i % 9)}]}}],
            "service_areas": [{"id": format!("area-{i}"), "name": "Worcestershire"}],
            "attributes": attributes,
            "last_modified": "2026-10-01T09:00:00Z"
        }));
    }
    out.push(json!({"id": "svc-bad-name", "name": "", "status": "active"}));
    out.push(json!({"id": "svc-bad-status", "name": "Broken status", "status": "open"}));
    out.push(json!({"id": "svc-bad-age", "name": "Broken ages", "status": "active", "minimum_age": 16, "maximum_age": 5}));
    out.push(json!({"id": "svc-bad-term", "name": "Broken term", "status": "active", "attributes": [{"taxonomy_term": "Housing"}]}));
    // In full only (a file holds it with its id); the API lists it without one.
    out.push(json!({"id": "svc-noid", "name": "Listed without id", "status": "active"}));
    // Listed by the API, but 404 when fetched.
    out.push(json!({"id": "svc-gone", "name": "Gone", "status": "active"}));
    out
}

impl Directory {
    pub async fn serve() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            services: services(),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/api/services", get(list))
            .route("/api/services/{id}", get(one))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { inner, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Services the API serves that the platform can read (active or not).
    pub fn readable(&self) -> usize {
        let g = self.inner.lock().unwrap();
        g.services
            .iter()
            .filter(|s| {
                s["id"].as_str().is_some_and(|id| {
                    id.starts_with("svc-") && id[4..].chars().all(|c| c.is_ascii_digit())
                })
            })
            .count()
    }

    pub fn remove(&self, id: &str) {
        self.inner
            .lock()
            .unwrap()
            .services
            .retain(|s| s["id"] != id);
    }

    pub fn edit(&self, id: &str, f: impl FnOnce(&mut Value)) {
        let mut g = self.inner.lock().unwrap();
        f(g.services.iter_mut().find(|s| s["id"] == id).unwrap());
    }

    pub fn set_empty(&self, empty: bool) {
        self.inner.lock().unwrap().empty = empty;
    }

    pub fn set_failing(&self, failing: bool) {
        self.inner.lock().unwrap().failing = failing;
    }
}

async fn list(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let g = inner.lock().unwrap();
    if g.failing {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "down"})),
        );
    }
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let per_page: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(10)
        .max(1);
    let all: Vec<Value> = if g.empty {
        Vec::new()
    } else {
        g.services.clone()
    };
    let total_pages = all.len().div_ceil(per_page);
    // The listing carries one-to-one fields only; the one without an id is listed without it.
    let contents: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|s| {
            let mut l = json!({"id": s["id"], "name": s["name"], "status": s["status"]});
            if s["id"] == "svc-noid" {
                l.as_object_mut().unwrap().remove("id");
            }
            l
        })
        .collect();
    (
        StatusCode::OK,
        Json(json!({
            "total_items": all.len(), "total_pages": total_pages, "page_number": page, "size": contents.len(),
            "first_page": page == 1, "last_page": page >= total_pages, "empty": contents.is_empty(),
            "contents": contents
        })),
    )
}

async fn one(State(inner): State<Arc<Mutex<Inner>>>, Path(id): Path<String>) -> impl IntoResponse {
    let g = inner.lock().unwrap();
    if g.failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})));
    }
    match g.services.iter().find(|s| s["id"] == id.as_str()) {
        Some(s) if id != "svc-gone" => (StatusCode::OK, Json(s.clone())),
        _ => (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))),
    }
}
