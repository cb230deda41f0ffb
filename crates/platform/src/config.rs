//! Settings, layered: built-in defaults < `--config FILE` (TOML, YAML or JSON) < environment
//! `EH__SECTION__KEY`. A value of the wrong type or an unknown key fails at start, naming the key.
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

/// Where the platform keeps its data and how its services talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// SQLite file per service under `data_dir`; in-process transport. Laptops, demos, tests.
    #[default]
    Embedded,
    /// PostgreSQL (a schema per service) and NATS JetStream. Production.
    Distributed,
}

/// Everything the binary can be told.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub mode: Mode,
    /// Embedded mode: where the SQLite files live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Demo council and local development token issuer. Defaults to true in embedded mode;
    /// refused in distributed mode.
    #[serde(default)]
    pub demo: Option<bool>,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub bus: BusSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub smtp: SmtpSettings,
    #[serde(default)]
    pub intake: IntakeSettings,
    /// Councils served, by tenant id (a lowercase subject token, e.g. `worcs`).
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSettings>,
    /// Keys the platform's own services present to each other (`x-eh-service-key`), by SHA-256;
    /// a service principal may act for any tenant.
    #[serde(default)]
    pub service_keys: Vec<ApiKeySettings>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// `/healthz`, `/readyz`, `/metrics`.
    pub http_addr: SocketAddr,
    /// Every gRPC API of the services this process runs, with health and reflection.
    pub grpc_addr: SocketAddr,
    /// On SIGTERM: how long in-flight work may take before the process exits anyway.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            http_addr: ([0, 0, 0, 0], 8080).into(),
            grpc_addr: ([0, 0, 0, 0], 50051).into(),
            shutdown_grace_secs: 25,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Distributed mode: `postgres://user@host:5432/db`. Each service uses its own schema.
    pub url: Option<String>,
    /// Merged into the URL; from a secret, never the repo.
    #[serde(serialize_with = "mask")]
    pub password: Option<SecretString>,
    /// CA bundle to verify the server (sets `sslrootcert`).
    pub ca_file: Option<PathBuf>,
    pub max_connections: u32,
    /// Apply pending migrations when a service starts (the Helm chart uses a hook Job instead).
    pub migrate_on_start: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            password: None,
            ca_file: None,
            max_connections: 10,
            migrate_on_start: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    pub nats_url: String,
    /// NATS credentials file (JWT + nkey seed).
    pub credentials_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// First subject token and stream-name prefix: `<namespace>.<tenant>.<service>.<event>`.
    pub namespace: String,
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliver: u32,
    /// First retry delay; doubles per attempt up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How long a delivered message may stay unacknowledged before it is redelivered.
    pub ack_wait_secs: u64,
    /// Stream replicas in a NATS cluster (3 in production).
    pub replicas: usize,
    /// Published outbox rows are kept this long so an operator can re-publish after a broker loss.
    pub outbox_retention_hours: u64,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            credentials_file: None,
            ca_file: None,
            namespace: "eh".into(),
            max_deliver: 5,
            retry_base_ms: 500,
            retry_max_ms: 60_000,
            ack_wait_secs: 30,
            replicas: 1,
            outbox_retention_hours: 72,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    #[default]
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// A tracing filter (`info`, `eh_bus=debug,info`); `RUST_LOG` wins when set.
    pub log_level: String,
    /// OTLP/gRPC endpoint for traces; `OTEL_EXPORTER_OTLP_ENDPOINT` is honoured too.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Auto,
            log_level: "info".into(),
            otlp_endpoint: None,
            service_name: "earlyhelp".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    /// Empty in demo mode: mail is written to `data_dir/outbox-mail/` instead.
    pub host: Option<String>,
    pub port: u16,
    pub username: Option<String>,
    #[serde(serialize_with = "mask")]
    pub password: Option<SecretString>,
    pub tls: SmtpTls,
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
            port: 25,
            username: None,
            password: None,
            tls: SmtpTls::None,
            from: "Early Help <no-reply@earlyhelp.invalid>".into(),
            timeout_secs: 10,
            max_connections: 16,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeSettings {
    /// Inbound documents larger than this are rejected unread.
    pub max_payload_bytes: usize,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            max_payload_bytes: 256 * 1024,
        }
    }
}

/// One council.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    pub name: String,
    /// The council's identity provider for practitioners.
    #[serde(default)]
    pub oidc: Option<OidcSettings>,
    /// Upstream systems allowed to call the APIs for this tenant.
    #[serde(default)]
    pub api_keys: Vec<ApiKeySettings>,
    /// Overrides of the built-in message templates, by template name.
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateSettings>,
    /// Sender for this council's mail; the global `smtp.from` when absent.
    #[serde(default)]
    pub mail_from: Option<String>,
    /// The council's working days: its bank-holiday calendar and its own closure days.
    #[serde(default)]
    pub calendar: CalendarSettings,
    /// Service levels in working days (DOMAIN.md's defaults).
    #[serde(default)]
    pub service_levels: ServiceLevels,
    /// The council's own mailboxes the platform notifies.
    #[serde(default)]
    pub contacts: TenantContacts,
    /// Intake's screening rules (thresholds, programmes such as BRFC, area, advice texts) as a
    /// document; the built-in defaults when absent. Checked at start by intake.
    #[serde(default)]
    pub screening: Option<serde_json::Value>,
}

