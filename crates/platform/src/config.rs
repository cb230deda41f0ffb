//! Settings, layered: built-in defaults < `--config FILE` (TOML, YAML or JSON) < environment
//! `EH__SECTION__KEY`. A value of the wrong type or an unknown key fails at start, naming the key.
//!
//! The platform reads only its own settings (mode, server, database, bus, telemetry, the councils'
//! identities). Every other key — a top-level section such as `smtp` or `intake`,
//! or a council's section such as `tenants.<id>.screening` — belongs to a service: it is handed
//! over as written ([`Section`]), and the service reads it into its own type and checks it at
//! start, naming the key (`eh_service::Service::check_settings`). The binary refuses a key no
//! service claims, so the file users write is the same as when the platform held every section.
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
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
    /// Councils served, by tenant id (a lowercase subject token, e.g. `worcs`).
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSettings>,
    /// Keys the platform's own services present to each other (`x-eh-service-key`), by SHA-256;
    /// a service principal may act for any tenant.
    #[serde(default)]
    pub service_keys: Vec<ApiKeySettings>,
    /// The audit trail.
    #[serde(default)]
    pub audit: AuditSettings,
    /// The services' top-level sections (`smtp`, `intake`, …), by key, as written.
    #[serde(skip)]
    pub sections: BTreeMap<String, Section>,
}

/// The top-level keys the platform reads itself; any other is a service's [`Section`].
const PLATFORM_KEYS: &[&str] = &[
    "mode",
    "data_dir",
    "demo",
    "server",
    "database",
    "bus",
    "telemetry",
    "tenants",
    "service_keys",
    "audit",
];

/// The keys of a council the platform reads itself; any other is a service's [`Section`].
const TENANT_KEYS: &[&str] = &["name", "oidc", "api_keys"];

/// A section of the configuration a service owns, as written (after layering files and
/// environment), under its full key (`smtp`, `tenants.worcs.screening`).
#[derive(Debug, Clone)]
pub struct Section {
    key: String,
    value: config::Value,
}

impl Section {
    /// `value` under `key` (tests and built-in councils write sections this way).
    ///
    /// # Errors
    /// When `value` is not representable as configuration (never for JSON objects and scalars).
    pub fn from_json(
        key: impl Into<String>,
        value: serde_json::Value,
    ) -> Result<Self, ConfigError> {
        let key = key.into();
        let value = config::Value::deserialize(value).map_err(|e| ConfigError::Invalid {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self { key, value })
    }

    /// The full key, e.g. `tenants.worcs.screening`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Reads the section into `T` as the platform reads its own settings (numbers and booleans
    /// from the environment taken as strings where `T` wants one).
    ///
    /// # Errors
    /// Names the full key of the value at fault (`tenants.worcs.templates.x.subject`).
    pub fn read<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        // Read under a one-entry table keyed by the section's key, so the error's key path is
        // the whole one.
        let mut table = config::Map::new();
        table.insert(self.key.clone(), self.value.clone());
        let mut one: BTreeMap<String, T> =
            config::Value::new(None, config::ValueKind::Table(table)).try_deserialize()?;
        one.remove(&self.key).ok_or_else(|| ConfigError::Invalid {
            key: self.key.clone(),
            reason: "missing".into(),
        })
    }

    /// The section as JSON, as written.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::deserialize(self.value.clone()).unwrap_or(serde_json::Value::Null)
    }

    /// The section as JSON with its secrets masked (`config print`, see [`mask_secrets`]).
    pub fn to_masked_json(&self) -> serde_json::Value {
        let mut v = self.to_json();
        mask_secrets(&mut v);
        v
    }
}

/// What `config print` shows in place of a secret.
pub const MASK: &str = "********";

/// Masks, in place, every secret a printed configuration could show: the value of each key
/// named for one (`password`, `smtp_password`, `secret`, `token`, `key`: see [`is_secret_key`])
/// and, in every string, the credentials of each URL ([`mask_url_credentials`]), so
/// `postgres://eh:pw@db/eh` prints as `postgres://eh:********@db/eh`.
pub fn mask_secrets(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_key(k) && !v.is_null() {
                    *v = serde_json::Value::String(MASK.into());
                } else {
                    mask_secrets(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        serde_json::Value::String(s) => {
            if let std::borrow::Cow::Owned(masked) = mask_url_credentials(s) {
                *s = masked;
            }
        }
        _ => {}
    }
}

/// Whether a key (of the configuration, or of a URL's query) holds a secret by its name.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    ["password", "passwd", "secret", "token", "key"]
        .iter()
        .any(|s| k == *s || k.ends_with(&format!("_{s}")))
}

