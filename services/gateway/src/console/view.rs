//! The console's HTML, after the GOV.UK Design System (its classes and page template; the
//! styles and scripts are GOV.UK Frontend's own, served from `gateway.console.assets_dir`).
//! Every value goes through maud, which escapes it; nothing here writes raw HTML from data.
//! No inline script or style (the CSP forbids them): the pages work without JavaScript.
use maud::{DOCTYPE, Markup, html};

/// Who is signed in, as the header shows it.
pub struct Banner<'a> {
    pub council: &'a str,
    pub who: &'a str,
    pub csrf: &'a str,
}

/// An error a form shows: the field's id and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// The page template: skip link, header (with sign-out when signed in), main, footer.
pub fn page(
    title: &str,
    banner: Option<&Banner<'_>>,
    errors: &[FieldError],
    body: Markup,
) -> Markup {
    let full_title = if errors.is_empty() {
        format!("{title} – Early Help")
    } else {
        format!("Error: {title} – Early Help")
    };
    html! {
        (DOCTYPE)
        html lang="en" class="govuk-template" {
            head {
                meta charset="utf-8";
                title { (full_title) }
                meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover";
                meta name="robots" content="noindex, nofollow";
                link rel="stylesheet" href="/console/assets/govuk-frontend.min.css";
                link rel="stylesheet" href="/console/static/console.css";
            }
            body class="govuk-template__body" {
                a href="#main-content" class="govuk-skip-link" data-module="govuk-skip-link" { "Skip to main content" }
                header class="govuk-template__header" {
                    div class="govuk-generic-header" {
                        div class="govuk-generic-header__container govuk-width-container" {
                            div class="govuk-generic-header__logo" {
                                a href="/console/" class="govuk-generic-header__homepage-link" { "Early Help" }
                            }
                        }
                    }
                    section aria-label="Service information" class="govuk-service-navigation" data-module="govuk-service-navigation" {
                        div class="govuk-width-container" {
                            div class="govuk-service-navigation__container" {
                                span class="govuk-service-navigation__service-name" {
                                    a href="/console/" class="govuk-service-navigation__link" { "Practitioners' console" }
                                }
                                @if banner.is_some() {
                                    nav aria-label="Menu" class="govuk-service-navigation__wrapper" {
                                        ul class="govuk-service-navigation__list" id="navigation" {
                                            li class="govuk-service-navigation__item" {
                                                a class="govuk-service-navigation__link" href="/console/" { "Front door queue" }
                                            }
                                            li class="govuk-service-navigation__item" {
                                                a class="govuk-service-navigation__link" href="/console/matches" { "Possible matches" }
                                            }
                                            li class="govuk-service-navigation__item" {
                                                a class="govuk-service-navigation__link" href="/console/offers" { "Offers" }
                                            }
                                            li class="govuk-service-navigation__item" {
                                                a class="govuk-service-navigation__link" href="/console/override-requests" { "Overrides to approve" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(b) = banner {
                    div class="govuk-width-container" {
                        div class="govuk-phase-banner eh-signed-in" {
                            p class="govuk-phase-banner__content" {
                                span class="govuk-phase-banner__text" {
                                    "Signed in to " strong { (b.council) } " as " strong { (b.who) }
                                }
                            }
                            form method="post" action="/console/sign-out" class="eh-sign-out" {
                                input type="hidden" name="csrf" value=(b.csrf);
                                button type="submit" class="govuk-button govuk-button--secondary" data-module="govuk-button" { "Sign out" }
                            }
                        }
                    }
                }
                div class="govuk-width-container" {
                    main class="govuk-main-wrapper" id="main-content" role="main" {
                        @if !errors.is_empty() {
                            (error_summary(errors))
                        }
                        (body)
                    }
                }
                footer class="govuk-footer" {
                    div class="govuk-width-container" {
                        div class="govuk-footer__meta" {
                            div class="govuk-footer__meta-item govuk-footer__meta-item--grow" {
                                p class="govuk-body-s" { "Early Help platform. Personal information: use it only for the family's support." }
                            }
                        }
                    }
                }
                script type="module" src="/console/static/init.js" {}
            }
        }
    }
}

/// The error summary at the top of a form page: each error links to its field.
pub fn error_summary(errors: &[FieldError]) -> Markup {
    html! {
        div class="govuk-error-summary" data-module="govuk-error-summary" {
            div role="alert" {
                h2 class="govuk-error-summary__title" { "There is a problem" }
                div class="govuk-error-summary__body" {
                    ul class="govuk-list govuk-error-summary__list" {
                        @for e in errors {
                            li { a href={"#" (e.field)} { (e.message) } }
                        }
                    }
                }
            }
        }
    }
}

/// The error message of `field`, when it has one.
pub fn field_error(errors: &[FieldError], field: &str) -> Option<String> {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.clone())
}

/// A labelled textarea with its hint and error.
pub fn textarea(
    errors: &[FieldError],
    id: &'static str,
    label: &str,
    hint: &str,
    value: &str,
) -> Markup {
    textarea_named(errors, id, id, label, hint, value)
}

/// [`textarea`] whose id is not its field's name (one of several forms on a page).
pub fn textarea_named(
    errors: &[FieldError],
    id: &str,
    name: &str,
    label: &str,
    hint: &str,
    value: &str,
) -> Markup {
    let err = field_error(errors, id);
    let hint_id = format!("{id}-hint");
    let err_id = format!("{id}-error");
    let described = if err.is_some() {
        format!("{hint_id} {err_id}")
    } else {
        hint_id.clone()
    };
    let group = if err.is_some() {
        "govuk-form-group govuk-form-group--error"
    } else {
        "govuk-form-group"
    };
    let area = if err.is_some() {
        "govuk-textarea govuk-textarea--error"
    } else {
        "govuk-textarea"
    };
    html! {
        div class=(group) {
            label class="govuk-label govuk-label--s" for=(id) { (label) }
            div id=(hint_id) class="govuk-hint" { (hint) }
            @if let Some(e) = &err {
                p id=(err_id) class="govuk-error-message" { span class="govuk-visually-hidden" { "Error: " } (e) }
            }
            textarea class=(area) id=(id) name=(name) rows="4" aria-describedby=(described) { (value) }
        }
    }
}

/// A radio group (a fieldset with a legend) with its error; the first radio carries the group's
/// id so the error summary's link lands on it.
pub fn radios(
    errors: &[FieldError],
    id: &'static str,
    legend: &str,
    options: &[(&str, &str)],
    chosen: &str,
) -> Markup {
    radios_named(errors, id, id, legend, options, chosen)
}

/// [`radios`] whose id is not its field's name (one of several forms on a page).
pub fn radios_named(
    errors: &[FieldError],
    id: &str,
    name: &str,
    legend: &str,
    options: &[(&str, &str)],
    chosen: &str,
) -> Markup {
    let err = field_error(errors, id);
    let err_id = format!("{id}-error");
    let group = if err.is_some() {
        "govuk-form-group govuk-form-group--error"
    } else {
        "govuk-form-group"
    };
    html! {
        div class=(group) {
            fieldset class="govuk-fieldset" aria-describedby=[err.as_ref().map(|_| err_id.clone())] {
                legend class="govuk-fieldset__legend govuk-fieldset__legend--s" { (legend) }
                @if let Some(e) = &err {
                    p id=(err_id) class="govuk-error-message" { span class="govuk-visually-hidden" { "Error: " } (e) }
                }
                div class="govuk-radios" data-module="govuk-radios" {
                    @for (i, (value, text)) in options.iter().enumerate() {
                        @let input_id = if i == 0 { id.to_string() } else { format!("{id}-{i}") };
                        div class="govuk-radios__item" {
                            input class="govuk-radios__input" id=(input_id) name=(name) type="radio" value=(value) checked[*value == chosen];
                            label class="govuk-label govuk-radios__label" for=(input_id) { (text) }
                        }
                    }
                }
            }
        }
    }
}

/// The notice for a section the user may not see.
pub fn withheld(section: &str, why: &str) -> Markup {
    html! {
        div class="govuk-inset-text eh-withheld" {
            strong { (section) " withheld. " } (why)
        }
    }
}

/// A GOV.UK summary list of (key, value) rows.
pub fn summary(rows: &[(&str, String)]) -> Markup {
    html! {
        dl class="govuk-summary-list" {
            @for (k, v) in rows {
                div class="govuk-summary-list__row" {
                    dt class="govuk-summary-list__key" { (k) }
                    dd class="govuk-summary-list__value" { @if v.is_empty() { "—" } @else { (v) } }
                }
            }
        }
    }
}

/// A state or status, made readable (`awaiting_consent` → `Awaiting consent`).
/// An id short enough to read aloud: its last 8 characters (a UUIDv7 begins with its time,
/// the same for every case made within a minute; its end is random).
pub fn short_id(id: &str) -> String {
    let n = id.chars().count();
    id.chars().skip(n.saturating_sub(8)).collect()
}

pub fn words(s: &str) -> String {
    let s = s.replace('_', " ");
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// An RFC 3339 time as a person reads it (UK time is the council's, but the platform keeps
/// UTC: it says so).
pub fn when(s: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .format("%-d %b %Y %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| s.to_string())
}

/// A simple page with a heading and a paragraph (errors, signed out, not found).
pub fn message(
    title: &str,
    banner: Option<&Banner<'_>>,
    text: &str,
    link: Option<(&str, &str)>,
) -> Markup {
    page(
        title,
        banner,
        &[],
        html! {
            h1 class="govuk-heading-l" { (title) }
            p class="govuk-body" { (text) }
            @if let Some((href, label)) = link {
                p class="govuk-body" { a class="govuk-link" href=(href) { (label) } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let html = summary(&[("Name", "<script>alert(1)</script>".into())]).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        let html = message("x\"><b>", None, "<img src=x>", None).into_string();
        assert!(
            !html.contains("<img src=x>") && !html.contains("\"><b>"),
            "{html}"
        );
    }

    #[test]
    fn a_page_has_a_skip_link_a_main_landmark_and_no_inline_script() {
        let html = message("Hello", None, "text", None).into_string();
        assert!(html.contains(r##"href="#main-content""##));
        assert!(html.contains(r#"id="main-content""#));
        assert!(html.contains(r#"<html lang="en""#));
        assert!(
            !html.contains("<script>") && !html.contains("style="),
            "{html}"
        );
    }

    #[test]
    fn a_form_error_is_summarised_and_linked_to_its_field() {
        let errors = vec![FieldError {
            field: "reason",
            message: "Enter the reason".into(),
        }];
        let html = page(
            "Step up",
            None,
            &errors,
            textarea(&errors, "reason", "Reason", "Why", ""),
        )
        .into_string();
        assert!(html.contains("<title>Error: Step up"));
        assert!(html.contains(r##"href="#reason""##));
        assert!(html.contains(r#"aria-describedby="reason-hint reason-error""#));
    }
}
