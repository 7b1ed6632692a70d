//! The Llama forward pass on the host's CPU kernels, from weights dequantized (GGUF) or read
//! (safetensors) at load: RMS norms, a fused query/key/value projection, rotary embeddings
//! (interleaved pairs for GGUF, halves for Hugging Face), grouped-query causal attention over a
//! KV cache, and the SwiGLU feed-forward, with the gate's SiLU and product fused into the up
//! projection's epilogue. Linear layers are f32, or bf16 for fast precision.

use candle_core::Device;

use super::checkpoint::{LayerPart, LlamaShape, LlamaTensor, RopeStyle, TensorReader, required};
use crate::backends::InferenceError;
use crate::backends::common::generation::Decoder;
use crate::kernels::{PackedLinear, WeightFormat, attention_causal, rms_norm_rows, silu_mul};

/// One decoder layer.
struct Layer {
    attention_norm: Vec<f32>,
    query_key_value: PackedLinear,
    output: PackedLinear,
    ffn_norm: Vec<f32>,
    gate: PackedLinear,
    up: PackedLinear,
    down: PackedLinear,
}

/// A Llama model whose weights are packed for the CPU kernels.
pub struct LlamaCpu {
    shape: LlamaShape,
    embeddings: Vec<f32>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    lm_head: PackedLinear,
    /// cos and sin of every position × rotary frequency, `[position][frequency]`.
    rope: Vec<(f32, f32)>,
    context: usize,
}

/// One generation's KV cache: per layer, `[position][kv head][head_dim]` keys and values.
pub struct LlamaState<'a> {
    model: &'a LlamaCpu,
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    length: usize,
}

impl LlamaCpu {
    /// Packs a model of `shape` whose tensors `read` reads; `format` applies to the linear
    /// layers.
    pub fn load(
        shape: LlamaShape,
        read: &mut TensorReader<'_>,
        format: WeightFormat,
        context: usize,
    ) -> candle_core::Result<Self> {
        let values = |t: candle_core::Tensor| -> candle_core::Result<Vec<f32>> {
            t.flatten_all()?.to_vec1()
        };
        let mut required = |role: LlamaTensor| values(required(read, role)?);
        let (h, kv, inter) = (shape.hidden, shape.kv_width(), shape.intermediate);
        let linear =
            |w: Vec<f32>, inputs: usize, outputs: usize| -> candle_core::Result<PackedLinear> {
                if w.len() != inputs * outputs {
                    candle_core::bail!(
                        "a weight has {} values where {inputs} x {outputs} were expected",
                        w.len()
                    );
                }
                Ok(PackedLinear::new(
                    &w,
                    &vec![0.0; outputs],
                    inputs,
                    outputs,
                    format,
                ))
            };
        let mut layers = Vec::with_capacity(shape.layers);
        for i in 0..shape.layers {
            let mut part = |p: LayerPart| required(LlamaTensor::Layer(i, p));
            let mut qkv = part(LayerPart::Query)?;
            qkv.extend(part(LayerPart::Key)?);
            qkv.extend(part(LayerPart::Value)?);
            layers.push(Layer {
                attention_norm: part(LayerPart::AttentionNorm)?,
                query_key_value: linear(qkv, h, h + 2 * kv)?,
                output: linear(part(LayerPart::AttentionOutput)?, h, h)?,
                ffn_norm: part(LayerPart::FfnNorm)?,
                gate: linear(part(LayerPart::Gate)?, h, inter)?,
                up: linear(part(LayerPart::Up)?, h, inter)?,
                down: linear(part(LayerPart::Down)?, inter, h)?,
            });
        }
        let embeddings = required(LlamaTensor::Embeddings)?;
        let norm = required(LlamaTensor::Norm)?;
        let vocab = embeddings.len() / h;
        let head = match read(LlamaTensor::Head)? {
            Some(head) => values(head)?,
            None => embeddings.clone(),
        };
        let (cos, sin) = shape.rotary_table(context);
        let rope = cos.into_iter().zip(sin).collect();
        Ok(Self {
            lm_head: linear(head, h, vocab)?,
            norm,
            embeddings,
            layers,
            rope,
            context,
            shape,
        })
    }

