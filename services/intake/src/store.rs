//! Intake's own tables: referrals, families, people and who is on which referral.
use eh_proto::intake::v1::{PersonRef, Referral};
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DbErr};

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 10,
    name: "referrals, families, people",
    sql: "CREATE TABLE families (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            postcode TEXT NULL,
            created_at {ts} NOT NULL
          );
          CREATE TABLE people (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            family_id TEXT NOT NULL REFERENCES families (id),
            kind TEXT NOT NULL,
            given_name TEXT NOT NULL,
            family_name TEXT NOT NULL,
            date_of_birth TEXT NULL,
            expected_date_of_delivery TEXT NULL,
            gender TEXT NULL,
            relationship TEXT NULL,
            parental_responsibility BOOLEAN NULL,
            nhs_number TEXT NULL,
            upn TEXT NULL,
            email TEXT NULL,
            phone TEXT NULL,
            postcode TEXT NULL,
            safe_to_contact BOOLEAN NULL,
            created_at {ts} NOT NULL
          );
          CREATE INDEX people_tenant_family ON people (tenant, family_id);
          CREATE TABLE referrals (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            source_system TEXT NOT NULL,
            source_reference TEXT NOT NULL,
            route TEXT NOT NULL,
            family_id TEXT NOT NULL REFERENCES families (id),
            referrer_name TEXT NOT NULL,
            referrer_agency TEXT NOT NULL,
            referrer_email TEXT NULL,
            significant_harm_risk BOOLEAN NOT NULL,
            consent_obtained BOOLEAN NOT NULL,
            submitted_at TEXT NOT NULL,
            received_at {ts} NOT NULL,
            received_by TEXT NOT NULL,
            document TEXT NOT NULL,
            UNIQUE (tenant, source_system, source_reference)
          );
          CREATE TABLE referral_people (
            referral_id TEXT NOT NULL REFERENCES referrals (id),
            person_id TEXT NOT NULL REFERENCES people (id),
            role TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (referral_id, person_id)
          )",
}];

/// A stored referral with its people.
#[derive(Debug, Clone)]
pub struct StoredReferral {
    pub id: String,
    pub tenant: String,
    pub family_id: String,
    pub received_at: chrono::DateTime<chrono::Utc>,
    pub referral: Referral,
    pub children: Vec<PersonRef>,
    pub family_members: Vec<PersonRef>,
}

/// Inserts the referral unless (tenant, system, reference) is held; `None` when it was.
pub async fn insert(
    txn: &impl ConnectionTrait,
    tenant: &str,
    referral: &Referral,
    document: &serde_json::Value,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<StoredReferral>, DbErr> {
    let b = txn.get_database_backend();
    let id = uuid::Uuid::now_v7().to_string();
    let family_id = uuid::Uuid::now_v7().to_string();
    let source = referral.source.clone().unwrap_or_default();
    let referrer = referral.referrer.clone().unwrap_or_default();
    let postcode = referral.address.as_ref().map(|a| a.postcode.clone());
    // The family first (the referral refers to it), then claim the natural key.
    txn.execute_raw(stmt(
        b,
        "INSERT INTO families (id, tenant, postcode, created_at) VALUES ($1, $2, $3, $4)",
        [
            family_id.clone().into(),
            tenant.into(),
            postcode.clone().into(),
            now.into(),
        ],
    ))
    .await?;
    let res = txn
        .execute_raw(stmt(
            b,
            "INSERT INTO referrals (id, tenant, source_system, source_reference, route, family_id,
               referrer_name, referrer_agency, referrer_email, significant_harm_risk, consent_obtained,
               submitted_at, received_at, received_by, document)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (tenant, source_system, source_reference) DO NOTHING",
            [
                id.clone().into(),
                tenant.into(),
                source.system.clone().into(),
                source.reference.clone().into(),
                referral.route.clone().into(),
                family_id.clone().into(),
                referrer.name.clone().into(),
                referrer.agency.clone().into(),
                referrer.email.clone().into(),
                referral.significant_harm_risk.unwrap_or(false).into(),
                referral.consent.as_ref().and_then(|c| c.obtained).unwrap_or(false).into(),
                referral.submitted_at.clone().into(),
                now.into(),
                actor.into(),
                document.to_string().into(),
            ],
        ))
        .await?;
    if res.rows_affected() == 0 {
        // Held already: undo the family we just added (the caller's transaction still commits
        // its inbox row).
        txn.execute_raw(stmt(
            b,
            "DELETE FROM families WHERE id = $1",
            [family_id.into()],
        ))
        .await?;
        return Ok(None);
    }
    let mut children = Vec::new();
    let mut members = Vec::new();
    let mut position = 0_i32;
    for c in &referral.children {
        let pid = uuid::Uuid::now_v7().to_string();
        let pc = c
            .address
            .as_ref()
            .map(|a| a.postcode.clone())
            .or_else(|| postcode.clone());
        txn.execute_raw(stmt(
            b,
            "INSERT INTO people (id, tenant, family_id, kind, given_name, family_name, date_of_birth,
               expected_date_of_delivery, gender, nhs_number, upn, postcode, created_at)
             VALUES ($1, $2, $3, 'child', $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            [
                pid.clone().into(),
                tenant.into(),
                family_id.clone().into(),
                c.given_name.clone().into(),
                c.family_name.clone().into(),
                c.date_of_birth.clone().into(),
                c.expected_date_of_delivery.clone().into(),
                c.gender.clone().into(),
                c.nhs_number.clone().into(),
                c.upn.clone().into(),
                pc.into(),
                now.into(),
            ],
        ))
        .await?;
        link(txn, &id, &pid, "child", position).await?;
        position += 1;
        children.push(PersonRef {
            person_id: pid,
            given_name: c.given_name.clone(),
            family_name: c.family_name.clone(),
        });
    }
    for m in &referral.family_members {
        let pid = uuid::Uuid::now_v7().to_string();
        let pc = m
            .address
            .as_ref()
            .map(|a| a.postcode.clone())
            .or_else(|| postcode.clone());
        txn.execute_raw(stmt(
            b,
            "INSERT INTO people (id, tenant, family_id, kind, given_name, family_name, date_of_birth,
               relationship, parental_responsibility, email, phone, postcode, safe_to_contact, created_at)
             VALUES ($1, $2, $3, 'adult', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            [
                pid.clone().into(),
                tenant.into(),
                family_id.clone().into(),
                m.given_name.clone().into(),
                m.family_name.clone().into(),
                m.date_of_birth.clone().into(),
                m.relationship.clone().into(),
                m.parental_responsibility.into(),
                m.email.clone().into(),
                m.phone.clone().into(),
                pc.into(),
                m.safe_to_contact.into(),
                now.into(),
            ],
        ))
        .await?;
        link(txn, &id, &pid, "family_member", position).await?;
        position += 1;
        members.push(PersonRef {
            person_id: pid,
            given_name: m.given_name.clone(),
            family_name: m.family_name.clone(),
        });
    }
    Ok(Some(StoredReferral {
        id,
        tenant: tenant.into(),
        family_id,
        received_at: now,
        referral: referral.clone(),
        children,
        family_members: members,
    }))
}

