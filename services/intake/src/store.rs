//! Intake's own tables: referrals, families, people and who is on which referral.
use crate::domain::matching::{ReferralMatch, ReferralRole, previous_referral_within_window};
use crate::matching::Stamp;
use eh_proto::intake::v1::{Child, FamilyMember, PersonRef, Referral};
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DbErr};

/// Intake's tables, then what matching added to them (see `matching.rs`).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    crate::matching::MIGRATION,
];

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
    /// The family was held before this referral (someone on it was matched to a held person).
    pub known_family: bool,
    /// Another referral of the family was received in the 12 months before this one.
    pub re_referral: bool,
    /// That referral (the most recent one in the window).
    pub previous_referral_id: Option<String>,
}

/// Every referral of a family of `tenant`: (id, received at).
pub async fn family_referrals(
    db: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, DbErr> {
    db.query_all_raw(stmt(
        db.get_database_backend(),
        "SELECT id, received_at FROM referrals WHERE tenant = $1 AND family_id = $2",
        [tenant.into(), family_id.into()],
    ))
    .await?
    .iter()
    .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
    .collect()
}

/// Inserts the referral unless (tenant, system, reference) is held; `None` when it was.
///
/// `matched` says, for each person named, whether they are a held person (linked, not created
/// again) or new (created in the referral's family); the referral is filed under the held
/// family when there is one, else under a new family. Every decision is stored with its score
/// and fields (and grey-zone candidates for a practitioner). `stamp` proves the transaction
/// holds the tenant's people lock; new people carry its version.
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    txn: &impl ConnectionTrait,
    tenant: &str,
    referral: &Referral,
    document: &serde_json::Value,
    actor: &str,
    now: chrono::DateTime<chrono::Utc>,
    matched: &ReferralMatch,
    stamp: Stamp,
) -> Result<Option<StoredReferral>, DbErr> {
    let b = txn.get_database_backend();
    let id = uuid::Uuid::now_v7().to_string();
    let source = referral.source.clone().unwrap_or_default();
    let referrer = referral.referrer.clone().unwrap_or_default();
    let postcode = referral.address.as_ref().map(|a| a.postcode.clone());
    let (family_id, known_family) = match &matched.family_id {
        Some(f) => (f.clone(), true),
        None => (uuid::Uuid::now_v7().to_string(), false),
    };
    let previous_referral_id = if known_family {
        let history = family_referrals(txn, tenant, &family_id).await?;
        previous_referral_within_window(&history, now).map(str::to_string)
    } else {
        None
    };
    let re_referral = previous_referral_id.is_some();
    // A new family first (the referral refers to it), then claim the natural key.
    if !known_family {
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
    }
    let res = txn
        .execute_raw(stmt(
            b,
            "INSERT INTO referrals (id, tenant, source_system, source_reference, route, family_id,
               referrer_name, referrer_agency, referrer_email, significant_harm_risk, consent_obtained,
               submitted_at, received_at, received_by, document, known_family, re_referral,
               previous_referral_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
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
                known_family.into(),
                re_referral.into(),
                previous_referral_id.clone().into(),
            ],
        ))
        .await?;
    if res.rows_affected() == 0 {
        // Held already: undo the family we just added (the caller's transaction still commits
        // its inbox row).
        if !known_family {
            txn.execute_raw(stmt(
                b,
                "DELETE FROM families WHERE id = $1",
                [family_id.into()],
            ))
            .await?;
        }
        return Ok(None);
    }
    let mut children = Vec::new();
    let mut members = Vec::new();
    for (position, m) in (0_i32..).zip(&matched.people) {
        let (pid, given_name, family_name) = match (m.role, m.attached_to()) {
            (ReferralRole::Child, attached) => {
                let Some(c) = referral.children.get(m.index) else {
                    continue;
                };
                let pid = match attached {
                    Some((held, _)) => held.to_string(),
                    None => insert_child(txn, tenant, &family_id, c, &postcode, stamp, now).await?,
                };
                (pid, c.given_name.clone(), c.family_name.clone())
            }
            (ReferralRole::FamilyMember, attached) => {
                let Some(a) = referral.family_members.get(m.index) else {
                    continue;
                };
                let pid = match attached {
                    Some((held, _)) => held.to_string(),
                    None => insert_adult(txn, tenant, &family_id, a, &postcode, stamp, now).await?,
                };
                (pid, a.given_name.clone(), a.family_name.clone())
            }
        };
        link(txn, &id, &pid, m.role.as_str(), position).await?;
        crate::matching::record_decision(txn, tenant, &id, position, &pid, m, now).await?;
        let person = PersonRef {
            person_id: pid,
            given_name,
            family_name,
        };
        match m.role {
            ReferralRole::Child => children.push(person),
            ReferralRole::FamilyMember => members.push(person),
        }
    }
    Ok(Some(StoredReferral {
        id,
        tenant: tenant.into(),
        family_id,
        received_at: now,
        referral: referral.clone(),
        children,
        family_members: members,
        known_family,
        re_referral,
        previous_referral_id,
    }))
}

async fn insert_child(
    txn: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
    c: &Child,
    family_postcode: &Option<String>,
    stamp: Stamp,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, DbErr> {
    let pid = uuid::Uuid::now_v7().to_string();
    let pc = c
        .address
        .as_ref()
        .map(|a| a.postcode.clone())
        .or_else(|| family_postcode.clone());
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "INSERT INTO people (id, tenant, family_id, kind, given_name, family_name, date_of_birth,
           expected_date_of_delivery, gender, nhs_number, upn, postcode, created_at, version)
         VALUES ($1, $2, $3, 'child', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        [
            pid.clone().into(),
            tenant.into(),
            family_id.into(),
            c.given_name.clone().into(),
            c.family_name.clone().into(),
            c.date_of_birth.clone().into(),
            c.expected_date_of_delivery.clone().into(),
            c.gender.clone().into(),
            c.nhs_number.clone().into(),
            c.upn.clone().into(),
            pc.into(),
            now.into(),
            stamp.version().into(),
        ],
    ))
    .await?;
    Ok(pid)
}

async fn insert_adult(
    txn: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
    m: &FamilyMember,
    family_postcode: &Option<String>,
    stamp: Stamp,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, DbErr> {
    let pid = uuid::Uuid::now_v7().to_string();
    let pc = m
        .address
        .as_ref()
        .map(|a| a.postcode.clone())
        .or_else(|| family_postcode.clone());
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "INSERT INTO people (id, tenant, family_id, kind, given_name, family_name, date_of_birth,
           relationship, parental_responsibility, email, phone, postcode, safe_to_contact, created_at,
           version)
         VALUES ($1, $2, $3, 'adult', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        [
            pid.clone().into(),
            tenant.into(),
            family_id.into(),
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
            stamp.version().into(),
        ],
    ))
    .await?;
    Ok(pid)
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
            "SELECT id, tenant, family_id, received_at, document, known_family, re_referral, previous_referral_id
             FROM referrals WHERE tenant = $1 AND id = $2",
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
        known_family: r.try_get_by_index(5)?,
        re_referral: r.try_get_by_index(6)?,
        previous_referral_id: r.try_get_by_index(7)?,
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

/// How many people `tenant` holds (people merged into another record are not counted).
pub async fn count_people(db: &impl ConnectionTrait, tenant: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM people WHERE tenant = $1 AND merged_into IS NULL",
            [tenant.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}
