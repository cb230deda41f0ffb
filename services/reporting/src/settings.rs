//! What reporting reads of the settings, none of it its own: each council's calendar and service
//! levels (`tenants.<id>.calendar`, `tenants.<id>.service_levels`, read and checked as casework
//! reads them) and its localities (`tenants.<id>.allocation.localities`, the ones allocation
//! matches providers by), so a council's figures use the same days and places as its clocks and
//! allocations.
use crate::domain::{Council, Localities};
use eh_service::SettingsKeys;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The keys of the configuration reporting owns: none (it reads sections other services own).
pub const KEYS: SettingsKeys = SettingsKeys {
    global: &[],
    per_tenant: &[],
};

/// The part of `tenants.<id>.allocation` reporting reads (allocation checks the rest).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LocalitySettings {
    /// Locality name → postcode areas, districts or sectors.
    pub localities: BTreeMap<String, Vec<String>>,
}

/// Every council's rules for its report, checked.
///
/// # Errors
/// A wrong value, naming its key.
pub fn councils(settings: &eh_platform::Settings) -> Result<BTreeMap<String, Council>, String> {
    settings
        .tenants
        .iter()
        .map(|(id, t)| {
            let (calendar, levels) = eh_service::council::council_settings(id, t)?;
            let localities: LocalitySettings = match t.section("allocation") {
                None => LocalitySettings::default(),
                Some(s) => s.read().map_err(|e| e.to_string())?,
            };
            Ok((
                id.clone(),
                Council {
                    calendar,
                    screening_days: levels.screening_decision_days,
                    assessment_days: levels.assessment_days,
                    waiting_list_days: levels.waiting_list_days,
                    localities: Localities(localities.localities),
                },
            ))
        })
        .collect()
}
