//! The console's sessions, held server-side in the gateway's own table. The browser holds only a
//! random session id (32 bytes) in a cookie; the table holds its SHA-256, so a copy of the table
//! does not let anyone present a session. A session is first *pending* (the sign-in under way:
//! the OIDC state, nonce and PKCE verifier, or the demo sign-in page's form) and becomes *signed
//! in* under a new id (the old one is deleted, so an id planted before sign-in is worth nothing).
//! It ends when unused for the idle timeout, at its absolute end (sign-in + the absolute timeout,
//! or the ID token's expiry when sooner), or at sign-out. Each session has its own CSRF token
//! (the synchroniser token every form carries). The ID token a session holds (the person's
//! credential) is stored sealed ([`TokenKey`]: AES-256-GCM, bound to its row), so a copy of the
//! table gives no one a credential either.
use base64::Engine;
use eh_store::stmt;
use ring::aead;
use sea_orm::{ConnectionTrait, DbErr};
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;
use std::sync::Arc;

pub const MIGRATIONS: &[eh_store::Migration] = &[eh_store::Migration {
    owner: "gateway",
    version: 2,
    name: "console sessions",
    sql: "CREATE TABLE gateway_sessions (
            id_sha256 TEXT NOT NULL PRIMARY KEY,
            tenant TEXT NOT NULL,
            csrf TEXT NOT NULL,
            created_at {ts} NOT NULL,
            last_seen_at {ts} NOT NULL,
            expires_at {ts} NOT NULL,
            subject TEXT NULL,
            id_token TEXT NULL,
            pending TEXT NULL,
            end_session_url TEXT NULL
          );
          CREATE INDEX gateway_sessions_expires ON gateway_sessions (expires_at)",
}];

/// How long a pending sign-in may take.
pub const PENDING_MINUTES: i64 = 10;

/// The timeouts of every session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub idle: chrono::Duration,
    pub absolute: chrono::Duration,
}

/// A session found by its cookie, still live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub tenant: String,
    pub csrf: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Signed in: the person's subject and ID token (the credential the services are called
    /// with); `None` while the sign-in is pending.
    pub user: Option<SignedIn>,
    /// The pending sign-in's state (JSON), when pending.
    pub pending: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub subject: String,
    pub id_token: String,
    /// The provider's RP-initiated logout endpoint, when it has one.
    pub end_session_url: Option<String>,
}

/// A new random secret (session id, CSRF token), base64url.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(id: &str) -> String {
    hex::encode(sha2::Sha256::digest(id.as_bytes()))
}

/// Equal, compared in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (
        sha2::Sha256::digest(a.as_bytes()),
        sha2::Sha256::digest(b.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// In embedded mode without `gateway.console.session_key`: the file under `data_dir` holding a
/// generated key.
pub const KEY_FILE: &str = "console-session.key";
/// A sealed token's prefix (the format's version).
const SEALED_PREFIX: &str = "v1.";

/// The key the ID tokens of sessions are sealed with (AES-256-GCM, a random nonce each time,
/// the session's id digest as associated data: a sealed token moved to another row does not
/// open). Never printed.
#[derive(Clone)]
pub struct TokenKey(Arc<aead::LessSafeKey>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(********)")
    }
}

