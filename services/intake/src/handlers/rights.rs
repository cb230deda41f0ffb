//! The family's data rights in intake (`eh_service::rights`): what intake holds about a family
//! — referrals, people, families, match decisions and candidates, screening decisions — which a
//! subject access shows and destruction deletes (rows others refer to last), with the people lock
//! taken first; and rectification (`CorrectPerson`): checked, applied under the people lock,
//! announced as `person_corrected` in the same transaction.
use crate::domain::correction;
use eh_bus::{Envelope, OutboundMessage, ServiceContext};
use eh_proto::intake::v1::{CorrectPersonRequest, PersonCorrection};
use eh_service::rights::Holding;
use prost::Message;
use sea_orm::DbErr;

pub const HOLDINGS: &[Holding] = &[
    Holding {
        table: "screening_decisions",
        rows: "tenant = :tenant AND (referral_id IN :referral OR case_id IN :case)",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "match_candidates",
        rows: "tenant = :tenant AND (referral_id IN :referral OR new_person_id IN :person \
               OR existing_person_id IN :person)",
        person: Some("new_person_id"),
        third_party: &[("decided_by", "practitioner"), ("reason", "free_text")],
    },
    Holding {
        table: "match_decisions",
        rows: "tenant = :tenant AND (referral_id IN :referral OR person_id IN :person)",
        person: Some("person_id"),
        third_party: &[("notes", "free_text")],
    },
    Holding {
        table: "referral_people",
        rows: "referral_id IN :referral OR person_id IN :person",
        person: Some("person_id"),
        third_party: &[],
    },
    Holding {
        table: "referrals",
        rows: "tenant = :tenant AND (id IN :referral OR family_id IN :family)",
        person: None,
        third_party: &[
            ("referrer_name", "referrer"),
            ("referrer_email", "referrer"),
            ("document", "free_text"),
        ],
    },
    Holding {
        table: "people",
        rows: "tenant = :tenant AND (id IN :person OR family_id IN :family)",
        person: Some("id"),
        third_party: &[],
    },
    Holding {
        table: "families",
        rows: "tenant = :tenant AND id IN :family",
        person: None,
        third_party: &[],
    },
];

/// A destruction takes the tenant's people lock first, like every writer of people, and marks
/// its version as a destruction's: every replica's index then loads again at its next refresh,
/// so no referral is matched to a destroyed person.
pub struct PeopleLock;

#[async_trait::async_trait]
impl eh_service::rights::BeforeDestruction for PeopleLock {
    async fn before(&self, txn: &sea_orm::DatabaseTransaction, tenant: &str) -> Result<(), DbErr> {
        let stamp = crate::store::people::lock_people(txn, tenant).await?;
        crate::store::rights::mark_destroyed(txn, tenant, stamp).await
    }
}

/// Who may correct a person's details.
pub const CORRECT_ROLES: &[&str] = &["front_door", "team_manager", "information_governance"];

/// Why a correction was not made.
#[derive(Debug)]
pub enum CorrectError {
    /// Each field and the rule it breaks (never its value).
    Invalid(Vec<(&'static str, &'static str)>),
    /// No such person held (or one merged into another: correct the one kept).
    NotFound,
    Db(DbErr),
}

impl From<DbErr> for CorrectError {
    fn from(e: DbErr) -> Self {
        Self::Db(e)
    }
}

/// Corrects a person's details for `actor` (the call admitted by the caller): checked, applied
/// under the tenant's people lock (so matching sees the corrected person), announced as
/// `person_corrected` in the same transaction. A correction that changes nothing announces
/// nothing.
///
/// # Errors
/// As [`CorrectError`].
pub async fn correct_person(
    ctx: &ServiceContext,
    actor: &str,
    req: &CorrectPersonRequest,
) -> Result<PersonCorrection, CorrectError> {
    let now = ctx.clock.now();
    let violations = correction::check(req, now.date_naive());
    if !violations.is_empty() {
        return Err(CorrectError::Invalid(violations));
    }
    let tenant = req.tenant.as_str();
    let txn = eh_store::begin_scoped(&ctx.db, tenant).await?;
    let stamp = crate::store::people::lock_people(&txn, tenant).await?;
    let Some(held) = crate::store::rights::held_person(&txn, tenant, &req.person_id).await? else {
        return Err(CorrectError::NotFound);
    };
    let (sets, event) = correction::changes(&held, req, &now.to_rfc3339());
    if !sets.is_empty() {
        crate::store::rights::correct(&txn, tenant, &req.person_id, &sets, stamp).await?;
        let spec = &eh_proto::catalogue::PERSON_CORRECTED;
        let env = Envelope::new(spec.payload, tenant, actor, now);
        let msg = OutboundMessage::event(
            spec.subject(ctx.namespace(), tenant),
            &env,
            event.encode_to_vec(),
        );
        ctx.outbox
            .enqueue(&txn, &msg)
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    eh_store::commit(txn).await?;
    // Field names only: no value reaches the log.
    tracing::info!(tenant, person_id = req.person_id, fields = ?event.fields, "person corrected");
    Ok(PersonCorrection {
        person_id: req.person_id.clone(),
        family_id: held.family_id,
        fields: event.fields,
        corrected_by: actor.into(),
        corrected_at: now.to_rfc3339(),
    })
}
