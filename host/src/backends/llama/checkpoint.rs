//! Where a Llama checkpoint's weights come from: a GGUF file (sizes from its metadata, tensors
//! dequantized at load, rotary pairs interleaved) or Hugging Face safetensors (sizes from
//! `config.json`, rotary pairs in halves).

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};
use serde::Deserialize;

use super::cpu::{LayerPart, LlamaCpu, LlamaShape, LlamaTensor, RopeStyle};
use crate::backends::BackendError;
use crate::backends::common::bounds::{
    MAX_CONTEXT, MAX_HEADS, MAX_INTERMEDIATE, MAX_LAYERS, MAX_TENSORS, MAX_VOCAB, MAX_WIDTH,
    elements, finite_positive, heads, positive,
};
use crate::backends::common::memory_estimate::SafetensorsHeader;
use crate::kernels::WeightFormat;
use crate::store::local::ModelFiles;

/// The fields of a Hugging Face Llama `config.json` the forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    intermediate_size: usize,
    #[serde(default = "rope_theta")]
    rope_theta: f32,
    rms_norm_eps: f32,
    max_position_embeddings: u32,
}

fn rope_theta() -> f32 {
    10_000.0
}

/// A verified Llama checkpoint.
pub enum LlamaCheckpoint {
    /// A single `.gguf` file.
    Gguf {
        /// The file.
        path: PathBuf,
        /// Its header: metadata and tensor directory.
        content: gguf_file::Content,
    },
    /// `model.safetensors` with `config.json`.
    Safetensors {
        /// The weights file.
        path: PathBuf,
        /// The config.
        config: HfConfig,
    },
}

