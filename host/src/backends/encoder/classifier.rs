//! Sequence classification checkpoints (`BertForSequenceClassification`,
//! `DistilBertForSequenceClassification`): the encoder on the CPU kernels, then the head on the
//! first token, as transformers defines it (BERT's tanh pooler, DistilBERT's ReLU
//! pre-classifier), then the classifier. Scores are the softmax of the logits, or their sigmoid
//! when `problem_type` is `multi_label_classification`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::config::{EncoderConfig, Family};
use super::cpu::{CpuBertEncoder, TensorReader};
use crate::backends::BackendError;
use crate::backends::common::checkpoint::{architecture, require_safetensors};
use crate::backends::common::memory_estimate;
use crate::backends::common::tokenizer::{load_tokenizer, truncating_tokenizer};
use crate::backends::{Inspection, ModelInfo, SequenceModel};
use crate::kernels::{PackedLinear, WeightFormat};
use crate::store::local::ModelFiles;
use crate::types::ComputeDevice;
use crate::types::HostError;
use crate::types::error::UnsupportedArchitecture;
use crate::types::requirement::ModelType;

use crate::backends::common::bounds::{MAX_LABEL_BYTES, MAX_LABELS};

const SUPPORTED: &str = "BertForSequenceClassification, DistilBertForSequenceClassification";
const WEIGHTS_FILE: &str = "model.safetensors";

#[derive(Deserialize)]
struct LabelFields {
    #[serde(default)]
    id2label: BTreeMap<String, String>,
    problem_type: Option<String>,
}

/// What a classification checkpoint is: its family, encoder shape, labels and scoring.
struct ClassifierConfig {
    architecture: String,
    encoder: EncoderConfig,
    labels: Vec<String>,
    multi_label: bool,
}

impl ClassifierConfig {
    fn read(files: &ModelFiles) -> Result<Self, BackendError> {
        let architecture = architecture(files)?.name;
        let family = match architecture.as_str() {
            "BertForSequenceClassification" => Family::Bert,
            "DistilBertForSequenceClassification" => Family::DistilBert,
            _ => {
                return Err(BackendError::UnsupportedArchitecture(
                    UnsupportedArchitecture {
                        name: files.name.clone(),
                        architecture,
                        model_type: ModelType::Classification,
                        supported: SUPPORTED,
                    },
                ));
            }
        };
        let fields: LabelFields = serde_json::from_str(&files.read_to_string("config.json")?)
            .map_err(|e| files.invalid(format!("config.json: {e}")))?;
        if fields.id2label.len() > MAX_LABELS {
            return Err(files
                .invalid(format!(
                    "config.json id2label has {} labels; at most {MAX_LABELS}",
                    fields.id2label.len()
                ))
                .into());
        }
        let mut labels = Vec::with_capacity(fields.id2label.len());
        for (i, (id, label)) in numeric_order(&fields.id2label).into_iter().enumerate() {
            if id != i {
                return Err(files
                    .invalid(format!("config.json id2label has no label {i}"))
                    .into());
            }
            if label.len() > MAX_LABEL_BYTES {
                return Err(files
                    .invalid(format!(
                        "config.json id2label: label {i} has {} bytes; at most {MAX_LABEL_BYTES}",
                        label.len()
                    ))
                    .into());
            }
            labels.push(label.clone());
        }
        if labels.is_empty() {
            return Err(files.invalid("config.json has no id2label").into());
        }
        Ok(Self {
            architecture,
            encoder: EncoderConfig::read(files, family)?,
            labels,
            multi_label: fields.problem_type.as_deref() == Some("multi_label_classification"),
        })
    }
}

/// `id2label` entries by numeric id.
fn numeric_order(id2label: &BTreeMap<String, String>) -> Vec<(usize, &String)> {
    let mut entries: Vec<(usize, &String)> = id2label
        .iter()
        .map(|(id, label)| (id.parse().unwrap_or(usize::MAX), label))
        .collect();
    entries.sort();
    entries
}

/// Verifies a classification checkpoint and loads its tokenizer.
pub fn inspect(files: &ModelFiles) -> Result<Inspection, BackendError> {
    let config = ClassifierConfig::read(files)?;
    let tokenizer = load_tokenizer(files)?;
    let weights = require_safetensors(files)?;
    let max_input_length = config.encoder.max_input() as u32;
    let encoder = &config.encoder;
    let info = ModelInfo {
        architecture: config.architecture,
        dimension: None,
        max_input_length,
        head: if config.multi_label {
            "sigmoid"
        } else {
            "softmax"
        }
        .into(),
        memory: memory_estimate::encoder(
            weights,
            encoder.hidden_size,
            encoder.intermediate_size,
            encoder.heads,
            encoder.max_input(),
        ),
        labels: config.labels,
    };
    Ok(Inspection {
        info,
        encoder: Arc::new(truncating_tokenizer(tokenizer, max_input_length)),
    })
}

