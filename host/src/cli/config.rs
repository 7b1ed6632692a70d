//! The host configuration: one TOML file, every key optional, defaults documented in
//! `default-config.toml` (embedded, printed by `modelhost config`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::workers::{LoadBalancing, MemorySettings, PoolSettings};
use crate::manager::ManagerSettings;
use crate::manager::cache::CacheSettings;
use crate::manager::limits::ModuleLimits;
use crate::store::hub::HubSettings;
use crate::store::local::ModelStore;
use crate::types::requirement::DevicePreference;

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
    /// A number is out of its range (or not a number: NaN, infinite).
    #[error("invalid config: `{key}` = {value}: must be {expected}")]
    Range {
        /// The offending key, e.g. `limits.memory_mb` or `modules[embed].limits.max_in_flight`.
        key: String,
        /// The value as configured.
        value: String,
        /// The range it must fall in.
        expected: String,
    },
}

/// Longest duration any `*_seconds` key (and `worker_pool.queue_timeout`) accepts: ten years.
/// Larger values would overflow the clocks they are added to.
pub const MAX_SECONDS: f64 = 315_360_000.0;

/// The values a configured number may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// From the first to the second bound, both included.
    Within(f64, f64),
    /// Above 0 and at most the bound.
    Positive(f64),
}

impl Range {
    /// Whether `value` is in the range (NaN never is).
    pub fn contains(self, value: f64) -> bool {
        match self {
            Self::Within(min, max) => value >= min && value <= max,
            Self::Positive(max) => value > 0.0 && value <= max,
        }
    }

    fn describe(self) -> String {
        match self {
            Self::Within(min, max) => format!("a number from {min} to {max}"),
            Self::Positive(max) => format!("a number above 0 and at most {max}"),
        }
    }
}

/// Checks every `(key, value, range)`; the first value out of its range is the error.
fn check_ranges<K: std::fmt::Display>(
    numbers: impl IntoIterator<Item = (K, f64, Range)>,
) -> Result<(), ConfigError> {
    for (key, value, range) in numbers {
        if !range.contains(value) {
            return Err(ConfigError::Range {
                key: key.to_string(),
                value: match value.abs() >= 1e15 {
                    true => format!("{value:e}"),
                    false => value.to_string(),
                },
                expected: range.describe(),
            });
        }
    }
    Ok(())
}

/// `seconds` as a duration, 0 (or anything not a positive number) as `None`; values past
/// [`MAX_SECONDS`] are capped. Never panics.
pub fn optional_seconds(seconds: f64) -> Option<Duration> {
    (seconds > 0.0).then(|| duration(seconds))
}

/// `seconds` as a duration, capped to `0..=MAX_SECONDS` (NaN is 0). Never panics.
pub fn duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.clamp(0.0, MAX_SECONDS)).unwrap_or(Duration::ZERO)
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
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
    /// MiB of all linear memories of one instance together.
    pub memory_mb: u64,
    /// Elements of all tables of one instance together.
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
            cpu_time_per_call: optional_seconds(self.cpu_seconds_per_call),
            max_in_flight: size(self.max_in_flight),
            max_models: size(self.max_models),
            max_texts_per_call: size(self.max_texts_per_call),
            max_bytes_per_call: size(self.max_bytes_per_call),
            max_new_tokens: self.max_new_tokens,
            allowed_models: self.allowed_models.clone(),
            allow_outgoing_http: self.allow_outgoing_http,
        }
    }

    /// Every number of these limits with its key (relative to `[limits]`) and range. A new
    /// numeric limit is range-checked, in `[limits]` and every `[modules.limits]`, once listed
    /// here.
    fn numbers(&self) -> Vec<(&'static str, f64, Range)> {
        let count = |max: f64| Range::Within(1.0, max);
        vec![
            ("memory_mb", self.memory_mb as f64, count(65_536.0)),
            ("table_elements", self.table_elements as f64, count(1e9)),
            (
                "cpu_seconds_per_call",
                self.cpu_seconds_per_call,
                Range::Within(0.0, MAX_SECONDS),
            ),
            ("max_in_flight", self.max_in_flight as f64, count(1e6)),
            ("max_models", self.max_models as f64, count(1e6)),
            (
                "max_texts_per_call",
                self.max_texts_per_call as f64,
                count(16_777_216.0),
            ),
            (
                "max_bytes_per_call",
                self.max_bytes_per_call as f64,
                count(4_294_967_296.0),
            ),
            (
                "max_new_tokens",
                f64::from(self.max_new_tokens),
                count(16_777_216.0),
            ),
        ]
    }
}

