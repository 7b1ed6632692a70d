//! What a model will need in memory, read from its files before it is loaded: the weights as the
//! backends load them (f32), and the working memory of a full batch or a full context.

use std::io::Read;
use std::path::Path;

use super::bounds::{MAX_TENSORS, elements};
use super::generation::PREFILL_CHUNK;
use crate::types::MemoryEstimate;

/// Texts in the batch the working-memory estimate of an encoder assumes.
const ESTIMATED_BATCH: u64 = 32;

/// A safetensors file's size and header, read without the tensor data.
pub struct SafetensorsHeader {
    file_size: u64,
    header_length: u64,
    tensors: serde_json::Map<String, serde_json::Value>,
}

/// Why a safetensors header is unusable.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The file cannot be read.
    #[error("{0}")]
    Read(#[from] std::io::Error),
    /// The header's length does not fit the file (or is beyond 100 MiB).
    #[error("a header of {length} bytes in a {file_size}-byte file")]
    Length {
        /// The length the file states.
        length: u64,
        /// The file's size.
        file_size: u64,
    },
    /// The header is not JSON.
    #[error("the header does not parse: {0}")]
    Parse(serde_json::Error),
    /// The header lists more tensors than a weights file may hold.
    #[error("{count} tensors; a weights file may hold at most {}", MAX_TENSORS)]
    TooManyTensors {
        /// Tensors listed.
        count: usize,
    },
    /// A tensor's entry is unusable.
    #[error("tensor {name}: {problem}")]
    Tensor {
        /// The tensor.
        name: String,
        /// What is wrong with its entry.
        problem: TensorProblem,
    },
}

/// What is wrong with a tensor's entry in a safetensors header.
#[derive(Debug, thiserror::Error)]
pub enum TensorProblem {
    /// Its dtype is none the backends read.
    #[error("dtype {0:?} is not supported")]
    Dtype(Option<String>),
    /// It has no shape.
    #[error("no shape")]
    NoShape,
    /// It has no data offsets.
    #[error("no data_offsets")]
    NoOffsets,
    /// Its element count overflows.
    #[error("its shape overflows")]
    ShapeOverflow,
    /// Its byte range does not hold its shape.
    #[error("shape {dims:?} needs {bytes} bytes, its data_offsets span {offsets:?}")]
    Span {
        /// Its shape.
        dims: Vec<u64>,
        /// The bytes the shape needs.
        bytes: u64,
        /// Its data offsets.
        offsets: (u64, u64),
    },
}

impl SafetensorsHeader {
    /// Reads the header of the file at `path`.
    pub fn read(path: &Path) -> Result<Self, HeaderError> {
        let mut file = std::fs::File::open(path)?;
        let file_size = file.metadata()?.len();
        let mut length = [0u8; 8];
        file.read_exact(&mut length)?;
        let header_length = u64::from_le_bytes(length);
        if header_length > file_size.saturating_sub(8) || header_length > 100 << 20 {
            return Err(HeaderError::Length {
                length: header_length,
                file_size,
            });
        }
        let mut header = vec![0u8; header_length as usize];
        file.read_exact(&mut header)?;
        let mut tensors: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(HeaderError::Parse)?;
        tensors.remove("__metadata__");
        if tensors.len() > MAX_TENSORS {
            return Err(HeaderError::TooManyTensors {
                count: tensors.len(),
            });
        }
        let header = Self {
            file_size,
            header_length,
            tensors,
        };
        header.check_tensors()?;
        Ok(header)
    }

