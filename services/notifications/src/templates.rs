//! Message templates: built-in defaults, overridden per council in its settings
//! (`tenants.<id>.templates.<name>.{subject,body}`). `{{name}}` placeholders; an unknown
//! placeholder is an error, never sent as-is — and a council's overrides are checked against
//! each template's variables when the service starts, so a typo cannot hold up an urgent message.
//!
//! No template has a variable for a child's name or for the concerns: email is not a secure
//! channel.
use crate::settings::{Council, NotificationsSettings};
use eh_platform::Settings;
use std::collections::BTreeMap;

pub const REFERRAL_ACKNOWLEDGEMENT: &str = "referral_acknowledgement";
/// The referrer is told the screening outcome. Recorded under this name; the text is chosen by
/// outcome: a council may override `screening_outcome_<outcome>` for one outcome, or
/// `screening_outcome` for all three (with `{{outcome}}`, `{{advice}}` and `{{missing}}`).
pub const SCREENING_OUTCOME: &str = "screening_outcome";
pub const STEP_UP_REFERRER: &str = "step_up_referrer";
pub const STEP_UP_FRONT_DOOR: &str = "step_up_front_door";
pub const CONSENT_REQUEST: &str = "consent_request";
pub const SERVICE_LEVEL_BREACH: &str = "service_level_breach";
/// A service is offered a case (allocation).
pub const OFFER_TO_PROVIDER: &str = "offer_to_provider";
/// The team manager is told a service declined a case, or a practitioner declined to lead one.
pub const ALLOCATION_DECLINED: &str = "allocation_declined";
/// The family is told who will help them once the case has a lead practitioner.
pub const LEAD_ASSIGNED_FAMILY: &str = "lead_assigned_family";
/// The referrer is told who will help the family they referred.
pub const LEAD_ASSIGNED_REFERRER: &str = "lead_assigned_referrer";
/// To an overdue plan action's owner (or the lead, for the family's own).
pub const ACTION_OVERDUE: &str = "action_overdue";
/// To the lead, six months after a closure with every outcome met.
pub const FOLLOW_UP_DUE: &str = "follow_up_due";
/// To the front door, when the follow-up check finds the family needs help again.
pub const FOLLOW_UP_FRONT_DOOR: &str = "follow_up_front_door";

const DO_NOT_REPLY: &str =
    "This message was sent by the Early Help platform; please do not reply to it.";

const SCREENING_VARS: &[&str] = &[
    "council",
    "referrer_name",
    "reference",
    "source_system",
    "referral_id",
    "case_id",
    "outcome",
    "advice",
    "missing",
    "decided_date",
];

/// Every template a council may override, with the variables it is rendered with.
pub const VARIABLES: &[(&str, &[&str])] = &[
    (
        REFERRAL_ACKNOWLEDGEMENT,
        &[
            "council",
            "reference",
            "referrer_name",
            "received_date",
            "referral_id",
        ],
    ),
    (SCREENING_OUTCOME, SCREENING_VARS),
    ("screening_outcome_accepted_for_early_help", SCREENING_VARS),
    ("screening_outcome_advice_and_signpost", SCREENING_VARS),
    ("screening_outcome_more_information_needed", SCREENING_VARS),
    (
        STEP_UP_REFERRER,
        &[
            "council",
            "referrer_name",
            "reference",
            "source_system",
            "referral_id",
            "case_id",
            "stepped_up_date",
        ],
    ),
    (
        STEP_UP_FRONT_DOOR,
        &[
            "council",
            "case_id",
            "referral_id",
            "source_system",
            "reference",
            "reason",
            "significant_harm",
            "stepped_up_at",
            "referrer_name",
            "referrer_agency",
            "referrer_phone",
            "referrer_email",
        ],
    ),
    (CONSENT_REQUEST, &["council", "case_id", "close_due_date"]),
    (
        SERVICE_LEVEL_BREACH,
        &[
            "council",
            "case_id",
            "referral_id",
            "source_system",
            "reference",
            "clock",
            "clock_words",
            "due_at",
            "state",
            "state_words",
            "breached_at",
        ],
    ),
    (
        OFFER_TO_PROVIDER,
        &[
            "council",
            "case_id",
            "offer_id",
            "service_name",
            "respond_by",
            "attempt",
        ],
    ),
    (
        ALLOCATION_DECLINED,
        &["council", "case_id", "who", "reason", "reason_words"],
    ),
    (
        LEAD_ASSIGNED_FAMILY,
        &["council", "case_id", "service_name", "first_contact_by"],
    ),
    (
        LEAD_ASSIGNED_REFERRER,
        &[
            "council",
            "referrer_name",
            "reference",
            "source_system",
            "referral_id",
            "case_id",
            "service_name",
            "first_contact_by",
        ],
    ),
    (
        ACTION_OVERDUE,
        &["council", "case_id", "action_id", "due_date", "whose"],
    ),
    (FOLLOW_UP_DUE, &["council", "case_id", "closed_date"]),
    (
        FOLLOW_UP_FRONT_DOOR,
        &["council", "case_id", "answered_date"],
    ),
];

