//! `HostError`: every way a model-manager operation can fail, with enough context to act on.
//!
//! The store and the backends have errors of their own (`store::StoreError`,
//! `backends::BackendError`), each of which converts into this type; the manager returns only
//! this type. `wit_host::convert` maps each variant to a WIT `error-code` in one exhaustive
//! `match`.

use std::fmt;
use std::path::PathBuf;

use modelhost_types::ModelType;

/// A model whose architecture cannot serve the requested model type (found by the backends,
/// answered by the manager: one message for both).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "model '{name}' has architecture '{architecture}', which this host cannot run as \
     {model_type}; supported: {supported}"
)]
pub struct UnsupportedArchitecture {
    /// Hugging Face repository id.
    pub name: String,
    /// The architecture named by the model's config.
    pub architecture: String,
    /// The requested model type.
    pub model_type: ModelType,
    /// The architectures that do work for this model type.
    pub supported: &'static str,
}

/// A failed model-manager operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    /// The requirement is malformed; the message names the field.
    #[error("invalid requirement: {0}")]
    InvalidRequirement(String),

    /// The model is not in the model store.
    #[error(
        "model '{name}' (revision '{revision}') is not in the model store at {}: \
         fetch it into that folder (for example `huggingface-cli download {name} --cache-dir {}`) \
         or point `models.cache_dir` at the folder that holds it",
        root.display(), root.display()
    )]
    ModelNotFound {
        /// Hugging Face repository id.
        name: String,
        /// Requested revision.
        revision: String,
        /// The model store's root folder.
        root: PathBuf,
    },

    /// The hub has no such model or revision, or none this host can read.
    #[error(
        "cannot download '{name}' (revision '{revision}') from {endpoint}: {reason}; check the name and revision"
    )]
    NotOnHub {
        /// Hugging Face repository id.
        name: String,
        /// Requested revision.
        revision: String,
        /// The hub's address.
        endpoint: String,
        /// What is missing.
        reason: String,
    },

    /// The hub wants credentials for the model.
    #[error(
        "the model hub at {endpoint} refused '{name}' without valid credentials (HTTP 401): set \
         HF_TOKEN, or log in with `huggingface-cli login`"
    )]
    Unauthorized {
        /// Hugging Face repository id.
        name: String,
        /// The hub's address.
        endpoint: String,
    },

    /// The model is gated and the token's account has not accepted its terms.
    #[error(
        "model '{name}' is gated (HTTP 403 from {endpoint}): accept its terms on \
         {endpoint}/{name} with the account of your HF_TOKEN"
    )]
    Gated {
        /// Hugging Face repository id.
        name: String,
        /// The hub's address.
        endpoint: String,
    },

    /// The hub could not be reached, or a transfer broke off.
    #[error(
        "cannot download '{name}' from {endpoint}: {reason}; check the network (or HF_ENDPOINT), \
         or work offline with HF_HUB_OFFLINE=1 and models fetched ahead (scripts/fetch-models, \
         `modelhost pull`)"
    )]
    NetworkUnreachable {
        /// Hugging Face repository id.
        name: String,
        /// The hub's address.
        endpoint: String,
        /// What failed.
        reason: String,
    },

    /// The model store's disk is full.
    #[error("the model store at {} is out of space while downloading '{name}': free space or point models.cache_dir elsewhere", root.display())]
    DiskFull {
        /// Hugging Face repository id.
        name: String,
        /// The model store's root folder.
        root: PathBuf,
    },

    /// A downloaded file does not match its checksum or size; it was deleted.
    #[error("the download of {file} of '{name}' is corrupt ({reason}); it was deleted: retry")]
    CorruptDownload {
        /// Hugging Face repository id.
        name: String,
        /// The file.
        file: String,
        /// What did not match.
        reason: String,
    },

    /// The model's files are present but unusable.
    #[error("the files of model '{name}' in {} are unusable: {reason}", path.display())]
    InvalidModelFiles {
        /// Hugging Face repository id.
        name: String,
        /// The snapshot folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The model's architecture cannot serve the requested model type.
    #[error(transparent)]
    UnsupportedArchitecture(#[from] UnsupportedArchitecture),

    /// The model's output size differs from the requirement's `dimension`.
    #[error(
        "model '{name}' produces {actual}-dimensional embeddings, but the requirement says dimension {expected}"
    )]
    DimensionMismatch {
        /// Hugging Face repository id.
        name: String,
        /// The requirement's dimension.
        expected: u32,
        /// The model's dimension.
        actual: u32,
    },

    /// The classifier's number of labels differs from the requirement's `num_labels`.
    #[error("model '{name}' has {actual} labels, but the requirement says num_labels {expected}")]
    LabelCountMismatch {
        /// Hugging Face repository id.
        name: String,
        /// The requirement's number of labels.
        expected: u32,
        /// The model's number of labels.
        actual: u32,
    },

    /// The id is registered for another model type than the call needs.
    #[error(
        "model id '{model_id}' is registered as model type {registered}; this call needs model type {needed}"
    )]
    WrongModelType {
        /// The model id.
        model_id: String,
        /// Its registered type.
        registered: ModelType,
        /// The type the call needs.
        needed: ModelType,
    },

    /// The calling module holds no reference to this id.
    #[error("model id '{model_id}' is not registered by this module: call register-model first")]
    NotRegistered {
        /// The model id.
        model_id: String,
    },

    /// The id is registered with a different requirement.
    #[error(
        "model id '{model_id}' is already registered with a different requirement (differs in: {}); \
         use another model id or the same requirement",
        fields.join(", ")
    )]
    Conflict {
        /// The model id.
        model_id: String,
        /// The requirement fields that differ.
        fields: Vec<&'static str>,
    },

    /// The call's input is unusable.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// This host does not offer the capability.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A configured or requested device does not exist or cannot be used.
    #[error("device unavailable: {0}")]
    DeviceUnavailable(String),

    /// The model could not be loaded.
    #[error("could not load model '{name}': {reason}")]
    LoadFailed {
        /// Hugging Face repository id.
        name: String,
        /// The underlying cause.
        reason: String,
    },

    /// The model failed while running.
    #[error("inference failed on model '{name}': {reason}")]
    InferenceFailed {
        /// Hugging Face repository id.
        name: String,
        /// The underlying cause.
        reason: String,
    },

    /// A call goes beyond one of the module's limits; the message names it.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),

    /// The module's configuration does not allow the model.
    #[error(
        "module '{module}' may not use model '{name}': add it to the module's \
         `limits.allowed_models` in the host configuration"
    )]
    NotAllowed {
        /// The module.
        module: String,
        /// The model's repository id.
        name: String,
    },

    /// The host's configuration turns the model manager off (`enabled = false`).
    #[error(
        "the model manager is disabled on this host: set `enabled = true` in its configuration \
         to let modules register models"
    )]
    Disabled,

    /// The model does not fit in the memory budget of any device it may run on.
    #[error(
        "out of memory: model '{name}' needs {} and does not fit ({free}, after evicting \
         every model no module uses); release models, raise the memory fraction in \
         [worker_pool], or use a smaller model",
        needed.map_or_else(|| "more than was free".to_string(), mib)
    )]
    OutOfMemory {
        /// The model's repository id.
        name: String,
        /// The bytes it needs; `None` when a device failed to allocate without saying.
        needed: Option<u64>,
        /// What the devices had free.
        free: FreeMemory,
    },

    /// The model's queue is full.
    #[error("overloaded: {0}")]
    Overloaded(String),

    /// The request waited too long before it started.
    #[error("timed out: {0}")]
    Timeout(String),

    /// An unexpected host-side failure, such as a crashed inference thread.
    #[error("internal host error: {0}")]
    Internal(String),
}

