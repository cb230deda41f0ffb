//! Safeguarding overrides: sharing without consent, lawful only on a recorded legal basis with a
//! manager's authority, for a limited time and a stated scope.
//!
//! Rules: a non-empty legal basis; a requester; an authoriser who is a DIFFERENT person and holds
//! the manager role ([`MANAGER_ROLE`]); an expiry after now and at most [`MAX_OVERRIDE_DAYS`]
//! ahead; a scope of at least one agency, one category (`all` allowed) and one purpose. An
//! override for a person covers checks about that person only; one for the whole family covers
//! every check about the family.
use super::sharing::SharingRequest;
use super::{Agency, Category, Purpose, Violation};
use chrono::{DateTime, Duration, Utc};

/// The longest an override may last.
pub const MAX_OVERRIDE_DAYS: i64 = 30;
/// The role an authorising manager must hold.
pub const MANAGER_ROLE: &str = "team_manager";

/// A granted override.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub id: String,
    pub family_id: String,
    /// `None`: the whole family.
    pub person_id: Option<String>,
    pub requested_by: String,
    pub authorised_by: String,
    pub legal_basis: String,
    pub reasoning: String,
    pub agencies: Vec<Agency>,
    pub categories: Vec<Category>,
    pub purposes: Vec<Purpose>,
    pub granted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Override {
    /// In force at `now` and in scope of `req`.
    pub fn applies_to(&self, req: &SharingRequest, now: DateTime<Utc>) -> bool {
        self.granted_at <= now
            && now < self.expires_at
            && self.family_id == req.family_id
            && (self.person_id.is_none() || self.person_id == req.person_id)
            && self.agencies.contains(&req.agency)
            && (self.categories.contains(&Category::All) || self.categories.contains(&req.category))
            && self.purposes.contains(&req.purpose)
    }
}

/// Who asks for and who authorises an override, as the caller established them.
#[derive(Debug, Clone)]
pub struct Authority {
    pub requested_by: String,
    /// The authoriser's identities (e.g. subject and actor string); the requester must be none of them.
    pub authoriser_ids: Vec<String>,
    pub authoriser_is_manager: bool,
}

/// Why an override cannot be granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The authoriser lacks the manager role.
    NotAManager,
    /// The content is wrong.
    Invalid(Vec<Violation>),
}

