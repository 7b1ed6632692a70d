//! [`Invalid`]: why a requirement or a set of options was refused.

use std::fmt;

/// A value that breaks the rules of its field; the message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(String);

impl Invalid {
    /// A refusal explained by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The explanation.
    pub fn message(&self) -> &str {
        &self.0
    }

    /// The explanation, owned.
    pub fn into_message(self) -> String {
        self.0
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}
