//! The inbox: a consumer records each message it handled in the same transaction as the
//! handling's effects, so a redelivery is recognised and skipped.
use crate::Result;
use eh_store::{Rows, stmt};
use sea_orm::ConnectionTrait;
use std::collections::HashSet;

/// The council an inbox key is of: keys are `<tenant>:<id>` ([`crate::Received::key`]).
fn tenant_of(key: &str) -> &str {
    key.split_once(':').map_or("", |(t, _)| t)
}

/// Claims `key` for `consumer` inside the caller's transaction. False: already handled.
///
/// The row is the council's of the key (`<tenant>:<id>`): under row-level security a
/// transaction of another council cannot write it, nor see it.
pub async fn claim(txn: &impl ConnectionTrait, consumer: &str, key: &str) -> Result<bool> {
    let res = txn
        .execute_raw(stmt(
            txn.get_database_backend(),
            "INSERT INTO eh_inbox (consumer, message_key, handled_at, tenant) VALUES ($1, $2, $3, $4)
             ON CONFLICT (consumer, message_key) DO NOTHING",
            [
                consumer.into(),
                key.into(),
                chrono::Utc::now().into(),
                tenant_of(key).into(),
            ],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Claims every key of `keys` for `consumer` inside the caller's transaction, in one round trip
/// per few thousand keys; returns those claimed now (the others were handled before).
pub async fn claim_many(
    txn: &impl ConnectionTrait,
    consumer: &str,
    keys: &[String],
) -> Result<HashSet<String>> {
    let mut rows = Rows::with_tail(
        "INSERT INTO eh_inbox (consumer, message_key, handled_at, tenant)",
        4,
        "ON CONFLICT (consumer, message_key) DO NOTHING RETURNING message_key",
    );
    let now = chrono::Utc::now();
    let mut seen = HashSet::new();
    for k in keys.iter().filter(|k| seen.insert(k.as_str())) {
        rows.push([
            consumer.into(),
            k.clone().into(),
            now.into(),
            tenant_of(k).into(),
        ]);
    }
    let mut claimed = HashSet::new();
    for s in rows.statements(txn.get_database_backend()) {
        for r in txn.query_all_raw(s).await? {
            claimed.insert(r.try_get_by_index::<String>(0)?);
        }
    }
    Ok(claimed)
}
