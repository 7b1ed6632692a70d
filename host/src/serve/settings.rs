//! What `modelhost serve` is configured with: the `[serve]` section ([`ServeSettings`]) and the
//! `[[modules]]` entries ([`ModuleSettings`]), plus the route rules the configuration checks
//! entries against ([`route_matches`], [`ADMIN_PATHS`]).

use std::path::PathBuf;

use serde::Deserialize;

use crate::manager::limits::ModuleLimits;

/// Paths the public listener answers itself (for load balancers; they reveal nothing); module
/// routes may not shadow them. `/status` and `/metrics` are only on the admin listener.
pub const ADMIN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Whether `path` falls under the route prefix `route` (`/` takes every path).
pub fn route_matches(route: &str, path: &str) -> bool {
    route == "/"
        || path
            .strip_prefix(route)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The `[serve]` section: the listeners and how long clients and requests may take.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSettings {
    /// Address the module routes (and `/healthz`, `/readyz`) listen on.
    pub address: String,
    /// Address the admin API (`/healthz`, `/readyz`, `/status`, `/metrics`) listens on; empty
    /// disables it.
    pub admin_address: String,
    /// Name of an environment variable holding a bearer token the admin API requires.
    pub admin_token_env: Option<String>,
    /// Seconds in-flight requests get to finish after SIGINT or SIGTERM.
    pub shutdown_grace_seconds: u64,
    /// Connections open at once per listener; at the cap, the next waits to be accepted.
    pub max_connections: u64,
    /// Seconds a client has to send a request's headers (and an idle connection stays open).
    pub header_read_timeout_seconds: f64,
    /// Seconds one request may take, response body included; 0 is no limit.
    pub request_timeout_seconds: f64,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:8080".into(),
            admin_address: "127.0.0.1:9090".into(),
            admin_token_env: None,
            shutdown_grace_seconds: 30,
            max_connections: 1024,
            header_read_timeout_seconds: 10.0,
            request_timeout_seconds: 300.0,
        }
    }
}

/// One `[[modules]]` entry: a module `modelhost serve` starts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSettings {
    /// The module's identity in references, the status and the metrics; unique.
    pub id: String,
    /// The component file; relative paths are relative to the configuration file.
    pub path: PathBuf,
    /// HTTP requests under this path prefix go to the module's `wasi:http/incoming-handler`,
    /// with the prefix removed.
    pub route: Option<String>,
    /// Passed to `initialize` as JSON text (a string is passed as it is).
    pub settings: Option<toml::Value>,
    /// Whether the host refuses to start when this module fails to start; when false the module
    /// is reported and left out.
    #[serde(default = "required_by_default")]
    pub required: bool,
    /// This module's `[modules.limits]` table as written: the keys of `[limits]` it overrides.
    /// The configuration merges it over `[limits]` and checks the result; the server is handed
    /// the merged limits next to each entry.
    #[serde(default)]
    pub limits: toml::Table,
}

/// A `[[modules]]` entry with the limits it runs under (its `[modules.limits]` merged over
/// `[limits]`), as the server is handed it.
#[derive(Debug, Clone)]
pub struct ServedModule {
    /// The entry.
    pub settings: ModuleSettings,
    /// Its limits.
    pub limits: ModuleLimits,
}

fn required_by_default() -> bool {
    true
}

impl ModuleSettings {
    /// The settings as the JSON text `initialize` receives (empty when none are set).
    pub fn settings_text(&self) -> String {
        match &self.settings {
            None => String::new(),
            Some(toml::Value::String(text)) => text.clone(),
            Some(value) => serde_json::to_string(value).expect("TOML values are JSON values"),
        }
    }
}
