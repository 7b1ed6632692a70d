//! The shared vocabulary (`modelhost-types`) in the WIT records the host's interface takes.

use modelhost_types::{ChatMessage, DevicePreference, GenerationOptions, ModelRequirement};
use modelhost_types::{ModelType, Precision};

use crate::bindings::modelhost::models::types as wit;

/// A requirement as the host's interface takes it.
pub(crate) fn requirement_to_wit(r: &ModelRequirement) -> wit::ModelRequirement {
    wit::ModelRequirement {
        model_type: match r.model_type {
            ModelType::Embedding => wit::ModelType::Embedding,
            ModelType::Text2Text => wit::ModelType::Text2text,
            ModelType::TextGeneration => wit::ModelType::TextGeneration,
            ModelType::Classification => wit::ModelType::Classification,
        },
        name: r.name.clone(),
        revision: r.revision.clone(),
        device: match r.device {
            DevicePreference::Auto => wit::Device::Auto,
            DevicePreference::Cpu => wit::Device::Cpu,
            DevicePreference::Cuda => wit::Device::Cuda,
            DevicePreference::CudaOrdinal(n) => wit::Device::CudaOrdinal(n),
        },
        dimension: r.dimension,
        batch_size: r.batch_size,
        cache_embeddings: r.cache_embeddings,
        max_input_length: r.max_input_length,
        max_output_length: r.max_output_length,
        temperature: r.temperature,
        top_k: r.top_k,
        top_p: r.top_p,
        repetition_penalty: r.repetition_penalty,
        streaming: r.streaming,
        num_labels: r.num_labels,
        threshold: r.threshold,
        preload_workers: r.preload_workers,
        weights_file: r.weights_file.clone(),
        precision: match r.precision {
            Precision::Exact => wit::Precision::Exact,
            Precision::Fast => wit::Precision::Fast,
        },
    }
}

/// Call options as the host's interface takes them.
pub(crate) fn options_to_wit(o: &GenerationOptions) -> wit::GenerationOptions {
    wit::GenerationOptions {
        max_output_length: o.max_output_length,
        temperature: o.temperature,
        top_k: o.top_k,
        top_p: o.top_p,
        repetition_penalty: o.repetition_penalty,
        seed: o.seed,
        stop: o.stop.clone(),
    }
}

/// A chat message as the host's interface takes it.
pub(crate) fn message_to_wit(m: &ChatMessage) -> wit::ChatMessage {
    wit::ChatMessage {
        role: m.role.clone(),
        content: m.content.clone(),
    }
}
