//! What a module asks of a model: the domain form of the WIT `model-requirement`, its validation,
//! and the comparison that detects conflicting registrations.

use std::fmt;
use std::str::FromStr;

use crate::types::error::HostError;

/// The largest `batch_size` a requirement may ask for.
pub const MAX_BATCH_SIZE: u32 = 4096;

/// Longest `name` (a Hugging Face repository id is at most 96 + 1 + 96 characters).
pub const MAX_NAME_BYTES: usize = 200;

/// Longest `revision` or `weights_file`.
pub const MAX_PATH_BYTES: usize = 256;

/// Most stop sequences in one call.
pub const MAX_STOP_SEQUENCES: usize = 16;

/// Longest stop sequence, in bytes.
pub const MAX_STOP_BYTES: usize = 256;

/// The kind of work a model does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ModelType {
    /// Text to a fixed-size vector.
    #[default]
    Embedding,
    /// Encoder-decoder generation.
    #[serde(rename = "text2text")]
    Text2Text,
    /// Decoder-only generation.
    TextGeneration,
    /// Sequence classification.
    Classification,
}

impl fmt::Display for ModelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Embedding => "embedding",
            Self::Text2Text => "text2text",
            Self::TextGeneration => "text-generation",
            Self::Classification => "classification",
        })
    }
}

/// Where a module would like its model to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DevicePreference {
    /// The host chooses.
    Auto,
    /// The host CPU.
    Cpu,
    /// Any CUDA GPU.
    Cuda,
    /// One CUDA GPU by ordinal.
    CudaOrdinal(u32),
}

impl FromStr for DevicePreference {
    type Err = String;

    /// Parses `"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"`.
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

impl fmt::Display for DevicePreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda => f.write_str("cuda"),
            Self::CudaOrdinal(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// How exactly a model's arithmetic follows the reference implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 throughout, equal to the reference to rounding.
    #[default]
    Exact,
    /// Reduced-precision matrix products where the device has fast instructions for them.
    Fast,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Exact => "exact",
            Self::Fast => "fast",
        })
    }
}

/// Everything a module asks of one model (see the WIT `model-requirement` for each field).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequirement {
    /// What the model is used for.
    pub model_type: ModelType,
    /// Hugging Face repository id.
    pub name: String,
    /// Branch, tag or commit; `None` means `main`.
    pub revision: Option<String>,
    /// Preferred device.
    pub device: DevicePreference,
    /// Expected embedding size.
    pub dimension: Option<u32>,
    /// Largest number of texts per forward pass.
    pub batch_size: Option<u32>,
    /// Whether the embedding cache may be used.
    pub cache_embeddings: bool,
    /// Longest input in tokens.
    pub max_input_length: Option<u32>,
    /// Most generated tokens.
    pub max_output_length: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Top-k sampling.
    pub top_k: Option<u32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Penalty on tokens already in the context.
    pub repetition_penalty: Option<f32>,
    /// Whether streaming will be used.
    pub streaming: bool,
    /// Expected number of labels.
    pub num_labels: Option<u32>,
    /// Lowest reported label score.
    pub threshold: Option<f32>,
    /// Workers that load the model at registration.
    pub preload_workers: u32,
    /// The weights file to use when the repository holds several.
    pub weights_file: Option<String>,
    /// Exact or fast arithmetic.
    pub precision: Precision,
}

