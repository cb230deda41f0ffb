//! Referrals as stored: one per (tenant, source.system, source.reference), filed under a
//! family, with the people it names.
use eh_proto::intake::v1::{PersonRef, Referral};
use eh_store::stmt;
use sea_orm::{ConnectionTrait, DbErr};
use std::collections::HashMap;

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

/// The referrals held for any of `sources` ((system, reference) pairs) of `tenant`: the id and
/// when it was received, by source.
pub async fn find_by_sources(
    db: &impl ConnectionTrait,
    tenant: &str,
    sources: &[(String, String)],
) -> Result<HashMap<(String, String), (String, chrono::DateTime<chrono::Utc>)>, DbErr> {
    let mut found = HashMap::new();
    // A chunk's pairs and the tenant stay far below every bound-parameter limit.
    for chunk in sources.chunks(1000) {
        let mut values: Vec<sea_orm::Value> = vec![tenant.into()];
        for (system, reference) in chunk {
            values.push(system.clone().into());
            values.push(reference.clone().into());
        }
        let rows = db
            .query_all_raw(stmt(
                db.get_database_backend(),
                &format!(
                    "SELECT source_system, source_reference, id, received_at FROM referrals
                     WHERE tenant = $1 AND (source_system, source_reference) IN ({})",
                    eh_store::tuples(2, chunk.len(), 2)
                ),
                values,
            ))
            .await?;
        for r in rows {
            found.insert(
                (r.try_get_by_index(0)?, r.try_get_by_index(1)?),
                (r.try_get_by_index(2)?, r.try_get_by_index(3)?),
            );
        }
    }
    Ok(found)
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

/// Where referral `id` of `tenant` is filed: its family, and whether that family was held
/// before the referral (someone on it was matched).
pub async fn filing(
    txn: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<(String, bool), DbErr> {
    let r = txn
        .query_one_raw(stmt(
            txn.get_database_backend(),
            "SELECT family_id, known_family FROM referrals WHERE tenant = $1 AND id = $2",
            [tenant.into(), id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("referral {id}")))?;
    Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?))
}

/// The ids of every referral of a family of `tenant`.
pub async fn family_referral_ids(
    txn: &impl ConnectionTrait,
    tenant: &str,
    family_id: &str,
) -> Result<Vec<String>, DbErr> {
    txn.query_all_raw(stmt(
        txn.get_database_backend(),
        "SELECT id FROM referrals WHERE tenant = $1 AND family_id = $2",
        [tenant.into(), family_id.into()],
    ))
    .await?
    .iter()
    .map(|r| r.try_get_by_index::<String>(0))
    .collect()
}

/// Marks referral `id` of `tenant` as of a known family, and a re-referral of `previous` when
/// there is one.
pub async fn mark_known_family(
    txn: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
    previous: Option<&str>,
) -> Result<(), DbErr> {
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "UPDATE referrals SET known_family = TRUE, re_referral = $1, previous_referral_id = $2
         WHERE tenant = $3 AND id = $4",
        [
            previous.is_some().into(),
            previous.map(str::to_string).into(),
            tenant.into(),
            id.into(),
        ],
    ))
    .await?;
    Ok(())
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
