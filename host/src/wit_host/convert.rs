//! Conversions between WIT-generated types and domain types, including the one mapping from
//! [`HostError`] to the WIT `error-code`.

use std::path::Path;

use crate::engine::workers::StreamEvent;
use crate::types::FinishReason;
use crate::types::error::HostError;
use crate::types::requirement::{
    ChatMessage, DevicePreference, GenerationOptions, ModelRequirement, ModelType, Precision,
};
use crate::types::results;
use crate::wit_host::bindings::modelhost::models::types as wit;

/// The WIT error for a domain error, as a guest sees it: the model store's folder on this host
/// is written `<model store>` (guests learn nothing of the host's file system). Every variant is
/// mapped here and only here; there is no wildcard arm, so a new variant forces a decision.
pub fn wit_error(error: HostError, store_root: &Path) -> wit::Error {
    wit::Error {
        code: wit_error_code(&error),
        message: without_host_paths(&error.to_string(), store_root),
        details: None,
    }
}

/// `message` with every spelling of `store_root` (as configured, and absolute) replaced by
/// `<model store>`.
pub fn without_host_paths(message: &str, store_root: &Path) -> String {
    let mut spellings: Vec<String> = [
        std::fs::canonicalize(store_root).ok(),
        std::path::absolute(store_root).ok(),
        Some(store_root.to_path_buf()),
    ]
    .into_iter()
    .flatten()
    .map(|p| p.display().to_string())
    .filter(|p| !p.is_empty())
    .collect();
    spellings.sort_by_key(|p| std::cmp::Reverse(p.len()));
    spellings.iter().fold(message.to_string(), |text, root| {
        text.replace(root, "<model store>")
    })
}

/// The WIT error code of a domain error.
pub fn wit_error_code(error: &HostError) -> wit::ErrorCode {
    match error {
        HostError::InvalidRequirement(_) => wit::ErrorCode::InvalidRequirement,
        HostError::ModelNotFound { .. } | HostError::NotOnHub { .. } => {
            wit::ErrorCode::ModelNotFound
        }
        HostError::InvalidModelFiles { .. } => wit::ErrorCode::InvalidModelFiles,
        HostError::UnsupportedArchitecture(_) => wit::ErrorCode::UnsupportedArchitecture,
        HostError::DimensionMismatch { .. } | HostError::LabelCountMismatch { .. } => {
            wit::ErrorCode::DimensionMismatch
        }
        HostError::WrongModelType { .. } => wit::ErrorCode::WrongModelType,
        HostError::NotRegistered { .. } => wit::ErrorCode::NotRegistered,
        HostError::Conflict { .. } => wit::ErrorCode::Conflict,
        HostError::InvalidInput(_) => wit::ErrorCode::InvalidInput,
        HostError::Unsupported(_) => wit::ErrorCode::Unsupported,
        HostError::DeviceUnavailable(_) => wit::ErrorCode::DeviceUnavailable,
        HostError::LoadFailed { .. } => wit::ErrorCode::LoadFailed,
        HostError::InferenceFailed { .. } => wit::ErrorCode::InferenceFailed,
        HostError::Overloaded(_) => wit::ErrorCode::Overloaded,
        HostError::Timeout(_) => wit::ErrorCode::Timeout,
        HostError::Internal(_) => wit::ErrorCode::Internal,
        HostError::Unauthorized { .. } => wit::ErrorCode::Unauthorized,
        HostError::Gated { .. } => wit::ErrorCode::Gated,
        HostError::NetworkUnreachable { .. } => wit::ErrorCode::NetworkUnreachable,
        HostError::DiskFull { .. } => wit::ErrorCode::DiskFull,
        HostError::CorruptDownload { .. } => wit::ErrorCode::CorruptDownload,
        HostError::LimitExceeded(_) => wit::ErrorCode::LimitExceeded,
        HostError::NotAllowed { .. } | HostError::Disabled => wit::ErrorCode::NotAllowed,
        HostError::OutOfMemory { .. } => wit::ErrorCode::OutOfMemory,
    }
}

