//! The family's data rights in notifications (`eh_service::rights`): every message about the
//! family's referrals and cases or to one of its people — sent, failed or suppressed, each with
//! the email as it was kept — the referrers' contact details, the family's suppressions and the
//! addresses held for its people, tasks about their messages and the hashed name tokens kept to
//! keep children's names out of emails. What a subject access shows and what destruction deletes.
use eh_service::rights::Holding;

/// The family's messages.
macro_rules! messages {
    () => {
        "(SELECT id FROM messages WHERE tenant = :tenant AND (related_id IN :referral \
          OR related_id IN :case OR related_id IN :family OR person_id IN :person))"
    };
}

pub const HOLDINGS: &[Holding] = &[
    Holding {
        table: "overdue_raised",
        rows: concat!("message_id IN ", messages!()),
        person: None,
        third_party: &[],
    },
    Holding {
        table: "tasks",
        rows: concat!(
            "tenant = :tenant AND (related_id IN :referral OR related_id IN :case \
             OR message_id IN ",
            messages!(),
            ")"
        ),
        person: None,
        third_party: &[("resolved_by", "practitioner"), ("note", "free_text")],
    },
    Holding {
        table: "messages",
        rows: "tenant = :tenant AND (related_id IN :referral OR related_id IN :case \
               OR related_id IN :family OR person_id IN :person)",
        person: Some("person_id"),
        third_party: &[("body", "free_text")],
    },
    Holding {
        table: "referrers",
        rows: "tenant = :tenant AND referral_id IN :referral",
        person: None,
        third_party: &[
            ("name", "referrer"),
            ("phone", "referrer"),
            ("email", "referrer"),
        ],
    },
    Holding {
        table: "suppressions",
        rows: "tenant = :tenant AND address IN (SELECT address FROM person_addresses \
               WHERE tenant = :tenant AND person_id IN :person)",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "person_suppressions",
        rows: "tenant = :tenant AND person_id IN :person",
        person: Some("person_id"),
        third_party: &[],
    },
    Holding {
        table: "person_addresses",
        rows: "tenant = :tenant AND person_id IN :person",
        person: Some("person_id"),
        third_party: &[],
    },
    Holding {
        table: "child_name_tokens",
        rows: "tenant = :tenant AND (replace(scope, 'referral:', '') IN :referral \
               OR replace(scope, 'family:', '') IN :family)",
        person: None,
        third_party: &[],
    },
];

// ------------------------------------------------------------------ rectification

use eh_bus::{Handled, HandlerError, Received, ServiceContext};
use eh_proto::intake::v1::PersonCorrected;
use prost::Message;
use sea_orm::ConnectionTrait;

/// Applies intake's `person_corrected`: the corrected email is held for the person (so a message
/// to them goes there, and were they unsafe, it is suppressed like every address held for them);
/// the address it replaces is no longer held for them — unless they are unsafe to contact, when
/// every address ever given for them stays held (and so suppressed). In one transaction with the
/// inbox claim.
pub struct PersonCorrectedHandler {
    pub ctx: ServiceContext,
}

#[async_trait::async_trait]
impl eh_bus::Handler for PersonCorrectedHandler {
    async fn handle(&self, msg: &Received) -> Result<Handled, HandlerError> {
        let ctx = &self.ctx;
        let tenant = eh_bus::subjects::tenant_of(ctx.namespace(), &msg.subject)
            .ok_or_else(|| {
                HandlerError::Permanent(format!("subject {} has no tenant", msg.subject))
            })?
            .to_string();
        let ev = PersonCorrected::decode(msg.payload.as_ref())
            .map_err(|e| HandlerError::Permanent(format!("not a PersonCorrected: {e}")))?;
        if ev.person_id.trim().is_empty() {
            return Err(HandlerError::Permanent(
                "PersonCorrected has no person_id".into(),
            ));
        }
        let Some(email) = ev.email.as_deref().map(crate::store::normalise) else {
            return Ok(Handled::Done);
        };
        let db = |e: sea_orm::DbErr| HandlerError::db(&e);
        let txn = eh_store::begin_scoped(&ctx.db, &tenant).await.map_err(db)?;
        if !eh_bus::inbox::claim_live(
            &txn,
            eh_proto::catalogue::NOTIFICATIONS_PERSON_CORRECTED.consumer,
            msg,
        )
        .await
        .map_err(|e| HandlerError::bus(&e))?
        {
            // Committed: a message about a destroyed family stays claimed too.
            eh_store::commit(txn)
                .await
                .map_err(|e| eh_bus::HandlerError::db(&e))?;
            return Ok(Handled::Duplicate);
        }
        let b = txn.get_database_backend();
        if !email.is_empty() {
            txn.execute_raw(eh_store::stmt(
                b,
                "INSERT INTO person_addresses (tenant, person_id, address, recorded_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                [
                    tenant.clone().into(),
                    ev.person_id.clone().into(),
                    email.clone().into(),
                    ctx.clock.now().into(),
                ],
            ))
            .await
            .map_err(db)?;
        }
        let previous = crate::store::normalise(&ev.previous_email);
        if !previous.is_empty() && previous != email {
            txn.execute_raw(eh_store::stmt(
                b,
                "DELETE FROM person_addresses WHERE tenant = $1 AND person_id = $2 AND address = $3
                 AND NOT EXISTS (SELECT 1 FROM person_suppressions s
                                 WHERE s.tenant = $1 AND s.person_id = $2)",
                [
                    tenant.clone().into(),
                    ev.person_id.clone().into(),
                    previous.into(),
                ],
            ))
            .await
            .map_err(db)?;
        }
        eh_store::commit(txn).await.map_err(db)?;
        Ok(Handled::Done)
    }
}
