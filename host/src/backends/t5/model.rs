//! The T5 encoder-decoder (as transformers' `T5ForConditionalGeneration`) on candle tensors:
//! RMS layer norms, attention without score scaling, relative position buckets (bidirectional in
//! the encoder, causal in the decoder, shared from each stack's first layer), gated or plain
//! feed-forward, and a decoder with a self-attention KV cache and cross-attention keys/values
//! computed once per generation.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder, embedding, linear_no_bias};
use serde::Deserialize;

use crate::backends::BackendError;
use crate::backends::common::activation::Activation;
use crate::backends::common::bounds::{
    MAX_HEADS, MAX_INTERMEDIATE, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB, MAX_WIDTH, finite_positive,
    positive,
};
use crate::backends::common::mask::causal_mask;
use crate::store::local::ModelFiles;

/// The fields of a T5 `config.json` this implementation reads.
#[derive(Debug, Clone, Deserialize)]
pub struct T5Config {
    vocab_size: usize,
    d_model: usize,
    d_kv: usize,
    d_ff: usize,
    num_layers: usize,
    num_decoder_layers: Option<usize>,
    num_heads: usize,
    relative_attention_num_buckets: usize,
    #[serde(default = "max_distance")]
    relative_attention_max_distance: usize,
    layer_norm_epsilon: f64,
    #[serde(default = "relu")]
    feed_forward_proj: String,
    dense_act_fn: Option<String>,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
    /// The end-of-sequence token.
    pub eos_token_id: u32,
    pad_token_id: u32,
    decoder_start_token_id: Option<u32>,
}

fn max_distance() -> usize {
    128
}

fn relu() -> String {
    "relu".into()
}

fn yes() -> bool {
    true
}

impl T5Config {
    /// Checks every size against the bounds of `common::bounds`.
    pub fn check(&self, files: &ModelFiles) -> std::result::Result<(), BackendError> {
        positive(files, "vocab_size", self.vocab_size, MAX_VOCAB)?;
        positive(files, "d_model", self.d_model, MAX_WIDTH)?;
        positive(files, "d_kv", self.d_kv, MAX_WIDTH)?;
        positive(files, "d_ff", self.d_ff, MAX_INTERMEDIATE)?;
        positive(files, "num_layers", self.num_layers, MAX_LAYERS)?;
        if let Some(layers) = self.num_decoder_layers {
            positive(files, "num_decoder_layers", layers, MAX_LAYERS)?;
        }
        positive(files, "num_heads", self.num_heads, MAX_HEADS)?;
        positive(
            files,
            "relative_attention_num_buckets",
            self.relative_attention_num_buckets,
            MAX_POSITIONS,
        )?;
        positive(
            files,
            "relative_attention_max_distance",
            self.relative_attention_max_distance,
            MAX_POSITIONS,
        )?;
        finite_positive(files, "layer_norm_epsilon", self.layer_norm_epsilon)?;
        for (key, id) in [
            ("eos_token_id", Some(self.eos_token_id)),
            ("pad_token_id", Some(self.pad_token_id)),
            ("decoder_start_token_id", self.decoder_start_token_id),
        ] {
            if id.is_some_and(|id| id as usize >= self.vocab_size) {
                return Err(files
                    .invalid(format!(
                        "`{key}` is outside the vocabulary of {}",
                        self.vocab_size
                    ))
                    .into());
            }
        }
        Ok(())
    }

    /// Working memory per input token at inputs of up to `max_input` tokens: the attention
    /// scores and position biases of every head against the whole input, the feed-forward and
    /// the projections.
    pub fn working_bytes_per_token(&self, max_input: usize) -> u64 {
        let heads = self.num_heads as u64;
        let per_token = 2 * heads * max_input as u64
            + self.d_ff as u64
            + 6 * (self.num_heads * self.d_kv).max(self.d_model) as u64;
        per_token * 4
    }

    /// The token the decoder starts from.
    pub fn decoder_start(&self) -> u32 {
        self.decoder_start_token_id.unwrap_or(self.pad_token_id)
    }