async fn link(
    txn: &impl ConnectionTrait,
    referral: &str,
    person: &str,
    role: &str,
    position: i32,
) -> Result<(), DbErr> {
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "INSERT INTO referral_people (referral_id, person_id, role, position) VALUES ($1, $2, $3, $4)",
        [referral.into(), person.into(), role.into(), position.into()],
    ))
    .await?;
    Ok(())
}

/// The id of the referral held for (tenant, system, reference).
pub async fn find_by_source(
    db: &impl ConnectionTrait,
    tenant: &str,
    system: &str,
    reference: &str,
) -> Result<Option<(String, chrono::DateTime<chrono::Utc>)>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT id, received_at FROM referrals WHERE tenant = $1 AND source_system = $2 AND source_reference = $3",
            [tenant.into(), system.into(), reference.into()],
        ))
        .await?;
    row.map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .transpose()
}

/// One referral of `tenant` (another tenant's id finds nothing).
pub async fn get(
    db: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<Option<StoredReferral>, DbErr> {
    let b = db.get_database_backend();
    let Some(r) = db
        .query_one_raw(stmt(
            b,
            "SELECT id, tenant, family_id, received_at, document FROM referrals WHERE tenant = $1 AND id = $2",
            [tenant.into(), id.into()],
        ))
        .await?
    else {
        return Ok(None);
    };
    let document: String = r.try_get_by_index(4)?;
    let referral: Referral =
        serde_json::from_str(&document).map_err(|e| DbErr::Custom(e.to_string()))?;
    let people = db
        .query_all_raw(stmt(
            b,
            "SELECT p.id, p.given_name, p.family_name, rp.role FROM referral_people rp
             JOIN people p ON p.id = rp.person_id WHERE rp.referral_id = $1 ORDER BY rp.position",
            [id.into()],
        ))
        .await?;
    let mut children = Vec::new();
    let mut family_members = Vec::new();
    for p in people {
        let person = PersonRef {
            person_id: p.try_get_by_index(0)?,
            given_name: p.try_get_by_index(1)?,
            family_name: p.try_get_by_index(2)?,
        };
        let role: String = p.try_get_by_index(3)?;
        if role == "child" {
            children.push(person)
        } else {
            family_members.push(person)
        }
    }
    Ok(Some(StoredReferral {
        id: r.try_get_by_index(0)?,
        tenant: r.try_get_by_index(1)?,
        family_id: r.try_get_by_index(2)?,
        received_at: r.try_get_by_index(3)?,
        referral,
        children,
        family_members,
    }))
}

/// How many referrals `tenant` holds (tests and the demo).
pub async fn count(db: &impl ConnectionTrait, tenant: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM referrals WHERE tenant = $1",
            [tenant.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}
