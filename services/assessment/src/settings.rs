//! Assessment's own settings: the top-level `assessment` section, where consent's gRPC API is
//! asked what a reader may see (`eh_service::consent::ConsentSettings`).
use eh_service::SettingsKeys;

/// The keys of the configuration assessment owns.
pub const KEYS: SettingsKeys = SettingsKeys {
    global: &["assessment"],
    per_tenant: &[],
};

/// The section's name.
pub const SECTION: &str = "assessment";