/// Checks the grant rules. `scope_violations` are parse errors of the scope lists found already.
pub fn check_grant(
    authority: &Authority,
    legal_basis: &str,
    family_id: &str,
    scope: (&[Agency], &[Category], &[Purpose]),
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    mut violations: Vec<Violation>,
) -> Result<(), Refusal> {
    if !authority.authoriser_is_manager {
        return Err(Refusal::NotAManager);
    }
    if family_id.trim().is_empty() {
        violations.push(Violation::new("family_id", "required"));
    }
    if legal_basis.trim().is_empty() {
        violations.push(Violation::new(
            "legal_basis",
            "a stated legal basis is required to share without consent",
        ));
    }
    let requester = authority.requested_by.trim();
    if requester.is_empty() {
        violations.push(Violation::new("requested_by", "required"));
    } else if authority
        .authoriser_ids
        .iter()
        .any(|id| id.trim().eq_ignore_ascii_case(requester))
    {
        violations.push(Violation::new(
            "requested_by",
            "the requester and the authorising manager must be different people",
        ));
    }
    let (agencies, categories, purposes) = scope;
    for (field, empty) in [
        ("agencies", agencies.is_empty()),
        ("categories", categories.is_empty()),
        ("purposes", purposes.is_empty()),
    ] {
        if empty && !violations.iter().any(|v| v.field.starts_with(field)) {
            violations.push(Violation::new(field, "at least one is required"));
        }
    }
    match expires_at {
        None => violations.push(Violation::new(
            "expires_at",
            "an RFC 3339 instant is required",
        )),
        Some(e) if e <= now => {
            violations.push(Violation::new("expires_at", "must be in the future"))
        }
        Some(e) if e > now + Duration::days(MAX_OVERRIDE_DAYS) => violations.push(Violation::new(
            "expires_at",
            format!("at most {MAX_OVERRIDE_DAYS} days ahead"),
        )),
        Some(_) => {}
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Invalid(violations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sharing::decide;
    use crate::domain::sharing::tests::{ask, at, record};

    fn manager(requested_by: &str) -> Authority {
        Authority {
            requested_by: requested_by.into(),
            authoriser_ids: vec!["mgr".into(), "person:mgr".into()],
            authoriser_is_manager: true,
        }
    }

    fn grant(a: &Authority, basis: &str, expires: Option<DateTime<Utc>>) -> Result<(), Refusal> {
        check_grant(
            a,
            basis,
            "fam",
            (&[Agency::Police], &[Category::All], &[Purpose::Sharing]),
            expires,
            at(1, 9),
            vec![],
        )
    }

    const BASIS: &str = "Children Act 1989 s47 / DfE information sharing advice 2024";

    fn fields(r: Result<(), Refusal>) -> Vec<String> {
        match r {
            Err(Refusal::Invalid(v)) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn a_manager_may_authorise_another_persons_request() {
        assert_eq!(grant(&manager("worker-1"), BASIS, Some(at(8, 9))), Ok(()));
    }

    #[test]
    fn needs_two_different_people() {
        assert_eq!(
            fields(grant(&manager("mgr"), BASIS, Some(at(8, 9)))),
            ["requested_by"]
        );
        assert_eq!(
            fields(grant(&manager("Person:MGR"), BASIS, Some(at(8, 9)))),
            ["requested_by"]
        );
        assert_eq!(
            fields(grant(&manager(" "), BASIS, Some(at(8, 9)))),
            ["requested_by"]
        );
    }

    #[test]
    fn needs_a_manager() {
        let mut a = manager("worker-1");
        a.authoriser_is_manager = false;
        assert_eq!(grant(&a, BASIS, Some(at(8, 9))), Err(Refusal::NotAManager));
    }

    #[test]
    fn needs_a_legal_basis() {
        assert_eq!(
            fields(grant(&manager("worker-1"), "  ", Some(at(8, 9)))),
            ["legal_basis"]
        );
    }

    #[test]
    fn expiry_is_required_future_and_bounded() {
        let a = manager("worker-1");
        assert_eq!(fields(grant(&a, BASIS, None)), ["expires_at"]);
        assert_eq!(fields(grant(&a, BASIS, Some(at(1, 9)))), ["expires_at"]);
        let limit = at(1, 9) + Duration::days(MAX_OVERRIDE_DAYS);
        assert_eq!(grant(&a, BASIS, Some(limit)), Ok(()));
        assert_eq!(
            fields(grant(&a, BASIS, Some(limit + Duration::seconds(1)))),
            ["expires_at"]
        );
    }

    #[test]
    fn scope_must_be_stated() {
        let r = check_grant(
            &manager("w"),
            BASIS,
            "fam",
            (&[], &[], &[]),
            Some(at(8, 9)),
            at(1, 9),
            vec![],
        );
        assert_eq!(fields(r), ["agencies", "categories", "purposes"]);
    }

    fn police_override(person: Option<&str>) -> Override {
        Override {
            id: "o1".into(),
            family_id: "fam".into(),
            person_id: person.map(Into::into),
            requested_by: "worker-1".into(),
            authorised_by: "person:mgr".into(),
            legal_basis: BASIS.into(),
            reasoning: "risk of harm".into(),
            agencies: vec![Agency::Police],
            categories: vec![Category::DomesticAbuse],
            purposes: vec![Purpose::Sharing],
            granted_at: at(2, 9),
            expires_at: at(9, 9),
        }
    }

    #[test]
    fn an_override_allows_despite_missing_or_withdrawn_consent_and_says_so() {
        let o = [police_override(None)];
        let q = ask(
            None,
            Agency::Police,
            Category::DomesticAbuse,
            Purpose::Sharing,
        );
        let d = decide(&[], &o, &q, at(3, 9));
        assert!(d.allowed);
        assert_eq!(d.override_id.as_deref(), Some("o1"));
        assert!(
            d.reason.contains("safeguarding override") && d.reason.contains("no consent"),
            "{}",
            d.reason
        );

        let mut r = record("r1", None, at(1, 9));
        r.withdrawn_at = Some(at(2, 0));
        let d = decide(&[r], &o, &q, at(3, 9));
        assert!(d.allowed);
        assert_eq!(d.record_id.as_deref(), Some("r1"));
        assert!(d.reason.contains("withdrawn"), "{}", d.reason);
    }

    #[test]
    fn an_override_allows_despite_a_restriction_and_names_it() {
        let mut r = record("r1", None, at(1, 9));
        r.restrictions = vec![crate::domain::Restriction {
            category: Category::DomesticAbuse,
            agency: Some(Agency::Police),
        }];
        let q = ask(
            Some("p1"),
            Agency::Police,
            Category::DomesticAbuse,
            Purpose::Sharing,
        );
        let d = decide(&[r], &[police_override(None)], &q, at(3, 9));
        assert!(d.allowed);
        assert!(d.restriction.is_some());
        assert_eq!(d.override_id.as_deref(), Some("o1"));
    }

    #[test]
    fn an_override_is_bounded_by_time_family_person_and_scope() {
        let o = [police_override(Some("p1"))];
        let q = ask(
            Some("p1"),
            Agency::Police,
            Category::DomesticAbuse,
            Purpose::Sharing,
        );
        assert!(decide(&[], &o, &q, at(3, 9)).allowed);
        // Not before it was granted, not from its expiry on.
        assert!(!decide(&[], &o, &q, at(2, 8)).allowed);
        let d = decide(&[], &o, &q, at(9, 9));
        assert!(!d.allowed);
        assert_eq!(d.override_id, None);
        // Another person, the whole family, another family, agency, category, purpose.
        assert!(
            !decide(
                &[],
                &o,
                &ask(
                    Some("p2"),
                    Agency::Police,
                    Category::DomesticAbuse,
                    Purpose::Sharing
                ),
                at(3, 9)
            )
            .allowed
        );
        assert!(
            !decide(
                &[],
                &o,
                &ask(
                    None,
                    Agency::Police,
                    Category::DomesticAbuse,
                    Purpose::Sharing
                ),
                at(3, 9)
            )
            .allowed
        );
        let mut other = q.clone();
        other.family_id = "fam2".into();
        assert!(!decide(&[], &o, &other, at(3, 9)).allowed);
        assert!(
            !decide(
                &[],
                &o,
                &ask(
                    Some("p1"),
                    Agency::Health,
                    Category::DomesticAbuse,
                    Purpose::Sharing
                ),
                at(3, 9)
            )
            .allowed
        );
        assert!(
            !decide(
                &[],
                &o,
                &ask(
                    Some("p1"),
                    Agency::Police,
                    Category::Health,
                    Purpose::Sharing
                ),
                at(3, 9)
            )
            .allowed
        );
        assert!(
            !decide(
                &[],
                &o,
                &ask(
                    Some("p1"),
                    Agency::Police,
                    Category::DomesticAbuse,
                    Purpose::Contacting
                ),
                at(3, 9)
            )
            .allowed
        );
    }

    #[test]
    fn consent_that_allows_needs_no_override() {
        let r = record("r1", None, at(1, 9));
        let q = ask(
            None,
            Agency::Police,
            Category::DomesticAbuse,
            Purpose::Sharing,
        );
        let d = decide(&[r], &[police_override(None)], &q, at(3, 9));
        assert!(d.allowed);
        assert_eq!(d.override_id, None);
        assert_eq!(d.record_id.as_deref(), Some("r1"));
    }
}
