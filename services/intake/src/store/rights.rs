//! The family's data rights' SQL in intake: the version of the last destruction of a tenant's
//! people (so every replica's matching index reloads, `handlers::held_people`), and a person's
//! details read and corrected (rectification).
use crate::domain::correction::Held;
use crate::store::people::Stamp;
use eh_store::{Migration, stmt};
use sea_orm::{ConnectionTrait, DbErr, Value};

/// The version of the tenant's people at their last destruction (see `people::Stamp`).
pub const MIGRATIONS: &[Migration] = &[Migration {
    owner: "intake",
    version: 40,
    name: "people destroyed at a version (indexes reload)",
    sql: "ALTER TABLE people_versions ADD COLUMN destroyed_at BIGINT NOT NULL DEFAULT 0",
}];

/// Marks the lock holder's version as a destruction's.
pub async fn mark_destroyed(
    txn: &impl ConnectionTrait,
    tenant: &str,
    stamp: Stamp,
) -> Result<(), DbErr> {
    txn.execute_raw(stmt(
        txn.get_database_backend(),
        "UPDATE people_versions SET destroyed_at = $1 WHERE tenant = $2",
        [stamp.version().into(), tenant.into()],
    ))
    .await?;
    Ok(())
}

/// The person as held (not one merged into another).
pub async fn held_person(
    txn: &impl ConnectionTrait,
    tenant: &str,
    person_id: &str,
) -> Result<Option<Held>, DbErr> {
    let row = txn
        .query_one_raw(stmt(
            txn.get_database_backend(),
            "SELECT family_id, given_name, family_name, date_of_birth, nhs_number, email, phone
             FROM people WHERE tenant = $1 AND id = $2 AND merged_into IS NULL",
            [tenant.into(), person_id.into()],
        ))
        .await?;
    row.map(|r| {
        Ok(Held {
            family_id: r.try_get_by_index(0)?,
            given_name: r.try_get_by_index(1)?,
            family_name: r.try_get_by_index(2)?,
            date_of_birth: r.try_get_by_index(3)?,
            nhs_number: r.try_get_by_index(4)?,
            email: r.try_get_by_index(5)?,
            phone: r.try_get_by_index(6)?,
        })
    })
    .transpose()
}

/// Writes a correction's `sets` (column, value) on the person, with the lock's version so every
/// replica's index reads the corrected person.
pub async fn correct(
    txn: &impl ConnectionTrait,
    tenant: &str,
    person_id: &str,
    sets: &[(&'static str, Option<String>)],
    stamp: Stamp,
) -> Result<(), DbErr> {
    const COLUMNS: &[&str] = &[
        "given_name",
        "family_name",
        "date_of_birth",
        "nhs_number",
        "email",
        "phone",
    ];
    let mut sql = String::from("UPDATE people SET ");
    let mut values: Vec<Value> = Vec::new();
    for (col, v) in sets {
        if !COLUMNS.contains(col) {
            return Err(DbErr::Custom(format!("not a correctable column: {col}")));
        }
        values.push(v.clone().into());
        sql.push_str(&format!("{col} = ${}, ", values.len()));
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
    values.push(person_id.into());
    txn.execute_raw(stmt(txn.get_database_backend(), &sql, values))
        .await?;
    Ok(())
}