impl TokenKey {
    /// A key of exactly 32 bytes.
    ///
    /// # Errors
    /// Another length.
    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != 32 {
            return Err("must be 32 bytes (64 hex digits)".into());
        }
        let k = aead::UnboundKey::new(&aead::AES_256_GCM, bytes)
            .map_err(|_| "not an AES-256 key".to_string())?;
        Ok(Self(Arc::new(aead::LessSafeKey::new(k))))
    }

    /// A new random key (tests; a process that keeps no sessions across restarts).
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self::new(&bytes).unwrap_or_else(|_| unreachable!("32 bytes"))
    }

    fn from_hex(text: &str) -> Result<Self, String> {
        let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
        Self::new(&bytes)
    }

    /// The key of the settings: `gateway.console.session_key` (hex, from a Secret:
    /// `EH__GATEWAY__CONSOLE__SESSION_KEY`) or the file `session_key_file` names (a mounted
    /// Secret); without either, a key derived (HKDF-SHA256, its own label) from the audit trail's
    /// key `audit.hmac_key` when there is one (a Secret every replica already shares); without
    /// that, in embedded mode (and so in demo mode), a key generated once and kept in `data_dir`
    /// ([`KEY_FILE`]). Distributed mode has no generated default: every gateway replica must
    /// open the sessions the others sealed.
    ///
    /// # Errors
    /// Distributed mode without a key; a key that is not 32 bytes of hex; the file unreadable.
    pub fn from_settings(
        settings: &eh_platform::Settings,
        console: &crate::settings::ConsoleSettings,
    ) -> Result<Self, String> {
        if let Some(k) = console.session_key.secret()
            && !k.expose_secret().trim().is_empty()
        {
            return Self::from_hex(k.expose_secret())
                .map_err(|e| format!("gateway.console.session_key: {e}"));
        }
        if !console.session_key_file.is_empty() {
            let f = &console.session_key_file;
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("gateway.console.session_key_file {f}: {e}"))?;
            return Self::from_hex(&text)
                .map_err(|e| format!("gateway.console.session_key_file {f}: {e}"));
        }
        if let Some(k) = &settings.audit.hmac_key
            && !k.expose_secret().is_empty()
        {
            return Ok(Self::derived(k.expose_secret().as_bytes()));
        }
        match settings.mode {
            eh_platform::Mode::Distributed => Err(
                "gateway.console.session_key: required in distributed mode (from a Secret, 64 hex \
                 digits; or audit.hmac_key to derive it from): it seals the ID tokens of the \
                 console's sessions, and every gateway replica must open them"
                    .into(),
            ),
            eh_platform::Mode::Embedded => Self::load_or_create(&settings.data_dir),
        }
    }

    /// A key of its own derived from `secret` (HKDF-SHA256 with the console's label).
    fn derived(secret: &[u8]) -> Self {
        let prk =
            ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"earlyhelp console").extract(secret);
        let key = prk
            .expand(&[b"session token seal v1"], &aead::AES_256_GCM)
            .map(aead::UnboundKey::from)
            .unwrap_or_else(|_| unreachable!("32 bytes is within HKDF-SHA256's length"));
        Self(Arc::new(aead::LessSafeKey::new(key)))
    }

    /// The key kept in `dir` ([`KEY_FILE`], hex), generated and written (owner-only) at first.
    ///
    /// # Errors
    /// The file cannot be read, written or is not a key.
    pub fn load_or_create(dir: &std::path::Path) -> Result<Self, String> {
        let path = dir.join(KEY_FILE);
        let shown = path.display();
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{shown}: {e}"))?;
            return Self::from_hex(&text).map_err(|e| format!("{shown}: {e}"));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let bytes: [u8; 32] = rand::random();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(|e| format!("{shown}: {e}"))?;
        std::io::Write::write_all(&mut file, hex::encode(bytes).as_bytes())
            .map_err(|e| format!("{shown}: {e}"))?;
        Self::new(&bytes)
    }

    /// `plain` sealed for the row `row` (the session id's digest): `v1.` and base64url of the
    /// nonce, the ciphertext and its tag.
    pub fn seal(&self, row: &str, plain: &str) -> Result<String, DbErr> {
        let nonce: [u8; aead::NONCE_LEN] = rand::random();
        let mut buf = plain.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(row.as_bytes()),
                &mut buf,
            )
            .map_err(|_| DbErr::Custom("the session's token cannot be sealed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// What [`Self::seal`] sealed for `row`; `None` when it does not open (another key, another
    /// row, changed).
    pub fn open(&self, row: &str, sealed: &str) -> Option<String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed.strip_prefix(SEALED_PREFIX)?)
            .ok()?;
        if bytes.len() < aead::NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, rest) = bytes.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, aead::Aad::from(row.as_bytes()), &mut buf)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

/// `gateway.console.session_key`: a secret setting, masked wherever it is printed or compared.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct KeySetting(Option<SecretString>);

impl KeySetting {
    pub fn secret(&self) -> Option<&SecretString> {
        self.0.as_ref()
    }
}

impl From<&str> for KeySetting {
    fn from(s: &str) -> Self {
        Self(Some(SecretString::from(s)))
    }
}

impl std::fmt::Debug for KeySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(_) => f.write_str("Some(********)"),
            None => f.write_str("None"),
        }
    }
}

impl PartialEq for KeySetting {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => same_secret(a.expose_secret(), b.expose_secret()),
            (None, None) => true,
            _ => false,
        }
    }
}

impl serde::Serialize for KeySetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(k) if !k.expose_secret().is_empty() => s.serialize_str("********"),
            _ => s.serialize_none(),
        }
    }
}

