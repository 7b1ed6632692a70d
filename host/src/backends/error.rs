//! `BackendError`: every way verifying a checkpoint, loading it or running it fails, and
//! `InferenceError`, why a forward pass or the decoding loop stopped, before it is tied to a
//! model. Each `BackendError` converts (`From`) into the `HostError` variant of the same name, with
//! the same message.

use crate::store::StoreError;
use crate::types::error::{HostError, UnsupportedArchitecture};

/// A failure to verify, load or run a model.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The model's files are unusable: missing, unreadable, or with a value out of bounds
    /// (`StoreError::InvalidModelFiles`, from `ModelFiles::invalid`).
    #[error(transparent)]
    Files(#[from] StoreError),

    /// The model's architecture cannot serve the requested model type.
    #[error(transparent)]
    UnsupportedArchitecture(#[from] UnsupportedArchitecture),

    /// The model could not be loaded.
    #[error("could not load model '{name}': {reason}")]
    LoadFailed {
        /// Hugging Face repository id.
        name: String,
        /// The underlying cause.
        reason: String,
    },

    /// The model failed while running.
    #[error("inference failed on model '{name}': {source}")]
    InferenceFailed {
        /// Hugging Face repository id.
        name: String,
        /// The underlying cause.
        source: InferenceError,
    },

    /// The input is unusable: it does not tokenize, the chat template rejects it, or it is too
    /// long for the model.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// Why a forward pass or the decoding loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// A sequence is longer than the encoder's position table.
    #[error("a sequence of {tokens} tokens exceeds the model's {positions} positions")]
    TooManyPositions {
        /// Tokens in the sequence.
        tokens: usize,
        /// Positions the model has.
        positions: usize,
    },
    /// The sequence would run past the decoder's context.
    #[error("the sequence exceeds the model's context of {context}")]
    ContextExceeded {
        /// The context the model runs with, in tokens.
        context: usize,
    },
    /// A token id is not in the model's vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    UnknownToken {
        /// The token id.
        id: usize,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The generated tokens do not decode.
    #[error("cannot decode generated tokens: {0}")]
    Detokenize(tokenizers::Error),
    /// Nobody wants the rest of the generation.
    #[error("generation cancelled: the caller went away")]
    Cancelled,
}

impl From<BackendError> for HostError {
    fn from(error: BackendError) -> Self {
        match error {
            BackendError::Files(files) => files.into(),
            BackendError::UnsupportedArchitecture(unsupported) => {
                Self::UnsupportedArchitecture(unsupported)
            }
            BackendError::LoadFailed { name, reason } => Self::LoadFailed { name, reason },
            BackendError::InferenceFailed { name, source } => Self::InferenceFailed {
                name,
                reason: source.to_string(),
            },
            BackendError::InvalidInput(message) => Self::InvalidInput(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::requirement::ModelType;

    /// A guest or user sees what the backend said, under the variant of the same name.
    #[test]
    fn every_backend_error_keeps_its_message_in_the_host_error() {
        let name = String::from("org/m");
        let errors = [
            BackendError::Files(StoreError::InvalidModelFiles {
                name: name.clone(),
                path: "/store/models--org--m/snapshots/0".into(),
                reason: "`hidden_size` is 0; it must be between 1 and 65536".into(),
            }),
            BackendError::UnsupportedArchitecture(UnsupportedArchitecture {
                name: name.clone(),
                architecture: "GPT2LMHeadModel".into(),
                model_type: ModelType::TextGeneration,
                supported: "Llama-family models",
            }),
            BackendError::LoadFailed {
                name: name.clone(),
                reason: "on cpu: cannot find tensor x".into(),
            },
            BackendError::InferenceFailed {
                name: name.clone(),
                source: InferenceError::UnknownToken { id: 9, vocab: 8 },
            },
            BackendError::InferenceFailed {
                name,
                source: InferenceError::Tensor(candle_core::Error::Msg("broken".into())),
            },
            BackendError::InvalidInput("the prompt is empty".into()),
        ];
        for error in errors {
            let message = error.to_string();
            let host = HostError::from(error);
            assert_eq!(host.to_string(), message);
        }
    }
}
