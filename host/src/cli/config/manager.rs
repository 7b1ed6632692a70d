//! The sections the model manager is configured with: `[models]`, `[worker_pool]` and
//! `[embedding_cache]`, their defaults, and their conversion (with the top-level keys) into
//! [`ManagerSettings`] (and the model store and download settings they name).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::HostConfig;
use crate::engine::workers::{LoadBalancing, MemorySettings, PoolSettings};
use crate::manager::ManagerSettings;
use crate::manager::cache::CacheSettings;
use crate::runtime::settings::{MAX_SECONDS, duration};
use crate::store::hub::HubSettings;
use crate::store::local::ModelStore;
use crate::types::DevicePreference;

/// The `[models]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Folder of model files in the Hugging Face cache layout.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Seconds an unreferenced model stays loaded.
    pub idle_unload_seconds: u64,
    /// Whether registration downloads models missing from the store.
    pub download: bool,
    /// Most GiB one download may fetch (checked against the hub's listing before the first byte).
    pub max_download_gb: f64,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            idle_unload_seconds: 300,
            download: true,
            max_download_gb: (crate::store::hub::DEFAULT_MAX_DOWNLOAD_BYTES >> 30) as f64,
        }
    }
}

/// The `[worker_pool]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerPoolConfig {
    /// Whether requests are merged across callers on a pool of workers.
    pub enabled: bool,
    /// Workers to start; 0 means one per device.
    pub num_workers: u32,
    /// The devices workers are spread over: "auto", "cpu", "cuda", "cuda:N".
    #[serde(deserialize_with = "devices")]
    pub devices: Vec<DevicePreference>,
    /// Texts per batch when a requirement sets none.
    pub batch_size: u32,
    /// Most tokens per batch, padding included.
    pub max_batch_tokens: u32,
    /// Most requests waiting per model.
    pub max_queue_length: u32,
    /// Seconds a request may wait before it starts.
    pub queue_timeout: f64,
    /// "round_robin" or "least_busy".
    pub load_balancing: LoadBalancing,
}

impl Default for WorkerPoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            num_workers: 0,
            devices: default_devices(),
            batch_size: 32,
            max_batch_tokens: 16384,
            max_queue_length: 1024,
            queue_timeout: 30.0,
            load_balancing: LoadBalancing::RoundRobin,
        }
    }
}

fn default_devices() -> Vec<DevicePreference> {
    vec![DevicePreference::Auto, DevicePreference::Cpu]
}

/// `worker_pool.devices`, an error naming the key.
fn devices<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DevicePreference>, D::Error> {
    named("worker_pool.devices", Vec::deserialize(d))
}

/// The top-level `device_preference`, an error naming the key.
pub(super) fn device_preference<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<DevicePreference, D::Error> {
    named("device_preference", DevicePreference::deserialize(d))
}

/// `result` with the key prefixed to its error (TOML's own errors quote the line, not the key).
fn named<T, E: serde::de::Error>(key: &str, result: Result<T, E>) -> Result<T, E> {
    result.map_err(|e| E::custom(format_args!("`{key}`: {e}")))
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

impl HostConfig {
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
        let (pool, cache) = (&self.worker_pool, &self.embedding_cache);
        ManagerSettings {
            enabled: self.enabled,
            idle_unload: whole_seconds(self.models.idle_unload_seconds),
            downloads: self.models.download.then(|| self.hub_settings()),
            pool: PoolSettings {
                enabled: pool.enabled,
                num_workers: pool.num_workers as usize,
                // `parse` refuses an empty list; a configuration built in code gets the default.
                devices: if pool.devices.is_empty() {
                    default_devices()
                } else {
                    pool.devices.clone()
                },
                batch_size: pool.batch_size as usize,
                queue_timeout: duration(pool.queue_timeout),
                load_balancing: pool.load_balancing,
                max_batch_tokens: pool.max_batch_tokens as usize,
                max_queue_length: pool.max_queue_length as usize,
                memory: MemorySettings {
                    gpu_fraction: self.gpu_memory_fraction,
                    cpu_fraction: self.cpu_memory_fraction,
                    gpu_growth: self.allow_gpu_growth,
                },
                device_preference: self.device_preference,
            },
            cache: CacheSettings {
                enabled: cache.enabled,
                max_entries: cache.max_cache_size,
                max_bytes: cache.max_cache_mb.saturating_mul(1 << 20),
                ttl: whole_seconds(cache.ttl_seconds),
            },
        }
    }
}

/// `seconds` as a duration, capped at [`MAX_SECONDS`].
fn whole_seconds(seconds: u64) -> Duration {
    Duration::from_secs(seconds.min(MAX_SECONDS as u64))
}
