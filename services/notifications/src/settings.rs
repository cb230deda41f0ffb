//! Notifications' own settings: the top-level `smtp` section and each council's `templates`,
//! `mail_from` and `contacts`. The platform hands them over as written; they are read and checked
//! here at start ([`NotificationsSettings::from_settings`], [`crate::templates::check`]), every
//! error naming its key.
use eh_platform::Settings;
use eh_service::SettingsKeys;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// The keys of the configuration notifications owns.
pub const KEYS: SettingsKeys = SettingsKeys {
    global: &["smtp"],
    per_tenant: &["templates", "mail_from", "contacts"],
};

/// Transport security to the SMTP relay. The default is STARTTLS: the email carries personal
/// data (the family's name in a consent request, the referrer's address), so plaintext (`none`)
/// is refused outside demo mode unless `smtp.allow_plaintext` says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    #[default]
    Starttls,
    Tls,
}

/// `smtp`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    /// Empty in demo mode: mail is written to `data_dir/mail/` instead.
    pub host: Option<String>,
    pub port: u16,
    pub username: Option<String>,
    #[serde(serialize_with = "mask")]
    pub password: Option<SecretString>,
    pub tls: SmtpTls,
    /// The operator accepts `tls: none` outside demo mode (e.g. a relay on the same host or
    /// pod, which encrypts onwards). Off by default: plaintext is refused at start.
    pub allow_plaintext: bool,
    pub from: String,
    pub timeout_secs: u64,
    /// Connections to the relay, and so emails in flight at once, per notifications replica
    /// (keep under the relay's per-client connection limit).
    pub max_connections: u32,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: None,
            port: 587,
            username: None,
            password: None,
            tls: SmtpTls::Starttls,
            allow_plaintext: false,
            from: "Early Help <no-reply@earlyhelp.invalid>".into(),
            timeout_secs: 10,
            max_connections: 16,
        }
    }
}

fn mask<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) if !secret.expose_secret().is_empty() => s.serialize_str("********"),
        Some(_) | None => s.serialize_none(),
    }
}

/// A council's override of a built-in template (`tenants.<id>.templates.<name>`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    pub subject: String,
    pub body: String,
}

/// A council's own mailboxes (`tenants.<id>.contacts`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantContacts {
    /// The front door (First Response / MASH): told at once of every step-up.
    #[serde(default)]
    pub front_door_email: Option<String>,
    /// The Early Help team manager: told of service-level breaches.
    #[serde(default)]
    pub team_manager_email: Option<String>,
}

/// One council as notifications sees it.
#[derive(Debug, Clone, Default)]
pub struct Council {
    /// Its name in messages (the platform's `tenants.<id>.name`).
    pub name: String,
    /// Overrides of the built-in message templates, by template name.
    pub templates: BTreeMap<String, TemplateSettings>,
    /// Sender for this council's mail; `smtp.from` when absent.
    pub mail_from: Option<String>,
    pub contacts: TenantContacts,
}

/// Everything notifications reads from the configuration.
#[derive(Debug, Clone, Default)]
pub struct NotificationsSettings {
    pub smtp: SmtpSettings,
    /// Every council the platform serves, by tenant id.
    pub councils: BTreeMap<String, Council>,
}