/// The head between the encoder's first token and the classifier.
enum Head {
    /// BERT: `tanh(dense(h))`.
    Pooler(PackedLinear),
    /// DistilBERT: `relu(pre_classifier(h))`.
    PreClassifier(PackedLinear),
}

/// A sequence classifier on the CPU kernels.
pub struct SequenceClassifier {
    name: String,
    encoder: CpuBertEncoder,
    head: Head,
    classifier: PackedLinear,
    multi_label: bool,
}

impl SequenceClassifier {
    /// Loads the checkpoint in `files`. Classifiers run on CPU workers only.
    pub fn load(files: &ModelFiles, device: ComputeDevice) -> Result<Self, BackendError> {
        let load_failed = |reason: String| BackendError::LoadFailed {
            name: files.name.clone(),
            reason,
        };
        if device != ComputeDevice::Cpu {
            return Err(load_failed(format!(
                "classification models run on cpu workers; {device} was picked (set \"device\": \"cpu\")"
            )));
        }
        let config = ClassifierConfig::read(files)?;
        let candle = |e: candle_core::Error| load_failed(e.to_string());
        let family = config.encoder.family;
        let reader = TensorReader::open(&files.path(WEIGHTS_FILE), family).map_err(candle)?;
        let encoder =
            CpuBertEncoder::load(&reader, &config.encoder, WeightFormat::F32).map_err(candle)?;
        let h = config.encoder.hidden_size;
        let head = match family {
            Family::Bert => Head::Pooler(
                reader
                    .head_linear("bert.pooler.dense", h, h)
                    .or_else(|_| reader.head_linear("pooler.dense", h, h))
                    .map_err(candle)?,
            ),
            Family::DistilBert => {
                Head::PreClassifier(reader.head_linear("pre_classifier", h, h).map_err(candle)?)
            }
        };
        let labels = config.labels.len();
        let outputs = reader.head_outputs("classifier").map_err(candle)?;
        if outputs != labels {
            return Err(load_failed(format!(
                "the classifier has {outputs} outputs for {labels} labels in id2label"
            )));
        }
        Ok(Self {
            name: files.name.clone(),
            encoder,
            head,
            classifier: reader
                .head_linear("classifier", h, labels)
                .map_err(candle)?,
            multi_label: config.multi_label,
        })
    }

    /// The logits of each sequence, in order.
    pub fn logits(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, BackendError> {
        let h = self.encoder.hidden_size();
        let first_tokens = self
            .encoder
            .forward(batch, |states, sequences| {
                sequences
                    .iter()
                    .flat_map(|s| states[s.start * h..(s.start + 1) * h].to_vec())
                    .collect::<Vec<f32>>()
            })
            .map_err(|source| BackendError::InferenceFailed {
                name: self.name.clone(),
                source,
            })?;
        let mut pooled = vec![0.0; first_tokens.len()];
        match &self.head {
            Head::Pooler(dense) => dense.forward(&first_tokens, &mut pooled, |block, _| {
                block.iter_mut().for_each(|v| *v = v.tanh())
            }),
            Head::PreClassifier(dense) => dense.forward(&first_tokens, &mut pooled, |block, _| {
                block.iter_mut().for_each(|v| *v = v.max(0.0))
            }),
        }
        let labels = self.classifier.outputs();
        let mut logits = vec![0.0; batch.len() * labels];
        self.classifier.forward(&pooled, &mut logits, |_, _| {});
        Ok(logits.chunks(labels).map(<[f32]>::to_vec).collect())
    }
}

impl SequenceModel for SequenceClassifier {
    /// Label scores: softmax of the logits, or sigmoid for multi-label models.
    fn run(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, HostError> {
        let mut scores = self.logits(batch)?;
        for row in &mut scores {
            if self.multi_label {
                row.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
            } else {
                let peak = row.iter().copied().fold(f32::MIN, f32::max);
                row.iter_mut().for_each(|v| *v = (*v - peak).exp());
                let total: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= total);
            }
        }
        Ok(scores)
    }
}
