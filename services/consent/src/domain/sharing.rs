//! `decide`: may `agency` see `category` of a family (or person) for `purpose`, now?
use super::overrides::Override;
use super::{Agency, Category, ConsentRecord, Purpose, Restriction};
use chrono::{DateTime, Utc};

/// A question put to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingRequest {
    pub family_id: String,
    /// `None`: about the family as a whole.
    pub person_id: Option<String>,
    pub agency: Agency,
    pub category: Category,
    pub purpose: Purpose,
}

/// The answer, with what decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharingDecision {
    pub allowed: bool,
    pub reason: String,
    /// The record that decided (consent or its refusal), if there was one.
    pub record_id: Option<String>,
    /// The restriction that denied (even when an override then allowed).
    pub restriction: Option<Restriction>,
    /// The override that allowed sharing the consent did not allow.
    pub override_id: Option<String>,
}

/// The record that governs `req` at `now` (see the module docs of [`crate::domain`]).
pub fn governing<'a>(
    records: &'a [ConsentRecord],
    req: &SharingRequest,
    now: DateTime<Utc>,
) -> Option<&'a ConsentRecord> {
    let in_ledger = || {
        records
            .iter()
            .filter(|r| r.family_id == req.family_id && r.recorded_at <= now)
    };
    let latest = |it: &mut dyn Iterator<Item = &'a ConsentRecord>| {
        it.max_by(|a, b| (a.recorded_at, &a.id).cmp(&(b.recorded_at, &b.id)))
    };
    if let Some(person) = &req.person_id
        && let Some(r) = latest(&mut in_ledger().filter(|r| r.person_id.as_ref() == Some(person)))
    {
        return Some(r);
    }
    latest(&mut in_ledger().filter(|r| r.person_id.is_none()))
}

fn consent_only(
    records: &[ConsentRecord],
    req: &SharingRequest,
    now: DateTime<Utc>,
) -> SharingDecision {
    let deny = |reason: String, record: Option<&ConsentRecord>, restriction| SharingDecision {
        allowed: false,
        reason,
        record_id: record.map(|r| r.id.clone()),
        restriction,
        override_id: None,
    };
    let whom = match &req.person_id {
        Some(p) => format!("person {p} of family {}", req.family_id),
        None => format!("family {}", req.family_id),
    };
    let Some(r) = governing(records, req, now) else {
        return deny(format!("no consent recorded for {whom}"), None, None);
    };
    if r.is_withdrawn(now) {
        return deny(
            format!("consent record {} was withdrawn", r.id),
            Some(r),
            None,
        );
    }
    if r.is_expired(now) {
        let until = r.expires_on.map(|d| d.to_string()).unwrap_or_default();
        return deny(
            format!("consent record {} expired after {until}", r.id),
            Some(r),
            None,
        );
    }
    if !r.purposes.contains(&req.purpose) {
        return deny(
            format!(
                "consent record {} does not cover the purpose {}",
                r.id, req.purpose
            ),
            Some(r),
            None,
        );
    }
    if let Some(x) = r
        .restrictions
        .iter()
        .find(|x| x.forbids(req.category, req.agency))
    {
        return deny(
            format!(
                "consent record {} restricts sharing: {x} (asked: {} with {})",
                r.id, req.category, req.agency
            ),
            Some(r),
            Some(*x),
        );
    }
    SharingDecision {
        allowed: true,
        reason: format!(
            "consent record {} (given by {} on {}) allows {} with {} for {}",
            r.id, r.given_by, r.given_on, req.category, req.agency, req.purpose
        ),
        record_id: Some(r.id.clone()),
        restriction: None,
        override_id: None,
    }
}

