//! The limits schema, written once: [`LimitsConfig`] is `[limits]`, and a module's
//! `[modules.limits]` is any subset of its keys, merged key by key over `[limits]` and read into
//! the same struct (unknown keys are refused in both places). A new limit is a field here, its
//! conversion in `to_limits` and, if it is a number, its range in `numbers`.

use serde::{Deserialize, Serialize};

use super::checks::Range;
use crate::manager::limits::ModuleLimits;
use crate::runtime::settings::{MAX_SECONDS, optional_seconds};

/// The `[limits]` section (and, merged over it, a module's `[modules.limits]`): what a module may
/// use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// These limits with the keys of `changes` (a `[modules.limits]` table) replacing theirs.
    /// The error names the unknown key or the value of the wrong type.
    pub fn merged(&self, changes: &toml::Table) -> Result<Self, String> {
        if changes.is_empty() {
            return Ok(self.clone());
        }
        let mut table = toml::Table::try_from(self).map_err(|e| e.to_string())?;
        table.extend(
            changes
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        table
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string().trim_end().replace('\n', " "))
    }

    /// The limits the host enforces, sizes saturated to what this machine can count.
    pub fn to_limits(&self) -> ModuleLimits {
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

    /// Every number of these limits with its key (`prefix.key`, e.g. `limits.memory_mb` or
    /// `modules[embed].limits.memory_mb`) and range.
    pub(super) fn numbers(&self, prefix: &str) -> Vec<(String, f64, Range)> {
        let count = |max: f64| Range::Within(1.0, max);
        let numbers = [
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
        ];
        numbers
            .into_iter()
            .map(|(key, value, range)| (format!("{prefix}.{key}"), value, range))
            .collect()
    }
}