/// Paths the public listener answers itself (for load balancers; they reveal nothing); module
/// routes may not shadow them. `/status` and `/metrics` are only on the admin listener.
pub const ADMIN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// Most GiB one download may fetch (checked against the hub's listing before the first byte).
    #[serde(default = "default_max_download_gb")]
    pub max_download_gb: f64,
}

fn default_max_download_gb() -> f64 {
    (crate::store::hub::DEFAULT_MAX_DOWNLOAD_BYTES >> 30) as f64
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
    /// Most MiB held (vectors and keys; texts are kept only as hashes).
    pub max_cache_mb: u64,
    /// Seconds a vector stays.
    pub ttl_seconds: u64,
}

/// The `[runtime]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Whether compiled modules are cached on disk.
    #[serde(default = "default_true")]
    pub compile_cache: bool,
    /// Where compiled modules are cached; wasmtime's default folder when unset.
    pub compile_cache_dir: Option<PathBuf>,
    /// Wall-clock seconds a module's `initialize` may take; 0 is no limit.
    pub initialize_timeout_seconds: f64,
    /// Wall-clock seconds a module's `cleanup` may take; 0 is no limit.
    pub cleanup_timeout_seconds: f64,
    /// Wall-clock seconds a module's `wasi:cli/run` may take (`modelhost run`); 0 is no limit.
    pub run_timeout_seconds: f64,
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
            max_download_gb: default_max_download_gb(),
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
            max_cache_mb: 256,
            ttl_seconds: 3600,
        }
    }
}

impl Default for ServeConfig {
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

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            compile_cache: default_true(),
            compile_cache_dir: None,
            initialize_timeout_seconds: 300.0,
            cleanup_timeout_seconds: 30.0,
            run_timeout_seconds: 0.0,
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

