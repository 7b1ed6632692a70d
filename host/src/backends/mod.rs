//! Inference backends: the `ModelBackend` trait the manager loads models through, and the candle
//! implementation of it.
//!
//! Backends see only domain types (model files, texts, options), never WIT-generated ones, so the
//! contract can evolve without touching inference code. Backend code fails with [`BackendError`];
//! the traits the manager and the workers call through return it converted into `HostError`.

mod common;
mod encoder;
mod error;
mod llama;
mod t5;

use std::sync::Arc;

use crate::kernels::{Isa, WeightFormat};
use crate::store::local::ModelFiles;
use crate::types::MemoryEstimate;
use crate::types::error::HostError;
use crate::types::requirement::{ModelType, Precision};
use crate::types::{ComputeDevice, DeviceSupport};

pub use common::generation::{
    GenerationRequest, GenerationSummary, Prompt, SamplingSettings, TextGenerator,
};
pub use common::tokenizer::TruncatingTokenizer;
pub use encoder::classifier::SequenceClassifier;
pub use encoder::embedder::BertEmbedder;
pub use encoder::pooling::{Pooling, SentenceTransformerConfig};
pub use error::{BackendError, InferenceError};
pub use llama::LlamaGenerator;
pub use t5::T5Generator;

/// What verifying a model's files tells about it, without loading its weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The architecture named by the model's config, e.g. `BertModel`.
    pub architecture: String,
    /// Embedding models: the vector size.
    pub dimension: Option<u32>,
    /// The longest input, in tokens, the model accepts.
    pub max_input_length: u32,
    /// What turns the model's outputs into results (e.g. `mean,normalized`); part of the
    /// embedding cache key, since the same weights with another head give other vectors.
    pub head: String,
    /// Classification models: the label of each output, in order (`id2label`).
    pub labels: Vec<String>,
    /// What the model needs in memory once loaded.
    pub memory: MemoryEstimate,
    /// The devices the backend can run the model on; placement uses no others.
    pub runs_on: DeviceSupport,
}

/// A model's tokenizer. It is loaded at registration, with verification, so that requests can
/// be measured and batched by token count before any weights are loaded.
pub trait TextEncoder: Send + Sync {
    /// Token ids of each text, special tokens included, truncated to `max_tokens`.
    fn encode(&self, texts: &[String], max_tokens: usize) -> Result<Vec<Vec<u32>>, HostError>;
}

/// A verified model: what it is and how to tokenize for it.
pub struct Inspection {
    /// What the model is.
    pub info: ModelInfo,
    /// Its tokenizer.
    pub encoder: Arc<dyn TextEncoder>,
}

/// A model that turns each token sequence into one vector: an embedding model's vectors, or a
/// classifier's label scores.
pub trait SequenceModel: Send + Sync {
    /// One vector per sequence, in order. `batch` is never empty.
    fn run(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, HostError>;
}

/// A model in memory, ready to serve requests of its type.
pub enum LoadedModel {
    /// An embedding or classification model.
    Sequence(Box<dyn SequenceModel>),
    /// A text generation model.
    Generator(Box<dyn TextGenerator>),
}

/// Verifies and loads models. Loading and inference are called on worker threads, never on the
/// async runtime.
pub trait ModelBackend: Send + Sync + 'static {
    /// Checks that the files can serve `model_type` (config, architecture, tokenizer, weights)
    /// and returns what the model is and its tokenizer, without loading the weights.
    fn inspect(&self, model_type: ModelType, files: &ModelFiles) -> Result<Inspection, HostError>;

    /// Loads the model's weights onto `device`, for `precision` arithmetic.
    fn load(
        &self,
        model_type: ModelType,
        files: &ModelFiles,
        device: ComputeDevice,
        precision: Precision,
    ) -> Result<LoadedModel, HostError>;
}

/// The candle backend: runs models on the CPU, or on CUDA GPUs with the `cuda` feature.
#[derive(Debug, Default, Clone, Copy)]
pub struct CandleBackend;

impl ModelBackend for CandleBackend {
    fn inspect(&self, model_type: ModelType, files: &ModelFiles) -> Result<Inspection, HostError> {
        let inspection = match model_type {
            ModelType::Embedding => encoder::embedder::inspect(files),
            ModelType::Classification => encoder::classifier::inspect(files),
            ModelType::TextGeneration => llama::inspect(files),
            ModelType::Text2Text => t5::inspect(files),
        };
        inspection.map_err(HostError::from)
    }

    fn load(
        &self,
        model_type: ModelType,
        files: &ModelFiles,
        device: ComputeDevice,
        precision: Precision,
    ) -> Result<LoadedModel, HostError> {
        match model_type {
            ModelType::Embedding => Ok(LoadedModel::Sequence(Box::new(BertEmbedder::load(
                files, device, precision,
            )?))),
            ModelType::Classification => Ok(LoadedModel::Sequence(Box::new(
                SequenceClassifier::load(files, device, precision)?,
            ))),
            ModelType::TextGeneration => Ok(LoadedModel::Generator(Box::new(
                LlamaGenerator::load(files, device, precision)?,
            ))),
            ModelType::Text2Text => Ok(LoadedModel::Generator(Box::new(T5Generator::load(
                files, device,
            )?))),
        }
    }
}

/// The devices candle's backend runs every model family on: the CPU, and CUDA GPUs when the host
/// is built with the `cuda` feature.
pub(crate) const CANDLE_DEVICES: DeviceSupport = DeviceSupport {
    cpu: true,
    cuda: cfg!(feature = "cuda"),
};

/// The CPU weight format for `precision`: bf16 for `Fast` where the CPU multiplies bf16 natively.
pub(crate) fn cpu_weight_format(precision: Precision, name: &str) -> WeightFormat {
    match precision {
        Precision::Exact => WeightFormat::F32,
        Precision::Fast if Isa::detected().has_bf16() => WeightFormat::Bf16,
        Precision::Fast => {
            tracing::info!(model = %name, "fast precision runs as exact: this CPU has no AVX512-BF16");
            WeightFormat::F32
        }
    }
}
