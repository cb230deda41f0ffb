//! The console's pages that change a family's consent or a provider's offers: consent
//! withdrawal, the two-person safeguarding override (one person asks, a different one — a team
//! manager — approves: [`super::requests`] keeps the request between them, the consent service
//! grants it and refuses a requester approving their own), and a provider's offers to accept or
//! decline with a reason. Each reads and writes through the services' gRPC APIs with the
//! person's own token, so the services decide who may; a section a service refuses is shown as
//! withheld, saying so. Every form is opened by [`Console::form_user`] (signed in, CSRF checked).
use super::requests::{self, Request as OverrideRequest};
use super::{
    Console, Done, Form, Section, User, again, failed, internal, load_case, refusal, render,
    required, section, see_other, submit, urlencode, view,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use eh_proto::allocation::v1 as alloc;
use eh_proto::casework::v1 as cw;
use eh_proto::consent::v1 as consent;
use maud::{Markup, html};
use std::sync::Arc;
use view::FieldError;

/// The role that authorises an override (the consent service's `MANAGER_ROLE`).
const MANAGER: &str = "team_manager";
/// The longest an override may last (the consent service's `MAX_OVERRIDE_DAYS`).
const MAX_DAYS: i64 = 30;

const AGENCIES: &[(&str, &str)] = &[
    ("health", "Health"),
    ("education", "Education"),
    ("police", "Police"),
    ("housing", "Housing"),
    ("social_care", "Social care"),
    ("youth_support", "Youth support"),
    ("jobcentre", "Jobcentre"),
    ("voluntary", "Voluntary sector"),
    ("other", "Other"),
];
const CATEGORIES: &[(&str, &str)] = &[
    ("all", "Everything"),
    ("health", "Health"),
    ("education", "Education"),
    ("police", "Police"),
    ("housing", "Housing"),
    ("finances", "Finances"),
    ("domestic_abuse", "Domestic abuse"),
    ("mental_health", "Mental health"),
    ("substance_use", "Substance use"),
    ("social_care", "Social care"),
];
const PURPOSES: &[(&str, &str)] = &[
    ("assessment", "Assessment"),
    ("sharing", "Sharing with other agencies"),
    ("contacting", "Contacting the family"),
];
/// A provider's answers to an offer.
const DECISIONS: &[(&str, &str)] = &[
    ("accept", "Yes, accept the offer"),
    ("decline", "No, decline it"),
];
/// Why a provider declines an offer (allocation's `DECLINE_REASONS`).
const DECLINE_REASONS: &[(&str, &str)] = &[
    ("no_capacity", "No capacity"),
    ("outside_area", "Outside our area"),
    ("needs_not_met", "We cannot meet these needs"),
    ("age_range", "Outside our age range"),
    ("conflict_of_interest", "Conflict of interest"),
    ("other", "Another reason (say what)"),
];

fn case_href(case_id: &str) -> String {
    format!("/console/cases/{}", urlencode(case_id))
}

fn success(text: &str) -> Markup {
    html! {
        div class="govuk-notification-banner govuk-notification-banner--success" role="alert" aria-labelledby="done-title" data-module="govuk-notification-banner" {
            div class="govuk-notification-banner__header" { h2 class="govuk-notification-banner__title" id="done-title" { "Success" } }
            div class="govuk-notification-banner__content" { p class="govuk-notification-banner__heading" { (text) } }
        }
    }
}

/// A single-line text input with its hint and error.
fn input(
    errors: &[FieldError],
    id: &'static str,
    label: &str,
    hint: &str,
    value: &str,
    width: &str,
) -> Markup {
    let err = view::field_error(errors, id);
    let hint_id = format!("{id}-hint");
    let err_id = format!("{id}-error");
    let described = if err.is_some() {
        format!("{hint_id} {err_id}")
    } else {
        hint_id.clone()
    };
    html! {
        div class={"govuk-form-group" @if err.is_some() { " govuk-form-group--error" }} {
            label class="govuk-label govuk-label--s" for=(id) { (label) }
            div id=(hint_id) class="govuk-hint" { (hint) }
            @if let Some(e) = &err {
                p id=(err_id) class="govuk-error-message" { span class="govuk-visually-hidden" { "Error: " } (e) }
            }
            input class={"govuk-input " (width) @if err.is_some() { " govuk-input--error" }} id=(id) name=(id) type="text" value=(value) aria-describedby=(described);
        }
    }
}

/// A checkbox group (a fieldset with a legend) with its error; the first box carries the group's
/// id so the error summary's link lands on it.
fn checkboxes(
    errors: &[FieldError],
    id: &'static str,
    legend: &str,
    options: &[(&str, &str)],
    chosen: &[String],
) -> Markup {
    let err = view::field_error(errors, id);
    let err_id = format!("{id}-error");
    html! {
        div class={"govuk-form-group" @if err.is_some() { " govuk-form-group--error" }} {
            fieldset class="govuk-fieldset" aria-describedby=[err.as_ref().map(|_| err_id.clone())] {
                legend class="govuk-fieldset__legend govuk-fieldset__legend--s" { (legend) }
                @if let Some(e) = &err {
                    p id=(err_id) class="govuk-error-message" { span class="govuk-visually-hidden" { "Error: " } (e) }
                }
                div class="govuk-checkboxes govuk-checkboxes--small" data-module="govuk-checkboxes" {
                    @for (i, (value, text)) in options.iter().enumerate() {
                        @let input_id = if i == 0 { id.to_string() } else { format!("{id}-{i}") };
                        div class="govuk-checkboxes__item" {
                            input class="govuk-checkboxes__input" id=(input_id) name=(id) type="checkbox" value=(value) checked[chosen.iter().any(|c| c == value)];
                            label class="govuk-label govuk-checkboxes__label" for=(input_id) { (text) }
                        }
                    }
                }
            }
        }
    }
}

fn labels(options: &[(&str, &str)], values: &[String]) -> String {
    values
        .iter()
        .map(|v| {
            options
                .iter()
                .find(|o| o.0 == v)
                .map_or_else(|| view::words(v), |o| o.1.to_string())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---- consent withdrawal --------------------------------------------------------------------

/// The consent record `record_id` of the case's family, read with the person's token: the record,
/// or the page body that says why it cannot be shown.
async fn consent_record(
    c: &Console,
    user: &User,
    case: &cw::Case,
    record_id: &str,
) -> Result<consent::ConsentRecord, Markup> {
    let r = c
        .clients
        .consent
        .clone()
        .list_consent(user.call(consent::ListConsentRequest {
            tenant: user.tenant.clone(),
            family_id: case.family_id.clone(),
        }))
        .await;
    match section(r, "consent records") {
        Section::Shown(list) => list
            .records
            .into_iter()
            .find(|r| r.record_id == record_id)
            .ok_or_else(
                || html! { p class="govuk-body" { "The family holds no such consent record." } },
            ),
        Section::Withheld(why) => Err(view::withheld("Consent is", &why)),
        Section::Empty => Err(html! { p class="govuk-body" { "No consent is recorded." } }),
        Section::Failed => Err(failed("consent records")),
    }
}

fn withdraw_form(
    case: &cw::Case,
    record: &consent::ConsentRecord,
    csrf: &str,
    errors: &[FieldError],
    reason: &str,
) -> Markup {
    let action = format!(
        "{}/consent/{}/withdraw",
        case_href(&case.case_id),
        urlencode(&record.record_id)
    );
    html! {
        a class="govuk-back-link" href=(case_href(&case.case_id)) { "Back to the case" }
        h1 class="govuk-heading-l" { "Withdraw consent" }
        @if let Some(cn) = &record.consent {
            (view::summary(&[
                ("Given by", format!("{} ({})", cn.given_by, view::words(&cn.giver_relationship))),
                ("Given on", cn.given_on.clone()),
                ("Purposes", cn.purposes.iter().map(|p| view::words(p)).collect::<Vec<_>>().join(", ")),
            ]))
        }
        @if let Some(w) = &record.withdrawal {
            p class="govuk-body" { "This consent was withdrawn on " (view::when(&w.withdrawn_at)) "." }
        } @else {
            div class="govuk-warning-text" {
                span class="govuk-warning-text__icon" aria-hidden="true" { "!" }
                strong class="govuk-warning-text__text" {
                    span class="govuk-visually-hidden" { "Warning" }
                    "From now on nothing is shared under this consent, and the family's case is closed unless another consent or an override allows the work to go on."
                }
            }
            form method="post" action=(action) novalidate {
                input type="hidden" name="csrf" value=(csrf);
                (view::textarea(errors, "reason", "Why is the consent withdrawn?", "What the family said, and when; this is kept with the withdrawal.", reason))
                button type="submit" class="govuk-button govuk-button--warning" data-module="govuk-button" { "Withdraw consent" }
            }
        }
    }
}

pub(super) async fn withdraw_page(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path((case_id, record_id)): Path<(String, String)>,
) -> Response {
    let (user, case) = match c.case_user(&headers, &uri, &case_id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match consent_record(&c, &user, &case, &record_id).await {
        Ok(rec) => withdraw_form(&case, &rec, &user.session.csrf, &[], ""),
        Err(why) => html! {
            a class="govuk-back-link" href=(case_href(&case.case_id)) { "Back to the case" }
            h1 class="govuk-heading-l" { "Withdraw consent" }
            (why)
        },
    };
    render(&c, &user, StatusCode::OK, "Withdraw consent", &[], body)
}

pub(super) async fn withdraw(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path((case_id, record_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (user, form, case) = match c.case_form(&headers, &uri, &body, &case_id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let reason = form.text("reason");
    let errors = required(&reason, "reason", "Enter why the consent is withdrawn");
    let mut client = c.clients.consent.clone();
    let call = client.withdraw_consent(user.call(consent::WithdrawConsentRequest {
        tenant: user.tenant.clone(),
        record_id: record_id.clone(),
        reason: reason.clone(),
    }));
    let errors = match submit(errors, "reason", call).await {
        Ok(_) => {
            return see_other(&format!(
                "{}?done=consent-withdrawn",
                case_href(&case.case_id)
            ));
        }
        Err(errors) => errors,
    };
    let body = match consent_record(&c, &user, &case, &record_id).await {
        Ok(rec) => withdraw_form(&case, &rec, &user.session.csrf, &errors, &reason),
        Err(why) => html! {
            h1 class="govuk-heading-l" { "Withdraw consent" }
            (why)
        },
    };
    again(&c, &user, "Withdraw consent", &errors, body)
}

// ---- the two-person safeguarding override --------------------------------------------------

/// What the override request form holds.
#[derive(Default)]
struct OverrideDraft {
    legal_basis: String,
    reasoning: String,
    agencies: Vec<String>,
    categories: Vec<String>,
    purposes: Vec<String>,
    days: String,
}

impl OverrideDraft {
    fn from_form(f: &Form) -> Self {
        Self {
            legal_basis: f.text("legal_basis"),
            reasoning: f.text("reasoning"),
            agencies: f.all("agencies"),
            categories: f.all("categories"),
            purposes: f.all("purposes"),
            days: f.text("days"),
        }
    }

    /// The draft's errors, and the days it asks for.
    fn check(&self) -> (Vec<FieldError>, i64) {
        let mut e = Vec::new();
        let mut need = |field, message: &str| {
            e.push(FieldError {
                field,
                message: message.into(),
            })
        };
        if self.legal_basis.is_empty() {
            need("legal_basis", "Enter the legal basis");
        }
        if self.reasoning.is_empty() {
            need(
                "reasoning",
                "Enter why sharing without consent is necessary and proportionate",
            );
        }
        let known = |list: &[String], options: &[(&str, &str)]| {
            !list.is_empty() && list.iter().all(|v| options.iter().any(|o| o.0 == v))
        };
        if !known(&self.agencies, AGENCIES) {
            need("agencies", "Select the agencies it may be shared with");
        }
        if !known(&self.categories, CATEGORIES) {
            need("categories", "Select what may be shared");
        }
        if !known(&self.purposes, PURPOSES) {
            need("purposes", "Select what it may be used for");
        }
        let days = self.days.parse::<i64>().unwrap_or(0);
        if !(1..=MAX_DAYS).contains(&days) {
            need(
                "days",
                &format!("Enter how many days, from 1 to {MAX_DAYS}"),
            );
        }
        (e, days)
    }
}

fn override_request_form(
    case_id: &str,
    csrf: &str,
    errors: &[FieldError],
    d: &OverrideDraft,
) -> Markup {
    html! {
        h2 class="govuk-heading-m" id="request" { "Ask for an override" }
        p class="govuk-body" { "Sharing without the family's consent needs a recorded legal basis and a team manager's approval. You ask; a different person, a team manager, approves." }
        form method="post" action={(case_href(case_id)) "/override"} novalidate {
            input type="hidden" name="csrf" value=(csrf);
            (input(errors, "legal_basis", "Legal basis", "For example: Children Act 1989 s47; DfE information sharing advice 2024.", &d.legal_basis, "govuk-!-width-full"))
            (view::textarea(errors, "reasoning", "Why is sharing without consent necessary and proportionate?", "What is known of the risk, and why the family's consent cannot be asked or relied on.", &d.reasoning))
            (checkboxes(errors, "agencies", "Which agencies may it be shared with?", AGENCIES, &d.agencies))
            (checkboxes(errors, "categories", "What may be shared?", CATEGORIES, &d.categories))
            (checkboxes(errors, "purposes", "What may it be used for?", PURPOSES, &d.purposes))
            (input(errors, "days", "For how many days?", &format!("From 1 to {MAX_DAYS}; it ends by itself."), &d.days, "govuk-input--width-3"))
            button type="submit" class="govuk-button" data-module="govuk-button" { "Ask for approval" }
        }
    }
}

fn request_summary(r: &OverrideRequest) -> Markup {
    view::summary(&[
        (
            "Asked by",
            r.requested_by.trim_start_matches("person:").to_string(),
        ),
        (
            "Asked on",
            r.requested_at.format("%-d %B %Y %H:%M").to_string(),
        ),
        ("Legal basis", r.legal_basis.clone()),
        ("Reasons", r.reasoning.clone()),
        ("Agencies", labels(AGENCIES, &r.agencies)),
        ("What may be shared", labels(CATEGORIES, &r.categories)),
        ("Purposes", labels(PURPOSES, &r.purposes)),
        ("Lasts", format!("{} day(s) from approval", r.days)),
    ])
}

/// The override page's body: the family's overrides and the requests waiting (both only when
/// the person may read the family's consent), what they may do with each, and the request form.
async fn override_view(
    c: &Console,
    user: &User,
    case: &cw::Case,
    errors: &[FieldError],
    draft: &OverrideDraft,
    done: Option<&str>,
) -> Result<Markup, Response> {
    let listed = c
        .clients
        .consent
        .clone()
        .list_consent(user.call(consent::ListConsentRequest {
            tenant: user.tenant.clone(),
            family_id: case.family_id.clone(),
        }))
        .await;
    let me = user.principal.actor();
    let manager = user.principal.has_role(MANAGER);
    let section = section(listed, "consent records");
    let may_read = matches!(section, Section::Shown(_) | Section::Empty);
    let waiting = match &section {
        Section::Shown(_) | Section::Empty => {
            requests::open_for_family(&c.db, &user.tenant, &case.family_id)
                .await
                .map_err(internal)?
        }
        _ => Vec::new(),
    };
    Ok(html! {
        a class="govuk-back-link" href=(case_href(&case.case_id)) { "Back to the case" }
        @if let Some(d) = done { (success(d)) }
        span class="govuk-caption-l" { "Case " (case.case_id) }
        h1 class="govuk-heading-l" { "Safeguarding override" }
        @match section {
            Section::Shown(r) => {
                h2 class="govuk-heading-m" { "Overrides in force or past" }
                @if r.overrides.is_empty() { p class="govuk-body" { "None has been granted for this family." } }
                @for o in &r.overrides {
                    (view::summary(&[
                        ("Legal basis", o.legal_basis.clone()),
                        ("Asked by", o.requested_by.trim_start_matches("person:").to_string()),
                        ("Authorised by", o.authorised_by.trim_start_matches("person:").to_string()),
                        ("Until", view::when(&o.expires_at)),
                    ]))
                }
            }
            Section::Withheld(why) => (view::withheld("The family's consent and overrides are", &why)),
            Section::Empty => p class="govuk-body" { "None has been granted for this family." },
            Section::Failed => (failed("overrides")),
        }
        @if !waiting.is_empty() {
            h2 class="govuk-heading-m" id="waiting" { "Waiting for approval" }
        }
        @for r in &waiting {
            div class="govuk-summary-card" {
                div class="govuk-summary-card__title-wrapper" {
                    h3 class="govuk-summary-card__title" { "Request of " (r.requested_at.format("%-d %B %Y %H:%M").to_string()) }
                }
                div class="govuk-summary-card__content" {
                    (request_summary(r))
                    @if r.requested_by == me {
                        div class="govuk-inset-text" { "You asked for this override. A different person, a team manager, must approve it." }
                    } @else if manager {
                        form method="post" action={"/console/override-requests/" (urlencode(&r.request_id))} novalidate {
                            input type="hidden" name="csrf" value=(user.session.csrf);
                            button type="submit" class="govuk-button govuk-button--warning" data-module="govuk-button" { "Approve the override" }
                        }
                    } @else {
                        div class="govuk-inset-text" { "Waiting for a team manager to approve it." }
                    }
                }
            }
        }
        @if may_read {
            (override_request_form(&case.case_id, &user.session.csrf, errors, draft))
        }
    })
}

pub(super) async fn override_page(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(case_id): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let (user, case) = match c.case_user(&headers, &uri, &case_id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let note = match done.done.as_deref() {
        Some("requested") => {
            Some("Your request was saved. A team manager other than you must now approve it.")
        }
        Some("granted") => Some("The override was granted: the consent service now applies it."),
        _ => None,
    };
    let draft = OverrideDraft::default();
    match override_view(&c, &user, &case, &[], &draft, note).await {
        Ok(body) => render(
            &c,
            &user,
            StatusCode::OK,
            "Safeguarding override",
            &[],
            body,
        ),
        Err(r) => r,
    }
}

pub(super) async fn request_override(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(case_id): Path<String>,
    body: Bytes,
) -> Response {
    let (user, form, case) = match c.case_form(&headers, &uri, &body, &case_id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let draft = OverrideDraft::from_form(&form);
    let (errors, days) = draft.check();
    // Only someone who may read the family's consent asks for an override of it.
    let mut client = c.clients.consent.clone();
    let allowed = client.list_consent(user.call(consent::ListConsentRequest {
        tenant: user.tenant.clone(),
        family_id: case.family_id.clone(),
    }));
    let errors = match submit(errors, "legal_basis", allowed).await {
        Ok(_) => {
            let r = OverrideRequest {
                request_id: uuid_v4(),
                case_id: case.case_id.clone(),
                family_id: case.family_id.clone(),
                requested_by: user.principal.actor(),
                requested_at: c.now(),
                legal_basis: draft.legal_basis.clone(),
                reasoning: draft.reasoning.clone(),
                agencies: draft.agencies.clone(),
                categories: draft.categories.clone(),
                purposes: draft.purposes.clone(),
                days,
                status: "pending".into(),
                decided_by: None,
                override_id: None,
            };
            if let Err(e) = requests::create(&c.db, &user.tenant, &r).await {
                return internal(e);
            }
            tracing::info!(request = %r.request_id, case = %r.case_id, "console: safeguarding override requested");
            return see_other(&format!(
                "{}/override?done=requested",
                case_href(&case.case_id)
            ));
        }
        Err(errors) => errors,
    };
    match override_view(&c, &user, &case, &errors, &draft, None).await {
        Ok(body) => again(&c, &user, "Safeguarding override", &errors, body),
        Err(r) => r,
    }
}

fn uuid_v4() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        (b[8] & 0x3) | 0x8,
        &h[17..20],
        &h[20..32]
    )
}

/// A team manager approves a request: the consent service grants the override, naming the
/// person who asked. The person who asked cannot approve it (refused here, and by the service).
pub(super) async fn approve_override(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Response {
    let (user, _form) = match c.form_user(&headers, &uri, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let req = match requests::find(&c.db, &user.tenant, &request_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return super::not_found().await,
        Err(e) => return internal(e),
    };
    let case = match load_case(&c, &user, &req.case_id).await {
        Ok(k) => k,
        Err(r) => return r,
    };
    let field: &'static str = "main-content";
    let mut errors = Vec::new();
    let mut status = StatusCode::BAD_REQUEST;
    if req.requested_by == user.principal.actor() {
        tracing::info!(request = %req.request_id, "console: an override's requester tried to approve it (refused)");
        status = StatusCode::FORBIDDEN;
        errors.push(FieldError {
            field,
            message: "You asked for this override, so you cannot approve it: a different team manager must.".into(),
        });
    } else if req.status != "pending" {
        errors.push(FieldError {
            field,
            message: "This request is no longer waiting for approval.".into(),
        });
    } else {
        match requests::advance(
            &c.db,
            &user.tenant,
            &req.request_id,
            "pending",
            "approving",
            None,
            None,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => {
                errors.push(FieldError {
                    field,
                    message: "Someone else is approving this request just now.".into(),
                });
            }
            Err(e) => return internal(e),
        }
        if errors.is_empty() {
            let expires = c.now() + chrono::Duration::days(req.days);
            let granted = c
                .clients
                .consent
                .clone()
                .grant_override(user.call(consent::GrantOverrideRequest {
                    tenant: user.tenant.clone(),
                    family_id: req.family_id.clone(),
                    person_id: String::new(),
                    requested_by: req.requested_by.clone(),
                    legal_basis: req.legal_basis.clone(),
                    reasoning: req.reasoning.clone(),
                    agencies: req.agencies.clone(),
                    categories: req.categories.clone(),
                    purposes: req.purposes.clone(),
                    expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                }))
                .await;
            let (to, decided, override_id, refused) = match granted {
                Ok(o) => {
                    let o = o.into_inner();
                    (
                        "granted",
                        Some(user.principal.actor()),
                        Some(o.override_id),
                        None,
                    )
                }
                Err(s) => ("pending", None, None, Some(s)),
            };
            let now = c.now();
            if let Err(e) = requests::advance(
                &c.db,
                &user.tenant,
                &req.request_id,
                "approving",
                to,
                decided.as_deref().map(|d| (d, now)),
                override_id.as_deref(),
            )
            .await
            {
                return internal(e);
            }
            match refused {
                None => {
                    tracing::info!(request = %req.request_id, "console: safeguarding override approved");
                    return see_other(&format!(
                        "{}/override?done=granted",
                        case_href(&req.case_id)
                    ));
                }
                Some(s) => {
                    if s.code() == tonic::Code::PermissionDenied {
                        status = StatusCode::FORBIDDEN;
                    }
                    errors.push(refusal(&s, field));
                }
            }
        }
    }
    match override_view(&c, &user, &case, &errors, &OverrideDraft::default(), None).await {
        Ok(body) => render(&c, &user, status, "Safeguarding override", &errors, body),
        Err(r) => r,
    }
}

/// The council's requests waiting for approval (for team managers; others see it is not theirs).
pub(super) async fn override_requests(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let user = match c.user(&headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let body = if user.principal.has_role(MANAGER) {
        let list = match requests::pending(&c.db, &user.tenant).await {
            Ok(l) => l,
            Err(e) => return internal(e),
        };
        let me = user.principal.actor();
        html! {
            h1 class="govuk-heading-l" { "Overrides to approve" }
            @if list.is_empty() { p class="govuk-body" { "No request is waiting for approval." } }
            @else {
                table class="govuk-table" {
                    caption class="govuk-table__caption govuk-table__caption--m" { "Requests for a safeguarding override, oldest first" }
                    thead class="govuk-table__head" { tr class="govuk-table__row" {
                        th scope="col" class="govuk-table__header" { "Case" }
                        th scope="col" class="govuk-table__header" { "Asked by" }
                        th scope="col" class="govuk-table__header" { "Asked on" }
                    } }
                    tbody class="govuk-table__body" {
                        @for r in &list {
                            tr class="govuk-table__row" {
                                td class="govuk-table__cell" {
                                    a class="govuk-link" href={(case_href(&r.case_id)) "/override#waiting"} {
                                        span class="govuk-visually-hidden" { "Override request for case " }
                                        (view::short_id(&r.case_id))
                                    }
                                }
                                td class="govuk-table__cell" {
                                    (r.requested_by.trim_start_matches("person:"))
                                    @if r.requested_by == me { " (you: another manager approves)" }
                                }
                                td class="govuk-table__cell" { (r.requested_at.format("%-d %B %Y %H:%M").to_string()) }
                            }
                        }
                    }
                }
            }
        }
    } else {
        html! {
            h1 class="govuk-heading-l" { "Overrides to approve" }
            (view::withheld("The requests are", "Only a team manager approves a safeguarding override. Ask for one from the case's page."))
        }
    };
    render(&c, &user, StatusCode::OK, "Overrides to approve", &[], body)
}

// ---- provider offers -----------------------------------------------------------------------

/// A provider's answer to one offer, as its form sent it.
#[derive(Default)]
struct Answer {
    offer_id: String,
    decision: String,
    reason: String,
    detail: String,
}

async fn offers_view(
    c: &Console,
    user: &User,
    errors: &[FieldError],
    answer: Option<&Answer>,
    done: Option<&str>,
) -> Markup {
    let blank = Answer::default();
    let r = c
        .clients
        .allocation
        .clone()
        .list_offers(user.call(alloc::ListOffersRequest {
            tenant: user.tenant.clone(),
            status: "offered".into(),
            ..Default::default()
        }))
        .await;
    html! {
        h1 class="govuk-heading-l" { "Offers to answer" }
        @if let Some(d) = done { (success(d)) }
        p class="govuk-body" { "Cases the council offers to your service. Accept to take the case on, or decline with a reason: it is then offered to the next service." }
        @match section(r, "offers") {
            Section::Shown(list) => {
                @if list.offers.is_empty() { p class="govuk-body" { "There are no offers to answer." } }
                @for (i, o) in list.offers.iter().enumerate() {
                    // The offer whose answer is shown again has the ids its errors link to.
                    @let mine = answer.filter(|a| a.offer_id == o.offer_id);
                    @let a = mine.unwrap_or(&blank);
                    @let errs = if mine.is_some() { errors } else { &[] };
                    @let id = |name: &str| if mine.is_some() { name.to_string() } else { format!("offer-{i}-{name}") };
                    div class="govuk-summary-card" {
                        div class="govuk-summary-card__title-wrapper" {
                            h2 class="govuk-summary-card__title" { (o.service_name) ": case " (view::short_id(&o.case_id)) }
                        }
                        div class="govuk-summary-card__content" {
                            (view::summary(&[
                                ("Needs", o.needs.iter().map(|n| view::words(n)).collect::<Vec<_>>().join(", ")),
                                ("Area", o.district.clone()),
                                ("Children's ages", o.children_ages.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")),
                                ("Offered", view::when(&o.offered_at)),
                                ("Answer by", view::when(&o.respond_by)),
                                ("Why your service", o.reasons.join("; ")),
                                ("The family's wishes", if o.family_preference.is_empty() { "None recorded".into() } else { o.family_preference.clone() }),
                            ]))
                            @for w in &o.withheld {
                                (view::withheld(&view::words(&w.what), &format!("The family's consent does not allow it to be shared with your service ({}).", view::words(&w.reason))))
                            }
                            form method="post" action={"/console/offers/" (urlencode(&o.offer_id))} novalidate {
                                input type="hidden" name="csrf" value=(user.session.csrf);
                                (view::radios_named(errs, &id("decision"), "decision", "Will your service take the case on?", DECISIONS, &a.decision))
                                (view::radios_named(errs, &id("reason"), "reason", "If you decline, why?", DECLINE_REASONS, &a.reason))
                                (view::textarea_named(errs, &id("detail"), "detail", "More detail", "Needed when you decline for another reason.", &a.detail))
                                button type="submit" class="govuk-button" data-module="govuk-button" { "Send the answer" }
                            }
                        }
                    }
                }
            }
            Section::Withheld(why) => (view::withheld("Offers are", &why)),
            Section::Empty => p class="govuk-body" { "There are no offers to answer." },
            Section::Failed => (failed("offers")),
        }
        @if !errors.is_empty() { span class="govuk-visually-hidden" { "The answer was not sent." } }
    }
}

pub(super) async fn offers_page(
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
        Some("accept") => Some("You accepted the offer: the case is allocated to your service."),
        Some("decline") => Some("You declined the offer: the council offers the case elsewhere."),
        _ => None,
    };
    let body = offers_view(&c, &user, &[], None, note).await;
    render(&c, &user, StatusCode::OK, "Offers to answer", &[], body)
}

pub(super) async fn answer_offer(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(offer_id): Path<String>,
    body: Bytes,
) -> Response {
    let (user, form) = match c.form_user(&headers, &uri, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let answer = Answer {
        offer_id,
        decision: form.text("decision"),
        reason: form.text("reason"),
        detail: form.text("detail"),
    };
    let mut errors = Vec::new();
    let mut need = |field, message: &str| {
        errors.push(FieldError {
            field,
            message: message.into(),
        })
    };
    match answer.decision.as_str() {
        "accept" => {}
        "decline" if !DECLINE_REASONS.iter().any(|r| r.0 == answer.reason) => {
            need("reason", "Select why you decline the offer")
        }
        "decline" if answer.reason == "other" && answer.detail.is_empty() => {
            need("detail", "Say why you decline the offer (another reason)")
        }
        "decline" => {}
        _ => need("decision", "Select whether you accept or decline the offer"),
    }
    let mut client = c.clients.allocation.clone();
    let call = async {
        if answer.decision == "accept" {
            client
                .accept_offer(user.call(alloc::AcceptOfferRequest {
                    tenant: user.tenant.clone(),
                    offer_id: answer.offer_id.clone(),
                }))
                .await
        } else {
            client
                .decline_offer(user.call(alloc::DeclineOfferRequest {
                    tenant: user.tenant.clone(),
                    offer_id: answer.offer_id.clone(),
                    reason: answer.reason.clone(),
                    detail: answer.detail.clone(),
                }))
                .await
        }
    };
    // The service's refusal is the page's: the offer may no longer be listed.
    match submit(errors, "main-content", call).await {
        Ok(_) => see_other(&format!("/console/offers?done={}", answer.decision)),
        Err(errors) => {
            let body = offers_view(&c, &user, &errors, Some(&answer), None).await;
            again(&c, &user, "Offers to answer", &errors, body)
        }
    }
}
