//! Between the wire (`earlyhelp.consent.v1`) and the domain, with field violations for what is wrong.
use crate::domain::overrides::Override;
use crate::domain::sharing::{SharingDecision, SharingRequest};
use crate::domain::{
    Agency, Category, ConsentRecord, Method, Purpose, Restriction, Violation, parse_date,
    parse_list,
};
use crate::store::{StoredRecord, StoredWithdrawal};
use chrono::{DateTime, Utc};
use eh_proto::consent::v1 as pb;

pub const MAX_GIVEN_BY: usize = 200;
pub const MAX_EVIDENCE_REF: usize = 500;

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Restrictions as the referral contract spells them; violations under `field[i]`.
pub fn restrictions(
    field: &str,
    items: &[pb::Restriction],
    out: &mut Vec<Violation>,
) -> Vec<Restriction> {
    let mut parsed = Vec::new();
    for (i, x) in items.iter().enumerate() {
        let category = Category::parse(&x.category);
        if category.is_none() {
            out.push(Violation::new(
                format!("{field}[{i}].category"),
                format!(
                    "unknown category {:?}; expected one of {}",
                    x.category,
                    Category::spellings()
                ),
            ));
        }
        let agency = match x.agency.as_deref() {
            None => Some(None),
            Some(a) => match Agency::parse(a) {
                Some(a) => Some(Some(a)),
                None => {
                    out.push(Violation::new(
                        format!("{field}[{i}].agency"),
                        format!(
                            "unknown agency {a:?}; expected one of {}",
                            Agency::spellings()
                        ),
                    ));
                    None
                }
            },
        };
        if let (Some(category), Some(agency)) = (category, agency) {
            parsed.push(Restriction { category, agency });
        }
    }
    parsed
}

/// A violation for each of `fields` (name, value) holding a NUL character, which no text column
/// can store: refused as bad input rather than failing in the database.
pub fn nul_free(fields: &[(&str, &str)]) -> Vec<Violation> {
    fields
        .iter()
        .filter(|(_, value)| value.contains('\0'))
        .map(|(name, _)| Violation::new(*name, "must not contain a NUL character"))
        .collect()
}

/// A new record from `RecordConsent`: validated (every violation reported, fields under `consent.`).
pub fn new_record(
    c: &pb::Consent,
    id: String,
    now: DateTime<Utc>,
) -> Result<ConsentRecord, Vec<Violation>> {
    let mut v = nul_free(&[
        ("consent.family_id", &c.family_id),
        ("consent.person_id", &c.person_id),
        ("consent.given_by", &c.given_by),
        ("consent.giver_relationship", &c.giver_relationship),
        ("consent.evidence_ref", &c.evidence_ref),
    ]);
    let f = |name: &str| format!("consent.{name}");
    if c.family_id.trim().is_empty() {
        v.push(Violation::new(f("family_id"), "required"));
    }
    if c.given_by.trim().is_empty() {
        v.push(Violation::new(f("given_by"), "required"));
    } else if c.given_by.chars().count() > MAX_GIVEN_BY {
        v.push(Violation::new(
            f("given_by"),
            format!("at most {MAX_GIVEN_BY} characters"),
        ));
    }
    if c.evidence_ref.chars().count() > MAX_EVIDENCE_REF {
        v.push(Violation::new(
            f("evidence_ref"),
            format!("at most {MAX_EVIDENCE_REF} characters"),
        ));
    }
    let method = Method::parse(&c.method);
    if method.is_none() {
        v.push(Violation::new(
            f("method"),
            format!(
                "unknown method {:?}; expected one of {}",
                c.method,
                Method::spellings()
            ),
        ));
    }
    let given_on = parse_date(&c.given_on);
    match given_on {
        None => v.push(Violation::new(
            f("given_on"),
            "a date YYYY-MM-DD is required",
        )),
        Some(d) if d > now.date_naive() => {
            v.push(Violation::new(f("given_on"), "cannot be in the future"))
        }
        Some(_) => {}
    }
    let expires_on = match c.expires_on.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match parse_date(s) {
            None => {
                v.push(Violation::new(f("expires_on"), "a date YYYY-MM-DD"));
                None
            }
            Some(e) => {
                if given_on.is_some_and(|g| e < g) {
                    v.push(Violation::new(f("expires_on"), "before given_on"));
                }
                Some(e)
            }
        },
    };
    let mut purposes = parse_list(
        &f("purposes"),
        &c.purposes,
        Purpose::parse,
        &Purpose::spellings(),
        &mut v,
    );
    purposes.sort();
    purposes.dedup();
    if c.purposes.is_empty() {
        v.push(Violation::new(
            f("purposes"),
            "at least one purpose is required",
        ));
    }
    let restrictions = restrictions(&f("restrictions"), &c.restrictions, &mut v);
    let person_id = opt(&c.person_id);
    if c.competent_young_person && person_id.is_none() {
        v.push(Violation::new(
            f("person_id"),
            "a competent young person consents for themselves: name the person",
        ));
    }
    match (v.is_empty(), given_on) {
        (true, Some(given_on)) => Ok(ConsentRecord {
            id,
            family_id: c.family_id.trim().to_string(),
            person_id,
            given_by: c.given_by.trim().to_string(),
            giver_relationship: c.giver_relationship.trim().to_string(),
            parental_responsibility: c.parental_responsibility,
            competent_young_person: c.competent_young_person,
            method,
            evidence_ref: c.evidence_ref.trim().to_string(),
            given_on,
            expires_on,
            purposes,
            restrictions,
            recorded_at: now,
            withdrawn_at: None,
        }),
        _ => Err(v),
    }
}

