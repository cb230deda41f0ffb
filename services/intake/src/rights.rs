//! The family's data rights in intake (`eh_service::rights`): the referrals, people, families,
//! match decisions and candidates and screening decisions intake holds about a family — what a
//! subject access shows and what destruction deletes (children's rows before the rows they refer
//! to).
use eh_service::rights::Holding;
use eh_store::Migration;
use sea_orm::{ConnectionTrait, DbErr};

/// The version of the tenant's people at their last destruction (see `store::people::Stamp`).
pub const MIGRATIONS: &[Migration] = &[Migration {
    owner: "intake",
    version: 40,
    name: "people destroyed at a version (indexes reload)",
    sql: "ALTER TABLE people_versions ADD COLUMN destroyed_at BIGINT NOT NULL DEFAULT 0",
}];

/// A destruction takes the tenant's people lock first, like every writer of people, and marks
/// its version as a destruction's: every replica's index then loads again at its next refresh.
pub struct PeopleLock;

#[async_trait::async_trait]
impl eh_service::rights::BeforeDestruction for PeopleLock {
    async fn before(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        tenant: &str,
    ) -> Result<(), DbErr> {
        let stamp = crate::store::people::lock_people(txn, tenant).await?;
        txn.execute_raw(eh_store::stmt(
            txn.get_database_backend(),
            "UPDATE people_versions SET destroyed_at = $1 WHERE tenant = $2",
            [stamp.version().into(), tenant.into()],
        ))
        .await?;
        Ok(())
    }
}

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

// ------------------------------------------------------------------ rectification

use eh_auth::Principal;
use eh_bus::{Envelope, OutboundMessage};
use eh_proto::intake::v1::{CorrectPersonRequest, PersonCorrected, PersonCorrection};
use eh_service::errors::{Violation, invalid};
use prost::Message;
use tonic::Status;

/// Who may correct a person's details.
pub const CORRECT_ROLES: &[&str] = &["front_door", "team_manager", "information_governance"];