impl NotificationsSettings {
    /// Reads notifications' sections of `settings` (the defaults where absent).
    ///
    /// # Errors
    /// The first wrong value, naming its key (`tenants.worcs.contacts.front_door_email`).
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        let smtp: SmtpSettings = match settings.section("smtp") {
            None => SmtpSettings::default(),
            Some(s) => s.read().map_err(|e| e.to_string())?,
        };
        if !(1..=256).contains(&smtp.max_connections) {
            return Err("smtp.max_connections: must be between 1 and 256".into());
        }
        let relay = smtp.host.as_deref().is_some_and(|h| !h.is_empty());
        if relay && smtp.tls == SmtpTls::None && !smtp.allow_plaintext && !settings.demo_enabled() {
            return Err(
                "smtp.tls: `none` would send personal data unencrypted, refused outside \
                 demo mode: use `starttls` or `tls`, or set smtp.allow_plaintext: true to accept \
                 plaintext to this relay"
                    .into(),
            );
        }
        let mut councils = BTreeMap::new();
        for (id, t) in &settings.tenants {
            let mut council = Council {
                name: t.name.clone(),
                ..Council::default()
            };
            if let Some(s) = t.section("templates") {
                council.templates = s.read().map_err(|e| e.to_string())?;
            }
            if let Some(s) = t.section("mail_from") {
                council.mail_from = s.read().map_err(|e| e.to_string())?;
            }
            if let Some(s) = t.section("contacts") {
                council.contacts = s.read().map_err(|e| e.to_string())?;
            }
            councils.insert(id.clone(), council);
        }
        Ok(Self { smtp, councils })
    }

    /// The council `tenant`, when the platform serves it.
    pub fn council(&self, tenant: &str) -> Option<&Council> {
        self.councils.get(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<NotificationsSettings, String> {
        let s = Settings::load(&[], env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .map_err(|e| e.to_string())?;
        NotificationsSettings::from_settings(&s)
    }

    #[test]
    fn smtp_connections_are_bounded() {
        let s = load(&[("EH__SMTP__MAX_CONNECTIONS", "4")]).unwrap();
        assert_eq!(s.smtp.max_connections, 4);
        for bad in ["0", "257"] {
            let e = load(&[("EH__SMTP__MAX_CONNECTIONS", bad)]).unwrap_err();
            assert!(e.contains("smtp.max_connections"), "{e}");
        }
    }

    #[test]
    fn plaintext_smtp_is_refused_outside_demo_mode_unless_allowed() {
        let production = [("EH__DEMO", "false"), ("EH__SMTP__HOST", "smtp.example")];
        // The default is STARTTLS on the submission port.
        let s = load(&production).unwrap();
        assert_eq!((s.smtp.tls, s.smtp.port), (SmtpTls::Starttls, 587));

        let plain = [production.as_slice(), &[("EH__SMTP__TLS", "none")]].concat();
        let e = load(&plain).unwrap_err();
        assert!(
            e.contains("smtp.tls") && e.contains("smtp.allow_plaintext"),
            "{e}"
        );
        let allowed = [plain.as_slice(), &[("EH__SMTP__ALLOW_PLAINTEXT", "true")]].concat();
        assert_eq!(load(&allowed).unwrap().smtp.tls, SmtpTls::None);
        // Demo mode may use a plaintext relay (a local mail catcher); with no relay at all the
        // mail goes to files, so there is nothing to refuse.
        assert!(load(&[("EH__SMTP__HOST", "127.0.0.1"), ("EH__SMTP__TLS", "none")]).is_ok());
        assert!(load(&[("EH__DEMO", "false"), ("EH__SMTP__TLS", "none")]).is_ok());
    }

    #[test]
    fn councils_sections_are_read_and_errors_name_the_key() {
        let s = load(&[
            ("EH__TENANTS__WORCS__NAME", "Worcestershire"),
            ("EH__TENANTS__WORCS__MAIL_FROM", "EH <eh@worcs.test>"),
            (
                "EH__TENANTS__WORCS__CONTACTS__FRONT_DOOR_EMAIL",
                "fd@worcs.test",
            ),
            (
                "EH__TENANTS__WORCS__TEMPLATES__CONSENT_REQUEST__SUBJECT",
                "s",
            ),
            ("EH__TENANTS__WORCS__TEMPLATES__CONSENT_REQUEST__BODY", "b"),
            ("EH__TENANTS__STAFFS__NAME", "Staffordshire"),
            ("EH__SMTP__PORT", "2525"),
        ])
        .unwrap();
        let w = s.council("worcs").unwrap();
        assert_eq!(w.name, "Worcestershire");
        assert_eq!(w.mail_from.as_deref(), Some("EH <eh@worcs.test>"));
        assert_eq!(
            w.contacts.front_door_email.as_deref(),
            Some("fd@worcs.test")
        );
        assert_eq!(w.templates["consent_request"].body, "b");
        assert_eq!(s.council("staffs").unwrap().name, "Staffordshire");
        assert!(s.council("staffs").unwrap().templates.is_empty());
        assert_eq!(s.smtp.port, 2525);

        let e = load(&[
            ("EH__TENANTS__WORCS__NAME", "W"),
            ("EH__TENANTS__WORCS__CONTACTS__FRONT_DOR_EMAIL", "x"),
        ])
        .unwrap_err();
        assert!(
            e.contains("tenants.worcs.contacts") && e.contains("front_dor_email"),
            "{e}"
        );
        let e = load(&[
            ("EH__TENANTS__WORCS__NAME", "W"),
            (
                "EH__TENANTS__WORCS__TEMPLATES__CONSENT_REQUEST__SUBJECT",
                "s",
            ),
        ])
        .unwrap_err();
        assert!(e.contains("tenants.worcs.templates.consent_request"), "{e}");
        assert!(e.contains("body"), "{e}");
        let e = load(&[("EH__SMTP__TLS", "ssl")]).unwrap_err();
        assert!(e.contains("smtp.tls"), "{e}");
    }
}
