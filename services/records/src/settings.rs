//! What records reads of the settings: its own section `records` (how often retention is swept,
//! where each service's gRPC API is, how long a service may take to answer a subject access) and
//! each council's retention policy `tenants.<id>.retention`.
use crate::domain::{Policy, Rule};
use eh_service::SettingsKeys;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const KEYS: SettingsKeys = SettingsKeys {
    global: &["records"],
    per_tenant: &["retention"],
};

/// The services a subject access asks and a destruction waits for.
pub const SERVICES: &[&str] = &[
    "intake",
    "consent",
    "casework",
    "assessment",
    "allocation",
    "notifications",
    "reporting",
    "gateway",
];

/// `records`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsSettings {
    /// How often every council's retention is evaluated.
    pub sweep_every_ms: u64,
    /// Each service's gRPC API (`intake = "http://intake:50051"`); a service not named is on this
    /// process's own listener (embedded and monolithic modes).
    pub service_urls: BTreeMap<String, String>,
    /// How long one service may take to answer a subject access.
    pub timeout_ms: u64,
}

impl Default for RecordsSettings {
    fn default() -> Self {
        Self {
            sweep_every_ms: 3_600_000,
            service_urls: BTreeMap::new(),
            timeout_ms: 10_000,
        }
    }
}

/// `tenants.<id>.retention`: `rule` is `youngest_child_age` (kept until the family's youngest
/// child is `years` old, and every case closed) or `after_closure` (kept `years` and `days` after
/// the family's last case closed).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    pub rule: String,
    #[serde(default)]
    pub years: u32,
    #[serde(default)]
    pub days: u32,
}

/// Records' own section, checked.
///
/// # Errors
/// A wrong value, naming its key.
pub fn records(settings: &eh_platform::Settings) -> Result<RecordsSettings, String> {
    let s: RecordsSettings = match settings.section("records") {
        None => RecordsSettings::default(),
        Some(s) => s.read().map_err(|e| e.to_string())?,
    };
    if s.sweep_every_ms == 0 {
        return Err("records.sweep_every_ms: must be at least 1".into());
    }
    if s.timeout_ms == 0 {
        return Err("records.timeout_ms: must be at least 1".into());
    }
    for (name, url) in &s.service_urls {
        if !SERVICES.contains(&name.as_str()) {
            return Err(format!(
                "records.service_urls.{name}: not a service holding a family's records (one of {})",
                SERVICES.join(", ")
            ));
        }
        if !["http://", "https://"].iter().any(|p| url.starts_with(p)) {
            return Err(format!(
                "records.service_urls.{name}: must be an http:// or https:// URL"
            ));
        }
    }
    Ok(s)
}

/// Each council's retention policy (a council without one destroys nothing), checked.
///
/// # Errors
/// A wrong value, naming its key.
pub fn policies(settings: &eh_platform::Settings) -> Result<BTreeMap<String, Policy>, String> {
    let mut out = BTreeMap::new();
    for (id, t) in &settings.tenants {
        let Some(section) = t.section("retention") else {
            continue;
        };
        let r: RetentionSettings = section.read().map_err(|e| e.to_string())?;
        let rule = match r.rule.as_str() {
            "youngest_child_age" => Rule::YoungestChildAge,
            "after_closure" => Rule::AfterClosure,
            other => {
                return Err(format!(
                    "tenants.{id}.retention.rule: {other:?} is not a rule (youngest_child_age or after_closure)"
                ));
            }
        };
        if rule == Rule::YoungestChildAge && r.years == 0 {
            return Err(format!(
                "tenants.{id}.retention.years: youngest_child_age needs an age in years"
            ));
        }
        if r.years > 120 {
            return Err(format!("tenants.{id}.retention.years: at most 120"));
        }
        out.insert(
            id.clone(),
            Policy {
                rule,
                years: r.years,
                days: r.days,
            },
        );
    }
    Ok(out)
}
