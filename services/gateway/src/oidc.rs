//! Sign-in with a council's identity provider: OpenID Connect authorization code flow with PKCE
//! (S256), the gateway a confidential client of each council's issuer
//! (`tenants.<id>.oidc.client`). The provider's discovery document is read at the first sign-in
//! (and again after an hour), so a provider that is down when the gateway starts only delays
//! sign-in. The ID token the provider returns is checked here (signature under the provider's
//! keys, issuer, audience = the client id, expiry, and the nonce this sign-in sent) and then by
//! the platform's own [`eh_auth::Authenticator`] exactly as every service checks it, so a person
//! signed in is one the services accept, with the roles and agency of the token's claims.
use eh_platform::Settings;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreTokenResponse,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, LogoutRequest, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// How long a discovery document is used before it is read again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// One council's client registration.
#[derive(Clone)]
pub struct Registration {
    pub tenant: String,
    /// The council's name, for the sign-in page.
    pub name: String,
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    redirect_url: String,
    scopes: Vec<String>,
    post_logout_redirect_url: Option<String>,
}

impl Registration {
    /// The issuer's origin (`https://idp.example`): where a sign-out form may lead.
    pub fn origin(&self) -> Option<String> {
        let url = openidconnect::url::Url::parse(&self.issuer).ok()?;
        Some(url.origin().ascii_serialization())
    }
}

struct Discovered {
    client: Client,
    end_session: Option<openidconnect::EndSessionUrl>,
    at: Instant,
}

/// What a sign-in under way keeps server-side (in its pending session) until the provider
/// sends the browser back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// The console page to return to (a path of the console, never another site).
    pub return_to: String,
}

/// A finished sign-in.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id_token: String,
    pub subject: String,
    pub expires: chrono::DateTime<chrono::Utc>,
    /// Where to send the browser to sign out at the provider as well (RP-initiated logout),
    /// when the provider's discovery names an `end_session_endpoint`.
    pub end_session_url: Option<String>,
}

/// Why a sign-in failed: said to the person in general terms, logged with the detail.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("this council has no sign-in configured")]
    UnknownTenant,
    #[error("the identity provider cannot be reached: {0}")]
    Unreachable(String),
    #[error("the sign-in answer does not belong to this sign-in (state)")]
    BadState,
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the identity provider's ID token was not accepted: {0}")]
    BadToken(String),
}

/// Every council's registration, and the providers discovered so far.
pub struct Oidc {
    http: openidconnect::reqwest::Client,
    registrations: BTreeMap<String, Registration>,
    discovered: tokio::sync::Mutex<BTreeMap<String, Arc<Discovered>>>,
}