/// An error a module returned from `initialize`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct GuestError {
    /// The WIT error code, as written in the WIT (`model-not-found`, ...).
    pub code: String,
    /// The module's message.
    pub message: String,
}

/// Most bytes of a module's error message the host keeps (it is logged and shown in `/status`).
pub const MAX_GUEST_MESSAGE_BYTES: usize = 4096;

/// A module's error in the runtime's terms, its message cut to [`MAX_GUEST_MESSAGE_BYTES`].
pub fn guest_error(error: wit::Error) -> GuestError {
    let mut message = error.message;
    if message.len() > MAX_GUEST_MESSAGE_BYTES {
        let mut end = MAX_GUEST_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    GuestError {
        code: error_code_name(error.code).to_string(),
        message,
    }
}

/// The WIT spelling of an error code.
pub fn error_code_name(code: wit::ErrorCode) -> &'static str {
    match code {
        wit::ErrorCode::InvalidRequirement => "invalid-requirement",
        wit::ErrorCode::ModelNotFound => "model-not-found",
        wit::ErrorCode::InvalidModelFiles => "invalid-model-files",
        wit::ErrorCode::UnsupportedArchitecture => "unsupported-architecture",
        wit::ErrorCode::DimensionMismatch => "dimension-mismatch",
        wit::ErrorCode::WrongModelType => "wrong-model-type",
        wit::ErrorCode::NotRegistered => "not-registered",
        wit::ErrorCode::Conflict => "conflict",
        wit::ErrorCode::InvalidInput => "invalid-input",
        wit::ErrorCode::Unsupported => "unsupported",
        wit::ErrorCode::DeviceUnavailable => "device-unavailable",
        wit::ErrorCode::LoadFailed => "load-failed",
        wit::ErrorCode::InferenceFailed => "inference-failed",
        wit::ErrorCode::Overloaded => "overloaded",
        wit::ErrorCode::Timeout => "timeout",
        wit::ErrorCode::Internal => "internal",
        wit::ErrorCode::Unauthorized => "unauthorized",
        wit::ErrorCode::Gated => "gated",
        wit::ErrorCode::NetworkUnreachable => "network-unreachable",
        wit::ErrorCode::DiskFull => "disk-full",
        wit::ErrorCode::CorruptDownload => "corrupt-download",
        wit::ErrorCode::LimitExceeded => "limit-exceeded",
        wit::ErrorCode::NotAllowed => "not-allowed",
        wit::ErrorCode::OutOfMemory => "out-of-memory",
    }
}

impl From<wit::ModelType> for ModelType {
    fn from(value: wit::ModelType) -> Self {
        match value {
            wit::ModelType::Embedding => Self::Embedding,
            wit::ModelType::Text2text => Self::Text2Text,
            wit::ModelType::TextGeneration => Self::TextGeneration,
            wit::ModelType::Classification => Self::Classification,
        }
    }
}

impl From<ModelType> for wit::ModelType {
    fn from(value: ModelType) -> Self {
        match value {
            ModelType::Embedding => Self::Embedding,
            ModelType::Text2Text => Self::Text2text,
            ModelType::TextGeneration => Self::TextGeneration,
            ModelType::Classification => Self::Classification,
        }
    }
}

impl From<wit::Device> for DevicePreference {
    fn from(value: wit::Device) -> Self {
        match value {
            wit::Device::Auto => Self::Auto,
            wit::Device::Cpu => Self::Cpu,
            wit::Device::Cuda => Self::Cuda,
            wit::Device::CudaOrdinal(n) => Self::CudaOrdinal(n),
        }
    }
}

impl From<wit::ModelRequirement> for ModelRequirement {
    fn from(r: wit::ModelRequirement) -> Self {
        Self {
            model_type: r.model_type.into(),
            name: r.name,
            revision: r.revision,
            device: r.device.into(),
            dimension: r.dimension,
            batch_size: r.batch_size,
            cache_embeddings: r.cache_embeddings,
            max_input_length: r.max_input_length,
            max_output_length: r.max_output_length,
            temperature: r.temperature,
            top_k: r.top_k,
            top_p: r.top_p,
            repetition_penalty: r.repetition_penalty,
            weights_file: r.weights_file,
            streaming: r.streaming,
            num_labels: r.num_labels,
            threshold: r.threshold,
            preload_workers: r.preload_workers,
            precision: match r.precision {
                wit::Precision::Exact => Precision::Exact,
                wit::Precision::Fast => Precision::Fast,
            },
        }
    }
}