impl LlamaCheckpoint {
    /// The weights file the requirement named, else the snapshot's single `.gguf` file, else
    /// its `model.safetensors`.
    pub fn find(files: &ModelFiles) -> Result<Self, BackendError> {
        let mut ggufs: Vec<PathBuf> = match &files.weights_file {
            Some(named) if !files.path(named).is_file() => {
                return Err(files
                    .invalid(format!("the named weights file {named} is not there"))
                    .into());
            }
            Some(named) if named.ends_with(".gguf") => vec![files.path(named)],
            Some(_) => Vec::new(),
            None => std::fs::read_dir(&files.dir)
                .map_err(|e| files.invalid(format!("cannot list {}: {e}", files.dir.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
                .collect(),
        };
        if ggufs.len() > 1 {
            return Err(files
                .invalid(format!(
                    "{} .gguf files; name one with the requirement's weights_file",
                    ggufs.len()
                ))
                .into());
        }
        if let Some(path) = ggufs.pop() {
            let mut file = std::fs::File::open(&path)
                .map_err(|e| files.invalid(format!("{}: {e}", path.display())))?;
            let content = gguf_file::Content::read(&mut file).map_err(|e| {
                files.invalid(format!(
                    "{} is not a readable GGUF file: {e}",
                    path.display()
                ))
            })?;
            check_gguf_tensors(files, &content)?;
            return Ok(Self::Gguf { path, content });
        }
        let path = files.path(files.weights_file.as_deref().unwrap_or("model.safetensors"));
        if !path.is_file() {
            return Err(files
                .invalid("no weights: neither a .gguf file nor model.safetensors")
                .into());
        }
        let config = serde_json::from_str(&files.read_to_string("config.json")?)
            .map_err(|e| files.invalid(format!("config.json is not a valid Llama config: {e}")))?;
        Ok(Self::Safetensors { path, config })
    }

    /// What the status shows of the weights' format.
    pub fn describe(&self) -> String {
        match self {
            Self::Gguf { path, .. } => format!("gguf:{}", file_name(path)),
            Self::Safetensors { path, .. } => format!("safetensors:{}", file_name(path)),
        }
    }

    /// The longest sequence the model is run with: its declared context, capped at
    /// [`MAX_CONTEXT`] (the rotary table and the KV cache are sized by it).
    pub fn context(&self, files: &ModelFiles) -> Result<u32, BackendError> {
        let declared = match self {
            Self::Gguf { content, .. } => content
                .metadata
                .get("llama.context_length")
                .and_then(|v| v.to_u32().ok())
                .ok_or_else(|| files.invalid("the GGUF file has no llama.context_length"))?,
            Self::Safetensors { config, .. } => config.max_position_embeddings,
        };
        if declared as usize > MAX_CONTEXT {
            tracing::warn!(model = %files.name, declared, cap = MAX_CONTEXT,
                "the model declares a longer context than the host runs; capped");
        }
        let context = positive(files, "context length", declared as usize, usize::MAX)?;
        Ok(context.min(MAX_CONTEXT) as u32)
    }

    /// Bytes of every tensor of the weights file as f32: what loading may allocate at most,
    /// whatever the shape says.
    pub fn f32_bytes(&self, files: &ModelFiles) -> Result<u64, BackendError> {
        match self {
            Self::Gguf { content, .. } => check_gguf_tensors(files, content),
            Self::Safetensors { path, .. } => SafetensorsHeader::read(path)
                .map(|header| header.f32_bytes())
                .map_err(|reason| {
                    files
                        .invalid(format!("{}: {reason}", file_name(path)))
                        .into()
                }),
        }
    }

    /// The model's sizes, checked: every size positive and bounded, the head arithmetic
    /// consistent, the epsilon and rotary base positive.
    pub fn verified_shape(&self, files: &ModelFiles) -> Result<LlamaShape, BackendError> {
        let shape = self.shape().map_err(|e| files.invalid(e.to_string()))?;
        positive(files, "hidden size", shape.hidden, MAX_WIDTH)?;
        positive(files, "layers", shape.layers, MAX_LAYERS)?;
        positive(files, "attention heads", shape.heads, MAX_HEADS)?;
        positive(files, "key/value heads", shape.kv_heads, MAX_HEADS)?;
        positive(
            files,
            "intermediate size",
            shape.intermediate,
            MAX_INTERMEDIATE,
        )?;
        heads(files, shape.hidden, shape.heads, shape.kv_heads)?;
        if !(shape.hidden / shape.heads).is_multiple_of(2) {
            return Err(files
                .invalid(format!(
                    "the head width {} is odd; rotary embeddings pair values",
                    shape.hidden / shape.heads
                ))
                .into());
        }
        finite_positive(files, "rms norm epsilon", f64::from(shape.eps))?;
        finite_positive(files, "rope base", f64::from(shape.rope_base))?;
        Ok(shape)
    }

    /// The model's sizes as the checkpoint states them (see [`Self::verified_shape`]).
    fn shape(&self) -> candle_core::Result<LlamaShape> {
        match self {
            Self::Gguf { content, .. } => {
                let meta = |key: &str| {
                    content.metadata.get(key).ok_or_else(|| {
                        candle_core::Error::Msg(format!("the GGUF file has no {key}"))
                    })
                };
                let heads = meta("llama.attention.head_count")?.to_u32()? as usize;
                Ok(LlamaShape {
                    hidden: meta("llama.embedding_length")?.to_u32()? as usize,
                    layers: meta("llama.block_count")?.to_u32()? as usize,
                    heads,
                    kv_heads: meta("llama.attention.head_count_kv")
                        .and_then(|v| v.to_u32())
                        .map_or(heads, |n| n as usize),
                    intermediate: meta("llama.feed_forward_length")?.to_u32()? as usize,
                    rope_base: meta("llama.rope.freq_base")
                        .and_then(|v| v.to_f32())
                        .unwrap_or(10_000.0),
                    rope: RopeStyle::Interleaved,
                    eps: meta("llama.attention.layer_norm_rms_epsilon")?.to_f32()?,
                })
            }
            Self::Safetensors { config, .. } => Ok(LlamaShape {
                hidden: config.hidden_size,
                layers: config.num_hidden_layers,
                heads: config.num_attention_heads,
                kv_heads: config
                    .num_key_value_heads
                    .unwrap_or(config.num_attention_heads),
                intermediate: config.intermediate_size,
                rope_base: config.rope_theta,
                rope: RopeStyle::Halves,
                eps: config.rms_norm_eps,
            }),
        }
    }

    /// Loads and packs the weights for `shape` (from [`Self::verified_shape`]).
    pub fn load(
        &self,
        shape: LlamaShape,
        format: WeightFormat,
        context: usize,
    ) -> candle_core::Result<LlamaCpu> {
        match self {
            Self::Gguf { path, content } => {
                let mut file = std::fs::File::open(path)?;
                let mut read = |role: LlamaTensor| -> candle_core::Result<Option<Vec<f32>>> {
                    let name = gguf_name(role);
                    if !content.tensor_infos.contains_key(&name) {
                        return Ok(None);
                    }
                    let tensor = content
                        .tensor(&mut file, &name, &Device::Cpu)?
                        .dequantize(&Device::Cpu)?;
                    Ok(Some(tensor.flatten_all()?.to_vec1::<f32>()?))
                };
                LlamaCpu::load(shape, &mut read, format, context)
            }
            Self::Safetensors { path, .. } => {
                // SAFETY: the weights file is mapped read-only; the model store never rewrites a
                // snapshot file in place (downloads land in new files and are renamed).
                let weights = unsafe { MmapedSafetensors::new(path)? };
                let mut read = |role: LlamaTensor| -> candle_core::Result<Option<Vec<f32>>> {
                    let name = hf_name(role);
                    if weights.get(&name).is_err() {
                        return Ok(None);
                    }
                    let tensor = weights.load(&name, &Device::Cpu)?.to_dtype(DType::F32)?;
                    Ok(Some(tensor.flatten_all()?.to_vec1::<f32>()?))
                };
                LlamaCpu::load(shape, &mut read, format, context)
            }
        }
    }
}

/// Checks every tensor of a GGUF file: at most [`MAX_TENSORS`], an element count that does not
/// overflow and fits the vocabulary-by-width bound, and data inside the file (candle checks the
/// last before reading, but the count must not wrap first). Returns the bytes of the tensors
/// dequantized to f32.
fn check_gguf_tensors(
    files: &ModelFiles,
    content: &gguf_file::Content,
) -> Result<u64, BackendError> {
    if content.tensor_infos.len() > MAX_TENSORS {
        return Err(files
            .invalid(format!(
                "the GGUF file holds {} tensors; at most {MAX_TENSORS}",
                content.tensor_infos.len()
            ))
            .into());
    }
    let largest = (MAX_VOCAB as u64) * (MAX_WIDTH as u64);
    let mut f32_bytes = 0u64;
    for (name, info) in &content.tensor_infos {
        let count = elements(info.shape.dims().iter().map(|&d| d as u64))
            .filter(|&n| n <= largest)
            .ok_or_else(|| {
                files.invalid(format!(
                    "GGUF tensor {name} has shape {:?}, beyond any model this host runs",
                    info.shape.dims()
                ))
            })?;
        f32_bytes = f32_bytes.saturating_add(count * 4);
    }
    Ok(f32_bytes)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// A tensor's name in GGUF files.
fn gguf_name(role: LlamaTensor) -> String {
    match role {
        LlamaTensor::Embeddings => "token_embd.weight".into(),
        LlamaTensor::Norm => "output_norm.weight".into(),
        LlamaTensor::Head => "output.weight".into(),
        LlamaTensor::Layer(i, part) => {
            let part = match part {
                LayerPart::AttentionNorm => "attn_norm",
                LayerPart::Query => "attn_q",
                LayerPart::Key => "attn_k",
                LayerPart::Value => "attn_v",
                LayerPart::AttentionOutput => "attn_output",
                LayerPart::FfnNorm => "ffn_norm",
                LayerPart::Gate => "ffn_gate",
                LayerPart::Up => "ffn_up",
                LayerPart::Down => "ffn_down",
            };
            format!("blk.{i}.{part}.weight")
        }
    }
}

/// A tensor's name in Hugging Face checkpoints.
fn hf_name(role: LlamaTensor) -> String {
    match role {
        LlamaTensor::Embeddings => "model.embed_tokens.weight".into(),
        LlamaTensor::Norm => "model.norm.weight".into(),
        LlamaTensor::Head => "lm_head.weight".into(),
        LlamaTensor::Layer(i, part) => {
            let part = match part {
                LayerPart::AttentionNorm => "input_layernorm",
                LayerPart::Query => "self_attn.q_proj",
                LayerPart::Key => "self_attn.k_proj",
                LayerPart::Value => "self_attn.v_proj",
                LayerPart::AttentionOutput => "self_attn.o_proj",
                LayerPart::FfnNorm => "post_attention_layernorm",
                LayerPart::Gate => "mlp.gate_proj",
                LayerPart::Up => "mlp.up_proj",
                LayerPart::Down => "mlp.down_proj",
            };
            format!("model.layers.{i}.{part}.weight")
        }
    }
}