/// `text` with the credentials of every URL in it masked: the password of `user:password@`,
/// the whole user part where it is a token rather than a user name (`nats://TOKEN@host`: any
/// scheme but those of databases and mail, whose user part is a user name), and query
/// parameters named for a secret (`?sslpassword=…`, `&token=…`). Lists of URLs
/// (`nats://a:b@h1,nats://a:b@h2`) are masked one by one. Borrowed when there is nothing to mask.
pub fn mask_url_credentials(text: &str) -> std::borrow::Cow<'_, str> {
    const USER_IS_A_NAME: &[&str] = &[
        "postgres",
        "postgresql",
        "mysql",
        "smtp",
        "smtps",
        "submission",
        "imap",
        "imaps",
    ];
    if !text.contains("://") {
        return std::borrow::Cow::Borrowed(text);
    }
    let ends_url = |c: char| c.is_whitespace() || matches!(c, ',' | ';' | '"' | '\'' | '<' | '>');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        let scheme_start = rest[..sep]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let scheme = rest[scheme_start..sep].to_ascii_lowercase();
        out.push_str(&rest[..sep + 3]);
        let after = &rest[sep + 3..];
        let url_end = after.find(ends_url).unwrap_or(after.len());
        let url = &after[..url_end];
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let authority = &url[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None if USER_IS_A_NAME.contains(&scheme.as_str()) => out.push_str(userinfo),
                    None => out.push_str(MASK),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        let tail = &url[authority_end..];
        match tail.split_once('?') {
            Some((path, query)) => {
                out.push_str(path);
                out.push('?');
                let (query, fragment) = match query.split_once('#') {
                    Some((q, f)) => (q, Some(f)),
                    None => (query, None),
                };
                let params: Vec<String> = query
                    .split('&')
                    .map(|p| match p.split_once('=') {
                        Some((k, _))
                            if is_secret_key(k) || k.to_ascii_lowercase().contains("password") =>
                        {
                            format!("{k}={MASK}")
                        }
                        _ => p.to_string(),
                    })
                    .collect();
                out.push_str(&params.join("&"));
                if let Some(f) = fragment {
                    out.push('#');
                    out.push_str(f);
                }
            }
            None => out.push_str(tail),
        }
        rest = &after[url_end..];
    }
    out.push_str(rest);
    if out == text {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(out)
    }
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

impl ServerSettings {
    /// This process's own gRPC listener as a URL a client in the process reaches (an unspecified
    /// listen address on loopback): where one service calls another that runs beside it.
    pub fn own_grpc_url(&self) -> String {
        let mut addr = self.grpc_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("http://{addr}")
    }
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
    /// Distributed mode: `postgres://user@host:5432/db`. Each service uses its own schema. The
    /// services' login role: it should own nothing (`migrate_url` names the owner), so it cannot
    /// lift the row-level security that confines each council's work to its rows.
    pub url: Option<String>,
    /// Merged into the URL; from a secret, never the repo.
    #[serde(serialize_with = "mask")]
    pub password: Option<SecretString>,
    /// The owner of the schemas and tables, for migrations only (`earlyhelp migrate`, and the
    /// start-up migration): a URL of the same database as another role. The services' role of
    /// `url` is then granted `SELECT`, `INSERT`, `UPDATE`, `DELETE` on the tables and the use of
    /// the sequences, nothing more. Unset: migrations run as `url`'s role (which then owns the
    /// tables — a warning is logged).
    pub migrate_url: Option<String>,
    /// Merged into `migrate_url`; from a secret, never the repo.
    #[serde(serialize_with = "mask")]
    pub migrate_password: Option<SecretString>,
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
            migrate_url: None,
            migrate_password: None,
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
    /// How long a delivered message may stay unacknowledged before it is redelivered: what a
    /// crashed process held goes to another within this. Renewed every third of it while a
    /// handler works on the message.
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
            ack_wait_secs: 10,
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

/// The audit trail's settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The key of the audit trail's hash chains (HMAC-SHA256), at least 32 bytes; from a Secret,
    /// never the repo. Required in distributed mode; in embedded mode, without one, a key is
    /// generated once and kept in `data_dir` (`audit-hmac.key`).
    #[serde(serialize_with = "mask")]
    pub hmac_key: Option<SecretString>,
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
    /// The services' sections of this council (`templates`, `screening`, …), by key, as written.
    #[serde(skip)]
    pub sections: BTreeMap<String, Section>,
}

