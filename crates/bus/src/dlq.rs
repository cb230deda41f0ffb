//! Dead letters: a message that cannot be handled is parked on `<ns>.dlq.<consumer>` with the
//! reason and its original subject and headers; an operator lists and replays them.
use crate::envelope::H_MSG_ID;
use crate::subjects;
use crate::transport::{StoredMessage, Transport};
use crate::{OutboundMessage, Received, Result};
use std::collections::BTreeMap;

pub const H_REASON: &str = "Eh-Dlq-Reason";
pub const H_SUBJECT: &str = "Eh-Dlq-Subject";
pub const H_CONSUMER: &str = "Eh-Dlq-Consumer";
pub const H_ATTEMPTS: &str = "Eh-Dlq-Attempts";
pub const H_PARKED_AT: &str = "Eh-Dlq-Parked-At";

/// A parked message.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub seq: u64,
    pub consumer: String,
    pub original_subject: String,
    pub reason: String,
    pub attempts: u64,
    pub parked_at: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl DeadLetter {
    fn from_stored(m: StoredMessage) -> Self {
        let h = |k: &str| m.headers.get(k).cloned().unwrap_or_default();
        Self {
            seq: m.seq,
            consumer: h(H_CONSUMER),
            original_subject: h(H_SUBJECT),
            reason: h(H_REASON),
            attempts: h(H_ATTEMPTS).parse().unwrap_or(0),
            parked_at: h(H_PARKED_AT),
            headers: m.headers,
            payload: m.payload,
        }
    }
}

/// Header values must be one line.
fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    flat.chars().take(2000).collect()
}

/// Parks `msg` for `consumer` with `reason`.
pub async fn park(
    transport: &dyn Transport,
    ns: &str,
    consumer: &str,
    msg: &Received,
    reason: &str,
) -> Result<()> {
    let mut headers = msg.headers.clone();
    headers.insert(H_REASON.into(), one_line(reason));
    headers.insert(H_SUBJECT.into(), msg.subject.clone());
    headers.insert(H_CONSUMER.into(), consumer.into());
    headers.insert(H_ATTEMPTS.into(), msg.delivered.to_string());
    headers.insert(H_PARKED_AT.into(), chrono::Utc::now().to_rfc3339());
    let msg_id = format!("dlq:{consumer}:{}", msg.key());
    headers.insert(H_MSG_ID.into(), msg_id.clone());
    transport
        .publish(&OutboundMessage {
            msg_id,
            subject: subjects::dead_letter(ns, consumer),
            headers,
            payload: msg.payload.to_vec(),
        })
        .await
}

/// Parked messages, oldest first.
pub async fn list(transport: &dyn Transport, ns: &str, limit: usize) -> Result<Vec<DeadLetter>> {
    transport
        .ensure_streams(&[subjects::dead_letter_stream(ns)])
        .await?;
    Ok(transport
        .list(&subjects::dead_letter_stream(ns), limit)
        .await?
        .into_iter()
        .map(DeadLetter::from_stored)
        .collect())
}

/// Publishes parked message `seq` again on its original subject (under a fresh broker message id,
/// keeping its event id, so the consumer's inbox still recognises it), then removes it.
pub async fn replay(transport: &dyn Transport, ns: &str, seq: u64) -> Result<DeadLetter> {
    let all = list(transport, ns, usize::MAX).await?;
    let dl = all
        .into_iter()
        .find(|d| d.seq == seq)
        .ok_or_else(|| crate::Error::NotFound(format!("dead letter {seq}")))?;
    let mut headers = dl.headers.clone();
    for k in [H_REASON, H_SUBJECT, H_CONSUMER, H_ATTEMPTS, H_PARKED_AT] {
        headers.remove(k);
    }
    let msg_id = format!("replay:{}:{}", seq, uuid::Uuid::now_v7());
    headers.insert(H_MSG_ID.into(), msg_id.clone());
    transport
        .publish(&OutboundMessage {
            msg_id,
            subject: dl.original_subject.clone(),
            headers,
            payload: dl.payload.clone(),
        })
        .await?;
    transport
        .delete(&subjects::dead_letter_stream(ns), seq)
        .await?;
    Ok(dl)
}
