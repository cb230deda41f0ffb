//! The NATS accounts the platform needs, generated from its settings and the event catalogue
//! (`earlyhelp nats-config`), so the server's isolation and the code cannot drift apart:
//!
//! - `PLATFORM` holds JetStream and the platform's users. One user per service is allowed to
//!   publish exactly its own events (the catalogue's, of which it is the publisher) and its own
//!   consumers' dead letters, and to use the JetStream API only on the streams it creates or
//!   reads. `earlyhelp` is every service's rights together (one process running them all);
//!   `earlyhelp-operator` is the operator's command (`earlyhelp dlq`, `republish`), which may
//!   publish on any subject of the namespace.
//! - `COUNCIL_<TENANT>`, one per council, holds that council's upstream systems: the user
//!   `<tenant>-upstream` may publish only `<ns>.<tenant>.inbound.>` (imported from `PLATFORM`,
//!   which exports it to that account alone, so JetStream stores it and acknowledges) and hear
//!   only its own council's `referral_rejected`. It can read no stream and publish no event or
//!   command. Because no other credential can publish on a council's inbound subjects, the
//!   subject's council is the credential's: intake records an upstream message's actor as
//!   `system:<tenant>-upstream`, never what its `Eh-Actor` header claims.
//!
//! Passwords are never in the file: each user's is the environment variable the file names
//! (`$EH_NATS_PASSWORD_<USER>`), which nats-server reads at start.
use crate::targets::Target;
use eh_bus::StreamSpec;
use eh_bus::subjects;
use eh_proto::catalogue::{self, Source};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The platform's account.
pub const PLATFORM_ACCOUNT: &str = "PLATFORM";
/// The user that runs every service in one process.
pub const PLATFORM_USER: &str = "earlyhelp";
/// The operator's user.
pub const OPERATOR_USER: &str = "earlyhelp-operator";

/// A council's account.
pub fn council_account(tenant: &str) -> String {
    format!("COUNCIL_{}", env_token(tenant))
}

/// A council's upstream systems' user.
pub fn upstream_user(tenant: &str) -> String {
    format!("{tenant}-upstream")
}

/// The environment variable holding `user`'s password.
pub fn password_var(user: &str) -> String {
    format!("EH_NATS_PASSWORD_{}", env_token(user))
}

fn env_token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// What one platform user may do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rights {
    pub publish: BTreeSet<String>,
    pub subscribe: BTreeSet<String>,
}

impl Rights {
    fn add(&mut self, other: &Rights) {
        self.publish.extend(other.publish.iter().cloned());
        self.subscribe.extend(other.subscribe.iter().cloned());
    }
}

fn flatten(spec: StreamSpec) -> Vec<StreamSpec> {
    if spec.partitions.is_empty() {
        vec![spec]
    } else {
        spec.partitions
    }
}

/// Exactly what `target` publishes and the JetStream API it needs, in namespace `ns` with
/// councils `tenants`; `None` for a service that does not use the bus.
pub fn service_rights(target: Target, ns: &str, tenants: &[&str]) -> Option<Rights> {
    let name = target.name();
    let owned: Vec<StreamSpec> =
        subjects::per_council(ns, target.service().streams(ns), tenants.iter().copied())
            .into_iter()
            .flat_map(flatten)
            .collect();
    let subs = target.service().subscriptions();
    let mut read: Vec<StreamSpec> = Vec::new();
    for sub in &subs {
        let stream = match sub.source {
            Source::Event(e) => subjects::service_stream(ns, e.service),
            Source::Inbound(_) => subjects::inbound_streams(ns, tenants.iter().copied()),
        };
        read.extend(flatten(stream));
    }
    if owned.is_empty() && read.is_empty() {
        return None;
    }
    let mut r = Rights::default();
    r.subscribe.insert("_INBOX.>".into());
    r.publish.insert("$JS.API.INFO".into());
    for e in catalogue::EVENTS.iter().filter(|e| e.publisher == name) {
        r.publish.insert(e.filter(ns));
    }
    for sub in &subs {
        r.publish.insert(subjects::dead_letter(ns, sub.consumer));
    }
    // Created (or updated, or counted) at start: the streams it publishes to and reads from,
    // and, for a stream kept per council, whether it is still kept whole from before.
    let whole = subjects::inbound_stream(ns).name;
    if owned
        .iter()
        .chain(&read)
        .any(|s| s.name.starts_with(&format!("{whole}_")))
    {
        r.publish.insert(format!("$JS.API.STREAM.INFO.{whole}"));
    }
    for s in owned.iter().chain(&read) {
        for api in ["STREAM.CREATE", "STREAM.UPDATE", "STREAM.INFO"] {
            r.publish.insert(format!("$JS.API.{api}.{}", s.name));
        }
    }
    // Its durable consumers: created, read, pulled from and acknowledged.
    for s in &read {
        let n = &s.name;
        r.publish.insert(format!("$JS.API.CONSUMER.CREATE.{n}"));
        r.publish.insert(format!("$JS.API.CONSUMER.CREATE.{n}.>"));
        r.publish
            .insert(format!("$JS.API.CONSUMER.DURABLE.CREATE.{n}.>"));
        r.publish.insert(format!("$JS.API.CONSUMER.INFO.{n}.>"));
        r.publish.insert(format!("$JS.API.CONSUMER.MSG.NEXT.{n}.>"));
        r.publish.insert(format!("$JS.ACK.{n}.>"));
    }
    Some(r)
}

/// The operator's command: every subject of the namespace and the whole JetStream API.
pub fn operator_rights(ns: &str) -> Rights {
    Rights {
        publish: [format!("{ns}.>"), "$JS.API.>".into(), "$JS.ACK.>".into()].into(),
        subscribe: ["_INBOX.>".to_string()].into(),
    }
}

