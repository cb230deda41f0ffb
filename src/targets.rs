//! The services one process can run.
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Intake,
    Consent,
    Casework,
    Notifications,
}

impl Target {
    pub const ALL: &[Target] = &[
        Target::Intake,
        Target::Consent,
        Target::Casework,
        Target::Notifications,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Intake => eh_intake::SERVICE,
            Target::Consent => eh_consent::SERVICE,
            Target::Casework => eh_casework::SERVICE,
            Target::Notifications => eh_notifications::SERVICE,
        }
    }

    pub fn migrations(self) -> Vec<eh_store::Migration> {
        match self {
            Target::Intake => eh_intake::migrations(),
            Target::Consent => eh_consent::migrations(),
            Target::Casework => eh_casework::migrations(),
            Target::Notifications => eh_notifications::migrations(),
        }
    }

    pub fn streams(self, ns: &str) -> Vec<eh_bus::StreamSpec> {
        match self {
            Target::Intake => eh_intake::streams(ns),
            Target::Consent => eh_consent::streams(ns),
            Target::Casework => eh_casework::streams(ns),
            Target::Notifications => eh_notifications::streams(ns),
        }
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
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|t| t.name()).collect();
                format!("unknown target {s:?}; one of: all, {}", names.join(", "))
            })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