    /// Every number of the configuration with its key and range, each `[modules.limits]`
    /// included. A new numeric key is range-checked once listed here (or, for a limit, in
    /// `LimitsConfig::numbers`).
    fn numbers(&self) -> Vec<(String, f64, Range)> {
        let (pool, cache) = (&self.worker_pool, &self.embedding_cache);
        let (serve, runtime) = (&self.serve, &self.runtime);
        let seconds = Range::Within(0.0, MAX_SECONDS);
        let at_least = |min: f64, max: f64| Range::Within(min, max);
        let cache_min = if cache.enabled { 1.0 } else { 0.0 };
        let global: Vec<(&str, f64, Range)> = vec![
            (
                "models.idle_unload_seconds",
                self.models.idle_unload_seconds as f64,
                seconds,
            ),
            (
                "models.max_download_gb",
                self.models.max_download_gb,
                Range::Positive(1_048_576.0),
            ),
            (
                "worker_pool.num_workers",
                f64::from(pool.num_workers),
                at_least(0.0, 1024.0),
            ),
            (
                "worker_pool.batch_size",
                f64::from(pool.batch_size),
                at_least(1.0, 65_536.0),
            ),
            (
                "worker_pool.max_batch_tokens",
                f64::from(pool.max_batch_tokens),
                at_least(1.0, 67_108_864.0),
            ),
            (
                "worker_pool.max_queue_length",
                f64::from(pool.max_queue_length),
                at_least(1.0, 16_777_216.0),
            ),
            (
                "worker_pool.queue_timeout",
                pool.queue_timeout,
                Range::Positive(MAX_SECONDS),
            ),
            (
                "worker_pool.gpu_memory_fraction",
                pool.gpu_memory_fraction,
                Range::Positive(1.0),
            ),
            (
                "worker_pool.cpu_memory_fraction",
                pool.cpu_memory_fraction,
                Range::Positive(1.0),
            ),
            (
                "embedding_cache.max_cache_size",
                cache.max_cache_size as f64,
                at_least(cache_min, 1e12),
            ),
            (
                "embedding_cache.max_cache_mb",
                cache.max_cache_mb as f64,
                at_least(cache_min, 1_048_576.0),
            ),
            (
                "embedding_cache.ttl_seconds",
                cache.ttl_seconds as f64,
                at_least(1.0, MAX_SECONDS),
            ),
            (
                "runtime.initialize_timeout_seconds",
                runtime.initialize_timeout_seconds,
                seconds,
            ),
            (
                "runtime.cleanup_timeout_seconds",
                runtime.cleanup_timeout_seconds,
                seconds,
            ),
            (
                "runtime.run_timeout_seconds",
                runtime.run_timeout_seconds,
                seconds,
            ),
            (
                "serve.shutdown_grace_seconds",
                serve.shutdown_grace_seconds as f64,
                seconds,
            ),
            (
                "serve.max_connections",
                serve.max_connections as f64,
                at_least(1.0, 1_048_576.0),
            ),
            (
                "serve.header_read_timeout_seconds",
                serve.header_read_timeout_seconds,
                Range::Positive(MAX_SECONDS),
            ),
            (
                "serve.request_timeout_seconds",
                serve.request_timeout_seconds,
                seconds,
            ),
        ];
        let mut numbers: Vec<(String, f64, Range)> = global
            .into_iter()
            .map(|(key, value, range)| (key.to_string(), value, range))
            .collect();
        let limits = |prefix: &str, limits: &LimitsConfig| {
            limits
                .numbers()
                .into_iter()
                .map(|(key, value, range)| (format!("{prefix}.{key}"), value, range))
                .collect::<Vec<_>>()
        };
        numbers.extend(limits("limits", &self.limits));
        for module in &self.modules {
            let prefix = format!("modules[{}].limits", module.id);
            numbers.extend(limits(&prefix, &self.limits.with(&module.limits)));
        }
        numbers
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_ranges(self.numbers())?;
        if let Some(name) = &self.serve.admin_token_env
            && (name.is_empty() || name.contains(['=', '\0']))
        {
            return Err(ConfigError::Value {
                key: "serve.admin_token_env",
                problem: "must name an environment variable",
            });
        }
        if self.worker_pool.devices.is_empty() {
            return Err(ConfigError::Value {
                key: "worker_pool.devices",
                problem: "must list at least one device",
            });
        }
        self.device_specs()?;
        self.worker_pool
            .device_preference
            .parse::<DevicePreference>()
            .map_err(|e| ConfigError::Device(format!("device_preference: {e}")))?;
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

    /// Where and how models are downloaded: the environment's hub and token, with
    /// `models.max_download_gb` as the size cap.
    pub fn hub_settings(&self) -> HubSettings {
        let bytes = self.models.max_download_gb * (1u64 << 30) as f64;
        HubSettings::from_env().with_max_download_bytes(bytes as u64)
    }

    /// The manager settings this configuration names.
    pub fn manager_settings(&self) -> ManagerSettings {
        let pool = &self.worker_pool;
        ManagerSettings {
            idle_unload: whole_seconds(self.models.idle_unload_seconds),
            downloads: self.models.download.then(|| self.hub_settings()),
            pool: PoolSettings {
                enabled: pool.enabled,
                num_workers: pool.num_workers as usize,
                // `parse` checked these; a configuration built in code falls back to the default.
                devices: self
                    .device_specs()
                    .ok()
                    .filter(|devices| !devices.is_empty())
                    .unwrap_or_else(|| vec![DevicePreference::Auto, DevicePreference::Cpu]),
                batch_size: pool.batch_size as usize,
                queue_timeout: duration(pool.queue_timeout),
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
                device_preference: pool
                    .device_preference
                    .parse()
                    .unwrap_or(DevicePreference::Auto),
            },
            cache: CacheSettings {
                enabled: self.embedding_cache.enabled,
                max_entries: self.embedding_cache.max_cache_size,
                max_bytes: self.embedding_cache.max_cache_mb.saturating_mul(1 << 20),
                ttl: whole_seconds(self.embedding_cache.ttl_seconds),
            },
        }
    }
}

/// `seconds` as a duration, capped at [`MAX_SECONDS`].
fn whole_seconds(seconds: u64) -> Duration {
    Duration::from_secs(seconds.min(MAX_SECONDS as u64))
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
            HostConfig::parse("[[modules]]\nid = \"a\"\npath = \"a.wasm\"\nroute = \"/healthz\"")
                .unwrap_err();
        assert!(err.to_string().contains("/healthz"), "{err}");
        // `/status` and `/metrics` live on the admin listener: a module may serve them.
        HostConfig::parse("[[modules]]\nid = \"a\"\npath = \"a.wasm\"\nroute = \"/metrics\"")
            .unwrap();
        let twice = "[[modules]]\nid = \"a\"\npath = \"a.wasm\"\n";
        let err = HostConfig::parse(&twice.repeat(2)).unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
        let err = HostConfig::parse("[worker_pool]\nqueue_timeout = 0").unwrap_err();
        assert!(
            err.to_string().contains("worker_pool.queue_timeout"),
            "{err}"
        );
    }
    /// Parses `text`, which must fail (without panicking) with an error that names `key`.
    fn rejected(text: &str, key: &str) {
        let outcome = std::panic::catch_unwind(|| HostConfig::parse(text));
        let error = outcome
            .unwrap_or_else(|_| panic!("parsing panicked: {text}"))
            .expect_err(text);
        let message = error.to_string();
        assert!(message.contains(key), "{text}: `{key}` not in: {message}");
    }

