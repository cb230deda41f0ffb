//! Token and key validation, and the tonic interceptor that applies it.
use crate::{AuthError, Principal};
use eh_platform::Settings;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Where an issuer's signing keys come from.
#[derive(Debug, Clone)]
enum KeySource {
    /// Fixed at start (a mounted file, or the demo issuer).
    Fixed,
    /// Fetched from the issuer's JWKS URL, refreshed periodically and when a token names an
    /// unknown key (key rotation).
    Url(String),
}

struct Issuer {
    tenant: String,
    audience: String,
    roles_claim: String,
    agency_claim: String,
    keys: RwLock<JwkSet>,
    source: KeySource,
    last_fetch: RwLock<Option<Instant>>,
}

/// Keys are fetched at most this often when tokens name unknown keys.
const MIN_REFETCH: Duration = Duration::from_secs(30);
/// And refreshed this often regardless.
pub const REFRESH_EVERY: Duration = Duration::from_secs(600);

/// Most tokens [`Verified`] holds; when full, the expired ones go, then all (a practitioner's
/// page sends one token many times; a council has far fewer live tokens than this).
const VERIFIED_MAX: usize = 16_384;

/// Tokens whose signature and claims were checked, so a token seen again costs a hash and a map
/// look-up instead of an ES256/RS256 verification (~0.1 ms of CPU each, the largest cost of a read
/// on a 2-core machine). Keyed by the SHA-256 of the whole token, so only the very same token
/// hits; an entry is used only until the token's `exp` and only under the keys it was checked
/// with (a key set replaced by a refresh bumps `keys_generation`, and every entry checked before
/// is checked again). Failures are never kept.
#[derive(Default)]
struct Verified {
    entries: Mutex<HashMap<[u8; 32], VerifiedToken>>,
    keys_generation: AtomicU64,
    /// Signature checks made (not answered from here): tests and the read harness read it.
    checks: AtomicU64,
}

struct VerifiedToken {
    principal: Principal,
    /// The token's `exp`, seconds since the epoch.
    expires: i64,
    keys_generation: u64,
}

impl Verified {
    fn get(&self, digest: &[u8; 32], now: i64) -> Option<Principal> {
        let generation = self.keys_generation.load(Ordering::Acquire);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(digest)
            .filter(|v| now < v.expires && v.keys_generation == generation)
            .map(|v| v.principal.clone())
    }

