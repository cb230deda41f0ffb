//! The inbox: a consumer records each message it handled in the same transaction as the
//! handling's effects, so a redelivery is recognised and skipped.
use crate::{Received, Result};
use eh_store::{Rows, stmt};
use sea_orm::{ConnectionTrait, DbBackend};
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

/// The advisory lock that orders a council's destructions in one service's tables against that
/// service's claims (keyed by the schema too: services may share a database).
const DESTROYED_LOCK: &str =
    "SELECT pg_advisory_xact_lock{mode}(hashtext(current_schema() || ':eh_destroyed:' || $1))";

fn destroyed_lock(backend: DbBackend, tenant: &str, shared: bool) -> Option<sea_orm::Statement> {
    (backend == DbBackend::Postgres).then(|| {
        stmt(
            backend,
            &DESTROYED_LOCK.replace("{mode}", if shared { "_shared" } else { "" }),
            [tenant.into()],
        )
    })
}

/// Every UUID written in `bytes` (the platform's ids are UUIDs, and a protobuf payload or JSON
/// document carries them as text), each once.
pub fn uuids_in(bytes: &[u8]) -> Vec<String> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let is_uuid = |w: &[u8]| {
        let mut at = 0;
        for (i, n) in GROUPS.iter().enumerate() {
            if i > 0 {
                if w[at] != b'-' {
                    return false;
                }
                at += 1;
            }
            if !w[at..at + n].iter().all(u8::is_ascii_hexdigit) {
                return false;
            }
            at += n;
        }
        true
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i + 36 <= bytes.len() {
        let w = &bytes[i..i + 36];
        if is_uuid(w) {
            let id = String::from_utf8_lossy(w).to_ascii_lowercase();
            if !out.contains(&id) {
                out.push(id);
            }
            i += 36;
        } else {
            i += 1;
        }
    }
    out
}

/// Records, in the caller's transaction, that council `tenant`'s family with `ids` is destroyed
/// here: from its commit on, [`claim_live`] refuses every message that names one of them. Call it
/// first in the destruction's transaction: on PostgreSQL it waits for the claims under way in the
/// council to commit (their rows are then there to be deleted) and holds new ones until the
/// destruction commits (they then see the ids).
///
/// # Errors
/// The database failed.
pub async fn bury(txn: &impl ConnectionTrait, tenant: &str, ids: &[&str]) -> Result<()> {
    let backend = txn.get_database_backend();
    if let Some(lock) = destroyed_lock(backend, tenant, false) {
        txn.execute_raw(lock).await?;
    }
    let now = chrono::Utc::now();
    let mut rows = Rows::with_tail(
        "INSERT INTO eh_destroyed (tenant, id, destroyed_at)",
        3,
        "ON CONFLICT (tenant, id) DO NOTHING",
    );
    for id in ids.iter().filter(|id| !id.trim().is_empty()) {
        rows.push([tenant.into(), id.to_ascii_lowercase().into(), now.into()]);
    }
    for s in rows.statements(backend) {
        txn.execute_raw(s).await?;
    }
    Ok(())
}

/// Which of `ids` council `tenant` has destroyed here (see [`bury`]), taking the council's
/// destruction lock shared on PostgreSQL, so a destruction under way is waited for.
///
/// # Errors
/// The database failed.
pub async fn destroyed(
    txn: &impl ConnectionTrait,
    tenant: &str,
    ids: &[String],
) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let backend = txn.get_database_backend();
    if let Some(lock) = destroyed_lock(backend, tenant, true) {
        txn.execute_raw(lock).await?;
    }
    let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let mut values: Vec<sea_orm::Value> = vec![tenant.into()];
    values.extend(ids.iter().map(|i| i.clone().into()));
    let rows = txn
        .query_all_raw(stmt(
            backend,
            &format!(
                "SELECT id FROM eh_destroyed WHERE tenant = $1 AND id IN ({})",
                marks.join(", ")
            ),
            values,
        ))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get_by_index::<String>(0).ok())
        .collect())
}

/// As [`claim`], for a message that may be about a destroyed family: false too — with the claim
/// recorded, so it is not looked at again — when its payload names an id its council destroyed
/// here (an event in flight at the destruction, a parked one replayed, a timer's). Consumers
/// whose handling writes about a family claim with this; the destruction's own consumer does
/// not (its order names the ids by design).
///
/// # Errors
/// The database failed.
pub async fn claim_live(
    txn: &impl ConnectionTrait,
    consumer: &str,
    msg: &Received,
) -> Result<bool> {
    let key = msg.key();
    let named = uuids_in(&msg.payload);
    let gone = destroyed(txn, tenant_of(&key), &named).await?;
    if !claim(txn, consumer, &key).await? {
        return Ok(false);
    }
    if !gone.is_empty() {
        tracing::warn!(
            consumer,
            key,
            destroyed_ids = gone.len(),
            "a message about a destroyed family is not handled: nothing of it is recreated"
        );
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::uuids_in;

    #[test]
    fn uuids_are_found_in_any_bytes_each_once() {
        let a = "01a227bb-889e-7358-a373-5aa10234bdcb";
        let b = "01A227BB-88C8-7042-B368-B7EAD84D7DC9";
        let mut bytes = vec![0x0a, 0x24];
        bytes.extend_from_slice(a.as_bytes());
        bytes.extend_from_slice(b"\x12\xff-not-an-id-0123");
        bytes.extend_from_slice(b.as_bytes());
        bytes.extend_from_slice(a.as_bytes());
        bytes.extend_from_slice(b"01a227bb-889e-7358-a373-5aa10234bdc"); // one short
        assert_eq!(uuids_in(&bytes), [a.to_string(), b.to_ascii_lowercase()]);
        assert!(uuids_in(b"").is_empty());
        assert!(uuids_in(&[0xff; 100]).is_empty());
    }
}
