//! The gateway's own settings: the top-level `gateway` section (where intake's gRPC API is, the
//! request size limit, how long an idempotency key is kept, the rate limit per API key). The
//! platform hands it over as written; a wrong value stops the process at start, naming its key.
use eh_platform::Settings;
use eh_service::SettingsKeys;
use serde::{Deserialize, Serialize};

/// The keys of the configuration the gateway owns.
pub const KEYS: SettingsKeys = SettingsKeys {
    global: &["gateway"],
    per_tenant: &[],
};

/// The longest an idempotency key may be kept: a year.
pub const MAX_TTL_HOURS: u64 = 24 * 366;

/// `gateway`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// Intake's gRPC API (`http://eh-earlyhelp-intake:50051`); empty: this process's own gRPC
    /// listener (`server.grpc_addr`), where intake runs when every target is in one process.
    pub intake_url: String,
    /// Request bodies larger than this are refused unread (413), as intake refuses larger
    /// inbound documents (`intake.max_payload_bytes`, the same default).
    pub max_body_bytes: usize,
    /// How long a call to a service may take before the request fails (504).
    pub call_timeout_ms: u64,
    /// How long an `Idempotency-Key` and its answer are kept: a key used again within this time
    /// gets the first answer; after it, the key is new.
    pub idempotency_ttl_hours: u64,
    pub rate_limit: RateLimitSettings,
    /// The other services' gRPC APIs the console reads (empty: this process's gRPC listener).
    pub casework_url: String,
    pub consent_url: String,
    pub notifications_url: String,
    pub allocation_url: String,
    pub assessment_url: String,
    pub console: ConsoleSettings,
    /// Outbound webhooks: status updates to upstream systems ([`crate::webhook`]).
    pub webhooks: crate::webhook::WebhookSettings,
}

/// `gateway.console`: the practitioners' web console (`/console/`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    pub enabled: bool,
    /// The console's address as the browser reaches it (`https://earlyhelp.example.gov.uk`):
    /// `https://` gives `Secure` `__Host-` cookies; plain `http://` is allowed on a loopback
    /// address or in demo mode only. Empty: `http://` and `server.http_addr`.
    pub public_url: String,
    /// The GOV.UK Frontend build served at `/console/assets/` (`tools/console/install.sh` puts it
    /// here); missing: the pages work unstyled and the gateway says how to install it.
    pub assets_dir: String,
    /// A session unused this long ends.
    pub idle_timeout_minutes: u64,
    /// A session ends this long after sign-in however it is used (sooner when the ID token
    /// expires: the services would refuse it).
    pub absolute_timeout_hours: u64,
    /// The key the sessions' ID tokens are sealed with (AES-256-GCM; 64 hex digits, from a
    /// Secret: `EH__GATEWAY__CONSOLE__SESSION_KEY`); masked when printed. Required in
    /// distributed mode (here or in `session_key_file`); in embedded mode, when empty, a key is
    /// generated once in `data_dir` (`console-session.key`).
    pub session_key: crate::session::KeySetting,
    /// A file holding the session key (a mounted Secret), instead of `session_key`.
    pub session_key_file: String,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            public_url: String::new(),
            assets_dir: "tools/console/node_modules/govuk-frontend/dist/govuk".into(),
            idle_timeout_minutes: 30,
            absolute_timeout_hours: 10,
            session_key: crate::session::KeySetting::default(),
            session_key_file: String::new(),
        }
    }
}

/// `gateway.rate_limit`: a token bucket per API key (or per person's token) in each gateway
/// process: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_minute: 600,
            burst: 100,
        }
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            intake_url: String::new(),
            max_body_bytes: 256 * 1024,
            call_timeout_ms: 10_000,
            idempotency_ttl_hours: 24,
            rate_limit: RateLimitSettings::default(),
            casework_url: String::new(),
            consent_url: String::new(),
            notifications_url: String::new(),
            allocation_url: String::new(),
            assessment_url: String::new(),
            console: ConsoleSettings::default(),
            webhooks: crate::webhook::WebhookSettings::default(),
        }
    }
}

