//! The BERT encoder's forward pass on the host's CPU kernels: embeddings, then per layer a fused
//! query/key/value projection, attention over packed sequences, the output projection with
//! residual and layer norm, and the feed-forward block with its activation, residual and layer
//! norm fused into the matrix products' epilogues.
//!
//! Sequences are packed end to end, so a batch does no work on padding, and each matrix product
//! is one parallel pass over blocks of rows (no per-operation thread hand-offs).

use std::path::Path;
use std::sync::Mutex;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};

use super::config::{
    EMBEDDING_NORM, EncoderConfig, Family, LayerNames, POSITION_EMBEDDINGS, TOKEN_TYPE_EMBEDDINGS,
    WORD_EMBEDDINGS,
};
use crate::backends::InferenceError;
use crate::backends::common::activation::Activation;
use crate::kernels::{
    PackedLinear, Sequence, WeightFormat, attention, gelu_in_place, gelu_tanh_in_place,
    layer_norm_rows,
};

/// Layer norm weights.
pub struct Norm {
    /// The scale.
    pub gamma: Vec<f32>,
    /// The shift.
    pub beta: Vec<f32>,
}

/// One encoder layer.
struct Layer {
    query_key_value: PackedLinear,
    attention_output: PackedLinear,
    attention_norm: Norm,
    intermediate: PackedLinear,
    output: PackedLinear,
    output_norm: Norm,
}

/// Activations of one batch, kept between calls so their pages stay mapped.
#[derive(Default)]
struct Workspace {
    hidden: Vec<f32>,
    next: Vec<f32>,
    query_key_value: Vec<f32>,
    context: Vec<f32>,
    intermediate: Vec<f32>,
}

/// A BERT encoder whose weights are packed for the CPU kernels.
pub struct CpuBertEncoder {
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    token_type_embedding: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden_size: usize,
    heads: usize,
    activation: Activation,
    eps: f32,
    workspace: Mutex<Workspace>,
}

/// Reads f32 tensors out of a safetensors file. Encoder tensors are looked up under the
/// family's prefix (`bert.`, `distilbert.`) when the file uses one; head tensors by their own names.
pub struct TensorReader {
    file: MmapedSafetensors,
    prefix: &'static str,
}

impl TensorReader {
    /// Maps the weights file at `path`, a checkpoint of `family`.
    pub fn open(path: &Path, family: Family) -> candle_core::Result<Self> {
        // SAFETY: the weights file is mapped read-only; the model store never rewrites a
        // snapshot file in place (downloads land in new files and are renamed).
        let file = unsafe { MmapedSafetensors::new(path)? };
        let prefix = match (file.get(WORD_EMBEDDINGS), family) {
            (Ok(_), _) => "",
            (Err(_), Family::Bert) => "bert.",
            (Err(_), Family::DistilBert) => "distilbert.",
        };
        Ok(Self { file, prefix })
    }

    /// The encoder tensor `name` (under the family's prefix), checked to have `len` values.
    pub fn read(&self, name: &str, len: usize) -> candle_core::Result<Vec<f32>> {
        self.read_named(&format!("{}{name}", self.prefix), len)
    }

    /// A linear layer outside the encoder (a head), by its full name.
    pub fn head_linear(
        &self,
        name: &str,
        inputs: usize,
        outputs: usize,
    ) -> candle_core::Result<PackedLinear> {
        let weight = self.read_named(&format!("{name}.weight"), inputs * outputs)?;
        let bias = self.read_named(&format!("{name}.bias"), outputs)?;
        Ok(PackedLinear::new(
            &weight,
            &bias,
            inputs,
            outputs,
            WeightFormat::F32,
        ))
    }

    /// The outputs of the linear layer `name` (a head), from its bias.
    pub fn head_outputs(&self, name: &str) -> candle_core::Result<usize> {
        Ok(self
            .file
            .get(&format!("{name}.bias"))?
            .shape()
            .iter()
            .product())
    }

