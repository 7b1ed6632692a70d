//! `ModuleLimits`: what one module may use: memory and CPU in its sandbox, calls in flight, model
//! ids, the size of each inference call, generated tokens, the models it may register, and
//! whether it may make outgoing HTTP requests. Every limit has a safe default.

use std::time::Duration;

use crate::types::error::HostError;

/// Longest model id a module may use, in bytes.
pub const MAX_MODEL_ID_BYTES: usize = 256;

/// Checks a model id a guest sent before it is used or kept anywhere: not blank, at most
/// [`MAX_MODEL_ID_BYTES`], no control characters. The error never echoes a long id back.
pub fn check_model_id(model_id: &str) -> Result<(), HostError> {
    if model_id.trim().is_empty() {
        return Err(HostError::InvalidInput("the model id is empty".into()));
    }
    if model_id.len() > MAX_MODEL_ID_BYTES {
        return Err(HostError::InvalidInput(format!(
            "a model id of {} bytes; model ids have at most {MAX_MODEL_ID_BYTES}",
            model_id.len()
        )));
    }
    if model_id.chars().any(char::is_control) {
        return Err(HostError::InvalidInput(
            "the model id contains control characters".into(),
        ));
    }
    Ok(())
}

/// The limits of one module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleLimits {
    /// Bytes of all linear memories of one instance (one store) together.
    pub memory_bytes: usize,
    /// Elements of all tables of one instance (one store) together.
    pub table_elements: usize,
    /// Guest CPU time one export call may use (host work such as inference does not count).
    pub cpu_time_per_call: Option<Duration>,
    /// Most HTTP requests one module serves at once.
    pub max_in_flight: usize,
    /// Most model ids one module may hold.
    pub max_models: usize,
    /// Most texts in one inference call.
    pub max_texts_per_call: usize,
    /// Most bytes of text (all texts, or the prompt) in one inference call.
    pub max_bytes_per_call: usize,
    /// Most tokens one generation may produce.
    pub max_new_tokens: u32,
    /// Model names the module may register: exact names, `org/*` prefixes, or `*`.
    pub allowed_models: Vec<String>,
    /// Whether the module may send outgoing HTTP requests.
    pub allow_outgoing_http: bool,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 1 << 30,
            table_elements: 100_000,
            cpu_time_per_call: Some(Duration::from_secs(30)),
            max_in_flight: 64,
            max_models: 64,
            max_texts_per_call: 4096,
            max_bytes_per_call: 16 << 20,
            max_new_tokens: 4096,
            allowed_models: vec!["*".into()],
            allow_outgoing_http: false,
        }
    }
}

impl ModuleLimits {
    /// Whether the module may register the model `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.allowed_models.iter().any(|pattern| {
            pattern == "*"
                || pattern == name
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|prefix| prefix.ends_with('/') && name.starts_with(prefix))
        })
    }

    /// Checks the size of one inference call's input: `count` texts of `bytes` bytes in all.
    pub fn check_input(&self, count: usize, bytes: usize) -> Result<(), HostError> {
        if count > self.max_texts_per_call {
            return Err(HostError::LimitExceeded(format!(
                "{count} texts in one call; the module's limit is {} (limits.max_texts_per_call): \
                 split the call",
                self.max_texts_per_call
            )));
        }
        if bytes > self.max_bytes_per_call {
            return Err(HostError::LimitExceeded(format!(
                "{bytes} bytes of text in one call; the module's limit is {} \
                 (limits.max_bytes_per_call): split the call",
                self.max_bytes_per_call
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_and_organizations() {
        let limits = ModuleLimits {
            allowed_models: vec!["sentence-transformers/*".into(), "org/exact".into()],
            ..ModuleLimits::default()
        };
        assert!(limits.allows("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(limits.allows("org/exact"));
        assert!(!limits.allows("org/exactly") && !limits.allows("sentence-transformersX/a"));
        assert!(ModuleLimits::default().allows("anything/at-all"));
        assert!(ModuleLimits::default().check_input(4097, 10).is_err());
        assert!(ModuleLimits::default().check_input(2, 10).is_ok());
    }

    #[test]
    fn model_ids_are_short_printable_and_not_blank() {
        assert!(check_model_id("embedder-1").is_ok());
        for bad in [" ", "", "a\nb", "\u{7}"] {
            assert!(check_model_id(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(MAX_MODEL_ID_BYTES + 1);
        let message = check_model_id(&long).unwrap_err().to_string();
        assert!(!message.contains(&long) && message.len() < 200, "{message}");
    }
}
