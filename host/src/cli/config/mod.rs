//! The host configuration: one TOML file, every key optional, defaults documented in
//! `default-config.toml` (embedded, printed by `modelhost config`).
//!
//! It is parsed once, straight into the settings types of the layers that use them:
//! `[runtime]` into [`RuntimeSettings`], `[serve]` and `[[modules]]` into [`ServeSettings`] and
//! [`ModuleSettings`], devices into [`DevicePreference`](crate::types::DevicePreference), load
//! balancing into [`LoadBalancing`](crate::engine::workers::LoadBalancing). What only the
//! configuration knows lives here: the manager's sections (`manager`), the limits schema and
//! its per-module overrides (`limits`), the range checks (`checks`) and the `[[modules]]` rules
//! (`modules`).

mod checks;
mod limits;
mod manager;
mod modules;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manager::limits::ModuleLimits;
use crate::runtime::RuntimeSettings;
use crate::serve::{ModuleSettings, ServeSettings, ServedModule};
use crate::types::DevicePreference;

pub use checks::Range;
pub use limits::LimitsConfig;
pub use manager::{EmbeddingCacheConfig, ModelsConfig, WorkerPoolConfig};

/// The documented default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../default-config.toml");

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
    /// A `[[modules]]` entry is unusable.
    #[error("invalid config: `modules`: {0}")]
    Module(String),
    /// A module's `[modules.limits]`, merged over `[limits]`, is not a set of limits: an unknown
    /// key or a value of the wrong type.
    #[error("invalid config: `{key}`: {problem}")]
    Limits {
        /// The table, e.g. `modules[embed].limits`.
        key: String,
        /// What is wrong with it, naming the key within the table.
        problem: String,
    },
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

/// The whole host configuration. The model manager's own keys sit at the top level, before any
/// `[section]`, as in the Model Manager specification's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Whether modules may register models; false refuses every registration (`not-allowed`).
    pub enabled: bool,
    /// Where models go whose requirement says "auto": "auto", "cpu", "cuda" or "cuda:N".
    #[serde(deserialize_with = "manager::device_preference")]
    pub device_preference: DevicePreference,
    /// Share of each GPU's memory models may use.
    pub gpu_memory_fraction: f64,
    /// Share of the system's RAM models on the CPU workers may use.
    pub cpu_memory_fraction: f64,
    /// Whether a model's working memory is left to grow on a GPU (true) or accounted with its
    /// weights when it is placed (false).
    pub allow_gpu_growth: bool,
    /// Model files and model lifetime.
    pub models: ModelsConfig,
    /// Workers, batching.
    pub worker_pool: WorkerPoolConfig,
    /// The embedding cache.
    pub embedding_cache: EmbeddingCacheConfig,
    /// The WebAssembly runtime.
    pub runtime: RuntimeSettings,
    /// `modelhost serve`: addresses, connections, timeouts, shutdown.
    pub serve: ServeSettings,
    /// What every module may use, unless its `[modules.limits]` says otherwise.
    pub limits: LimitsConfig,
    /// Modules `modelhost serve` starts, in order.
    pub modules: Vec<ModuleSettings>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            device_preference: DevicePreference::Auto,
            gpu_memory_fraction: 0.8,
            cpu_memory_fraction: 0.8,
            allow_gpu_growth: true,
            models: ModelsConfig::default(),
            worker_pool: WorkerPoolConfig::default(),
            embedding_cache: EmbeddingCacheConfig::default(),
            runtime: RuntimeSettings::default(),
            serve: ServeSettings::default(),
            limits: LimitsConfig::default(),
            modules: Vec::new(),
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
        checks::check_ranges(self.numbers())?;
        for module in &self.modules {
            let prefix = modules::limits_key(module);
            checks::check_ranges(self.limits_of(module)?.numbers(&prefix))?;
        }
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
        modules::check(&self.modules)
    }

    /// The limits of `module`: its `[modules.limits]` merged key by key over `[limits]`.
    pub fn limits_of(&self, module: &ModuleSettings) -> Result<LimitsConfig, ConfigError> {
        self.limits
            .merged(&module.limits)
            .map_err(|problem| ConfigError::Limits {
                key: modules::limits_key(module),
                problem,
            })
    }

    /// The limits of `module` (its `[modules.limits]` over `[limits]`), or of a module started
    /// by `modelhost run` (`[limits]`) when `None`. Fails only for a configuration built in code
    /// whose module limits [`HostConfig::parse`] would have refused.
    pub fn module_limits(
        &self,
        module: Option<&ModuleSettings>,
    ) -> Result<ModuleLimits, ConfigError> {
        Ok(match module {
            Some(module) => self.limits_of(module)?.to_limits(),
            None => self.limits.to_limits(),
        })
    }

    /// Each `[[modules]]` entry with its limits, in order: what `modelhost serve` starts.
    pub fn served_modules(&self) -> Result<Vec<ServedModule>, ConfigError> {
        self.modules
            .iter()
            .map(|module| {
                Ok(ServedModule {
                    settings: module.clone(),
                    limits: self.module_limits(Some(module))?,
                })
            })
            .collect()
    }
}
