//! What a provider may see of a family: the family's consent decides. Before a need is shown in a
//! provider's view of an offer, consent is asked (its `CheckSharingAll`, purpose `sharing`, as the
//! service's agency, with the provider's own credential, so consent records who asked) about the
//! need's information category. A need consent does not allow — or that cannot be asked about
//! (consent unreachable, no answer in time) — is left out, and the offer says how many were left
//! out and why, never which.
use crate::domain;
use crate::handlers::ConsentClient;
use eh_proto::allocation::v1 as pb;
use tonic::metadata::MetadataMap;

/// Asks consent about the categories of one caller's view, each (family, agency, category) once.
pub struct Asker(eh_service::consent::Asker);

impl Asker {
    /// Asks as the caller whose request carried `metadata` (its `authorization`).
    pub fn new(consent: ConsentClient, metadata: &MetadataMap) -> Self {
        Self(eh_service::consent::Asker::new(consent, metadata))
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
        // Every category in one question to consent (`CheckSharingAll`).
        let mut categories: Vec<String> = Vec::new();
        for need in needs {
            let c = domain::need_category(need).to_string();
            if !categories.contains(&c) {
                categories.push(c);
            }
        }
        let answers = self.0.ask_all(tenant, family_id, agency, &categories).await;
        for need in needs {
            match answers.get(domain::need_category(need)).cloned().flatten() {
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
