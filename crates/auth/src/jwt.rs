//! Token and key validation, and the tonic interceptor that applies it.
use crate::{AuthError, Principal};
use eh_platform::Settings;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

struct Issuer {
    tenant: String,
    audience: String,
    roles_claim: String,
    agency_claim: String,
    keys: JwkSet,
}

/// Validates credentials against every configured tenant.
#[derive(Clone)]
pub struct Authenticator {
    issuers: Arc<HashMap<String, Issuer>>,
    api_keys: Arc<HashMap<String, (String, String)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Authenticator {
    /// From settings: each tenant's OIDC issuer (JWKS read from a file path or `file://` URL) and
    /// API keys; plus the demo issuer when demo mode is on.
    pub fn from_settings(
        settings: &Settings,
        demo: Option<&crate::demo::DemoIssuer>,
    ) -> Result<Self, String> {
        let mut issuers = HashMap::new();
        let mut api_keys = HashMap::new();
        for (tenant, t) in &settings.tenants {
            if let Some(oidc) = &t.oidc {
                let path = oidc
                    .jwks_url
                    .strip_prefix("file://")
                    .unwrap_or(&oidc.jwks_url);
                if path.starts_with("http://") || path.starts_with("https://") {
                    return Err(format!(
                        "tenants.{tenant}.oidc.jwks_url: fetching JWKS over HTTP is not supported yet; \
                         mount the JWKS document as a file and give its path"
                    ));
                }
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("tenants.{tenant}.oidc.jwks_url {path}: {e}"))?;
                let keys: JwkSet = serde_json::from_str(&text).map_err(|e| {
                    format!("tenants.{tenant}.oidc.jwks_url {path}: not a JWKS: {e}")
                })?;
                issuers.insert(
                    oidc.issuer.clone(),
                    Issuer {
                        tenant: tenant.clone(),
                        audience: oidc.audience.clone(),
                        roles_claim: oidc.roles_claim.clone(),
                        agency_claim: oidc.agency_claim.clone(),
                        keys,
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
                    keys: d.jwks(),
                },
            );
        }
        Ok(Self {
            issuers: Arc::new(issuers),
            api_keys: Arc::new(api_keys),
        })
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
    pub fn validate_token(&self, token: &str) -> Result<Principal, AuthError> {
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
        let jwk = match &header.kid {
            Some(kid) => issuer.keys.find(kid),
            None => issuer.keys.keys.first(),
        }
        .ok_or_else(|| AuthError::Invalid("token signed with an unknown key".into()))?;
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| AuthError::Invalid(format!("issuer key: {e}")))?;
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
        let roles = c
            .get(&issuer.roles_claim)
            .and_then(|r| r.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Principal::Person {
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
        })
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