    #[test]
    fn every_number_out_of_range_is_rejected_with_its_key() {
        let module = "[[modules]]\nid = \"m\"\npath = \"m.wasm\"\n";
        let big = "9223372036854775807";
        let cases: Vec<(String, &str)> = [
            (
                "[limits]\ncpu_seconds_per_call = inf",
                "limits.cpu_seconds_per_call",
            ),
            (
                "[limits]\ncpu_seconds_per_call = nan",
                "limits.cpu_seconds_per_call",
            ),
            (
                "[limits]\ncpu_seconds_per_call = -1",
                "limits.cpu_seconds_per_call",
            ),
            (
                "[limits]\ncpu_seconds_per_call = 1e300",
                "limits.cpu_seconds_per_call",
            ),
            ("[limits]\nmax_in_flight = 0", "limits.max_in_flight"),
            ("[limits]\nmemory_mb = 0", "limits.memory_mb"),
            ("[limits]\nmemory_mb = 100000000", "limits.memory_mb"),
            ("[limits]\nmemory_mb = -1", "memory_mb"),
            ("[limits]\nmemory_mb = 1e300", "memory_mb"),
            ("[limits]\ntable_elements = 0", "limits.table_elements"),
            ("[limits]\nmax_models = 0", "limits.max_models"),
            (
                "[limits]\nmax_texts_per_call = 0",
                "limits.max_texts_per_call",
            ),
            (
                "[limits]\nmax_bytes_per_call = 0",
                "limits.max_bytes_per_call",
            ),
            ("[limits]\nmax_new_tokens = 0", "limits.max_new_tokens"),
            (
                "[worker_pool]\nqueue_timeout = 1e300",
                "worker_pool.queue_timeout",
            ),
            (
                "[worker_pool]\nqueue_timeout = inf",
                "worker_pool.queue_timeout",
            ),
            (
                "[worker_pool]\nqueue_timeout = nan",
                "worker_pool.queue_timeout",
            ),
            (
                "[worker_pool]\nqueue_timeout = -5",
                "worker_pool.queue_timeout",
            ),
            (
                "[worker_pool]\nqueue_timeout = 0",
                "worker_pool.queue_timeout",
            ),
            (
                "[worker_pool]\ngpu_memory_fraction = nan",
                "worker_pool.gpu_memory_fraction",
            ),
            (
                "[worker_pool]\ncpu_memory_fraction = 1.5",
                "worker_pool.cpu_memory_fraction",
            ),
            ("[worker_pool]\nbatch_size = 0", "worker_pool.batch_size"),
            (
                "[worker_pool]\nmax_batch_tokens = 0",
                "worker_pool.max_batch_tokens",
            ),
            (
                "[worker_pool]\nmax_queue_length = 0",
                "worker_pool.max_queue_length",
            ),
            (
                "[worker_pool]\nnum_workers = 100000",
                "worker_pool.num_workers",
            ),
            (
                "[embedding_cache]\nttl_seconds = 0",
                "embedding_cache.ttl_seconds",
            ),
            (
                "[embedding_cache]\nmax_cache_size = 0",
                "embedding_cache.max_cache_size",
            ),
            (
                "[embedding_cache]\nmax_cache_mb = 0",
                "embedding_cache.max_cache_mb",
            ),
            (
                "[serve]\nheader_read_timeout_seconds = 0",
                "serve.header_read_timeout_seconds",
            ),
            (
                "[serve]\nheader_read_timeout_seconds = nan",
                "serve.header_read_timeout_seconds",
            ),
            (
                "[serve]\nrequest_timeout_seconds = inf",
                "serve.request_timeout_seconds",
            ),
            (
                "[serve]\nrequest_timeout_seconds = -1",
                "serve.request_timeout_seconds",
            ),
            ("[serve]\nmax_connections = 0", "serve.max_connections"),
            ("[serve]\nadmin_token_env = \"\"", "serve.admin_token_env"),
            (
                "[runtime]\ninitialize_timeout_seconds = nan",
                "runtime.initialize_timeout_seconds",
            ),
            (
                "[runtime]\ncleanup_timeout_seconds = 1e300",
                "runtime.cleanup_timeout_seconds",
            ),
            (
                "[runtime]\nrun_timeout_seconds = -0.5",
                "runtime.run_timeout_seconds",
            ),
        ]
        .into_iter()
        .map(|(text, key)| (text.to_string(), key))
        .chain([
            (
                format!("[models]\nidle_unload_seconds = {big}"),
                "models.idle_unload_seconds",
            ),
            (
                format!("[embedding_cache]\nttl_seconds = {big}"),
                "embedding_cache.ttl_seconds",
            ),
            (
                format!("[serve]\nshutdown_grace_seconds = {big}"),
                "serve.shutdown_grace_seconds",
            ),
            (
                format!("{module}limits = {{ cpu_seconds_per_call = inf }}"),
                "modules[m].limits.cpu_seconds_per_call",
            ),
            (
                format!("{module}limits = {{ cpu_seconds_per_call = nan }}"),
                "modules[m].limits.cpu_seconds_per_call",
            ),
            (
                format!("{module}limits = {{ cpu_seconds_per_call = -1.0 }}"),
                "modules[m].limits.cpu_seconds_per_call",
            ),
            (
                format!("{module}limits = {{ max_in_flight = 0 }}"),
                "modules[m].limits.max_in_flight",
            ),
            (
                format!("{module}limits = {{ memory_mb = 0 }}"),
                "modules[m].limits.memory_mb",
            ),
            (
                format!("{module}limits = {{ memory_mb = 70000 }}"),
                "modules[m].limits.memory_mb",
            ),
            (
                format!("{module}limits = {{ table_elements = 0 }}"),
                "modules[m].limits.table_elements",
            ),
            (
                format!("{module}limits = {{ max_new_tokens = 0 }}"),
                "modules[m].limits.max_new_tokens",
            ),
            (
                format!("{module}limits = {{ max_in_flight = -3 }}"),
                "max_in_flight",
            ),
        ])
        .collect();
        assert!(cases.len() >= 40, "{} cases", cases.len());
        for (text, key) in &cases {
            rejected(text, key);
        }
        // The message says what the key must be.
        let err = HostConfig::parse("[limits]\nmax_in_flight = 0").unwrap_err();
        assert!(err.to_string().contains("from 1 to"), "{err}");
    }

