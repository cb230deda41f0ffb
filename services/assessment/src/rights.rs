//! The family's data rights in assessment (`eh_service::rights`): the family's assessments with
//! every contribution and version, plans with their versions and actions, scores, reviews and
//! closures — what a subject access shows and what destruction deletes.
use eh_service::rights::Holding;

/// The family's cases as assessment knows them.
macro_rules! cases {
    () => {
        "(SELECT case_id FROM assessment_cases WHERE tenant = :tenant \
          AND (case_id IN :case OR family_id IN :family))"
    };
}

pub const HOLDINGS: &[Holding] = &[
    Holding {
        table: "contributions",
        rows: concat!(
            "tenant = :tenant AND assessment_id IN (SELECT id FROM assessments WHERE tenant = :tenant \
             AND (case_id IN :case OR family_id IN :family OR case_id IN ",
            cases!(),
            "))"
        ),
        person: None,
        third_party: &[("author", "practitioner"), ("body", "free_text")],
    },
    Holding {
        table: "assessment_versions",
        rows: concat!(
            "tenant = :tenant AND assessment_id IN (SELECT id FROM assessments WHERE tenant = :tenant \
             AND (case_id IN :case OR family_id IN :family OR case_id IN ",
            cases!(),
            "))"
        ),
        person: None,
        third_party: &[
            ("opened_by", "practitioner"),
            ("finalised_by", "practitioner"),
            ("what_changes", "free_text"),
        ],
    },
    Holding {
        table: "assessments",
        rows: concat!(
            "tenant = :tenant AND (case_id IN :case OR family_id IN :family OR case_id IN ",
            cases!(),
            ")"
        ),
        person: None,
        third_party: &[("opened_by", "practitioner")],
    },
    Holding {
        table: "score_sets",
        rows: concat!(
            "tenant = :tenant AND (case_id IN :case OR case_id IN ",
            cases!(),
            ")"
        ),
        person: None,
        third_party: &[("recorded_by", "practitioner")],
    },
    Holding {
        table: "reviews",
        rows: concat!(
            "tenant = :tenant AND (case_id IN :case OR case_id IN ",
            cases!(),
            ")"
        ),
        person: None,
        third_party: &[("recorded_by", "practitioner"), ("summary", "free_text")],
    },
    Holding {
        table: "closures",
        rows: "tenant = :tenant AND (case_id IN :case OR family_id IN :family)",
        person: None,
        third_party: &[
            ("closed_by", "practitioner"),
            ("remind_email", "practitioner"),
            ("impact", "free_text"),
            ("support_given", "free_text"),
        ],
    },
    Holding {
        table: "plan_actions",
        rows: concat!(
            "tenant = :tenant AND (case_id IN :case OR case_id IN ",
            cases!(),
            ")"
        ),
        person: None,
        third_party: &[
            ("owner", "practitioner"),
            ("owner_email", "practitioner"),
            ("what", "free_text"),
            ("note", "free_text"),
        ],
    },
    Holding {
        table: "plan_versions",
        rows: concat!(
            "tenant = :tenant AND plan_id IN (SELECT id FROM plans WHERE tenant = :tenant \
             AND (case_id IN :case OR family_id IN :family OR case_id IN ",
            cases!(),
            "))"
        ),
        person: None,
        third_party: &[
            ("set_by", "practitioner"),
            ("outcomes", "free_text"),
            ("actions", "free_text"),
        ],
    },
    Holding {
        table: "plans",
        rows: "tenant = :tenant AND (case_id IN :case OR family_id IN :family)",
        person: None,
        third_party: &[("lead_email", "practitioner")],
    },
    Holding {
        table: "assessment_cases",
        rows: "tenant = :tenant AND (case_id IN :case OR family_id IN :family)",
        person: None,
        third_party: &[("lead_practitioner", "practitioner")],
    },
];
