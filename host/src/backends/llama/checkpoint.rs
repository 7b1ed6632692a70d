//! Where a Llama checkpoint's weights come from: a GGUF file (sizes from its metadata, tensors
//! dequantized at load, rotary pairs interleaved) or Hugging Face safetensors (sizes from
//! `config.json`, rotary pairs in halves); the model's sizes and the roles of its tensors, which
//! both engines (`cpu`, `device`) are built from through one [`TensorReader`].

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::backends::BackendError;
use crate::backends::common::bounds::{
    MAX_CONTEXT, MAX_HEADS, MAX_INTERMEDIATE, MAX_LAYERS, MAX_TENSORS, MAX_VOCAB, MAX_WIDTH,
    elements, finite_positive, heads, positive,
};
use crate::backends::common::memory_estimate::SafetensorsHeader;
use crate::store::local::ModelFiles;

/// The fields of a Hugging Face Llama `config.json` the forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    intermediate_size: usize,
    /// The rotary base as transformers 4 writes it.
    rope_theta: Option<f32>,
    /// The rotary settings as transformers 5 writes them.
    rope_parameters: Option<RopeParameters>,
    /// Rotary scaling (transformers 4): not implemented, so refused when set.
    rope_scaling: Option<serde_json::Value>,
    rms_norm_eps: f32,
    max_position_embeddings: u32,
}

/// `rope_parameters` of a transformers 5 config.
#[derive(Debug, Clone, Deserialize)]
struct RopeParameters {
    rope_theta: Option<f32>,
    rope_type: Option<String>,
}

impl HfConfig {
    /// The rotary base (`rope_theta`, at the top level or in `rope_parameters`; 10000 when
    /// neither says), refusing the scaled variants (llama3, yarn, ...) the forward pass does
    /// not implement rather than computing something else.
    fn rope_base(&self) -> candle_core::Result<f32> {
        let scaled = self.rope_scaling.as_ref().is_some_and(|v| !v.is_null());
        let kind = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.rope_type.as_deref())
            .unwrap_or("default");
        if scaled || kind != "default" {
            candle_core::bail!(
                "config.json asks for scaled rotary embeddings ({kind}); only the default kind is supported"
            );
        }
        Ok(self
            .rope_theta
            .or_else(|| self.rope_parameters.as_ref()?.rope_theta)
            .unwrap_or(10_000.0))
    }
}

/// How rotary embeddings pair the values of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// `(x[2i], x[2i+1])`: GGUF files (their converters permute the query and key weights).
    Interleaved,
    /// `(x[i], x[i + d/2])`: Hugging Face checkpoints.
    Halves,
}

/// A Llama model's sizes.
#[derive(Debug, Clone)]
pub struct LlamaShape {
    /// Width of the hidden state.
    pub hidden: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate: usize,
    /// Rotary embedding base frequency.
    pub rope_base: f32,
    /// How rotary embeddings pair values.
    pub rope: RopeStyle,
    /// RMS norm epsilon.
    pub eps: f32,
}

impl LlamaShape {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// Width of the keys (or the values) of one token: every key/value head.
    pub fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim()
    }

    /// The rotary embedding's cosines and sines for positions `0..context`, each
    /// `[position][frequency]` (`head_dim / 2` frequencies): one table both engines use, so they
    /// rotate by the same rounded angles.
    pub fn rotary_table(&self, context: usize) -> (Vec<f32>, Vec<f32>) {
        let d = self.head_dim();
        let (mut cos, mut sin) = (
            Vec::with_capacity(context * d / 2),
            Vec::with_capacity(context * d / 2),
        );
        for p in 0..context {
            for i in 0..d / 2 {
                let angle = p as f32 / self.rope_base.powf(2.0 * i as f32 / d as f32);
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        (cos, sin)
    }
}

/// Reads a checkpoint's tensors by role: f32 tensors on the CPU, in the checkpoint's shape
/// (`[outputs, inputs]` for a linear layer, row-major); `None` for an absent optional tensor.
pub type TensorReader<'a> = dyn FnMut(LlamaTensor) -> candle_core::Result<Option<Tensor>> + 'a;

/// Reads a tensor that must be there.
pub fn required(read: &mut TensorReader<'_>, role: LlamaTensor) -> candle_core::Result<Tensor> {
    read(role)?
        .ok_or_else(|| candle_core::Error::Msg(format!("the checkpoint has no {role:?} tensor")))
}

/// The tensors of a Llama checkpoint, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlamaTensor {
    /// Token embeddings `[vocab, hidden]`.
    Embeddings,
    /// A layer's tensor.
    Layer(usize, LayerPart),
    /// The final norm.
    Norm,
    /// The output projection `[vocab, hidden]` (absent when tied to the embeddings).
    Head,
}

