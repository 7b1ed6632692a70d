//! Tokenizers as every backend uses them: `tokenizer.json` loaded with its size checked, padding
//! and truncation off, and truncation done per call keeping a final special token.

use tokenizers::{Encoding, Tokenizer};

use super::bounds;
use crate::backends::{BackendError, TextEncoder};
use crate::store::ModelFiles;
use crate::types::HostError;

/// A Hugging Face tokenizer with padding off and truncation done per call (keeping a final
/// special token), used to measure and cut inputs of every model type.
pub struct TruncatingTokenizer {
    tokenizer: Tokenizer,
    max_input_length: usize,
}

impl TextEncoder for TruncatingTokenizer {
    fn encode(&self, texts: &[String], max_tokens: usize) -> Result<Vec<Vec<u32>>, HostError> {
        let limit = max_tokens.clamp(2, self.max_input_length);
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| BackendError::InvalidInput(format!("cannot tokenize: {e}")))?;
        Ok(encodings.iter().map(|e| truncate(e, limit)).collect())
    }
}

/// `tokenizer.json` with padding and truncation off (both are done per call).
pub fn load_tokenizer(files: &ModelFiles) -> Result<Tokenizer, BackendError> {
    bounds::text_file(files, "tokenizer.json")?;
    let mut tokenizer = Tokenizer::from_file(files.path("tokenizer.json"))
        .map_err(|e| files.invalid(format!("tokenizer.json does not load: {e}")))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| files.invalid(format!("tokenizer.json: {e}")))?;
    Ok(tokenizer)
}

/// A tokenizer that truncates to at most `max_input_length` tokens.
pub fn truncating_tokenizer(tokenizer: Tokenizer, max_input_length: u32) -> TruncatingTokenizer {
    TruncatingTokenizer {
        tokenizer,
        max_input_length: max_input_length as usize,
    }
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
