//! The Llama forward pass in candle's device-generic ops, for CUDA GPUs (and candle's CPU device,
//! on which the tests check it against `cpu`): the same math as `cpu` — RMS norms, a fused
//! query/key/value projection, rotary embeddings (`rope_i` for GGUF's interleaved pairs, `rope` for
//! Hugging Face's halves), grouped-query causal attention over a KV cache, the SwiGLU
//! feed-forward (gate and up projections fused), the final norm and the LM head (the embeddings
//! when the checkpoint has none).
//!
//! The matrices of the linear layers, the LM head and the KV cache are in the model's `DType`:
//! F32 for exact precision, BF16 for fast. The embeddings, the norms, the residual stream, the
//! rotary embeddings and the softmax stay in f32.
//!
//! Everything a caller sends is checked on the host before it reaches the device: an index out of
//! range is undefined behaviour in a GPU kernel, not an error.

use candle_core::{DType, Device, Tensor};
use candle_nn::ops::{rms_norm, silu, softmax_last_dim};
use candle_nn::rotary_emb::{rope, rope_i};

use super::checkpoint::{LayerPart, LlamaShape, LlamaTensor, RopeStyle, TensorReader, required};
use crate::backends::InferenceError;
use crate::backends::common::generation::Decoder;
use crate::backends::common::mask::causal_mask;

/// One decoder layer on the device.
struct Layer {
    /// f32 `[hidden]`.
    attention_norm: Tensor,
    /// `[hidden + 2 kv_width, hidden]`: query, key and value projections stacked.
    query_key_value: Tensor,
    /// `[hidden, hidden]`.
    output: Tensor,
    /// f32 `[hidden]`.
    ffn_norm: Tensor,
    /// `[2 intermediate, hidden]`: gate and up projections stacked.
    gate_up: Tensor,
    /// `[hidden, intermediate]`.
    down: Tensor,
}

/// A Llama model whose weights live on a candle device.
pub struct LlamaDevice {
    shape: LlamaShape,
    device: Device,
    dtype: DType,
    /// f32 `[vocab, hidden]`.
    embeddings: Tensor,
    layers: Vec<Layer>,
    /// f32 `[hidden]`.
    norm: Tensor,
    /// `[vocab, hidden]` in `dtype` (the embeddings, when tied and f32).
    lm_head: Tensor,
    /// f32 `[context, head_dim / 2]`: cos and sin of every position × rotary frequency.
    cos: Tensor,
    sin: Tensor,
    vocab: usize,
    context: usize,
}

/// One generation on the device: per layer, keys and values `[kv_heads, length, head_dim]` in the
/// model's dtype, grown by concatenation (a generation holds what it used, not the whole context).
pub struct LlamaDeviceState<'a> {
    model: &'a LlamaDevice,
    cache: Vec<Option<(Tensor, Tensor)>>,
    length: usize,
}

/// `tensor` (f32, on the CPU) as a `[rows, cols]` matrix, checked.
fn matrix(
    tensor: Tensor,
    role: LlamaTensor,
    rows: usize,
    cols: usize,
) -> candle_core::Result<Tensor> {
    if tensor.elem_count() != rows * cols {
        candle_core::bail!(
            "the {role:?} tensor has {} values where {rows} x {cols} were expected",
            tensor.elem_count()
        );
    }
    tensor.reshape((rows, cols))
}

