//! [`RuntimeSettings`]: the `[runtime]` section of the configuration (compile cache, export
//! deadlines), and the conversions from configured seconds to durations that this layer and the
//! ones above it share ([`duration`], [`optional_seconds`], capped at [`MAX_SECONDS`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Longest duration any `*_seconds` key (and `worker_pool.queue_timeout`) accepts: ten years.
/// Larger values would overflow the clocks they are added to.
pub const MAX_SECONDS: f64 = 315_360_000.0;

/// `seconds` as a duration, 0 (or anything not a positive number) as `None`; values past
/// [`MAX_SECONDS`] are capped. Never panics.
pub fn optional_seconds(seconds: f64) -> Option<Duration> {
    (seconds > 0.0).then(|| duration(seconds))
}

/// `seconds` as a duration, capped to `0..=MAX_SECONDS` (NaN is 0). Never panics.
pub fn duration(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds.clamp(0.0, MAX_SECONDS)).unwrap_or(Duration::ZERO)
}

/// The `[runtime]` section: how modules are compiled and how long their exports may run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    /// Whether compiled modules are cached on disk.
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

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            compile_cache: true,
            compile_cache_dir: None,
            initialize_timeout_seconds: 300.0,
            cleanup_timeout_seconds: 30.0,
            run_timeout_seconds: 0.0,
        }
    }
}
