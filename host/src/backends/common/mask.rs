//! The causal attention mask the decoders share (Llama, T5's decoder).

use candle_core::{Device, Tensor};

/// The additive causal mask of `n` tokens at positions `first..` over `first + n` keys: 0 where
/// a key is visible (at or before the token), −∞ after it. `[n, first + n]`.
pub fn causal_mask(first: usize, n: usize, device: &Device) -> candle_core::Result<Tensor> {
    let total = first + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > first + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (n, total), device)
}