    /// The feed-forward block's kind; `None` when its activation is unsupported.
    pub fn feed_forward(&self) -> Option<FeedForwardKind> {
        let (gated, act) = match self.feed_forward_proj.strip_prefix("gated-") {
            Some(act) => (true, act),
            None => (false, self.feed_forward_proj.as_str()),
        };
        let act = self.dense_act_fn.as_deref().unwrap_or(match act {
            "gelu" if gated => "gelu_new",
            other => other,
        });
        Some(FeedForwardKind {
            gated,
            activation: Activation::from_name(act)?,
        })
    }
}

/// What a T5 feed-forward block computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedForwardKind {
    /// Whether a second projection gates the activation (`gated-*`, as in flan-T5).
    pub gated: bool,
    /// The activation.
    pub activation: Activation,
}

/// `activation` of every value of `x`, with candle's operations.
fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    match activation {
        Activation::Relu => x.relu(),
        Activation::GeluTanh => x.gelu(),
        Activation::Gelu => x.gelu_erf(),
        Activation::Silu => x.silu(),
    }
}

/// T5's layer norm: scale by the root mean square, no mean subtraction, no bias.
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn load(vb: VarBuilder, width: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(width, "weight")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let variance = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(variance + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)
    }
}

/// Relative position buckets as transformers computes them, for a query at `query` and a key at
/// `key`.
fn bucket(
    query: usize,
    key: usize,
    bidirectional: bool,
    buckets: usize,
    max_distance: usize,
) -> u32 {
    let relative = key as i64 - query as i64;
    let (mut buckets, mut offset) = (buckets as i64, 0);
    let distance = if bidirectional {
        buckets /= 2;
        if relative > 0 {
            offset = buckets;
        }
        relative.abs()
    } else {
        (-relative).max(0)
    };
    let exact = buckets / 2;
    let bucket = if distance < exact {
        distance
    } else {
        let scaled = (distance as f32 / exact as f32).ln()
            / (max_distance as f32 / exact as f32).ln()
            * (buckets - exact) as f32;
        (exact + scaled as i64).min(buckets - 1)
    };
    (offset + bucket) as u32
}

/// One attention block's projections (and, in a stack's first layer, its relative bias).
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    d_kv: usize,
    relative_bias: Option<Embedding>,
}

impl Attention {
    fn load(vb: VarBuilder, config: &T5Config, with_bias: bool) -> Result<Self> {
        let inner = config.num_heads * config.d_kv;
        Ok(Self {
            q: linear_no_bias(config.d_model, inner, vb.pp("q"))?,
            k: linear_no_bias(config.d_model, inner, vb.pp("k"))?,
            v: linear_no_bias(config.d_model, inner, vb.pp("v"))?,
            o: linear_no_bias(inner, config.d_model, vb.pp("o"))?,
            heads: config.num_heads,
            d_kv: config.d_kv,
            relative_bias: if with_bias {
                Some(embedding(
                    config.relative_attention_num_buckets,
                    config.num_heads,
                    vb.pp("relative_attention_bias"),
                )?)
            } else {
                None
            },
        })
    }

    /// `[1, n, d_model]` → `[1, heads, n, d_kv]`.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let n = x.dim(1)?;
        x.reshape((1, n, self.heads, self.d_kv))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Keys and values of `source`, split into heads.
    fn keys_values(&self, source: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split(&self.k.forward(source)?)?,
            self.split(&self.v.forward(source)?)?,
        ))
    }

    /// The relative bias `[1, heads, queries, keys]` for queries at `first_query..` against keys
    /// `0..keys`.
    fn position_bias(
        &self,
        config: &T5Config,
        first_query: usize,
        queries: usize,
        keys: usize,
        bidirectional: bool,
        device: &Device,
    ) -> Result<Option<Tensor>> {
        let Some(table) = &self.relative_bias else {
            return Ok(None);
        };
        let buckets: Vec<u32> = (first_query..first_query + queries)
            .flat_map(|q| (0..keys).map(move |k| (q, k)))
            .map(|(q, k)| {
                bucket(
                    q,
                    k,
                    bidirectional,
                    config.relative_attention_num_buckets,
                    config.relative_attention_max_distance,
                )
            })
            .collect();
        let buckets = Tensor::from_vec(buckets, (queries, keys), device)?;
        Ok(Some(
            table.forward(&buckets)?.permute((2, 0, 1))?.unsqueeze(0)?,
        ))
    }

    /// Attention of `x`'s queries over `keys`/`values`, plus `bias` (position bias and mask).
    fn attend(
        &self,
        x: &Tensor,
        keys: &Tensor,
        values: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let queries = self.split(&self.q.forward(x)?)?;
        let mut scores = queries.matmul(&keys.t()?)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(bias)?;
        }
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let n = x.dim(1)?;
        let context =
            weights
                .matmul(values)?
                .transpose(1, 2)?
                .reshape((1, n, self.heads * self.d_kv))?;
        self.o.forward(&context)
    }
}

