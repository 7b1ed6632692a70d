//! What a checkpoint's files say before any weights are read: the architecture `config.json`
//! names, and whether the safetensors weights are there and whole.

use serde::Deserialize;

use super::memory_estimate::SafetensorsHeader;
use crate::backends::BackendError;
use crate::store::ModelFiles;

/// The weights file of safetensors checkpoints.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// The fields of `config.json` that decide whether this backend applies.
#[derive(Deserialize)]
struct ArchitectureFields {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

/// What `config.json` says the checkpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Architecture {
    /// Its first architecture, else its model type, else `unknown`: e.g. `BertModel`.
    pub name: String,
    /// Its model type, e.g. `bert`.
    pub model_type: Option<String>,
}

/// Checks that `model.safetensors` (the only weights format the safetensors-based backends read)
/// is there and whole; returns the size of its tensors as f32.
pub fn require_safetensors(files: &ModelFiles) -> Result<u64, BackendError> {
    let path = files.path(WEIGHTS_FILE);
    if !path.is_file() {
        return Err(files
            .invalid(format!(
                "{WEIGHTS_FILE} is missing (only safetensors weights are supported)"
            ))
            .into());
    }
    let header = SafetensorsHeader::read(&path)
        .map_err(|reason| files.invalid(format!("{WEIGHTS_FILE} is unreadable: {reason}")))?;
    let (size, needed) = (header.file_size(), header.described_size());
    if size >= needed {
        Ok(header.f32_bytes())
    } else {
        Err(files
    .invalid(format!(
        "{WEIGHTS_FILE} is truncated: {size} bytes, its header describes {needed}; fetch it again"
    ))
    .into())
    }
}

/// What `config.json` says the checkpoint is.
pub fn architecture(files: &ModelFiles) -> Result<Architecture, BackendError> {
    let arch: ArchitectureFields = serde_json::from_str(&files.read_to_string("config.json")?)
        .map_err(|e| files.invalid(format!("config.json does not parse: {e}")))?;
    let name = arch
        .architectures
        .first()
        .cloned()
        .or(arch.model_type.clone())
        .unwrap_or_else(|| "unknown".into());
    Ok(Architecture {
        name,
        model_type: arch.model_type,
    })
}
