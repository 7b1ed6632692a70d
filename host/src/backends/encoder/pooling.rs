//! The sentence-transformers description of an embedding model: which pooling, whether vectors
//! are L2-normalized, and the longest input. Read from `modules.json`, the pooling module's
//! `config.json` and `sentence_bert_config.json` in the model folder.

use serde::Deserialize;

use crate::backends::BackendError;
use crate::store::local::ModelFiles;

const POOLING_MODULE: &str = "sentence_transformers.models.Pooling";
const NORMALIZE_MODULE: &str = "sentence_transformers.models.Normalize";
const TRANSFORMER_MODULE: &str = "sentence_transformers.models.Transformer";

/// How token vectors become one text vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the real (unpadded) tokens.
    Mean,
    /// The first token (`[CLS]`).
    Cls,
    /// Element-wise maximum over the real tokens.
    Max,
}

/// What sentence-transformers adds on top of the transformer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentenceTransformerConfig {
    /// The pooling.
    pub pooling: Pooling,
    /// Whether vectors are L2-normalized.
    pub normalize: bool,
    /// `max_seq_length`, when the model folder sets one.
    pub max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

impl SentenceTransformerConfig {
    /// Reads the model folder. A folder without `modules.json` (a plain transformer) gets mean
    /// pooling without normalization, the sentence-transformers default for such models.
    pub fn read(files: &ModelFiles) -> Result<Self, BackendError> {
        let max_seq_length = if files.path("sentence_bert_config.json").is_file() {
            parse::<SentenceBertConfig>(files, "sentence_bert_config.json")?.max_seq_length
        } else {
            None
        };
        if !files.path("modules.json").is_file() {
            return Ok(Self {
                pooling: Pooling::Mean,
                normalize: false,
                max_seq_length,
            });
        }
        let modules: Vec<ModuleEntry> = parse(files, "modules.json")?;
        let mut pooling = None;
        let mut normalize = false;
        for module in &modules {
            match module.kind.as_str() {
                TRANSFORMER_MODULE => {}
                POOLING_MODULE => {
                    let file = format!("{}/config.json", module.path.trim_end_matches('/'));
                    pooling = Some(pooling_mode(files, &parse(files, &file)?)?);
                }
                NORMALIZE_MODULE => normalize = true,
                other => {
                    return Err(files
                        .invalid(format!(
                            "modules.json lists '{other}', which this host does not implement \
                         (supported: Transformer, Pooling, Normalize)"
                        ))
                        .into());
                }
            }
        }
        Ok(Self {
            pooling: pooling.unwrap_or(Pooling::Mean),
            normalize,
            max_seq_length,
        })
    }
}

impl SentenceTransformerConfig {
    /// A short description of the head, e.g. `mean,normalized`.
    pub fn describe(&self) -> String {
        let pooling = match self.pooling {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
        };
        if self.normalize {
            format!("{pooling},normalized")
        } else {
            pooling.to_string()
        }
    }
}

fn pooling_mode(files: &ModelFiles, config: &PoolingConfig) -> Result<Pooling, BackendError> {
    let unsupported = config.pooling_mode_mean_sqrt_len_tokens
        || config.pooling_mode_weightedmean_tokens
        || config.pooling_mode_lasttoken;
    match (
        config.pooling_mode_mean_tokens,
        config.pooling_mode_cls_token,
        config.pooling_mode_max_tokens,
        unsupported,
    ) {
        (true, false, false, false) => Ok(Pooling::Mean),
        (false, true, false, false) => Ok(Pooling::Cls),
        (false, false, true, false) => Ok(Pooling::Max),
        _ => Err(files
            .invalid("the pooling config must enable exactly one of mean, cls or max pooling")
            .into()),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    files: &ModelFiles,
    file: &str,
) -> Result<T, BackendError> {
    serde_json::from_str(&files.read_to_string(file)?)
        .map_err(|e| files.invalid(format!("{file} does not parse: {e}")).into())
}