    fn read_named(&self, name: &str, len: usize) -> candle_core::Result<Vec<f32>> {
        let view = self.file.get(name)?;
        // f32 tensors are copied straight out of the mapping: one allocation, no temporaries.
        let values = match view.dtype() {
            safetensors::Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            _ => self
                .file
                .load(name, &Device::Cpu)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        };
        if values.len() != len {
            candle_core::bail!(
                "{name} has {} values, the config implies {len}",
                values.len()
            );
        }
        Ok(values)
    }

    /// The layer norm `name`, `width` wide.
    pub fn norm(&self, name: &str, width: usize) -> candle_core::Result<Norm> {
        Ok(Norm {
            gamma: self.read(&format!("{name}.weight"), width)?,
            beta: self.read(&format!("{name}.bias"), width)?,
        })
    }

    /// The first row of the token type embeddings (every input is segment 0), or zeros for a
    /// family without token types.
    pub fn token_type_row(&self, config: &EncoderConfig) -> candle_core::Result<Vec<f32>> {
        let h = config.hidden_size;
        Ok(match config.type_vocab_size {
            0 => vec![0.0; h],
            n => self.read(TOKEN_TYPE_EMBEDDINGS, n * h)?[..h].to_vec(),
        })
    }

    /// The encoder linear layers `names` (`outputs` x `inputs` each, PyTorch's layout) stacked
    /// into one: the weights `(names.len() * outputs, inputs)` row-major, then the biases.
    pub fn linear_values(
        &self,
        names: &[String],
        inputs: usize,
        outputs: usize,
    ) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
        let mut weight = Vec::with_capacity(names.len() * inputs * outputs);
        let mut bias = Vec::with_capacity(names.len() * outputs);
        for name in names {
            weight.extend(self.read(&format!("{name}.weight"), inputs * outputs)?);
            bias.extend(self.read(&format!("{name}.bias"), outputs)?);
        }
        Ok((weight, bias))
    }

    fn linear(
        &self,
        names: &[String],
        inputs: usize,
        outputs: usize,
        format: WeightFormat,
    ) -> candle_core::Result<PackedLinear> {
        let (weight, bias) = self.linear_values(names, inputs, outputs)?;
        Ok(PackedLinear::new(
            &weight,
            &bias,
            inputs,
            names.len() * outputs,
            format,
        ))
    }
}

impl CpuBertEncoder {
    /// Loads and packs the encoder's weights from `reader` for `config`; `format` applies to the
    /// linear layers (embeddings, layer norms and attention always run in f32).
    pub fn load(
        reader: &TensorReader,
        config: &EncoderConfig,
        format: WeightFormat,
    ) -> candle_core::Result<Self> {
        let (h, inter) = (config.hidden_size, config.intermediate_size);
        let layer = |i: usize| -> candle_core::Result<Layer> {
            let names = LayerNames::of(config.family, i);
            Ok(Layer {
                query_key_value: reader.linear(&names.query_key_value, h, h, format)?,
                attention_output: reader.linear(&[names.attention_output], h, h, format)?,
                attention_norm: reader.norm(&names.attention_norm, h)?,
                intermediate: reader.linear(&[names.intermediate], h, inter, format)?,
                output: reader.linear(&[names.output], inter, h, format)?,
                output_norm: reader.norm(&names.output_norm, h)?,
            })
        };
        Ok(Self {
            word_embeddings: reader.read(WORD_EMBEDDINGS, config.vocab_size * h)?,
            position_embeddings: reader.read(POSITION_EMBEDDINGS, config.max_positions * h)?,
            token_type_embedding: reader.token_type_row(config)?,
            embedding_norm: reader.norm(EMBEDDING_NORM, h)?,
            layers: (0..config.layers)
                .map(layer)
                .collect::<candle_core::Result<_>>()?,
            hidden_size: h,
            heads: config.heads,
            activation: config.activation,
            eps: config.eps,
            workspace: Mutex::default(),
        })
    }

