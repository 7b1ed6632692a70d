//! The BERT-family encoder (BERT, DistilBERT) in candle's device-generic ops, so one forward pass
//! runs on a CUDA GPU or, in tests, on candle's CPU device. The math is `encoder::cpu`'s: word +
//! position + token type (row 0) embeddings and a layer norm; then per layer a fused
//! query/key/value projection, scaled dot-product attention with padded keys masked out, the
//! output projection with residual and layer norm, and the feed-forward block with the config's
//! activation, residual and layer norm. Weights are read through the same `TensorReader` by the
//! same names ([`LayerNames`]).
//!
//! Sequences are padded to the batch's longest (ids 0, masked) rather than packed: a GPU wants
//! rectangular matrix products, and padding costs it little.
//!
//! Precision: the matrix products (projections and attention) run in the engine's `DType`: f32
//! for `Precision::Exact`, f16 for `Precision::Fast`. Everything else (the residual stream, the
//! biases, layer norms, activations and the softmax) stays f32, with casts around the products.
//! f16 rather than bf16: bf16's wide exponent buys nothing here, since an encoder's products see
//! bounded values (their inputs come out of a layer norm or an activation, queries are scaled
//! before the scores are taken, cuBLAS accumulates in f32) and stay far below f16's limit of
//! 65504, while f16's three more mantissa bits (10 against 7) keep vectors that are compared by
//! cosine and ranked about 8 times closer to f32's. And every CUDA GPU with tensor cores
//! multiplies f16 at full rate, where bf16 needs compute capability 8.0 (Ampere) or newer.
//!
//! Everything the batch carries is checked on the host before it reaches the device: a token id
//! past the embedding table or a sequence past the position table would be an out-of-range index
//! in a kernel, which on a GPU is undefined behaviour rather than an error.

use std::fmt;

use candle_core::{DType, Device, DeviceLocation, Tensor};
use candle_nn::ops::{layer_norm, softmax_last_dim};

use super::config::{
    EMBEDDING_NORM, EncoderConfig, LayerNames, POSITION_EMBEDDINGS, WORD_EMBEDDINGS,
};
use super::cpu::TensorReader;
use crate::backends::InferenceError;
use crate::backends::common::activation::Activation;
use crate::kernels::WeightFormat;
use crate::types::ComputeDevice;
use crate::types::requirement::Precision;

/// Where an encoder runs.
#[derive(Debug, Clone)]
pub enum Target {
    /// The host's CPU kernels (`encoder::cpu`), linear layers packed in this format.
    Kernels(WeightFormat),
    /// candle's ops ([`DeviceEncoder`]) on `device`, matrix products in `dtype`.
    Candle {
        /// The candle device: a CUDA GPU in service, candle's CPU device in tests.
        device: Device,
        /// The matrix products' type (f32 or f16).
        dtype: DType,
    },
}

