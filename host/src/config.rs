//! The host configuration: one TOML file, every key optional, defaults documented in
//! `default-config.toml` (embedded, printed by `modelhost config`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cache::CacheSettings;
use crate::download::HubSettings;
use crate::hub::ModelStore;
use crate::limits::ModuleLimits;
use crate::manager::ManagerSettings;
use crate::requirement::DevicePreference;
use crate::workers::{LoadBalancing, MemorySettings, PoolSettings};

/// The documented default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A device in `worker_pool.devices` is not a device name.
    #[error("invalid config: `worker_pool.devices`: {0}")]
    Device(String),
    /// A `[[modules]]` entry is unusable.
    #[error("invalid config: `modules`: {0}")]
    Module(String),
    /// A value is out of range.
    #[error("invalid config: `{key}` {problem}")]
    Value {
        /// The offending key, e.g. `models.default_batch_size`.
        key: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// The whole host configuration.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Model files and model lifetime.
    #[serde(default)]
    pub models: ModelsConfig,
    /// Workers, devices, batching.
    #[serde(default)]
    pub worker_pool: WorkerPoolConfig,
    /// The embedding cache.
    #[serde(default)]
    pub embedding_cache: EmbeddingCacheConfig,
    /// The WebAssembly runtime.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// `modelhost serve`: address and shutdown.
    #[serde(default)]
    pub serve: ServeConfig,
    /// What every module may use, unless its `[modules.limits]` says otherwise.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Modules `modelhost serve` starts, in order.
    #[serde(default)]
    pub modules: Vec<ModuleConfig>,
}

/// The `[serve]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address the module routes and the admin API listen on.
    pub address: String,
    /// Seconds in-flight requests get to finish after SIGINT or SIGTERM.
    pub shutdown_grace_seconds: u64,
}

/// One `[[modules]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleConfig {
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
    #[serde(default = "default_true")]
    pub required: bool,
    /// This module's limits where they differ from `[limits]`.
    #[serde(default)]
    pub limits: LimitsOverride,
}

/// The `[limits]` section: what each module may use.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest linear memory of one instance, in MiB.
    pub memory_mb: u64,
    /// Most elements in one table.
    pub table_elements: u64,
    /// Guest CPU seconds per export call; 0 is no limit.
    pub cpu_seconds_per_call: f64,
    /// Most HTTP requests a module serves at once.
    pub max_in_flight: u64,
    /// Most model ids a module may hold.
    pub max_models: u64,
    /// Most texts in one inference call.
    pub max_texts_per_call: u64,
    /// Most bytes of text in one inference call.
    pub max_bytes_per_call: u64,
    /// Most tokens one generation may produce.
    pub max_new_tokens: u32,
    /// Model names a module may register: exact names, `org/*`, or `*`.
    pub allowed_models: Vec<String>,
    /// Whether modules may send outgoing HTTP requests.
    pub allow_outgoing_http: bool,
}

/// `[modules.limits]`: one module's limits where they differ from `[limits]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsOverride {
    /// See [`LimitsConfig::memory_mb`].
    pub memory_mb: Option<u64>,
    /// See [`LimitsConfig::table_elements`].
    pub table_elements: Option<u64>,
    /// See [`LimitsConfig::cpu_seconds_per_call`].
    pub cpu_seconds_per_call: Option<f64>,
    /// See [`LimitsConfig::max_in_flight`].
    pub max_in_flight: Option<u64>,
    /// See [`LimitsConfig::max_models`].
    pub max_models: Option<u64>,
    /// See [`LimitsConfig::max_texts_per_call`].
    pub max_texts_per_call: Option<u64>,
    /// See [`LimitsConfig::max_bytes_per_call`].
    pub max_bytes_per_call: Option<u64>,
    /// See [`LimitsConfig::max_new_tokens`].
    pub max_new_tokens: Option<u32>,
    /// See [`LimitsConfig::allowed_models`].
    pub allowed_models: Option<Vec<String>>,
    /// See [`LimitsConfig::allow_outgoing_http`].
    pub allow_outgoing_http: Option<bool>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let limits = ModuleLimits::default();
        Self {
            memory_mb: (limits.memory_bytes >> 20) as u64,
            table_elements: limits.table_elements as u64,
            cpu_seconds_per_call: limits.cpu_time_per_call.map_or(0.0, |d| d.as_secs_f64()),
            max_in_flight: limits.max_in_flight as u64,
            max_models: limits.max_models as u64,
            max_texts_per_call: limits.max_texts_per_call as u64,
            max_bytes_per_call: limits.max_bytes_per_call as u64,
            max_new_tokens: limits.max_new_tokens,
            allowed_models: limits.allowed_models,
            allow_outgoing_http: limits.allow_outgoing_http,
        }
    }
}

