//! Range checks: the values each configured number may take ([`Range`]), and the table of every
//! number of the configuration with its key and range. A new numeric key is range-checked once
//! listed in `HostConfig::numbers` (or, for a limit, in `LimitsConfig::numbers`).

use super::{ConfigError, HostConfig};
use crate::runtime::settings::MAX_SECONDS;

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
pub(super) fn check_ranges<K: std::fmt::Display>(
    numbers: impl IntoIterator<Item = (K, f64, Range)>,
) -> Result<(), ConfigError> {
    for (key, value, range) in numbers {
        if !range.contains(value) {
            return Err(ConfigError::Range {
                key: key.to_string(),
                value: if value.abs() >= 1e15 {
                    format!("{value:e}")
                } else {
                    value.to_string()
                },
                expected: range.describe(),
            });
        }
    }
    Ok(())
}

impl HostConfig {
    /// Every number of the configuration with its key and range, `[limits]` included (each
    /// module's merged limits are checked on their own, as they may fail to merge).
    pub(super) fn numbers(&self) -> Vec<(String, f64, Range)> {
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
                "gpu_memory_fraction",
                self.gpu_memory_fraction,
                Range::Positive(1.0),
            ),
            (
                "cpu_memory_fraction",
                self.cpu_memory_fraction,
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
        global
            .into_iter()
            .map(|(key, value, range)| (key.to_string(), value, range))
            .chain(self.limits.numbers("limits"))
            .collect()
    }
}
