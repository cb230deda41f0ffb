//! Allocation's own settings: each council's `allocation` section — its matching rules (the
//! default kind of service, which programmes call for which kind, its localities), how its
//! directory's taxonomy terms map to needs, and where its Open Referral UK directory is read from.
//! The platform hands the section over as written; [`council`] reads and checks it, and a wrong
//! value stops the process at start, naming its key.
use crate::domain::matching::Rules;
use crate::domain::oruk::TermMapping;
use crate::domain::{self, Kind};
use eh_platform::config::TenantSettings;
use eh_service::SettingsKeys;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The keys of the configuration allocation owns.
pub const KEYS: SettingsKeys = SettingsKeys {
    global: &["allocation"],
    per_tenant: &["allocation", "calendar", "service_levels"],
};

/// The top-level `allocation` section: where consent's gRPC API is asked what a provider may see.
pub use eh_service::consent::ConsentSettings as GlobalSettings;

/// The top-level section's name.
pub const SECTION: &str = "allocation";

/// `tenants.<id>.allocation`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllocationSettings {
    /// Names the rules every decision was made by (change it when the rules change).
    pub rule_version: String,
    /// `early_help_team` (default) or `commissioned`: the kind of service when no programme rule
    /// applies.
    pub default_kind: String,
    /// Programmes and the kind of service that delivers them (e.g. `{id: brfc, kind: commissioned}`).
    pub programmes: Vec<ProgrammeRule>,
    /// Locality name → postcode areas, districts or sectors (`WR1`, `WR1 2`), for coverage by name.
    pub localities: BTreeMap<String, Vec<String>>,
    /// How the directory's taxonomy terms map to the platform's needs.
    pub taxonomy_needs: Vec<TermMapping>,
    /// Where the council's Open Referral UK directory is read from.
    pub directory: DirectorySettings,
    /// A case with at least this many headline needs is of significant need (ahead on the
    /// waiting list).
    pub significant_need_min_needs: usize,
    /// A case with any of these needs is of significant need.
    pub significant_needs: Vec<String>,
}

