//! Element-wise and row-wise math in forms the compiler vectorizes: branch-free `exp` and `erf`
//! (accurate to a few units in the last place, as PyTorch's), the exact (erf) GELU, softmax and
//! layer norm, with sums kept in 16 lanes.

use super::isa::multiversion;

/// Lanes of the partial sums: one AVX-512 register of f32.
const LANES: usize = 16;

/// The sum of `x`, accumulated in 16 lanes (vectorizable; a sequential sum is not).
#[inline(always)]
pub fn lane_sum_generic(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

multiversion! {
    /// The sum of `x`, accumulated in 16 lanes.
    pub fn lane_sum(x: &[f32]) -> f32 => lane_sum_generic
}

/// `e^x`: Cephes' polynomial after reduction by powers of two; 0 below -87.3, saturating above
/// 88.7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.336_55, 88.376_26);
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `erf(x)`: a rational approximation on [-4, 4] (±1 beyond, to f32 precision).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

#[inline(always)]
fn gelu_generic(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

multiversion! {
    /// The exact GELU, `x·Φ(x) = x/2·(1 + erf(x/√2))`, in place.
    pub fn gelu_in_place(x: &mut [f32]) => gelu_generic
}

#[inline(always)]
fn gelu_tanh_generic(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for v in x {
        // tanh(u) = 1 - 2 / (e^{2u} + 1)
        let u = SQRT_2_OVER_PI * (*v + 0.044_715 * *v * *v * *v);
        let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
        *v = 0.5 * *v * (1.0 + tanh);
    }
}

multiversion! {
    /// The tanh approximation of GELU, `x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, in place.
    pub fn gelu_tanh_in_place(x: &mut [f32]) => gelu_tanh_generic
}

/// Softmax of `scale · row`, in place.
#[inline(always)]
pub fn softmax_generic(row: &mut [f32], scale: f32) {
    for v in row.iter_mut() {
        *v *= scale;
    }
    let mut peak = [f32::MIN; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::MIN, |m, &v| m.max(v));
    for chunk in chunks {
        for (m, &v) in peak.iter_mut().zip(chunk) {
            *m = m.max(v);
        }
    }
    let peak = peak.iter().fold(tail, |m, &v| m.max(v));
    for v in row.iter_mut() {
        *v = exp(*v - peak);
    }
    let inverse_total = 1.0 / lane_sum_generic(row);
    for v in row.iter_mut() {
        *v *= inverse_total;
    }
}

#[inline(always)]
fn layer_norm_generic(rows: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    for row in rows.chunks_exact_mut(width) {
        let mean = lane_sum_generic(row) / width as f32;
        let mut squares = [0.0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail: f32 = chunks
            .remainder()
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum();
        for chunk in chunks {
            for (s, v) in squares.iter_mut().zip(chunk) {
                *s += (v - mean) * (v - mean);
            }
        }
        let variance = (squares.iter().sum::<f32>() + tail) / width as f32;
        let inv = 1.0 / (variance + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

multiversion! {
    /// Layer norm of each `width`-long row of `rows` in place: `(x - mean) / √(var + eps) · γ + β`.
    pub fn layer_norm_rows(rows: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32) => layer_norm_generic
}

#[inline(always)]
fn rms_norm_generic(rows: &mut [f32], width: usize, weight: &[f32], eps: f32) {
    for row in rows.chunks_exact_mut(width) {
        let mut squares = [0.0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        for chunk in chunks {
            for (s, v) in squares.iter_mut().zip(chunk) {
                *s += v * v;
            }
        }
        let mean = (squares.iter().sum::<f32>() + tail) / width as f32;
        let inv = 1.0 / (mean + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v * inv * w;
        }
    }
}

multiversion! {
    /// RMS norm of each `width`-long row in place: `x / √(mean(x²) + eps) · weight`.
    pub fn rms_norm_rows(rows: &mut [f32], width: usize, weight: &[f32], eps: f32) => rms_norm_generic
}

#[inline(always)]
fn silu_mul_generic(up: &mut [f32], gate: &[f32]) {
    for (u, &g) in up.iter_mut().zip(gate) {
        *u *= g / (1.0 + exp(-g));
    }
}

multiversion! {
    /// `up = silu(gate) · up` element-wise (the SwiGLU feed-forward).
    pub fn silu_mul(up: &mut [f32], gate: &[f32]) => silu_mul_generic
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_erf(x: f64) -> f64 {
        // The Maclaurin series, summed in f64 (exact enough for |x| <= 3).
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_accurate_to_f32_precision() {
        let mut worst = 0.0f64;
        for i in -3000..=3000 {
            let x = i as f32 / 1000.0;
            worst = worst.max((erf(x) as f64 - reference_erf(x as f64)).abs());
        }
        assert!(worst < 5e-7, "erf error {worst}");
        assert!((erf(10.0) - 1.0).abs() <= f32::EPSILON && erf(-10.0) == -erf(10.0));
    }

    #[test]
    fn exp_is_accurate_to_f32_precision() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let relative = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            assert!(relative < 3e-7, "exp({x}) relative error {relative}");
        }
        assert_eq!(exp(-1000.0), exp(-87.336_55));
    }

    #[test]
    fn softmax_and_layer_norm_match_their_definitions() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        let expected: Vec<f64> = {
            let e: Vec<f64> = row.iter().map(|&v| (v as f64).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        softmax_generic(&mut row, 1.0);
        for (a, b) in row.iter().zip(&expected) {
            assert!((*a as f64 - b).abs() < 1e-7);
        }
        let mut rows: Vec<f32> = (0..70).map(|i| i as f32 * 0.5 - 3.0).collect();
        let ones = vec![1.0; 35];
        let zeros = vec![0.0; 35];
        layer_norm_rows(&mut rows, 35, &ones, &zeros, 1e-12);
        for row in rows.chunks(35) {
            let mean: f32 = row.iter().sum::<f32>() / 35.0;
            let var: f32 = row.iter().map(|v| v * v).sum::<f32>() / 35.0;
            assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
        }
    }
}
