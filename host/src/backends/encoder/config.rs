//! The shape of a BERT-family encoder, read from a BERT or DistilBERT `config.json`, so one forward
//! pass serves both (`encoder::cpu` on the host's kernels, `encoder::device` on any candle device):
//! the two differ only in tensor names ([`LayerNames`]), token types and config keys.

use serde::Deserialize;

use crate::backends::BackendError;
use crate::backends::common::activation::Activation;
use crate::backends::common::bounds::{
    MAX_ENCODER_INPUT, MAX_HEADS, MAX_INTERMEDIATE, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB,
    MAX_WIDTH, finite_positive, heads, positive,
};
use crate::store::local::ModelFiles;

/// Which weight names and config keys the checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `model_type: "bert"`: `encoder.layer.N.attention.self.query`, ...
    Bert,
    /// `model_type: "distilbert"`: `transformer.layer.N.attention.q_lin`, ...
    DistilBert,
}

/// The encoder's sizes and settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// The checkpoint's family.
    pub family: Family,
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of every token vector.
    pub hidden_size: usize,
    /// Encoder layers.
    pub layers: usize,
    /// Attention heads per layer.
    pub heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Positions with an embedding: the longest input.
    pub max_positions: usize,
    /// Token type embeddings (0: the family has none).
    pub type_vocab_size: usize,
    /// The feed-forward activation: never [`Activation::Silu`], which the encoder's kernels do
    /// not implement ([`Self::read`] refuses it).
    pub activation: Activation,
    /// Layer norm epsilon.
    pub eps: f32,
}

#[derive(Deserialize)]
struct BertFields {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "two")]
    type_vocab_size: usize,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default = "bert_eps")]
    layer_norm_eps: f64,
    position_embedding_type: Option<String>,
}

#[derive(Deserialize)]
struct DistilBertFields {
    vocab_size: usize,
    dim: usize,
    n_layers: usize,
    n_heads: usize,
    hidden_dim: usize,
    max_position_embeddings: usize,
    #[serde(default = "gelu")]
    activation: String,
}

fn two() -> usize {
    2
}

fn gelu() -> String {
    "gelu".into()
}

fn bert_eps() -> f64 {
    1e-12
}

impl EncoderConfig {
    /// Reads `config.json` as `family` describes it.
    pub fn read(files: &ModelFiles, family: Family) -> Result<Self, BackendError> {
        let text = files.read_to_string("config.json")?;
        let invalid = |e: serde_json::Error| {
            files.invalid(format!("config.json is not a valid {family:?} config: {e}"))
        };
        let config = match family {
            Family::Bert => {
                let c: BertFields = serde_json::from_str(&text).map_err(invalid)?;
                if let Some(kind) = c.position_embedding_type.filter(|k| k != "absolute") {
                    return Err(files.invalid(format!(
                        "position_embedding_type \"{kind}\" is not supported (only \"absolute\")"
                    )).into());
                }
                Self {
                    family,
                    vocab_size: c.vocab_size,
                    hidden_size: c.hidden_size,
                    layers: c.num_hidden_layers,
                    heads: c.num_attention_heads,
                    intermediate_size: c.intermediate_size,
                    max_positions: c.max_position_embeddings,
                    type_vocab_size: c.type_vocab_size,
                    activation: activation(&c.hidden_act, files)?,
                    eps: c.layer_norm_eps as f32,
                }
            }
            Family::DistilBert => {
                let c: DistilBertFields = serde_json::from_str(&text).map_err(invalid)?;
                Self {
                    family,
                    vocab_size: c.vocab_size,
                    hidden_size: c.dim,
                    layers: c.n_layers,
                    heads: c.n_heads,
                    intermediate_size: c.hidden_dim,
                    max_positions: c.max_position_embeddings,
                    type_vocab_size: 0,
                    activation: activation(&c.activation, files)?,
                    eps: 1e-12,
                }
            }
        };
        config.check(files)?;
        Ok(config)
    }

    /// The longest input the encoder is run with: its positions, at most [`MAX_ENCODER_INPUT`].
    pub fn max_input(&self) -> usize {
        self.max_positions.min(MAX_ENCODER_INPUT)
    }