impl Default for AllocationSettings {
    fn default() -> Self {
        Self {
            rule_version: "default-1".into(),
            default_kind: Kind::EarlyHelpTeam.as_str().into(),
            programmes: Vec::new(),
            localities: BTreeMap::new(),
            taxonomy_needs: Vec::new(),
            directory: DirectorySettings::default(),
            significant_need_min_needs: 3,
            significant_needs: vec!["domestic_abuse".into(), "safeguarding".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProgrammeRule {
    pub id: String,
    pub kind: String,
}

/// `tenants.<id>.allocation.directory`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectorySettings {
    /// An ORUK 3.0 API's base URL (`GET <url>/services`, `GET <url>/services/{id}`).
    pub url: Option<String>,
    /// Or a file of the same JSON: an array of full services, or a page of them.
    pub file: Option<std::path::PathBuf>,
    /// Import on a schedule every this many minutes (0: only on demand).
    pub refresh_minutes: u64,
    /// Services per page asked of the API.
    pub per_page: u32,
    /// Stop (and fail the import, changing nothing) beyond this many pages.
    pub max_pages: u32,
    /// Each HTTP request's timeout.
    pub timeout_secs: u64,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        Self {
            url: None,
            file: None,
            refresh_minutes: 0,
            per_page: 50,
            max_pages: 400,
            timeout_secs: 30,
        }
    }
}

/// Where a directory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Url(String),
    File(std::path::PathBuf),
}

impl Source {
    /// How imports name it: a URL's credentials and secret query parameters masked.
    pub fn label(&self) -> String {
        match self {
            Source::Url(u) => format!("url:{}", eh_platform::config::mask_url_credentials(u)),
            Source::File(f) => format!("file:{}", f.display()),
        }
    }
}

/// A council's allocation settings, checked.
#[derive(Debug, Clone)]
pub struct Council {
    pub rules: Rules,
    pub taxonomy_needs: Vec<TermMapping>,
    pub source: Option<Source>,
    pub directory: DirectorySettings,
    pub significant_need_min_needs: usize,
    pub significant_needs: Vec<String>,
    /// The council's working days (`tenants.<id>.calendar`).
    pub calendar: eh_workdays::WorkingCalendar,
    /// A provider answers an offer within this many working days (`service_levels`).
    pub provider_response_days: u32,
    /// A case waiting longer than this many working days is a breach (`service_levels`).
    pub waiting_list_days: u32,
}

impl Council {
    /// When something due `days` working days after `from` is overdue (UK midnight ending the
    /// deadline day), on the council's calendar.
    ///
    /// # Errors
    /// A deadline beyond the years the calendar knows.
    pub fn overdue_from(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        days: u32,
    ) -> Result<chrono::DateTime<chrono::Utc>, eh_workdays::Error> {
        self.calendar.overdue_from(from, days)
    }
}

/// Council `id`'s allocation settings, checked; the defaults for what is not written.
///
/// # Errors
/// A wrong value, naming its key (`tenants.worcs.allocation.programmes[0].kind`, …).
pub fn council(id: &str, t: &TenantSettings) -> Result<Council, String> {
    let s: AllocationSettings = match t.section("allocation") {
        None => AllocationSettings::default(),
        Some(s) => s.read().map_err(|e| e.to_string())?,
    };
    let key = format!("tenants.{id}.allocation");
    if s.rule_version.trim().is_empty() || s.rule_version.len() > 100 {
        return Err(format!("{key}.rule_version: must be 1-100 characters"));
    }
    let default_kind: Kind = s
        .default_kind
        .parse()
        .map_err(|e| format!("{key}.default_kind: {e}"))?;
    let mut programmes = Vec::new();
    for (i, p) in s.programmes.iter().enumerate() {
        if !eh_platform::config::is_token(&p.id) {
            return Err(format!(
                "{key}.programmes[{i}].id: must be a programme id (lower-case letters, digits, - and _)"
            ));
        }
        let kind: Kind = p
            .kind
            .parse()
            .map_err(|e| format!("{key}.programmes[{i}].kind: {e}"))?;
        programmes.push((p.id.clone(), kind));
    }
    for (name, parts) in &s.localities {
        if parts.is_empty() {
            return Err(format!(
                "{key}.localities.{name}: at least one postcode area, district or sector"
            ));
        }
    }
    for (i, m) in s.taxonomy_needs.iter().enumerate() {
        if !domain::is_need(&m.need) {
            return Err(format!(
                "{key}.taxonomy_needs[{i}].need: not a headline need (one of {})",
                domain::NEEDS.join(", ")
            ));
        }
        if m.terms.is_empty() {
            return Err(format!(
                "{key}.taxonomy_needs[{i}].terms: at least one term"
            ));
        }
    }
    let d = &s.directory;
    let source = match (&d.url, &d.file) {
        (Some(_), Some(_)) => {
            return Err(format!("{key}.directory: give url or file, not both"));
        }
        (Some(u), None) => {
            let parsed = reqwest::Url::parse(u)
                .map_err(|e| format!("{key}.directory.url: not a URL ({e})"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("{key}.directory.url: must be http or https"));
            }
            Some(Source::Url(u.trim_end_matches('/').to_string()))
        }
        (None, Some(f)) => Some(Source::File(f.clone())),
        (None, None) => None,
    };
    if d.refresh_minutes > 0 && source.is_none() {
        return Err(format!(
            "{key}.directory.refresh_minutes: a schedule needs directory.url or directory.file"
        ));
    }
    if d.per_page == 0 || d.per_page > 1000 {
        return Err(format!("{key}.directory.per_page: must be 1-1000"));
    }
    if d.max_pages == 0 {
        return Err(format!("{key}.directory.max_pages: must be at least 1"));
    }
    for (i, n) in s.significant_needs.iter().enumerate() {
        if !domain::is_need(n) {
            return Err(format!(
                "{key}.significant_needs[{i}]: not a headline need (one of {})",
                domain::NEEDS.join(", ")
            ));
        }
    }
    if d.timeout_secs == 0 {
        return Err(format!("{key}.directory.timeout_secs: must be at least 1"));
    }
    let (calendar, levels) = eh_service::council::council_settings(id, t)?;
    Ok(Council {
        calendar,
        provider_response_days: levels.provider_response_days,
        waiting_list_days: levels.waiting_list_days,
        rules: Rules {
            rule_version: s.rule_version.clone(),
            default_kind,
            programmes,
            localities: s.localities.clone(),
        },
        taxonomy_needs: s.taxonomy_needs.clone(),
        source,
        directory: s.directory.clone(),
        significant_need_min_needs: s.significant_need_min_needs,
        significant_needs: s.significant_needs.clone(),
    })
}

/// Every council's allocation settings, checked.
///
/// # Errors
/// The first wrong value, naming its key.
pub fn councils(settings: &eh_platform::Settings) -> Result<BTreeMap<String, Council>, String> {
    settings
        .tenants
        .iter()
        .map(|(id, t)| council(id, t).map(|c| (id.clone(), c)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use eh_platform::config::Section;
    use serde_json::json;

    fn tenant(section: serde_json::Value) -> TenantSettings {
        let mut t = TenantSettings::named("Worcestershire");
        t.sections.insert(
            "allocation".into(),
            Section::from_json("tenants.worcs.allocation", section).unwrap(),
        );
        t
    }

    #[test]
    fn defaults_when_nothing_is_written() {
        let c = council("worcs", &TenantSettings::named("W")).unwrap();
        assert_eq!(c.rules.default_kind, Kind::EarlyHelpTeam);
        assert!(c.source.is_none());
    }

    #[test]
    fn a_full_section_is_read() {
        let c = council(
            "worcs",
            &tenant(json!({
                "rule_version": "worcs-2026-11",
                "programmes": [{"id": "brfc", "kind": "commissioned"}],
                "localities": {"Worcester City": ["WR1", "WR2"]},
                "taxonomy_needs": [{"need": "housing", "terms": ["Housing advice"]}],
                "directory": {"url": "https://directory.example/api/", "refresh_minutes": 60}
            })),
        )
        .unwrap();
        assert_eq!(
            c.rules.programmes,
            [("brfc".to_string(), Kind::Commissioned)]
        );
        assert_eq!(
            c.source,
            Some(Source::Url("https://directory.example/api".into()))
        );
    }

    #[test]
    fn a_source_is_named_without_its_secrets() {
        let s = Source::Url("https://hub:s3cret@directory.example/api?api_key=abc123".into());
        let label = s.label();
        assert!(label.starts_with("url:https://"), "{label}");
        assert!(
            !label.contains("s3cret") && !label.contains("abc123"),
            "{label}"
        );
    }

    #[test]
    fn wrong_values_name_their_key() {
        for (section, key) in [
            (
                json!({"default_kind": "team"}),
                "tenants.worcs.allocation.default_kind",
            ),
            (
                json!({"programmes": [{"id": "brfc", "kind": "x"}]}),
                "tenants.worcs.allocation.programmes[0].kind",
            ),
            (
                json!({"taxonomy_needs": [{"need": "knitting", "terms": ["x"]}]}),
                "tenants.worcs.allocation.taxonomy_needs[0].need",
            ),
            (
                json!({"directory": {"url": "ftp://x/"}}),
                "tenants.worcs.allocation.directory.url",
            ),
            (
                json!({"directory": {"refresh_minutes": 5}}),
                "tenants.worcs.allocation.directory.refresh_minutes",
            ),
            (
                json!({"directory": {"url": "https://x", "file": "/x"}}),
                "tenants.worcs.allocation.directory",
            ),
            (
                json!({"localities": {"City": []}}),
                "tenants.worcs.allocation.localities.City",
            ),
            (json!({"surprise": 1}), "tenants.worcs.allocation"),
        ] {
            let e = council("worcs", &tenant(section.clone())).unwrap_err();
            assert!(e.contains(key), "{section}: {e}");
        }
    }
}