/// The feed-forward block.
struct FeedForward {
    wi: Linear,
    gate: Option<Linear>,
    wo: Linear,
    activation: Activation,
}

impl FeedForward {
    fn load(vb: VarBuilder, config: &T5Config) -> Result<Self> {
        let FeedForwardKind { gated, activation } = config.feed_forward().ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "feed_forward_proj {:?} is not supported",
                config.feed_forward_proj
            ))
        })?;
        let (d, ff) = (config.d_model, config.d_ff);
        let (wi, gate) = if gated {
            (
                linear_no_bias(d, ff, vb.pp("wi_0"))?,
                Some(linear_no_bias(d, ff, vb.pp("wi_1"))?),
            )
        } else {
            (linear_no_bias(d, ff, vb.pp("wi"))?, None)
        };
        Ok(Self {
            wi,
            gate,
            wo: linear_no_bias(ff, d, vb.pp("wo"))?,
            activation,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut hidden = activate(&self.wi.forward(x)?, self.activation)?;
        if let Some(gate) = &self.gate {
            hidden = (hidden * gate.forward(x)?)?;
        }
        self.wo.forward(&hidden)
    }
}

/// One block: self-attention, cross-attention (decoder only), feed-forward, each pre-normed.
struct Block {
    self_norm: RmsNorm,
    self_attention: Attention,
    cross: Option<(RmsNorm, Attention)>,
    ff_norm: RmsNorm,
    feed_forward: FeedForward,
}

impl Block {
    fn load(vb: VarBuilder, config: &T5Config, first: bool, decoder: bool) -> Result<Self> {
        let eps = config.layer_norm_epsilon;
        let d = config.d_model;
        let layer = |i: usize| vb.pp("layer").pp(i.to_string());
        let ff = if decoder { 2 } else { 1 };
        Ok(Self {
            self_norm: RmsNorm::load(layer(0).pp("layer_norm"), d, eps)?,
            self_attention: Attention::load(layer(0).pp("SelfAttention"), config, first)?,
            cross: if decoder {
                Some((
                    RmsNorm::load(layer(1).pp("layer_norm"), d, eps)?,
                    Attention::load(layer(1).pp("EncDecAttention"), config, false)?,
                ))
            } else {
                None
            },
            ff_norm: RmsNorm::load(layer(ff).pp("layer_norm"), d, eps)?,
            feed_forward: FeedForward::load(layer(ff).pp("DenseReluDense"), config)?,
        })
    }
}

/// A decoder layer's cached keys and values: its own past, and the encoder output's.
struct LayerCache {
    past: Option<(Tensor, Tensor)>,
    cross: (Tensor, Tensor),
}

/// A T5 model with its weights.
pub struct T5Model {
    config: T5Config,
    shared: Embedding,
    encoder: Vec<Block>,
    encoder_norm: RmsNorm,
    decoder: Vec<Block>,
    decoder_norm: RmsNorm,
    lm_head: Tensor,
    device: Device,
}

/// One generation's decoder state.
pub struct DecoderState {
    layers: Vec<LayerCache>,
    length: usize,
}

