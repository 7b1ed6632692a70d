//! What a module asks of a model: the shared vocabulary of `modelhost-types` (one definition for
//! the host and the guest SDK), with the host's reading of a refusal as a [`HostError`].

pub use modelhost_types::{
    ChatMessage, DevicePreference, GenerationOptions, Invalid, MAX_BATCH_SIZE, MAX_NAME_BYTES,
    MAX_PATH_BYTES, MAX_STOP_BYTES, MAX_STOP_SEQUENCES, ModelRequirement, ModelType, Precision,
};

use crate::types::HostError;

/// A requirement the host refuses: `invalid-requirement`.
pub fn check_requirement(requirement: &ModelRequirement) -> Result<(), HostError> {
    requirement
        .validate()
        .map_err(|e| HostError::InvalidRequirement(e.into_message()))
}

/// Call options the host refuses: `invalid-input`.
pub fn check_options(options: &GenerationOptions) -> Result<(), HostError> {
    options
        .validate()
        .map_err(|e| HostError::InvalidInput(e.into_message()))
}