impl From<results::Registration> for wit::Registration {
    fn from(r: results::Registration) -> Self {
        Self {
            model_id: r.model_id,
            new_registration: r.new_registration,
            model_type: r.model_type.into(),
            model_name: r.model_name,
            revision: r.revision,
            dimension: r.dimension,
            reference_count: r.reference_count,
            total_reference_count: r.total_reference_count,
        }
    }
}

impl From<results::Release> for wit::Release {
    fn from(r: results::Release) -> Self {
        Self {
            model_id: r.model_id,
            reference_count: r.reference_count,
            total_reference_count: r.total_reference_count,
        }
    }
}

impl From<results::Embeddings> for wit::Embeddings {
    fn from(e: results::Embeddings) -> Self {
        Self {
            embeddings: e.vectors,
            model_id: e.model_id,
            dimension: e.dimension,
            cached: e.cached,
            processing_time_ms: e.processing_time.as_secs_f64() * 1000.0,
            worker_id: e.worker_id,
            input_tokens: e.input_tokens,
        }
    }
}

impl From<results::Classifications> for wit::Classifications {
    fn from(c: results::Classifications) -> Self {
        Self {
            results: c
                .results
                .into_iter()
                .map(|r| wit::Classification {
                    label: r.label,
                    score: r.score,
                    scores: r
                        .scores
                        .into_iter()
                        .map(|s| wit::LabelScore {
                            label: s.label,
                            score: s.score,
                        })
                        .collect(),
                })
                .collect(),
            model_id: c.model_id,
            processing_time_ms: c.processing_time.as_secs_f64() * 1000.0,
            worker_id: c.worker_id,
        }
    }
}

impl From<wit::GenerationOptions> for GenerationOptions {
    fn from(o: wit::GenerationOptions) -> Self {
        Self {
            max_output_length: o.max_output_length,
            temperature: o.temperature,
            top_k: o.top_k,
            top_p: o.top_p,
            repetition_penalty: o.repetition_penalty,
            seed: o.seed,
            stop: o.stop,
        }
    }
}

impl From<wit::ChatMessage> for ChatMessage {
    fn from(m: wit::ChatMessage) -> Self {
        Self {
            role: m.role,
            content: m.content,
        }
    }
}

impl From<FinishReason> for wit::FinishReason {
    fn from(reason: FinishReason) -> Self {
        match reason {
            FinishReason::EndOfSequence => Self::EndOfSequence,
            FinishReason::Length => Self::Length,
            FinishReason::Stop => Self::Stop,
        }
    }
}

impl From<StreamEvent> for wit::StreamEvent {
    fn from(event: StreamEvent) -> Self {
        match event {
            StreamEvent::Text(text) => Self::Text(text),
            StreamEvent::Finished(reason) => Self::Finished(reason.into()),
        }
    }
}

impl From<results::Generation> for wit::Generation {
    fn from(g: results::Generation) -> Self {
        Self {
            text: g.text,
            model_id: g.model_id,
            prompt_tokens: g.prompt_tokens,
            tokens_generated: g.tokens_generated,
            finish_reason: g.finish_reason.into(),
            processing_time_ms: g.processing_time.as_secs_f64() * 1000.0,
        }
    }
}

