//! Subject and stream names: `<ns>.<tenant>.<service>.<event>`, `<ns>.<tenant>.inbound.<kind>`,
//! `<ns>.dlq.<consumer>`, and NATS wildcard matching for the embedded transport.
use crate::transport::{Retention, StreamSpec};

/// `<ns>.<tenant>.<service>.<event>`
pub fn event(ns: &str, tenant: &str, service: &str, event: &str) -> String {
    format!("{ns}.{tenant}.{service}.{event}")
}

/// `<ns>.<tenant>.inbound.<kind>`
pub fn inbound(ns: &str, tenant: &str, kind: &str) -> String {
    format!("{ns}.{tenant}.inbound.{kind}")
}

/// `<ns>.dlq.<consumer>`
pub fn dead_letter(ns: &str, consumer: &str) -> String {
    format!("{ns}.dlq.{consumer}")
}

/// The tenant token of a subject under `ns` (`<ns>.<tenant>.…`).
pub fn tenant_of<'a>(ns: &str, subject: &'a str) -> Option<&'a str> {
    let rest = subject.strip_prefix(ns)?.strip_prefix('.')?;
    rest.split('.').next().filter(|t| !t.is_empty())
}

fn stream_name(ns: &str, part: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}_{}", clean(ns), clean(part))
}

/// The stream holding every event `service` publishes, for all tenants.
pub fn service_stream(ns: &str, service: &str) -> StreamSpec {
    StreamSpec {
        name: stream_name(ns, service),
        subjects: vec![format!("{ns}.*.{service}.>")],
        retention: Retention::ReplayWindow,
    }
}

/// The stream of what upstream systems publish.
pub fn inbound_stream(ns: &str) -> StreamSpec {
    StreamSpec {
        name: stream_name(ns, "inbound"),
        subjects: vec![format!("{ns}.*.inbound.>")],
        retention: Retention::ReplayWindow,
    }
}

/// The dead-letter stream: kept until an operator replays or discards each one, never expired.
pub fn dead_letter_stream(ns: &str) -> StreamSpec {
    StreamSpec {
        name: stream_name(ns, "dlq"),
        subjects: vec![format!("{ns}.dlq.*")],
        retention: Retention::UntilRemoved,
    }
}

/// NATS subject matching: `*` matches one token, `>` one or more trailing tokens.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches(
            "eh.*.intake.>",
            "eh.worcs.intake.referral_received"
        ));
        assert!(matches(
            "eh.*.intake.referral_received",
            "eh.worcs.intake.referral_received"
        ));
        assert!(!matches("eh.*.intake.>", "eh.worcs.intake"));
        assert!(!matches("eh.*.intake.>", "eh.worcs.consent.x"));
        assert!(!matches("eh.a", "eh.a.b"));
        assert!(matches("eh.a.b", "eh.a.b"));
    }

    #[test]
    fn tenant_token() {
        assert_eq!(tenant_of("eh", "eh.worcs.inbound.referral"), Some("worcs"));
        assert_eq!(tenant_of("eh", "ehx.worcs.inbound.referral"), None);
        assert_eq!(service_stream("eh-t1", "intake").name, "EH_T1_INTAKE");
    }
}