/// A council's upstream systems: its own inbound subjects; its own referrals' rejections.
pub fn upstream_rights(ns: &str, tenant: &str) -> Rights {
    Rights {
        publish: [format!("{ns}.{tenant}.inbound.>")].into(),
        subscribe: [
            "_INBOX.>".to_string(),
            catalogue::REFERRAL_REJECTED.subject(ns, tenant),
        ]
        .into(),
    }
}

fn list(items: &BTreeSet<String>) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn user(out: &mut String, name: &str, rights: &Rights) {
    let _ = writeln!(
        out,
        "      {{ user: {name:?}, password: ${}, permissions: {{\n          publish: {{ allow: {} }}\n          subscribe: {{ allow: {} }}\n      }} }}",
        password_var(name),
        list(&rights.publish),
        list(&rights.subscribe),
    );
}

/// The `accounts { … }` block for namespace `ns`, councils `tenants` and the services `targets`.
pub fn accounts_conf(ns: &str, tenants: &[&str], targets: &[Target]) -> String {
    let mut out = String::new();
    out.push_str(
        "# Generated by `earlyhelp nats-config` from the platform's settings and event catalogue:\n\
         # regenerate it when councils or services change, do not edit it by hand.\n\
         # PLATFORM holds JetStream and the platform's users (one per service, allowed exactly the\n\
         # subjects it uses; `earlyhelp` runs them all in one process; `earlyhelp-operator` is the\n\
         # operator's command). Each COUNCIL_<TENANT> holds one council's upstream systems: they may\n\
         # publish only <ns>.<tenant>.inbound.> and hear only their own referral_rejected.\n\
         # Each password is the environment variable named (EH_NATS_PASSWORD_<USER>).\n",
    );
    out.push_str("accounts {\n");
    let _ = writeln!(
        out,
        "  {PLATFORM_ACCOUNT} {{\n    jetstream: enabled\n    users: ["
    );
    let mut all = Rights::default();
    for t in targets {
        if let Some(r) = service_rights(*t, ns, tenants) {
            user(&mut out, t.name(), &r);
            all.add(&r);
        }
    }
    user(&mut out, PLATFORM_USER, &all);
    user(&mut out, OPERATOR_USER, &operator_rights(ns));
    out.push_str("    ]\n    exports: [\n");
    for t in tenants {
        let acc = council_account(t);
        let _ = writeln!(
            out,
            "      {{ service: \"{ns}.{t}.inbound.>\", accounts: [{acc}] }}\n      {{ stream: {:?}, accounts: [{acc}] }}",
            catalogue::REFERRAL_REJECTED.subject(ns, t),
        );
    }
    out.push_str("    ]\n  }\n");
    for t in tenants {
        let _ = writeln!(out, "  {} {{\n    users: [", council_account(t));
        user(&mut out, &upstream_user(t), &upstream_rights(ns, t));
        let _ = writeln!(
            out,
            "    ]\n    imports: [\n      {{ service: {{ account: {PLATFORM_ACCOUNT}, subject: \"{ns}.{t}.inbound.>\" }} }}\n      {{ stream: {{ account: {PLATFORM_ACCOUNT}, subject: {:?} }} }}\n    ]\n  }}",
            catalogue::REFERRAL_REJECTED.subject(ns, t),
        );
    }
    out.push_str("}\n");
    out
}

/// [`accounts_conf`] for `settings`: its namespace, its councils, every service.
pub fn for_settings(settings: &eh_platform::Settings) -> String {
    let tenants: Vec<&str> = settings.tenants.keys().map(String::as_str).collect();
    accounts_conf(&settings.bus.namespace, &tenants, Target::ALL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str) -> Target {
        *Target::ALL.iter().find(|t| t.name() == name).unwrap()
    }

    #[test]
    fn a_service_may_publish_its_own_events_only() {
        let intake = service_rights(target("intake"), "eh", &["worcs", "staffs"]).unwrap();
        assert!(intake.publish.contains("eh.*.intake.referral_received"));
        assert!(!intake.publish.iter().any(|s| s.contains(".casework.")));
        assert!(!intake.publish.iter().any(|s| s.contains(".inbound.")));
        // Reads each council's inbound stream, and only the streams it uses.
        assert!(
            intake
                .publish
                .contains("$JS.API.CONSUMER.MSG.NEXT.EH_INBOUND_WORCS.>")
        );
        assert!(intake.publish.contains("$JS.ACK.EH_INBOUND_STAFFS.>"));
        assert!(!intake.publish.iter().any(|s| s.ends_with("EH_INBOUND.>")));
        assert!(!intake.publish.contains("$JS.API.>"));
        let casework = service_rights(target("casework"), "eh", &["worcs"]).unwrap();
        assert!(
            casework
                .publish
                .contains("eh.*.casework.case_state_changed")
        );
        assert!(!casework.publish.contains("eh.*.intake.referral_received"));
    }

    #[test]
    fn a_council_may_publish_its_own_inbound_subjects_only() {
        let r = upstream_rights("eh", "worcs");
        assert_eq!(r.publish, ["eh.worcs.inbound.>".to_string()].into());
        let conf = accounts_conf("eh", &["worcs", "staffs"], Target::ALL);
        assert!(conf.contains("COUNCIL_WORCS {"), "{conf}");
        assert!(conf.contains("{ service: \"eh.staffs.inbound.>\", accounts: [COUNCIL_STAFFS] }"));
        assert!(conf.contains("password: $EH_NATS_PASSWORD_WORCS_UPSTREAM"));
        assert!(conf.contains("\"earlyhelp-operator\""));
    }
}