    /// A fresh generation state (empty KV cache).
    pub fn state(&self) -> LlamaState<'_> {
        LlamaState {
            model: self,
            keys: vec![Vec::new(); self.shape.layers],
            values: vec![Vec::new(); self.shape.layers],
            length: 0,
        }
    }

    /// Applies the rotary embedding to the first `heads` heads of each `width`-long row of
    /// `rows` (tokens at positions `first..`), in place.
    fn rotate(&self, rows: &mut [f32], width: usize, heads: usize, first: usize) {
        let d = self.shape.head_dim();
        for (t, row) in rows.chunks_exact_mut(width).enumerate() {
            let table = &self.rope[(first + t) * d / 2..(first + t + 1) * d / 2];
            for head in row[..heads * d].chunks_exact_mut(d) {
                for (i, &(cos, sin)) in table.iter().enumerate() {
                    let (x, y) = match self.shape.rope {
                        RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                        RopeStyle::Halves => (i, i + d / 2),
                    };
                    let (a, b) = (head[x], head[y]);
                    head[x] = a * cos - b * sin;
                    head[y] = a * sin + b * cos;
                }
            }
        }
    }
}

impl LlamaState<'_> {
    /// Runs `tokens` (at positions `length..`) through the model; returns the last one's logits.
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, InferenceError> {
        let model = self.model;
        let s = &model.shape;
        let (h, d) = (s.hidden, s.head_dim());
        let kv = s.kv_heads * d;
        let n = tokens.len();
        if n == 0 {
            return Err(candle_core::Error::Msg("no tokens to run".into()).into());
        }
        let first = self.length;
        if first + n > model.context {
            return Err(InferenceError::ContextExceeded {
                context: model.context,
            });
        }
        let vocab = model.embeddings.len() / h;
        let mut x = Vec::with_capacity(n * h);
        for &t in tokens {
            let t = t as usize;
            if t >= vocab {
                return Err(InferenceError::UnknownToken { id: t, vocab });
            }
            x.extend_from_slice(&model.embeddings[t * h..(t + 1) * h]);
        }
        let mut normed = vec![0.0; n * h];
        let mut qkv = vec![0.0; n * (h + 2 * kv)];
        let mut context = vec![0.0; n * h];
        let mut gate = vec![0.0; n * s.intermediate];
        let mut up = vec![0.0; n * s.intermediate];
        for (layer, (keys, values)) in model
            .layers
            .iter()
            .zip(self.keys.iter_mut().zip(&mut self.values))
        {
            normed.copy_from_slice(&x);
            rms_norm_rows(&mut normed, h, &layer.attention_norm, s.eps);
            layer.query_key_value.forward(&normed, &mut qkv, |_, _| {});
            let width = h + 2 * kv;
            model.rotate(&mut qkv, width, s.heads, first);
            for (t, row) in qkv.chunks_exact_mut(width).enumerate() {
                model.rotate(&mut row[h..], 2 * kv, s.kv_heads, first + t);
            }
            for row in qkv.chunks_exact(width) {
                keys.extend_from_slice(&row[h..h + kv]);
                values.extend_from_slice(&row[h + kv..]);
            }
            attention_causal(
                &qkv,
                width,
                keys,
                values,
                &mut context,
                s.heads,
                s.kv_heads,
                d,
                first,
            );
            layer.output.forward(&context, &mut normed, |_, _| {});
            x.iter_mut().zip(&normed).for_each(|(a, b)| *a += b);
            normed.copy_from_slice(&x);
            rms_norm_rows(&mut normed, h, &layer.ffn_norm, s.eps);
            layer.gate.forward(&normed, &mut gate, |_, _| {});
            let inter = s.intermediate;
            let gate_ref = &gate;
            layer.up.forward(&normed, &mut up, |block, first_row| {
                silu_mul(
                    block,
                    &gate_ref[first_row * inter..first_row * inter + block.len()],
                )
            });
            layer.down.forward(&up, &mut normed, |_, _| {});
            x.iter_mut().zip(&normed).for_each(|(a, b)| *a += b);
        }
        self.length += n;
        let mut last = x[(n - 1) * h..].to_vec();
        rms_norm_rows(&mut last, h, &model.norm, s.eps);
        let mut logits = vec![0.0; vocab];
        model.lm_head.forward(&last, &mut logits, |_, _| {});
        Ok(logits)
    }
}

impl Decoder for LlamaState<'_> {
    fn next_logits(&mut self, tokens: &[u32]) -> Result<candle_core::Tensor, InferenceError> {
        let logits = self.forward(tokens)?;
        let vocab = self.model.embeddings.len() / self.model.shape.hidden;
        Ok(candle_core::Tensor::from_vec(logits, vocab, &Device::Cpu)?)
    }
}