impl LimitsConfig {
    /// These limits with `changes` applied.
    fn with(&self, changes: &LimitsOverride) -> Self {
        Self {
            memory_mb: changes.memory_mb.unwrap_or(self.memory_mb),
            table_elements: changes.table_elements.unwrap_or(self.table_elements),
            cpu_seconds_per_call: changes
                .cpu_seconds_per_call
                .unwrap_or(self.cpu_seconds_per_call),
            max_in_flight: changes.max_in_flight.unwrap_or(self.max_in_flight),
            max_models: changes.max_models.unwrap_or(self.max_models),
            max_texts_per_call: changes
                .max_texts_per_call
                .unwrap_or(self.max_texts_per_call),
            max_bytes_per_call: changes
                .max_bytes_per_call
                .unwrap_or(self.max_bytes_per_call),
            max_new_tokens: changes.max_new_tokens.unwrap_or(self.max_new_tokens),
            allowed_models: changes
                .allowed_models
                .clone()
                .unwrap_or_else(|| self.allowed_models.clone()),
            allow_outgoing_http: changes
                .allow_outgoing_http
                .unwrap_or(self.allow_outgoing_http),
        }
    }

    fn to_limits(&self) -> ModuleLimits {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        ModuleLimits {
            memory_bytes: size(self.memory_mb.saturating_mul(1 << 20)),
            table_elements: size(self.table_elements),
            cpu_time_per_call: (self.cpu_seconds_per_call > 0.0)
                .then(|| Duration::from_secs_f64(self.cpu_seconds_per_call)),
            max_in_flight: size(self.max_in_flight),
            max_models: size(self.max_models),
            max_texts_per_call: size(self.max_texts_per_call),
            max_bytes_per_call: size(self.max_bytes_per_call),
            max_new_tokens: self.max_new_tokens,
            allowed_models: self.allowed_models.clone(),
            allow_outgoing_http: self.allow_outgoing_http,
        }
    }
}

/// Paths the admin API answers; module routes may not shadow them.
pub const ADMIN_PATHS: [&str; 4] = ["/healthz", "/readyz", "/status", "/metrics"];

impl ModuleConfig {
    /// The settings as the JSON text `initialize` receives (empty when none are set).
    pub fn settings_text(&self) -> String {
        match &self.settings {
            None => String::new(),
            Some(toml::Value::String(text)) => text.clone(),
            Some(value) => serde_json::to_string(value).expect("TOML values are JSON values"),
        }
    }
}

/// The `[models]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// Folder of model files in the Hugging Face cache layout.
    pub cache_dir: Option<PathBuf>,
    /// Seconds an unreferenced model stays loaded.
    #[serde(default = "default_idle_unload_seconds")]
    pub idle_unload_seconds: u64,
    /// Whether registration downloads models missing from the store.
    #[serde(default = "default_true")]
    pub download: bool,
}

/// The `[worker_pool]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerPoolConfig {
    /// Whether requests are merged across callers on a pool of workers.
    pub enabled: bool,
    /// Workers to start; 0 means one per device.
    pub num_workers: u32,
    /// Device list: "auto", "cpu", "cuda", "cuda:N".
    pub devices: Vec<String>,
    /// Texts per batch when a requirement sets none.
    pub batch_size: u32,
    /// Most tokens per batch, padding included.
    pub max_batch_tokens: u32,
    /// Most requests waiting per model.
    pub max_queue_length: u32,
    /// Seconds a request may wait before it starts.
    pub queue_timeout: f64,
    /// "round_robin" or "least_busy".
    pub load_balancing: LoadBalancingConfig,
    /// Where models go whose requirement says "auto": "auto", "cpu", "cuda" or "cuda:N".
    pub device_preference: String,
    /// Share of each GPU's memory models may use.
    pub gpu_memory_fraction: f64,
    /// Share of the system's RAM models on the CPU workers may use.
    pub cpu_memory_fraction: f64,
    /// Whether a model's working memory is left to grow on a GPU (true) or accounted with its
    /// weights when it is placed (false).
    pub allow_gpu_growth: bool,
}

/// How batches are spread over the workers holding a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancingConfig {
    /// Each holder in turn.
    RoundRobin,
    /// The holder with the fewest batches in progress.
    LeastBusy,
}

/// The `[embedding_cache]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingCacheConfig {
    /// Whether embeddings are cached.
    pub enabled: bool,
    /// Most vectors held.
    pub max_cache_size: u64,
    /// Seconds a vector stays.
    pub ttl_seconds: u64,
}

