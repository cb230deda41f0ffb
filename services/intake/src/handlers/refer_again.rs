//! A family needs help again: casework sends `<ns>.<tenant>.intake.cmd.refer_again` when the
//! six-month follow-up check of a closed case says so. Intake makes a new request for support
//! from the case's opening referral — the same children, family members, address and needs —
//! referred by the follow-up check (source `earlyhelp-follow-up`, reference
//! `follow-up:<case_id>`: a command delivered twice is one request), route `front_door`, no
//! consent of its own (the family's consent on record decides, as for any referral; without it
//! casework asks), the council as referrer with no address (nobody is emailed an
//! acknowledgement), no concern text and no significant-harm flag (the follow-up says only that
//! help is needed again). It is then stored and announced exactly as any referral at the front
//! door: casework opens a new case and the front door screens it.
//!
//! This module makes the new request (pure); its command handler is
//! [`super::ReferAgainHandler`].
use serde_json::{Value, json};

pub const CONSUMER: &str = eh_proto::catalogue::INTAKE_REFER_AGAIN.consumer;
/// The source system of requests the follow-up check makes.
pub const SOURCE_SYSTEM: &str = "earlyhelp-follow-up";

/// The new request, from the opening referral's document `previous`.
pub fn again(previous: &Value, case_id: &str, now: chrono::DateTime<chrono::Utc>) -> Value {
    let mut doc = json!({
        "schema": "earlyhelp.referral.v1",
        "source": {"system": SOURCE_SYSTEM, "reference": format!("follow-up:{case_id}")},
        "submitted_at": now.to_rfc3339(),
        "route": "front_door",
        "referrer": {
            "name": "Early Help follow-up check",
            "agency": "social_care",
            "role": format!("six-month follow-up of case {case_id}")
        },
        "children": previous["children"].clone(),
        "needs": previous["needs"].clone(),
        "significant_harm_risk": false,
        "consent": {"obtained": false}
    });
    for key in ["family_members", "address"] {
        if let Some(v) = previous.get(key).filter(|v| !v.is_null()) {
            doc[key] = v.clone();
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::contract;

    #[test]
    fn the_new_request_keeps_the_family_and_asks_consent_again() {
        let previous = json!({
            "schema": "earlyhelp.referral.v1",
            "source": {"system": "school-mis", "reference": "R-1"},
            "submitted_at": "2026-01-05T09:00:00Z",
            "route": "practitioner",
            "referrer": {"name": "Priya Shah", "agency": "education", "email": "priya@school.test"},
            "children": [{"given_name": "Sam", "family_name": "Marsh", "date_of_birth": "2016-04-01"}],
            "family_members": [{"given_name": "Dana", "family_name": "Marsh", "relationship": "mother"}],
            "address": {"postcode": "DM1 1AA"},
            "needs": ["education", "mental_health"],
            "concerns": "private words",
            "significant_harm_risk": false,
            "consent": {"obtained": true, "method": "signed", "date": "2026-01-04"}
        });
        let now = "2026-12-01T10:00:00Z".parse().unwrap();
        let doc = again(&previous, "case-9", now);
        assert_eq!(
            doc["source"],
            json!({"system": SOURCE_SYSTEM, "reference": "follow-up:case-9"})
        );
        assert_eq!(doc["route"], "front_door");
        assert_eq!(doc["consent"], json!({"obtained": false}));
        assert_eq!(doc["children"], previous["children"]);
        assert_eq!(doc["family_members"], previous["family_members"]);
        assert_eq!(doc["needs"], previous["needs"]);
        assert!(doc.get("concerns").is_none(), "no concern text is carried");
        assert!(
            doc["referrer"].get("email").is_none(),
            "nobody is emailed an acknowledgement"
        );
        contract::validate(&doc).expect("a valid referral");
    }
}