impl From<results::ServiceStatus> for wit::ServiceStatus {
    fn from(s: results::ServiceStatus) -> Self {
        Self {
            initialized: s.initialized,
            worker_pool: wit::WorkerPoolStatus {
                enabled: s.worker_pool.enabled,
                num_workers: s.worker_pool.num_workers,
                active_workers: s.worker_pool.active_workers,
                pending_tasks: s.worker_pool.pending_tasks,
                workers: s
                    .worker_pool
                    .workers
                    .into_iter()
                    .map(|w| wit::WorkerStatus {
                        worker_id: w.worker_id,
                        device: w.device,
                        busy: w.busy,
                        loaded_models: w.loaded_models,
                    })
                    .collect(),
                notes: s.worker_pool.notes,
            },
            embedding_cache: wit::CacheStatus {
                enabled: s.embedding_cache.enabled,
                cached_count: s.embedding_cache.cached_count,
                hit_rate: s.embedding_cache.hit_rate,
            },
            loaded_models: s.loaded_models.into_iter().map(Into::into).collect(),
            total_loaded_models: s.total_loaded_models,
            loaded_weights: s.loaded_weights,
            module_references: s
                .module_references
                .into_iter()
                .map(|r| wit::ModuleReference {
                    module_id: r.module_id,
                    model_id: r.model_id,
                    reference_count: r.reference_count,
                })
                .collect(),
        }
    }
}

impl From<results::ModelStatus> for wit::ModelStatus {
    fn from(m: results::ModelStatus) -> Self {
        wit::ModelStatus {
            model_id: m.model_id,
            model_type: m.model_type.into(),
            model_name: m.model_name,
            revision: m.revision,
            reference_count: m.reference_count,
            loaded: m.loaded,
            last_accessed: m.last_accessed,
            source: m.source,
            device: m.device,
            workers: m.workers,
            placement_note: m.placement_note,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_see_no_host_paths_and_the_host_keeps_no_long_guest_messages() {
        let root = std::env::temp_dir().join("store-root");
        let error = HostError::ModelNotFound {
            name: "org/m".into(),
            revision: "main".into(),
            root: root.clone(),
        };
        let message = wit_error(error, &root).message;
        assert!(message.contains("<model store>"), "{message}");
        assert!(!message.contains(&root.display().to_string()), "{message}");
        let long = wit::Error {
            code: wit::ErrorCode::InvalidInput,
            message: "é".repeat(1 << 20),
            details: None,
        };
        let kept = guest_error(long).message;
        assert!(kept.len() <= MAX_GUEST_MESSAGE_BYTES + 4, "{}", kept.len());
    }

    /// The error codes are append-only: this pins their order and spelling.
    #[test]
    fn error_codes_are_pinned() {
        let pinned = [
            "invalid-requirement",
            "model-not-found",
            "invalid-model-files",
            "unsupported-architecture",
            "dimension-mismatch",
            "wrong-model-type",
            "not-registered",
            "conflict",
            "invalid-input",
            "unsupported",
            "device-unavailable",
            "load-failed",
            "inference-failed",
            "overloaded",
            "timeout",
            "internal",
            "unauthorized",
            "gated",
            "network-unreachable",
            "disk-full",
            "corrupt-download",
            "limit-exceeded",
            "not-allowed",
            "out-of-memory",
        ];
        let wit = include_str!("../../../wit/types.wit");
        let start = wit.find("enum error-code {").expect("error-code enum");
        let body = &wit[start..start + wit[start..].find('}').unwrap()];
        let in_wit: Vec<&str> = body
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("///"))
            .map(|l| l.trim_end_matches(','))
            .collect();
        assert_eq!(in_wit, pinned);
        use wit::ErrorCode::*;
        let codes = [
            InvalidRequirement,
            ModelNotFound,
            InvalidModelFiles,
            UnsupportedArchitecture,
            DimensionMismatch,
            WrongModelType,
            NotRegistered,
            Conflict,
            InvalidInput,
            Unsupported,
            DeviceUnavailable,
            LoadFailed,
            InferenceFailed,
            Overloaded,
            Timeout,
            Internal,
            Unauthorized,
            Gated,
            NetworkUnreachable,
            DiskFull,
            CorruptDownload,
            LimitExceeded,
            NotAllowed,
            OutOfMemory,
        ];
        for (i, code) in codes.into_iter().enumerate() {
            assert_eq!(code as usize, i);
            assert_eq!(error_code_name(code), pinned[i]);
        }
    }
}
