//! The shape of a service. Each service crate exports one [`Service`] — its name, its database's
//! migrations, the streams and subscriptions it uses, its gRPC services, the sections of the
//! configuration it owns, and how it starts — and the binary runs every service through that one
//! descriptor, listed once in its table (`src/services.rs`). Adding a service is a new crate that
//! implements [`Service`] and one line in that table: `run`, `migrate`, `targets`, the help text,
//! the chart's target list and the demo all follow from the table.
//!
//! What a running service is given is its [`ServiceContext`] (defined beside the consumer and relay
//! it starts, in `eh_bus`, whose batches take it too).
pub mod access;
pub mod consent;
pub mod council;
pub mod errors;
pub mod rights;

pub use eh_bus::ServiceContext;
pub use tonic::service::RoutesBuilder;

use eh_auth::Authenticator;
use eh_bus::StreamSpec;
use eh_platform::Settings;
use eh_proto::catalogue::{self, Subscription};
use eh_store::Migration;

/// The keys of the configuration a service owns: top-level sections (`smtp`, `intake`) and
/// sections of each council (`tenants.<id>.screening`). The platform hands each of them to the
/// service as written ([`eh_platform::config::Section`]); the service reads and checks them
/// ([`Service::check_settings`]) with errors that name the key.
#[derive(Debug, Clone, Copy, Default)]
pub struct SettingsKeys {
    pub global: &'static [&'static str],
    pub per_tenant: &'static [&'static str],
}

/// One service as the binary runs it. Implemented by a unit struct `Service` in each service
/// crate (`eh_intake::Service`, …).
pub trait Service: Send + Sync + 'static {
    /// The target name (`--target intake`): also its database's schema or file.
    fn name(&self) -> &'static str;

    /// Every migration of its database, owners in dependency order (the bus's outbox, the audit
    /// trail, then its own tables).
    fn migrations(&self) -> Vec<Migration>;

    /// The streams it publishes to and reads from, created before it starts.
    fn streams(&self, namespace: &str) -> Vec<StreamSpec>;

    /// The durable consumers it runs: the catalogue's subscriptions of this service.
    fn subscriptions(&self) -> Vec<&'static Subscription> {
        catalogue::SUBSCRIPTIONS
            .iter()
            .copied()
            .filter(|s| s.service == self.name())
            .collect()
    }

    /// Its gRPC services' full names, reported SERVING by the health service once started.
    fn grpc_services(&self) -> &'static [&'static str];

    /// The sections of the configuration it owns.
    fn settings_keys(&self) -> SettingsKeys {
        SettingsKeys::default()
    }

    /// Reads and checks its sections of `settings`; warnings to log. Called before anything
    /// starts, so bad settings stop the process at start.
    ///
    /// # Errors
    /// The first section that is wrong, naming its key (`tenants.worcs.screening.programmes[0].id`).
    fn check_settings(&self, settings: &Settings) -> Result<Vec<String>, String> {
        let _ = settings;
        Ok(Vec::new())
    }

    /// Its top-level sections as it reads them, defaults filled in and secrets masked
    /// (`earlyhelp config print`).
    fn settings_json(&self, settings: &Settings) -> Vec<(&'static str, serde_json::Value)> {
        let _ = settings;
        Vec::new()
    }

    /// Its HTTP routes (the gateway's public API), served on the platform's HTTP listener beside
    /// `/healthz`, `/readyz` and `/metrics` once the services have started; `None` (the default)
    /// for a service whose API is gRPC only. Called before [`Service::start`], with the same
    /// context.
    ///
    /// # Errors
    /// When its settings are wrong (the message names the setting).
    fn http_routes(
        &self,
        ctx: &ServiceContext,
        auth: &Authenticator,
    ) -> Result<Option<axum::Router>, String> {
        let _ = (ctx, auth);
        Ok(None)
    }

    /// Starts its relay, consumers and background tasks as tracked tasks of `ctx`, and adds its
    /// gRPC services to `grpc`.
    ///
    /// # Errors
    /// When its settings are wrong (the message names the setting).
    fn start(
        &self,
        ctx: ServiceContext,
        auth: &Authenticator,
        grpc: &mut RoutesBuilder,
    ) -> Result<(), String>;
}
