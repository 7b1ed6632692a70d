//! The host configuration: one TOML file, every key optional, defaults documented in
//! `default-config.toml` (embedded, printed by `modelhost config`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::hub::ModelStore;
use crate::manager::ManagerSettings;

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
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Model files and model lifetime.
    #[serde(default)]
    pub models: ModelsConfig,
    /// The WebAssembly runtime.
    #[serde(default)]
    pub runtime: RuntimeConfig,
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
    /// Texts per forward pass when a requirement sets none.
    #[serde(default = "default_batch_size")]
    pub default_batch_size: u32,
}

/// The `[runtime]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Whether compiled modules are cached on disk.
    #[serde(default = "default_true")]
    pub compile_cache: bool,
}

fn default_idle_unload_seconds() -> u64 {
    300
}

fn default_batch_size() -> u32 {
    32
}

fn default_true() -> bool {
    true
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            idle_unload_seconds: default_idle_unload_seconds(),
            default_batch_size: default_batch_size(),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            compile_cache: default_true(),
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

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.models.default_batch_size == 0 {
            return Err(ConfigError::Value {
                key: "models.default_batch_size",
                problem: "must be at least 1",
            });
        }
        Ok(())
    }

    /// The model store this configuration names.
    pub fn model_store(&self) -> ModelStore {
        ModelStore::new(ModelStore::default_root(self.models.cache_dir.as_deref()))
    }

    /// The manager settings this configuration names.
    pub fn manager_settings(&self) -> ManagerSettings {
        ManagerSettings {
            idle_unload: Duration::from_secs(self.models.idle_unload_seconds),
            default_batch_size: self.models.default_batch_size,
        }
    }
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
    fn bad_keys_and_values_are_named() {
        let err = HostConfig::parse("[models]\nidle_unload = 3").unwrap_err();
        assert!(err.to_string().contains("idle_unload"), "{err}");
        let err = HostConfig::parse("[models]\ndefault_batch_size = 0").unwrap_err();
        assert!(
            err.to_string().contains("models.default_batch_size"),
            "{err}"
        );
    }
}
