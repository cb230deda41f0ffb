//! The family's data rights in reporting (`eh_service::rights`): the facts reporting kept from the
//! family's events (ids, instants and codes) — what a subject access shows and what destruction
//! deletes (the council's figures then no longer count the family).
use eh_service::rights::Holding;

pub const HOLDINGS: &[Holding] = &[
    Holding {
        table: "referrals",
        rows: "tenant = :tenant AND (referral_id IN :referral OR family_id IN :family)",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "screenings",
        rows: "tenant = :tenant AND (referral_id IN :referral OR case_id IN :case)",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "case_transitions",
        rows: "tenant = :tenant AND (case_id IN :case OR family_id IN :family)",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "case_moments",
        rows: "tenant = :tenant AND case_id IN :case",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "assessments_finalised",
        rows: "tenant = :tenant AND case_id IN :case",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "scores",
        rows: "tenant = :tenant AND case_id IN :case",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "closures",
        rows: "tenant = :tenant AND case_id IN :case",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "follow_ups",
        rows: "tenant = :tenant AND case_id IN :case",
        person: None,
        third_party: &[],
    },
];
