//! The inbox: a consumer records each message it handled in the same transaction as the
//! handling's effects, so a redelivery is recognised and skipped.
use crate::Result;
use eh_store::stmt;
use sea_orm::ConnectionTrait;

/// Claims `key` for `consumer` inside the caller's transaction. False: already handled.
pub async fn claim(txn: &impl ConnectionTrait, consumer: &str, key: &str) -> Result<bool> {
    let res = txn
        .execute_raw(stmt(
            txn.get_database_backend(),
            "INSERT INTO eh_inbox (consumer, message_key, handled_at) VALUES ($1, $2, $3)
             ON CONFLICT (consumer, message_key) DO NOTHING",
            [consumer.into(), key.into(), chrono::Utc::now().into()],
        ))
        .await?;
    Ok(res.rows_affected() == 1)
}