impl ModelRequirement {
    /// A requirement for `name` with every optional field unset.
    pub fn new(model_type: ModelType, name: impl Into<String>) -> Self {
        Self {
            model_type,
            name: name.into(),
            revision: None,
            device: DevicePreference::Auto,
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

    /// The revision to resolve: the requested one, or `main`.
    pub fn revision_or_main(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// Checks the fields that can be judged without looking at the model.
    pub fn validate(&self) -> Result<(), HostError> {
        let invalid = |msg: String| Err(HostError::InvalidRequirement(msg));
        for (field, length, limit) in [
            ("name", self.name.len(), MAX_NAME_BYTES),
            (
                "revision",
                self.revision.as_ref().map_or(0, String::len),
                MAX_PATH_BYTES,
            ),
            (
                "weights_file",
                self.weights_file.as_ref().map_or(0, String::len),
                MAX_PATH_BYTES,
            ),
        ] {
            if length > limit {
                return invalid(format!(
                    "`{field}` has {length} bytes; it may have at most {limit}"
                ));
            }
        }
        if self.name.trim().is_empty() {
            return invalid(
                "`name` is empty; give a Hugging Face repository id such as \
                            'sentence-transformers/all-MiniLM-L6-v2'"
                    .into(),
            );
        }
        if !is_valid_repo_id(&self.name) {
            return invalid(format!(
                "`name` '{}' is not a Hugging Face repository id ('name' or 'org/name' of letters, \
                 digits, '-', '_' and '.')",
                self.name
            ));
        }
        if let Some(rev) = &self.revision
            && (rev.is_empty() || rev.contains("..") || rev.starts_with('/'))
        {
            return invalid(format!("`revision` '{rev}' is not a branch, tag or commit"));
        }
        if let Some(file) = &self.weights_file
            && (file.is_empty()
                || file.contains("..")
                || file.starts_with('/')
                || file.contains('\\'))
        {
            return invalid(format!(
                "`weights_file` '{file}' is not a file name of the repository"
            ));
        }
        for (field, value) in [
            ("dimension", self.dimension),
            ("batch_size", self.batch_size),
            ("max_input_length", self.max_input_length),
            ("max_output_length", self.max_output_length),
            ("top_k", self.top_k),
            ("num_labels", self.num_labels),
        ] {
            if value == Some(0) {
                return invalid(format!("`{field}` must be at least 1 when given"));
            }
        }
        if self.batch_size.is_some_and(|n| n > MAX_BATCH_SIZE) {
            return invalid(format!("`batch_size` must be at most {MAX_BATCH_SIZE}"));
        }
        check_sampling(self.temperature, self.top_p, self.repetition_penalty)
            .map_err(HostError::InvalidRequirement)?;
        if self.threshold.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
            return invalid("`threshold` must be in [0, 1]".into());
        }
        Ok(())
    }

    /// The names of the fields in which `other` differs from `self`.
    pub fn differing_fields(&self, other: &Self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        macro_rules! compare {
            ($($field:ident),*) => {
                $(if self.$field != other.$field { fields.push(stringify!($field)); })*
            };
        }
        compare!(
            model_type,
            name,
            revision,
            device,
            dimension,
            batch_size,
            cache_embeddings,
            max_input_length,
            max_output_length,
            temperature,
            top_k,
            top_p,
            repetition_penalty,
            streaming,
            num_labels,
            threshold,
            preload_workers,
            weights_file,
            precision
        );
        fields
    }
}

/// Per-call overrides of a requirement's generation settings (the WIT `generation-options`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationOptions {
    /// Most tokens to generate.
    pub max_output_length: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Top-k sampling.
    pub top_k: Option<u32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Penalty on tokens already in the context.
    pub repetition_penalty: Option<f32>,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// Stop sequences.
    pub stop: Vec<String>,
}

impl GenerationOptions {
    /// Checks the values a call gives (the same rules as for requirements).
    pub fn validate(&self) -> Result<(), HostError> {
        if self.max_output_length == Some(0) || self.top_k == Some(0) {
            return Err(HostError::InvalidInput(
                "`max_output_length` and `top_k` must be at least 1 when given".into(),
            ));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(HostError::InvalidInput(
                "stop sequences must not be empty".into(),
            ));
        }
        if self.stop.len() > MAX_STOP_SEQUENCES {
            return Err(HostError::InvalidInput(format!(
                "{} stop sequences; at most {MAX_STOP_SEQUENCES}",
                self.stop.len()
            )));
        }
        if let Some(long) = self.stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(HostError::InvalidInput(format!(
                "a stop sequence of {} bytes; at most {MAX_STOP_BYTES}",
                long.len()
            )));
        }
        check_sampling(self.temperature, self.top_p, self.repetition_penalty)
            .map_err(HostError::InvalidInput)
    }
}

/// The rules sampling settings follow, wherever they come from.
fn check_sampling(
    temperature: Option<f32>,
    top_p: Option<f32>,
    repetition_penalty: Option<f32>,
) -> Result<(), String> {
    if temperature.is_some_and(|t| !(t >= 0.0 && t.is_finite())) {
        return Err("`temperature` must be a finite number >= 0 (0 is greedy)".into());
    }
    if top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err("`top_p` must be in (0, 1]".into());
    }
    if repetition_penalty.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err("`repetition_penalty` must be a finite number > 0 (1 is none)".into());
    }
    Ok(())
}

/// Whether `name` is shaped like a Hugging Face repository id: `name` or `org/name`.
fn is_valid_repo_id(name: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() <= 2 && parts.iter().all(|p| part_ok(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedding() -> ModelRequirement {
        ModelRequirement::new(
            ModelType::Embedding,
            "sentence-transformers/all-MiniLM-L6-v2",
        )
    }

    #[test]
    fn rejects_malformed_fields() {
        type Mutation = fn(&mut ModelRequirement);
        let cases: [(&str, Mutation); 10] = [
            ("empty", |r| r.name = " ".into()),
            ("repository id", |r| r.name = "../etc".into()),
            ("repository id", |r| r.name = "a/b/c".into()),
            ("batch_size", |r| r.batch_size = Some(0)),
            ("temperature", |r| r.temperature = Some(-1.0)),
            ("temperature", |r| r.temperature = Some(f32::NAN)),
            ("top_p", |r| r.top_p = Some(1.5)),
            ("top_p", |r| r.top_p = Some(0.0)),
            ("repetition_penalty", |r| r.repetition_penalty = Some(0.0)),
            ("revision", |r| r.revision = Some("../x".into())),
        ];
        for (needle, mutate) in cases {
            let mut r = embedding();
            mutate(&mut r);
            let err = r.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        embedding().validate().unwrap();
    }

    #[test]
    fn lists_differing_fields() {
        let a = embedding();
        let mut b = embedding();
        assert!(a.differing_fields(&b).is_empty());
        b.dimension = Some(768);
        b.device = DevicePreference::CudaOrdinal(1);
        assert_eq!(a.differing_fields(&b), ["device", "dimension"]);
    }

    #[test]
    fn call_options_follow_the_same_rules_as_invalid_input() {
        let bad = [
            GenerationOptions {
                temperature: Some(-0.1),
                ..Default::default()
            },
            GenerationOptions {
                top_p: Some(0.0),
                ..Default::default()
            },
            GenerationOptions {
                top_k: Some(0),
                ..Default::default()
            },
            GenerationOptions {
                max_output_length: Some(0),
                ..Default::default()
            },
            GenerationOptions {
                stop: vec![String::new()],
                ..Default::default()
            },
        ];
        for options in bad {
            assert!(
                matches!(options.validate(), Err(HostError::InvalidInput(_))),
                "{options:?}"
            );
        }
        let good = GenerationOptions {
            temperature: Some(0.0),
            top_p: Some(1.0),
            repetition_penalty: Some(1.3),
            stop: vec!["\n\n".into()],
            ..Default::default()
        };
        good.validate().unwrap();
    }
}