impl LlamaDevice {
    /// Builds a model of `shape` on `device` from the tensors `read` reads: the linear layers and
    /// the LM head in `dtype`, the rest in f32. Each tensor is converted on the CPU and copied
    /// once.
    pub fn load(
        shape: LlamaShape,
        read: &mut TensorReader<'_>,
        device: &Device,
        dtype: DType,
        context: usize,
    ) -> candle_core::Result<Self> {
        let d = shape.head_dim();
        let (h, kv, inter) = (shape.hidden, shape.kv_width(), shape.intermediate);
        let on_device = |t: Tensor, dtype: DType| t.to_dtype(dtype)?.to_device(device);
        let mut layers = Vec::with_capacity(shape.layers);
        for i in 0..shape.layers {
            let mut part = |p: LayerPart, rows: usize, cols: usize| {
                let role = LlamaTensor::Layer(i, p);
                matrix(required(read, role)?, role, rows, cols)
            };
            let query_key_value = Tensor::cat(
                &[
                    part(LayerPart::Query, h, h)?,
                    part(LayerPart::Key, kv, h)?,
                    part(LayerPart::Value, kv, h)?,
                ],
                0,
            )?;
            let gate_up = Tensor::cat(
                &[
                    part(LayerPart::Gate, inter, h)?,
                    part(LayerPart::Up, inter, h)?,
                ],
                0,
            )?;
            let attention_norm = part(LayerPart::AttentionNorm, 1, h)?.squeeze(0)?;
            let ffn_norm = part(LayerPart::FfnNorm, 1, h)?.squeeze(0)?;
            layers.push(Layer {
                attention_norm: on_device(attention_norm, DType::F32)?,
                query_key_value: on_device(query_key_value, dtype)?,
                output: on_device(part(LayerPart::AttentionOutput, h, h)?, dtype)?,
                ffn_norm: on_device(ffn_norm, DType::F32)?,
                gate_up: on_device(gate_up, dtype)?,
                down: on_device(part(LayerPart::Down, h, inter)?, dtype)?,
            });
        }
        let embeddings = required(read, LlamaTensor::Embeddings)?;
        if embeddings.elem_count() % h != 0 {
            candle_core::bail!(
                "the embeddings have {} values, not a multiple of the hidden size {h}",
                embeddings.elem_count()
            );
        }
        let vocab = embeddings.elem_count() / h;
        let embeddings = matrix(embeddings, LlamaTensor::Embeddings, vocab, h)?;
        let norm = matrix(required(read, LlamaTensor::Norm)?, LlamaTensor::Norm, 1, h)?;
        let head = read(LlamaTensor::Head)?;
        let embeddings_on_device = on_device(embeddings.clone(), DType::F32)?;
        let lm_head = match head {
            Some(head) => on_device(matrix(head, LlamaTensor::Head, vocab, h)?, dtype)?,
            // Tied: in f32 the head is the embeddings' own device copy, not a second one.
            None if dtype == DType::F32 => embeddings_on_device.clone(),
            None => on_device(embeddings, dtype)?,
        };
        let (cos, sin) = shape.rotary_table(context);
        Ok(Self {
            embeddings: embeddings_on_device,
            norm: on_device(norm.squeeze(0)?, DType::F32)?,
            lm_head,
            layers,
            cos: Tensor::from_vec(cos, (context, d / 2), device)?,
            sin: Tensor::from_vec(sin, (context, d / 2), device)?,
            device: device.clone(),
            dtype,
            vocab,
            context,
            shape,
        })
    }

    /// A fresh generation state (empty KV cache).
    pub fn state(&self) -> LlamaDeviceState<'_> {
        LlamaDeviceState {
            model: self,
            cache: vec![None; self.shape.layers],
            length: 0,
        }
    }

    /// `x · wᵀ` with `w` in the model's dtype; f32 in and out.
    fn linear(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        x.to_dtype(self.dtype)?
            .matmul(&w.t()?)?
            .to_dtype(DType::F32)
    }

    /// Columns `from..from + heads · head_dim` of `rows` (`[n, width]`) as heads
    /// `[1, heads, n, head_dim]`, rotated when `rotary` holds the cos and sin rows of the tokens'
    /// positions.
    fn heads(
        &self,
        rows: &Tensor,
        from: usize,
        heads: usize,
        rotary: Option<(&Tensor, &Tensor)>,
    ) -> candle_core::Result<Tensor> {
        let d = self.shape.head_dim();
        let n = rows.dim(0)?;
        let heads = rows
            .narrow(1, from, heads * d)?
            .reshape((n, heads, d))?
            .transpose(0, 1)?
            .contiguous()?
            .unsqueeze(0)?;
        match rotary {
            None => Ok(heads),
            Some((cos, sin)) => match self.shape.rope {
                RopeStyle::Interleaved => rope_i(&heads, cos, sin),
                RopeStyle::Halves => rope(&heads, cos, sin),
            },
        }
    }
}