/// A `CheckSharing` question.
pub fn sharing_request(r: &pb::CheckSharingRequest) -> Result<SharingRequest, Vec<Violation>> {
    let mut v = Vec::new();
    if r.family_id.trim().is_empty() {
        v.push(Violation::new("family_id", "required"));
    }
    let agency = Agency::parse(&r.agency);
    if agency.is_none() {
        v.push(Violation::new(
            "agency",
            format!(
                "unknown agency {:?}; expected one of {}",
                r.agency,
                Agency::spellings()
            ),
        ));
    }
    let category = Category::parse(&r.category);
    if category.is_none() {
        v.push(Violation::new(
            "category",
            format!(
                "unknown category {:?}; expected one of {}",
                r.category,
                Category::spellings()
            ),
        ));
    }
    let purpose = Purpose::parse(&r.purpose);
    if purpose.is_none() {
        v.push(Violation::new(
            "purpose",
            format!(
                "unknown purpose {:?}; expected one of {}",
                r.purpose,
                Purpose::spellings()
            ),
        ));
    }
    match (agency, category, purpose) {
        (Some(agency), Some(category), Some(purpose)) if v.is_empty() => Ok(SharingRequest {
            family_id: r.family_id.trim().to_string(),
            person_id: opt(&r.person_id),
            agency,
            category,
            purpose,
        }),
        _ => Err(v),
    }
}

fn restriction_pb(x: &Restriction) -> pb::Restriction {
    pb::Restriction {
        category: x.category.as_str().into(),
        agency: x.agency.map(|a| a.as_str().into()),
    }
}

pub fn withdrawal_pb(w: &StoredWithdrawal, newly: bool) -> pb::Withdrawal {
    pb::Withdrawal {
        withdrawal_id: w.id.clone(),
        record_id: w.record_id.clone(),
        withdrawn_at: w.withdrawn_at.to_rfc3339(),
        withdrawn_by: w.withdrawn_by.clone(),
        reason: w.reason.clone(),
        newly_withdrawn: newly,
    }
}

pub fn record_pb(s: &StoredRecord) -> pb::ConsentRecord {
    let r = &s.record;
    pb::ConsentRecord {
        record_id: r.id.clone(),
        tenant: s.tenant.clone(),
        consent: Some(pb::Consent {
            family_id: r.family_id.clone(),
            person_id: r.person_id.clone().unwrap_or_default(),
            given_by: r.given_by.clone(),
            giver_relationship: r.giver_relationship.clone(),
            parental_responsibility: r.parental_responsibility,
            competent_young_person: r.competent_young_person,
            method: r.method.map(|m| m.as_str().to_string()).unwrap_or_default(),
            evidence_ref: r.evidence_ref.clone(),
            given_on: r.given_on.to_string(),
            expires_on: r.expires_on.map(|d| d.to_string()),
            purposes: r.purposes.iter().map(|p| p.as_str().to_string()).collect(),
            restrictions: r.restrictions.iter().map(restriction_pb).collect(),
        }),
        recorded_at: r.recorded_at.to_rfc3339(),
        recorded_by: s.recorded_by.clone(),
        source: s.source.clone(),
        withdrawal: s.withdrawal.as_ref().map(|w| withdrawal_pb(w, false)),
    }
}

pub fn override_pb(tenant: &str, o: &Override) -> pb::SafeguardingOverride {
    pb::SafeguardingOverride {
        override_id: o.id.clone(),
        tenant: tenant.into(),
        family_id: o.family_id.clone(),
        person_id: o.person_id.clone().unwrap_or_default(),
        requested_by: o.requested_by.clone(),
        authorised_by: o.authorised_by.clone(),
        legal_basis: o.legal_basis.clone(),
        reasoning: o.reasoning.clone(),
        agencies: o.agencies.iter().map(|a| a.as_str().to_string()).collect(),
        categories: o
            .categories
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
        purposes: o.purposes.iter().map(|p| p.as_str().to_string()).collect(),
        granted_at: o.granted_at.to_rfc3339(),
        expires_at: o.expires_at.to_rfc3339(),
    }
}

pub fn decision_pb(d: &SharingDecision, id: &str, at: DateTime<Utc>) -> pb::SharingDecision {
    pb::SharingDecision {
        allowed: d.allowed,
        reason: d.reason.clone(),
        record_id: d.record_id.clone().unwrap_or_default(),
        restriction: d.restriction.as_ref().map(restriction_pb),
        override_id: d.override_id.clone().unwrap_or_default(),
        decision_id: id.into(),
        decided_at: at.to_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_character_is_a_violation_named_by_its_field_never_quoted() {
        let c = pb::Consent {
            family_id: "f-1".into(),
            given_by: "Dana\0Marsh".into(),
            evidence_ref: "ref\0".into(),
            ..Default::default()
        };
        let v = new_record(&c, "id".into(), Utc::now()).expect_err("refused");
        let nul: Vec<_> = v
            .iter()
            .filter(|v| v.reason.contains("NUL"))
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(nul, ["consent.given_by", "consent.evidence_ref"]);
        assert!(v.iter().all(|v| !v.reason.contains("Dana")));
        assert!(nul_free(&[("a", "plain"), ("b", "")]).is_empty());
    }
}
