//! What a provider may see of a family: the family's consent decides. Before a need is shown in a
//! provider's view of an offer, consent is asked (its `CheckSharing`, purpose `sharing`, as the
//! service's agency, with the provider's own credential, so consent records who asked) about the
//! need's information category. A need consent does not allow — or that cannot be asked about
//! (consent unreachable, no answer in time) — is left out, and the offer says how many were left
//! out and why, never which.
use crate::domain;
use crate::handlers::ConsentClient;
use eh_proto::allocation::v1 as pb;
use eh_proto::consent::v1::CheckSharingRequest;
use std::collections::HashMap;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

/// The purpose consent is asked for.
pub const PURPOSE: &str = "sharing";

/// Consent's answer about one category: allowed, and the decision's id; `None` when it could not
/// be asked.
type Answer = Option<(bool, String)>;

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

    async fn ask(&mut self, tenant: &str, family_id: &str, agency: &str, category: &str) -> Answer {
        let key = (
            family_id.to_string(),
            agency.to_string(),
            category.to_string(),
        );
        if let Some(a) = self.answers.get(&key) {
            return a.clone();
        }
        let mut req = tonic::Request::new(CheckSharingRequest {
            tenant: tenant.into(),
            family_id: family_id.into(),
            person_id: String::new(),
            agency: agency.into(),
            category: category.into(),
            purpose: PURPOSE.into(),
        });
        if let Some(c) = &self.credential {
            req.metadata_mut().insert("authorization", c.clone());
        }
        let answer = match self.consent.check_sharing(req).await {
            Ok(r) => {
                let d = r.into_inner();
                Some((d.allowed, d.decision_id))
            }
            Err(e) => {
                // The category is not logged: beside the family id it would say what the family needs.
                tracing::warn!(tenant, family_id, code = ?e.code(), "consent could not be asked; what it was about is withheld");
                None
            }
        };
        self.answers.insert(key, answer.clone());
        answer
    }

    /// The needs of `family_id` a service of `agency` may see, and what was withheld.
    pub async fn needs(
        &mut self,
        tenant: &str,
        family_id: &str,
        agency: &str,
        needs: &[String],
    ) -> (Vec<String>, Vec<pb::Withheld>) {
        let mut shown = Vec::new();
        let (mut refused, mut unasked) = (0usize, 0usize);
        let mut decisions = Vec::new();
        for need in needs {
            match self
                .ask(tenant, family_id, agency, domain::need_category(need))
                .await
            {
                Some((true, _)) => shown.push(need.clone()),
                Some((false, id)) => {
                    refused += 1;
                    if !decisions.contains(&id) {
                        decisions.push(id);
                    }
                }
                None => unasked += 1,
            }
        }
        let count = |n: usize| {
            if n == 1 {
                "1 of the family's needs".to_string()
            } else {
                format!("{n} of the family's needs")
            }
        };
        let mut withheld = Vec::new();
        if refused > 0 {
            withheld.push(pb::Withheld {
                what: count(refused),
                reason: format!(
                    "the family's consent does not allow sharing this information with a {agency} agency"
                ),
                decision_ids: decisions,
            });
        }
        if unasked > 0 {
            withheld.push(pb::Withheld {
                what: count(unasked),
                reason: "the family's consent could not be checked just now; ask again later"
                    .into(),
                decision_ids: Vec::new(),
            });
        }
        (shown, withheld)
    }
}