/// Decides `req` at `now`. Consent first: when it allows, the decision names the record (and no
/// override is used). When it does not, a valid override in scope allows sharing anyway, and the
/// decision names the override, its legal basis, and what the consent said.
pub fn decide(
    records: &[ConsentRecord],
    overrides: &[Override],
    req: &SharingRequest,
    now: DateTime<Utc>,
) -> SharingDecision {
    let by_consent = consent_only(records, req, now);
    if by_consent.allowed {
        return by_consent;
    }
    match overrides
        .iter()
        .filter(|o| o.applies_to(req, now))
        .max_by(|a, b| (a.expires_at, &a.id).cmp(&(b.expires_at, &b.id)))
    {
        Some(o) => SharingDecision {
            allowed: true,
            reason: format!(
                "safeguarding override {} (legal basis: {}; authorised by {}; until {}) allows \
                 sharing without consent; consent alone would deny: {}",
                o.id,
                o.legal_basis,
                o.authorised_by,
                o.expires_at.to_rfc3339(),
                by_consent.reason
            ),
            override_id: Some(o.id.clone()),
            ..by_consent
        },
        None => by_consent,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{Method, parse_date};
    use chrono::TimeZone;

    pub fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
    }

    pub fn record(id: &str, person: Option<&str>, recorded: DateTime<Utc>) -> ConsentRecord {
        ConsentRecord {
            id: id.into(),
            family_id: "fam".into(),
            person_id: person.map(Into::into),
            given_by: "Jo Bloggs".into(),
            giver_relationship: "mother".into(),
            parental_responsibility: true,
            competent_young_person: false,
            method: Some(Method::Signed),
            evidence_ref: "doc-1".into(),
            given_on: recorded.date_naive(),
            expires_on: None,
            purposes: vec![Purpose::Assessment, Purpose::Sharing, Purpose::Contacting],
            restrictions: vec![],
            recorded_at: recorded,
            withdrawn_at: None,
        }
    }

    pub fn ask(
        person: Option<&str>,
        agency: Agency,
        category: Category,
        purpose: Purpose,
    ) -> SharingRequest {
        SharingRequest {
            family_id: "fam".into(),
            person_id: person.map(Into::into),
            agency,
            category,
            purpose,
        }
    }

    fn sharing(agency: Agency, category: Category) -> SharingRequest {
        ask(None, agency, category, Purpose::Sharing)
    }

    #[test]
    fn no_consent_denies() {
        let d = decide(
            &[],
            &[],
            &sharing(Agency::Health, Category::Health),
            at(2, 9),
        );
        assert!(!d.allowed);
        assert!(d.reason.contains("no consent"), "{}", d.reason);
        assert_eq!(d.record_id, None);
    }

    #[test]
    fn consent_without_restrictions_allows_and_names_the_record() {
        let r = record("r1", None, at(1, 9));
        let d = decide(
            &[r],
            &[],
            &sharing(Agency::Police, Category::Finances),
            at(2, 9),
        );
        assert!(d.allowed, "{}", d.reason);
        assert_eq!(d.record_id.as_deref(), Some("r1"));
        assert_eq!(d.override_id, None);
    }

    #[test]
    fn another_familys_consent_does_not_count() {
        let mut r = record("r1", None, at(1, 9));
        r.family_id = "other".into();
        assert!(
            !decide(
                &[r],
                &[],
                &sharing(Agency::Health, Category::Health),
                at(2, 9)
            )
            .allowed
        );
    }

    #[test]
    fn a_record_not_yet_in_the_ledger_does_not_count() {
        let r = record("r1", None, at(3, 9));
        assert!(
            !decide(
                &[r],
                &[],
                &sharing(Agency::Health, Category::Health),
                at(2, 9)
            )
            .allowed
        );
    }

    /// Every restriction shape × every asked (category, agency): denied exactly when the category
    /// meets (equal, or either is `all`) and the agency meets (absent, or equal).
    #[test]
    fn each_restriction_shape_denies_exactly_what_it_should() {
        let mut shapes = Vec::new();
        for &category in Category::ALL {
            shapes.push(Restriction {
                category,
                agency: None,
            });
            for &a in Agency::ALL {
                shapes.push(Restriction {
                    category,
                    agency: Some(a),
                });
            }
        }
        let mut checked = 0;
        for shape in &shapes {
            let mut r = record("r1", None, at(1, 9));
            r.restrictions = vec![*shape];
            let records = [r];
            for &category in Category::ALL {
                for &agency in Agency::ALL {
                    let d = decide(&records, &[], &sharing(agency, category), at(2, 9));
                    let expect_denied = (shape.category == category
                        || shape.category == Category::All
                        || category == Category::All)
                        && shape.agency.is_none_or(|a| a == agency);
                    assert_eq!(
                        d.allowed, !expect_denied,
                        "restriction {shape} asked {category} with {agency}: {}",
                        d.reason
                    );
                    if expect_denied {
                        assert_eq!(d.restriction, Some(*shape));
                        assert_eq!(d.record_id.as_deref(), Some("r1"));
                    } else {
                        assert_eq!(d.restriction, None);
                    }
                    checked += 1;
                }
            }
        }
        // 10 categories × (1 + 9 agencies) shapes × 10 categories × 9 agencies.
        assert_eq!(checked, 10 * 10 * 10 * 9);
    }

    #[test]
    fn concrete_examples_of_restrictions() {
        let mut r = record("r1", None, at(1, 9));
        r.restrictions = vec![
            Restriction {
                category: Category::Health,
                agency: Some(Agency::Police),
            },
            Restriction {
                category: Category::DomesticAbuse,
                agency: None,
            },
        ];
        let rs = [r];
        let ok = |a, c| decide(&rs, &[], &sharing(a, c), at(2, 9)).allowed;
        assert!(!ok(Agency::Police, Category::Health));
        assert!(ok(Agency::Education, Category::Health));
        assert!(ok(Agency::Police, Category::Education));
        assert!(!ok(Agency::Health, Category::DomesticAbuse));
        assert!(!ok(Agency::Voluntary, Category::DomesticAbuse));
        // Asking for everything includes what is restricted.
        assert!(!ok(Agency::Education, Category::All));
    }

    #[test]
    fn withdrawal_takes_effect_at_once_and_is_not_undone_by_an_older_record() {
        let old = record("r0", None, at(1, 8));
        let mut r = record("r1", None, at(1, 9));
        r.withdrawn_at = Some(at(5, 12));
        let rs = [old, r];
        let q = sharing(Agency::Health, Category::Health);
        assert!(decide(&rs, &[], &q, at(5, 11)).allowed);
        let d = decide(&rs, &[], &q, at(5, 12));
        assert!(!d.allowed);
        assert!(d.reason.contains("withdrawn"), "{}", d.reason);
        assert_eq!(d.record_id.as_deref(), Some("r1"));
        // A new record after the withdrawal is new consent.
        let mut rs = rs.to_vec();
        rs.push(record("r2", None, at(6, 9)));
        assert!(decide(&rs, &[], &q, at(6, 10)).allowed);
    }

    #[test]
    fn expiry_is_inclusive_of_the_last_day() {
        let mut r = record("r1", None, at(1, 9));
        r.expires_on = parse_date("2026-03-10");
        let rs = [r];
        let q = sharing(Agency::Health, Category::Health);
        assert!(decide(&rs, &[], &q, at(10, 23)).allowed);
        let d = decide(&rs, &[], &q, at(11, 0));
        assert!(!d.allowed);
        assert!(d.reason.contains("expired"), "{}", d.reason);
    }

    #[test]
    fn purpose_must_be_consented() {
        let mut r = record("r1", None, at(1, 9));
        r.purposes = vec![Purpose::Assessment];
        let rs = [r];
        assert!(
            decide(
                &rs,
                &[],
                &ask(None, Agency::Health, Category::Health, Purpose::Assessment),
                at(2, 9)
            )
            .allowed
        );
        for p in [Purpose::Sharing, Purpose::Contacting] {
            let d = decide(
                &rs,
                &[],
                &ask(None, Agency::Health, Category::Health, p),
                at(2, 9),
            );
            assert!(!d.allowed);
            assert!(d.reason.contains("purpose"), "{}", d.reason);
        }
    }

    #[test]
    fn person_specific_beats_family_wide() {
        // Family-wide consent, newer; the young person's own refusal to share health, older.
        let family = record("fam-wide", None, at(3, 9));
        let mut own = record("own", Some("p1"), at(1, 9));
        own.competent_young_person = true;
        own.restrictions = vec![Restriction {
            category: Category::Health,
            agency: None,
        }];
        let rs = [family, own];
        let health = |p| ask(p, Agency::Education, Category::Health, Purpose::Sharing);
        let d = decide(&rs, &[], &health(Some("p1")), at(4, 9));
        assert!(!d.allowed);
        assert_eq!(d.record_id.as_deref(), Some("own"));
        // Another person, and the family as a whole, fall under the family-wide record.
        let d = decide(&rs, &[], &health(Some("p2")), at(4, 9));
        assert!(d.allowed);
        assert_eq!(d.record_id.as_deref(), Some("fam-wide"));
        assert_eq!(
            decide(&rs, &[], &health(None), at(4, 9))
                .record_id
                .as_deref(),
            Some("fam-wide")
        );
    }

    #[test]
    fn a_young_persons_own_consent_stands_when_the_family_withdraws() {
        let mut family = record("fam-wide", None, at(1, 9));
        family.withdrawn_at = Some(at(2, 9));
        let own = record("own", Some("p1"), at(1, 10));
        let rs = [family, own];
        let q = |p| ask(p, Agency::Health, Category::Health, Purpose::Sharing);
        assert!(decide(&rs, &[], &q(Some("p1")), at(3, 9)).allowed);
        assert!(!decide(&rs, &[], &q(Some("p2")), at(3, 9)).allowed);
    }

    #[test]
    fn the_latest_record_supersedes_older_ones() {
        let mut old = record("r1", None, at(1, 9));
        old.restrictions = vec![Restriction {
            category: Category::Police,
            agency: None,
        }];
        let new = record("r2", None, at(2, 9));
        let rs = [old, new];
        let q = sharing(Agency::Police, Category::Police);
        assert!(!decide(&rs, &[], &q, at(1, 12)).allowed);
        assert!(decide(&rs, &[], &q, at(2, 12)).allowed);
    }
}