    fn put(
        &self,
        digest: [u8; 32],
        principal: &Principal,
        expires: i64,
        generation: u64,
        now: i64,
    ) {
        if now >= expires {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= VERIFIED_MAX {
            let current = self.keys_generation.load(Ordering::Acquire);
            entries.retain(|_, v| now < v.expires && v.keys_generation == current);
            if entries.len() >= VERIFIED_MAX {
                entries.clear();
            }
        }
        entries.insert(
            digest,
            VerifiedToken {
                principal: principal.clone(),
                expires,
                keys_generation: generation,
            },
        );
    }

    /// An issuer's keys changed: nothing checked under the old ones is trusted without a new check.
    fn keys_changed(&self) {
        self.keys_generation.fetch_add(1, Ordering::AcqRel);
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Validates credentials against every configured tenant.
#[derive(Clone)]
pub struct Authenticator {
    issuers: Arc<HashMap<String, Issuer>>,
    api_keys: Arc<HashMap<String, (String, String)>>,
    service_keys: Arc<HashMap<String, String>>,
    refetch: Arc<tokio::sync::Notify>,
    verified: Arc<Verified>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Authenticator {
    /// From settings: each tenant's OIDC issuer (JWKS from a file path, `file://`, or an `https://`
    /// URL — plain `http://` only to a loopback address — fetched by [`Authenticator::refresh`]),
    /// API keys, and service keys; plus the demo issuer when demo mode is on.
    pub fn from_settings(
        settings: &Settings,
        demo: Option<&crate::demo::DemoIssuer>,
    ) -> Result<Self, String> {
        let mut issuers = HashMap::new();
        let mut api_keys = HashMap::new();
        for (tenant, t) in &settings.tenants {
            if let Some(oidc) = &t.oidc {
                let url = &oidc.jwks_url;
                let key = format!("tenants.{tenant}.oidc.jwks_url");
                let (keys, source) = if url.starts_with("https://") {
                    (JwkSet { keys: vec![] }, KeySource::Url(url.clone()))
                } else if let Some(rest) = url.strip_prefix("http://") {
                    let host = rest.split(['/', ':']).next().unwrap_or_default();
                    if !matches!(host, "127.0.0.1" | "localhost") {
                        return Err(format!(
                            "{key}: must be https:// (plain http only to a loopback address)"
                        ));
                    }
                    (JwkSet { keys: vec![] }, KeySource::Url(url.clone()))
                } else {
                    let path = url.strip_prefix("file://").unwrap_or(url);
                    let text =
                        std::fs::read_to_string(path).map_err(|e| format!("{key} {path}: {e}"))?;
                    let keys: JwkSet = serde_json::from_str(&text)
                        .map_err(|e| format!("{key} {path}: not a JWKS: {e}"))?;
                    (keys, KeySource::Fixed)
                };
                if issuers.contains_key(&oidc.issuer) {
                    return Err(format!(
                        "tenants.{tenant}.oidc.issuer: issuer {} is configured for two tenants",
                        oidc.issuer
                    ));
                }
                issuers.insert(
                    oidc.issuer.clone(),
                    Issuer {
                        tenant: tenant.clone(),
                        audience: oidc.audience.clone(),
                        roles_claim: oidc.roles_claim.clone(),
                        agency_claim: oidc.agency_claim.clone(),
                        keys: RwLock::new(keys),
                        source,
                        last_fetch: RwLock::new(None),
                    },
                );
            }
            for k in &t.api_keys {
                api_keys.insert(
                    k.sha256.to_ascii_lowercase(),
                    (tenant.clone(), k.name.clone()),
                );
            }
        }
        if let Some(d) = demo {
            if !settings.demo_enabled() {
                return Err("the demo issuer is refused outside demo mode".into());
            }
            issuers.insert(
                d.issuer.clone(),
                Issuer {
                    tenant: d.tenant.clone(),
                    audience: d.audience.clone(),
                    roles_claim: "roles".into(),
                    agency_claim: "agency".into(),
                    keys: RwLock::new(d.jwks()),
                    source: KeySource::Fixed,
                    last_fetch: RwLock::new(None),
                },
            );
        }
        let service_keys = settings
            .service_keys
            .iter()
            .map(|k| (k.sha256.to_ascii_lowercase(), k.name.clone()))
            .collect();
        Ok(Self {
            issuers: Arc::new(issuers),
            api_keys: Arc::new(api_keys),
            service_keys: Arc::new(service_keys),
            refetch: Arc::new(tokio::sync::Notify::new()),
            verified: Arc::new(Verified::default()),
        })
    }

    /// Fetches the JWKS of every URL-configured issuer that is due (never fetched, older than
    /// [`REFRESH_EVERY`], or asked for by a token with an unknown key and not fetched within the
    /// last 30 s). A failed fetch keeps the keys held; the errors are logged and returned.
    pub async fn refresh(&self, client: &reqwest::Client, force: bool) -> Vec<String> {
        let mut errors = Vec::new();
        for (iss, issuer) in self.issuers.iter() {
            let KeySource::Url(url) = &issuer.source else {
                continue;
            };
            let last = *issuer.last_fetch.read().unwrap_or_else(|e| e.into_inner());
            let due = match last {
                None => true,
                Some(t) if force => t.elapsed() >= MIN_REFETCH,
                Some(t) => t.elapsed() >= REFRESH_EVERY,
            };
            if !due {
                continue;
            }
            *issuer.last_fetch.write().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            let fetched = async {
                let resp = client
                    .get(url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await?
                    .error_for_status()?;
                resp.json::<JwkSet>().await
            }
            .await;
            match fetched {
                Ok(set) => {
                    tracing::info!(issuer = %iss, keys = set.keys.len(), "JWKS fetched");
                    self.replace_keys(issuer, set);
                }
                Err(e) => {
                    tracing::warn!(issuer = %iss, error = %e, "JWKS fetch failed; keeping the keys held");
                    errors.push(format!("{iss}: {e}"));
                }
            }
        }
        errors
    }

    /// Puts a freshly fetched key set in place; when it differs from the one held, every token
    /// checked under the old one is checked again before it is trusted.
    fn replace_keys(&self, issuer: &Issuer, set: JwkSet) {
        let mut keys = issuer.keys.write().unwrap_or_else(|e| e.into_inner());
        if *keys != set {
            *keys = set;
            self.verified.keys_changed();
        }
    }

    /// Keeps URL-configured JWKS fresh until `stop`: at once, every 10 minutes, and soon after a
    /// token names a key the issuer's set does not have (key rotation).
    pub async fn run_refresher(self, stop: tokio_util::sync::CancellationToken) {
        let client = match reqwest::Client::builder().build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the HTTP client for JWKS");
                return;
            }
        };
        let mut force = false;
        loop {
            self.refresh(&client, force).await;
            tokio::select! {
                _ = self.refetch.notified() => force = true,
                _ = tokio::time::sleep(Duration::from_secs(5)) => force = false,
                _ = stop.cancelled() => return,
            }
        }
    }

    /// The hex SHA-256 to configure for an API key.
    pub fn hash_key(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    /// Authenticates request metadata.
    pub fn authenticate(&self, md: &tonic::metadata::MetadataMap) -> Result<Principal, AuthError> {
        if let Some(v) = md.get("authorization") {
            let v = v
                .to_str()
                .map_err(|_| AuthError::Invalid("authorization header is not text".into()))?;
            let token = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .ok_or_else(|| {
                    AuthError::Invalid("authorization must be `Bearer <token>`".into())
                })?;
            return self.validate_token(token.trim());
        }
        if let Some(v) = md.get("x-eh-service-key") {
            let key = v
                .to_str()
                .map_err(|_| AuthError::Invalid("x-eh-service-key is not text".into()))?;
            return self
                .service_keys
                .get(&Self::hash_key(key))
                .map(|name| Principal::Service { name: name.clone() })
                .ok_or_else(|| AuthError::Invalid("unknown service key".into()));
        }
        if let Some(v) = md.get("x-api-key") {
            let key = v
                .to_str()
                .map_err(|_| AuthError::Invalid("x-api-key is not text".into()))?;
            return self
                .api_keys
                .get(&Self::hash_key(key))
                .map(|(tenant, name)| Principal::System {
                    tenant: tenant.clone(),
                    name: name.clone(),
                })
                .ok_or_else(|| AuthError::Invalid("unknown API key".into()));
        }
        Err(AuthError::Missing)
    }

    /// Validates a person's token: signature by the issuer's key, RS256/ES256 only, exp, nbf, aud.
    /// A token checked before, still unexpired and under the same keys, is answered from
    /// [`Verified`] without checking its signature again.
    pub fn validate_token(&self, token: &str) -> Result<Principal, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = chrono::Utc::now().timestamp();
        if let Some(p) = self.verified.get(&digest, now) {
            return Ok(p);
        }
        // Read before the keys, so a refresh racing this check makes the entry stale, not wrong.
        let generation = self.verified.keys_generation.load(Ordering::Acquire);
        self.verified.checks.fetch_add(1, Ordering::Relaxed);
        let (principal, expires) = self.check_token(token)?;
        self.verified
            .put(digest, &principal, expires, generation, now);
        Ok(principal)
    }

    /// How many tokens had their signature checked (not answered from the verified tokens).
    pub fn signature_checks(&self) -> u64 {
        self.verified.checks.load(Ordering::Relaxed)
    }

    /// The full check of [`Self::validate_token`]; the principal and the token's `exp`.
    fn check_token(&self, token: &str) -> Result<(Principal, i64), AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("token: {e}")))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::Invalid(format!(
                "token algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let iss = unverified_issuer(token)
            .ok_or_else(|| AuthError::Invalid("token has no issuer".into()))?;
        let issuer = self
            .issuers
            .get(&iss)
            .ok_or_else(|| AuthError::Invalid(format!("issuer {iss} is not trusted")))?;
        let key = {
            let keys = issuer.keys.read().unwrap_or_else(|e| e.into_inner());
            let jwk = match &header.kid {
                Some(kid) => keys.find(kid),
                None => keys.keys.first(),
            };
            match jwk {
                Some(jwk) => DecodingKey::from_jwk(jwk)
                    .map_err(|e| AuthError::Invalid(format!("issuer key: {e}")))?,
                None => {
                    // Perhaps the issuer rotated its keys: fetch them again soon.
                    self.refetch.notify_one();
                    return Err(AuthError::Invalid(
                        "token signed with an unknown key".into(),
                    ));
                }
            }
        };
        let mut v = Validation::new(header.alg);
        v.set_audience(&[&issuer.audience]);
        v.set_issuer(&[&iss]);
        v.validate_nbf = true;
        v.leeway = 30;
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map_err(|e| AuthError::Invalid(format!("token: {e}")))?;
        let c = data.claims;
        if let Some(t) = c.get("tenant").and_then(|t| t.as_str())
            && t != issuer.tenant
        {
            return Err(AuthError::Invalid(format!(
                "token tenant {t} does not match its issuer's tenant"
            )));
        }
        let expires = c.get("exp").and_then(|e| e.as_i64()).unwrap_or(0);
        let roles = c
            .get(&issuer.roles_claim)
            .and_then(|r| r.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let principal = Principal::Person {
            tenant: issuer.tenant.clone(),
            subject: c
                .get("sub")
                .and_then(|s| s.as_str())
                .unwrap_or_default()
                .to_string(),
            agency: c
                .get(&issuer.agency_claim)
                .and_then(|a| a.as_str())
                .map(String::from),
            roles,
        };
        Ok((principal, expires))
    }

    /// A tonic interceptor that authenticates and attaches the [`Principal`].
    pub fn interceptor(&self) -> AuthInterceptor {
        AuthInterceptor(self.clone())
    }
}

/// Authenticates each gRPC request and attaches its [`Principal`]; `UNAUTHENTICATED` otherwise.
#[derive(Clone, Debug)]
pub struct AuthInterceptor(Authenticator);

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let p = self.0.authenticate(req.metadata()).map_err(|e| {
            tracing::info!(reason = %e, "request not authenticated");
            tonic::Status::from(e)
        })?;
        req.extensions_mut().insert(p);
        Ok(req)
    }
}

fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(String::from)
}