/// What the devices had free when a model did not fit, as [`HostError::OutOfMemory`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreeMemory {
    /// The devices tried, each with the bytes left in its budget.
    Devices(Vec<DeviceFree>),
    /// A device whose whole budget is less than one piece of work needs.
    Budget {
        /// The device, e.g. `cuda:0`.
        device: String,
        /// Its budget in bytes.
        budget: u64,
        /// The work, e.g. `one batch`.
        work: &'static str,
    },
    /// A device's allocator failed.
    AllocationFailed {
        /// The device, e.g. `cuda:0`.
        device: String,
        /// What the allocator said.
        reason: String,
    },
}

/// The bytes left in one device's budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFree {
    /// The device, e.g. `cpu`.
    pub device: String,
    /// Bytes left in its budget.
    pub free: u64,
    /// Its budget in bytes.
    pub budget: u64,
}

impl fmt::Display for FreeMemory {
    /// `cpu: 200.0 MiB free of 1000.0 MiB, ...`, `cpu: a budget of 1000.0 MiB for one batch`
    /// or `cuda:0 failed to allocate: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Devices(devices) => {
                for (i, d) in devices.iter().enumerate() {
                    let separator = if i == 0 { "" } else { ", " };
                    write!(
                        f,
                        "{separator}{}: {} free of {}",
                        d.device,
                        mib(d.free),
                        mib(d.budget)
                    )?;
                }
                Ok(())
            }
            Self::Budget {
                device,
                budget,
                work,
            } => write!(f, "{device}: a budget of {} for {work}", mib(*budget)),
            Self::AllocationFailed { device, reason } => {
                write!(f, "{device} failed to allocate: {reason}")
            }
        }
    }
}

/// `bytes` in MiB with one decimal (`87.3 MiB`), as messages show memory sizes.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// The text of a panic's payload (a `&str` or a `String`), for the error a caught panic becomes.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_shows_bytes_in_mib() {
        let error = HostError::OutOfMemory {
            name: "org/m".into(),
            needed: Some(400 << 20),
            free: FreeMemory::Devices(vec![
                DeviceFree {
                    device: "cpu".into(),
                    free: 200 << 20,
                    budget: 1000 << 20,
                },
                DeviceFree {
                    device: "cuda:0".into(),
                    free: 0,
                    budget: 512 << 20,
                },
            ]),
        };
        assert!(error.to_string().starts_with(
            "out of memory: model 'org/m' needs 400.0 MiB and does not fit (cpu: 200.0 MiB free \
             of 1000.0 MiB, cuda:0: 0.0 MiB free of 512.0 MiB, after evicting"
        ));
        let error = HostError::OutOfMemory {
            name: "org/m".into(),
            needed: None,
            free: FreeMemory::AllocationFailed {
                device: "cuda:0".into(),
                reason: "CUDA_ERROR_OUT_OF_MEMORY".into(),
            },
        };
        assert!(error.to_string().contains(
            "needs more than was free and does not fit (cuda:0 failed to allocate: \
             CUDA_ERROR_OUT_OF_MEMORY, after"
        ));
        let budget = FreeMemory::Budget {
            device: "cpu".into(),
            budget: 3 << 19,
            work: "one batch",
        };
        assert_eq!(budget.to_string(), "cpu: a budget of 1.5 MiB for one batch");
    }
}