/// The `[runtime]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Whether compiled modules are cached on disk.
    #[serde(default = "default_true")]
    pub compile_cache: bool,
    /// Where compiled modules are cached; wasmtime's default folder when unset.
    pub compile_cache_dir: Option<PathBuf>,
}

fn default_idle_unload_seconds() -> u64 {
    300
}

fn default_true() -> bool {
    true
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            idle_unload_seconds: default_idle_unload_seconds(),
            download: true,
        }
    }
}

impl Default for WorkerPoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            num_workers: 0,
            devices: vec!["auto".into(), "cpu".into()],
            batch_size: 32,
            max_batch_tokens: 16384,
            max_queue_length: 1024,
            queue_timeout: 30.0,
            load_balancing: LoadBalancingConfig::LeastBusy,
            device_preference: "auto".into(),
            gpu_memory_fraction: 0.8,
            cpu_memory_fraction: 0.8,
            allow_gpu_growth: true,
        }
    }
}

impl Default for EmbeddingCacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_cache_size: 10_000,
            ttl_seconds: 3600,
        }
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:8080".into(),
            shutdown_grace_seconds: 30,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            compile_cache: default_true(),
            compile_cache_dir: None,
        }
    }
}

impl HostConfig {
    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a file. Module paths are made relative to the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text)?;
        let base = path.parent().unwrap_or(Path::new(""));
        for module in &mut config.modules {
            module.path = base.join(&module.path);
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let pool = &self.worker_pool;
        let problems: [(bool, &'static str, &'static str); 6] = [
            (
                pool.batch_size == 0,
                "worker_pool.batch_size",
                "must be at least 1",
            ),
            (
                pool.max_batch_tokens == 0,
                "worker_pool.max_batch_tokens",
                "must be at least 1",
            ),
            (
                pool.max_queue_length == 0,
                "worker_pool.max_queue_length",
                "must be at least 1",
            ),
            (
                !(pool.queue_timeout > 0.0 && pool.queue_timeout.is_finite()),
                "worker_pool.queue_timeout",
                "must be a positive number of seconds",
            ),
            (
                pool.devices.is_empty(),
                "worker_pool.devices",
                "must list at least one device",
            ),
            (
                self.embedding_cache.enabled && self.embedding_cache.max_cache_size == 0,
                "embedding_cache.max_cache_size",
                "must be at least 1 when the cache is enabled",
            ),
        ];
        if let Some((_, key, problem)) = problems.into_iter().find(|(bad, _, _)| *bad) {
            return Err(ConfigError::Value { key, problem });
        }
        self.device_specs()?;
        self.worker_pool
            .device_preference
            .parse::<DevicePreference>()
            .map_err(|e| ConfigError::Device(format!("device_preference: {e}")))?;
        for (fraction, key) in [
            (pool.gpu_memory_fraction, "worker_pool.gpu_memory_fraction"),
            (pool.cpu_memory_fraction, "worker_pool.cpu_memory_fraction"),
        ] {
            if !(fraction > 0.0 && fraction <= 1.0) {
                return Err(ConfigError::Value {
                    key,
                    problem: "must be in (0, 1]",
                });
            }
        }
        self.validate_modules()
    }

    fn validate_modules(&self) -> Result<(), ConfigError> {
        let invalid = |problem| Err(ConfigError::Module(problem));
        for (i, module) in self.modules.iter().enumerate() {
            if module.id.is_empty() || module.id.contains(char::is_whitespace) {
                return invalid(format!("module #{} needs an `id` without spaces", i + 1));
            }
            if self.modules[..i].iter().any(|m| m.id == module.id) {
                return invalid(format!("module id '{}' is used twice", module.id));
            }
            let Some(route) = &module.route else { continue };
            if !route.starts_with('/') || route.len() > 1 && route.ends_with('/') {
                return invalid(format!(
                    "module '{}': route '{route}' must start with '/' and not end with one",
                    module.id
                ));
            }
            if let Some(admin) = ADMIN_PATHS.iter().find(|p| route_matches(route, p)) {
                return invalid(format!(
                    "module '{}': route '{route}' would hide the admin path {admin}; pick a prefix \
                     such as /{}",
                    module.id, module.id
                ));
            }
            if let Some(other) = self.modules[..i]
                .iter()
                .find(|m| m.route.as_deref() == Some(route))
            {
                return invalid(format!(
                    "modules '{}' and '{}' both use route '{route}'",
                    other.id, module.id
                ));
            }
        }
        Ok(())
    }

    fn device_specs(&self) -> Result<Vec<DevicePreference>, ConfigError> {
        self.worker_pool
            .devices
            .iter()
            .map(|d| d.parse().map_err(ConfigError::Device))
            .collect()
    }

    /// The limits of `module` (its `[modules.limits]` over `[limits]`), or of a module started
    /// by `modelhost run` (`[limits]`) when `None`.
    pub fn module_limits(&self, module: Option<&ModuleConfig>) -> ModuleLimits {
        match module {
            Some(module) => self.limits.with(&module.limits).to_limits(),
            None => self.limits.to_limits(),
        }
    }

    /// The model store this configuration names.
    pub fn model_store(&self) -> ModelStore {
        ModelStore::new(ModelStore::default_root(self.models.cache_dir.as_deref()))
    }

    /// The manager settings this configuration names.
    pub fn manager_settings(&self) -> ManagerSettings {
        let pool = &self.worker_pool;
        ManagerSettings {
            idle_unload: Duration::from_secs(self.models.idle_unload_seconds),
            downloads: self.models.download.then(HubSettings::from_env),
            pool: PoolSettings {
                enabled: pool.enabled,
                num_workers: pool.num_workers as usize,
                devices: self.device_specs().expect("validated at load"),
                batch_size: pool.batch_size as usize,
                queue_timeout: Duration::from_secs_f64(pool.queue_timeout),
                load_balancing: match pool.load_balancing {
                    LoadBalancingConfig::RoundRobin => LoadBalancing::RoundRobin,
                    LoadBalancingConfig::LeastBusy => LoadBalancing::LeastBusy,
                },
                max_batch_tokens: pool.max_batch_tokens as usize,
                max_queue_length: pool.max_queue_length as usize,
                memory: MemorySettings {
                    gpu_fraction: pool.gpu_memory_fraction,
                    cpu_fraction: pool.cpu_memory_fraction,
                    gpu_growth: pool.allow_gpu_growth,
                },
                device_preference: pool.device_preference.parse().expect("validated at load"),
            },
            cache: CacheSettings {
                enabled: self.embedding_cache.enabled,
                max_entries: self.embedding_cache.max_cache_size,
                ttl: Duration::from_secs(self.embedding_cache.ttl_seconds),
            },
        }
    }
}