/// Runs `f` on the session store in one short transaction of the named system-scope worker
/// [`eh_store::SystemWorker::ConsoleSessions`]: a session is found by the digest of its cookie
/// before its council is known (row-level security would otherwise hide every row), and purged
/// across councils. Nothing else of a council's data is read in this scope: the console's pages
/// call the services with the person's own token.
pub async fn with_store<T>(
    db: &sea_orm::DatabaseConnection,
    f: impl AsyncFnOnce(&sea_orm::DatabaseTransaction) -> Result<T, DbErr>,
) -> Result<T, DbErr> {
    let txn = eh_store::begin_system(db, eh_store::SystemWorker::ConsoleSessions).await?;
    let out = f(&txn).await?;
    eh_store::commit(txn).await?;
    Ok(out)
}

/// Starts a pending session (a sign-in under way) for `tenant`; its id for the cookie.
async fn create_pending_in(
    db: &impl ConnectionTrait,
    tenant: &str,
    pending: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(String, String), DbErr> {
    let id = random_token();
    let csrf = random_token();
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO gateway_sessions
           (id_sha256, tenant, csrf, created_at, last_seen_at, expires_at, pending)
         VALUES ($1, $2, $3, $4, $4, $5, $6)",
        [
            digest(&id).into(),
            tenant.into(),
            csrf.clone().into(),
            now.into(),
            (now + chrono::Duration::minutes(PENDING_MINUTES)).into(),
            pending.into(),
        ],
    ))
    .await?;
    Ok((id, csrf))
}

/// The live session `id` names, its last use moved to `now`; `None` (and the row deleted) when
/// it is unknown, idle past the timeout or past its absolute end.
async fn load_in(
    db: &impl ConnectionTrait,
    key: &TokenKey,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
    t: Timeouts,
) -> Result<Option<Session>, DbErr> {
    let b = db.get_database_backend();
    let row = digest(id);
    let Some(r) = db
        .query_one_raw(stmt(
            b,
            "SELECT tenant, csrf, created_at, last_seen_at, expires_at, subject, id_token,
                    pending, end_session_url
             FROM gateway_sessions WHERE id_sha256 = $1",
            [row.clone().into()],
        ))
        .await?
    else {
        return Ok(None);
    };
    let last_seen: chrono::DateTime<chrono::Utc> = r.try_get_by_index(3)?;
    let expires_at: chrono::DateTime<chrono::Utc> = r.try_get_by_index(4)?;
    if now >= expires_at || now - last_seen >= t.idle {
        delete_in(db, id).await?;
        return Ok(None);
    }
    db.execute_raw(stmt(
        b,
        "UPDATE gateway_sessions SET last_seen_at = $2 WHERE id_sha256 = $1",
        [row.clone().into(), now.into()],
    ))
    .await?;
    let subject: Option<String> = r.try_get_by_index(5)?;
    let sealed: Option<String> = r.try_get_by_index(6)?;
    let user = match (subject, sealed) {
        (Some(subject), Some(sealed)) => {
            // A token that does not open (the key changed, the row was tampered with) is no
            // session: the person signs in again.
            let Some(id_token) = key.open(&row, &sealed) else {
                tracing::warn!("console: a session's token does not open; the session is ended");
                delete_in(db, id).await?;
                return Ok(None);
            };
            Some(SignedIn {
                subject,
                id_token,
                end_session_url: r.try_get_by_index(8)?,
            })
        }
        _ => None,
    };
    Ok(Some(Session {
        tenant: r.try_get_by_index(0)?,
        csrf: r.try_get_by_index(1)?,
        created_at: r.try_get_by_index(2)?,
        expires_at,
        user,
        pending: r.try_get_by_index(7)?,
    }))
}

/// Ends the pending session `old` and starts a signed-in one under a new id (returned, with
/// its CSRF token). It ends at `now` + the absolute timeout, or when the token expires if sooner.
#[allow(clippy::too_many_arguments)]
async fn sign_in_in(
    db: &impl ConnectionTrait,
    key: &TokenKey,
    old: Option<&str>,
    tenant: &str,
    user: &SignedIn,
    token_expires: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
    t: Timeouts,
) -> Result<(String, String), DbErr> {
    if let Some(old) = old {
        delete_in(db, old).await?;
    }
    let id = random_token();
    let csrf = random_token();
    let expires = (now + t.absolute).min(token_expires);
    let row = digest(&id);
    let sealed = key.seal(&row, &user.id_token)?;
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO gateway_sessions
           (id_sha256, tenant, csrf, created_at, last_seen_at, expires_at, subject, id_token,
            end_session_url)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8)",
        [
            row.into(),
            tenant.into(),
            csrf.clone().into(),
            now.into(),
            expires.into(),
            user.subject.clone().into(),
            sealed.into(),
            user.end_session_url.clone().into(),
        ],
    ))
    .await?;
    Ok((id, csrf))
}

