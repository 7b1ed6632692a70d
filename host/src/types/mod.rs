//! The shared vocabulary: what modules ask for (requirements, generation options), what the host
//! answers (results, status), the identities it keys things by, and the one error type every
//! layer's errors convert into. Plain data: nothing here does I/O or knows about WIT.

pub mod device;
pub mod error;
pub mod ids;
pub mod requirement;
pub mod results;

pub use device::{ComputeDevice, DeviceSupport};
pub use error::HostError;
pub use ids::{ModelKey, ModuleId};
pub use requirement::{
    DevicePreference, GenerationOptions, ModelRequirement, ModelType, Precision,
};
pub use results::{DeviceMemoryStatus, FinishReason, MemoryEstimate};
