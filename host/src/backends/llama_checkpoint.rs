//! Where a Llama checkpoint's weights come from: a GGUF file (sizes from its metadata, tensors
//! dequantized at load, rotary pairs interleaved) or Hugging Face safetensors (sizes from
//! `config.json`, rotary pairs in halves).

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};
use serde::Deserialize;

use super::llama_cpu::{LayerPart, LlamaCpu, LlamaShape, LlamaTensor, RopeStyle};
use crate::error::HostError;
use crate::hub::ModelFiles;
use crate::kernels::WeightFormat;

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
    pub fn find(files: &ModelFiles) -> Result<Self, HostError> {
        let mut ggufs: Vec<PathBuf> = match &files.weights_file {
            Some(named) if !files.path(named).is_file() => {
                return Err(files.invalid(format!("the named weights file {named} is not there")));
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
            return Err(files.invalid(format!(
                "{} .gguf files; name one with the requirement's weights_file",
                ggufs.len()
            )));
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
            return Ok(Self::Gguf { path, content });
        }
        let path = files.path(files.weights_file.as_deref().unwrap_or("model.safetensors"));
        if !path.is_file() {
            return Err(files.invalid("no weights: neither a .gguf file nor model.safetensors"));
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

    /// The longest sequence the model takes.
    pub fn context(&self, files: &ModelFiles) -> Result<u32, HostError> {
        match self {
            Self::Gguf { content, .. } => content
                .metadata
                .get("llama.context_length")
                .and_then(|v| v.to_u32().ok())
                .ok_or_else(|| files.invalid("the GGUF file has no llama.context_length")),
            Self::Safetensors { config, .. } => Ok(config.max_position_embeddings),
        }
    }

    /// The model's sizes.
    pub fn shape(&self) -> candle_core::Result<LlamaShape> {
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

    /// Loads and packs the weights.
    pub fn load(&self, format: WeightFormat, context: usize) -> candle_core::Result<LlamaCpu> {
        let shape = self.shape()?;
        if shape.heads == 0
            || shape.kv_heads == 0
            || shape.hidden % shape.heads != 0
            || shape.heads % shape.kv_heads != 0
        {
            candle_core::bail!(
                "inconsistent head counts: {} heads, {} key/value heads, width {}",
                shape.heads,
                shape.kv_heads,
                shape.hidden
            );
        }
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
