//! What a checkpoint's files say before any weights are read: the architecture `config.json`
//! names, and whether the safetensors weights are there and whole.

use serde::Deserialize;

use super::memory_estimate::SafetensorsHeader;
use crate::store::ModelFiles;
use crate::types::HostError;

/// The weights file of safetensors checkpoints.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// The fields of `config.json` that decide whether this backend applies.
#[derive(Deserialize)]
struct ArchitectureFields {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

/// Checks that `model.safetensors` (the only weights format the safetensors-based backends read)
/// is there and whole; returns the size of its tensors as f32.
pub fn require_safetensors(files: &ModelFiles) -> Result<u64, HostError> {
    let path = files.path(WEIGHTS_FILE);
    if !path.is_file() {
        return Err(files.invalid(format!(
            "{WEIGHTS_FILE} is missing (only safetensors weights are supported)"
        )));
    }
    let header = SafetensorsHeader::read(&path)
        .map_err(|reason| files.invalid(format!("{WEIGHTS_FILE} is unreadable: {reason}")))?;
    let (size, needed) = header.extent();
    match size >= needed {
        true => Ok(header.f32_bytes()),
        false => Err(files.invalid(format!(
            "{WEIGHTS_FILE} is truncated: {size} bytes, its header describes {needed}; fetch it again"
        ))),
    }
}

/// What `config.json` says the checkpoint is: its first architecture (or model type) and its
/// model type.
pub fn architecture(files: &ModelFiles) -> Result<(String, Option<String>), HostError> {
    let arch: ArchitectureFields = serde_json::from_str(&files.read_to_string("config.json")?)
        .map_err(|e| files.invalid(format!("config.json does not parse: {e}")))?;
    let name = arch
        .architectures
        .first()
        .cloned()
        .or(arch.model_type.clone())
        .unwrap_or_else(|| "unknown".into());
    Ok((name, arch.model_type))
}
