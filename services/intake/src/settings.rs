//! Intake's own settings: the top-level `intake` section (inbound limits) and each council's
//! `screening` rules (read and checked by [`crate::screening::rules_from_settings`]). The platform
//! hands both over as written; a wrong value stops the process at start, naming its key.
use eh_platform::Settings;
use eh_service::SettingsKeys;
use serde::{Deserialize, Serialize};

/// The keys of the configuration intake owns.
pub const KEYS: SettingsKeys = SettingsKeys {
    global: &["intake"],
    per_tenant: &["screening"],
};

/// `intake`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeSettings {
    /// Inbound documents larger than this are rejected unread.
    pub max_payload_bytes: usize,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        Self {
            max_payload_bytes: 256 * 1024,
        }
    }
}

impl IntakeSettings {
    /// The `intake` section of `settings`; the defaults when it is absent.
    ///
    /// # Errors
    /// A wrong value, naming its key (`intake.max_payload_bytes`).
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        match settings.section("intake") {
            None => Ok(Self::default()),
            Some(s) => s.read().map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Settings {
        Settings::load(&[], env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("settings")
    }

    #[test]
    fn defaults_values_and_errors_that_name_the_key() {
        assert_eq!(
            IntakeSettings::from_settings(&load(&[]))
                .unwrap()
                .max_payload_bytes,
            256 * 1024
        );
        let s = load(&[("EH__INTAKE__MAX_PAYLOAD_BYTES", "1024")]);
        assert_eq!(
            IntakeSettings::from_settings(&s).unwrap().max_payload_bytes,
            1024
        );
        let e = IntakeSettings::from_settings(&load(&[("EH__INTAKE__MAX_PAYLOAD_BYTES", "big")]))
            .unwrap_err();
        assert!(e.contains("intake.max_payload_bytes"), "{e}");
        let e =
            IntakeSettings::from_settings(&load(&[("EH__INTAKE__MAX_BYTES", "1")])).unwrap_err();
        assert!(e.contains("max_bytes"), "{e}");
    }
}