/// Whether `path` falls under the route prefix `route` (`/` takes every path).
pub fn route_matches(route: &str, path: &str) -> bool {
    route == "/"
        || path
            .strip_prefix(route)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_are_the_defaults() {
        assert_eq!(
            HostConfig::parse(DEFAULT_CONFIG).unwrap(),
            HostConfig::default()
        );
        assert_eq!(HostConfig::parse("").unwrap(), HostConfig::default());
    }

    #[test]
    fn module_settings_become_json_and_routes_match_whole_segments() {
        let config = HostConfig::parse(
            "[[modules]]\nid = \"a\"\npath = \"a.wasm\"\nroute = \"/a\"\n\
             settings = { model = \"org/name\", batch = 4 }",
        )
        .unwrap();
        let settings: serde_json::Value =
            serde_json::from_str(&config.modules[0].settings_text()).unwrap();
        assert_eq!(
            settings,
            serde_json::json!({"model": "org/name", "batch": 4})
        );
        assert!(config.modules[0].required);
        assert!(route_matches("/a", "/a/v1") && route_matches("/a", "/a"));
        assert!(!route_matches("/a", "/ab") && route_matches("/", "/x"));
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let err = HostConfig::parse("[models]\nidle_unload = 3").unwrap_err();
        assert!(err.to_string().contains("idle_unload"), "{err}");
        let err = HostConfig::parse("[worker_pool]\nbatch_size = 0").unwrap_err();
        assert!(err.to_string().contains("worker_pool.batch_size"), "{err}");
        let err = HostConfig::parse("[worker_pool]\ndevices = [\"tpu\"]").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("worker_pool.devices") && text.contains("tpu"),
            "{err}"
        );
        let err = HostConfig::parse("[worker_pool]\nload_balancing = \"random\"").unwrap_err();
        assert!(err.to_string().contains("load_balancing"), "{err}");
        let err =
            HostConfig::parse("[[modules]]\nid = \"a\"\npath = \"a.wasm\"\nroute = \"/metrics\"")
                .unwrap_err();
        assert!(err.to_string().contains("/metrics"), "{err}");
        let twice = "[[modules]]\nid = \"a\"\npath = \"a.wasm\"\n";
        let err = HostConfig::parse(&twice.repeat(2)).unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
        let err = HostConfig::parse("[worker_pool]\nqueue_timeout = 0").unwrap_err();
        assert!(
            err.to_string().contains("worker_pool.queue_timeout"),
            "{err}"
        );
    }
}
