//! Asking consent what may be shown. A service that shows a family's information to another
//! agency asks consent's `CheckSharing` (purpose `sharing`) about each information category first,
//! with the reader's own credential, so consent's trail records who asked. Consent's gRPC API is
//! at the service's `<section>.consent_url` (empty: this process's own listener, where consent runs
//! beside it); a question not answered within `<section>.consent_timeout_ms` is treated as not
//! allowed (fail closed).
use eh_proto::consent::v1::CheckSharingAllRequest;
use eh_proto::consent::v1::consent_service_client::ConsentServiceClient;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

/// Consent's gRPC API.
pub type ConsentClient = ConsentServiceClient<tonic::transport::Channel>;

/// The purpose consent is asked for.
pub const PURPOSE: &str = "sharing";

/// The agencies consent knows (its vocabulary); a reader whose agency is none of these is asked
/// about as `other`.
pub const AGENCIES: &[&str] = &[
    "health",
    "education",
    "police",
    "housing",
    "social_care",
    "youth_support",
    "jobcentre",
    "voluntary",
    "other",
];

/// `agency` as consent knows it: itself when it is one of [`AGENCIES`], else `other`.
pub fn consent_agency(agency: &str) -> &str {
    if AGENCIES.contains(&agency) {
        agency
    } else {
        "other"
    }
}

/// A service's top-level section naming where consent is (`allocation`, `assessment`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentSettings {
    /// Consent's gRPC API (`http://consent:50051`); empty: this process's own listener (embedded
    /// and monolithic modes, where consent runs beside the service).
    pub consent_url: String,
    /// Each question's timeout; a question not answered in time withholds what it was about.
    pub consent_timeout_ms: u64,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        Self {
            consent_url: String::new(),
            consent_timeout_ms: 3_000,
        }
    }
}

impl ConsentSettings {
    /// The top-level section `section`, checked.
    ///
    /// # Errors
    /// A wrong value, naming its key (`<section>.consent_url`).
    pub fn from_settings(settings: &eh_platform::Settings, section: &str) -> Result<Self, String> {
        let s: Self = match settings.section(section) {
            None => Self::default(),
            Some(s) => s.read().map_err(|e| e.to_string())?,
        };
        if !s.consent_url.is_empty()
            && !["http://", "https://"]
                .iter()
                .any(|p| s.consent_url.starts_with(p))
        {
            return Err(format!(
                "{section}.consent_url: must be an http:// or https:// URL"
            ));
        }
        if s.consent_timeout_ms == 0 {
            return Err(format!("{section}.consent_timeout_ms: must be at least 1"));
        }
        Ok(s)
    }

    /// Where consent's gRPC API is.
    pub fn endpoint(&self, settings: &eh_platform::Settings) -> String {
        if self.consent_url.is_empty() {
            settings.server.own_grpc_url()
        } else {
            self.consent_url.clone()
        }
    }

    /// A client of consent (connected when first asked).
    ///
    /// # Errors
    /// The URL is not one.
    pub fn client(
        &self,
        settings: &eh_platform::Settings,
        section: &str,
    ) -> Result<ConsentClient, String> {
        let endpoint = self.endpoint(settings);
        let timeout = Duration::from_millis(self.consent_timeout_ms);
        let channel = eh_platform::net::endpoint(endpoint.clone())
            .map_err(|e| format!("{section}.consent_url {endpoint}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        Ok(ConsentServiceClient::new(channel))
    }
}

/// Consent's answer about one category: allowed, and the decision's id; `None` when it could not
/// be asked.
pub type Answer = Option<(bool, String)>;

/// Asks consent about the categories of one caller's view, each (family, agency, category) once.
pub struct Asker {
    consent: ConsentClient,
    credential: Option<AsciiMetadataValue>,
    answers: HashMap<(String, String, String), Answer>,
}

impl Asker {
    /// Asks as the caller whose request carried `metadata` (its `authorization`).
    pub fn new(consent: ConsentClient, metadata: &MetadataMap) -> Self {
        Self {
            consent,
            credential: metadata.get("authorization").cloned(),
            answers: HashMap::new(),
        }
    }

    /// May `agency` see each of `categories` of `family_id`'s information? One round trip for
    /// the categories not asked before (consent's `CheckSharingAll`); every category is answered,
    /// `None` for each when consent could not be asked (withheld: fail closed).
    pub async fn ask_all(
        &mut self,
        tenant: &str,
        family_id: &str,
        agency: &str,
        categories: &[String],
    ) -> std::collections::BTreeMap<String, Answer> {
        let key = |c: &str| (family_id.to_string(), agency.to_string(), c.to_string());
        let mut unasked: Vec<String> = Vec::new();
        for c in categories {
            if !self.answers.contains_key(&key(c)) && !unasked.contains(c) {
                unasked.push(c.clone());
            }
        }
        if !unasked.is_empty() {
            let mut req = tonic::Request::new(CheckSharingAllRequest {
                tenant: tenant.into(),
                family_id: family_id.into(),
                person_id: String::new(),
                agency: agency.into(),
                categories: unasked.clone(),
                purpose: PURPOSE.into(),
            });
            if let Some(c) = &self.credential {
                req.metadata_mut().insert("authorization", c.clone());
            }
            match self.consent.check_sharing_all(req).await {
                Ok(r) => {
                    for d in r.into_inner().decisions {
                        let answer = d.decision.map(|d| (d.allowed, d.decision_id));
                        self.answers.insert(key(&d.category), answer);
                    }
                }
                Err(e) => {
                    // The categories are not logged: beside the family id they would say what
                    // the family needs.
                    tracing::warn!(tenant, family_id, code = ?e.code(), "consent could not be asked; what it was about is withheld");
                }
            }
            // A category consent did not answer is withheld (the next read asks again).
            for c in &unasked {
                self.answers.entry(key(c)).or_insert(None);
            }
        }
        categories
            .iter()
            .map(|c| (c.clone(), self.answers.get(&key(c)).cloned().flatten()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agency_consent_does_not_know_is_asked_about_as_other() {
        assert_eq!(consent_agency("police"), "police");
        assert_eq!(consent_agency("org-123"), "other");
    }
}