/// A council's working-day calendar.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSettings {
    /// `england-and-wales` (default), `scotland` or `northern-ireland`.
    #[serde(default)]
    pub division: eh_workdays::Division,
    /// The council's own closure days (e.g. a Christmas shutdown), as `YYYY-MM-DD`.
    #[serde(default)]
    pub closure_days: Vec<chrono::NaiveDate>,
}

impl CalendarSettings {
    /// The working calendar these settings describe.
    ///
    /// # Errors
    /// When a closure day lies outside the calendar's supported range.
    pub fn working_calendar(&self) -> Result<eh_workdays::WorkingCalendar, eh_workdays::Error> {
        eh_workdays::WorkingCalendar::new(self.division, self.closure_days.iter().copied())
    }
}

/// Service levels, in working days.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceLevels {
    /// Front-door screening decision after a request arrives (default 1).
    pub screening_decision_days: u32,
    /// Chase outstanding consent after (default 5).
    pub consent_chase_days: u32,
    /// Close as "no consent" after (default 20).
    pub consent_close_days: u32,
}

impl Default for ServiceLevels {
    fn default() -> Self {
        Self {
            screening_decision_days: 1,
            consent_chase_days: 5,
            consent_close_days: 20,
        }
    }
}

/// A council's own mailboxes.
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    pub issuer: String,
    pub audience: String,
    /// JWKS document URL (`https://…/jwks.json`) or a local file path.
    pub jwks_url: String,
    /// Claim holding the roles (a string array).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Claim holding the agency.
    #[serde(default = "default_agency_claim")]
    pub agency_claim: String,
}

fn default_roles_claim() -> String {
    "roles".into()
}
fn default_agency_claim() -> String {
    "agency".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    /// The system's name, recorded as the actor.
    pub name: String,
    /// Hex SHA-256 of the key; the key itself is never configured.
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    pub subject: String,
    pub body: String,
}

fn mask<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) if !secret.expose_secret().is_empty() => s.serialize_str("********"),
        Some(_) | None => s.serialize_none(),
    }
}

