//! Sequence classification checkpoints (`BertForSequenceClassification`,
//! `DistilBertForSequenceClassification`): the encoder (the host's CPU kernels on the CPU, our
//! [`DeviceEncoder`] in candle's ops on a CUDA GPU), then, on the host's CPU kernels wherever the
//! encoder ran, the head on the first token as transformers defines it (BERT's tanh pooler,
//! DistilBERT's ReLU pre-classifier) and the classifier: two small matrices, for which only the
//! first token's row of each sequence comes back from the GPU. Scores are the softmax of the
//! logits, or their sigmoid when `problem_type` is `multi_label_classification`.

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::IndexOp;
use serde::Deserialize;

use super::config::{EncoderConfig, Family};
use super::cpu::{CpuBertEncoder, TensorReader};
use super::device::{DeviceEncoder, Target};
use crate::backends::common::checkpoint::{architecture, require_safetensors};
use crate::backends::common::memory_estimate;
use crate::backends::common::tokenizer::{load_tokenizer, truncating_tokenizer};
use crate::backends::{BackendError, InferenceError};
use crate::backends::{Inspection, ModelInfo, SequenceModel};
use crate::kernels::{PackedLinear, WeightFormat};
use crate::store::local::ModelFiles;
use crate::types::ComputeDevice;
use crate::types::HostError;
use crate::types::error::UnsupportedArchitecture;
use crate::types::requirement::{ModelType, Precision};

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
        runs_on: crate::backends::CANDLE_DEVICES,
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

/// What runs a classifier's encoder.
enum Engine {
    /// The host's CPU kernels over packed sequences.
    Kernels(CpuBertEncoder),
    /// candle's ops on a GPU (or, in tests, candle's CPU device), over padded batches.
    Device(DeviceEncoder),
}

/// A sequence classifier: the encoder on the CPU kernels or a GPU, the head on the CPU kernels.
pub struct SequenceClassifier {
    name: String,
    encoder: Engine,
    hidden_size: usize,
    head: Head,
    classifier: PackedLinear,
    multi_label: bool,
}

impl SequenceClassifier {
    /// Loads the checkpoint in `files` for a worker on `device`: on the CPU, the encoder on the
    /// kernels in f32 (whatever the precision); on `cuda:N`, on that GPU with its matrix
    /// products in f32, or f16 for `Precision::Fast`.
    pub fn load(
        files: &ModelFiles,
        device: ComputeDevice,
        precision: Precision,
    ) -> Result<Self, BackendError> {
        let target = Target::of(device, precision, || WeightFormat::F32).map_err(|e| {
            BackendError::LoadFailed {
                name: files.name.clone(),
                reason: format!("on {device}: {e}"),
            }
        })?;
        Self::load_on(files, target)
    }

    /// Loads the checkpoint to run its encoder where `target` says: the seam through which
    /// tests run the GPU engine on candle's CPU device.
    pub(crate) fn load_on(files: &ModelFiles, target: Target) -> Result<Self, BackendError> {
        let load_failed = |reason: String| BackendError::LoadFailed {
            name: files.name.clone(),
            reason,
        };
        let config = ClassifierConfig::read(files)?;
        let candle = |e: candle_core::Error| load_failed(format!("on {target}: {e}"));
        let family = config.encoder.family;
        let reader = TensorReader::open(&files.path(WEIGHTS_FILE), family).map_err(candle)?;
        let encoder = match &target {
            Target::Kernels(format) => Engine::Kernels(
                CpuBertEncoder::load(&reader, &config.encoder, *format).map_err(candle)?,
            ),
            Target::Candle { device, dtype } => Engine::Device(
                DeviceEncoder::load(&reader, &config.encoder, device, *dtype).map_err(candle)?,
            ),
        };
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
            hidden_size: h,
            head,
            classifier: reader
                .head_linear("classifier", h, labels)
                .map_err(candle)?,
            multi_label: config.multi_label,
        })
    }

    /// The logits of each sequence, in order.
    pub fn logits(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, BackendError> {
        let first_tokens =
            self.first_tokens(batch)
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

    /// The encoder's last hidden state of each sequence's first token, rows in order, on the
    /// host.
    fn first_tokens(&self, batch: &[&[u32]]) -> Result<Vec<f32>, InferenceError> {
        let h = self.hidden_size;
        match &self.encoder {
            Engine::Kernels(encoder) => encoder.forward(batch, |states, sequences| {
                sequences
                    .iter()
                    .flat_map(|s| match s.len {
                        // An empty sequence has no first token: its state is zeros.
                        0 => vec![0.0; h],
                        _ => states[s.start * h..(s.start + 1) * h].to_vec(),
                    })
                    .collect()
            }),
            Engine::Device(encoder) => {
                let output = encoder.forward(batch)?;
                if output.hidden.dim(1)? == 0 {
                    return Ok(vec![0.0; batch.len() * h]);
                }
                // Only the (batch, hidden) first-token rows cross back from the device.
                Ok(output.hidden.i((.., 0))?.flatten_all()?.to_vec1::<f32>()?)
            }
        }
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
