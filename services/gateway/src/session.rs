//! The console's sessions, held server-side in the gateway's own table. The browser holds only a
//! random session id (32 bytes) in a cookie; the table holds its SHA-256, so a copy of the table
//! does not let anyone present a session. A session is first *pending* (the sign-in under way:
//! the OIDC state, nonce and PKCE verifier, or the demo sign-in page's form) and becomes *signed
//! in* under a new id (the old one is deleted, so an id planted before sign-in is worth nothing).
//! It ends when unused for the idle timeout, at its absolute end (sign-in + the absolute timeout,
//! or the ID token's expiry when sooner), or at sign-out. Each session has its own CSRF token
//! (the synchroniser token every form carries).
use base64::Engine;
use eh_store::stmt;
use sea_orm::{ConnectionTrait, DbErr};
use sha2::Digest;

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
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
    t: Timeouts,
) -> Result<Option<Session>, DbErr> {
    let b = db.get_database_backend();
    let key = digest(id);
    let Some(r) = db
        .query_one_raw(stmt(
            b,
            "SELECT tenant, csrf, created_at, last_seen_at, expires_at, subject, id_token,
                    pending, end_session_url
             FROM gateway_sessions WHERE id_sha256 = $1",
            [key.clone().into()],
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
        [key.into(), now.into()],
    ))
    .await?;
    let subject: Option<String> = r.try_get_by_index(5)?;
    let id_token: Option<String> = r.try_get_by_index(6)?;
    let user = match (subject, id_token) {
        (Some(subject), Some(id_token)) => Some(SignedIn {
            subject,
            id_token,
            end_session_url: r.try_get_by_index(8)?,
        }),
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
    let b = db.get_database_backend();
    db.execute_raw(stmt(
        b,
        "INSERT INTO gateway_sessions
           (id_sha256, tenant, csrf, created_at, last_seen_at, expires_at, subject, id_token,
            end_session_url)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8)",
        [
            digest(&id).into(),
            tenant.into(),
            csrf.clone().into(),
            now.into(),
            expires.into(),
            user.subject.clone().into(),
            user.id_token.clone().into(),
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
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
    timeouts: Timeouts,
) -> Result<Option<Session>, DbErr> {
    with_store(db, async |t| load_in(t, id, now, timeouts).await).await
}

/// [`sign_in_in`] through the session store ([`with_store`]).
#[allow(clippy::too_many_arguments)]
pub async fn sign_in(
    db: &sea_orm::DatabaseConnection,
    old: Option<&str>,
    tenant: &str,
    user: &SignedIn,
    token_expires: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
    timeouts: Timeouts,
) -> Result<(String, String), DbErr> {
    with_store(db, async |t| {
        sign_in_in(t, old, tenant, user, token_expires, now, timeouts).await
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
    fn secrets_compare_by_value() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert!(same_secret(&t, &t.clone()));
        assert!(!same_secret(&t, &random_token()));
        assert!(!same_secret(&t, ""));
    }
}
