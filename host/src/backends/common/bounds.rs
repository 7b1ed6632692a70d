//! Bounds on what a checkpoint declares. A checkpoint is untrusted input: every size it states
//! (widths, layers, heads, vocabulary, context, labels) is checked here before it becomes an
//! allocation, a loop bound or a divisor, with an error that names the key. The bounds are far
//! above any released model of the families the backends run.

use crate::backends::BackendError;
use crate::store::local::ModelFiles;

/// Widest hidden or per-head width.
pub const MAX_WIDTH: usize = 1 << 16;
/// Widest feed-forward layer.
pub const MAX_INTERMEDIATE: usize = 1 << 18;
/// Most layers.
pub const MAX_LAYERS: usize = 1 << 10;
/// Most attention heads.
pub const MAX_HEADS: usize = 1 << 10;
/// Largest vocabulary.
pub const MAX_VOCAB: usize = 1 << 22;
/// Most positions a model may declare (encoders' position tables).
pub const MAX_POSITIONS: usize = 1 << 20;
/// Longest context a generation model is run with: a longer declared context is capped here (its
/// rotary table and KV cache are sized by it).
pub const MAX_CONTEXT: usize = 1 << 17;
/// Longest input an encoder runs (its attention scores grow with the square of it): longer
/// inputs are truncated here whatever the model's position table allows.
pub const MAX_ENCODER_INPUT: usize = 8192;
/// Most labels a classifier may have.
pub const MAX_LABELS: usize = 1 << 16;
/// Most tensors in one weights file.
pub const MAX_TENSORS: usize = 1 << 16;
pub use crate::store::local::MAX_TEXT_FILE_BYTES;
/// Longest label of a classifier.
pub const MAX_LABEL_BYTES: usize = 256;

/// `value` of `key`, checked to be in `1..=max`.
pub fn positive(
    files: &ModelFiles,
    key: &str,
    value: usize,
    max: usize,
) -> Result<usize, BackendError> {
    match value {
        1.. if value <= max => Ok(value),
        _ => Err(files
            .invalid(format!(
                "`{key}` is {value}; it must be between 1 and {max}"
            ))
            .into()),
    }
}

/// A positive, finite epsilon or base (`key` names it).
pub fn finite_positive(files: &ModelFiles, key: &str, value: f64) -> Result<f64, BackendError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(files
            .invalid(format!("`{key}` is {value}; it must be a positive number"))
            .into())
    }
}

/// Checks the head arithmetic of an attention layer: `width` splits evenly over `heads`, and
/// `heads` over `kv_heads` (grouped-query attention).
pub fn heads(
    files: &ModelFiles,
    width: usize,
    heads: usize,
    kv_heads: usize,
) -> Result<(), BackendError> {
    if heads == 0
        || kv_heads == 0
        || !width.is_multiple_of(heads)
        || !heads.is_multiple_of(kv_heads)
    {
        return Err(files
            .invalid(format!(
                "inconsistent head counts: {heads} heads, {kv_heads} key/value heads, width {width}"
            ))
            .into());
    }
    Ok(())
}

/// The product of `dims`, or `None` on overflow.
pub fn elements(dims: impl IntoIterator<Item = u64>) -> Option<u64> {
    dims.into_iter().try_fold(1u64, u64::checked_mul)
}

/// Checks that the text file `file` of the snapshot is small enough to read into memory.
pub fn text_file(files: &ModelFiles, file: &str) -> Result<(), BackendError> {
    let size = std::fs::metadata(files.path(file)).map_or(0, |m| m.len());
    if size <= MAX_TEXT_FILE_BYTES {
        Ok(())
    } else {
        Err(files.invalid(format!(
        "{file} has {size} bytes; files read into memory may have at most {MAX_TEXT_FILE_BYTES}"
    )).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> ModelFiles {
        ModelFiles {
            name: "org/model".into(),
            revision: "0".repeat(40),
            dir: "/nonexistent".into(),
            weights_file: None,
        }
    }

    #[test]
    fn sizes_are_positive_and_bounded() {
        let f = files();
        assert_eq!(positive(&f, "hidden_size", 384, MAX_WIDTH).unwrap(), 384);
        for bad in [0, MAX_WIDTH + 1, usize::MAX] {
            let err = positive(&f, "hidden_size", bad, MAX_WIDTH).unwrap_err();
            assert!(err.to_string().contains("hidden_size"), "{err}");
        }
        assert!(finite_positive(&f, "eps", 1e-12).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(finite_positive(&f, "eps", bad).is_err());
        }
    }

    #[test]
    fn head_arithmetic_and_products_are_checked() {
        let f = files();
        assert!(heads(&f, 576, 9, 3).is_ok());
        for (width, h, kv) in [(576, 0, 3), (576, 9, 0), (577, 9, 3), (576, 9, 2)] {
            assert!(heads(&f, width, h, kv).is_err(), "{width} {h} {kv}");
        }
        assert_eq!(elements([2, 3, 4]), Some(24));
        assert_eq!(elements([u64::MAX, 2]), None);
    }
}
