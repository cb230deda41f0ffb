//! The local development token issuer for demo mode: an ES256 key kept in the data dir, so the
//! demo and `earlyhelp token` work out of the box. Refused outside demo mode.
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::JwkSet};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use std::path::Path;

pub const DEMO_TENANT: &str = "demo";
pub const DEMO_ISSUER: &str = "urn:earlyhelp:demo-issuer";
pub const DEMO_AUDIENCE: &str = "earlyhelp";

pub struct DemoIssuer {
    pub tenant: String,
    pub issuer: String,
    pub audience: String,
    key: SigningKey,
}

impl DemoIssuer {
    /// Loads the key from `dir/demo-issuer.pem`, creating it the first time.
    pub fn load_or_create(dir: &Path) -> Result<Self, String> {
        let path = dir.join("demo-issuer.pem");
        let key = if path.exists() {
            let pem =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            SigningKey::from_pkcs8_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let key = loop {
                let bytes: [u8; 32] = rand::random();
                if let Ok(k) = SigningKey::from_bytes(&bytes.into()) {
                    break k;
                }
            };
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| e.to_string())?;
            std::fs::write(&path, pem.as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            key
        };
        Ok(Self {
            tenant: DEMO_TENANT.into(),
            issuer: DEMO_ISSUER.into(),
            audience: DEMO_AUDIENCE.into(),
            key,
        })
    }

    /// The key id: a thumbprint of the public key, so rotated keys differ.
    pub fn kid(&self) -> String {
        use sha2::Digest;
        let point = self.key.verifying_key().to_encoded_point(false);
        hex::encode(&sha2::Sha256::digest(point.as_bytes())[..8])
    }

    /// The public key as a JWKS.
    pub fn jwks(&self) -> JwkSet {
        let point = self.key.verifying_key().to_encoded_point(false);
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let x = point.x().map(|x| b64(x)).unwrap_or_default();
        let y = point.y().map(|y| b64(y)).unwrap_or_default();
        let doc = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": self.kid(), "alg": "ES256", "use": "sig"
        }]});
        serde_json::from_value(doc).unwrap_or(JwkSet { keys: vec![] })
    }

    /// A token for a demo practitioner, valid for `ttl_secs`.
    pub fn mint(
        &self,
        subject: &str,
        roles: &[&str],
        agency: &str,
        ttl_secs: i64,
    ) -> Result<String, String> {
        self.mint_claims(serde_json::json!({
            "iss": self.issuer, "aud": self.audience, "sub": subject, "tenant": self.tenant,
            "roles": roles, "agency": agency,
            "iat": chrono::Utc::now().timestamp(),
            "nbf": chrono::Utc::now().timestamp() - 5,
            "exp": chrono::Utc::now().timestamp() + ttl_secs,
        }))
    }

    /// A token with exactly these claims (tests use it to craft bad ones).
    pub fn mint_claims(&self, claims: serde_json::Value) -> Result<String, String> {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?;
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid());
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
    }
}
