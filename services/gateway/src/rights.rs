//! The family's data rights in the gateway (`eh_service::rights`): the safeguarding override
//! requests its console keeps between the two people (who asked and who approved, the legal basis
//! and reasoning written for the family), the webhook deliveries of the family's cases (sent,
//! dead or still pending: a pending one destroyed is never sent) and the idempotency keys' kept
//! answers naming one of its referrals — what a subject access shows and what destruction
//! deletes. Console sessions are the practitioners', not the family's.
//!
//! Served over gRPC by [`crate::grpc`] and by the destruction consumer
//! ([`eh_service::rights::spawn_destruction`]).
use eh_service::rights::Holding;

pub const HOLDINGS: &[Holding] = &[
    Holding {
        table: "gateway_override_requests",
        rows: "tenant = :tenant AND (family_id IN :family OR case_id IN :case)",
        person: None,
        third_party: &[
            ("requested_by", "practitioner"),
            ("decided_by", "practitioner"),
            ("legal_basis", "free_text"),
            ("reasoning", "free_text"),
        ],
    },
    Holding {
        table: "gateway_webhook_deliveries",
        rows: "tenant = :tenant AND (case_id IN :case OR referral_id IN :referral)",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "gateway_idempotency",
        rows: "tenant = :tenant AND replace(location, '/v1/referrals/', '') IN :referral",
        person: None,
        third_party: &[],
    },
];