impl LlamaDeviceState<'_> {
    /// Checks `tokens` against the vocabulary and the context: nothing unchecked goes to the
    /// device.
    fn check(&self, tokens: &[u32]) -> Result<(), InferenceError> {
        let model = self.model;
        if tokens.is_empty() {
            return Err(candle_core::Error::Msg("no tokens to run".into()).into());
        }
        if self
            .length
            .checked_add(tokens.len())
            .is_none_or(|end| end > model.context)
        {
            return Err(InferenceError::ContextExceeded {
                context: model.context,
            });
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= model.vocab) {
            return Err(InferenceError::UnknownToken {
                id: id as usize,
                vocab: model.vocab,
            });
        }
        Ok(())
    }

    /// Runs `tokens` (at positions `length..`) through the model; returns the last one's logits,
    /// f32 `[vocab]` on the model's device.
    fn forward(&mut self, tokens: &[u32]) -> Result<Tensor, InferenceError> {
        self.check(tokens)?;
        let model = self.model;
        let s = &model.shape;
        let (h, d, n, first) = (s.hidden, s.head_dim(), tokens.len(), self.length);
        let (total, group) = (first + n, s.heads / s.kv_heads);
        let kv = s.kv_width();
        let scale = 1.0 / (d as f64).sqrt();
        let ids = Tensor::new(tokens, &model.device)?;
        let mut x = model.embeddings.index_select(&ids, 0)?;
        let cos = model.cos.narrow(0, first, n)?;
        let sin = model.sin.narrow(0, first, n)?;
        // One token sees every key: no mask.
        let mask = match n {
            1 => None,
            _ => Some(causal_mask(first, n, &model.device)?),
        };
        for (layer, cache) in model.layers.iter().zip(&mut self.cache) {
            let normed = rms_norm(&x, &layer.attention_norm, s.eps)?;
            let qkv = model.linear(&normed, &layer.query_key_value)?;
            let queries = model.heads(&qkv, 0, s.heads, Some((&cos, &sin)))?;
            let keys = model
                .heads(&qkv, h, s.kv_heads, Some((&cos, &sin)))?
                .squeeze(0)?
                .to_dtype(model.dtype)?;
            let values = model
                .heads(&qkv, h + kv, s.kv_heads, None)?
                .squeeze(0)?
                .to_dtype(model.dtype)?;
            let (keys, values) = match cache.take() {
                None => (keys, values),
                Some((k, v)) => (
                    Tensor::cat(&[&k, &keys], 1)?,
                    Tensor::cat(&[&v, &values], 1)?,
                ),
            };
            // The `group` query heads of a key/value head attend together: [kv_heads, group·n, d].
            let queries = queries
                .to_dtype(model.dtype)?
                .reshape((s.kv_heads, group * n, d))?;
            let scores = (queries.matmul(&keys.t()?)?.to_dtype(DType::F32)? * scale)?;
            let scores = match &mask {
                None => scores,
                Some(mask) => scores
                    .reshape((s.kv_heads, group, n, total))?
                    .broadcast_add(mask)?
                    .reshape((s.kv_heads, group * n, total))?,
            };
            let weights = softmax_last_dim(&scores)?.to_dtype(model.dtype)?;
            let context = weights
                .matmul(&values)?
                .reshape((s.heads, n, d))?
                .transpose(0, 1)?
                .reshape((n, h))?;
            *cache = Some((keys, values));
            x = (x + model.linear(&context, &layer.output)?)?;
            let normed = rms_norm(&x, &layer.ffn_norm, s.eps)?;
            let gate_up = model.linear(&normed, &layer.gate_up)?;
            let inter = s.intermediate;
            let act = (silu(&gate_up.narrow(1, 0, inter)?)? * gate_up.narrow(1, inter, inter)?)?;
            x = (x + model.linear(&act, &layer.down)?)?;
        }
        self.length += n;
        let last = rms_norm(&x.narrow(0, n - 1, 1)?, &model.norm, s.eps)?;
        Ok(model.linear(&last, &model.lm_head)?.squeeze(0)?)
    }
}

impl Decoder for LlamaDeviceState<'_> {
    fn next_logits(&mut self, tokens: &[u32]) -> Result<Tensor, InferenceError> {
        Ok(self.forward(tokens)?.to_device(&Device::Cpu)?)
    }
}
