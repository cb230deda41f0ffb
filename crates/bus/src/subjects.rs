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
        partitions: vec![],
    }
}

/// The stream of what upstream systems publish.
pub fn inbound_stream(ns: &str) -> StreamSpec {
    StreamSpec {
        name: stream_name(ns, "inbound"),
        subjects: vec![format!("{ns}.*.inbound.>")],
        retention: Retention::ReplayWindow,
        partitions: vec![],
    }
}

/// The stream of what upstream systems publish, kept by NATS in one stream per council
/// (`<NS>_INBOUND_<TENANT>` on `<ns>.<tenant>.inbound.>`), for each of `tenants`: JetStream
/// de-duplicates by `Nats-Msg-Id` within a stream, and each council's upstream systems number
/// their messages in their own namespace.
pub fn inbound_streams<'a>(ns: &str, tenants: impl IntoIterator<Item = &'a str>) -> StreamSpec {
    let mut spec = inbound_stream(ns);
    spec.partitions = tenants
        .into_iter()
        .map(|t| StreamSpec {
            name: stream_name(ns, &format!("inbound_{t}")),
            subjects: vec![format!("{ns}.{t}.inbound.>")],
            retention: Retention::ReplayWindow,
            partitions: vec![],
        })
        .collect();
    spec
}

/// `streams` with the inbound stream kept per council ([`inbound_streams`]).
pub fn per_council<'a>(
    ns: &str,
    streams: Vec<StreamSpec>,
    tenants: impl IntoIterator<Item = &'a str> + Clone,
) -> Vec<StreamSpec> {
    let inbound = inbound_stream(ns);
    streams
        .into_iter()
        .map(|s| {
            if s == inbound {
                inbound_streams(ns, tenants.clone())
            } else {
                s
            }
        })
        .collect()
}

/// `filter` narrowed to the council of `partition` (its subjects' tenant token): `None` when
/// the filter names another council.
pub fn narrow_to(filter: &str, partition: &StreamSpec) -> Option<String> {
    let tenant = partition.subjects.first()?.split('.').nth(1)?;
    let mut tokens: Vec<&str> = filter.split('.').collect();
    match tokens.get(1) {
        Some(&"*") => tokens[1] = tenant,
        Some(t) if *t == tenant => {}
        _ => return None,
    }
    Some(tokens.join("."))
}

/// The dead-letter stream: kept until an operator replays or discards each one, never expired.
pub fn dead_letter_stream(ns: &str) -> StreamSpec {
    StreamSpec {
        name: stream_name(ns, "dlq"),
        subjects: vec![format!("{ns}.dlq.*")],
        retention: Retention::UntilRemoved,
        partitions: vec![],
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

    #[test]
    fn inbound_is_kept_per_council() {
        let s = inbound_streams("eh", ["worcs", "herts"]);
        assert_eq!(s.name, "EH_INBOUND");
        let names: Vec<_> = s.partitions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["EH_INBOUND_WORCS", "EH_INBOUND_HERTS"]);
        assert_eq!(s.partitions[1].subjects, ["eh.herts.inbound.>"]);
        let herts = &s.partitions[1];
        assert_eq!(
            narrow_to("eh.*.inbound.referral", herts).as_deref(),
            Some("eh.herts.inbound.referral")
        );
        assert_eq!(
            narrow_to("eh.herts.inbound.>", herts).as_deref(),
            Some("eh.herts.inbound.>")
        );
        assert_eq!(narrow_to("eh.worcs.inbound.>", herts), None);
        let all = per_council(
            "eh",
            vec![service_stream("eh", "intake"), inbound_stream("eh")],
            ["worcs"],
        );
        assert_eq!(all[0], service_stream("eh", "intake"));
        assert_eq!(all[1].partitions.len(), 1);
    }
}
