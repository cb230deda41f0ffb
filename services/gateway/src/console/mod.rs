//! The practitioners' web console (`/console/`): server-rendered HTML that works without
//! JavaScript, after the GOV.UK Design System. A person signs in with their council's identity
//! provider ([`crate::oidc`]; in demo mode, as one of the demo users) and gets a server-side
//! session ([`crate::session`]). Every page is read from the services' gRPC APIs with the
//! person's own ID token as the bearer credential, so each service admits, scopes and audits the
//! call exactly as for any other caller: the console shows what the services give, and a section
//! a service refuses (`PERMISSION_DENIED`) is shown as withheld, saying so. Every form carries
//! the session's CSRF token; a form without the right one is refused (403) and changes nothing.
mod actions;
pub mod requests;
pub mod view;

use crate::oidc::{Oidc, OidcError, Pending};
use crate::session::{self, CookieSpec, Session, SignedIn, Timeouts};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use eh_auth::demo::DemoIssuer;
use eh_auth::{Authenticator, Principal};
use eh_platform::Clock;
use eh_proto::allocation::v1 as alloc;
use eh_proto::allocation::v1::allocation_service_client::AllocationServiceClient;
use eh_proto::assessment::v1 as assess;
use eh_proto::assessment::v1::assessment_service_client::AssessmentServiceClient;
use eh_proto::casework::v1 as cw;
use eh_proto::casework::v1::casework_service_client::CaseworkServiceClient;
use eh_proto::consent::v1 as consent;
use eh_proto::consent::v1::consent_service_client::ConsentServiceClient;
use eh_proto::intake::v1 as intake;
use eh_proto::intake::v1::intake_service_client::IntakeServiceClient;
use eh_proto::notifications::v1 as notif;
use eh_proto::notifications::v1::notifications_service_client::NotificationsServiceClient;
use maud::{Markup, html};
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tonic::transport::Channel;
use view::{Banner, FieldError};

/// The demo users a person may sign in as in demo mode (subject, roles, agency, what they are).
pub const DEMO_USERS: &[(&str, &str, &str, &str)] = &[
    (
        "demo-front-door",
        "front_door",
        "council",
        "Front door officer: sees the queue and every case, steps up and closes",
    ),
    (
        "demo-team-manager",
        "team_manager",
        "council",
        "Team manager: as the front door, and overrides",
    ),
    (
        "demo-practitioner",
        "practitioner",
        "education",
        "Early Help practitioner (education)",
    ),
    (
        "demo-business-support",
        "business_support",
        "council",
        "Business support: a restricted reader (no family details, no consent)",
    ),
];

/// The gRPC clients the console calls, each with the person's token.
#[derive(Clone)]
pub struct Clients {
    pub casework: CaseworkServiceClient<Channel>,
    pub intake: IntakeServiceClient<Channel>,
    pub consent: ConsentServiceClient<Channel>,
    pub notifications: NotificationsServiceClient<Channel>,
    pub allocation: AllocationServiceClient<Channel>,
    pub assessment: AssessmentServiceClient<Channel>,
}

/// What the console's handlers share.
pub struct Console {
    pub db: DatabaseConnection,
    /// Seals the ID token each session holds ([`session::TokenKey`]).
    pub token_key: session::TokenKey,
    pub clock: Arc<dyn Clock>,
    pub auth: Authenticator,
    pub oidc: Oidc,
    pub demo: Option<DemoIssuer>,
    pub cookie: CookieSpec,
    pub timeouts: Timeouts,
    /// GOV.UK Frontend's `dist/govuk` directory, when installed.
    pub assets: Option<PathBuf>,
    pub clients: Clients,
    /// Each council's name, by id.
    pub councils: BTreeMap<String, String>,
    /// The origins a form may lead to (this one, and each provider's for RP-initiated logout).
    pub form_origins: String,
}

/// The console's routes, under `/console/` (and GOV.UK Frontend's fonts and images at
/// `/assets/`, where its stylesheet looks for them).
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(queue))
        .route("/console/sign-in", get(sign_in_page))
        .route("/console/sign-in/{tenant}", get(sign_in_start))
        .route("/console/callback", get(callback))
        .route("/console/demo", get(demo_page).post(demo_sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/signed-out", get(signed_out))
        .route("/console/cases/{id}", get(case_page))
        .route(
            "/console/cases/{id}/step-up",
            get(step_up_page).post(step_up),
        )
        .route("/console/cases/{id}/close", get(close_page).post(close))
        .route(
            "/console/cases/{id}/consent/{record}/withdraw",
            get(actions::withdraw_page).post(actions::withdraw),
        )
        .route(
            "/console/cases/{id}/override",
            get(actions::override_page).post(actions::request_override),
        )
        .route(
            "/console/override-requests",
            get(actions::override_requests),
        )
        .route(
            "/console/override-requests/{id}",
            post(actions::approve_override),
        )
        .route("/console/offers", get(actions::offers_page))
        .route("/console/offers/{id}", post(actions::answer_offer))
        .route("/console/matches", get(matches_page))
        .route("/console/matches/{id}", post(resolve_match))
        .route("/console/static/init.js", get(init_js))
        .route("/console/static/console.css", get(console_css))
        .route("/console/assets/{*path}", get(asset))
        .route("/assets/{*path}", get(font_or_image))
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            security_headers,
        ))
        .with_state(console)
}

