//! The family's data rights in consent (`eh_service::rights`): the family's consent ledger
//! (records, restrictions, withdrawals), safeguarding overrides and every sharing decision made
//! about them — what a subject access shows and what destruction deletes.
use eh_service::rights::Holding;

pub const HOLDINGS: &[Holding] = &[
    Holding {
        table: "consent_restrictions",
        rows: "tenant = :tenant AND record_id IN \
               (SELECT id FROM consent_records WHERE tenant = :tenant AND family_id IN :family)",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "consent_withdrawals",
        rows: "tenant = :tenant AND record_id IN \
               (SELECT id FROM consent_records WHERE tenant = :tenant AND family_id IN :family)",
        person: None,
        third_party: &[("withdrawn_by", "practitioner"), ("reason", "free_text")],
    },
    Holding {
        table: "sharing_decisions",
        rows: "tenant = :tenant AND family_id IN :family",
        person: Some("person_id"),
        third_party: &[("asked_by", "practitioner")],
    },
    Holding {
        table: "safeguarding_overrides",
        rows: "tenant = :tenant AND family_id IN :family",
        person: Some("person_id"),
        third_party: &[
            ("requested_by", "practitioner"),
            ("authorised_by", "practitioner"),
            ("reasoning", "free_text"),
        ],
    },
    Holding {
        table: "consent_records",
        rows: "tenant = :tenant AND family_id IN :family",
        person: Some("person_id"),
        third_party: &[
            ("given_by", "another_family_member"),
            ("recorded_by", "practitioner"),
        ],
    },
];
