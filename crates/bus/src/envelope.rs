//! The envelope every platform message carries, as headers beside a protobuf payload.
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

pub const H_MSG_ID: &str = "Nats-Msg-Id";
pub const H_ID: &str = "Eh-Id";
pub const H_TYPE: &str = "Eh-Type";
pub const H_SCHEMA: &str = "Eh-Schema-Version";
pub const H_TENANT: &str = "Eh-Tenant";
pub const H_OCCURRED: &str = "Eh-Occurred-At";
pub const H_CORRELATION: &str = "Eh-Correlation-Id";
pub const H_CAUSATION: &str = "Eh-Causation-Id";
pub const H_ACTOR: &str = "Eh-Actor";
pub const H_CONTENT_TYPE: &str = "Content-Type";

/// Who and what a message is about, and where it sits in a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// UUIDv7: unique and time-ordered; the broker's de-duplication id.
    pub id: Uuid,
    /// Fully qualified payload type, e.g. `earlyhelp.intake.v1.ReferralReceived`.
    pub event_type: String,
    pub schema_version: u32,
    pub tenant: String,
    pub occurred_at: DateTime<Utc>,
    /// The first message of the chain (the inbound referral, say).
    pub correlation_id: Uuid,
    /// The message that caused this one.
    pub causation_id: Option<Uuid>,
    /// `person:<sub>`, `system:<name>` or `service:<name>`.
    pub actor: String,
    /// W3C trace context (`traceparent`, `tracestate`).
    pub trace: BTreeMap<String, String>,
}

impl Envelope {
    /// A new message that starts a chain, in the current span's trace.
    pub fn new(event_type: &str, tenant: &str, actor: &str, now: DateTime<Utc>) -> Self {
        let id = Uuid::now_v7();
        Self {
            id,
            event_type: event_type.to_string(),
            schema_version: 1,
            tenant: tenant.to_string(),
            occurred_at: now,
            correlation_id: id,
            causation_id: None,
            actor: actor.to_string(),
            trace: eh_platform::telemetry::current_trace_headers(),
        }
    }

    /// Continues the chain of `cause`: same correlation, caused by it.
    pub fn caused_by(mut self, cause: Option<&Envelope>, cause_key: &str) -> Self {
        if let Some(c) = cause {
            self.correlation_id = c.correlation_id;
            self.causation_id = Some(c.id);
        } else if let Ok(id) = Uuid::parse_str(cause_key) {
            self.correlation_id = id;
            self.causation_id = Some(id);
        }
        self
    }

    pub fn to_headers(&self) -> BTreeMap<String, String> {
        let mut h = self.trace.clone();
        h.insert(H_MSG_ID.into(), self.id.to_string());
        h.insert(H_ID.into(), self.id.to_string());
        h.insert(H_TYPE.into(), self.event_type.clone());
        h.insert(H_SCHEMA.into(), self.schema_version.to_string());
        h.insert(H_TENANT.into(), self.tenant.clone());
        h.insert(H_OCCURRED.into(), self.occurred_at.to_rfc3339());
        h.insert(H_CORRELATION.into(), self.correlation_id.to_string());
        if let Some(c) = self.causation_id {
            h.insert(H_CAUSATION.into(), c.to_string());
        }
        h.insert(H_ACTOR.into(), self.actor.clone());
        h.insert(H_CONTENT_TYPE.into(), "application/protobuf".into());
        h
    }

    /// The envelope in `headers`, when they carry a complete one (upstream messages may not).
    pub fn from_headers(headers: &BTreeMap<String, String>) -> Option<Self> {
        let get = |k: &str| headers.get(k).map(String::as_str);
        Some(Self {
            id: Uuid::parse_str(get(H_ID)?).ok()?,
            event_type: get(H_TYPE)?.to_string(),
            schema_version: get(H_SCHEMA)?.parse().ok()?,
            tenant: get(H_TENANT)?.to_string(),
            occurred_at: DateTime::parse_from_rfc3339(get(H_OCCURRED)?)
                .ok()?
                .with_timezone(&Utc),
            correlation_id: Uuid::parse_str(get(H_CORRELATION)?).ok()?,
            causation_id: get(H_CAUSATION).and_then(|c| Uuid::parse_str(c).ok()),
            actor: get(H_ACTOR).unwrap_or("unknown").to_string(),
            trace: ["traceparent", "tracestate"]
                .iter()
                .filter_map(|k| headers.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect(),
        })
    }
}

/// A message to publish: from the outbox, or a dead letter.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// De-duplication id (`Nats-Msg-Id`).
    pub msg_id: String,
    pub subject: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl OutboundMessage {
    pub fn event(subject: String, envelope: &Envelope, payload: Vec<u8>) -> Self {
        Self {
            msg_id: envelope.id.to_string(),
            subject,
            headers: envelope.to_headers(),
            payload,
        }
    }
}

/// A message as a consumer receives it.
#[derive(Debug, Clone)]
pub struct Received {
    pub subject: String,
    pub headers: BTreeMap<String, String>,
    pub payload: bytes::Bytes,
    /// How many times it has been delivered, this time included.
    pub delivered: u64,
    /// Its sequence in its stream.
    pub stream_seq: u64,
}

impl Received {
    /// What the inbox records: `<tenant>:<id>`, the council of the subject (its second token:
    /// `<ns>.<tenant>.…`, the namespace being one token) and [`Received::id`]. A message id is
    /// unique only within its publisher's council (two councils' hubs may both send `R-1001`),
    /// so the key is scoped to the council; the inbox scopes it to the consumer too.
    pub fn key(&self) -> String {
        format!("{}:{}", self.subject_tenant().unwrap_or(""), self.id())
    }