impl TenantSettings {
    /// A council known by name only (its other settings the defaults).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            oidc: None,
            api_keys: Vec::new(),
            sections: BTreeMap::new(),
        }
    }

    /// The service section `key` of this council, when written.
    pub fn section(&self, key: &str) -> Option<&Section> {
        self.sections.get(key)
    }
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
    /// The web console's sign-in with this issuer (the gateway as a confidential client,
    /// authorization code flow with PKCE); absent: the council's staff cannot sign in to the
    /// console (their tokens still work on the APIs). The ID token it gets must carry `aud` =
    /// [`Self::audience`] (usually the client id), as every service checks it.
    #[serde(default)]
    pub client: Option<OidcClientSettings>,
}

/// `tenants.<id>.oidc.client`: what the gateway needs to sign the council's staff in.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcClientSettings {
    pub client_id: String,
    /// The client secret (`EH__TENANTS__<ID>__OIDC__CLIENT__CLIENT_SECRET`), or
    /// [`Self::client_secret_file`]; masked by `config print`.
    #[serde(default, serialize_with = "mask")]
    pub client_secret: Option<SecretString>,
    /// A file holding the client secret (a mounted Secret); read at start.
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// Where the provider sends the browser back: the console's `/console/callback` as the
    /// browser reaches it (`https://earlyhelp.example.gov.uk/console/callback`).
    pub redirect_url: String,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Where the provider sends the browser after an RP-initiated logout; absent: the console's
    /// signed-out page next to [`Self::redirect_url`].
    #[serde(default)]
    pub post_logout_redirect_url: Option<String>,
}

