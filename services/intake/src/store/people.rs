//! The people a tenant holds, as SQL: the tenant's people lock, the reads that keep a replica's
//! index in step with the table, and the writes of a merge.
//!
//! ## The people lock
//! Every writer of a tenant's people — taking a referral, resolving a candidate — first takes
//! the tenant's row in `people_versions` (`UPDATE … SET version = version + 1 RETURNING`, see
//! [`lock_people`]). The row lock serialises those writers across every replica until they
//! commit, and the number it returns ([`Stamp`]) is written on every person row the
//! transaction inserts or changes (`people.version`). Because writers are serialised, versions
//! commit in order: once a transaction holds the lock, every row with a version below its stamp
//! is committed and no more will appear. So, under the lock, a replica's index is brought up
//! to date with one indexed query for `version` between its watermark and the stamp
//! ([`changed_since`]: changes made by any replica, merges included), and then matched against
//! (the index and its refresh: `handlers::held_people`).
//!
//! The lock also closes a race the index alone could not: two replicas taking referrals for the
//! same new family at once would both see nobody held and both create the people. Serialised,
//! the second sees the first's people and attaches. The cost is that one tenant's writers go
//! one at a time; tenants do not wait for one another (hence batches: `handlers::batch`).
//!
//! Rows written without a version (by a build older than the matching migration, during a
//! rolling upgrade) carry version 0 and are only seen by a full load: restart replicas after one.
use crate::domain::matching::{FamilyMove, HeldPerson, MergePlan, PersonDetails, PersonIndex};
use eh_store::stmt;
use sea_orm::{ConnectionTrait, DbErr};

/// Proof that a transaction holds its tenant's people lock; the version every person row it
/// inserts or changes carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(i64, i64);

impl Stamp {
    pub fn version(self) -> i64 {
        self.0
    }

    /// The version of the last destruction of the tenant's people (`crate::rights`): an index
    /// older than it reloads whole, so no replica matches a referral to a destroyed person.
    pub fn destroyed_at(self) -> i64 {
        self.1
    }
}

/// Takes the tenant's people lock for the rest of `txn` (see the module documentation) and
/// returns the stamp for what it writes.
pub async fn lock_people(txn: &impl ConnectionTrait, tenant: &str) -> Result<Stamp, DbErr> {
    let b = txn.get_database_backend();
    let bump = || {
        stmt(
            b,
            "UPDATE people_versions SET version = version + 1 WHERE tenant = $1
             RETURNING version, destroyed_at",
            [tenant.into()],
        )
    };
    if let Some(r) = txn.query_one_raw(bump()).await? {
        return Ok(Stamp(r.try_get_by_index(0)?, r.try_get_by_index(1)?));
    }
    txn.execute_raw(stmt(
        b,
        "INSERT INTO people_versions (tenant, version) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING",
        [tenant.into()],
    ))
    .await?;
    let r = txn
        .query_one_raw(bump())
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("people_versions row of {tenant}")))?;
    Ok(Stamp(r.try_get_by_index(0)?, r.try_get_by_index(1)?))
}

/// The last committed version of the tenant's people (0 before any).
pub async fn committed_version(db: &impl ConnectionTrait, tenant: &str) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db.get_database_backend(),
            "SELECT version FROM people_versions WHERE tenant = $1",
            [tenant.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}

const PERSON_COLUMNS: &str =
    "id, family_id, given_name, family_name, date_of_birth, postcode, nhs_number, upn, merged_into";

/// A person row as the index takes it; `true` when merged into another (to be removed).
fn held_person(r: &sea_orm::QueryResult) -> Result<(HeldPerson, bool), DbErr> {
    let dob: Option<String> = r.try_get_by_index(4)?;
    let merged: Option<String> = r.try_get_by_index(8)?;
    Ok((
        HeldPerson {
            person_id: r.try_get_by_index(0)?,
            family_id: r.try_get_by_index(1)?,
            details: PersonDetails {
                given_name: r.try_get_by_index(2)?,
                family_name: r.try_get_by_index(3)?,
                date_of_birth: dob
                    .and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
                postcode: r.try_get_by_index(5)?,
                nhs_number: r.try_get_by_index(6)?,
                upn: r.try_get_by_index(7)?,
            },
        },
        merged.is_some(),
    ))
}