impl Target {
    /// Where a worker on `device` runs an encoder for `precision`: the CPU kernels with the
    /// format `cpu_format` picks, or candle on the GPU with [`matmul_dtype`]. Fails where the GPU
    /// cannot be opened (or the host was built without the `cuda` feature).
    pub fn of(
        device: ComputeDevice,
        precision: Precision,
        cpu_format: impl FnOnce() -> WeightFormat,
    ) -> candle_core::Result<Self> {
        Ok(match device {
            ComputeDevice::Cpu => Self::Kernels(cpu_format()),
            ComputeDevice::Cuda(n) => Self::Candle {
                device: Device::new_cuda(n as usize)?,
                dtype: matmul_dtype(precision),
            },
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kernels(_) => f.write_str("cpu"),
            Self::Candle { device, dtype } => match device.location() {
                DeviceLocation::Cpu => write!(f, "candle cpu ({dtype:?})"),
                DeviceLocation::Cuda { gpu_id } => write!(f, "cuda:{gpu_id} ({dtype:?})"),
                DeviceLocation::Metal { gpu_id } => write!(f, "metal:{gpu_id} ({dtype:?})"),
            },
        }
    }
}

/// The matrix products' type for `precision` on a GPU: f32, or f16 for `Fast` (see the module
/// header for why not bf16).
pub fn matmul_dtype(precision: Precision) -> DType {
    match precision {
        Precision::Exact => DType::F32,
        Precision::Fast => DType::F16,
    }
}

/// A linear layer: the weight `(outputs, inputs)` in the matrix products' type, the bias f32.
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

/// Layer norm weights, f32.
struct Norm {
    gamma: Tensor,
    beta: Tensor,
}

/// One encoder layer.
struct Layer {
    query_key_value: Linear,
    attention_output: Linear,
    attention_norm: Norm,
    intermediate: Linear,
    output: Linear,
    output_norm: Norm,
}

/// The last hidden states of a padded batch.
pub struct EncoderOutput {
    /// `(batch, len, hidden)` f32, `len` the longest sequence; rows past a sequence's end are
    /// padding, finite but meaningless.
    pub hidden: Tensor,
    /// `(batch, len)` f32: 1 for a real token, 0 for padding.
    pub mask: Tensor,
}

/// A BERT-family encoder on a candle device.
pub struct DeviceEncoder {
    device: Device,
    dtype: DType,
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embedding: Tensor,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    vocab: usize,
    positions: usize,
    hidden_size: usize,
    heads: usize,
    activation: Activation,
    eps: f32,
}

impl DeviceEncoder {
    /// Loads the encoder's weights from `reader` for `config` onto `device`, the linear layers'
    /// weights in `dtype` (f32 or f16; embeddings and layer norms stay f32).
    pub fn load(
        reader: &TensorReader,
        config: &EncoderConfig,
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F16) {
            candle_core::bail!("the encoder's matrix products run in f32 or f16, not {dtype:?}");
        }
        let (h, inter) = (config.hidden_size, config.intermediate_size);
        let tensor = |values: Vec<f32>, shape: &[usize], dtype: DType| {
            // Cast on the host, so an f16 weight crosses to the device at half the size.
            Tensor::from_vec(values, shape, &Device::Cpu)?
                .to_dtype(dtype)?
                .to_device(device)
        };
        let linear = |names: &[String], inputs: usize, outputs: usize| {
            let (weight, bias) = reader.linear_values(names, inputs, outputs)?;
            let rows = names.len() * outputs;
            Ok::<_, candle_core::Error>(Linear {
                weight: tensor(weight, &[rows, inputs], dtype)?,
                bias: tensor(bias, &[rows], DType::F32)?,
            })
        };
        let norm = |name: &str| {
            let norm = reader.norm(name, h)?;
            Ok::<_, candle_core::Error>(Norm {
                gamma: tensor(norm.gamma, &[h], DType::F32)?,
                beta: tensor(norm.beta, &[h], DType::F32)?,
            })
        };
        let layer = |i: usize| {
            let names = LayerNames::of(config.family, i);
            Ok(Layer {
                query_key_value: linear(&names.query_key_value, h, h)?,
                attention_output: linear(std::slice::from_ref(&names.attention_output), h, h)?,
                attention_norm: norm(&names.attention_norm)?,
                intermediate: linear(std::slice::from_ref(&names.intermediate), h, inter)?,
                output: linear(std::slice::from_ref(&names.output), inter, h)?,
                output_norm: norm(&names.output_norm)?,
            })
        };
        let (vocab, positions) = (config.vocab_size, config.max_positions);
        Ok(Self {
            device: device.clone(),
            dtype,
            word_embeddings: tensor(
                reader.read(WORD_EMBEDDINGS, vocab * h)?,
                &[vocab, h],
                DType::F32,
            )?,
            position_embeddings: tensor(
                reader.read(POSITION_EMBEDDINGS, positions * h)?,
                &[positions, h],
                DType::F32,
            )?,
            token_type_embedding: tensor(reader.token_type_row(config)?, &[h], DType::F32)?,
            embedding_norm: norm(EMBEDDING_NORM)?,
            layers: (0..config.layers)
                .map(layer)
                .collect::<candle_core::Result<_>>()?,
            vocab,
            positions,
            hidden_size: h,
            heads: config.heads,
            activation: config.activation,
            eps: config.eps,
        })
    }

