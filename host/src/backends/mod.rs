//! Inference backends: the `ModelBackend` trait the manager loads models through, and the candle
//! implementation of it.
//!
//! Backends see only domain types (model files, texts, options), never WIT-generated ones, so the
//! contract can evolve without touching inference code.

mod bert;
mod sentence_transformers;

use crate::error::HostError;
use crate::hub::ModelFiles;
use crate::requirement::ModelType;

pub use bert::BertEmbedder;
pub use sentence_transformers::{Pooling, SentenceTransformerConfig};

/// What verifying a model's files tells about it, without loading its weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The architecture named by the model's config, e.g. `BertModel`.
    pub architecture: String,
    /// Embedding models: the vector size.
    pub dimension: Option<u32>,
    /// The longest input, in tokens, the model accepts.
    pub max_input_length: u32,
}

/// Per-call settings of an embedding run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Inputs are truncated to this many tokens (special tokens included).
    pub max_input_length: usize,
    /// Most texts per forward pass.
    pub batch_size: usize,
}

/// A model that turns texts into vectors.
pub trait EmbeddingModel: Send + Sync {
    /// One vector per text, in input order. `texts` is never empty.
    fn embed(&self, texts: &[String], options: &EmbedOptions) -> Result<Vec<Vec<f32>>, HostError>;
}

/// A model in memory, ready to serve requests of its type.
pub enum LoadedModel {
    /// An embedding model.
    Embedding(Box<dyn EmbeddingModel>),
}

/// Verifies and loads models. Implementations must be cheap to share between threads; loading
/// and inference are called on blocking threads, never on the async runtime.
pub trait ModelBackend: Send + Sync + 'static {
    /// Checks that the files can serve `model_type` (config, architecture, tokenizer) and reports
    /// what the model is, without loading the weights.
    fn inspect(&self, model_type: ModelType, files: &ModelFiles) -> Result<ModelInfo, HostError>;

    /// Loads the model's weights.
    fn load(&self, model_type: ModelType, files: &ModelFiles) -> Result<LoadedModel, HostError>;
}

/// The candle backend: runs models on the CPU with candle.
#[derive(Debug, Default, Clone, Copy)]
pub struct CandleBackend;

impl ModelBackend for CandleBackend {
    fn inspect(&self, model_type: ModelType, files: &ModelFiles) -> Result<ModelInfo, HostError> {
        match model_type {
            ModelType::Embedding => BertEmbedder::inspect(files),
            other => Err(unsupported_type(other)),
        }
    }

    fn load(&self, model_type: ModelType, files: &ModelFiles) -> Result<LoadedModel, HostError> {
        match model_type {
            ModelType::Embedding => {
                Ok(LoadedModel::Embedding(Box::new(BertEmbedder::load(files)?)))
            }
            other => Err(unsupported_type(other)),
        }
    }
}

fn unsupported_type(model_type: ModelType) -> HostError {
    HostError::Unsupported(format!(
        "{model_type} models are not available in this host yet; only embedding models are"
    ))
}
