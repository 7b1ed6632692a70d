//! BERT-family sentence embeddings on candle: tokenize, pad per batch, run the encoder over
//! mmapped safetensors weights, pool over the real tokens, optionally L2-normalize.

use candle_core::{D, DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use tokenizers::{Encoding, Tokenizer};

use super::{EmbedOptions, EmbeddingModel, ModelInfo, Pooling, SentenceTransformerConfig};
use crate::error::HostError;
use crate::hub::ModelFiles;

const SUPPORTED: &str = "BERT-family encoders (config.json model_type \"bert\")";
const WEIGHTS_FILE: &str = "model.safetensors";

/// The fields of `config.json` that decide whether this backend applies.
#[derive(Deserialize)]
struct ArchitectureFields {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

/// A BERT encoder with its tokenizer and sentence-transformers head.
pub struct BertEmbedder {
    name: String,
    model: BertModel,
    tokenizer: Tokenizer,
    head: SentenceTransformerConfig,
    max_input_length: usize,
    device: Device,
}

/// Everything verification reads, shared by `inspect` and `load`.
struct Verified {
    config: BertConfig,
    tokenizer: Tokenizer,
    head: SentenceTransformerConfig,
    info: ModelInfo,
}

impl BertEmbedder {
    /// Verifies the model folder without loading weights.
    pub fn inspect(files: &ModelFiles) -> Result<ModelInfo, HostError> {
        Ok(verify(files)?.info)
    }

    /// Loads the model onto the CPU, mapping the weights file into memory.
    pub fn load(files: &ModelFiles) -> Result<Self, HostError> {
        let Verified {
            config,
            tokenizer,
            head,
            info,
        } = verify(files)?;
        let device = Device::Cpu;
        let load_failed = |e: candle_core::Error| HostError::LoadFailed {
            name: files.name.clone(),
            reason: e.to_string(),
        };
        // SAFETY: the weights file is mapped read-only; the model store never rewrites a
        // snapshot file in place (downloads land in new files and are renamed).
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[files.path(WEIGHTS_FILE)], DType::F32, &device)
        }
        .map_err(load_failed)?;
        let model = BertModel::load(vb, &config).map_err(load_failed)?;
        Ok(Self {
            name: files.name.clone(),
            model,
            tokenizer,
            head,
            max_input_length: info.max_input_length as usize,
            device,
        })
    }

    /// Token ids of each text, truncated to `limit` tokens with the closing special token kept.
    fn encode(&self, texts: &[String], limit: usize) -> candle_core::Result<Vec<Vec<u32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(candle_core::Error::wrap)?;
        Ok(encodings.iter().map(|e| truncate(e, limit)).collect())
    }

    /// Embeds one padded batch.
    fn forward(&self, batch: &[&Vec<u32>]) -> candle_core::Result<Vec<Vec<f32>>> {
        let len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for row in batch {
            ids.extend(row.iter().copied());
            ids.extend(std::iter::repeat_n(0u32, len - row.len()));
            mask.extend(std::iter::repeat_n(1u32, row.len()));
            mask.extend(std::iter::repeat_n(0u32, len - row.len()));
        }
        let shape = (batch.len(), len);
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        let pooled = pool(&hidden, &mask, self.head.pooling)?;
        let pooled = if self.head.normalize {
            l2_normalize(&pooled)?
        } else {
            pooled
        };
        pooled.to_vec2::<f32>()
    }
}

impl EmbeddingModel for BertEmbedder {
    fn embed(&self, texts: &[String], options: &EmbedOptions) -> Result<Vec<Vec<f32>>, HostError> {
        let failed = |e: candle_core::Error| HostError::InferenceFailed {
            name: self.name.clone(),
            reason: e.to_string(),
        };
        let limit = options.max_input_length.clamp(2, self.max_input_length);
        let encoded = self.encode(texts, limit).map_err(failed)?;
        // Sorting by length keeps texts of similar length together, which cuts padding.
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut vectors = vec![Vec::new(); encoded.len()];
        for chunk in order.chunks(options.batch_size.max(1)) {
            let batch: Vec<&Vec<u32>> = chunk.iter().map(|&i| &encoded[i]).collect();
            for (&i, vector) in chunk.iter().zip(self.forward(&batch).map_err(failed)?) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }
}

/// Reads and checks config, tokenizer, sentence-transformers head and weights file.
fn verify(files: &ModelFiles) -> Result<Verified, HostError> {
    let config_text = files.read_to_string("config.json")?;
    let arch: ArchitectureFields = serde_json::from_str(&config_text)
        .map_err(|e| files.invalid(format!("config.json does not parse: {e}")))?;
    let architecture = arch
        .architectures
        .first()
        .cloned()
        .or(arch.model_type.clone())
        .unwrap_or_else(|| "unknown".into());
    if arch.model_type.as_deref() != Some("bert") {
        return Err(HostError::UnsupportedArchitecture {
            name: files.name.clone(),
            architecture,
            model_type: crate::requirement::ModelType::Embedding,
            supported: SUPPORTED,
        });
    }
    let config: BertConfig = serde_json::from_str(&config_text)
        .map_err(|e| files.invalid(format!("config.json is not a valid BERT config: {e}")))?;
    let mut tokenizer = Tokenizer::from_file(files.path("tokenizer.json"))
        .map_err(|e| files.invalid(format!("tokenizer.json does not load: {e}")))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| files.invalid(format!("tokenizer.json: {e}")))?;
    if !files.path(WEIGHTS_FILE).is_file() {
        return Err(files.invalid(format!(
            "{WEIGHTS_FILE} is missing (only safetensors weights are supported)"
        )));
    }
    let head = SentenceTransformerConfig::read(files)?;
    let max_input_length = head
        .max_seq_length
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings);
    let info = ModelInfo {
        architecture,
        dimension: Some(config.hidden_size as u32),
        max_input_length: max_input_length as u32,
    };
    Ok(Verified {
        config,
        tokenizer,
        head,
        info,
    })
}

/// The ids of `encoding`, cut to `limit` tokens. When the sequence ends with a special token
/// (`[SEP]`), it stays the last token, as the tokenizer's own truncation would leave it.
fn truncate(encoding: &Encoding, limit: usize) -> Vec<u32> {
    let ids = encoding.get_ids();
    if ids.len() <= limit {
        return ids.to_vec();
    }
    let ends_special = encoding.get_special_tokens_mask().last() == Some(&1);
    let mut kept = ids[..limit].to_vec();
    if ends_special {
        kept[limit - 1] = ids[ids.len() - 1];
    }
    kept
}

/// Pools `(batch, len, hidden)` token vectors into `(batch, hidden)`, ignoring padding.
fn pool(hidden: &Tensor, mask: &Tensor, pooling: Pooling) -> candle_core::Result<Tensor> {
    match pooling {
        Pooling::Cls => hidden.i((.., 0)),
        Pooling::Mean => {
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
            summed.broadcast_div(&counts)
        }
        Pooling::Max => {
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
            // Padding positions get a large negative offset so they never win the maximum.
            let offset = ((mask - 1.0)? * 1e9)?;
            hidden.broadcast_add(&offset)?.max(1)
        }
    }
}

/// Scales each row to unit length (rows of zeros stay zero).
fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norms = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norms)
}