    #[test]
    fn accepted_extremes_convert_without_panic_and_zero_means_no_limit() {
        let config = HostConfig::parse(
            "[models]\ndownload = false\nidle_unload_seconds = 315360000\n\
             [worker_pool]\nqueue_timeout = 315360000\ngpu_memory_fraction = 1\n\
             [embedding_cache]\nttl_seconds = 315360000\n\
             [serve]\nheader_read_timeout_seconds = 315360000\nrequest_timeout_seconds = 0\n\
             shutdown_grace_seconds = 315360000\nmax_connections = 1048576\n\
             [runtime]\ninitialize_timeout_seconds = 0\ncleanup_timeout_seconds = 315360000\n\
             [limits]\ncpu_seconds_per_call = 315360000\nmemory_mb = 65536\n\
             [[modules]]\nid = \"m\"\npath = \"m.wasm\"\n\
             limits = { cpu_seconds_per_call = 0, max_in_flight = 1, memory_mb = 1 }\n",
        )
        .unwrap();
        let settings = config.manager_settings();
        assert_eq!(settings.idle_unload, Duration::from_secs(315_360_000));
        let global = config.module_limits(None);
        assert_eq!(
            global.cpu_time_per_call,
            Some(Duration::from_secs(315_360_000))
        );
        assert_eq!(global.memory_bytes, 65_536 << 20);
        let module = config.module_limits(Some(&config.modules[0]));
        assert_eq!(module.cpu_time_per_call, None);
        assert_eq!((module.max_in_flight, module.memory_bytes), (1, 1 << 20));
        assert_eq!(
            optional_seconds(config.runtime.initialize_timeout_seconds),
            None
        );

        // A configuration built in code, never validated, converts without a panic too.
        let mut unchecked = HostConfig::default();
        unchecked.models.download = false;
        unchecked.models.idle_unload_seconds = u64::MAX;
        unchecked.worker_pool.queue_timeout = f64::NAN;
        unchecked.worker_pool.devices = vec!["tpu".into()];
        unchecked.worker_pool.device_preference = "nowhere".into();
        unchecked.embedding_cache.ttl_seconds = u64::MAX;
        unchecked.limits.cpu_seconds_per_call = f64::INFINITY;
        unchecked.limits.memory_mb = u64::MAX;
        let settings = unchecked.manager_settings();
        assert!(!settings.pool.devices.is_empty());
        let limits = unchecked.module_limits(None);
        assert_eq!(
            limits.cpu_time_per_call,
            Some(Duration::from_secs(315_360_000))
        );
        for seconds in [f64::NAN, f64::NEG_INFINITY, -1.0, 0.0, 1e300] {
            assert!(duration(seconds) <= Duration::from_secs(315_360_000));
            assert!(optional_seconds(seconds).is_none_or(|d| d.as_secs() == 315_360_000));
        }
    }
}
