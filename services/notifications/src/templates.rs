//! Message templates: built-in defaults, overridden per council in its settings. `{{name}}`
//! placeholders; an unknown placeholder is an error, never sent as-is.
use eh_platform::config::TenantSettings;
use std::collections::BTreeMap;

pub const REFERRAL_ACKNOWLEDGEMENT: &str = "referral_acknowledgement";

/// (subject, body) of the built-in template `name`.
pub fn builtin(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        REFERRAL_ACKNOWLEDGEMENT => Some((
            "{{council}}: request for support received (your reference {{reference}})",
            "Dear {{referrer_name}},\n\n\
             {{council}} received your request for support on {{received_date}}.\n\n\
             Your reference: {{reference}}\n\
             Our reference: {{referral_id}}\n\n\
             The Early Help front door will screen it within one working day and tell you the outcome. \
             If you believe a child is at immediate risk of significant harm, do not wait: call the \
             council's front door or the police on 999.\n\n\
             This message was sent by the Early Help platform; please do not reply to it.\n",
        )),
        _ => None,
    }
}

/// The council's version of `name`, or the built-in one.
pub fn lookup(tenant: Option<&TenantSettings>, name: &str) -> Option<(String, String)> {
    if let Some(t) = tenant.and_then(|t| t.templates.get(name)) {
        return Some((t.subject.clone(), t.body.clone()));
    }
    builtin(name).map(|(s, b)| (s.to_string(), b.to_string()))
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
    fn builtin_acknowledgement_renders_with_its_variables() {
        let (s, b) = lookup(None, REFERRAL_ACKNOWLEDGEMENT).unwrap();
        let mut v = BTreeMap::new();
        for k in [
            "council",
            "reference",
            "referrer_name",
            "received_date",
            "referral_id",
        ] {
            v.insert(k, format!("<{k}>"));
        }
        assert!(render(&s, &v).unwrap().contains("<reference>"));
        assert!(render(&b, &v).unwrap().contains("<referral_id>"));
    }
}
