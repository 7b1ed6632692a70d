//! [`ModelRequirement`]: everything a module asks of one model, with the specification's defaults,
//! the checks that need no model, and the comparison that detects conflicting registrations.

use serde::{Deserialize, Serialize};

use crate::{DevicePreference, Invalid, ModelType, Precision};

/// The largest `batch_size` a requirement may ask for.
pub const MAX_BATCH_SIZE: u32 = 4096;

/// Longest `name` (a Hugging Face repository id is at most 96 + 1 + 96 characters).
pub const MAX_NAME_BYTES: usize = 200;

/// Longest `revision` or `weights_file`.
pub const MAX_PATH_BYTES: usize = 256;

/// Everything a module asks of one model (see the WIT `model-requirement` for each field). In
/// settings, only `model_type` and `name` are required; the rest default as documented on each
/// field.
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
    pub device: DevicePreference,
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

    /// An embedding model `name` producing vectors of `dimension`.
    pub fn embedding(name: impl Into<String>, dimension: u32) -> Self {
        Self {
            dimension: Some(dimension),
            ..Self::new(ModelType::Embedding, name)
        }
    }

    /// The revision to resolve: the requested one, or `main`.
    pub fn revision_or_main(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// Checks the fields that can be judged without looking at the model.
    pub fn validate(&self) -> Result<(), Invalid> {
        let invalid = |msg: String| Err(Invalid::new(msg));
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
        crate::generation::check_sampling(self.temperature, self.top_p, self.repetition_penalty)?;
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
    fn reads_the_settings_format_with_defaults() {
        let r: ModelRequirement = serde_json::from_str(
            r#"{"model_type": "embedding", "name": "org/model", "device": "cuda:1", "dimension": 384}"#,
        )
        .unwrap();
        assert_eq!(r.device, DevicePreference::CudaOrdinal(1));
        assert_eq!(r.dimension, Some(384));
        assert!(r.cache_embeddings);
        assert_eq!(r.preload_workers, 0);
        assert_eq!(
            r,
            ModelRequirement::embedding("org/model", 384).with_device(r.device)
        );
        let bad = serde_json::from_str::<ModelRequirement>(
            r#"{"model_type": "embedding", "name": "m", "device": "tpu"}"#,
        );
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown device 'tpu'")
        );
        let unknown = serde_json::from_str::<ModelRequirement>(
            r#"{"model_type": "embedding", "name": "m", "dimensions": 3}"#,
        );
        assert!(unknown.unwrap_err().to_string().contains("dimensions"));
    }

    impl ModelRequirement {
        fn with_device(mut self, device: DevicePreference) -> Self {
            self.device = device;
            self
        }
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
}
