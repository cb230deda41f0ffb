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
//!
//! The Helm chart renders the same accounts from a rights table ([`rights_table`], the chart's
//! `files/nats-rights.json`, written by `earlyhelp nats-rights`): these accounts with the
//! namespace and the council as placeholders, which the chart expands for its values' councils.
use crate::targets::Target;
use eh_bus::StreamSpec;
use eh_bus::subjects;
use eh_proto::catalogue::{self, Source};
use serde::{Deserialize, Serialize};
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
    // Records, as a destruction completes, reads the dead letters and the events in every
    // stream's replay window and removes those carrying the family's ids (the one service that
    // may: every other only parks its own dead letters and reads its own consumers).
    if name == eh_records::SERVICE {
        let dlq = subjects::dead_letter_stream(ns).name;
        for api in ["STREAM.MSG.GET", "STREAM.MSG.DELETE", "DIRECT.GET"] {
            r.publish.insert(format!("$JS.API.{api}.{dlq}"));
        }
        for s in eh_records::handlers::event_streams(ns, tenants) {
            for api in ["STREAM.INFO", "STREAM.MSG.GET", "STREAM.MSG.DELETE"] {
                r.publish.insert(format!("$JS.API.{api}.{}", s.name));
            }
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

/// One user of an account: its name and what it may publish and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user: String,
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

impl User {
    fn new(user: &str, rights: &Rights) -> Self {
        Self {
            user: user.to_string(),
            publish: rights.publish.iter().cloned().collect(),
            subscribe: rights.subscribe.iter().cloned().collect(),
        }
    }
}

/// A subject an account exports (`kind` `service` or `stream`) to `accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub kind: String,
    pub subject: String,
    pub accounts: Vec<String>,
}

/// A subject an account imports (`kind` `service` or `stream`) from `account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    pub kind: String,
    pub account: String,
    pub subject: String,
}

/// One NATS account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub jetstream: bool,
    pub users: Vec<User>,
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
}

/// The header of the generated file: what it is and how to regenerate it.
pub const HEADER: &[&str] = &[
    "# Generated from the platform's settings and event catalogue (`earlyhelp nats-config`, or the",
    "# Helm chart from files/nats-rights.json): regenerate it when councils or services change, do",
    "# not edit it by hand. PLATFORM holds JetStream and the platform's users (one per service,",
    "# allowed exactly the subjects it uses; `earlyhelp` runs them all in one process;",
    "# `earlyhelp-operator` is the operator's command). Each COUNCIL_<TENANT> holds one council's",
    "# upstream systems: they may publish only <ns>.<tenant>.inbound.> and hear only their own",
    "# referral_rejected. Each password is the environment variable named (EH_NATS_PASSWORD_<USER>).",
];

/// Every account for namespace `ns`, councils `tenants` and the services `targets`.
pub fn accounts(ns: &str, tenants: &[&str], targets: &[Target]) -> Vec<Account> {
    let mut users = Vec::new();
    let mut all = Rights::default();
    for t in targets {
        let mut r = service_rights(*t, ns, tenants).unwrap_or_else(connect_only);
        if crate::audit::has_trail(*t) {
            r.add(&checkpoint_rights(ns, t.name()));
        }
        users.push(User::new(t.name(), &r));
        all.add(&r);
    }
    users.push(User::new(PLATFORM_USER, &all));
    users.push(User::new(OPERATOR_USER, &operator_rights(ns)));
    let mut exports = Vec::new();
    for t in tenants {
        let acc = council_account(t);
        exports.push(Export {
            kind: "service".into(),
            subject: format!("{ns}.{t}.inbound.>"),
            accounts: vec![acc.clone()],
        });
        exports.push(Export {
            kind: "stream".into(),
            subject: catalogue::REFERRAL_REJECTED.subject(ns, t),
            accounts: vec![acc],
        });
    }
    let mut out = vec![Account {
        name: PLATFORM_ACCOUNT.into(),
        jetstream: true,
        users,
        exports,
        imports: vec![],
    }];
    for t in tenants {
        out.push(Account {
            name: council_account(t),
            jetstream: false,
            users: vec![User::new(&upstream_user(t), &upstream_rights(ns, t))],
            exports: vec![],
            imports: vec![
                Import {
                    kind: "service".into(),
                    account: PLATFORM_ACCOUNT.into(),
                    subject: format!("{ns}.{t}.inbound.>"),
                },
                Import {
                    kind: "stream".into(),
                    account: PLATFORM_ACCOUNT.into(),
                    subject: catalogue::REFERRAL_REJECTED.subject(ns, t),
                },
            ],
        });
    }
    out
}