/// The variables template `name` is rendered with.
pub fn variables(name: &str) -> Option<&'static [&'static str]> {
    VARIABLES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The name screening's text for `outcome` is looked up under first.
pub fn screening_variant(outcome: &str) -> String {
    format!("{SCREENING_OUTCOME}_{outcome}")
}

/// (subject, body) of the built-in template `name`.
pub fn builtin(name: &str) -> Option<(&'static str, String)> {
    let t = match name {
        REFERRAL_ACKNOWLEDGEMENT => (
            "{{council}}: request for support received (your reference {{reference}})",
            "Dear {{referrer_name}},\n\n\
             {{council}} received your request for support on {{received_date}}.\n\n\
             Your reference: {{reference}}\n\
             Our reference: {{referral_id}}\n\n\
             The Early Help front door will screen it within one working day and tell you the outcome. \
             If you believe a child is at immediate risk of significant harm, do not wait: call the \
             council's front door or the police on 999.\n\n",
        ),
        "screening_outcome_accepted_for_early_help" => (
            "{{council}}: your request for support ({{reference}}) is accepted for Early Help",
            "Dear {{referrer_name}},\n\n\
             {{council}}'s Early Help front door screened your request for support on \
             {{decided_date}} and accepted it for Early Help.\n\n\
             Your reference: {{reference}}\n\
             Our reference: {{referral_id}}\n\
             Case: {{case_id}}\n\n\
             The family will be offered support by an Early Help Team or a commissioned provider, \
             and the practitioner who takes it on will contact you. You do not need to do anything \
             now.\n\n",
        ),
        "screening_outcome_advice_and_signpost" => (
            "{{council}}: advice and signposting for your request for support ({{reference}})",
            "Dear {{referrer_name}},\n\n\
             {{council}}'s Early Help front door screened your request for support on \
             {{decided_date}}. It does not meet the criteria for support from an Early Help Team, \
             so the request is closed with this advice and signposting:\n\n\
             {{advice}}\n\n\
             Your reference: {{reference}}\n\
             Our reference: {{referral_id}}\n\n\
             If things change you can make a new request. If you believe a child is at risk of \
             significant harm, contact the council's front door at once, or the police on 999 if \
             a child is in immediate danger.\n\n",
        ),
        "screening_outcome_more_information_needed" => (
            "{{council}}: more information needed for your request for support ({{reference}})",
            "Dear {{referrer_name}},\n\n\
             {{council}}'s Early Help front door could not finish screening your request for \
             support because some information is missing. Please send us:\n\n\
             {{missing}}\n\n\
             Your reference: {{reference}}\n\
             Our reference: {{referral_id}}\n\n\
             Please update the request through the system you sent it from, or contact the front \
             door quoting our reference. Do not send the family's details by replying to this \
             email: email is not a secure channel.\n\n",
        ),
        STEP_UP_REFERRER => (
            "{{council}}: your request for support ({{reference}}) has gone to the front door",
            "Dear {{referrer_name}},\n\n\
             Your request for support has been passed to {{council}}'s front door (children's \
             social care) on {{stepped_up_date}} for a safeguarding decision, instead of to Early \
             Help. The front door will contact you if they need more from you.\n\n\
             Your reference: {{reference}}\n\
             Our reference: {{referral_id}}\n\
             Case: {{case_id}}\n\n\
             If you believe a child is in immediate danger, call the police on 999.\n\n",
        ),
        STEP_UP_FRONT_DOOR => (
            "URGENT {{council}}: case {{case_id}} stepped up to the front door ({{source_system}} {{reference}})",
            "A case has been stepped up to the front door and needs a safeguarding decision now.\n\n\
             Case: {{case_id}}\n\
             Referral: {{referral_id}}\n\
             Referral reference: {{source_system}} {{reference}}\n\
             Significant harm risk reported: {{significant_harm}}\n\
             Reason: {{reason}}\n\
             Stepped up: {{stepped_up_at}}\n\n\
             Referrer: {{referrer_name}}\n\
             Agency: {{referrer_agency}}\n\
             Phone: {{referrer_phone}}\n\
             Email: {{referrer_email}}\n\n\
             Open the case in the Early Help platform for the children's details and the \
             concerns: they are not sent by email, which is not a secure channel.\n\n",
        ),
        CONSENT_REQUEST => (
            "{{council}} Early Help: we need your agreement to offer your family support",
            "Hello,\n\n\
             {{council}} has been asked to offer your family Early Help: support from people who \
             work with children and families, such as schools, health visitors and family \
             support workers. Early Help is voluntary, and we can only offer it, and share \
             information with the people who would support you, if you agree.\n\n\
             We have not yet heard whether you agree. Please contact {{council}}'s Early Help \
             team by {{close_due_date}}, quoting reference {{case_id}}. If we do not hear from you \
             by then, the request will be closed; you can ask for support again at any time.\n\n",
        ),
        SERVICE_LEVEL_BREACH => (
            "{{council}}: service level missed on case {{case_id}} ({{clock_words}})",
            "The {{clock_words}} service level for case {{case_id}} ran out on {{due_at}}; the \
             case is {{state_words}}.\n\n\
             Case: {{case_id}}\n\
             Referral: {{referral_id}} ({{source_system}} {{reference}})\n\
             Clock: {{clock}}\n\
             Due: {{due_at}}\n\
             State: {{state}}\n\
             Reported: {{breached_at}}\n\n\
             Open the case in the Early Help platform to act on it.\n\n",
        ),
        OFFER_TO_PROVIDER => (
            "{{council}}: a family is offered to {{service_name}} (case {{case_id}})",
            "{{council}} offers {{service_name}} the Early Help case {{case_id}} (offer \
             {{offer_id}}).\n\n\
             Please accept or decline it in the Early Help platform by {{respond_by}}; an offer \
             not answered by then goes to another service.\n\n\
             What you may see of the family is shown there, as the family's consent allows; this \
             email carries none of it.\n\n",
        ),
        ALLOCATION_DECLINED => (
            "{{council}}: case {{case_id}} declined ({{reason_words}})",
            "On case {{case_id}}, {{who}}: {{reason_words}} ({{reason}}).\n\n\
             The case has gone to the next candidate or is waiting; open it in the Early Help \
             platform to see where it stands and the reason given in full.\n\n",
        ),
        LEAD_ASSIGNED_FAMILY => (
            "{{council}} Early Help: who will support your family",
            "Hello,\n\n\
             Thank you for agreeing to Early Help from {{council}}. Your family's support will \
             come from {{service_name}}, and a named lead practitioner there will be your main \
             contact.\n\n\
             They will get in touch with you by {{first_contact_by}}. If you have not heard from \
             them by then, please contact {{council}}'s Early Help team, quoting reference \
             {{case_id}}.\n\n",
        ),
        LEAD_ASSIGNED_REFERRER => (
            "{{council}}: support arranged for the family you referred (your reference {{reference}})",
            "Dear {{referrer_name}},\n\n\
             The family you referred ({{source_system}} reference {{reference}}, our referral \
             {{referral_id}}) will be supported by {{service_name}}, where a named lead \
             practitioner now holds the case ({{case_id}}). They will contact the family by \
             {{first_contact_by}}.\n\n\
             You may be asked to contribute to the family's Early Help Assessment and to their \
             Team Around the Family meetings.\n\n",
        ),
        ACTION_OVERDUE => (
            "{{council}}: an Early Help plan action is overdue (case {{case_id}})",
            "An action in the Early Help plan of case {{case_id}}, {{whose}}, was due on \
             {{due_date}} and is not marked done.\n\n\
             Please update it in the Early Help platform (action {{action_id}}): mark it done, or \
             agree a new date with the family and change the plan.\n\n",
        ),
        FOLLOW_UP_DUE => (
            "{{council}}: six-month follow-up check for case {{case_id}}",
            "Case {{case_id}} closed on {{closed_date}} with every outcome met.\n\n\
             Supporting Families asks whether the family's progress has lasted. Please check with \
             the family and record the answer in the Early Help platform: whether the outcomes \
             were sustained, and whether the family needs help again.\n\n",
        ),
        FOLLOW_UP_FRONT_DOOR => (
            "{{council}}: a family needs help again (case {{case_id}})",
            "At the six-month follow-up check of case {{case_id}} (closed with its outcomes met), \
             the lead practitioner recorded on {{answered_date}} that the family needs help \
             again.\n\n\
             Please open a new request for support for the family through the front door; the \
             closed case holds their history.\n\n",
        ),
        _ => return None,
    };
    Some((t.0, format!("{}{DO_NOT_REPLY}\n", t.1)))
}

/// The council's version of `name`, or the built-in one.
pub fn lookup(tenant: Option<&Council>, name: &str) -> Option<(String, String)> {
    lookup_first(tenant, &[name])
}

/// The council's version of the first of `names` it overrides, else the first built-in one.
pub fn lookup_first(tenant: Option<&Council>, names: &[&str]) -> Option<(String, String)> {
    if let Some(t) = names
        .iter()
        .find_map(|n| tenant.and_then(|t| t.templates.get(*n)))
    {
        return Some((t.subject.clone(), t.body.clone()));
    }
    names
        .iter()
        .find_map(|n| builtin(n))
        .map(|(s, b)| (s.to_string(), b))
}

/// Fills `{{name}}` placeholders from `vars`.
pub fn render(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "unclosed {{ in template".to_string())?;
        let key = after[..end].trim();
        let value = vars
            .get(key)
            .ok_or_else(|| format!("template uses unknown placeholder {{{{{key}}}}}"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks every council's overrides render with their template's variables. Errors name the
/// setting; overrides of names that are no template are returned as warnings (they are unused).
pub fn check(settings: &Settings) -> Result<Vec<String>, String> {
    check_councils(&NotificationsSettings::from_settings(settings)?)
}

/// [`check`] of settings already read.
pub fn check_councils(settings: &NotificationsSettings) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for (tenant, t) in &settings.councils {
        for (name, template) in &t.templates {
            let Some(vars) = variables(name) else {
                warnings.push(format!(
                    "tenants.{tenant}.templates.{name}: no such template (known: {}); ignored",
                    VARIABLES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                continue;
            };
            let sample: BTreeMap<&str, String> = vars.iter().map(|v| (*v, String::new())).collect();
            for (part, text) in [("subject", &template.subject), ("body", &template.body)] {
                if let Err(e) = render(text, &sample) {
                    errors.push(format!(
                        "tenants.{tenant}.templates.{name}.{part}: {e} (variables: {})",
                        vars.join(", ")
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(warnings)
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_refuses_unknown_placeholders() {
        let mut v = BTreeMap::new();
        v.insert("a", "1".to_string());
        assert_eq!(render("x{{a}}y{{ a }}", &v).unwrap(), "x1y1");
        assert!(render("{{b}}", &v).unwrap_err().contains("b"));
        assert!(render("{{a", &v).is_err());
    }

    #[test]
    fn every_builtin_renders_with_exactly_its_variables() {
        for (name, vars) in VARIABLES {
            if *name == SCREENING_OUTCOME {
                // Chosen by outcome; there is no built-in of this name alone.
                assert!(builtin(name).is_none());
                continue;
            }
            let (s, b) = lookup(None, name).unwrap_or_else(|| panic!("no built-in {name}"));
            let v: BTreeMap<&str, String> = vars.iter().map(|k| (*k, format!("<{k}>"))).collect();
            let text = format!("{}\n{}", render(&s, &v).unwrap(), render(&b, &v).unwrap());
            assert!(!text.contains("{{"), "{name}: {text}");
            // Every message names the record it is about.
            assert!(
                text.contains("<case_id>") || text.contains("<referral_id>"),
                "{name}: {text}"
            );
        }
    }

    #[test]
    fn screening_text_is_chosen_by_outcome_then_by_the_councils_general_override() {
        let mut t = Council {
            name: "Test Council".into(),
            templates: serde_json::from_value(serde_json::json!({
                "screening_outcome": {"subject": "general {{outcome}}", "body": "b"},
                "screening_outcome_advice_and_signpost": {"subject": "advice {{advice}}", "body": "b"}
            }))
            .unwrap(),
            ..Council::default()
        };
        let names = |o: &str| [screening_variant(o)];
        let pick = |t: Option<&Council>, o: &str| {
            let v = names(o);
            lookup_first(t, &[v[0].as_str(), SCREENING_OUTCOME])
                .unwrap()
                .0
        };
        assert_eq!(pick(Some(&t), "advice_and_signpost"), "advice {{advice}}");
        assert_eq!(
            pick(Some(&t), "accepted_for_early_help"),
            "general {{outcome}}"
        );
        t.templates.clear();
        assert!(pick(Some(&t), "accepted_for_early_help").contains("accepted for Early Help"));
        assert!(pick(None, "more_information_needed").contains("more information needed"));
    }

    #[test]
    fn a_councils_override_is_checked_at_start() {
        let env = [
            ("EH__TENANTS__WORCS__NAME", "Test Council"),
            (
                "EH__TENANTS__WORCS__TEMPLATES__STEP_UP_FRONT_DOOR__SUBJECT",
                "{{case_id}}",
            ),
            (
                "EH__TENANTS__WORCS__TEMPLATES__STEP_UP_FRONT_DOOR__BODY",
                "{{child_name}}",
            ),
            (
                "EH__TENANTS__WORCS__TEMPLATES__REFERAL_ACKNOWLEDGEMENT__SUBJECT",
                "typo",
            ),
            (
                "EH__TENANTS__WORCS__TEMPLATES__REFERAL_ACKNOWLEDGEMENT__BODY",
                "typo",
            ),
        ];
        let settings =
            Settings::load(&[], env.map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        let err = check(&settings).unwrap_err();
        assert!(
            err.contains("tenants.worcs.templates.step_up_front_door.body")
                && err.contains("child_name"),
            "{err}"
        );
        let mut settings = NotificationsSettings::from_settings(&settings).unwrap();
        settings
            .councils
            .get_mut("worcs")
            .unwrap()
            .templates
            .remove("step_up_front_door");
        let warnings = check_councils(&settings).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("referal_acknowledgement"),
            "{warnings:?}"
        );
    }
}