    /// The message's own id: the event id, else the publisher's message id, else the stream
    /// position (stable across redeliveries of the same stored message). Unique within its
    /// council only: see [`Received::key`].
    pub fn id(&self) -> String {
        self.headers
            .get(H_ID)
            .or_else(|| self.headers.get(H_MSG_ID))
            .cloned()
            .unwrap_or_else(|| format!("seq:{}", self.stream_seq))
    }

    /// The tenant token of the subject (`<ns>.<tenant>.…`).
    pub fn subject_tenant(&self) -> Option<&str> {
        self.subject.split('.').nth(1).filter(|t| !t.is_empty())
    }

    /// Why the message must not be handled as its subject's council's: the envelope's
    /// `Eh-Tenant` names another council than the subject (`<ns>.<tenant>.…`). The subject is
    /// what the broker's permissions vouch for (a council's credential may publish only on its
    /// own subjects), so a message whose header disagrees is forged or misrouted.
    pub fn tenant_mismatch(&self, ns: &str) -> Option<String> {
        let claimed = self.header(H_TENANT)?;
        match crate::subjects::tenant_of(ns, &self.subject) {
            Some(t) if t == claimed => None,
            Some(t) => Some(format!(
                "envelope tenant {claimed:?} does not match the subject's tenant {t:?}"
            )),
            None => Some(format!(
                "envelope tenant {claimed:?} on subject {} without a tenant",
                self.subject
            )),
        }
    }

    pub fn envelope(&self) -> Option<Envelope> {
        Envelope::from_headers(&self.headers)
    }

    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_through_headers() {
        let e = Envelope::new(
            "earlyhelp.intake.v1.ReferralReceived",
            "worcs",
            "system:hub",
            Utc::now(),
        );
        let back = Envelope::from_headers(&e.to_headers()).unwrap();
        assert_eq!(back.id, e.id);
        assert_eq!(back.tenant, "worcs");
        assert_eq!(back.correlation_id, e.id);
        assert_eq!(
            back.occurred_at.timestamp_millis(),
            e.occurred_at.timestamp_millis()
        );
        assert_eq!(e.to_headers()[H_MSG_ID], e.id.to_string());
    }

    #[test]
    fn a_caused_message_keeps_the_correlation() {
        let first = Envelope::new("a", "t", "x", Utc::now());
        let second = Envelope::new("b", "t", "x", Utc::now()).caused_by(Some(&first), "");
        assert_eq!(second.correlation_id, first.id);
        assert_eq!(second.causation_id, Some(first.id));
        assert_ne!(second.id, first.id);
    }

    fn received(subject: &str, headers: &[(&str, &str)]) -> Received {
        Received {
            subject: subject.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            payload: Default::default(),
            delivered: 1,
            stream_seq: 7,
        }
    }

    #[test]
    fn the_inbox_key_is_scoped_to_the_subjects_council() {
        let a = received("eh.worcs.inbound.referral", &[(H_MSG_ID, "R-1001")]);
        let b = received("eh.herts.inbound.referral", &[(H_MSG_ID, "R-1001")]);
        assert_eq!(a.id(), b.id());
        assert_eq!(a.key(), "worcs:R-1001");
        assert_eq!(b.key(), "herts:R-1001");
        let e = received("eh.worcs.intake.x", &[(H_ID, "e1"), (H_MSG_ID, "m1")]);
        assert_eq!(e.key(), "worcs:e1");
        assert_eq!(
            received("eh.worcs.inbound.referral", &[]).key(),
            "worcs:seq:7"
        );
    }

    #[test]
    fn an_envelope_naming_another_council_is_a_mismatch() {
        let ok = received("eh.worcs.casework.x", &[(H_TENANT, "worcs")]);
        assert_eq!(ok.tenant_mismatch("eh"), None);
        let none = received("eh.worcs.inbound.referral", &[]);
        assert_eq!(none.tenant_mismatch("eh"), None);
        let forged = received("eh.herts.casework.x", &[(H_TENANT, "worcs")]);
        let reason = forged.tenant_mismatch("eh").unwrap();
        assert!(
            reason.contains("\"worcs\"") && reason.contains("\"herts\""),
            "{reason}"
        );
        assert!(
            received("other.herts.x", &[(H_TENANT, "herts")])
                .tenant_mismatch("eh")
                .is_some()
        );
    }
}
