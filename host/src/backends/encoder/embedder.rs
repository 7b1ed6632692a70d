//! BERT-family sentence embeddings: the tokenizer (truncating, no padding), the encoder (the
//! host's CPU kernels over packed sequences on the CPU, our [`DeviceEncoder`] in candle's ops
//! over padded batches on GPUs), pooling over the real tokens and optional L2 normalization.

use std::sync::Arc;

use candle_core::{D, DType, IndexOp, Tensor};
use tokenizers::Tokenizer;

use super::config::{EncoderConfig, Family};
use super::cpu::{CpuBertEncoder, TensorReader};
use super::device::{DeviceEncoder, Target};
use crate::backends::BackendError;
use crate::backends::common::checkpoint::{WEIGHTS_FILE, architecture, require_safetensors};
use crate::backends::common::memory_estimate;
use crate::backends::common::tokenizer::{load_tokenizer, truncating_tokenizer};
use crate::backends::cpu_weight_format;
use crate::backends::{
    InferenceError, Inspection, ModelInfo, Pooling, SentenceTransformerConfig, SequenceModel,
};
use crate::kernels::lane_sum;
use crate::store::local::ModelFiles;
use crate::types::ComputeDevice;
use crate::types::HostError;
use crate::types::error::UnsupportedArchitecture;
use crate::types::requirement::{ModelType, Precision};

const SUPPORTED: &str = "BERT-family encoders (config.json model_type \"bert\")";

/// A BERT encoder with its sentence-transformers head, on one device.
pub struct BertEmbedder {
    name: String,
    engine: Engine,
    head: SentenceTransformerConfig,
}

/// What runs the encoder.
enum Engine {
    /// The host's CPU kernels over packed sequences.
    Cpu(CpuBertEncoder),
    /// candle's ops on a GPU (or, in tests, candle's CPU device), over padded batches.
    Device(DeviceEncoder),
}

/// Verifies the model folder and loads its tokenizer, without loading weights.
pub fn inspect(files: &ModelFiles) -> Result<Inspection, BackendError> {
    let (tokenizer, info) = verify(files)?;
    let encoder = truncating_tokenizer(tokenizer, info.max_input_length);
    Ok(Inspection {
        info,
        encoder: Arc::new(encoder),
    })
}

impl BertEmbedder {
    /// Loads the model onto `device`: packed for the CPU kernels, or into candle tensors on a
    /// GPU. `Precision::Fast` packs the linear layers as bf16 on CPUs with AVX512-BF16, and runs
    /// the matrix products in f16 on GPUs.
    pub fn load(
        files: &ModelFiles,
        device: ComputeDevice,
        precision: Precision,
    ) -> Result<Self, BackendError> {
        let format = || cpu_weight_format(precision, &files.name);
        let target =
            Target::of(device, precision, format).map_err(|e| BackendError::LoadFailed {
                name: files.name.clone(),
                reason: format!("on {device}: {e}"),
            })?;
        Self::load_on(files, target)
    }

    /// Loads the model to run where `target` says: the seam through which tests run the GPU
    /// engine on candle's CPU device.
    pub(crate) fn load_on(files: &ModelFiles, target: Target) -> Result<Self, BackendError> {
        let (config, _) = encoder_config(files)?;
        let head = SentenceTransformerConfig::read(files)?;
        let load_failed = |e: candle_core::Error| BackendError::LoadFailed {
            name: files.name.clone(),
            reason: format!("on {target}: {e}"),
        };
        let reader =
            TensorReader::open(&files.path(WEIGHTS_FILE), Family::Bert).map_err(load_failed)?;
        let engine = match &target {
            Target::Kernels(format) => {
                Engine::Cpu(CpuBertEncoder::load(&reader, &config, *format).map_err(load_failed)?)
            }
            Target::Candle { device, dtype } => Engine::Device(
                DeviceEncoder::load(&reader, &config, device, *dtype).map_err(load_failed)?,
            ),
        };
        Ok(Self {
            name: files.name.clone(),
            engine,
            head,
        })
    }