    /// The width of each token's output vector.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// Runs the encoder over `batch` packed end to end and passes the last hidden states (one
    /// row per token, sequences in order) with the sequences' rows to `read`.
    pub fn forward<T>(
        &self,
        batch: &[&[u32]],
        read: impl FnOnce(&[f32], &[Sequence]) -> T,
    ) -> Result<T, InferenceError> {
        let h = self.hidden_size;
        let mut sequences = Vec::with_capacity(batch.len());
        let mut rows = 0;
        for ids in batch {
            sequences.push(Sequence {
                start: rows,
                len: ids.len(),
            });
            rows += ids.len();
        }
        let mut guard = self.workspace.lock().unwrap_or_else(|e| e.into_inner());
        let ws = &mut *guard;
        resize(&mut ws.hidden, rows * h);
        self.embed(batch, &mut ws.hidden)?;
        for layer in &self.layers {
            self.layer(layer, &sequences, ws);
        }
        Ok(read(&ws.hidden, &sequences))
    }

    /// Word + position + token type embeddings, then layer norm.
    fn embed(&self, batch: &[&[u32]], out: &mut [f32]) -> Result<(), InferenceError> {
        let h = self.hidden_size;
        let vocab = self.word_embeddings.len() / h;
        let positions = self.position_embeddings.len() / h;
        let mut rows = out.chunks_exact_mut(h);
        for ids in batch {
            if ids.len() > positions {
                return Err(InferenceError::TooManyPositions {
                    tokens: ids.len(),
                    positions,
                });
            }
            for (position, &id) in ids.iter().enumerate() {
                let id = id as usize;
                if id >= vocab {
                    return Err(InferenceError::UnknownToken { id, vocab });
                }
                let row = rows.next().expect("one row per token");
                let word = &self.word_embeddings[id * h..(id + 1) * h];
                let pos = &self.position_embeddings[position * h..(position + 1) * h];
                for (((o, w), p), t) in row
                    .iter_mut()
                    .zip(word)
                    .zip(pos)
                    .zip(&self.token_type_embedding)
                {
                    *o = w + p + t;
                }
            }
        }
        let norm = &self.embedding_norm;
        layer_norm_rows(out, h, &norm.gamma, &norm.beta, self.eps);
        Ok(())
    }

    /// One encoder layer: `ws.hidden` in, `ws.hidden` out.
    fn layer(&self, layer: &Layer, sequences: &[Sequence], ws: &mut Workspace) {
        let h = self.hidden_size;
        let rows = ws.hidden.len() / h;
        resize(&mut ws.query_key_value, rows * 3 * h);
        resize(&mut ws.context, rows * h);
        resize(&mut ws.next, rows * h);
        resize(&mut ws.intermediate, rows * layer.intermediate.outputs());

        layer
            .query_key_value
            .forward(&ws.hidden, &mut ws.query_key_value, |_, _| {});
        attention(&ws.query_key_value, &mut ws.context, sequences, self.heads);
        let residual = &ws.hidden;
        let norm = &layer.attention_norm;
        layer
            .attention_output
            .forward(&ws.context, &mut ws.next, |block, first| {
                add_and_norm(block, &residual[first * h..], norm, h, self.eps)
            });
        std::mem::swap(&mut ws.hidden, &mut ws.next);

        let activation = self.activation;
        layer
            .intermediate
            .forward(&ws.hidden, &mut ws.intermediate, |block, _| {
                activate(block, activation)
            });
        let residual = &ws.hidden;
        let norm = &layer.output_norm;
        layer
            .output
            .forward(&ws.intermediate, &mut ws.next, |block, first| {
                add_and_norm(block, &residual[first * h..], norm, h, self.eps)
            });
        std::mem::swap(&mut ws.hidden, &mut ws.next);
    }
}

/// `block = LayerNorm(block + residual)`, row by row.
fn add_and_norm(block: &mut [f32], residual: &[f32], norm: &Norm, width: usize, eps: f32) {
    for (o, r) in block.iter_mut().zip(residual) {
        *o += r;
    }
    layer_norm_rows(block, width, &norm.gamma, &norm.beta, eps);
}

fn activate(block: &mut [f32], activation: Activation) {
    match activation {
        Activation::Gelu => gelu_in_place(block),
        Activation::GeluTanh => gelu_tanh_in_place(block),
        Activation::Relu => block.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Silu => block.iter_mut().for_each(|v| *v /= 1.0 + (-*v).exp()),
    }
}

/// Sets `buffer` to `len` values, keeping its allocation.
fn resize(buffer: &mut Vec<f32>, len: usize) {
    buffer.resize(len, 0.0);
}