    /// Checks every size against the bounds of `common::bounds` and the head arithmetic.
    fn check(&self, files: &ModelFiles) -> Result<(), BackendError> {
        positive(files, "vocab_size", self.vocab_size, MAX_VOCAB)?;
        positive(files, "hidden_size", self.hidden_size, MAX_WIDTH)?;
        positive(files, "num_hidden_layers", self.layers, MAX_LAYERS)?;
        positive(files, "num_attention_heads", self.heads, MAX_HEADS)?;
        positive(
            files,
            "intermediate_size",
            self.intermediate_size,
            MAX_INTERMEDIATE,
        )?;
        positive(
            files,
            "max_position_embeddings",
            self.max_positions,
            MAX_POSITIONS,
        )?;
        if self.type_vocab_size > MAX_VOCAB {
            return Err(files
                .invalid(format!(
                    "`type_vocab_size` is {}; it may be at most {MAX_VOCAB}",
                    self.type_vocab_size
                ))
                .into());
        }
        finite_positive(files, "layer_norm_eps", f64::from(self.eps))?;
        heads(files, self.hidden_size, self.heads, self.heads)
    }
}

/// The activation `name` names, if the encoder's kernels implement it (all but silu).
fn activation(name: &str, files: &ModelFiles) -> Result<Activation, BackendError> {
    match Activation::from_name(name) {
        Some(activation) if activation != Activation::Silu => Ok(activation),
        _ => Err(files
            .invalid(format!(
                "activation \"{name}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)"
            ))
            .into()),
    }
}

/// The word embeddings, `(vocab_size, hidden_size)`. The embedding tensors have the same names in
/// both families (under the family's prefix, see `cpu::TensorReader`).
pub const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";
/// The position embeddings, `(max_positions, hidden_size)`.
pub const POSITION_EMBEDDINGS: &str = "embeddings.position_embeddings.weight";
/// The token type embeddings, `(type_vocab_size, hidden_size)`: BERT only.
pub const TOKEN_TYPE_EMBEDDINGS: &str = "embeddings.token_type_embeddings.weight";
/// The layer norm after the embeddings.
pub const EMBEDDING_NORM: &str = "embeddings.LayerNorm";

/// The names of one layer's tensors in a family's checkpoints (each a prefix of `.weight` and
/// `.bias`): the one table both encoders (`cpu`, `device`) load by.
pub struct LayerNames {
    /// The query, key and value projections, fused in this order.
    pub query_key_value: [String; 3],
    /// The attention's output projection.
    pub attention_output: String,
    /// The layer norm after the attention's residual.
    pub attention_norm: String,
    /// The feed-forward block's first projection (to `intermediate_size`).
    pub intermediate: String,
    /// The feed-forward block's second projection (back to `hidden_size`).
    pub output: String,
    /// The layer norm after the feed-forward block's residual.
    pub output_norm: String,
}

impl LayerNames {
    /// The names of layer `i` of a `family` checkpoint.
    pub fn of(family: Family, i: usize) -> Self {
        match family {
            Family::Bert => {
                let at = |part: &str| format!("encoder.layer.{i}.{part}");
                Self {
                    query_key_value: ["query", "key", "value"]
                        .map(|p| at(&format!("attention.self.{p}"))),
                    attention_output: at("attention.output.dense"),
                    attention_norm: at("attention.output.LayerNorm"),
                    intermediate: at("intermediate.dense"),
                    output: at("output.dense"),
                    output_norm: at("output.LayerNorm"),
                }
            }
            Family::DistilBert => {
                let at = |part: &str| format!("transformer.layer.{i}.{part}");
                Self {
                    query_key_value: ["q_lin", "k_lin", "v_lin"]
                        .map(|p| at(&format!("attention.{p}"))),
                    attention_output: at("attention.out_lin"),
                    attention_norm: at("sa_layer_norm"),
                    intermediate: at("ffn.lin1"),
                    output: at("ffn.lin2"),
                    output_norm: at("output_layer_norm"),
                }
            }
        }
    }
}