#[cfg(test)]
mod verified_tests {
    use super::*;
    use crate::demo::DemoIssuer;

    fn authenticator(demo: &DemoIssuer) -> Authenticator {
        let mut issuers = HashMap::new();
        issuers.insert(
            demo.issuer.clone(),
            Issuer {
                tenant: demo.tenant.clone(),
                audience: demo.audience.clone(),
                roles_claim: "roles".into(),
                agency_claim: "agency".into(),
                keys: RwLock::new(demo.jwks()),
                source: KeySource::Fixed,
                last_fetch: RwLock::new(None),
            },
        );
        Authenticator {
            issuers: Arc::new(issuers),
            api_keys: Arc::default(),
            service_keys: Arc::default(),
            refetch: Arc::new(tokio::sync::Notify::new()),
            verified: Arc::new(Verified::default()),
        }
    }

    fn issuer() -> (tempfile::TempDir, DemoIssuer) {
        let dir = tempfile::tempdir().expect("temp dir");
        let demo = DemoIssuer::load_or_create(dir.path()).expect("demo issuer");
        (dir, demo)
    }

    #[test]
    fn a_token_seen_again_is_not_checked_again_and_gives_the_same_principal() {
        let (_dir, demo) = issuer();
        let auth = authenticator(&demo);
        let token = demo.mint("p1", &["practitioner"], "school", 600).unwrap();
        let first = auth.validate_token(&token).unwrap();
        let second = auth.validate_token(&token).unwrap();
        assert_eq!(first, second);
        assert!(matches!(&first, Principal::Person { subject, .. } if subject == "p1"));
        assert_eq!(auth.signature_checks(), 1);
        // Another token of the same person is a different token: checked on its own.
        let other = demo.mint("p1", &["manager"], "school", 601).unwrap();
        let p = auth.validate_token(&other).unwrap();
        assert!(matches!(p, Principal::Person { roles, .. } if roles == ["manager"]));
        assert_eq!(auth.signature_checks(), 2);
    }

