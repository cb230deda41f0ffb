//! Outbound webhooks: an upstream system that configured an endpoint
//! (`gateway.webhooks.endpoints`: council, system, URL, `whsec_` secret) is told each time a case
//! its own referral opened reaches a new public status — `received`, `screened`, `allocated`,
//! `stepped_up`, `closed` ([`crate::api::cases::PublicStatus`]) — with the case's and referral's
//! ids, its own source reference and the status: never the family's details.
//!
//! Nothing lost, nothing twice: casework's `case_state_changed` is consumed durably
//! ([`handler`]); the delivery is stored in the gateway's database in the same transaction as the
//! message's inbox entry (its id is the event's, so a redelivered event adds nothing), and only
//! then is the event acknowledged. The [`sender`] posts each stored delivery, signed per the
//! Standard Webhooks convention ([`sign`]), one system's in the order they happened; a failure is
//! retried with the platform's one backoff ([`eh_platform::Backoff`]) and after
//! `gateway.webhooks.max_attempts` the delivery is dead-lettered: kept, marked `dead` with the
//! last reason, logged. A receiver may get a delivery more than once (an answer lost on the way
//! back): it recognises a repeat by its `webhook-id`, as the convention says.
pub mod handler;
pub mod sender;
pub mod store;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// `gateway.webhooks`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// The backoff between attempts: from this ...
    pub retry_base_ms: u64,
    /// ... doubling up to this.
    pub retry_max_ms: u64,
    /// How long a receiver may take to answer.
    pub timeout_ms: u64,
    /// How often the sender looks for due deliveries when not woken.
    pub poll_ms: u64,
    pub endpoints: Vec<WebhookEndpoint>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            retry_base_ms: 1_000,
            retry_max_ms: 600_000,
            timeout_ms: 10_000,
            poll_ms: 1_000,
            endpoints: Vec::new(),
        }
    }
}

/// One upstream system's endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// The council (tenant id).
    pub tenant: String,
    /// The upstream system: its API key's name, the `source.system` of its referrals.
    pub system: String,
    /// Where status updates are posted (`https://`; plain `http://` only on a loopback address).
    pub url: String,
    /// The signing secret, `whsec_` and base64 (24 to 64 bytes); or read from `secret_file`.
    #[serde(default, serialize_with = "masked")]
    pub secret: String,
    #[serde(default)]
    pub secret_file: String,
}

fn masked<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if v.is_empty() { "" } else { "********" })
}

/// An endpoint as the sender uses it: its secret's key bytes read.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub tenant: String,
    pub system: String,
    pub url: String,
    pub key: Vec<u8>,
}

impl WebhookSettings {
    /// The endpoints, their secrets read and checked.
    ///
    /// # Errors
    /// A wrong value, naming its key (`gateway.webhooks.endpoints[0].secret`).
    pub fn endpoints(&self, settings: &eh_platform::Settings) -> Result<Vec<Endpoint>, String> {
        let mut out: Vec<Endpoint> = Vec::new();
        if self.max_attempts == 0 {
            return Err("gateway.webhooks.max_attempts: must be at least 1".into());
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err(
                "gateway.webhooks.retry_base_ms: at least 1, and retry_max_ms at least it".into(),
            );
        }
        if self.timeout_ms == 0 || self.poll_ms == 0 {
            return Err("gateway.webhooks.timeout_ms and poll_ms: at least 1".into());
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let key = |k: &str| format!("gateway.webhooks.endpoints[{i}].{k}");
            let Some(t) = settings.tenants.get(&e.tenant) else {
                return Err(format!("{}: no such council", key("tenant")));
            };
            if !t.api_keys.iter().any(|k| k.name == e.system) {
                return Err(format!(
                    "{}: the council has no API key of this name",
                    key("system")
                ));
            }
            if let Some(rest) = e.url.strip_prefix("http://") {
                let host = rest.split(['/', ':']).next().unwrap_or_default();
                if !matches!(host, "127.0.0.1" | "localhost" | "[") {
                    return Err(format!(
                        "{}: must be https:// (plain http only on a loopback address)",
                        key("url")
                    ));
                }
            } else if !e.url.starts_with("https://") {
                return Err(format!("{}: must be an https:// URL", key("url")));
            }
            let secret = if e.secret_file.is_empty() {
                e.secret.clone()
            } else {
                std::fs::read_to_string(&e.secret_file)
                    .map_err(|err| format!("{}: {err}", key("secret_file")))?
                    .trim()
                    .to_string()
            };
            let bytes = secret_key(&secret).map_err(|m| format!("{}: {m}", key("secret")))?;
            if out
                .iter()
                .any(|o| o.tenant == e.tenant && o.system == e.system)
            {
                return Err(format!(
                    "{}: a second endpoint for this council's system",
                    key("system")
                ));
            }
            out.push(Endpoint {
                tenant: e.tenant.clone(),
                system: e.system.clone(),
                url: e.url.clone(),
                key: bytes,
            });
        }
        Ok(out)
    }
}

/// The key bytes of a `whsec_<base64>` secret.
///
/// # Errors
/// Not `whsec_` and base64 of 24 to 64 bytes.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, &'static str> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("must be `whsec_` followed by base64")?;
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| "must be `whsec_` followed by base64")?;
    if !(24..=64).contains(&bytes.len()) {
        return Err("must be 24 to 64 bytes (base64 after `whsec_`)");
    }
    Ok(bytes)
}

/// The `webhook-signature` of a delivery: `v1,` and the base64 of
/// HMAC-SHA256(key, `<webhook-id>.<webhook-timestamp>.<body>`).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The event type of a status update.
pub const STATUS_CHANGED: &str = "case.status_changed";

/// A status update as posted to the system's endpoint (the convention's `type`, `timestamp`,
/// `data`): ids, the system's own reference and the status only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaseStatusChanged {
    /// `case.status_changed`.
    #[serde(rename = "type")]
    #[schema(example = "case.status_changed")]
    pub kind: String,
    /// When the case reached the status (RFC 3339).
    pub timestamp: String,
    pub data: CaseStatusChangedData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaseStatusChangedData {
    pub case_id: String,
    /// The referral that opened the case (the system's own).
    pub referral_id: String,
    /// The system's own reference of that referral (`source.reference`).
    pub source_reference: String,
    pub status: crate::api::cases::PublicStatus,
}

/// A status update's body.
pub fn payload(
    case_id: &str,
    referral_id: &str,
    source_reference: &str,
    status: crate::api::cases::PublicStatus,
    at: &str,
) -> serde_json::Value {
    serde_json::to_value(CaseStatusChanged {
        kind: STATUS_CHANGED.into(),
        timestamp: at.into(),
        data: CaseStatusChangedData {
            case_id: case_id.into(),
            referral_id: referral_id.into(),
            source_reference: source_reference.into(),
            status,
        },
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference implementations' own example.
    #[test]
    fn signs_as_the_standard_webhooks_reference_does() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_whsec_base64_of_24_to_64_bytes() {
        assert!(secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(secret_key("whsec_not base64!").is_err());
        assert!(secret_key(&format!("whsec_{}", STANDARD.encode([1u8; 8]))).is_err());
    }
}