/// Every console answer: a CSP without `unsafe-inline`, no framing, no referrer, no sniffing,
/// and `no-store` on everything but GOV.UK Frontend's files (pages hold personal data).
async fn security_headers(State(c): State<Arc<Console>>, req: Request, next: Next) -> Response {
    let static_file = req.uri().path().starts_with("/console/assets/")
        || req.uri().path().starts_with("/assets/")
        || req.uri().path().starts_with("/console/static/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'; form-action {}",
        c.form_origins
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !static_file {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

async fn not_found() -> Response {
    html_response(
        StatusCode::NOT_FOUND,
        view::message(
            "Page not found",
            None,
            "If you typed the web address, check it is correct.",
            Some(("/console/", "Go to the front door queue")),
        ),
    )
}

/// A signed-in person on a request: their session (id and row), principal and token.
struct User {
    session: Session,
    principal: Principal,
    token: String,
    tenant: String,
}

impl User {
    fn banner(&self, c: &Console) -> (String, String) {
        let council = c
            .councils
            .get(&self.tenant)
            .cloned()
            .unwrap_or_else(|| self.tenant.clone());
        let who = match &self.principal {
            Principal::Person { subject, roles, .. } => {
                format!(
                    "{subject} ({})",
                    roles
                        .iter()
                        .map(|r| view::words(r))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            p => p.actor(),
        };
        (council, who)
    }

    /// A gRPC request carrying the person's token.
    fn call<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Ok(v) = format!("Bearer {}", self.token).parse() {
            req.metadata_mut().insert("authorization", v);
        }
        req
    }
}

/// The page `render` gives, with the header for `user`.
fn render(
    c: &Console,
    user: &User,
    status: StatusCode,
    title: &str,
    errors: &[FieldError],
    body: Markup,
) -> Response {
    let (council, who) = user.banner(c);
    let banner = Banner {
        council: &council,
        who: &who,
        csrf: &user.session.csrf,
    };
    html_response(status, view::page(title, Some(&banner), errors, body))
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console: internal error");
    html_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        view::message(
            "Sorry, there is a problem with the service",
            None,
            "Try again later.",
            None,
        ),
    )
}

fn set_cookie(res: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

impl Console {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// The live session the request's cookie names, with its id.
    async fn session(&self, headers: &HeaderMap) -> Result<Option<(String, Session)>, Response> {
        let Some(id) = self.cookie.read(headers) else {
            return Ok(None);
        };
        let s = session::load(&self.db, &self.token_key, &id, self.now(), self.timeouts)
            .await
            .map_err(internal)?;
        Ok(s.map(|s| (id, s)))
    }

    /// The signed-in person, or the answer that sends them to sign in.
    async fn user(&self, headers: &HeaderMap, uri: &Uri) -> Result<User, Response> {
        let to_sign_in = || {
            let back = uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/console/");
            let mut res = see_other(&format!("/console/sign-in?return_to={}", urlencode(back)));
            set_cookie(&mut res, &self.cookie.clear());
            res
        };
        let Some((id, s)) = self.session(headers).await? else {
            return Err(to_sign_in());
        };
        let Some(signed) = s.user.clone() else {
            return Err(to_sign_in());
        };
        // The token is checked as the services check it; one they would refuse (expired, its
        // issuer's keys gone) ends the session.
        let principal = match self.auth.validate_token(&signed.id_token) {
            Ok(p) if p.tenant() == Some(s.tenant.as_str()) => p,
            Ok(_) | Err(_) => {
                session::delete(&self.db, &id).await.map_err(internal)?;
                return Err(to_sign_in());
            }
        };
        Ok(User {
            tenant: s.tenant.clone(),
            session: s,
            principal,
            token: signed.id_token,
        })
    }

    /// A signed-in person's form, opened: the person (or the answer that sends them to sign in),
    /// the form parsed, and its CSRF token checked against the session's (a wrong or missing one:
    /// the 403 page, nothing changed). Every form a signed-in person posts comes through here.
    async fn form_user(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        body: &Bytes,
    ) -> Result<(User, Form), Response> {
        let user = self.user(headers, uri).await?;
        let form = parse_form(body);
        match self.csrf_refusal(&user.session, &form) {
            Some(r) => Err(r),
            None => Ok((user, form)),
        }
    }

    /// A signed-in person's form about case `case_id` ([`Console::form_user`]), with the case
    /// read with their token (or the page that says why it cannot be shown).
    async fn case_form(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        body: &Bytes,
        case_id: &str,
    ) -> Result<(User, Form, cw::Case), Response> {
        let (user, form) = self.form_user(headers, uri, body).await?;
        let case = load_case(self, &user, case_id).await?;
        Ok((user, form, case))
    }

    /// A page about a case: the signed-in user and the case as they may see it (or the page
    /// saying why not).
    async fn case_user(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        case_id: &str,
    ) -> Result<(User, cw::Case), Response> {
        let user = self.user(headers, uri).await?;
        let case = load_case(self, &user, case_id).await?;
        Ok((user, case))
    }

    /// Checks a form's CSRF token against the session's: `None` when it is right, the 403 page
    /// otherwise.
    fn csrf_refusal(&self, session: &Session, form: &Form) -> Option<Response> {
        match form.get("csrf") {
            Some(t) if session::same_secret(t, &session.csrf) => None,
            _ => {
                tracing::info!("console: form refused (CSRF token missing or wrong)");
                Some(html_response(
                    StatusCode::FORBIDDEN,
                    view::message(
                        "This form cannot be accepted",
                        None,
                        "It was not sent from this page of the service, or your session changed. Nothing was changed. Go back, reload the page and try again.",
                        Some(("/console/", "Go to the front door queue")),
                    ),
                ))
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A console path to return to after sign-in: only a path of the console itself.
fn safe_return(to: Option<&str>) -> String {
    match to {
        Some(p) if p.starts_with("/console/") && !p.starts_with("//") && !p.contains('\\') => {
            p.to_string()
        }
        _ => "/console/".into(),
    }
}

/// A form as it was sent (`application/x-www-form-urlencoded`): its fields in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    /// The last value of a field.
    fn get(&self, name: &str) -> Option<&String> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// A field's value, trimmed; empty when it is missing.
    fn text(&self, name: &str) -> String {
        self.get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    }

    /// Every value of a repeated field (checkboxes), in order.
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn parse_form(body: &Bytes) -> Form {
    Form(
        body.split(|b| *b == b'&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let mut it = kv.splitn(2, |b| *b == b'=');
                let k = decode(it.next().unwrap_or_default());
                let v = decode(it.next().unwrap_or_default());
                (k, v)
            })
            .collect(),
    )
}

fn decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = s
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match byte {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- sign-in -------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ReturnTo {
    return_to: Option<String>,
}

async fn sign_in_page(State(c): State<Arc<Console>>, Query(q): Query<ReturnTo>) -> Response {
    let back = safe_return(q.return_to.as_deref());
    let body = html! {
        h1 class="govuk-heading-l" { "Sign in to Early Help" }
        @if c.oidc.registrations().next().is_none() && c.demo.is_none() {
            p class="govuk-body" { "No council has sign-in configured yet (tenants.<id>.oidc.client)." }
        }
        @if c.oidc.registrations().next().is_some() {
            p class="govuk-body" { "Sign in with your council's account." }
            ul class="govuk-list" {
                @for r in c.oidc.registrations() {
                    li {
                        a class="govuk-link" href={"/console/sign-in/" (urlencode(&r.tenant)) "?return_to=" (urlencode(&back))} {
                            "Sign in with " (r.name)
                        }
                    }
                }
            }
        }
        @if c.demo.is_some() {
            h2 class="govuk-heading-m" { "Demo" }
            p class="govuk-body" {
                a class="govuk-link" href={"/console/demo?return_to=" (urlencode(&back))} { "Sign in as a demo user" }
                " (demo mode only: no identity provider needed)."
            }
        }
    };
    html_response(StatusCode::OK, view::page("Sign in", None, &[], body))
}

async fn sign_in_start(
    State(c): State<Arc<Console>>,
    Path(tenant): Path<String>,
    Query(q): Query<ReturnTo>,
) -> Response {
    let back = safe_return(q.return_to.as_deref());
    match c.oidc.begin(&tenant, &back).await {
        Ok((url, pending)) => {
            let json = match serde_json::to_string(&pending) {
                Ok(j) => j,
                Err(e) => return internal(e),
            };
            let (id, _) = match session::create_pending(&c.db, &tenant, &json, c.now()).await {
                Ok(x) => x,
                Err(e) => return internal(e),
            };
            let mut res = see_other(&url);
            set_cookie(&mut res, &c.cookie.set(&id));
            res
        }
        Err(OidcError::UnknownTenant) => not_found().await,
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %e, "console: sign-in cannot start");
            html_response(
                StatusCode::BAD_GATEWAY,
                view::message(
                    "Sign-in is not available",
                    None,
                    "Your council's sign-in service cannot be reached. Try again in a few minutes.",
                    Some(("/console/sign-in", "Back to sign in")),
                ),
            )
        }
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn sign_in_failed(why: &str) -> Response {
    html_response(
        StatusCode::BAD_REQUEST,
        view::message(
            "You could not be signed in",
            None,
            why,
            Some(("/console/sign-in", "Sign in again")),
        ),
    )
}

async fn callback(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let (id, s) = match c.session(&headers).await {
        Ok(Some(x)) => x,
        Ok(None) => {
            return sign_in_failed("The sign-in took too long or was started in another browser.");
        }
        Err(r) => return r,
    };
    let Some(pending) = s
        .pending
        .as_deref()
        .and_then(|p| serde_json::from_str::<Pending>(p).ok())
    else {
        return sign_in_failed("There is no sign-in under way in this browser.");
    };
    // A sign-in answer is used once, whatever its outcome.
    if let Err(e) = session::delete(&c.db, &id).await {
        return internal(e);
    }
    let clear = c.cookie.clear();
    let fail = |why: &str| {
        let mut r = sign_in_failed(why);
        set_cookie(&mut r, &clear);
        r
    };
    if let Some(err) = q.error {
        tracing::info!(tenant = %s.tenant, error = %err, "console: the provider refused the sign-in");
        return fail("Your council's sign-in service did not sign you in.");
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return fail("The sign-in answer was incomplete.");
    };
    let finished = match c.oidc.finish(&s.tenant, &pending, &state, &code).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(tenant = %s.tenant, error = %e, "console: sign-in refused");
            return fail("The sign-in answer could not be accepted.");
        }
    };
    // The services must accept the token too, for this council.
    match c.auth.validate_token(&finished.id_token) {
        Ok(p) if p.tenant() == Some(s.tenant.as_str()) => {}
        Ok(_) => {
            tracing::warn!(tenant = %s.tenant, "console: the ID token is another council's");
            return fail("Your account does not belong to this council.");
        }
        Err(e) => {
            tracing::warn!(tenant = %s.tenant, error = %e, "console: the ID token is not accepted by the platform");
            return fail(
                "Your account is not set up for Early Help (the platform does not accept its token).",
            );
        }
    }
    let user = SignedIn {
        subject: finished.subject,
        id_token: finished.id_token,
        end_session_url: finished.end_session_url,
    };
    match session::sign_in(
        &c.db,
        &c.token_key,
        None,
        &s.tenant,
        &user,
        finished.expires,
        c.now(),
        c.timeouts,
    )
    .await
    {
        Ok((new_id, _)) => {
            let mut res = see_other(&safe_return(Some(&pending.return_to)));
            set_cookie(&mut res, &c.cookie.set(&new_id));
            res
        }
        Err(e) => internal(e),
    }
}

async fn demo_page(State(c): State<Arc<Console>>, Query(q): Query<ReturnTo>) -> Response {
    if c.demo.is_none() {
        return not_found().await;
    }
    let back = safe_return(q.return_to.as_deref());
    let (id, csrf) =
        match session::create_pending(&c.db, eh_auth::demo::DEMO_TENANT, "{}", c.now()).await {
            Ok(x) => x,
            Err(e) => return internal(e),
        };
    let options: Vec<(&str, &str)> = DEMO_USERS.iter().map(|u| (u.0, u.3)).collect();
    let body = html! {
        h1 class="govuk-heading-l" { "Sign in as a demo user" }
        p class="govuk-body" { "Demo mode only: the local demo issuer signs a token for the user you choose, for the demo council." }
        form method="post" action="/console/demo" novalidate {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="return_to" value=(back);
            (view::radios(&[], "user", "Who are you?", &options, "demo-front-door"))
            button type="submit" class="govuk-button" data-module="govuk-button" { "Sign in" }
        }
    };
    let mut res = html_response(
        StatusCode::OK,
        view::page("Sign in as a demo user", None, &[], body),
    );
    set_cookie(&mut res, &c.cookie.set(&id));
    res
}

async fn demo_sign_in(State(c): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(demo) = &c.demo else {
        return not_found().await;
    };
    let form = parse_form(&body);
    let (id, s) = match c.session(&headers).await {
        Ok(Some(x)) => x,
        Ok(None) => return sign_in_failed("The sign-in page expired. Open it again."),
        Err(r) => return r,
    };
    if let Some(r) = c.csrf_refusal(&s, &form) {
        return r;
    }
    let Some(&(sub, role, agency, _)) = DEMO_USERS
        .iter()
        .find(|u| Some(u.0) == form.get("user").map(String::as_str))
    else {
        return sign_in_failed("Choose one of the demo users.");
    };
    let ttl = c.timeouts.absolute.num_seconds();
    let token = match demo.mint(sub, &[role], agency, ttl) {
        Ok(t) => t,
        Err(e) => return internal(e),
    };
    let user = SignedIn {
        subject: sub.into(),
        id_token: token,
        end_session_url: None,
    };
    let expires = c.now() + c.timeouts.absolute;
    match session::sign_in(
        &c.db,
        &c.token_key,
        Some(&id),
        &demo.tenant,
        &user,
        expires,
        c.now(),
        c.timeouts,
    )
    .await
    {
        Ok((new_id, _)) => {
            let mut res = see_other(&safe_return(form.get("return_to").map(String::as_str)));
            set_cookie(&mut res, &c.cookie.set(&new_id));
            res
        }
        Err(e) => internal(e),
    }
}

async fn sign_out(State(c): State<Arc<Console>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    let (id, s) = match c.session(&headers).await {
        Ok(Some(x)) => x,
        Ok(None) => return see_other("/console/signed-out"),
        Err(r) => return r,
    };
    if let Some(r) = c.csrf_refusal(&s, &form) {
        return r;
    }
    if let Err(e) = session::delete(&c.db, &id).await {
        return internal(e);
    }
    let to = s
        .user
        .and_then(|u| u.end_session_url)
        .unwrap_or_else(|| "/console/signed-out".into());
    let mut res = see_other(&to);
    set_cookie(&mut res, &c.cookie.clear());
    res
}

async fn signed_out() -> Response {
    html_response(
        StatusCode::OK,
        view::message(
            "You have signed out",
            None,
            "Close the browser if you are on a shared computer.",
            Some(("/console/sign-in", "Sign in again")),
        ),
    )
}

// ---- the front-door queue ------------------------------------------------------------------

/// A section read from a service for a page.
enum Section<T> {
    Shown(T),
    /// The service refused the person (role, agency, consent): the page says so.
    Withheld(String),
    /// Nothing there (not found).
    Empty,
    Failed,
}

fn section<T>(r: Result<tonic::Response<T>, tonic::Status>, what: &str) -> Section<T> {
    match r {
        Ok(r) => Section::Shown(r.into_inner()),
        Err(s) if s.code() == tonic::Code::PermissionDenied => Section::Withheld(format!(
            "Your role or agency does not allow you to see the {what}, or the family's consent does not allow it to be shared with you."
        )),
        Err(s) if s.code() == tonic::Code::NotFound => Section::Empty,
        Err(s) => {
            tracing::warn!(code = ?s.code(), section = what, "console: a section could not be read");
            Section::Failed
        }
    }
}

fn failed(what: &str) -> Markup {
    html! { p class="govuk-body" { "The " (what) " cannot be shown just now. Try again later." } }
}

/// Whether a case's timeline shows a service-level breach.
fn breached(c: &cw::Case) -> bool {
    c.timeline
        .iter()
        .any(|t| t.kind == "service_level_breached")
}

/// The next pending clock of a case (kind, due).
fn next_due(c: &cw::Case) -> Option<&cw::Timer> {
    c.timers
        .iter()
        .filter(|t| t.status == "pending")
        .min_by(|a, b| a.due_at.cmp(&b.due_at))
}

fn closed(state: &str) -> bool {
    state.starts_with("closed")
}

async fn queue(State(c): State<Arc<Console>>, headers: HeaderMap, uri: Uri) -> Response {
    let user = match c.user(&headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let listed = c
        .clients
        .casework
        .clone()
        .list_cases(user.call(cw::ListCasesRequest {
            tenant: user.tenant.clone(),
            limit: 500,
            ..Default::default()
        }))
        .await;
    let body = match section(listed, "cases") {
        Section::Shown(r) => {
            let mut open: Vec<&cw::Case> = r.cases.iter().filter(|k| !closed(&k.state)).collect();
            // Breaches first, then what is due soonest, then the oldest.
            open.sort_by(|a, b| {
                breached(b)
                    .cmp(&breached(a))
                    .then_with(|| {
                        let (da, db) = (
                            next_due(a).map(|t| &t.due_at),
                            next_due(b).map(|t| &t.due_at),
                        );
                        match (da, db) {
                            (Some(x), Some(y)) => x.cmp(y),
                            (Some(_), None) => std::cmp::Ordering::Less,
                            (None, Some(_)) => std::cmp::Ordering::Greater,
                            (None, None) => std::cmp::Ordering::Equal,
                        }
                    })
                    .then_with(|| a.opened_at.cmp(&b.opened_at))
            });
            let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
            for k in &open {
                *by_state.entry(k.state.as_str()).or_default() += 1;
            }
            let closed_n = r.cases.len() - open.len();
            html! {
                h2 class="govuk-heading-m" { "Open cases by state" }
                (view::summary(&by_state
                    .iter()
                    .map(|(st, n)| {
                        let label = STATE_LABELS.iter().find(|l| l.0 == *st).map_or("Other", |l| l.1);
                        (label, n.to_string())
                    })
                    .collect::<Vec<_>>()))
                @if open.is_empty() {
                    p class="govuk-body" { "There are no open cases." }
                } @else {
                    table class="govuk-table" {
                        caption class="govuk-table__caption govuk-table__caption--m" { "Open cases: breaches first, then what is due soonest" }
                        thead class="govuk-table__head" {
                            tr class="govuk-table__row" {
                                th scope="col" class="govuk-table__header" { "Case" }
                                th scope="col" class="govuk-table__header" { "State" }
                                th scope="col" class="govuk-table__header" { "Due" }
                                th scope="col" class="govuk-table__header" { "Opened" }
                            }
                        }
                        tbody class="govuk-table__body" {
                            @for k in &open {
                                tr class="govuk-table__row" {
                                    td class="govuk-table__cell" {
                                        a class="govuk-link" href={"/console/cases/" (urlencode(&k.case_id))} {
                                            span class="govuk-visually-hidden" { "Case " }
                                            (k.source_reference.clone().chars().take(40).collect::<String>())
                                            " (" (view::short_id(&k.case_id)) ")"
                                        }
                                    }
                                    td class="govuk-table__cell" {
                                        @if breached(k) {
                                            strong class="govuk-tag govuk-tag--red" { "Breached" } " "
                                        }
                                        (view::words(&k.state))
                                    }
                                    td class="govuk-table__cell" {
                                        @if let Some(t) = next_due(k) {
                                            (view::words(&t.kind)) " by " (view::when(&t.due_at))
                                        } @else { "—" }
                                    }
                                    td class="govuk-table__cell" { (view::when(&k.opened_at)) }
                                }
                            }
                        }
                    }
                }
                @if closed_n > 0 {
                    details class="govuk-details" {
                        summary class="govuk-details__summary" {
                            span class="govuk-details__summary-text" { "Closed cases (" (closed_n) ")" }
                        }
                        div class="govuk-details__text" {
                            ul class="govuk-list" {
                                @for k in r.cases.iter().filter(|k| closed(&k.state)) {
                                    li {
                                        a class="govuk-link" href={"/console/cases/" (urlencode(&k.case_id))} {
                                            span class="govuk-visually-hidden" { "Case " }
                                            (k.source_reference.clone().chars().take(40).collect::<String>())
                                            " (" (view::short_id(&k.case_id)) ")"
                                        }
                                        ": " (view::words(&k.state))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Section::Withheld(why) => view::withheld("The queue", &why),
        Section::Empty => html! { p class="govuk-body" { "There are no cases." } },
        Section::Failed => failed("queue"),
    };
    let body = html! {
        h1 class="govuk-heading-l" { "Front door queue" }
        (body)
    };
    render(&c, &user, StatusCode::OK, "Front door queue", &[], body)
}

const STATE_LABELS: &[(&str, &str)] = &[
    ("requested", "Requested"),
    ("awaiting_consent", "Awaiting consent"),
    ("screening", "Screening"),
    ("ready_for_allocation", "Ready for allocation"),
    ("allocating", "Allocating"),
    ("waiting_for_provider", "Waiting for a provider"),
    ("allocated", "Allocated"),
    ("assessment_open", "Assessment open"),
    ("assessed", "Assessed"),
    ("plan_agreed", "Plan agreed"),
    ("in_review", "In review"),
    ("stepped_up", "Stepped up"),
];

// ---- the case page -------------------------------------------------------------------------

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

/// The case `id`, read with the person's token; or the page that says why it cannot be shown
/// (withheld, not found, failed).
async fn load_case(c: &Console, user: &User, id: &str) -> Result<cw::Case, Response> {
    let got = c
        .clients
        .casework
        .clone()
        .get_case(user.call(cw::GetCaseRequest {
            tenant: user.tenant.clone(),
            case_id: id.to_string(),
        }))
        .await;
    match section(got, "case") {
        Section::Shown(k) => Ok(k),
        Section::Withheld(why) => Err(render(
            c,
            user,
            StatusCode::FORBIDDEN,
            "Case withheld",
            &[],
            html! {
                h1 class="govuk-heading-l" { "Case" }
                (view::withheld("This case is", &why))
            },
        )),
        Section::Empty => Err(render(
            c,
            user,
            StatusCode::NOT_FOUND,
            "Case not found",
            &[],
            html! {
                h1 class="govuk-heading-l" { "Case not found" }
                p class="govuk-body" { "Your council holds no case with this reference." }
                p class="govuk-body" { a class="govuk-link" href="/console/" { "Go to the front door queue" } }
            },
        )),
        Section::Failed => Err(render(
            c,
            user,
            StatusCode::BAD_GATEWAY,
            "Case",
            &[],
            failed("case"),
        )),
    }
}

async fn case_page(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let (user, case) = match c.case_user(&headers, &uri, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let tenant = user.tenant.clone();
    let mut k = c.clients.clone();
    let mut plans = c.clients.assessment.clone();
    let (referral, consents, messages, offers, assessment, plan) = tokio::join!(
        k.intake.get_referral(user.call(intake::GetReferralRequest {
            tenant: tenant.clone(),
            referral_id: case.referral_id.clone(),
        })),
        k.consent
            .list_consent(user.call(consent::ListConsentRequest {
                tenant: tenant.clone(),
                family_id: case.family_id.clone(),
            })),
        k.notifications
            .list_messages(user.call(notif::ListMessagesRequest {
                tenant: tenant.clone(),
                related_id: case.case_id.clone(),
            })),
        k.allocation
            .list_offers(user.call(alloc::ListOffersRequest {
                tenant: tenant.clone(),
                case_id: case.case_id.clone(),
                ..Default::default()
            })),
        k.assessment
            .get_assessment(user.call(assess::GetAssessmentRequest {
                tenant: tenant.clone(),
                case_id: case.case_id.clone(),
                ..Default::default()
            })),
        plans.get_plan(user.call(assess::GetPlanRequest {
            tenant: tenant.clone(),
            case_id: case.case_id.clone(),
            ..Default::default()
        })),
    );
    let banner = match done.done.as_deref() {
        Some("stepped-up") => Some("The case was stepped up to the front door."),
        Some("closed") => Some("The case was closed."),
        Some("consent-withdrawn") => {
            Some("The consent was withdrawn: nothing more is shared under it.")
        }
        _ => None,
    };
    let may_step_up = ["front_door", "team_manager", "social_worker"]
        .iter()
        .any(|r| user.principal.has_role(r));
    let may_close = ["front_door", "team_manager"]
        .iter()
        .any(|r| user.principal.has_role(r));
    let open = !closed(&case.state) && case.state != "stepped_up";
    let screening: Vec<&cw::TimelineEntry> = case
        .timeline
        .iter()
        .filter(|t| t.from_state == "screening" || t.kind.contains("screening"))
        .collect();
    let body = html! {
        @if let Some(b) = banner {
            div class="govuk-notification-banner govuk-notification-banner--success" role="alert" aria-labelledby="done-title" data-module="govuk-notification-banner" {
                div class="govuk-notification-banner__header" {
                    h2 class="govuk-notification-banner__title" id="done-title" { "Success" }
                }
                div class="govuk-notification-banner__content" {
                    p class="govuk-notification-banner__heading" { (b) }
                }
            }
        }
        span class="govuk-caption-l" { "Case " (case.case_id) }
        h1 class="govuk-heading-l" { (view::words(&case.state)) }
        (view::summary(&[
            ("Opened", view::when(&case.opened_at)),
            ("Updated", view::when(&case.updated_at)),
            ("Route", view::words(&case.route)),
            ("Referred by", format!("{} {}", case.source_system, case.source_reference)),
            ("Lead practitioner", case.lead_practitioner.clone()),
            ("Lead organisation", case.lead_organization.clone()),
        ]))
        @if open && (may_step_up || may_close) {
            div class="govuk-button-group" {
                @if may_step_up {
                    a class="govuk-button govuk-button--warning" href={"/console/cases/" (urlencode(&case.case_id)) "/step-up"} { "Step up" }
                }
                @if may_close {
                    a class="govuk-button govuk-button--secondary" href={"/console/cases/" (urlencode(&case.case_id)) "/close"} { "Close the case" }
                }
            }
        }

        h2 class="govuk-heading-m" id="family" { "Family and children" }
        @match section(referral, "family's details") {
            Section::Shown(r) => {
                @if let Some(refl) = &r.referral {
                    h3 class="govuk-heading-s" { "Children" }
                    ul class="govuk-list govuk-list--bullet" {
                        @for ch in &refl.children {
                            li { (ch.given_name) " " (ch.family_name)
                                @if let Some(d) = &ch.date_of_birth { ", born " (d) } }
                        }
                    }
                    h3 class="govuk-heading-s" { "Family members" }
                    ul class="govuk-list govuk-list--bullet" {
                        @for m in &refl.family_members {
                            li { (m.given_name) " " (m.family_name) " (" (view::words(&m.relationship)) ")"
                                @if m.safe_to_contact == Some(false) { " " strong class="govuk-tag govuk-tag--red" { "Do not contact" } } }
                        }
                    }
                    @if !refl.needs.is_empty() {
                        p class="govuk-body" { "Needs: " (refl.needs.iter().map(|n| view::words(n)).collect::<Vec<_>>().join(", ")) }
                    }
                    @if r.re_referral { p class="govuk-body" { strong class="govuk-tag" { "Re-referral" } " referred in the last 12 months" } }
                }
            }
            Section::Withheld(why) => (view::withheld("The family's details are", &why)),
            Section::Empty => p class="govuk-body" { "No referral is held for this case." },
            Section::Failed => (failed("family's details")),
        }

        h2 class="govuk-heading-m" id="consent" { "Consent" }
        @match section(consents, "consent records") {
            Section::Shown(r) => {
                @if r.records.is_empty() && r.overrides.is_empty() {
                    p class="govuk-body" { "No consent is recorded." }
                }
                @for rec in &r.records {
                    @if let Some(cn) = &rec.consent {
                        (view::summary(&[
                            ("Given by", format!("{} ({})", cn.given_by, view::words(&cn.giver_relationship))),
                            ("Method", view::words(&cn.method)),
                            ("Given on", cn.given_on.clone()),
                            ("Purposes", cn.purposes.iter().map(|p| view::words(p)).collect::<Vec<_>>().join(", ")),
                            ("Withdrawn", rec.withdrawal.as_ref().map(|w| view::when(&w.withdrawn_at)).unwrap_or_else(|| "No".into())),
                        ]))
                        @if rec.withdrawal.is_none() {
                            p class="govuk-body" {
                                a class="govuk-link" href={"/console/cases/" (urlencode(&case.case_id)) "/consent/" (urlencode(&rec.record_id)) "/withdraw"} {
                                    "Withdraw this consent" span class="govuk-visually-hidden" { " given by " (cn.given_by) }
                                }
                            }
                        }
                    }
                }
                @for o in &r.overrides {
                    div class="govuk-warning-text" {
                        span class="govuk-warning-text__icon" aria-hidden="true" { "!" }
                        strong class="govuk-warning-text__text" {
                            span class="govuk-visually-hidden" { "Warning" }
                            "Safeguarding override: " (o.legal_basis) ", authorised by " (o.authorised_by) ", until " (view::when(&o.expires_at))
                        }
                    }
                }
            }
            Section::Withheld(why) => (view::withheld("Consent is", &why)),
            Section::Empty => p class="govuk-body" { "No consent is recorded." },
            Section::Failed => (failed("consent records")),
        }
        p class="govuk-body" {
            a class="govuk-link" href={"/console/cases/" (urlencode(&case.case_id)) "/override"} { "Safeguarding overrides for this family" }
        }

        h2 class="govuk-heading-m" id="screening" { "Screening" }
        @if screening.is_empty() {
            p class="govuk-body" { "Not screened yet." }
        } @else {
            ul class="govuk-list" {
                @for t in &screening {
                    li { (view::when(&t.at)) ": " (view::words(&t.to_state))
                        @if !t.reason.is_empty() { " — " (t.reason) } }
                }
            }
        }

        h2 class="govuk-heading-m" id="allocation" { "Allocation" }
        @match section(offers, "allocation") {
            Section::Shown(r) => {
                @if r.offers.is_empty() { p class="govuk-body" { "No service has been offered the case." } }
                @else {
                    ul class="govuk-list govuk-list--bullet" {
                        @for o in &r.offers {
                            li { (o.service_name) ": " (view::words(&o.status)) " (offered " (view::when(&o.offered_at)) ")"
                                @if !o.decline_reason.is_empty() { ", declined: " (view::words(&o.decline_reason)) } }
                        }
                    }
                }
            }
            Section::Withheld(why) => (view::withheld("Allocation is", &why)),
            Section::Empty => p class="govuk-body" { "No service has been offered the case." },
            Section::Failed => (failed("allocation")),
        }

        h2 class="govuk-heading-m" id="assessment" { "Assessment and plan" }
        @match section(assessment, "assessment") {
            Section::Shown(a) => {
                @if let Some(v) = &a.version {
                    p class="govuk-body" { "Assessment version " (v.version) ": " (view::words(&v.status)) ", " (a.contributions.len()) " contribution(s)" }
                }
                @for w in &a.withheld {
                    (view::withheld("A contribution is", &format!("{} ({})", view::words(&w.what), view::words(&w.reason))))
                }
            }
            Section::Withheld(why) => (view::withheld("The assessment is", &why)),
            Section::Empty => p class="govuk-body" { "No assessment has been opened." },
            Section::Failed => (failed("assessment")),
        }
        @match section(plan, "plan") {
            Section::Shown(p) => {
                @if let Some(v) = &p.version { p class="govuk-body" { "Plan version " (v.version) ", set " (view::when(&v.set_at)) } }
                @if !p.actions.is_empty() {
                    ul class="govuk-list govuk-list--bullet" {
                        @for a in &p.actions {
                            li { (a.what) " — " (view::words(&a.status)) ", due " (a.due_date)
                                @if a.overdue { " " strong class="govuk-tag govuk-tag--red" { "Overdue" } } }
                        }
                    }
                }
            }
            Section::Withheld(why) => (view::withheld("The plan is", &why)),
            Section::Empty => p class="govuk-body" { "No plan has been set." },
            Section::Failed => (failed("plan")),
        }

        h2 class="govuk-heading-m" id="messages" { "Messages" }
        @match section(messages, "messages") {
            Section::Shown(r) => {
                @if r.messages.is_empty() { p class="govuk-body" { "No messages." } }
                @else {
                    table class="govuk-table" {
                        caption class="govuk-table__caption govuk-table__caption--s" { "Messages sent and suppressed" }
                        thead class="govuk-table__head" { tr class="govuk-table__row" {
                            th scope="col" class="govuk-table__header" { "Message" }
                            th scope="col" class="govuk-table__header" { "Status" }
                            th scope="col" class="govuk-table__header" { "Created" }
                        } }
                        tbody class="govuk-table__body" {
                            @for m in &r.messages {
                                tr class="govuk-table__row" {
                                    td class="govuk-table__cell" { (view::words(&m.template)) }
                                    td class="govuk-table__cell" { (view::words(&m.status)) }
                                    td class="govuk-table__cell" { (view::when(&m.created_at)) }
                                }
                            }
                        }
                    }
                }
            }
            Section::Withheld(why) => (view::withheld("Messages are", &why)),
            Section::Empty => p class="govuk-body" { "No messages." },
            Section::Failed => (failed("messages")),
        }

        h2 class="govuk-heading-m" id="timeline" { "Timeline" }
        ol class="govuk-list" {
            @for t in &case.timeline {
                li { (view::when(&t.at)) ": " (view::words(&t.kind))
                    @if !t.to_state.is_empty() { " → " (view::words(&t.to_state)) }
                    @if !t.reason.is_empty() { " — " (t.reason) } }
            }
        }
    };
    render(&c, &user, StatusCode::OK, "Case", &[], body)
}

// ---- step up and close ---------------------------------------------------------------------

fn step_up_form(case_id: &str, csrf: &str, errors: &[FieldError], reason: &str) -> Markup {
    html! {
        a class="govuk-back-link" href={"/console/cases/" (urlencode(case_id))} { "Back to the case" }
        h1 class="govuk-heading-l" { "Step up the case" }
        p class="govuk-body" { "The case goes to the council's front door at once, and the front door is told." }
        form method="post" action={"/console/cases/" (urlencode(case_id)) "/step-up"} novalidate {
            input type="hidden" name="csrf" value=(csrf);
            (view::textarea(errors, "reason", "Why is the case stepped up?", "Say what you know of the risk; this goes on the case's timeline.", reason))
            button type="submit" class="govuk-button govuk-button--warning" data-module="govuk-button" { "Step up" }
        }
    }
}

const CLOSE_OUTCOMES: &[(&str, &str)] = &[
    ("closed_advice_given", "Advice given (no Early Help needed)"),
    ("closed_no_consent", "No consent"),
    ("closed_withdrawn", "The family withdrew"),
];

fn close_form(
    case_id: &str,
    csrf: &str,
    errors: &[FieldError],
    outcome: &str,
    reason: &str,
) -> Markup {
    html! {
        a class="govuk-back-link" href={"/console/cases/" (urlencode(case_id))} { "Back to the case" }
        h1 class="govuk-heading-l" { "Close the case" }
        form method="post" action={"/console/cases/" (urlencode(case_id)) "/close"} novalidate {
            input type="hidden" name="csrf" value=(csrf);
            (view::radios(errors, "outcome", "Why is the case closed?", CLOSE_OUTCOMES, outcome))
            (view::textarea(errors, "reason", "Reasons", "What was decided and why; this goes on the case's timeline.", reason))
            button type="submit" class="govuk-button" data-module="govuk-button" { "Close the case" }
        }
    }
}

async fn step_up_page(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let user = match c.user(&headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let body = step_up_form(&id, &user.session.csrf, &[], "");
    render(&c, &user, StatusCode::OK, "Step up the case", &[], body)
}

async fn close_page(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let user = match c.user(&headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let body = close_form(&id, &user.session.csrf, &[], "", "");
    render(&c, &user, StatusCode::OK, "Close the case", &[], body)
}

/// The error of a required text field left empty: none when it holds something.
fn required(value: &str, field: &'static str, message: &str) -> Vec<FieldError> {
    if value.is_empty() {
        vec![FieldError {
            field,
            message: message.into(),
        }]
    } else {
        Vec::new()
    }
}

/// The service's part of a form a signed-in person sent: when the form's own checks found
/// nothing (`errors` empty), `call` (a service's gRPC method with the person's token) is made and
/// its answer returned; otherwise the errors to show the form again with — the form's own (the
/// service is not called) or the service's refusal, on `field`.
async fn submit<T>(
    mut errors: Vec<FieldError>,
    field: &'static str,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, Vec<FieldError>> {
    if !errors.is_empty() {
        return Err(errors);
    }
    call.await.map_err(|s| {
        errors.push(refusal(&s, field));
        errors
    })
}

/// A form shown again with its errors (400).
fn again(c: &Console, user: &User, title: &str, errors: &[FieldError], body: Markup) -> Response {
    render(c, user, StatusCode::BAD_REQUEST, title, errors, body)
}

/// A service's refusal of a form, as the field errors the form shows.
fn refusal(s: &tonic::Status, field: &'static str) -> FieldError {
    let message = match s.code() {
        tonic::Code::PermissionDenied => "Your role does not allow you to do this.".to_string(),
        tonic::Code::FailedPrecondition => format!("This cannot be done now: {}", s.message()),
        tonic::Code::InvalidArgument => format!("Check what you entered: {}", s.message()),
        tonic::Code::NotFound => "Your council holds no such record.".to_string(),
        _ => "The service could not do this just now. Try again later.".to_string(),
    };
    FieldError { field, message }
}

async fn step_up(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (user, form) = match c.form_user(&headers, &uri, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let reason = form.text("reason");
    let errors = required(&reason, "reason", "Enter why the case is stepped up");
    let mut casework = c.clients.casework.clone();
    let call = casework.step_up(user.call(cw::StepUpRequest {
        tenant: user.tenant.clone(),
        case_id: id.clone(),
        reason: reason.clone(),
    }));
    match submit(errors, "reason", call).await {
        Ok(_) => see_other(&format!(
            "/console/cases/{}?done=stepped-up",
            urlencode(&id)
        )),
        Err(errors) => {
            let body = step_up_form(&id, &user.session.csrf, &errors, &reason);
            again(&c, &user, "Step up the case", &errors, body)
        }
    }
}

async fn close(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (user, form) = match c.form_user(&headers, &uri, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let outcome = form.get("outcome").cloned().unwrap_or_default();
    let reason = form.text("reason");
    let mut errors = Vec::new();
    if !CLOSE_OUTCOMES.iter().any(|o| o.0 == outcome) {
        errors.push(FieldError {
            field: "outcome",
            message: "Select why the case is closed".into(),
        });
    }
    errors.extend(required(&reason, "reason", "Enter the reasons"));
    let mut casework = c.clients.casework.clone();
    let call = casework.close_case(user.call(cw::CloseCaseRequest {
        tenant: user.tenant.clone(),
        case_id: id.clone(),
        outcome: outcome.clone(),
        reason: reason.clone(),
    }));
    match submit(errors, "outcome", call).await {
        Ok(_) => see_other(&format!("/console/cases/{}?done=closed", urlencode(&id))),
        Err(errors) => {
            let body = close_form(&id, &user.session.csrf, &errors, &outcome, &reason);
            again(&c, &user, "Close the case", &errors, body)
        }
    }
}

// ---- match candidates ----------------------------------------------------------------------

async fn matches_view(
    c: &Console,
    user: &User,
    errors: &[FieldError],
    done: Option<&str>,
) -> Markup {
    let r = c
        .clients
        .intake
        .clone()
        .list_match_candidates(user.call(intake::ListMatchCandidatesRequest {
            tenant: user.tenant.clone(),
            status: Some("pending".into()),
        }))
        .await;
    html! {
        h1 class="govuk-heading-l" { "Possible matches" }
        @if let Some(d) = done {
            div class="govuk-notification-banner govuk-notification-banner--success" role="alert" aria-labelledby="done-title" data-module="govuk-notification-banner" {
                div class="govuk-notification-banner__header" { h2 class="govuk-notification-banner__title" id="done-title" { "Success" } }
                div class="govuk-notification-banner__content" { p class="govuk-notification-banner__heading" { (d) } }
            }
        }
        p class="govuk-body" { "People named in a referral who may be someone the council already holds. Confirm to merge the two records, or reject to keep them apart." }
        @match section(r, "possible matches") {
            Section::Shown(list) => {
                @if list.candidates.is_empty() { p class="govuk-body" { "There are no possible matches to decide." } }
                @for m in &list.candidates {
                    @let name = |p: &Option<intake::PersonRef>| p.as_ref().map(|p| format!("{} {}", p.given_name, p.family_name)).unwrap_or_default();
                    @let fid = format!("decision-{}", m.candidate_id);
                    div class="govuk-summary-card" {
                        div class="govuk-summary-card__title-wrapper" {
                            h2 class="govuk-summary-card__title" { (name(&m.new_person)) " may be " (name(&m.existing_person)) }
                        }
                        div class="govuk-summary-card__content" {
                            (view::summary(&[
                                ("Score", format!("{:.2}", m.score)),
                                ("Fields that matched", m.fields.iter().map(|f| format!("{} ({})", view::words(&f.field), view::words(&f.kind))).collect::<Vec<_>>().join(", ")),
                            ]))
                            form method="post" action={"/console/matches/" (urlencode(&m.candidate_id))} novalidate {
                                input type="hidden" name="csrf" value=(user.session.csrf);
                                div class="govuk-form-group" {
                                    fieldset class="govuk-fieldset" {
                                        legend class="govuk-fieldset__legend govuk-fieldset__legend--s" { "Is this the same person?" }
                                        div class="govuk-radios govuk-radios--small govuk-radios--inline" data-module="govuk-radios" {
                                            div class="govuk-radios__item" {
                                                input class="govuk-radios__input" id=(fid) name="decision" type="radio" value="confirm";
                                                label class="govuk-label govuk-radios__label" for=(fid) { "Yes, confirm the match" }
                                            }
                                            div class="govuk-radios__item" {
                                                input class="govuk-radios__input" id={(fid) "-reject"} name="decision" type="radio" value="reject";
                                                label class="govuk-label govuk-radios__label" for={(fid) "-reject"} { "No, reject it" }
                                            }
                                        }
                                    }
                                }
                                div class="govuk-form-group" {
                                    label class="govuk-label" for={"reason-" (m.candidate_id)} { "Reason" }
                                    input class="govuk-input" id={"reason-" (m.candidate_id)} name="reason" type="text";
                                }
                                button type="submit" class="govuk-button govuk-button--secondary" data-module="govuk-button" { "Save the decision" }
                            }
                        }
                    }
                }
            }
            Section::Withheld(why) => (view::withheld("Possible matches are", &why)),
            Section::Empty => p class="govuk-body" { "There are no possible matches to decide." },
            Section::Failed => (failed("possible matches")),
        }
        @if !errors.is_empty() { span class="govuk-visually-hidden" { "The decision was not saved." } }
    }
}

async fn matches_page(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Query(done): Query<Done>,
) -> Response {
    let user = match c.user(&headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let note = match done.done.as_deref() {
        Some("confirm") => Some("The match was confirmed: the records were merged."),
        Some("reject") => Some("The match was rejected: the records are kept apart."),
        _ => None,
    };
    let body = matches_view(&c, &user, &[], note).await;
    render(&c, &user, StatusCode::OK, "Possible matches", &[], body)
}

async fn resolve_match(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (user, form) = match c.form_user(&headers, &uri, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let decision = form.get("decision").cloned().unwrap_or_default();
    let field: &'static str = "main-content";
    let mut errors = Vec::new();
    if decision != "confirm" && decision != "reject" {
        errors.push(FieldError {
            field,
            message: "Select whether this is the same person".into(),
        });
    }
    let mut intake = c.clients.intake.clone();
    let call = intake.resolve_match_candidate(user.call(intake::ResolveMatchCandidateRequest {
        tenant: user.tenant.clone(),
        candidate_id: id.clone(),
        decision: decision.clone(),
        reason: form.text("reason"),
    }));
    match submit(errors, field, call).await {
        Ok(_) => see_other(&format!("/console/matches?done={decision}")),
        Err(errors) => {
            let body = matches_view(&c, &user, &errors, None).await;
            again(&c, &user, "Possible matches", &errors, body)
        }
    }
}

// ---- static files --------------------------------------------------------------------------

const INIT_JS: &str = "document.body.classList.add('js-enabled');\n\
if ('noModule' in HTMLScriptElement.prototype) { document.body.classList.add('govuk-frontend-supported'); }\n\
import('/console/assets/govuk-frontend.min.js').then((m) => m.initAll()).catch(() => {});\n";

/// The console's own few rules beside GOV.UK Frontend's (the sign-out button in the banner).
const CONSOLE_CSS: &str = ".eh-signed-in{display:flex;justify-content:space-between;align-items:center;flex-wrap:wrap}\n\
.eh-sign-out .govuk-button{margin:0}\n";

async fn init_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        INIT_JS,
    )
        .into_response()
}

async fn console_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        CONSOLE_CSS,
    )
        .into_response()
}

/// A file of GOV.UK Frontend's build, by a path that stays inside its directory.
async fn serve_file(base: Option<PathBuf>, path: &str) -> Response {
    let Some(base) = base else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let ok = !path.is_empty()
        && path
            .split('/')
            .all(|p| !p.is_empty() && !p.starts_with('.') && !p.contains('\\'));
    if !ok {
        return StatusCode::NOT_FOUND.into_response();
    }
    let file = base.join(path);
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("map") => "application/json",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn asset(State(c): State<Arc<Console>>, Path(path): Path<String>) -> Response {
    serve_file(c.assets.clone(), &path).await
}

/// GOV.UK Frontend's stylesheet looks for its fonts and images at `/assets/`.
async fn font_or_image(State(c): State<Arc<Console>>, Path(path): Path<String>) -> Response {
    serve_file(c.assets.as_ref().map(|a| a.join("assets")), &path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let f = parse_form(&Bytes::from_static(
            b"csrf=a%2Bb&reason=two+words%21&x=%zz&empty=",
        ));
        assert_eq!(f.text("csrf"), "a+b");
        assert_eq!(f.text("reason"), "two words!");
        assert_eq!(f.text("x"), "%zz");
        assert_eq!(f.get("empty").map(String::as_str), Some(""));
        assert_eq!(f.get("missing"), None);
        let f = parse_form(&Bytes::from_static(b"a=1&b=x&a=2"));
        assert_eq!(f.all("a"), ["1", "2"]);
        assert_eq!(f.text("a"), "2");
    }

    #[test]
    fn only_console_paths_are_returned_to() {
        assert_eq!(safe_return(Some("/console/cases/1")), "/console/cases/1");
        for bad in [
            "https://evil.example/",
            "//evil.example/console/",
            "/consolex",
            "/console/\\x",
        ] {
            assert_eq!(safe_return(Some(bad)), "/console/", "{bad}");
        }
        assert_eq!(safe_return(None), "/console/");
    }
}