    #[test]
    fn an_altered_token_is_refused_though_the_original_was_verified() {
        let (_dir, demo) = issuer();
        let auth = authenticator(&demo);
        let token = demo.mint("p1", &["practitioner"], "school", 600).unwrap();
        auth.validate_token(&token).unwrap();
        // The same header and signature over a payload naming a manager.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = demo
            .mint("p1", &["manager"], "school", 600)
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap()
            .to_string();
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert!(auth.validate_token(&forged).is_err());
        let mut truncated = token.clone();
        truncated.pop();
        assert!(auth.validate_token(&truncated).is_err());
        // Failures are not kept: refused again, checked again.
        let checks = auth.signature_checks();
        assert!(auth.validate_token(&forged).is_err());
        assert_eq!(auth.signature_checks(), checks + 1);
    }

    #[test]
    fn a_token_past_its_expiry_is_never_answered_from_the_verified_tokens() {
        let (_dir, demo) = issuer();
        let auth = authenticator(&demo);
        let now = chrono::Utc::now().timestamp();
        // Expired 5 s ago: still inside the 30 s leeway of the full check, so accepted, but
        // checked in full every time.
        let token = demo
            .mint_claims(serde_json::json!({
                "iss": demo.issuer, "aud": demo.audience, "sub": "p1", "tenant": demo.tenant,
                "roles": ["practitioner"], "exp": now - 5,
            }))
            .unwrap();
        auth.validate_token(&token).unwrap();
        auth.validate_token(&token).unwrap();
        assert_eq!(auth.signature_checks(), 2);
        // Expired beyond the leeway: refused.
        let old = demo
            .mint_claims(serde_json::json!({
                "iss": demo.issuer, "aud": demo.audience, "sub": "p1", "tenant": demo.tenant,
                "roles": ["practitioner"], "exp": now - 120,
            }))
            .unwrap();
        assert!(auth.validate_token(&old).is_err());
        // And an entry whose expiry has passed is not used.
        let digest: [u8; 32] = Sha256::digest(b"any").into();
        let p = Principal::Service { name: "x".into() };
        auth.verified.put(digest, &p, now + 10, 0, now);
        assert_eq!(auth.verified.get(&digest, now), Some(p));
        assert_eq!(auth.verified.get(&digest, now + 10), None);
    }