    /// Checks every tensor's entry: a known dtype, a shape whose size matches its byte range, and
    /// a byte range in order. The sizes derived from the header are then bounded by the file's.
    fn check_tensors(&self) -> Result<(), HeaderError> {
        for (name, tensor) in &self.tensors {
            let bad = |problem| HeaderError::Tensor {
                name: name.clone(),
                problem,
            };
            let dtype_bytes = match tensor.get("dtype").and_then(|d| d.as_str()) {
                Some("F64" | "I64" | "U64") => 8,
                Some("F32" | "I32" | "U32") => 4,
                Some("F16" | "BF16" | "I16" | "U16") => 2,
                Some("I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2") => 1,
                other => return Err(bad(TensorProblem::Dtype(other.map(str::to_string)))),
            };
            let dims = tensor
                .get("shape")
                .and_then(|s| s.as_array())
                .and_then(|s| s.iter().map(|d| d.as_u64()).collect::<Option<Vec<u64>>>())
                .ok_or_else(|| bad(TensorProblem::NoShape))?;
            let offsets = tensor
                .get("data_offsets")
                .and_then(|o| Some((o.get(0)?.as_u64()?, o.get(1)?.as_u64()?)))
                .ok_or_else(|| bad(TensorProblem::NoOffsets))?;
            let bytes = elements(dims.iter().copied().chain([dtype_bytes]))
                .ok_or_else(|| bad(TensorProblem::ShapeOverflow))?;
            if offsets.0 > offsets.1 || offsets.1 - offsets.0 != bytes {
                return Err(bad(TensorProblem::Span {
                    dims,
                    bytes,
                    offsets,
                }));
            }
        }
        Ok(())
    }

    /// The file's size in bytes.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The size in bytes the header describes: the header plus the tensor data.
    pub fn described_size(&self) -> u64 {
        let data_end = self
            .tensors
            .values()
            .filter_map(|tensor| tensor.get("data_offsets")?.get(1)?.as_u64())
            .max()
            .unwrap_or(0);
        (8 + self.header_length).saturating_add(data_end)
    }

    /// Bytes of every tensor as f32, the way the backends hold them.
    pub fn f32_bytes(&self) -> u64 {
        self.tensors
            .values()
            .filter_map(|tensor| {
                let shape = tensor.get("shape")?.as_array()?;
                elements(shape.iter().map(|d| d.as_u64().unwrap_or(u64::MAX)))
            })
            .fold(0u64, u64::saturating_add)
            .saturating_mul(4)
    }
}

/// An encoder (BERT family) at `batch` texts of `sequence` tokens: per token the projections,
/// feed-forward and residual activations, plus the attention scores of every head.
pub fn encoder(
    weights: u64,
    hidden: usize,
    intermediate: usize,
    heads: usize,
    sequence: usize,
) -> MemoryEstimate {
    let (hidden, intermediate, heads, sequence) = (
        hidden as u64,
        intermediate as u64,
        heads as u64,
        sequence as u64,
    );
    let per_token = (6 * hidden + intermediate + heads * sequence) * 4;
    MemoryEstimate {
        weights,
        working: ESTIMATED_BATCH * sequence * per_token,
        per_token,
    }
}

/// The dimensions of a decoder-only (Llama-family) model.
pub struct DecoderShape {
    /// Vocabulary size.
    pub vocab: u64,
    /// Hidden width.
    pub hidden: u64,
    /// Decoder layers.
    pub layers: u64,
    /// Query heads.
    pub heads: u64,
    /// Key/value heads.
    pub kv_heads: u64,
    /// Feed-forward width.
    pub intermediate: u64,
    /// Longest context, in tokens.
    pub context: u64,
}

/// A Llama-family model dequantized to f32 (tied embeddings counted once), with the KV cache of
/// one full context as its working memory.
pub fn decoder(shape: &DecoderShape) -> MemoryEstimate {
    let head_width = shape.hidden / shape.heads.max(1);
    let kv_width = shape.kv_heads * head_width;
    let per_layer = 2 * shape.hidden * shape.hidden
        + 2 * shape.hidden * kv_width
        + 3 * shape.hidden * shape.intermediate
        + 2 * shape.hidden;
    let parameters = shape.vocab * shape.hidden + shape.layers * per_layer + shape.hidden;
    // The rotary table: a cosine and a sine per position and frequency, built at load.
    let rotary = shape.context * head_width * 4;
    // Per token of context: its keys and values in every layer, and the attention scores of a
    // prefill chunk against it in every head.
    let per_token = 2 * shape.layers * kv_width * 4 + PREFILL_CHUNK as u64 * shape.heads * 4;
    MemoryEstimate {
        weights: parameters * 4 + rotary,
        working: per_token * shape.context,
        per_token,
    }
}