fn is_date(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// A plausible email address (the contract's `format: email`, as far as a correction needs):
/// one `@`, something before it, a dotted domain after it, no spaces.
fn is_email(s: &str) -> bool {
    let mut parts = s.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
        && s.len() <= 254
}

/// Every rule a correction breaks, one violation per field, never quoting the value. `today` is
/// the council's date (a date of birth may not be after it).
pub fn check(req: &CorrectPersonRequest, today: chrono::NaiveDate) -> Vec<Violation> {
    let mut v = Vec::new();
    if req.person_id.trim().is_empty() {
        v.push(Violation::new("person_id", "required"));
    }
    if req.reason.trim().is_empty() {
        v.push(Violation::new("reason", "required: why the details are corrected"));
    } else if req.reason.len() > 2000 {
        v.push(Violation::new("reason", "at most 2000 characters"));
    }
    for (field, value) in [
        ("given_name", &req.given_name),
        ("family_name", &req.family_name),
    ] {
        if let Some(s) = value
            && (s.trim().is_empty() || s.chars().count() > 100)
        {
            v.push(Violation::new(field, "1 to 100 characters"));
        }
    }
    if let Some(d) = &req.date_of_birth {
        if !is_date(d) {
            v.push(Violation::new("date_of_birth", "a date, YYYY-MM-DD"));
        } else if d.parse::<chrono::NaiveDate>().is_ok_and(|d| d > today) {
            v.push(Violation::new("date_of_birth", "not in the future"));
        }
    }
    if let Some(n) = &req.nhs_number
        && !crate::domain::matching::nhs_number_valid(n)
    {
        v.push(Violation::new(
            "nhs_number",
            "10 digits with a valid check digit (modulus 11)",
        ));
    }
    if let Some(e) = &req.email
        && !e.is_empty()
        && !is_email(e)
    {
        v.push(Violation::new("email", "an email address (or empty to remove it)"));
    }
    if let Some(p) = &req.phone
        && p.chars().count() > 40
    {
        v.push(Violation::new("phone", "at most 40 characters"));
    }
    if [
        &req.given_name,
        &req.family_name,
        &req.date_of_birth,
        &req.nhs_number,
        &req.email,
        &req.phone,
    ]
    .iter()
    .all(|f| f.is_none())
    {
        v.push(Violation::new("person", "no field to correct"));
    }
    v
}

/// The person as held, for a correction.
struct Held {
    family_id: String,
    given_name: String,
    family_name: String,
    date_of_birth: Option<String>,
    nhs_number: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

fn internal(e: impl std::fmt::Display) -> Status {
    eh_service::errors::internal(crate::SERVICE, e)
}

/// Corrects a person's details (the call is admitted by the caller): checked, applied under the
/// tenant's people lock (so matching sees the corrected person), announced as `person_corrected`
/// in the same transaction. A correction that changes nothing announces nothing.
///
/// # Errors
/// INVALID_ARGUMENT naming each field; NOT_FOUND for a person the council does not hold (or one
/// merged into another: correct the one kept); INTERNAL when the database fails.
pub async fn correct_person(
    intake: &crate::handlers::Intake,
    p: &Principal,
    req: &CorrectPersonRequest,
) -> Result<PersonCorrection, Status> {
    let ctx = &intake.ctx;
    let now = ctx.clock.now();
    let violations = check(req, now.date_naive());
    if !violations.is_empty() {
        return Err(invalid("the correction is invalid", &violations));
    }
    let tenant = req.tenant.as_str();
    let txn = eh_store::begin_scoped(&ctx.db, tenant)
        .await
        .map_err(internal)?;
    let stamp = crate::store::people::lock_people(&txn, tenant)
        .await
        .map_err(internal)?;
    let b = txn.get_database_backend();
    let row = txn
        .query_one_raw(eh_store::stmt(
            b,
            "SELECT family_id, given_name, family_name, date_of_birth, nhs_number, email, phone
             FROM people WHERE tenant = $1 AND id = $2 AND merged_into IS NULL",
            [tenant.into(), req.person_id.clone().into()],
        ))
        .await
        .map_err(internal)?;
    let Some(row) = row else {
        return Err(Status::not_found("no such person"));
    };
    let held = (|| -> Result<Held, DbErr> {
        Ok(Held {
            family_id: row.try_get_by_index(0)?,
            given_name: row.try_get_by_index(1)?,
            family_name: row.try_get_by_index(2)?,
            date_of_birth: row.try_get_by_index(3)?,
            nhs_number: row.try_get_by_index(4)?,
            email: row.try_get_by_index(5)?,
            phone: row.try_get_by_index(6)?,
        })
    })()
    .map_err(internal)?;
    let trimmed = |s: &Option<String>| s.as_ref().map(|s| s.trim().to_string());
    let mut event = PersonCorrected {
        person_id: req.person_id.clone(),
        family_id: held.family_id.clone(),
        at: now.to_rfc3339(),
        ..Default::default()
    };
    let mut sets: Vec<(&str, sea_orm::Value)> = Vec::new();
    let given = trimmed(&req.given_name).filter(|g| *g != held.given_name);
    let family = trimmed(&req.family_name).filter(|f| *f != held.family_name);
    if given.is_some() || family.is_some() {
        // Both names as they now are, so a copy holding the whole name can be rewritten.
        event.given_name = Some(given.clone().unwrap_or_else(|| held.given_name.clone()));
        event.family_name = Some(family.clone().unwrap_or_else(|| held.family_name.clone()));
    }
    if let Some(g) = given {
        sets.push(("given_name", g.into()));
        event.fields.push("given_name".into());
    }
    if let Some(f) = family {
        sets.push(("family_name", f.into()));
        event.fields.push("family_name".into());
    }
    if let Some(d) = trimmed(&req.date_of_birth).filter(|d| Some(d) != held.date_of_birth.as_ref())
    {
        sets.push(("date_of_birth", d.clone().into()));
        event.fields.push("date_of_birth".into());
        event.date_of_birth = Some(d);
    }
    if let Some(n) = trimmed(&req.nhs_number).filter(|n| Some(n) != held.nhs_number.as_ref()) {
        sets.push(("nhs_number", n.into()));
        event.fields.push("nhs_number".into());
    }
    if let Some(e) = trimmed(&req.email).filter(|e| Some(e) != held.email.as_ref()) {
        let value: Option<String> = (!e.is_empty()).then(|| e.clone());
        sets.push(("email", value.into()));
        event.fields.push("email".into());
        event.email = Some(e);
        event.previous_email = held.email.clone().unwrap_or_default();
    }
    if let Some(ph) = trimmed(&req.phone).filter(|ph| Some(ph) != held.phone.as_ref()) {
        let value: Option<String> = (!ph.is_empty()).then_some(ph);
        sets.push(("phone", value.into()));
        event.fields.push("phone".into());
    }
    if !sets.is_empty() {
        let mut sql = String::from("UPDATE people SET ");
        let mut values: Vec<sea_orm::Value> = Vec::new();
        for (i, (col, v)) in sets.into_iter().enumerate() {
            sql.push_str(&format!("{col} = ${}, ", i + 1));
            values.push(v);
        }
        let n = values.len();
        sql.push_str(&format!(
            "version = ${} WHERE tenant = ${} AND id = ${}",
            n + 1,
            n + 2,
            n + 3
        ));
        values.push(stamp.version().into());
        values.push(tenant.into());
        values.push(req.person_id.clone().into());
        txn.execute_raw(eh_store::stmt(b, &sql, values))
            .await
            .map_err(internal)?;
        let spec = &eh_proto::catalogue::PERSON_CORRECTED;
        let env = Envelope::new(spec.payload, tenant, &p.actor(), now);
        ctx.outbox
            .enqueue(
                &txn,
                &OutboundMessage::event(
                    spec.subject(ctx.namespace(), tenant),
                    &env,
                    event.encode_to_vec(),
                ),
            )
            .await
            .map_err(internal)?;
    }
    eh_store::commit(txn).await.map_err(internal)?;
    // Field names only: no value reaches the log.
    tracing::info!(tenant, person_id = req.person_id, fields = ?event.fields, "person corrected");
    Ok(PersonCorrection {
        person_id: req.person_id.clone(),
        family_id: held.family_id,
        fields: event.fields,
        corrected_by: p.actor(),
        corrected_at: now.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> CorrectPersonRequest {
        CorrectPersonRequest {
            tenant: "worcs".into(),
            person_id: "p1".into(),
            reason: "the family told us".into(),
            ..Default::default()
        }
    }

    fn fields(v: &[Violation]) -> Vec<String> {
        v.iter().map(|v| v.field.to_string()).collect()
    }

    #[test]
    fn a_correction_is_checked_field_by_field_without_quoting_values() {
        let today: chrono::NaiveDate = "2026-11-29".parse().expect("date");
        let mut r = req();
        r.given_name = Some(" ".into());
        r.date_of_birth = Some("2027-01-01".into());
        r.nhs_number = Some("9434765918".into());
        r.email = Some("not an email".into());
        r.reason = String::new();
        let v = check(&r, today);
        assert_eq!(
            fields(&v),
            ["reason", "given_name", "date_of_birth", "nhs_number", "email"]
        );
        assert!(v.iter().all(|v| !v.reason.contains("not an email")));
        let mut ok = req();
        ok.date_of_birth = Some("2016-05-14".into());
        ok.nhs_number = Some("9434765919".into());
        ok.email = Some(String::new());
        assert!(check(&ok, today).is_empty());
        assert_eq!(fields(&check(&req(), today)), ["person"]);
        let mut bad_date = req();
        bad_date.date_of_birth = Some("14/05/2016".into());
        assert_eq!(fields(&check(&bad_date, today)), ["date_of_birth"]);
    }
}
