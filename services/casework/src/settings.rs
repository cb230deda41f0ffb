//! Casework's own settings: each council's working-day `calendar` and its `service_levels`, read
//! and checked by the platform's shared reader ([`eh_service::council`]).
use eh_service::SettingsKeys;

pub use eh_service::council::{CalendarSettings, ServiceLevelSettings, council_settings};

/// The keys of the configuration casework owns.
pub const KEYS: SettingsKeys = SettingsKeys {
    global: &[],
    per_tenant: eh_service::council::PER_TENANT_KEYS,
};