/// Ends the session `id` (sign-out, expiry); whether there was one.
async fn delete_in(db: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    let b = db.get_database_backend();
    let res = db
        .execute_raw(stmt(
            b,
            "DELETE FROM gateway_sessions WHERE id_sha256 = $1",
            [digest(id).into()],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Forgets every session past its absolute end or idle since before `idle_before`; how many.
async fn purge_in(
    db: &impl ConnectionTrait,
    now: chrono::DateTime<chrono::Utc>,
    idle_before: chrono::DateTime<chrono::Utc>,
) -> Result<u64, DbErr> {
    let b = db.get_database_backend();
    let res = db
        .execute_raw(stmt(
            b,
            "DELETE FROM gateway_sessions WHERE expires_at <= $1 OR last_seen_at <= $2",
            [now.into(), idle_before.into()],
        ))
        .await?;
    Ok(res.rows_affected())
}

/// [`create_pending_in`] through the session store ([`with_store`]).
pub async fn create_pending(
    db: &sea_orm::DatabaseConnection,
    tenant: &str,
    pending: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(String, String), DbErr> {
    with_store(db, async |t| {
        create_pending_in(t, tenant, pending, now).await
    })
    .await
}

/// [`load_in`] through the session store ([`with_store`]).
pub async fn load(
    db: &sea_orm::DatabaseConnection,
    key: &TokenKey,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
    timeouts: Timeouts,
) -> Result<Option<Session>, DbErr> {
    with_store(db, async |t| load_in(t, key, id, now, timeouts).await).await
}

/// [`sign_in_in`] through the session store ([`with_store`]).
#[allow(clippy::too_many_arguments)]
pub async fn sign_in(
    db: &sea_orm::DatabaseConnection,
    key: &TokenKey,
    old: Option<&str>,
    tenant: &str,
    user: &SignedIn,
    token_expires: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
    timeouts: Timeouts,
) -> Result<(String, String), DbErr> {
    with_store(db, async |t| {
        sign_in_in(t, key, old, tenant, user, token_expires, now, timeouts).await
    })
    .await
}

/// [`delete_in`] through the session store ([`with_store`]).
pub async fn delete(db: &sea_orm::DatabaseConnection, id: &str) -> Result<bool, DbErr> {
    with_store(db, async |t| delete_in(t, id).await).await
}

/// [`purge_in`] through the session store ([`with_store`]).
pub async fn purge(
    db: &sea_orm::DatabaseConnection,
    now: chrono::DateTime<chrono::Utc>,
    idle_before: chrono::DateTime<chrono::Utc>,
) -> Result<u64, DbErr> {
    with_store(db, async |t| purge_in(t, now, idle_before).await).await
}

/// The cookie that holds the session id: `__Host-` prefixed and `Secure` over TLS (so no other
/// site or subdomain can set or read it), always `HttpOnly`, `SameSite=Lax` (the provider's
/// redirect back is a top-level GET that must carry it), `Path=/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieSpec {
    pub tls: bool,
}

impl CookieSpec {
    pub fn name(&self) -> &'static str {
        if self.tls {
            "__Host-eh-session"
        } else {
            "eh-session"
        }
    }

    /// `Set-Cookie` for `id`; a session cookie (no `Max-Age`: it goes with the browser, and the
    /// server ends it by its own timeouts).
    pub fn set(&self, id: &str) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Lax{secure}",
            self.name()
        )
    }

    /// `Set-Cookie` that removes it.
    pub fn clear(&self) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!(
            "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
            self.name()
        )
    }

    /// The session id the request's `Cookie` headers carry.
    pub fn read(&self, headers: &axum::http::HeaderMap) -> Option<String> {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == self.name())
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty() && v.len() <= 64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_flags_follow_tls() {
        let tls = CookieSpec { tls: true };
        let set = tls.set("abc");
        assert!(set.starts_with("__Host-eh-session=abc;"), "{set}");
        for flag in ["; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"] {
            assert!(set.contains(flag), "{set} lacks {flag}");
        }
        assert!(
            !set.contains("Domain"),
            "a __Host- cookie has no Domain: {set}"
        );
        let plain = CookieSpec { tls: false };
        let set = plain.set("abc");
        assert!(set.starts_with("eh-session=abc;"), "{set}");
        assert!(set.contains("; HttpOnly") && set.contains("; SameSite=Lax"));
        assert!(!set.contains("Secure"), "{set}");
        assert!(tls.clear().contains("Max-Age=0") && tls.clear().contains("; Secure"));
    }

    #[test]
    fn the_cookie_is_read_by_its_own_name_only() {
        let spec = CookieSpec { tls: true };
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "eh-session=plain; __Host-eh-session=tls-id; other=x"
                .parse()
                .unwrap(),
        );
        assert_eq!(spec.read(&h).as_deref(), Some("tls-id"));
        assert_eq!(CookieSpec { tls: false }.read(&h).as_deref(), Some("plain"));
        assert_eq!(spec.read(&axum::http::HeaderMap::new()), None);
    }

    #[test]
    fn tokens_are_sealed_to_their_row_and_key() {
        let key = TokenKey::generate();
        let sealed = key.seal("row-a", "eyJ.the.token").unwrap();
        assert!(sealed.starts_with("v1."), "{sealed}");
        assert!(
            !sealed.contains("eyJ") && !sealed.contains("token"),
            "{sealed}"
        );
        assert_eq!(key.open("row-a", &sealed).as_deref(), Some("eyJ.the.token"));
        assert_ne!(
            sealed,
            key.seal("row-a", "eyJ.the.token").unwrap(),
            "a new nonce"
        );
        assert_eq!(key.open("row-b", &sealed), None, "another row's");
        assert_eq!(
            TokenKey::generate().open("row-a", &sealed),
            None,
            "another key"
        );
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(key.open("row-a", &String::from_utf8(bytes).unwrap()), None);
        assert_eq!(key.open("row-a", "eyJ.the.token"), None, "a plain token");
        assert!(TokenKey::new(&[0u8; 16]).is_err());
        assert!(format!("{key:?}").contains("****"));
    }

    #[test]
    fn the_key_comes_from_the_settings_or_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let load = |env: &[(&str, String)]| {
            eh_platform::Settings::load(
                &[],
                env.iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .chain([("EH__DATA_DIR".to_string(), dir.path().display().to_string())]),
            )
            .unwrap()
        };
        let console = |s: &eh_platform::Settings| {
            crate::settings::GatewaySettings::from_settings(s)
                .unwrap()
                .console
        };
        // Embedded, none set: generated once, the same afterwards.
        let s = load(&[]);
        let a = TokenKey::from_settings(&s, &console(&s)).unwrap();
        assert!(dir.path().join(KEY_FILE).exists());
        let b = TokenKey::from_settings(&s, &console(&s)).unwrap();
        assert_eq!(
            b.open("r", &a.seal("r", "t").unwrap()).as_deref(),
            Some("t")
        );
        // From the setting (a Secret's environment variable), masked when printed.
        let hex_key = hex::encode([0xabu8; 32]);
        let s = load(&[("EH__GATEWAY__CONSOLE__SESSION_KEY", hex_key.clone())]);
        let c = console(&s);
        assert!(!format!("{c:?}").contains(&hex_key));
        assert!(!serde_json::to_string(&c).unwrap().contains(&hex_key));
        let k = TokenKey::from_settings(&s, &c).unwrap();
        assert_eq!(a.open("r", &k.seal("r", "t").unwrap()), None);
        let s = load(&[("EH__GATEWAY__CONSOLE__SESSION_KEY", "abc".into())]);
        let e = TokenKey::from_settings(&s, &console(&s)).unwrap_err();
        assert!(e.contains("gateway.console.session_key"), "{e}");
        // Distributed mode: derived from the audit key every replica has (the same each time,
        // not the generated one); without either key, refused, naming the setting.
        let audit = "an-audit-key-of-at-least-thirty-two-bytes".to_string();
        let dist = |extra: &[(&str, String)]| {
            let mut env = vec![
                ("EH__MODE", "distributed".to_string()),
                ("EH__DATABASE__URL", "postgres://x@h/db".to_string()),
            ];
            env.extend_from_slice(extra);
            load(&env)
        };
        let s = dist(&[("EH__AUDIT__HMAC_KEY", audit.clone())]);
        let d1 = TokenKey::from_settings(&s, &console(&s)).unwrap();
        let d2 = TokenKey::from_settings(&s, &console(&s)).unwrap();
        let sealed = d1.seal("r", "t").unwrap();
        assert_eq!(d2.open("r", &sealed).as_deref(), Some("t"));
        assert_eq!(a.open("r", &sealed), None);
        let s = dist(&[]);
        let e = TokenKey::from_settings(&s, &console(&s)).unwrap_err();
        assert!(e.contains("required in distributed mode"), "{e}");
    }

    #[test]
    fn secrets_compare_by_value() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert!(same_secret(&t, &t.clone()));
        assert!(!same_secret(&t, &random_token()));
        assert!(!same_secret(&t, ""));
    }
}
