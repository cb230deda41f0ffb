//! Intake's own settings: the top-level `intake` section (inbound limits) and each council's
//! `screening` rules (read and checked by [`rules_from_settings`]). The platform
//! hands both over as written; a wrong value stops the process at start, naming its key.
use crate::domain::screening::ScreeningRules;
use eh_platform::Settings;
use eh_service::SettingsKeys;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// The screening rules of every tenant, checked.
///
/// # Errors
/// Names the setting (`tenants.<id>.screening...`) and every problem with it.
pub fn rules_from_settings(
    settings: &Settings,
) -> Result<BTreeMap<String, ScreeningRules>, String> {
    let mut out = BTreeMap::new();
    for (id, t) in &settings.tenants {
        let rules = match t.section("screening") {
            None => ScreeningRules::default(),
            Some(v) => serde_json::from_value::<ScreeningRules>(v.to_json())
                .map_err(|e| format!("tenants.{id}.screening: {e}"))?,
        };
        rules.validate().map_err(|violations| {
            let all: Vec<String> = violations
                .iter()
                .map(|v| format!("tenants.{id}.screening.{v}"))
                .collect();
            all.join("; ")
        })?;
        out.insert(id.clone(), rules);
    }
    Ok(out)
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

    fn settings(screening: Option<serde_json::Value>) -> Settings {
        let mut s = Settings::load(&[], vec![("EH__TENANTS__WORCS__NAME".into(), "W".into())])
            .expect("settings");
        if let (Some(t), Some(v)) = (s.tenants.get_mut("worcs"), screening) {
            let section = eh_platform::config::Section::from_json("tenants.worcs.screening", v)
                .expect("section");
            t.sections.insert("screening".into(), section);
        }
        s
    }

    #[test]
    fn rules_default_when_absent_and_load_when_given() {
        let rules = rules_from_settings(&settings(None)).expect("defaults");
        assert_eq!(rules["worcs"], ScreeningRules::default());
        let given = serde_json::json!({
            "version": "worcs-2026-04",
            "in_area_postcode_prefixes": ["WR", "B60"],
            "early_help_team": {"min_needs": 3},
            "programmes": [{"id": "brfc", "name": "BRFC", "min_headline_problems": 3}]
        });
        let rules = rules_from_settings(&settings(Some(given))).expect("valid");
        assert_eq!(rules["worcs"].version, "worcs-2026-04");
        assert_eq!(rules["worcs"].early_help_team.min_needs, 3);
    }

    #[test]
    fn wrong_rules_name_the_setting() {
        let e = rules_from_settings(&settings(Some(serde_json::json!({"min_needs": 2}))))
            .expect_err("unknown key");
        assert!(e.starts_with("tenants.worcs.screening"), "{e}");
        assert!(e.contains("min_needs"), "{e}");
        let e = rules_from_settings(&settings(Some(
            serde_json::json!({"version": "v", "programmes": [{"id": "Not An Id"}]}),
        )))
        .expect_err("bad programme id");
        assert!(e.starts_with("tenants.worcs.screening."), "{e}");
    }
}