    /// Runs the encoder over `batch`, padded to its longest sequence. Every token id and length
    /// is checked before anything is sent to the device.
    pub fn forward(&self, batch: &[&[u32]]) -> Result<EncoderOutput, InferenceError> {
        let len = self.check(batch)?;
        let (b, h) = (batch.len(), self.hidden_size);
        let mut ids = Vec::with_capacity(b * len);
        let mut mask = Vec::with_capacity(b * len);
        let mut bias = Vec::with_capacity(b * len);
        for row in batch {
            let padding = len - row.len();
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(0u32, padding));
            mask.extend(std::iter::repeat_n(1f32, row.len()));
            mask.extend(std::iter::repeat_n(0f32, padding));
            bias.extend(std::iter::repeat_n(0f32, row.len()));
            // Padded keys get the lowest finite score (as transformers' finfo.min): their
            // softmax weight is exactly 0, and a row with no real key stays finite.
            bias.extend(std::iter::repeat_n(f32::MIN, padding));
        }
        let mask = Tensor::from_vec(mask, (b, len), &self.device)?;
        if len == 0 {
            let hidden = Tensor::zeros((b, 0, h), DType::F32, &self.device)?;
            return Ok(EncoderOutput { hidden, mask });
        }
        let ids = Tensor::from_vec(ids, b * len, &self.device)?;
        let bias = Tensor::from_vec(bias, (b, 1, 1, len), &self.device)?;
        let mut hidden = self.embed(&ids, b, len)?;
        for layer in &self.layers {
            hidden = self.layer(layer, &hidden, &bias, b, len)?;
        }
        Ok(EncoderOutput {
            hidden: hidden.reshape((b, len, h))?,
            mask,
        })
    }

    /// The longest sequence of `batch`, after checking each against the position table and
    /// each token id against the vocabulary.
    fn check(&self, batch: &[&[u32]]) -> Result<usize, InferenceError> {
        let mut longest = 0;
        for ids in batch {
            if ids.len() > self.positions {
                return Err(InferenceError::TooManyPositions {
                    tokens: ids.len(),
                    positions: self.positions,
                });
            }
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab) {
                return Err(InferenceError::UnknownToken {
                    id: id as usize,
                    vocab: self.vocab,
                });
            }
            longest = longest.max(ids.len());
        }
        Ok(longest)
    }

    /// Word + position + token type embeddings, then layer norm: `(b * len, hidden)`.
    fn embed(&self, ids: &Tensor, b: usize, len: usize) -> candle_core::Result<Tensor> {
        let h = self.hidden_size;
        let words = self
            .word_embeddings
            .index_select(ids, 0)?
            .reshape((b, len, h))?;
        let positions = self.position_embeddings.narrow(0, 0, len)?;
        let sum = words
            .broadcast_add(&positions)?
            .broadcast_add(&self.token_type_embedding)?
            .reshape((b * len, h))?;
        self.norm(&self.embedding_norm, &sum)
    }

    /// One encoder layer over `(b * len, hidden)` states; `bias` is the `(b, 1, 1, len)`
    /// attention bias of the padding.
    fn layer(
        &self,
        layer: &Layer,
        hidden: &Tensor,
        bias: &Tensor,
        b: usize,
        len: usize,
    ) -> candle_core::Result<Tensor> {
        let (h, heads) = (self.hidden_size, self.heads);
        let head_size = h / heads;
        let query_key_value = self
            .linear(&layer.query_key_value, hidden)?
            .reshape((b, len, 3, heads, head_size))?;
        // (b, heads, len, head_size) for part 0 (queries), 1 (keys), 2 (values).
        let part = |i: usize| {
            query_key_value
                .narrow(2, i, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()
        };
        let scale = 1.0 / (head_size as f64).sqrt();
        let query = (part(0)? * scale)?.to_dtype(self.dtype)?;
        let key = part(1)?.to_dtype(self.dtype)?;
        let value = part(2)?.to_dtype(self.dtype)?;
        let scores = query
            .matmul(&key.t()?)?
            .to_dtype(DType::F32)?
            .broadcast_add(bias)?;
        let weights = softmax_last_dim(&scores)?.to_dtype(self.dtype)?;
        let context = weights
            .matmul(&value)?
            .to_dtype(DType::F32)?
            .transpose(1, 2)?
            .reshape((b * len, h))?;
        let attended = (self.linear(&layer.attention_output, &context)? + hidden)?;
        let hidden = self.norm(&layer.attention_norm, &attended)?;

        let intermediate = self.activate(&self.linear(&layer.intermediate, &hidden)?)?;
        let output = (self.linear(&layer.output, &intermediate)? + &hidden)?;
        self.norm(&layer.output_norm, &output)
    }

    /// `x W^T + b` for f32 rows `x`, the product in the engine's type.
    fn linear(&self, linear: &Linear, x: &Tensor) -> candle_core::Result<Tensor> {
        x.to_dtype(self.dtype)?
            .matmul(&linear.weight.t()?)?
            .to_dtype(DType::F32)?
            .broadcast_add(&linear.bias)
    }

    fn norm(&self, norm: &Norm, x: &Tensor) -> candle_core::Result<Tensor> {
        layer_norm(&x.contiguous()?, &norm.gamma, &norm.beta, self.eps)
    }

    fn activate(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.activation {
            Activation::Gelu => x.gelu_erf(),
            // candle's `gelu` is the tanh approximation.
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
        }
    }
}
