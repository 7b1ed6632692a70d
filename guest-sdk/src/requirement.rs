//! [`ModelRequirement`]: what a module asks of a model, in the settings format modules are
//! configured with (`"model_type": "embedding"`, `"device": "cuda:1"`, ...).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::bindings::modelhost::models::types as wit;

/// The kind of work a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    /// Text to one vector.
    Embedding,
    /// Encoder-decoder generation.
    #[serde(rename = "text2text")]
    Text2Text,
    /// Decoder-only generation (`text_generation` or `text-generation`).
    #[serde(alias = "text-generation")]
    TextGeneration,
    /// Sequence classification.
    Classification,
}

/// Where the model should run: `"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// Let the host choose.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// Any CUDA GPU.
    Cuda,
    /// One CUDA GPU.
    CudaOrdinal(u32),
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::CudaOrdinal)
                .ok_or_else(|| {
                    format!(
                        "unknown device '{s}'; expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""
                    )
                }),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda => f.write_str("cuda"),
            Self::CudaOrdinal(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Everything a module asks of one model. In settings, only `model_type` and `name` are
/// required; the rest default as documented on each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRequirement {
    /// What the model is used for.
    pub model_type: ModelType,
    /// Hugging Face repository id, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
    pub name: String,
    /// Branch, tag or commit (default `main`).
    #[serde(default)]
    pub revision: Option<String>,
    /// Preferred device (default `auto`).
    #[serde(default)]
    pub device: Device,
    /// Expected embedding size, checked at registration (default: not checked).
    #[serde(default)]
    pub dimension: Option<u32>,
    /// Texts per forward pass (default: the host's).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Whether the host's embedding cache may be used (default `true`).
    #[serde(default = "yes")]
    pub cache_embeddings: bool,
    /// Longest input in tokens; longer inputs are truncated (default: the model's limit).
    #[serde(default)]
    pub max_input_length: Option<u32>,
    /// Most generated tokens (default: the host's).
    #[serde(default)]
    pub max_output_length: Option<u32>,
    /// Sampling temperature (default: the model's).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Top-k sampling (default: off).
    #[serde(default)]
    pub top_k: Option<u32>,
    /// Nucleus sampling (default: off).
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Penalty on tokens already in the context (default: none).
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    /// Whether the module streams generated text (default `false`).
    #[serde(default)]
    pub streaming: bool,
    /// Expected number of labels (default: not checked).
    #[serde(default)]
    pub num_labels: Option<u32>,
    /// Lowest reported label score (default: all labels).
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Workers that load the model at registration (default 0: load on first use).
    #[serde(default)]
    pub preload_workers: u32,
    /// The weights file to use when the repository holds several, e.g. one `.gguf` of several
    /// quantizations (default: the only one).
    #[serde(default)]
    pub weights_file: Option<String>,
    /// `"exact"` (default) or `"fast"`: reduced-precision matrix products where the device has
    /// fast instructions for them (see the WIT `precision`).
    #[serde(default)]
    pub precision: Precision,
}

/// How exactly a model's arithmetic follows the reference implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout, equal to the reference to rounding.
    #[default]
    Exact,
    /// Reduced-precision matrix products where the device has fast instructions for them.
    Fast,
}

fn yes() -> bool {
    true
}

impl ModelRequirement {
    /// A requirement of `model_type` for `name`, every other field at its default.
    pub fn new(model_type: ModelType, name: impl Into<String>) -> Self {
        Self {
            model_type,
            name: name.into(),
            revision: None,
            device: Device::Auto,
            dimension: None,
            batch_size: None,
            cache_embeddings: true,
            max_input_length: None,
            max_output_length: None,
            temperature: None,
            top_k: None,
            top_p: None,
            repetition_penalty: None,
            streaming: false,
            num_labels: None,
            threshold: None,
            preload_workers: 0,
            weights_file: None,
            precision: Precision::Exact,
        }
    }

    /// An embedding model `name` producing vectors of `dimension`.
    pub fn embedding(name: impl Into<String>, dimension: u32) -> Self {
        Self {
            dimension: Some(dimension),
            ..Self::new(ModelType::Embedding, name)
        }
    }

    /// The requirement as the host's interface takes it.
    pub fn to_wit(&self) -> wit::ModelRequirement {
        wit::ModelRequirement {
            model_type: match self.model_type {
                ModelType::Embedding => wit::ModelType::Embedding,
                ModelType::Text2Text => wit::ModelType::Text2text,
                ModelType::TextGeneration => wit::ModelType::TextGeneration,
                ModelType::Classification => wit::ModelType::Classification,
            },
            name: self.name.clone(),
            revision: self.revision.clone(),
            device: match self.device {
                Device::Auto => wit::Device::Auto,
                Device::Cpu => wit::Device::Cpu,
                Device::Cuda => wit::Device::Cuda,
                Device::CudaOrdinal(n) => wit::Device::CudaOrdinal(n),
            },
            dimension: self.dimension,
            batch_size: self.batch_size,
            cache_embeddings: self.cache_embeddings,
            max_input_length: self.max_input_length,
            max_output_length: self.max_output_length,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            streaming: self.streaming,
            num_labels: self.num_labels,
            threshold: self.threshold,
            preload_workers: self.preload_workers,
            weights_file: self.weights_file.clone(),
            precision: match self.precision {
                Precision::Exact => wit::Precision::Exact,
                Precision::Fast => wit::Precision::Fast,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_settings_format_with_defaults() {
        let r: ModelRequirement = serde_json::from_str(
            r#"{"model_type": "embedding", "name": "org/model", "device": "cuda:1", "dimension": 384}"#,
        )
        .unwrap();
        assert_eq!(r.device, Device::CudaOrdinal(1));
        assert_eq!(r.dimension, Some(384));
        assert!(r.cache_embeddings);
        assert_eq!(r.preload_workers, 0);
        let bad = serde_json::from_str::<ModelRequirement>(
            r#"{"model_type": "embedding", "name": "m", "device": "tpu"}"#,
        );
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown device 'tpu'")
        );
    }
}