    fn forward(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, InferenceError> {
        match &self.engine {
            Engine::Cpu(encoder) => encoder.forward(batch, |states, sequences| {
                let width = encoder.hidden_size();
                sequences
                    .iter()
                    .map(|s| {
                        let tokens = &states[s.start * width..(s.start + s.len) * width];
                        let mut pooled = pool_rows(tokens, width, self.head.pooling);
                        if self.head.normalize {
                            normalize(&mut pooled);
                        }
                        pooled
                    })
                    .collect()
            }),
            Engine::Device(encoder) => device_forward(encoder, &self.head, batch),
        }
    }
}

/// The padded forward pass on a candle device, then pooling and normalization there; only the
/// pooled vectors come back to the host.
fn device_forward(
    encoder: &DeviceEncoder,
    head: &SentenceTransformerConfig,
    batch: &[&[u32]],
) -> Result<Vec<Vec<f32>>, InferenceError> {
    let output = encoder.forward(batch)?;
    let pooled = pool(&output.hidden, &output.mask, head.pooling)?;
    let pooled = if head.normalize {
        l2_normalize(&pooled)?
    } else {
        pooled
    };
    Ok(pooled.to_vec2::<f32>()?)
}

impl SequenceModel for BertEmbedder {
    fn run(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, HostError> {
        let vectors = self
            .forward(batch)
            .map_err(|source| BackendError::InferenceFailed {
                name: self.name.clone(),
                source,
            })?;
        Ok(vectors)
    }
}

/// Reads and checks config, tokenizer, sentence-transformers head and weights file.
fn verify(files: &ModelFiles) -> Result<(Tokenizer, ModelInfo), BackendError> {
    let (config, architecture) = encoder_config(files)?;
    let tokenizer = load_tokenizer(files)?;
    let weights = require_safetensors(files)?;
    let head = SentenceTransformerConfig::read(files)?;
    let max_input_length = head
        .max_seq_length
        .unwrap_or(config.max_positions)
        .min(config.max_input());
    let info = ModelInfo {
        architecture,
        dimension: Some(config.hidden_size as u32),
        max_input_length: max_input_length as u32,
        head: head.describe(),
        labels: Vec::new(),
        memory: memory_estimate::encoder(
            weights,
            config.hidden_size,
            config.intermediate_size,
            config.heads,
            max_input_length,
        ),
        runs_on: crate::backends::CANDLE_DEVICES,
    };
    Ok((tokenizer, info))
}

/// The encoder config and architecture name, after checking it is a BERT checkpoint.
fn encoder_config(files: &ModelFiles) -> Result<(EncoderConfig, String), BackendError> {
    let architecture = architecture(files)?;
    if architecture.model_type.as_deref() != Some("bert") {
        return Err(BackendError::UnsupportedArchitecture(
            UnsupportedArchitecture {
                name: files.name.clone(),
                architecture: architecture.name,
                model_type: ModelType::Embedding,
                supported: SUPPORTED,
            },
        ));
    }
    Ok((EncoderConfig::read(files, Family::Bert)?, architecture.name))
}

/// Pools one sequence's token vectors (`width`-wide rows) into one vector.
fn pool_rows(tokens: &[f32], width: usize, pooling: Pooling) -> Vec<f32> {
    let mut rows = tokens.chunks_exact(width);
    let first = rows
        .next()
        .map(<[f32]>::to_vec)
        .unwrap_or_else(|| vec![0.0; width]);
    match pooling {
        Pooling::Cls => first,
        Pooling::Mean => {
            let mut sum: Vec<f32> = first;
            for row in rows {
                sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            let count = (tokens.len() / width).max(1) as f32;
            sum.iter_mut().for_each(|s| *s /= count);
            sum
        }
        Pooling::Max => {
            let mut peak = first;
            for row in rows {
                peak.iter_mut().zip(row).for_each(|(p, &v)| *p = p.max(v));
            }
            peak
        }
    }
}

/// Scales `v` to unit length (a zero vector stays zero), as `torch.nn.functional.normalize`.
fn normalize(v: &mut [f32]) {
    let squares: Vec<f32> = v.iter().map(|x| x * x).collect();
    let norm = lane_sum(&squares).sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// Pools `(batch, len, hidden)` token vectors into `(batch, hidden)`, ignoring padding. A
/// sequence without tokens pools to zeros, as `pool_rows` pools it.
fn pool(hidden: &Tensor, mask: &Tensor, pooling: Pooling) -> candle_core::Result<Tensor> {
    let (batch, len, width) = hidden.dims3()?;
    if len == 0 {
        return Tensor::zeros((batch, width), DType::F32, hidden.device());
    }
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    // 1 for a sequence with tokens, 0 for an empty one.
    let any = mask.max(1)?;
    match pooling {
        Pooling::Cls => hidden.i((.., 0))?.broadcast_mul(&any),
        Pooling::Mean => {
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
            summed.broadcast_div(&counts)
        }
        Pooling::Max => {
            // Padding positions get a large negative offset so they never win the maximum.
            let offset = ((&mask - 1.0)? * 1e9)?;
            hidden.broadcast_add(&offset)?.max(1)?.broadcast_mul(&any)
        }
    }
}

/// Scales each row to unit length (rows of zeros stay zero).
fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norms = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norms)
}
