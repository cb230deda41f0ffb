//! A council's working days and service levels, shared by the services that run its clocks:
//! `tenants.<id>.calendar` (the division's bank holidays and the council's closure days) and
//! `tenants.<id>.service_levels` (each clock, in working days). [`council_settings`] reads and
//! checks both, and a wrong value stops the process at start, naming its key.
use eh_platform::config::TenantSettings;
use serde::{Deserialize, Serialize};

/// The per-council keys read here.
pub const PER_TENANT_KEYS: &[&str] = &["calendar", "service_levels"];

/// `tenants.<id>.calendar`: the council's working days.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSettings {
    /// `england-and-wales` (default), `scotland` or `northern-ireland`.
    #[serde(default)]
    pub division: eh_workdays::Division,
    /// The council's own closure days (e.g. a Christmas shutdown), as `YYYY-MM-DD`.
    #[serde(default)]
    pub closure_days: Vec<chrono::NaiveDate>,
}

/// `tenants.<id>.service_levels`, in working days (DOMAIN.md's defaults). Each service reads the
/// clocks it runs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceLevelSettings {
    /// Front-door screening decision after a request arrives (default 1; casework).
    pub screening_decision_days: u32,
    /// Chase outstanding consent after (default 5; casework).
    pub consent_chase_days: u32,
    /// Close as "no consent" after (default 20; casework).
    pub consent_close_days: u32,
    /// A provider accepts or declines an offer within (default 2; then the case is offered to the
    /// next provider; allocation).
    pub provider_response_days: u32,
    /// First contact with the family after the lead practitioner is named (default 5; a breach
    /// tells the team manager; casework).
    pub first_contact_days: u32,
    /// A case waiting for a place longer than this is a breach (default 20; allocation).
    pub waiting_list_days: u32,
    /// The Early Help Assessment finalised after allocation (default 30; a breach tells the team
    /// manager; casework).
    pub assessment_days: u32,
}

impl Default for ServiceLevelSettings {
    fn default() -> Self {
        Self {
            screening_decision_days: 1,
            consent_chase_days: 5,
            consent_close_days: 20,
            provider_response_days: 2,
            first_contact_days: 5,
            waiting_list_days: 20,
            assessment_days: 30,
        }
    }
}

/// Council `id`'s calendar (as a working calendar) and service levels, checked; the defaults for
/// what is not written.
///
/// # Errors
/// A wrong value, naming its key (`tenants.worcs.calendar.closure_days`, …).
pub fn council_settings(
    id: &str,
    t: &TenantSettings,
) -> Result<(eh_workdays::WorkingCalendar, ServiceLevelSettings), String> {
    let calendar: CalendarSettings = match t.section("calendar") {
        None => CalendarSettings::default(),
        Some(s) => s.read().map_err(|e| e.to_string())?,
    };
    let levels: ServiceLevelSettings = match t.section("service_levels") {
        None => ServiceLevelSettings::default(),
        Some(s) => s.read().map_err(|e| e.to_string())?,
    };
    let working =
        eh_workdays::WorkingCalendar::new(calendar.division, calendar.closure_days.iter().copied())
            .map_err(|e| format!("tenants.{id}.calendar: {e}"))?;
    if levels.consent_chase_days == 0 || levels.consent_close_days <= levels.consent_chase_days {
        return Err(format!(
            "tenants.{id}.service_levels.consent_close_days: must be more than consent_chase_days, which must be at least 1"
        ));
    }
    for (key, days) in [
        ("provider_response_days", levels.provider_response_days),
        ("first_contact_days", levels.first_contact_days),
        ("waiting_list_days", levels.waiting_list_days),
        ("assessment_days", levels.assessment_days),
    ] {
        if days == 0 {
            return Err(format!(
                "tenants.{id}.service_levels.{key}: must be at least 1 working day"
            ));
        }
    }
    Ok((working, levels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use eh_platform::Settings;

    fn load(env: &[(&str, &str)]) -> Settings {
        let mut all = vec![("EH__TENANTS__WORCS__NAME", "Worcestershire")];
        all.extend_from_slice(env);
        Settings::load(&[], all.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .expect("settings")
    }

    fn worcs(
        env: &[(&str, &str)],
    ) -> Result<(eh_workdays::WorkingCalendar, ServiceLevelSettings), String> {
        let s = load(env);
        council_settings("worcs", &s.tenants["worcs"])
    }

    #[test]
    fn a_councils_calendar_and_service_levels_are_read_and_checked_naming_the_key() {
        let (_, levels) = worcs(&[
            ("EH__TENANTS__WORCS__CALENDAR__DIVISION", "scotland"),
            (
                "EH__TENANTS__WORCS__SERVICE_LEVELS__CONSENT_CLOSE_DAYS",
                "25",
            ),
        ])
        .unwrap();
        assert_eq!(levels.consent_close_days, 25);
        assert_eq!(levels.consent_chase_days, 5, "defaults fill the rest");
        let scotland = load(&[("EH__TENANTS__WORCS__CALENDAR__DIVISION", "scotland")]);
        let cal = scotland.tenants["worcs"]
            .section("calendar")
            .unwrap()
            .read::<CalendarSettings>()
            .unwrap();
        assert_eq!(cal.division, eh_workdays::Division::Scotland);
        let (_, defaults) = worcs(&[]).unwrap();
        assert_eq!(defaults.consent_close_days, 20);

        let e = worcs(&[("EH__TENANTS__WORCS__CALENDAR__DIVISION", "wales")]).unwrap_err();
        assert!(e.contains("tenants.worcs.calendar.division"), "{e}");
        let e = worcs(&[(
            "EH__TENANTS__WORCS__SERVICE_LEVELS__CONSENT_CLOSE_DAYS",
            "3",
        )])
        .unwrap_err();
        assert!(
            e.contains("tenants.worcs.service_levels.consent_close_days"),
            "{e}"
        );
        let e = worcs(&[("EH__TENANTS__WORCS__SERVICE_LEVELS__CONSENT_DAYS", "3")]).unwrap_err();
        assert!(e.contains("consent_days"), "{e}");
        let e = worcs(&[(
            "EH__TENANTS__WORCS__SERVICE_LEVELS__PROVIDER_RESPONSE_DAYS",
            "0",
        )])
        .unwrap_err();
        assert!(
            e.contains("tenants.worcs.service_levels.provider_response_days"),
            "{e}"
        );
        assert_eq!(defaults.provider_response_days, 2);
        assert_eq!(defaults.first_contact_days, 5);
        // A closure day that is not a date.
        let mut s = load(&[]);
        let w = s.tenants.get_mut("worcs").unwrap();
        w.sections.insert(
            "calendar".into(),
            eh_platform::config::Section::from_json(
                "tenants.worcs.calendar",
                serde_json::json!({"closure_days": ["2026-02-30"]}),
            )
            .unwrap(),
        );
        let e = council_settings("worcs", &s.tenants["worcs"]).unwrap_err();
        assert!(e.contains("tenants.worcs.calendar"), "{e}");
        assert!(e.contains("closure_days"), "{e}");
    }
}
