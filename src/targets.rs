//! The services one process can run: **the table**. Every command that lists, migrates, starts or
//! checks services goes through [`SERVICES`]; adding a service is a crate implementing
//! [`eh_service::Service`] and one line here.
use eh_service::Service;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Every service, in start order.
pub const SERVICES: &[Target] = &[
    Target(&eh_intake::Service),
    Target(&eh_consent::Service),
    Target(&eh_casework::Service),
    Target(&eh_notifications::Service),
    Target(&eh_allocation::Service),
    Target(&eh_assessment::Service),
    Target(&eh_reporting::Service),
    Target(&eh_records::Service),
    Target(&eh_gateway::Service),
];

/// One service of [`SERVICES`], as `--target` names it.
#[derive(Clone, Copy)]
pub struct Target(pub &'static dyn Service);

impl Target {
    /// Every service of the table (`--target all`).
    pub const ALL: &[Target] = SERVICES;

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The service's descriptor.
    pub fn service(self) -> &'static dyn Service {
        self.0
    }

    pub fn migrations(self) -> Vec<eh_store::Migration> {
        self.0.migrations()
    }

    pub fn streams(self, ns: &str) -> Vec<eh_bus::StreamSpec> {
        self.0.streams(ns)
    }

    /// The service named `name`.
    ///
    /// # Errors
    /// When no service has that name (the message lists them).
    pub fn named(name: &str) -> Result<Target, String> {
        name.parse()
    }

    /// Every name of the table, comma-separated (help texts and errors).
    pub fn names() -> String {
        SERVICES
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `all` or a comma-separated list of service names.
    pub fn parse_list(s: &str) -> Result<Vec<Target>, String> {
        if s == "all" {
            return Ok(Self::ALL.to_vec());
        }
        s.split(',').map(|t| t.trim().parse()).collect()
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown target {s:?}; one of: all, {}", Self::names()))
    }
}

impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Target {}

impl Hash for Target {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({})", self.name())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Refuses settings that neither the platform nor any service of the table reads (as the
/// platform refuses an unknown key of its own), then lets each of `targets` check its sections.
///
/// # Errors
/// The first unknown or wrong key, named.
pub fn check_settings(settings: &eh_platform::Settings, targets: &[Target]) -> Result<(), String> {
    let claimed_global: Vec<&str> = SERVICES
        .iter()
        .flat_map(|t| t.0.settings_keys().global.iter().copied())
        .collect();
    let claimed_tenant: Vec<&str> = SERVICES
        .iter()
        .flat_map(|t| t.0.settings_keys().per_tenant.iter().copied())
        .collect();
    for key in settings.sections.keys() {
        if !claimed_global.contains(&key.as_str()) {
            return Err(format!(
                "configuration: unknown key `{key}` (neither the platform's nor a service's)"
            ));
        }
    }
    for (id, t) in &settings.tenants {
        for key in t.sections.keys() {
            if !claimed_tenant.contains(&key.as_str()) {
                return Err(format!(
                    "configuration: unknown key `tenants.{id}.{key}` (neither the platform's nor a service's)"
                ));
            }
        }
    }
    for t in targets {
        t.0.check_settings(settings).map_err(|e| {
            // A section read by the platform's reader says "configuration:" already.
            let e = e.strip_prefix("configuration: ").unwrap_or(&e);
            format!("configuration: {e}")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_tokens_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for t in SERVICES {
            assert!(seen.insert(t.name()), "{} twice in the table", t.name());
            assert!(eh_platform::config::is_token(t.name()), "{}", t.name());
            assert_eq!(Target::named(t.name()), Ok(*t));
        }
        let e = Target::named("meetings").unwrap_err();
        assert!(e.contains(&Target::names()), "{e}");
    }

    /// Each service's migrations: every owner's versions unique and rising (a collision would
    /// otherwise show only on a fresh database).
    #[test]
    fn every_services_migrations_are_ordered_and_unique_per_owner() {
        for t in SERVICES {
            let list = t.migrations();
            assert!(!list.is_empty(), "{t}");
            if let Err(e) = eh_store::check_migrations(&list) {
                panic!("{t}: {e}");
            }
            // The service's own tables are its own.
            assert!(list.iter().any(|m| m.owner == t.name()), "{t}");
        }
        eh_store::check_migrations(eh_bus::embedded::MIGRATIONS).expect("the embedded bus");
    }

    /// The descriptor's subscriptions are the catalogue's, and each reads a stream the service
    /// creates.
    #[test]
    fn every_service_reads_only_streams_it_creates() {
        for t in SERVICES {
            let streams: Vec<String> = t.streams("eh").into_iter().map(|s| s.name).collect();
            for sub in t.0.subscriptions() {
                let stream = match sub.source {
                    eh_proto::catalogue::Source::Event(e) => {
                        eh_bus::subjects::service_stream("eh", e.service).name
                    }
                    eh_proto::catalogue::Source::Inbound(_) => {
                        eh_bus::subjects::inbound_stream("eh").name
                    }
                };
                assert!(
                    streams.contains(&stream),
                    "{t}: {} reads {stream}",
                    sub.consumer
                );
            }
            // Every service serves gRPC (the gateway, whose API is HTTP, its part in the
            // family's data rights).
            assert!(!t.0.grpc_services().is_empty(), "{t}");
        }
        let all: usize = SERVICES.iter().map(|t| t.0.subscriptions().len()).sum();
        assert_eq!(
            all,
            eh_proto::catalogue::SUBSCRIPTIONS.len(),
            "a consumer of no service"
        );
    }

    /// The chart's targets are the table's: the schema's `targets` (which refuses any other
    /// name; besides the table's, only names it declares planned), the entries of `values.yaml`
    /// and the chart README's list of known targets.
    #[test]
    fn the_charts_targets_are_the_table() {
        let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/earlyhelp");
        let mut table: Vec<&str> = SERVICES.iter().map(|t| t.name()).collect();
        table.sort_unstable();

        let schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(chart.join("values.schema.json")).expect("schema"),
        )
        .expect("schema JSON");
        let targets = &schema["properties"]["targets"];
        assert_eq!(
            targets["additionalProperties"], false,
            "the schema refuses other names"
        );
        // Its names are the table's and those kept for services to come, each once.
        let planned: Vec<&str> = schema["definitions"]["plannedTargets"]["enum"]
            .as_array()
            .expect("definitions.plannedTargets.enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for name in &table {
            assert!(
                !planned.contains(name),
                "{name} runs: it is no longer planned"
            );
        }
        let mut in_schema: Vec<&str> = targets["properties"]
            .as_object()
            .expect("targets.properties")
            .keys()
            .map(String::as_str)
            .collect();
        in_schema.sort_unstable();
        let mut expected: Vec<&str> = table.iter().chain(&planned).copied().collect();
        expected.sort_unstable();
        assert_eq!(
            in_schema, expected,
            "charts/earlyhelp/values.schema.json targets: the table's services and the planned ones"
        );

        // values.yaml: the keys indented two spaces under `targets:`.
        let values = std::fs::read_to_string(chart.join("values.yaml")).expect("values");
        let mut in_values: Vec<&str> = values
            .lines()
            .skip_while(|l| *l != "targets:")
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
            .filter(|l| {
                l.starts_with("  ") && !l.starts_with("   ") && !l.trim_start().starts_with('#')
            })
            .filter_map(|l| l.trim().strip_suffix(':'))
            .collect();
        in_values.sort_unstable();
        assert_eq!(in_values, table, "charts/earlyhelp/values.yaml targets");

        let readme = std::fs::read_to_string(chart.join("README.md")).expect("chart README");
        let known = readme
            .split("Known targets: ")
            .nth(1)
            .and_then(|rest| rest.split(". ").next())
            .expect("the chart README's \"Known targets: …\" sentence");
        let mut in_readme: Vec<&str> = known
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .filter(|w| !w.is_empty() && *w != "and")
            .collect();
        in_readme.sort_unstable();
        assert_eq!(in_readme, table, "charts/earlyhelp/README.md known targets");
    }
}