impl GatewaySettings {
    /// The `gateway` section of `settings`, checked; the defaults when it is absent.
    ///
    /// # Errors
    /// A wrong value, naming its key (`gateway.rate_limit.per_minute`).
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        let s: Self = match settings.section("gateway") {
            None => Self::default(),
            Some(s) => s.read().map_err(|e| e.to_string())?,
        };
        if s.max_body_bytes == 0 {
            return Err("gateway.max_body_bytes: must be at least 1".into());
        }
        if s.call_timeout_ms == 0 {
            return Err("gateway.call_timeout_ms: must be at least 1".into());
        }
        if !(1..=MAX_TTL_HOURS).contains(&s.idempotency_ttl_hours) {
            return Err(format!(
                "gateway.idempotency_ttl_hours: from 1 to {MAX_TTL_HOURS} (a year)"
            ));
        }
        if s.rate_limit.per_minute == 0 {
            return Err("gateway.rate_limit.per_minute: must be at least 1".into());
        }
        if s.rate_limit.burst == 0 {
            return Err("gateway.rate_limit.burst: must be at least 1".into());
        }
        for (key, url) in [
            ("intake_url", &s.intake_url),
            ("casework_url", &s.casework_url),
            ("consent_url", &s.consent_url),
            ("notifications_url", &s.notifications_url),
            ("allocation_url", &s.allocation_url),
            ("assessment_url", &s.assessment_url),
        ] {
            let scheme_ok = ["http://", "https://"].iter().any(|p| url.starts_with(p));
            if !url.is_empty() && !scheme_ok {
                return Err(format!("gateway.{key}: must be an http:// or https:// URL"));
            }
        }
        s.webhooks.endpoints(settings)?;
        let c = &s.console;
        if c.idle_timeout_minutes == 0 {
            return Err("gateway.console.idle_timeout_minutes: must be at least 1".into());
        }
        if !(1..=24).contains(&c.absolute_timeout_hours) {
            return Err("gateway.console.absolute_timeout_hours: from 1 to 24".into());
        }
        if let Some(rest) = c.public_url.strip_prefix("http://") {
            let host = rest.split(['/', ':']).next().unwrap_or_default();
            if !settings.demo_enabled() && !matches!(host, "127.0.0.1" | "localhost") {
                return Err("gateway.console.public_url: must be https:// (plain http only on a loopback address or in demo mode)".into());
            }
        } else if !c.public_url.is_empty() && !c.public_url.starts_with("https://") {
            return Err("gateway.console.public_url: must be an https:// URL".into());
        }
        Ok(s)
    }

    /// How long an idempotency key is kept.
    pub fn idempotency_ttl(&self) -> chrono::Duration {
        chrono::Duration::hours(
            i64::try_from(self.idempotency_ttl_hours.min(MAX_TTL_HOURS)).unwrap_or(24),
        )
    }

    /// Where a service's gRPC API is: its configured URL, or this process's gRPC listener.
    pub fn endpoint(&self, url: &str, settings: &Settings) -> String {
        if url.is_empty() {
            settings.server.own_grpc_url()
        } else {
            url.to_string()
        }
    }

    /// Whether the console is reached over TLS (its cookies are then `Secure` and `__Host-`).
    pub fn console_tls(&self) -> bool {
        self.console.public_url.starts_with("https://")
    }

    /// Where intake's gRPC API is: [`Self::intake_url`], or this process's gRPC listener (an
    /// unspecified listen address is reached on loopback).
    pub fn intake_endpoint(&self, settings: &Settings) -> String {
        if !self.intake_url.is_empty() {
            return self.intake_url.clone();
        }
        settings.server.own_grpc_url()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Settings {
        Settings::load(&[], env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("settings")
    }

    #[test]
    fn defaults_values_and_errors_that_name_the_key() {
        let s = GatewaySettings::from_settings(&load(&[])).unwrap();
        assert_eq!(s, GatewaySettings::default());
        assert_eq!(s.intake_endpoint(&load(&[])), "http://127.0.0.1:50051");
        let s = GatewaySettings::from_settings(&load(&[
            ("EH__GATEWAY__MAX_BODY_BYTES", "1024"),
            ("EH__GATEWAY__RATE_LIMIT__PER_MINUTE", "5"),
            ("EH__GATEWAY__INTAKE_URL", "http://intake:50051"),
        ]))
        .unwrap();
        assert_eq!(s.max_body_bytes, 1024);
        assert_eq!(s.rate_limit.per_minute, 5);
        assert_eq!(s.rate_limit.burst, 100);
        assert_eq!(s.intake_endpoint(&load(&[])), "http://intake:50051");
        for (env, key) in [
            (
                ("EH__GATEWAY__MAX_BODY_BYTES", "big"),
                "gateway.max_body_bytes",
            ),
            (
                ("EH__GATEWAY__MAX_BODY_BYTES", "0"),
                "gateway.max_body_bytes",
            ),
            (
                ("EH__GATEWAY__RATE_LIMIT__BURST", "0"),
                "gateway.rate_limit.burst",
            ),
            (
                ("EH__GATEWAY__INTAKE_URL", "intake:50051"),
                "gateway.intake_url",
            ),
            (("EH__GATEWAY__LISTEN", "x"), "listen"),
        ] {
            let e = GatewaySettings::from_settings(&load(&[env])).unwrap_err();
            assert!(e.contains(key), "{env:?}: {e}");
        }
    }
}