impl Settings {
    /// Loads defaults, then each of `files` in order (later ones deep-merged over earlier ones),
    /// then `EH__…` variables from `env`.
    pub fn load(
        files: &[PathBuf],
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        for path in files {
            builder = builder.add_source(config::File::from(path.as_path()).required(true));
        }
        let vars: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("EH__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("EH")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(vars)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from the process environment.
    pub fn from_env(files: &[PathBuf]) -> Result<Self, ConfigError> {
        Self::load(files, std::env::vars())
    }

    /// Whether the demo council and the development issuer are on.
    pub fn demo_enabled(&self) -> bool {
        self.demo.unwrap_or(self.mode == Mode::Embedded)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        };
        if self.mode == Mode::Distributed {
            if self.demo == Some(true) {
                return Err(invalid(
                    "demo",
                    "demo mode (and its development token issuer) is refused in distributed mode",
                ));
            }
            match &self.database.url {
                None => {
                    return Err(invalid(
                        "database.url",
                        "required in distributed mode (postgres://user@host:5432/db)",
                    ));
                }
                Some(u) if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) => {
                    return Err(invalid(
                        "database.url",
                        "must be a postgres:// URL in distributed mode",
                    ));
                }
                Some(_) => {}
            }
        }
        if !is_token(&self.bus.namespace) {
            return Err(invalid(
                "bus.namespace",
                "must be one subject token: letters, digits, '_' or '-'",
            ));
        }
        if self.bus.max_deliver == 0 {
            return Err(invalid("bus.max_deliver", "must be at least 1"));
        }
        if !(1..=256).contains(&self.smtp.max_connections) {
            return Err(invalid("smtp.max_connections", "must be between 1 and 256"));
        }
        for (id, t) in &self.tenants {
            if !is_token(id) || id.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(invalid(
                    &format!("tenants.{id}"),
                    "a tenant id is one lowercase subject token: letters, digits, '_' or '-'",
                ));
            }
            if let Err(e) = t.calendar.working_calendar() {
                return Err(invalid(
                    &format!("tenants.{id}.calendar.closure_days"),
                    &e.to_string(),
                ));
            }
            let sl = &t.service_levels;
            if sl.consent_chase_days == 0 || sl.consent_close_days <= sl.consent_chase_days {
                return Err(invalid(
                    &format!("tenants.{id}.service_levels.consent_close_days"),
                    "must be more than consent_chase_days, which must be at least 1",
                ));
            }
            for (i, k) in t.api_keys.iter().enumerate() {
                if k.sha256.len() != 64 || !k.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(invalid(
                        &format!("tenants.{id}.api_keys[{i}].sha256"),
                        "must be 64 hex digits (the SHA-256 of the key)",
                    ));
                }
            }
        }
        for (i, k) in self.service_keys.iter().enumerate() {
            if k.sha256.len() != 64 || !k.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid(
                    &format!("service_keys[{i}].sha256"),
                    "must be 64 hex digits (the SHA-256 of the key)",
                ));
            }
        }
        Ok(())
    }

    /// The effective settings as TOML-like JSON with secrets masked (`earlyhelp config print`).
    pub fn to_masked_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A NATS subject token we allow for tenants and namespaces.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_config_means_embedded_demo() {
        let s = Settings::load(&[], env(&[])).unwrap();
        assert_eq!(s.mode, Mode::Embedded);
        assert!(s.demo_enabled());
        assert_eq!(s.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn env_overrides_nested_keys_with_types() {
        let s = Settings::load(
            &[],
            env(&[
                ("EH__SERVER__SHUTDOWN_GRACE_SECS", "7"),
                ("EH__BUS__NAMESPACE", "ehtest"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.shutdown_grace_secs, 7);
        assert_eq!(s.bus.namespace, "ehtest");
    }

    #[test]
    fn a_bad_value_names_the_key() {
        let e = Settings::load(&[], env(&[("EH__SERVER__SHUTDOWN_GRACE_SECS", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("shutdown_grace_secs"), "{e}");
    }

    #[test]
    fn smtp_connections_are_bounded() {
        let s = Settings::load(&[], env(&[("EH__SMTP__MAX_CONNECTIONS", "4")])).unwrap();
        assert_eq!(s.smtp.max_connections, 4);
        for bad in ["0", "257"] {
            let e = Settings::load(&[], env(&[("EH__SMTP__MAX_CONNECTIONS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("smtp.max_connections"), "{e}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let e = Settings::load(&[], env(&[("EH__SERVER__HTTP_PORTT", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("http_portt"), "{e}");
    }

    #[test]
    fn distributed_needs_a_postgres_url_and_no_demo() {
        let e = Settings::load(&[], env(&[("EH__MODE", "distributed")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("database.url"), "{e}");
        let e = Settings::load(
            &[],
            env(&[
                ("EH__MODE", "distributed"),
                ("EH__DEMO", "true"),
                ("EH__DATABASE__URL", "postgres://x@h/db"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("demo"), "{e}");
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let s = Settings::load(&[], env(&[("EH__SMTP__PASSWORD", "hunter2")])).unwrap();
        let printed = s.to_masked_json().to_string();
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("********"));
    }

    #[test]
    fn file_then_env() {
        let dir = std::env::temp_dir().join(format!("ehcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.yaml");
        std::fs::write(
            &f,
            "bus:\n  namespace: fromfile\n  max_deliver: 3\ntenants:\n  worcs:\n    name: Worcestershire\n",
        )
        .unwrap();
        let g = dir.join("tenants.yaml");
        std::fs::write(&g, "tenants:\n  staffs:\n    name: Staffordshire\n").unwrap();
        let s = Settings::load(&[f, g], env(&[("EH__BUS__MAX_DELIVER", "9")])).unwrap();
        assert_eq!(s.bus.namespace, "fromfile");
        assert_eq!(s.bus.max_deliver, 9);
        assert_eq!(s.tenants["worcs"].name, "Worcestershire");
        assert_eq!(
            s.tenants["staffs"].name, "Staffordshire",
            "a second file merges, not replaces"
        );
    }

    #[test]
    fn a_tenants_calendar_and_service_levels_are_checked() {
        let base = [("EH__TENANTS__WORCS__NAME", "Worcestershire")];
        let s = Settings::load(
            &[],
            env(&[
                base[0],
                ("EH__TENANTS__WORCS__CALENDAR__DIVISION", "scotland"),
                (
                    "EH__TENANTS__WORCS__SERVICE_LEVELS__CONSENT_CLOSE_DAYS",
                    "25",
                ),
            ]),
        )
        .unwrap();
        let w = &s.tenants["worcs"];
        assert_eq!(w.calendar.division, eh_workdays::Division::Scotland);
        assert_eq!(w.service_levels.consent_close_days, 25);
        assert_eq!(
            w.service_levels.consent_chase_days, 5,
            "defaults fill the rest"
        );
        let e = Settings::load(
            &[],
            env(&[base[0], ("EH__TENANTS__WORCS__CALENDAR__DIVISION", "wales")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("division"), "{e}");
        let e = Settings::load(
            &[],
            env(&[
                base[0],
                (
                    "EH__TENANTS__WORCS__SERVICE_LEVELS__CONSENT_CLOSE_DAYS",
                    "3",
                ),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tenants.worcs.service_levels.consent_close_days"),
            "{e}"
        );
    }
}
