//! The vocabulary modelhost and its modules share, written once: what kind of model
//! ([`ModelType`]), where it should run ([`DevicePreference`]), how exactly its arithmetic follows
//! the reference ([`Precision`]), everything a module asks of a model ([`ModelRequirement`]),
//! per-call generation settings ([`GenerationOptions`]) and chat messages ([`ChatMessage`]).
//!
//! Plain data with serde, in the settings format modules are configured with
//! (`"model_type": "embedding"`, `"device": "cuda:1"`, ...), and the checks both sides apply
//! before a value is used. The host converts these to and from the WIT records; so does the guest
//! SDK. Nothing here depends on WIT, wasmtime or an inference library, so the crate builds for
//! every target a module or the host builds for.

mod generation;
mod invalid;
mod model;
mod requirement;

pub use generation::{ChatMessage, GenerationOptions, MAX_STOP_BYTES, MAX_STOP_SEQUENCES};
pub use invalid::Invalid;
pub use model::{DevicePreference, ModelType, Precision};
pub use requirement::{MAX_BATCH_SIZE, MAX_NAME_BYTES, MAX_PATH_BYTES, ModelRequirement};