fn default_scopes() -> Vec<String> {
    vec!["profile".into()]
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
    /// The system's name, recorded as the actor; for an upstream system, the `source.system` of
    /// its referrals (it submits and reads only referrals in its own name).
    pub name: String,
    /// Hex SHA-256 of the key; the key itself is never configured.
    pub sha256: String,
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
        // The services' sections are taken out as written; the rest is the platform's, read
        // with unknown keys refused as ever.
        let mut root: config::Map<String, config::Value> = builder.build()?.try_deserialize()?;
        let mut sections = BTreeMap::new();
        let keys: Vec<String> = root.keys().cloned().collect();
        for key in keys {
            if !PLATFORM_KEYS.contains(&key.as_str())
                && let Some(value) = root.remove(&key)
            {
                sections.insert(key.clone(), Section { key, value });
            }
        }
        let mut tenant_sections: BTreeMap<String, BTreeMap<String, Section>> = BTreeMap::new();
        if let Some(config::Value {
            kind: config::ValueKind::Table(tenants),
            ..
        }) = root.get_mut("tenants")
        {
            for (id, tenant) in tenants.iter_mut() {
                if let config::ValueKind::Table(t) = &mut tenant.kind {
                    let keys: Vec<String> = t.keys().cloned().collect();
                    for key in keys {
                        if !TENANT_KEYS.contains(&key.as_str())
                            && let Some(value) = t.remove(&key)
                        {
                            tenant_sections.entry(id.clone()).or_default().insert(
                                key.clone(),
                                Section {
                                    key: format!("tenants.{id}.{key}"),
                                    value,
                                },
                            );
                        }
                    }
                }
            }
        }
        let mut settings: Settings =
            config::Value::new(None, config::ValueKind::Table(root)).try_deserialize()?;
        settings.sections = sections;
        for (id, s) in tenant_sections {
            if let Some(t) = settings.tenants.get_mut(&id) {
                t.sections = s;
            }
        }
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
            if let Some(u) = &self.database.migrate_url
                && !(u.starts_with("postgres://") || u.starts_with("postgresql://"))
            {
                return Err(invalid(
                    "database.migrate_url",
                    "must be a postgres:// URL in distributed mode",
                ));
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
        for (id, t) in &self.tenants {
            if !is_token(id) || id.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(invalid(
                    &format!("tenants.{id}"),
                    "a tenant id is one lowercase subject token: letters, digits, '_' or '-'",
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

    /// The effective settings as TOML-like JSON with secrets masked (`earlyhelp config print`),
    /// the services' sections as written; passwords, tokens and the credentials in URLs
    /// (`database.url`, `bus.nats_url`, …) masked ([`mask_secrets`]).
    pub fn to_masked_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        mask_secrets(&mut v);
        if let Some(root) = v.as_object_mut() {
            for (key, section) in &self.sections {
                root.insert(key.clone(), section.to_masked_json());
            }
            if let Some(tenants) = root.get_mut("tenants").and_then(|t| t.as_object_mut()) {
                for (id, t) in &self.tenants {
                    if let Some(out) = tenants.get_mut(id).and_then(|o| o.as_object_mut()) {
                        for (key, section) in &t.sections {
                            out.insert(key.clone(), section.to_masked_json());
                        }
                    }
                }
            }
        }
        v
    }

    /// The top-level service section `key`, when written.
    pub fn section(&self, key: &str) -> Option<&Section> {
        self.sections.get(key)
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
    fn service_sections_are_handed_over_as_written_and_read_naming_the_key() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Smtp {
            port: u16,
            password: Option<String>,
        }
        let s = Settings::load(
            &[],
            env(&[
                ("EH__SMTP__PORT", "2525"),
                ("EH__SMTP__PASSWORD", "1234"),
                ("EH__TENANTS__WORCS__NAME", "W"),
                ("EH__TENANTS__WORCS__SCREENING__VERSION", "w-1"),
            ]),
        )
        .unwrap();
        let smtp: Smtp = s.section("smtp").unwrap().read().unwrap();
        assert_eq!(smtp.port, 2525);
        assert_eq!(
            smtp.password.as_deref(),
            Some("1234"),
            "a number read as a string"
        );
        let worcs = &s.tenants["worcs"];
        assert_eq!(worcs.name, "W");
        let screening = worcs.section("screening").unwrap();
        assert_eq!(screening.key(), "tenants.worcs.screening");
        assert_eq!(screening.to_json(), serde_json::json!({"version": "w-1"}));

        let bad = Settings::load(&[], env(&[("EH__SMTP__PORT", "soon")])).unwrap();
        let e = bad
            .section("smtp")
            .unwrap()
            .read::<Smtp>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("smtp.port"), "{e}");
        let e = Section::from_json(
            "tenants.worcs.templates",
            serde_json::json!({"ack": {"subject": 1, "body": []}}),
        )
        .unwrap()
        .read::<BTreeMap<String, BTreeMap<String, String>>>()
        .unwrap_err()
        .to_string();
        assert!(e.contains("tenants.worcs.templates.ack.body"), "{e}");
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
        let s = Settings::load(
            &[],
            env(&[
                ("EH__SMTP__PASSWORD", "hunter2"),
                ("EH__DATABASE__PASSWORD", "swordfish"),
                ("EH__SMTP__HOST", "smtp.example"),
            ]),
        )
        .unwrap();
        let printed = s.to_masked_json().to_string();
        assert!(!printed.contains("hunter2"));
        assert!(!printed.contains("swordfish"));
        assert!(printed.contains("********"));
        assert!(printed.contains("smtp.example"), "{printed}");
    }

    #[test]
    fn credentials_in_urls_are_masked_when_printed() {
        let s = Settings::load(
            &[],
            env(&[
                ("EH__MODE", "distributed"),
                (
                    "EH__DATABASE__URL",
                    "postgres://earlyhelp:pg-hunter2@db:5432/eh?sslmode=require&sslpassword=pg-key-pw",
                ),
                (
                    "EH__BUS__NATS_URL",
                    "nats://svc:nats-hunter2@nats-0:4222,tls://nats-token-7f3a@nats-1:4222",
                ),
                ("EH__SMTP__URL", "smtps://mailer:smtp-hunter2@smtp.example:465"),
                ("EH__SMTP__API_TOKEN", "smtp-token-9c1e"),
                (
                    "EH__TELEMETRY__OTLP_ENDPOINT",
                    "https://collector.example:4317/v1?token=otlp-token-22",
                ),
            ]),
        )
        .unwrap();
        let printed = s.to_masked_json();
        let text = printed.to_string();
        for secret in [
            "pg-hunter2",
            "pg-key-pw",
            "nats-hunter2",
            "nats-token-7f3a",
            "smtp-hunter2",
            "smtp-token-9c1e",
            "otlp-token-22",
        ] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
        assert_eq!(
            printed["database"]["url"],
            "postgres://earlyhelp:********@db:5432/eh?sslmode=require&sslpassword=********"
        );
        assert_eq!(
            printed["bus"]["nats_url"],
            "nats://svc:********@nats-0:4222,tls://********@nats-1:4222"
        );
        assert_eq!(
            printed["smtp"]["url"],
            "smtps://mailer:********@smtp.example:465"
        );
        assert_eq!(printed["smtp"]["api_token"], "********");
        assert_eq!(
            printed["telemetry"]["otlp_endpoint"],
            "https://collector.example:4317/v1?token=********"
        );
        // What is not a secret stays as it is: a user name of a database URL, hosts, paths.
        assert_eq!(
            mask_url_credentials("postgres://earlyhelp@db/eh and http://h:1/p#f"),
            "postgres://earlyhelp@db/eh and http://h:1/p#f"
        );
        assert!(matches!(
            mask_url_credentials("no url here"),
            std::borrow::Cow::Borrowed(_)
        ));
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
}
