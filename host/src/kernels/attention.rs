//! Multi-head self-attention over packed sequences: each sequence attends to its own tokens
//! only, so a batch carries no padding and needs no mask.

use rayon::prelude::*;

use super::gemm::{PackedMatrix, Rows, WeightFormat};
use super::isa::multiversion;
use super::math::softmax_generic;

/// One sequence of a packed batch: `len` consecutive rows starting at row `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    /// Its first row.
    pub start: usize,
    /// Its number of rows (tokens).
    pub len: usize,
}

/// Scaled dot-product attention with `heads` heads. `qkv` holds one row per token of
/// `[query | key | value]` (each `hidden` wide, heads side by side); `context` receives one
/// `hidden`-wide row per token. Sequences must cover the rows in order, starting at row 0.
pub fn attention(qkv: &[f32], context: &mut [f32], sequences: &[Sequence], heads: usize) {
    let hidden = qkv.len() / 3 / sequences.iter().map(|s| s.len).sum::<usize>().max(1);
    let mut rest = context;
    let mut parts = Vec::with_capacity(sequences.len());
    for (expected_start, s) in sequences.iter().scan(0, |row, s| {
        let start = *row;
        *row += s.len;
        Some((start, s))
    }) {
        assert_eq!(s.start, expected_start, "sequences must be packed in order");
        let (part, tail) = rest.split_at_mut(s.len * hidden);
        // An empty sequence has nothing to attend to.
        if s.len > 0 {
            parts.push((
                part,
                &qkv[s.start * 3 * hidden..(s.start + s.len) * 3 * hidden],
            ));
        }
        rest = tail;
    }
    parts
        .into_par_iter()
        .for_each(|(context, qkv)| sequence_attention(qkv, context, hidden, heads));
}

#[inline(always)]
fn sequence_attention_generic(qkv: &[f32], context: &mut [f32], hidden: usize, heads: usize) {
    let len = context.len() / hidden;
    let dim = hidden / heads;
    let scale = 1.0 / (dim as f32).sqrt();
    let mut keys = PackedMatrix::new(WeightFormat::F32);
    let mut values = PackedMatrix::new(WeightFormat::F32);
    let mut weights = vec![0.0f32; len * len];
    let row = |j: usize, part: usize, h: usize| j * 3 * hidden + part * hidden + h * dim;
    for h in 0..heads {
        // weights = softmax(Q Kᵀ · scale); context = weights V.
        keys.pack_transposed(
            Rows {
                data: &qkv[row(0, 1, h)..],
                stride: 3 * hidden,
            },
            dim,
            len,
        );
        let queries = Rows {
            data: &qkv[row(0, 0, h)..],
            stride: 3 * hidden,
        };
        keys.multiply(len, queries, &mut weights, len, None);
        for logits in weights.chunks_exact_mut(len) {
            softmax_generic(logits, scale);
        }
        values.pack_rows(
            Rows {
                data: &qkv[row(0, 2, h)..],
                stride: 3 * hidden,
            },
            len,
            dim,
        );
        let weights = Rows {
            data: &weights,
            stride: len,
        };
        values.multiply(len, weights, &mut context[h * dim..], hidden, None);
    }
}

multiversion! {
    fn sequence_attention(qkv: &[f32], context: &mut [f32], hidden: usize, heads: usize) => sequence_attention_generic
}

/// Causal grouped-query attention of `n` new tokens (at positions `first..first + n`) over a KV
/// cache. `queries` holds one row per new token, `stride` apart, with `heads` heads of `dim`
/// values first; `keys` and `values` hold `first + n` rows of `kv_heads` heads; `context`
/// receives `n` rows of `heads × dim`. Heads run in parallel.
#[allow(clippy::too_many_arguments)]
pub fn attention_causal(
    queries: &[f32],
    stride: usize,
    keys: &[f32],
    values: &[f32],
    context: &mut [f32],
    heads: usize,
    kv_heads: usize,
    dim: usize,
    first: usize,
) {
    let n = context.len() / (heads * dim);
    let total = first + n;
    let kv_width = kv_heads * dim;
    let scale = 1.0 / (dim as f32).sqrt();
    let outputs: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .map(|h| {
            let g = h / (heads / kv_heads);
            let mut packed = PackedMatrix::new(WeightFormat::F32);
            packed.pack_transposed(
                Rows {
                    data: &keys[g * dim..],
                    stride: kv_width,
                },
                dim,
                total,
            );
            let mut weights = vec![0.0f32; n * total];
            let queries = Rows {
                data: &queries[h * dim..],
                stride,
            };
            packed.multiply(n, queries, &mut weights, total, None);
            for (i, row) in weights.chunks_exact_mut(total).enumerate() {
                let visible = first + i + 1;
                softmax_rows(&mut row[..visible], scale);
                row[visible..].fill(0.0);
            }
            packed.pack_rows(
                Rows {
                    data: &values[g * dim..],
                    stride: kv_width,
                },
                total,
                dim,
            );
            let mut out = vec![0.0f32; n * dim];
            packed.multiply(
                n,
                Rows {
                    data: &weights,
                    stride: total,
                },
                &mut out,
                dim,
                None,
            );
            out
        })
        .collect();
    for (h, out) in outputs.iter().enumerate() {
        for (i, values) in out.chunks_exact(dim).enumerate() {
            context[i * heads * dim + h * dim..][..dim].copy_from_slice(values);
        }
    }
}

multiversion! {
    fn softmax_rows(row: &mut [f32], scale: f32) => softmax_generic
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention computed the textbook way, in f64.
    fn reference(qkv: &[f32], len: usize, hidden: usize, heads: usize) -> Vec<f64> {
        let dim = hidden / heads;
        let at = |i: usize, part: usize, h: usize, t: usize| {
            qkv[i * 3 * hidden + part * hidden + h * dim + t] as f64
        };
        let mut out = vec![0.0; len * hidden];
        for h in 0..heads {
            for i in 0..len {
                let logits: Vec<f64> = (0..len)
                    .map(|j| {
                        (0..dim)
                            .map(|t| at(i, 0, h, t) * at(j, 1, h, t))
                            .sum::<f64>()
                            / (dim as f64).sqrt()
                    })
                    .collect();
                let peak = logits.iter().cloned().fold(f64::MIN, f64::max);
                let weights: Vec<f64> = logits.iter().map(|l| (l - peak).exp()).collect();
                let total: f64 = weights.iter().sum();
                for t in 0..dim {
                    out[i * hidden + h * dim + t] =
                        (0..len).map(|j| weights[j] / total * at(j, 2, h, t)).sum();
                }
            }
        }
        out
    }

    #[test]
    fn packed_sequences_attend_only_to_themselves() {
        let (hidden, heads) = (64, 4);
        let lens = [5, 1, 17];
        let rows: usize = lens.iter().sum();
        let qkv: Vec<f32> = (0..rows * 3 * hidden)
            .map(|i| ((i * 7919 % 211) as f32 / 211.0 - 0.5) * 3.0)
            .collect();
        let mut sequences = Vec::new();
        let mut start = 0;
        for len in lens {
            sequences.push(Sequence { start, len });
            start += len;
        }
        let mut context = vec![0.0; rows * hidden];
        attention(&qkv, &mut context, &sequences, heads);
        for s in &sequences {
            let part = &qkv[s.start * 3 * hidden..(s.start + s.len) * 3 * hidden];
            let expected = reference(part, s.len, hidden, heads);
            for (a, b) in context[s.start * hidden..(s.start + s.len) * hidden]
                .iter()
                .zip(&expected)
            {
                assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }
}