/// A service's audit checkpoints (`src/audit.rs`): its own subject, and the stream created (with
/// deletes and purges denied) or looked up — never updated, purged or deleted.
pub fn checkpoint_rights(ns: &str, service: &str) -> Rights {
    let stream = crate::audit::checkpoint_stream(ns);
    Rights {
        publish: [
            crate::audit::checkpoint_subject(ns, service),
            format!("$JS.API.STREAM.CREATE.{stream}"),
            format!("$JS.API.STREAM.INFO.{stream}"),
        ]
        .into(),
        subscribe: ["_INBOX.>".to_string()].into(),
    }
}

/// A service that does not use the bus still connects (the process's readiness checks NATS):
/// it may only hear replies and ask JetStream's account information. (An empty allow list
/// would allow everything.)
fn connect_only() -> Rights {
    Rights {
        publish: ["$JS.API.INFO".to_string()].into(),
        subscribe: ["_INBOX.>".to_string()].into(),
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// `accounts` as nats-server configuration: the `accounts { … }` block, after [`HEADER`].
pub fn render(accounts: &[Account]) -> String {
    let mut out = String::new();
    for line in HEADER {
        let _ = writeln!(out, "{line}");
    }
    out.push_str("accounts {\n");
    for a in accounts {
        let _ = writeln!(out, "  {} {{", a.name);
        if a.jetstream {
            out.push_str("    jetstream: enabled\n");
        }
        out.push_str("    users: [\n");
        for u in &a.users {
            let _ = writeln!(
                out,
                "      {{ user: {:?}, password: ${}, permissions: {{\n          publish: {{ allow: {} }}\n          subscribe: {{ allow: {} }}\n      }} }}",
                u.user,
                password_var(&u.user),
                list(&u.publish),
                list(&u.subscribe),
            );
        }
        out.push_str("    ]\n");
        if !a.exports.is_empty() {
            out.push_str("    exports: [\n");
            for e in &a.exports {
                let _ = writeln!(
                    out,
                    "      {{ {}: {:?}, accounts: [{}] }}",
                    e.kind,
                    e.subject,
                    e.accounts.join(", ")
                );
            }
            out.push_str("    ]\n");
        }
        if !a.imports.is_empty() {
            out.push_str("    imports: [\n");
            for i in &a.imports {
                let _ = writeln!(
                    out,
                    "      {{ {}: {{ account: {}, subject: {:?} }} }}",
                    i.kind, i.account, i.subject
                );
            }
            out.push_str("    ]\n");
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

/// The `accounts { … }` block for namespace `ns`, councils `tenants` and the services `targets`.
pub fn accounts_conf(ns: &str, tenants: &[&str], targets: &[Target]) -> String {
    render(&accounts(ns, tenants, targets))
}

/// [`accounts_conf`] for `settings`: its namespace, its councils, every service.
pub fn for_settings(settings: &eh_platform::Settings) -> String {
    let tenants: Vec<&str> = settings.tenants.keys().map(String::as_str).collect();
    accounts_conf(&settings.bus.namespace, &tenants, Target::ALL)
}

// --- The rights table: the accounts with the namespace and the council as placeholders --------

/// Where the chart keeps the rights table (relative to the repository).
pub const RIGHTS_FILE: &str = "charts/earlyhelp/files/nats-rights.json";

const NS_MARK: &str = "nsmarkq";
const TENANT_MARK: &str = "tenantmarkq";

/// The rights table (`earlyhelp nats-rights`, kept in the chart as [`RIGHTS_FILE`]): every
/// account of [`accounts`] for every service, with the namespace and the council written as
/// placeholders — `{ns}` (`bus.namespace`), `{NS}` (the same as a stream-name prefix: upper
/// case, `_` for anything not a letter or digit), `{tenant}` and `{TENANT}` (a council id, and
/// the same as in a stream or account name). In every list, an item that is not per council
/// (a string without `{tenant}`/`{TENANT}`, an object none of whose own strings has one) is kept
/// once, and the per-council items follow, repeated for each council in turn (everything inside
/// such an item is that council's); users' `publish` and `subscribe` lists are then sorted (byte
/// order) — [`expand`] does exactly that,
/// and so does the chart's `earlyhelp.natsAccounts` template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightsTable {
    pub about: Vec<String>,
    pub header: Vec<String>,
    pub accounts: Vec<Account>,
}

fn placeholders(s: &str) -> String {
    s.replace(NS_MARK, "{ns}")
        .replace(&env_token(NS_MARK), "{NS}")
        .replace(TENANT_MARK, "{tenant}")
        .replace(&env_token(TENANT_MARK), "{TENANT}")
}

/// The rights table of every service of the table.
pub fn rights_table() -> RightsTable {
    let marked = accounts(NS_MARK, &[TENANT_MARK], Target::ALL);
    let json = serde_json::to_string(&marked).unwrap_or_default();
    let accounts: Vec<Account> = serde_json::from_str(&placeholders(&json)).unwrap_or_default();
    RightsTable {
        about: vec![
            "The NATS accounts of the platform (see src/natsconf.rs), with {ns} = bus.namespace, {NS} = the same upper-cased with _ for anything not a letter or digit, {tenant}/{TENANT} = a council id likewise.".into(),
            "In every list, items that are not per council (a string without {tenant}/{TENANT}, an object none of whose own string fields has one) are kept once, then the per-council items repeated for each council in turn, everything inside them that council's; users' publish and subscribe lists are then sorted (byte order).".into(),
            "Generated by `earlyhelp nats-rights` (`just nats-rights`); a test fails when it is stale. Do not edit by hand.".into(),
        ],
        header: HEADER.iter().map(|s| (*s).to_string()).collect(),
        accounts,
    }
}

/// The rights table as written in the chart (pretty JSON, a final newline).
pub fn rights_json() -> String {
    let mut s = serde_json::to_string_pretty(&rights_table()).unwrap_or_default();
    s.push('\n');
    s
}

/// Whether an item of a list is repeated per council: a string naming `{tenant}`/`{TENANT}`, or
/// an object one of whose own strings does (an account's name, an export's subject; lists inside
/// it are expanded on their own).
fn per_council(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    let names = |s: &str| s.contains("{tenant}") || s.contains("{TENANT}");
    match v {
        Value::String(s) => names(s),
        Value::Object(m) => m.values().any(|v| v.as_str().is_some_and(names)),
        _ => false,
    }
}

/// `v` with the placeholders replaced: `tenant` is the council of the item being expanded
/// (`None` outside a per-council item, whose lists then repeat their per-council items for each
/// of `tenants`).
fn substitute(
    v: &serde_json::Value,
    ns: &str,
    tenant: Option<&str>,
    tenants: &[&str],
) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            let mut s = s.replace("{ns}", ns).replace("{NS}", &env_token(ns));
            if let Some(t) = tenant {
                s = s.replace("{tenant}", t).replace("{TENANT}", &env_token(t));
            }
            Value::String(s)
        }
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .filter(|i| tenant.is_some() || !per_council(i))
                .map(|i| substitute(i, ns, tenant, tenants))
                .collect();
            if tenant.is_none() {
                for t in tenants {
                    out.extend(
                        items
                            .iter()
                            .filter(|i| per_council(i))
                            .map(|i| substitute(i, ns, Some(t), tenants)),
                    );
                }
            }
            Value::Array(out)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), substitute(v, ns, tenant, tenants)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The accounts `table` describes for namespace `ns` and councils `tenants` (at least one).
pub fn expand(table: &RightsTable, ns: &str, tenants: &[&str]) -> Vec<Account> {
    let v = serde_json::to_value(&table.accounts).unwrap_or_default();
    let mut accounts: Vec<Account> =
        serde_json::from_value(substitute(&v, ns, None, tenants)).unwrap_or_default();
    for a in &mut accounts {
        for u in &mut a.users {
            u.publish.sort();
            u.subscribe.sort();
        }
    }
    accounts
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

    /// The gateway reads casework's events for its webhooks and records' destruction orders, and
    /// publishes only its confirmations of destructions and its own consumers' dead letters.
    #[test]
    fn the_gateway_reads_casework_and_records_and_publishes_its_confirmations_only() {
        let conf = accounts("eh", &["worcs"], Target::ALL);
        let gateway = conf[0].users.iter().find(|u| u.user == "gateway").unwrap();
        for stream in ["EH_CASEWORK", "EH_RECORDS"] {
            assert!(
                gateway.publish.contains(&format!("$JS.ACK.{stream}.>")),
                "{stream}"
            );
        }
        for p in &gateway.publish {
            assert!(
                p.starts_with("$JS.")
                    && (p.contains("EH_CASEWORK")
                        || p.contains("EH_RECORDS")
                        || p.contains("EH_GATEWAY")
                        || p.contains("EH_DLQ")
                        || p == "$JS.API.INFO"
                        || p.contains("AUDIT"))
                    || p == "eh.dlq.gateway_case_state_changed"
                    || p == "eh.dlq.gateway_destruction_ordered"
                    || p == "eh.*.gateway.family_records_destroyed"
                    || p.starts_with("eh.audit.gateway"),
                "the gateway may publish {p}"
            );
            assert!(!p.contains("MSG.GET") && !p.contains("MSG.DELETE"), "{p}");
        }
        assert!(
            gateway
                .publish
                .contains(&"eh.*.gateway.family_records_destroyed".to_string())
        );
        assert_eq!(gateway.subscribe, ["_INBOX.>"]);
    }

    /// Only records (and the operator) may read and remove messages from the streams: records
    /// removes the dead letters and events carrying a destroyed family's ids.
    #[test]
    fn only_records_may_discard_dead_letters() {
        let conf = accounts("eh", &["worcs"], Target::ALL);
        for stream in [
            "EH_DLQ",
            "EH_INTAKE",
            "EH_INBOUND_WORCS",
            "EH_NOTIFICATIONS",
        ] {
            for u in conf.iter().flat_map(|a| &a.users) {
                let removes = u
                    .publish
                    .contains(&format!("$JS.API.STREAM.MSG.DELETE.{stream}"));
                let expected = [eh_records::SERVICE, PLATFORM_USER].contains(&u.user.as_str());
                if u.user != OPERATOR_USER {
                    assert_eq!(removes, expected, "{} on {stream}", u.user);
                }
            }
        }
        // Records' own stream (orders and confirmations: ids) is not among those it erases.
        let records = conf[0].users.iter().find(|u| u.user == "records").unwrap();
        assert!(
            !records
                .publish
                .contains(&"$JS.API.STREAM.MSG.DELETE.EH_RECORDS".to_string())
        );
    }

    /// Each service with an audit trail may add checkpoints to the stream, never change it.
    #[test]
    fn checkpoints_may_be_added_not_removed() {
        let conf = accounts("eh", &["worcs"], Target::ALL);
        let casework = conf[0].users.iter().find(|u| u.user == "casework").unwrap();
        assert!(casework.publish.contains(&"eh.audit.casework".to_string()));
        assert!(!casework.publish.contains(&"eh.audit.intake".to_string()));
        for u in conf.iter().flat_map(|a| &a.users) {
            if u.user == OPERATOR_USER {
                continue;
            }
            for p in &u.publish {
                assert!(
                    !(p.contains("EH_AUDIT")
                        && ["UPDATE", "DELETE", "PURGE"].iter().any(|w| p.contains(w))),
                    "{}: {p}",
                    u.user
                );
            }
        }
    }

    /// The table, expanded for any namespace and councils, gives exactly the accounts generated
    /// for them directly (names with `-` included: they become `_` in stream and account names).
    #[test]
    fn the_rights_table_expands_to_the_generated_accounts() {
        let table = rights_table();
        let text = serde_json::to_string(&table).unwrap();
        assert!(!text.contains(NS_MARK) && !text.contains(TENANT_MARK));
        assert!(text.contains("{NS}_INBOUND_{TENANT}"), "{text}");
        for (ns, tenants) in [
            ("eh", vec!["worcs"]),
            ("eh", vec!["staffs", "worcs"]),
            ("eh-t1", vec!["a-b", "herts", "worcs"]),
        ] {
            assert_eq!(
                render(&expand(&table, ns, &tenants)),
                accounts_conf(ns, &tenants, Target::ALL),
                "{ns} {tenants:?}"
            );
        }
    }

    fn repo_file(rel: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The chart's copy of the table is what the code generates now: regenerate it with
    /// `just nats-rights` when a service's events, subscriptions or streams change.
    #[test]
    fn the_charts_rights_table_is_fresh() {
        assert!(
            repo_file(RIGHTS_FILE) == rights_json(),
            "{RIGHTS_FILE} is stale: run `just nats-rights`"
        );
    }

    /// infra/nats/accounts.conf is `earlyhelp nats-config` for the example councils (worcs and
    /// staffs, namespace eh): regenerate it with `just nats-rights`.
    #[test]
    fn infra_accounts_conf_is_fresh() {
        assert!(
            repo_file("infra/nats/accounts.conf")
                == accounts_conf("eh", &["staffs", "worcs"], Target::ALL),
            "infra/nats/accounts.conf is stale: run `just nats-rights`"
        );
    }

    /// The chart tests compare what Helm renders for namespace eh-t1 and councils a-b and herts
    /// with this file: `earlyhelp nats-config` for them (`just nats-rights`).
    #[test]
    fn the_chart_tests_golden_accounts_are_fresh() {
        assert!(
            repo_file("charts/tests/golden/nats-accounts-eh-t1.conf")
                == accounts_conf("eh-t1", &["a-b", "herts"], Target::ALL),
            "charts/tests/golden/nats-accounts-eh-t1.conf is stale: run `just nats-rights`"
        );
    }
}
