//! The Llama forward pass on the host's CPU kernels, from GGUF weights dequantized at load: RMS
//! norms, a fused query/key/value projection, interleaved rotary embeddings (GGUF's layout),
//! grouped-query causal attention over a KV cache, and the SwiGLU feed-forward, with the gate's
//! SiLU and product fused into the up projection's epilogue. Linear layers are f32, or bf16 for
//! fast precision.

use candle_core::Device;
use candle_core::quantized::gguf_file;

use super::generation::Decoder;
use crate::kernels::{PackedLinear, WeightFormat, attention_causal, rms_norm_rows, silu_mul};

/// Sizes read from the GGUF metadata.
struct Shape {
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    intermediate: usize,
    rope_base: f32,
    eps: f32,
}

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
    shape: Shape,
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
    /// Loads the model in a GGUF file; `format` applies to the linear layers.
    pub fn load<R: std::io::Read + std::io::Seek>(
        content: &gguf_file::Content,
        reader: &mut R,
        format: WeightFormat,
        context: usize,
    ) -> candle_core::Result<Self> {
        let meta = |key: &str| -> candle_core::Result<&gguf_file::Value> {
            content
                .metadata
                .get(key)
                .ok_or_else(|| candle_core::Error::Msg(format!("the GGUF file has no {key}")))
        };
        let hidden = meta("llama.embedding_length")?.to_u32()? as usize;
        let heads = meta("llama.attention.head_count")?.to_u32()? as usize;
        let shape = Shape {
            hidden,
            layers: meta("llama.block_count")?.to_u32()? as usize,
            heads,
            kv_heads: meta("llama.attention.head_count_kv")?.to_u32()? as usize,
            head_dim: hidden / heads,
            intermediate: meta("llama.feed_forward_length")?.to_u32()? as usize,
            rope_base: meta("llama.rope.freq_base")
                .and_then(|v| v.to_f32())
                .unwrap_or(10_000.0),
            eps: meta("llama.attention.layer_norm_rms_epsilon")?.to_f32()?,
        };
        let mut tensor = |name: &str| -> candle_core::Result<Vec<f32>> {
            content
                .tensor(reader, name, &Device::Cpu)?
                .dequantize(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()
        };
        let (h, kv, inter) = (
            shape.hidden,
            shape.kv_heads * shape.head_dim,
            shape.intermediate,
        );
        let mut layers = Vec::with_capacity(shape.layers);
        for i in 0..shape.layers {
            let mut name = |part: &str| tensor(&format!("blk.{i}.{part}.weight"));
            let mut qkv = name("attn_q")?;
            qkv.extend(name("attn_k")?);
            qkv.extend(name("attn_v")?);
            let linear = |w: Vec<f32>, inputs: usize, outputs: usize| {
                PackedLinear::new(&w, &vec![0.0; outputs], inputs, outputs, format)
            };
            layers.push(Layer {
                attention_norm: name("attn_norm")?,
                query_key_value: linear(qkv, h, h + 2 * kv),
                output: linear(name("attn_output")?, h, h),
                ffn_norm: name("ffn_norm")?,
                gate: linear(name("ffn_gate")?, h, inter),
                up: linear(name("ffn_up")?, h, inter),
                down: linear(name("ffn_down")?, inter, h),
            });
        }
        let embeddings = tensor("token_embd.weight")?;
        let vocab = embeddings.len() / h;
        let head = match content.tensor_infos.contains_key("output.weight") {
            true => tensor("output.weight")?,
            false => embeddings.clone(),
        };
        let half = shape.head_dim / 2;
        let rope = (0..context)
            .flat_map(|p| {
                (0..half).map(move |i| {
                    let angle =
                        p as f32 / shape.rope_base.powf(2.0 * i as f32 / shape.head_dim as f32);
                    (angle.cos(), angle.sin())
                })
            })
            .collect();
        Ok(Self {
            lm_head: PackedLinear::new(&head, &vec![0.0; vocab], h, vocab, format),
            norm: tensor("output_norm.weight")?,
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

    /// Rotates pairs `(x[2i], x[2i+1])` of each head of `rows` (tokens from `first`) in place.
    fn rotate(&self, rows: &mut [f32], width: usize, heads: usize, first: usize) {
        let d = self.shape.head_dim;
        for (t, row) in rows.chunks_exact_mut(width).enumerate() {
            let table = &self.rope[(first + t) * d / 2..(first + t + 1) * d / 2];
            for head in row[..heads * d].chunks_exact_mut(d) {
                for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(table) {
                    let (a, b) = (pair[0], pair[1]);
                    pair[0] = a * cos - b * sin;
                    pair[1] = a * sin + b * cos;
                }
            }
        }
    }
}

impl LlamaState<'_> {
    /// Runs `tokens` (at positions `length..`) through the model; returns the last one's logits.
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, String> {
        let model = self.model;
        let s = &model.shape;
        let (h, d) = (s.hidden, s.head_dim);
        let kv = s.kv_heads * d;
        let n = tokens.len();
        let first = self.length;
        if first + n > model.context {
            return Err(format!(
                "the sequence exceeds the model's context of {}",
                model.context
            ));
        }
        let vocab = model.embeddings.len() / h;
        let mut x = Vec::with_capacity(n * h);
        for &t in tokens {
            let t = t as usize;
            if t >= vocab {
                return Err(format!("token id {t} is outside the vocabulary of {vocab}"));
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
    fn next_logits(
        &mut self,
        tokens: &[u32],
        _position: usize,
    ) -> candle_core::Result<candle_core::Tensor> {
        let logits = self.forward(tokens).map_err(candle_core::Error::Msg)?;
        candle_core::Tensor::from_vec(
            logits,
            self.model.embeddings.len() / self.model.shape.hidden,
            &Device::Cpu,
        )
    }
}