impl Oidc {
    /// The registrations of every council with `oidc.client` set; a client secret from its file.
    ///
    /// # Errors
    /// A registration that cannot be used, naming its key.
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        let mut registrations = BTreeMap::new();
        for (tenant, t) in &settings.tenants {
            let Some(oidc) = &t.oidc else { continue };
            let Some(c) = &oidc.client else { continue };
            let key = format!("tenants.{tenant}.oidc.client");
            let client_secret = match (&c.client_secret, &c.client_secret_file) {
                (Some(s), _) if !s.expose_secret().is_empty() => {
                    Some(s.expose_secret().to_string())
                }
                (_, Some(path)) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("{key}.client_secret_file {path}: {e}"))?
                        .trim()
                        .to_string(),
                ),
                _ => None,
            };
            if c.client_id.is_empty() {
                return Err(format!("{key}.client_id: must be set"));
            }
            RedirectUrl::new(c.redirect_url.clone())
                .map_err(|e| format!("{key}.redirect_url: {e}"))?;
            IssuerUrl::new(oidc.issuer.clone())
                .map_err(|e| format!("tenants.{tenant}.oidc.issuer: {e}"))?;
            if let Some(u) = &c.post_logout_redirect_url {
                PostLogoutRedirectUrl::new(u.clone())
                    .map_err(|e| format!("{key}.post_logout_redirect_url: {e}"))?;
            }
            registrations.insert(
                tenant.clone(),
                Registration {
                    tenant: tenant.clone(),
                    name: t.name.clone(),
                    issuer: oidc.issuer.clone(),
                    client_id: c.client_id.clone(),
                    client_secret,
                    redirect_url: c.redirect_url.clone(),
                    scopes: c.scopes.clone(),
                    post_logout_redirect_url: c.post_logout_redirect_url.clone(),
                },
            );
        }
        let http = openidconnect::reqwest::Client::builder()
            // Following redirects would let a provider's answer send the gateway anywhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("the HTTP client for sign-in: {e}"))?;
        Ok(Self {
            http,
            registrations,
            discovered: tokio::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// The councils whose staff can sign in, by id.
    pub fn registrations(&self) -> impl Iterator<Item = &Registration> {
        self.registrations.values()
    }

    pub fn registration(&self, tenant: &str) -> Option<&Registration> {
        self.registrations.get(tenant)
    }

    async fn discover(&self, tenant: &str) -> Result<Arc<Discovered>, OidcError> {
        let reg = self
            .registrations
            .get(tenant)
            .ok_or(OidcError::UnknownTenant)?;
        let mut held = self.discovered.lock().await;
        if let Some(d) = held.get(tenant)
            && d.at.elapsed() < DISCOVERY_TTL
        {
            return Ok(d.clone());
        }
        let issuer = IssuerUrl::new(reg.issuer.clone())
            .map_err(|e| OidcError::Unreachable(e.to_string()))?;
        let meta = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Unreachable(error_chain(&e)))?;
        let end_session = meta.additional_metadata().end_session_endpoint.clone();
        let redirect = RedirectUrl::new(reg.redirect_url.clone())
            .map_err(|e| OidcError::Unreachable(e.to_string()))?;
        let client = CoreClient::from_provider_metadata(
            meta,
            ClientId::new(reg.client_id.clone()),
            reg.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        let d = Arc::new(Discovered {
            client,
            end_session,
            at: Instant::now(),
        });
        held.insert(tenant.to_string(), d.clone());
        Ok(d)
    }

    /// Starts a sign-in: the provider's authorization URL to send the browser to, and what to
    /// keep until it comes back (a fresh state, nonce and PKCE verifier).
    pub async fn begin(
        &self,
        tenant: &str,
        return_to: &str,
    ) -> Result<(String, Pending), OidcError> {
        let reg = self
            .registrations
            .get(tenant)
            .ok_or(OidcError::UnknownTenant)?;
        let d = self.discover(tenant).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = d.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in &reg.scopes {
            if s != "openid" {
                req = req.add_scope(Scope::new(s.clone()));
            }
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        Ok((
            url.to_string(),
            Pending {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                return_to: return_to.to_string(),
            },
        ))
    }

    /// Finishes a sign-in the provider sent back with `state` and `code`: the state must be
    /// this sign-in's, the code is exchanged with this sign-in's PKCE verifier, and the ID token
    /// must carry this sign-in's nonce.
    pub async fn finish(
        &self,
        tenant: &str,
        pending: &Pending,
        state: &str,
        code: &str,
    ) -> Result<Finished, OidcError> {
        if !crate::session::same_secret(state, &pending.state) {
            return Err(OidcError::BadState);
        }
        let reg = self
            .registrations
            .get(tenant)
            .ok_or(OidcError::UnknownTenant)?;
        let d = self.discover(tenant).await?;
        let token: CoreTokenResponse = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Refused(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Refused(error_chain(&e)))?;
        use openidconnect::TokenResponse;
        let id_token = token
            .id_token()
            .ok_or_else(|| OidcError::BadToken("no ID token in the token response".into()))?;
        // The algorithms the platform accepts (crates/auth), no other.
        let verifier = d.client.id_token_verifier().set_allowed_algs([
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ]);
        let claims = id_token
            .claims(&verifier, &Nonce::new(pending.nonce.clone()))
            .map_err(|e| OidcError::BadToken(error_chain(&e)))?;
        let end_session_url = d.end_session.clone().map(|endpoint| {
            let mut req = LogoutRequest::from(endpoint)
                .set_id_token_hint(id_token)
                .set_client_id(ClientId::new(reg.client_id.clone()));
            if let Some(u) = reg
                .post_logout_redirect_url
                .clone()
                .and_then(|u| PostLogoutRedirectUrl::new(u).ok())
            {
                req = req.set_post_logout_redirect_uri(u);
            }
            req.http_get_url().to_string()
        });
        Ok(Finished {
            id_token: id_token.to_string(),
            subject: claims.subject().as_str().to_string(),
            expires: claims.expiration(),
            end_session_url,
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