impl T5Model {
    /// Loads the weights in `vb` for `config`.
    pub fn load(vb: VarBuilder, config: T5Config) -> Result<Self> {
        let shared = embedding(config.vocab_size, config.d_model, vb.pp("shared"))?;
        let stack = |name: &str, layers: usize, decoder: bool| -> Result<Vec<Block>> {
            (0..layers)
                .map(|i| {
                    Block::load(
                        vb.pp(name).pp("block").pp(i.to_string()),
                        &config,
                        i == 0,
                        decoder,
                    )
                })
                .collect()
        };
        let encoder = stack("encoder", config.num_layers, false)?;
        let decoder = stack(
            "decoder",
            config.num_decoder_layers.unwrap_or(config.num_layers),
            true,
        )?;
        let eps = config.layer_norm_epsilon;
        let lm_head = if config.tie_word_embeddings {
            (shared.embeddings() * (config.d_model as f64).powf(-0.5))?
        } else {
            vb.pp("lm_head")
                .get((config.vocab_size, config.d_model), "weight")?
        };
        Ok(Self {
            encoder_norm: RmsNorm::load(
                vb.pp("encoder").pp("final_layer_norm"),
                config.d_model,
                eps,
            )?,
            decoder_norm: RmsNorm::load(
                vb.pp("decoder").pp("final_layer_norm"),
                config.d_model,
                eps,
            )?,
            device: vb.device().clone(),
            shared,
            encoder,
            decoder,
            lm_head,
            config,
        })
    }

    /// Refuses token ids outside the embedding table before they reach a device: a lookup out of
    /// range is an error on the CPU but undefined behaviour in a GPU kernel.
    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            Some(id) => candle_core::bail!(
                "token id {id} is outside the vocabulary of {}",
                self.config.vocab_size
            ),
            None => Ok(()),
        }
    }

    /// The config the model was loaded with.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// Encodes `input` and prepares a decoder state attending to it.
    pub fn start(&self, input: &[u32]) -> Result<DecoderState> {
        self.check_ids(input)?;
        let ids = Tensor::new(input, &self.device)?.unsqueeze(0)?;
        let mut hidden = self.shared.forward(&ids)?;
        let n = input.len();
        let bias = self.encoder[0].self_attention.position_bias(
            &self.config,
            0,
            n,
            n,
            true,
            &self.device,
        )?;
        for block in &self.encoder {
            let normed = block.self_norm.forward(&hidden)?;
            let (k, v) = block.self_attention.keys_values(&normed)?;
            hidden = (hidden
                + block
                    .self_attention
                    .attend(&normed, &k, &v, bias.as_ref())?)?;
            hidden = (&hidden
                + block
                    .feed_forward
                    .forward(&block.ff_norm.forward(&hidden)?)?)?;
        }
        let encoded = self.encoder_norm.forward(&hidden)?;
        let layers = self
            .decoder
            .iter()
            .map(|block| {
                let (_, attention) = block.cross.as_ref().expect("decoder blocks cross-attend");
                Ok(LayerCache {
                    past: None,
                    cross: attention.keys_values(&encoded)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(DecoderState { layers, length: 0 })
    }

    /// Feeds `tokens` to the decoder after the state's past and returns the next-token logits.
    pub fn decode(&self, state: &mut DecoderState, tokens: &[u32]) -> Result<Tensor> {
        self.check_ids(tokens)?;
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mut hidden = self.shared.forward(&ids)?;
        let (first, n) = (state.length, tokens.len());
        let keys = first + n;
        let mut bias = self.decoder[0].self_attention.position_bias(
            &self.config,
            first,
            n,
            keys,
            false,
            &self.device,
        )?;
        if n > 1 {
            let mask = causal_mask(first, n, &self.device)?.reshape((1, 1, n, keys))?;
            bias = Some(match bias {
                Some(b) => b.broadcast_add(&mask)?,
                None => mask,
            });
        }
        for (block, cache) in self.decoder.iter().zip(&mut state.layers) {
            let normed = block.self_norm.forward(&hidden)?;
            let (k, v) = block.self_attention.keys_values(&normed)?;
            let (k, v) = match cache.past.take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            hidden = (hidden
                + block
                    .self_attention
                    .attend(&normed, &k, &v, bias.as_ref())?)?;
            cache.past = Some((k, v));
            let (norm, attention) = block.cross.as_ref().expect("decoder blocks cross-attend");
            let (ck, cv) = &cache.cross;
            hidden = (&hidden + attention.attend(&norm.forward(&hidden)?, ck, cv, None)?)?;
            hidden = (&hidden
                + block
                    .feed_forward
                    .forward(&block.ff_norm.forward(&hidden)?)?)?;
        }
        state.length += n;
        let last = self
            .decoder_norm
            .forward(&hidden)?
            .narrow(1, n - 1, 1)?
            .squeeze(1)?;
        last.matmul(&self.lm_head.t()?)?
            .squeeze(0)?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)
    }
}