/// Rows per page when a tenant's index is loaded whole.
const LOAD_PAGE: i64 = 20_000;

/// Every live person of `tenant` with a version up to `upto`, in pages by id (an index range
/// scan each on `people_tenant_id`; on PostgreSQL that needs the table's statistics, which
/// autovacuum keeps: without any, the planner sorts the whole tenant for every page).
pub async fn load_all(
    db: &impl ConnectionTrait,
    tenant: &str,
    upto: i64,
) -> Result<PersonIndex, DbErr> {
    let b = db.get_database_backend();
    let mut index = PersonIndex::new();
    let mut after = String::new();
    loop {
        let rows = db
            .query_all_raw(stmt(
                b,
                &format!(
                    "SELECT {PERSON_COLUMNS} FROM people
                     WHERE tenant = $1 AND id > $2 AND version <= $3 AND merged_into IS NULL
                     ORDER BY id LIMIT $4"
                ),
                [
                    tenant.into(),
                    after.clone().into(),
                    upto.into(),
                    LOAD_PAGE.into(),
                ],
            ))
            .await?;
        let full = rows.len() as i64 == LOAD_PAGE;
        for r in &rows {
            let (held, _) = held_person(r)?;
            after.clone_from(&held.person_id);
            index.insert(held);
        }
        if !full {
            return Ok(index);
        }
    }
}

/// The people of `tenant` changed after version `after` up to `upto` (by any replica), in the
/// order they were changed: each with `true` when it was merged into another (to be removed
/// from an index), else as it now is.
pub async fn changed_since(
    db: &impl ConnectionTrait,
    tenant: &str,
    after: i64,
    upto: i64,
) -> Result<Vec<(HeldPerson, bool)>, DbErr> {
    db.query_all_raw(stmt(
        db.get_database_backend(),
        &format!(
            "SELECT {PERSON_COLUMNS} FROM people
             WHERE tenant = $1 AND version > $2 AND version <= $3
             ORDER BY version, id"
        ),
        [tenant.into(), after.into(), upto.into()],
    ))
    .await?
    .iter()
    .map(held_person)
    .collect()
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

/// The person `id` is now: itself, or whoever it was merged into (followed a few steps), and
/// that person's family.
pub async fn live_person(
    txn: &impl ConnectionTrait,
    tenant: &str,
    id: &str,
) -> Result<(String, String), DbErr> {
    let mut id = id.to_string();
    for _ in 0..16 {
        let r = txn
            .query_one_raw(stmt(
                txn.get_database_backend(),
                "SELECT family_id, merged_into FROM people WHERE tenant = $1 AND id = $2",
                [tenant.into(), id.clone().into()],
            ))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("person {id}")))?;
        let family: String = r.try_get_by_index(0)?;
        match r.try_get_by_index::<Option<String>>(1)? {
            Some(next) => id = next,
            None => return Ok((id, family)),
        }
    }
    Err(DbErr::Custom(format!("person {id}: merged too many times")))
}

