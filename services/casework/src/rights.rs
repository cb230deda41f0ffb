//! The family's data rights in casework (`eh_service::rights`): the family's cases with their
//! contacts, timelines, timers, leads and consent facts — what a subject access shows and what
//! destruction deletes (children's rows before the cases they refer to).
use eh_service::rights::Holding;

pub const HOLDINGS: &[Holding] = &[
    Holding {
        table: "timeline",
        rows: "tenant = :tenant AND case_id IN \
               (SELECT id FROM cases WHERE tenant = :tenant AND (id IN :case OR family_id IN :family))",
        person: None,
        third_party: &[("actor", "practitioner"), ("reason", "free_text")],
    },
    Holding {
        table: "timers",
        rows: "tenant = :tenant AND (case_id IN :case OR family_id IN :family)",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "case_leads",
        rows: "tenant = :tenant AND case_id IN \
               (SELECT id FROM cases WHERE tenant = :tenant AND (id IN :case OR family_id IN :family))",
        person: None,
        third_party: &[("practitioner", "practitioner")],
    },
    Holding {
        table: "case_referrals",
        rows: "tenant = :tenant AND (referral_id IN :referral OR case_id IN \
               (SELECT id FROM cases WHERE tenant = :tenant AND (id IN :case OR family_id IN :family)))",
        person: None,
        third_party: &[],
    },
    Holding {
        table: "family_consent",
        rows: "tenant = :tenant AND family_id IN :family",
        person: Some("person_id"),
        third_party: &[],
    },
    Holding {
        table: "cases",
        rows: "tenant = :tenant AND (id IN :case OR family_id IN :family)",
        person: None,
        third_party: &[
            ("referrer", "referrer"),
            ("family_contacts", "another_family_member"),
        ],
    },
    Holding {
        table: "families",
        rows: "tenant = :tenant AND family_id IN :family",
        person: None,
        third_party: &[],
    },
];

// ------------------------------------------------------------------ rectification

use eh_bus::{Handled, HandlerError, Received, ServiceContext};
use eh_proto::casework::v1::Contact;
use eh_proto::intake::v1::PersonCorrected;
use prost::Message;
use sea_orm::ConnectionTrait;

/// `contacts` with the correction applied to the person's contact (by intake's person id): the
/// whole name when a name changed, the email when it did. Whether anything changed. The safety
/// flag is the person's and no correction clears it.
pub fn apply_correction(contacts: &mut [Contact], ev: &PersonCorrected) -> bool {
    let mut changed = false;
    for c in contacts.iter_mut().filter(|c| c.person_id == ev.person_id) {
        if let (Some(g), Some(f)) = (&ev.given_name, &ev.family_name) {
            let name = format!("{g} {f}");
            if c.name != name {
                c.name = name;
                changed = true;
            }
        }
        if let Some(e) = &ev.email
            && c.email != *e
        {
            c.email = e.clone();
            changed = true;
        }
    }
    changed
}

/// Applies intake's `person_corrected` to the person's contact on every case that holds them, in
/// one transaction with the inbox claim (a repeat changes nothing).
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
        let db = |e: sea_orm::DbErr| HandlerError::db(&e);
        let txn = eh_store::begin_scoped(&ctx.db, &tenant).await.map_err(db)?;
        if !eh_bus::inbox::claim_live(
            &txn,
            eh_proto::catalogue::CASEWORK_PERSON_CORRECTED.consumer,
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
        let rows = txn
            .query_all_raw(eh_store::stmt(
                txn.get_database_backend(),
                "SELECT id, family_contacts FROM cases WHERE tenant = $1
                 AND (family_id = $2 OR family_contacts LIKE $3)",
                [
                    tenant.clone().into(),
                    ev.family_id.clone().into(),
                    format!("%{}%", ev.person_id).into(),
                ],
            ))
            .await
            .map_err(db)?;
        for r in rows {
            let id: String = r.try_get_by_index(0).map_err(db)?;
            let json: String = r.try_get_by_index(1).map_err(db)?;
            let mut contacts: Vec<Contact> = serde_json::from_str(&json)
                .map_err(|e| HandlerError::Permanent(format!("case contacts: {e}")))?;
            if apply_correction(&mut contacts, &ev) {
                crate::store::set_family_contacts(&txn, &id, &contacts)
                    .await
                    .map_err(db)?;
            }
        }
        eh_store::commit(txn).await.map_err(db)?;
        Ok(Handled::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correction_rewrites_the_persons_contact_and_keeps_the_flag() {
        let mut contacts = vec![
            Contact {
                name: "Dana Marsh".into(),
                email: "dana@old.example".into(),
                safe_to_contact: true,
                person_id: "p-dana".into(),
                ..Default::default()
            },
            Contact {
                name: "Rob Marsh".into(),
                email: "rob@example.org".into(),
                safe_to_contact: false,
                person_id: "p-rob".into(),
                ..Default::default()
            },
        ];
        let ev = PersonCorrected {
            person_id: "p-rob".into(),
            given_name: Some("Robert".into()),
            family_name: Some("Marsh".into()),
            email: Some("robert@example.org".into()),
            ..Default::default()
        };
        assert!(apply_correction(&mut contacts, &ev));
        assert_eq!(contacts[1].name, "Robert Marsh");
        assert_eq!(contacts[1].email, "robert@example.org");
        assert!(!contacts[1].safe_to_contact);
        assert_eq!(contacts[0].name, "Dana Marsh");
        assert!(
            !apply_correction(&mut contacts, &ev),
            "a repeat changes nothing"
        );
    }
}
