//! The family's data rights in allocation (`eh_service::rights`): the family's cases as allocation
//! knows them, offers, the family's preferences, lead-practitioner requests and the children's
//! dates of birth kept for matching — what a subject access shows and what destruction deletes.
//! The directory of services is the council's, not the family's.
use eh_service::rights::Holding;

pub const HOLDINGS: &[Holding] = &[
    Holding {
        table: "lead_requests",
        rows: "tenant = :tenant AND case_id IN :case",
        person: None,
        third_party: &[
            ("practitioner", "practitioner"),
            ("asked_by", "practitioner"),
            ("note", "free_text"),
            ("decline_detail", "free_text"),
        ],
    },
    Holding {
        table: "family_preferences",
        rows: "tenant = :tenant AND case_id IN :case",
        person: None,
        third_party: &[("recorded_by", "practitioner")],
    },
    Holding {
        table: "allocations",
        rows: "tenant = :tenant AND case_id IN :case",
        person: None,
        third_party: &[
            ("settled_by", "practitioner"),
            ("decline_detail", "free_text"),
        ],
    },
    Holding {
        table: "referral_children",
        rows: "tenant = :tenant AND referral_id IN :referral",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "allocation_cases",
        rows: "tenant = :tenant AND (case_id IN :case OR family_id IN :family \
               OR referral_id IN :referral)",
        person: None,
        third_party: &[],
    },
];
