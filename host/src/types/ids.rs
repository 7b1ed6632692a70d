//! Identities: of a module instance (assigned by the host) and of one loaded copy of a model
//! (what ids with equal requirements share).

use std::sync::Arc;

use modelhost_types::{ModelType, Precision};

/// The identity of one module instance, assigned by the host (never by the module).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleId(Arc<str>);

impl ModuleId {
    /// A module id with the given name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ModuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one copy of weights: ids with equal keys share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelKey {
    /// The model type it serves.
    pub model_type: ModelType,
    /// Hugging Face repository id.
    pub name: String,
    /// Resolved commit.
    pub revision: String,
    /// The weights file named by the requirement, if any.
    pub weights_file: Option<String>,
    /// The arithmetic it is loaded for.
    pub precision: Precision,
}