/// Merges the plan's new person into the held one, stamped with the lock's version: the new
/// record is kept, marked `merged_into`, so ids other services hold still resolve; the
/// referrals' links point at the held person (a referral naming both keeps one link).
pub async fn merge_person(
    txn: &impl ConnectionTrait,
    tenant: &str,
    plan: &MergePlan,
    stamp: Stamp,
) -> Result<(), DbErr> {
    let b = txn.get_database_backend();
    let (new_id, held) = (plan.new_person.as_str(), plan.held_person.as_str());
    txn.execute_raw(stmt(
        b,
        "UPDATE people SET merged_into = $1, version = $2 WHERE tenant = $3 AND id = $4",
        [
            held.into(),
            stamp.version().into(),
            tenant.into(),
            new_id.into(),
        ],
    ))
    .await?;
    // Unsafe to contact on either record: unsafe on the one kept (never the other way).
    txn.execute_raw(stmt(
        b,
        "UPDATE people SET safe_to_contact = $1 WHERE tenant = $2 AND id = $3
           AND EXISTS (SELECT 1 FROM people o WHERE o.tenant = $2 AND o.id = $4
                       AND o.safe_to_contact = $1)",
        [false.into(), tenant.into(), held.into(), new_id.into()],
    ))
    .await?;
    // A referral naming both keeps one link, to the held person.
    txn.execute_raw(stmt(
        b,
        "DELETE FROM referral_people WHERE person_id = $1
           AND referral_id IN (SELECT referral_id FROM referral_people WHERE person_id = $2)",
        [new_id.into(), held.into()],
    ))
    .await?;
    txn.execute_raw(stmt(
        b,
        "UPDATE referral_people SET person_id = $1 WHERE person_id = $2",
        [held.into(), new_id.into()],
    ))
    .await?;
    Ok(())
}

/// Whether `id` of `tenant` is marked unsafe to contact.
pub async fn is_unsafe(txn: &impl ConnectionTrait, tenant: &str, id: &str) -> Result<bool, DbErr> {
    let row = txn
        .query_one_raw(stmt(
            txn.get_database_backend(),
            "SELECT safe_to_contact FROM people WHERE tenant = $1 AND id = $2",
            [tenant.into(), id.into()],
        ))
        .await?;
    Ok(match row {
        Some(r) => r.try_get_by_index::<Option<bool>>(0)? == Some(false),
        None => false,
    })
}

/// Marks held people unsafe to contact (a referral said so). Only ever to `false`: a later
/// referral that does not say so, or says they are safe, does not clear it. Under the people lock
/// (`_stamp`); `people` are (tenant, person id) pairs.
pub async fn mark_unsafe(
    txn: &impl ConnectionTrait,
    _stamp: Stamp,
    people: &[(String, String)],
) -> Result<(), DbErr> {
    for chunk in people.chunks(1000) {
        let mut values: Vec<sea_orm::Value> = vec![false.into()];
        for (tenant, id) in chunk {
            values.push(tenant.clone().into());
            values.push(id.clone().into());
        }
        txn.execute_raw(stmt(
            txn.get_database_backend(),
            &format!(
                "UPDATE people SET safe_to_contact = $1 WHERE (tenant, id) IN ({})",
                eh_store::tuples(2, chunk.len(), 2)
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// Moves a family's people and referrals into another family, stamped with the lock's
/// version; the family row is kept, marked `merged_into`.
pub async fn move_family(
    txn: &impl ConnectionTrait,
    tenant: &str,
    family: &FamilyMove,
    stamp: Stamp,
) -> Result<(), DbErr> {
    let b = txn.get_database_backend();
    let (from, to) = (family.from.as_str(), family.to.as_str());
    txn.execute_raw(stmt(
        b,
        "UPDATE people SET family_id = $1, version = $2 WHERE tenant = $3 AND family_id = $4",
        [
            to.into(),
            stamp.version().into(),
            tenant.into(),
            from.into(),
        ],
    ))
    .await?;
    txn.execute_raw(stmt(
        b,
        "UPDATE referrals SET family_id = $1 WHERE tenant = $2 AND family_id = $3",
        [to.into(), tenant.into(), from.into()],
    ))
    .await?;
    txn.execute_raw(stmt(
        b,
        "UPDATE families SET merged_into = $1 WHERE tenant = $2 AND id = $3",
        [to.into(), tenant.into(), from.into()],
    ))
    .await?;
    Ok(())
}