    #[test]
    fn new_keys_from_the_issuer_make_every_verified_token_checked_again() {
        let (_dir, demo) = issuer();
        let auth = authenticator(&demo);
        let token = demo.mint("p1", &["practitioner"], "school", 600).unwrap();
        auth.validate_token(&token).unwrap();
        auth.validate_token(&token).unwrap();
        assert_eq!(auth.signature_checks(), 1);
        let held = auth.issuers.get(&demo.issuer).unwrap();
        // The same keys fetched again change nothing.
        auth.replace_keys(held, demo.jwks());
        auth.validate_token(&token).unwrap();
        assert_eq!(auth.signature_checks(), 1);
        // The issuer rotated its key away: the token it signed is refused, not answered from
        // the verified tokens.
        let (_dir2, rotated) = issuer();
        auth.replace_keys(held, rotated.jwks());
        assert!(auth.validate_token(&token).is_err());
        assert_eq!(auth.signature_checks(), 2);
    }

    #[test]
    fn the_verified_tokens_stay_bounded() {
        let v = Verified::default();
        let now = 1_000;
        let p = Principal::Service { name: "x".into() };
        for i in 0..(VERIFIED_MAX + 10) {
            let digest: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            v.put(digest, &p, now + 60, 0, now);
        }
        let held = v.entries.lock().unwrap().len();
        assert!(held <= VERIFIED_MAX, "{held} held");
        let last: [u8; 32] = Sha256::digest((VERIFIED_MAX + 9).to_le_bytes()).into();
        assert_eq!(v.get(&last, now), Some(p));
    }
}