/// The tensors of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPart {
    /// RMS norm before attention.
    AttentionNorm,
    /// Query projection.
    Query,
    /// Key projection.
    Key,
    /// Value projection.
    Value,
    /// Attention output projection.
    AttentionOutput,
    /// RMS norm before the feed-forward.
    FfnNorm,
    /// Feed-forward gate projection.
    Gate,
    /// Feed-forward up projection.
    Up,
    /// Feed-forward down projection.
    Down,
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
                rope_base: config.rope_base()?,
                rope: RopeStyle::Halves,
                eps: config.rms_norm_eps,
            }),
        }
    }

    /// Opens the weights file and hands `build` a reader of its tensors (GGUF tensors
    /// dequantized, safetensors converted to f32): every engine is built through it.
    pub fn load<M>(
        &self,
        build: impl FnOnce(&mut TensorReader<'_>) -> candle_core::Result<M>,
    ) -> candle_core::Result<M> {
        match self {
            Self::Gguf { path, content } => {
                let mut file = std::fs::File::open(path)?;
                let mut read = |role: LlamaTensor| -> candle_core::Result<Option<Tensor>> {
                    let name = gguf_name(role);
                    if !content.tensor_infos.contains_key(&name) {
                        return Ok(None);
                    }
                    let tensor = content
                        .tensor(&mut file, &name, &Device::Cpu)?
                        .dequantize(&Device::Cpu)?;
                    Ok(Some(tensor))
                };
                build(&mut read)
            }
            Self::Safetensors { path, .. } => {
                // SAFETY: the weights file is mapped read-only; the model store never rewrites a
                // snapshot file in place (downloads land in new files and are renamed).
                let weights = unsafe { MmapedSafetensors::new(path)? };
                let mut read = |role: LlamaTensor| -> candle_core::Result<Option<Tensor>> {
                    let name = hf_name(role);
                    if weights.get(&name).is_err() {
                        return Ok(None);
                    }
                    Ok(Some(
                        weights.load(&name, &Device::Cpu)?.to_dtype(DType::F32)?,
                    ))
                };
                build(&mut read)
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

#[cfg(test)]
mod tests {
    use super::HfConfig;

    fn config(rope: &str) -> HfConfig {
        serde_json::from_str(&format!(
            r#"{{"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "intermediate_size": 128, "rms_norm_eps": 1e-5,
                "max_position_embeddings": 64 {rope}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn the_rope_base_is_read_where_either_transformers_writes_it() {
        assert_eq!(config("").rope_base().unwrap(), 10_000.0);
        assert_eq!(
            config(r#", "rope_theta": 100000.0"#).rope_base().unwrap(),
            100_000.0
        );
        let v5 = r#", "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}"#;
        assert_eq!(config(v5).rope_base().unwrap(), 100_000.0);
        let llama3 = r#", "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3"}"#;
        assert!(
            config(llama3)
                .rope_base()
                .unwrap_err()
                .to_string()
                .contains("llama3")
        );
        let scaled =
            r#", "rope_theta": 10000.0, "rope_scaling": {"type": "linear", "factor": 2.0}"#;
        assert!(config(scaled).rope_base().is_err());
        assert_eq!(
            config(r#", "rope_scaling": null"#).rope_base().unwrap(),
            10_000.0
        );
    }
}
