//! Assessment's own settings: the top-level `assessment` section, where consent's gRPC API is
//! asked what a reader may see (`eh_service::consent::ConsentSettings`), and each council's
//! `tenants.<id>.assessment` (its distance-travelled scale) with the council's working days
//! (`tenants.<id>.calendar`, for actions due in a number of working days).
use crate::domain::outcomes::Scale;
use eh_service::SettingsKeys;
use serde::Deserialize;

/// The keys of the configuration assessment owns or reads.
pub const KEYS: SettingsKeys = SettingsKeys {
    global: &["assessment"],
    per_tenant: &["assessment", "calendar", "service_levels"],
};

/// The section's name.
pub const SECTION: &str = "assessment";

/// `tenants.<id>.assessment`: the council's distance-travelled scale (default 1 to 10).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssessmentCouncilSettings {
    pub score_min: u32,
    pub score_max: u32,
}

impl Default for AssessmentCouncilSettings {
    fn default() -> Self {
        let s = Scale::default();
        Self {
            score_min: s.min,
            score_max: s.max,
        }
    }
}

/// One council as assessment needs it.
#[derive(Debug, Clone)]
pub struct Council {
    pub calendar: eh_workdays::WorkingCalendar,
    pub scale: Scale,
}

/// Council `id`'s working days and scale, checked.
///
/// # Errors
/// A wrong value, naming its key.
pub fn council(id: &str, t: &eh_platform::config::TenantSettings) -> Result<Council, String> {
    let (calendar, _) = eh_service::council::council_settings(id, t)?;
    let s: AssessmentCouncilSettings = match t.section(SECTION) {
        None => AssessmentCouncilSettings::default(),
        Some(s) => s
            .read()
            .map_err(|e| format!("tenants.{id}.assessment: {e}"))?,
    };
    if s.score_max <= s.score_min || s.score_max > 100 {
        return Err(format!(
            "tenants.{id}.assessment.score_max: must be more than score_min and at most 100"
        ));
    }
    Ok(Council {
        calendar,
        scale: Scale {
            min: s.score_min,
            max: s.score_max,
        },
    })
}

/// Every council's, checked at start.
///
/// # Errors
/// The first wrong value, naming its key.
pub fn councils(
    settings: &eh_platform::Settings,
) -> Result<std::collections::BTreeMap<String, Council>, String> {
    settings
        .tenants
        .iter()
        .map(|(id, t)| council(id, t).map(|c| (id.clone(), c)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> eh_platform::Settings {
        let mut all = vec![("EH__TENANTS__WORCS__NAME", "Worcestershire")];
        all.extend_from_slice(env);
        eh_platform::Settings::load(&[], all.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("settings")
    }

    #[test]
    fn the_scale_defaults_to_one_to_ten_and_a_council_may_set_its_own() {
        let c = councils(&load(&[])).unwrap();
        assert_eq!(c["worcs"].scale, Scale { min: 1, max: 10 });
        let c = councils(&load(&[
            ("EH__TENANTS__WORCS__ASSESSMENT__SCORE_MIN", "0"),
            ("EH__TENANTS__WORCS__ASSESSMENT__SCORE_MAX", "5"),
        ]))
        .unwrap();
        assert_eq!(c["worcs"].scale, Scale { min: 0, max: 5 });
        let e = councils(&load(&[("EH__TENANTS__WORCS__ASSESSMENT__SCORE_MAX", "1")])).unwrap_err();
        assert!(e.contains("tenants.worcs.assessment.score_max"), "{e}");
    }
}
