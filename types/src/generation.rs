//! Per-call generation settings ([`GenerationOptions`]) and chat messages ([`ChatMessage`]).

use serde::{Deserialize, Serialize};

use crate::Invalid;

/// Most stop sequences in one call.
pub const MAX_STOP_SEQUENCES: usize = 16;

/// Longest stop sequence, in bytes.
pub const MAX_STOP_BYTES: usize = 256;

/// Per-call overrides of a requirement's generation settings (the WIT `generation-options`); every
/// field defaults to the requirement's (then the host's: greedy, 256 tokens).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationOptions {
    /// Most tokens to generate.
    pub max_output_length: Option<u32>,
    /// Sampling temperature; 0 is greedy.
    pub temperature: Option<f32>,
    /// Sample only from the k most likely tokens.
    pub top_k: Option<u32>,
    /// Sample only from the smallest token set whose probability reaches p, in (0, 1].
    pub top_p: Option<f32>,
    /// Penalty on tokens already in the context (> 1 discourages repeats).
    pub repetition_penalty: Option<f32>,
    /// Seed for sampling: the same seed gives the same text.
    pub seed: Option<u64>,
    /// Generation stops when one of these appears (it is left out of the text).
    pub stop: Vec<String>,
}

impl GenerationOptions {
    /// Checks the values a call gives (the same sampling rules as for requirements).
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.max_output_length == Some(0) || self.top_k == Some(0) {
            return Err(Invalid::new(
                "`max_output_length` and `top_k` must be at least 1 when given",
            ));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(Invalid::new("stop sequences must not be empty"));
        }
        if self.stop.len() > MAX_STOP_SEQUENCES {
            return Err(Invalid::new(format!(
                "{} stop sequences; at most {MAX_STOP_SEQUENCES}",
                self.stop.len()
            )));
        }
        if let Some(long) = self.stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(Invalid::new(format!(
                "a stop sequence of {} bytes; at most {MAX_STOP_BYTES}",
                long.len()
            )));
        }
        check_sampling(self.temperature, self.top_p, self.repetition_penalty)
    }
}

/// The rules sampling settings follow, wherever they come from.
pub(crate) fn check_sampling(
    temperature: Option<f32>,
    top_p: Option<f32>,
    repetition_penalty: Option<f32>,
) -> Result<(), Invalid> {
    if temperature.is_some_and(|t| !(t >= 0.0 && t.is_finite())) {
        return Err(Invalid::new(
            "`temperature` must be a finite number >= 0 (0 is greedy)",
        ));
    }
    if top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(Invalid::new("`top_p` must be in (0, 1]"));
    }
    if repetition_penalty.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Invalid::new(
            "`repetition_penalty` must be a finite number > 0 (1 is none)",
        ));
    }
    Ok(())
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_options_follow_the_sampling_rules() {
        let bad = [
            GenerationOptions {
                temperature: Some(-0.1),
                ..Default::default()
            },
            GenerationOptions {
                top_p: Some(0.0),
                ..Default::default()
            },
            GenerationOptions {
                top_k: Some(0),
                ..Default::default()
            },
            GenerationOptions {
                max_output_length: Some(0),
                ..Default::default()
            },
            GenerationOptions {
                stop: vec![String::new()],
                ..Default::default()
            },
            GenerationOptions {
                stop: vec!["x".repeat(MAX_STOP_BYTES + 1)],
                ..Default::default()
            },
        ];
        for options in bad {
            assert!(options.validate().is_err(), "{options:?}");
        }
        let good = GenerationOptions {
            temperature: Some(0.0),
            top_p: Some(1.0),
            repetition_penalty: Some(1.3),
            stop: vec!["\n\n".into()],
            ..Default::default()
        };
        good.validate().unwrap();
    }
}
