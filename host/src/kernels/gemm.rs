//! Matrix products against a packed right-hand matrix: [`PackedMatrix`] holds `B` (`inputs ×
//! outputs`) in panels of [`NR`] output columns stored input-major, so the micro-kernel streams
//! one panel and broadcasts one left-hand value per row. [`PackedLinear`] is a linear layer on
//! top of it (`out = input · Wᵀ + bias`, `W` in PyTorch's `[outputs, inputs]` layout, packed once
//! at load), run in parallel over blocks of rows sized so a block stays in the L2 cache next to a
//! panel, with an epilogue (GELU, residual + layer norm) on each finished block while it is hot.

use std::cell::RefCell;

use rayon::prelude::*;

use super::isa::{Isa, multiversion};
use super::microkernels::{NR, Tile, kernel_rows, micro_kernel_bf16, micro_kernel_f32};

/// How a matrix is stored and multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// f32 values and products: results match PyTorch's to rounding.
    F32,
    /// bf16 values on both sides with f32 accumulation (AVX512-BF16): twice the arithmetic
    /// rate, about three significant digits per product.
    Bf16,
}

impl WeightFormat {
    /// 32-bit words per `inputs` values: one f32 each, or one pair of bf16.
    fn words(self, inputs: usize) -> usize {
        match self {
            WeightFormat::F32 => inputs,
            WeightFormat::Bf16 => inputs.div_ceil(2),
        }
    }
}

#[inline(always)]
fn bf16_words_generic(values: &[f32], words: &mut [u32]) {
    let pairs = values.chunks_exact(2);
    if let [last] = pairs.remainder() {
        words[values.len() / 2] = bf16(*last);
    }
    for (w, pair) in words.iter_mut().zip(pairs) {
        *w = bf16(pair[0]) | bf16(pair[1]) << 16;
    }
}

multiversion! {
    /// `values` as bf16, two to a word (the first in the low half; a last odd value alone).
    fn bf16_words(values: &[f32], words: &mut [u32]) => bf16_words_generic
}

/// `v` as bf16 bits, rounded to nearest even.
#[inline(always)]
fn bf16(v: f32) -> u32 {
    let bits = v.to_bits();
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) & 0xffff
}

/// A 64-byte aligned line of 16 words, so panels start on cache lines.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u32; 16]);

/// Zeros for products without a bias.
static NO_BIAS: [f32; NR] = [0.0; NR];

/// A left-hand operand in place: row `i`, column `k` at `data[i · stride + k]`.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// The values, from row 0.
    pub data: &'a [f32],
    /// Values from one row to the next.
    pub stride: usize,
}

/// A right-hand matrix `B` (`inputs × outputs`) packed for the micro-kernels.
pub struct PackedMatrix {
    inputs: usize,
    outputs: usize,
    format: WeightFormat,
    panels: Vec<Line>,
}

impl PackedMatrix {
    /// An empty matrix, to be filled by [`PackedMatrix::pack`] (and refilled, keeping its
    /// memory).
    pub fn new(format: WeightFormat) -> Self {
        Self {
            inputs: 0,
            outputs: 0,
            format,
            panels: Vec::new(),
        }
    }

    /// Packs `B[k][j] = src[j][k]` for `k < inputs`, `j < outputs`: `B` given by the rows of
    /// its transpose, as PyTorch stores linear weights (and as attention keys lie).
    pub fn pack_transposed(&mut self, src: Rows, inputs: usize, outputs: usize) {
        let depth = self.reset(inputs, outputs);
        let format = self.format;
        let words = self.words_mut();
        let mut column = vec![0u32; depth];
        for j in 0..outputs {
            let values = &src.data[j * src.stride..][..inputs];
            match format {
                WeightFormat::F32 => column
                    .iter_mut()
                    .zip(values)
                    .for_each(|(w, v)| *w = v.to_bits()),
                WeightFormat::Bf16 => bf16_words(values, &mut column),
            }
            let (panel, c) = (j / NR, j % NR);
            for (d, &word) in column.iter().enumerate() {
                words[(panel * depth + d) * NR + c] = word;
            }
        }
    }

    /// Packs `B[k][j] = src[k][j]` for `k < inputs`, `j < outputs`.
    pub fn pack_rows(&mut self, src: Rows, inputs: usize, outputs: usize) {
        let depth = self.reset(inputs, outputs);
        let format = self.format;
        let words = self.words_mut();
        for k in 0..inputs {
            let values = &src.data[k * src.stride..][..outputs];
            let (d, shift) = match format {
                WeightFormat::F32 => (k, 0),
                WeightFormat::Bf16 => (k / 2, 16 * (k % 2)),
            };
            for (panel, chunk) in values.chunks(NR).enumerate() {
                let line = &mut words[(panel * depth + d) * NR..][..chunk.len()];
                for (w, &v) in line.iter_mut().zip(chunk) {
                    *w |= match format {
                        WeightFormat::F32 => v.to_bits(),
                        WeightFormat::Bf16 => bf16(v) << shift,
                    };
                }
            }
        }
    }

    /// Sizes the panels for `inputs × outputs`, zeroed; returns the words per panel column.
    ///
    /// # Panics
    /// When bf16 is asked for on a CPU without AVX512-BF16.
    fn reset(&mut self, inputs: usize, outputs: usize) -> usize {
        assert!(
            self.format == WeightFormat::F32 || Isa::detected().has_bf16(),
            "bf16 products need AVX512-BF16"
        );
        let depth = self.format.words(inputs);
        self.panels.clear();
        self.panels
            .resize(outputs.div_ceil(NR) * depth * NR / 16, Line([0; 16]));
        self.inputs = inputs;
        self.outputs = outputs;
        depth
    }

    fn words_mut(&mut self) -> &mut [u32] {
        let len = self.panels.len() * 16;
        // SAFETY: `Line` is `repr(C)` around `[u32; 16]`, so the lines are contiguous words.
        unsafe { std::slice::from_raw_parts_mut(self.panels.as_mut_ptr().cast::<u32>(), len) }
    }

    /// Columns of `B`.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    fn panel(&self, p: usize) -> &[f32] {
        let depth = self.format.words(self.inputs);
        let lines = &self.panels[p * depth * NR / 16..(p + 1) * depth * NR / 16];
        // SAFETY: `Line` is `repr(C)` around `[u32; 16]`, so the lines are contiguous 32-bit
        // words; the micro-kernels read them as f32 or bf16 pairs by format.
        unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<f32>(), lines.len() * 16) }
    }

    /// `out[i·ldc + j] = bias[j] + Σₖ a[i][k] · B[k][j]` for `i < rows`, `j < outputs`, on this
    /// thread. `bias`, when given, holds one value per column rounded up to whole panels.
    pub fn multiply(
        &self,
        rows: usize,
        a: Rows,
        out: &mut [f32],
        ldc: usize,
        bias: Option<&[f32]>,
    ) {
        let panels = 0..self.outputs.div_ceil(NR);
        self.multiply_with(Isa::detected(), rows, a, out, ldc, bias, panels);
    }

    /// [`PackedMatrix::multiply`] for the columns of `panels` only, written from column 0 of
    /// `out`.
    #[allow(clippy::too_many_arguments)]
    fn multiply_with(
        &self,
        isa: Isa,
        rows: usize,
        a: Rows,
        out: &mut [f32],
        ldc: usize,
        bias: Option<&[f32]>,
        panels: std::ops::Range<usize>,
    ) {
        thread_local! {
            static PACKED_ROWS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
        }
        if rows == 0 || self.outputs == 0 {
            return;
        }
        let width = (panels.end * NR).min(self.outputs) - panels.start * NR;
        assert!(out.len() >= (rows - 1) * ldc + width, "output too small");
        assert!(
            a.data.len() >= (rows - 1) * a.stride + self.inputs,
            "left-hand rows too short"
        );
        let mr = kernel_rows(isa);
        let depth = self.format.words(self.inputs);
        PACKED_ROWS.with_borrow_mut(|packed| {
            if self.format == WeightFormat::Bf16 {
                packed.clear();
                packed.resize(rows * depth, 0);
                for (i, words) in packed.chunks_exact_mut(depth).enumerate() {
                    bf16_words(&a.data[i * a.stride..][..self.inputs], words);
                }
            }
            for p in panels.clone() {
                let panel = self.panel(p);
                let bias = bias.map_or(&NO_BIAS[..], |b| &b[p * NR..(p + 1) * NR]);
                let cols = NR.min(self.outputs - p * NR);
                for r0 in (0..rows).step_by(mr) {
                    let m = mr.min(rows - r0);
                    let c = &mut out[r0 * ldc + (p - panels.start) * NR..];
                    match self.format {
                        WeightFormat::F32 => {
                            let tile = Tile {
                                m,
                                depth,
                                ldc,
                                cols,
                                lda: a.stride,
                            };
                            micro_kernel_f32(isa, tile, &a.data[r0 * a.stride..], panel, c, bias)
                        }
                        WeightFormat::Bf16 => {
                            let tile = Tile {
                                m,
                                depth,
                                ldc,
                                cols,
                                lda: depth,
                            };
                            micro_kernel_bf16(tile, &packed[r0 * depth..], panel, c, bias)
                        }
                    }
                }
            }
        });
    }
}

/// A linear layer's weights and bias, packed for [`PackedLinear::forward`].
pub struct PackedLinear {
    inputs: usize,
    weights: PackedMatrix,
    bias: Vec<f32>,
}

impl PackedLinear {
    /// Packs `weight` (`outputs` rows of `inputs` values, as PyTorch stores it) and `bias`
    /// (`outputs` values).
    ///
    /// # Panics
    /// When the slice lengths do not match the sizes, or bf16 is asked for on a CPU without
    /// AVX512-BF16.
    pub fn new(
        weight: &[f32],
        bias: &[f32],
        inputs: usize,
        outputs: usize,
        format: WeightFormat,
    ) -> Self {
        assert_eq!(weight.len(), inputs * outputs, "weight size");
        assert_eq!(bias.len(), outputs, "bias size");
        let mut weights = PackedMatrix::new(format);
        weights.pack_transposed(
            Rows {
                data: weight,
                stride: inputs,
            },
            inputs,
            outputs,
        );
        let mut bias = bias.to_vec();
        bias.resize(outputs.div_ceil(NR) * NR, 0.0);
        Self {
            inputs,
            weights,
            bias,
        }
    }

    /// Values per output row.
    pub fn outputs(&self) -> usize {
        self.weights.outputs()
    }

    /// Computes `out = input · Wᵀ + bias` for every row of `input`, then runs `epilogue` on each
    /// block of finished output rows, with the index of the block's first row.
    pub fn forward(
        &self,
        input: &[f32],
        out: &mut [f32],
        epilogue: impl Fn(&mut [f32], usize) + Sync,
    ) {
        let (inputs, outputs) = (self.inputs, self.outputs());
        let rows = input.len() / inputs;
        assert_eq!(input.len(), rows * inputs, "input size");
        assert_eq!(out.len(), rows * outputs, "output size");
        let mr = kernel_rows(Isa::detected());
        if rows <= mr {
            self.forward_by_columns(input, out);
            return epilogue(out, 0);
        }
        let block = self.block_rows(rows);
        out.par_chunks_mut(block * outputs)
            .zip(input.par_chunks(block * inputs))
            .enumerate()
            .for_each(|(b, (out, input))| {
                let rows = input.len() / inputs;
                let input = Rows {
                    data: input,
                    stride: inputs,
                };
                self.weights
                    .multiply(rows, input, out, outputs, Some(&self.bias));
                epilogue(out, b * block);
            });
    }

    /// A product of a few rows (as when decoding one token), split by column panels so every
    /// thread streams a share of the weights.
    fn forward_by_columns(&self, input: &[f32], out: &mut [f32]) {
        let (inputs, outputs) = (self.inputs, self.outputs());
        let rows = input.len() / inputs;
        let panels = outputs.div_ceil(NR);
        let per_task = panels.div_ceil(4 * rayon::current_num_threads()).max(1);
        let isa = Isa::detected();
        let parts: Vec<(usize, usize, Vec<f32>)> = (0..panels.div_ceil(per_task))
            .into_par_iter()
            .map(|task| {
                let range = task * per_task..((task + 1) * per_task).min(panels);
                let first = range.start * NR;
                let width = (range.end * NR).min(outputs) - first;
                let mut part = vec![0.0; rows * width];
                let a = Rows {
                    data: input,
                    stride: inputs,
                };
                self.weights
                    .multiply_with(isa, rows, a, &mut part, width, Some(&self.bias), range);
                (first, width, part)
            })
            .collect();
        for (first, width, part) in parts {
            for (row, values) in part.chunks_exact(width).enumerate() {
                out[row * outputs + first..row * outputs + first + width].copy_from_slice(values);
            }
        }
    }

    /// Rows per parallel block: enough blocks for every thread, each small enough that its
    /// packed rows stay in L2 (256 KiB) next to a weight panel.
    fn block_rows(&self, rows: usize) -> usize {
        let mr = kernel_rows(Isa::detected());
        let cache_fit = (256 * 1024 / (4 * self.inputs)).max(mr) / mr * mr;
        let per_thread = rows.div_ceil(rayon::current_num_threads()).div_ceil(mr) * mr;
        per_thread.clamp(mr, cache_fit.max(mr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in [-1, 1) that are not round numbers.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0)
            .collect()
    }

    /// Every ISA this CPU runs, widest first.
    fn runnable() -> Vec<Isa> {
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                isas.insert(0, Isa::Avx2);
            }
            if Isa::detected() == Isa::Avx512 {
                isas.insert(0, Isa::Avx512);
            }
        }
        isas
    }

    /// Checks `a · Bᵀ + bias` on ragged sizes (partial micro-panels and panels, odd depth)
    /// against f64 sums, with a tolerance relative to the sum of magnitudes.
    fn check(format: WeightFormat, tolerance: f64) {
        for (rows, inputs, outputs) in [(1, 1, 1), (13, 7, 33), (25, 64, 96), (7, 385, 50)] {
            let (a, w, bias) = (
                values(rows * inputs, 1),
                values(outputs * inputs, 2),
                values(outputs, 3),
            );
            let mut packed = PackedMatrix::new(format);
            packed.pack_transposed(
                Rows {
                    data: &w,
                    stride: inputs,
                },
                inputs,
                outputs,
            );
            let mut padded_bias = bias.clone();
            padded_bias.resize(outputs.div_ceil(NR) * NR, 0.0);
            for isa in runnable() {
                let ldc = outputs + 3;
                let mut out = vec![f32::NAN; rows * ldc];
                let all = 0..outputs.div_ceil(NR);
                let rows_of_a = Rows {
                    data: &a,
                    stride: inputs,
                };
                packed.multiply_with(isa, rows, rows_of_a, &mut out, ldc, Some(&padded_bias), all);
                for i in 0..rows {
                    for j in 0..outputs {
                        let terms = (0..inputs)
                            .map(|k| a[i * inputs + k] as f64 * w[j * inputs + k] as f64);
                        let magnitude: f64 = terms.clone().map(f64::abs).sum::<f64>() + 1.0;
                        let expected = bias[j] as f64 + terms.sum::<f64>();
                        let got = out[i * ldc + j] as f64;
                        assert!(
                            (got - expected).abs() <= tolerance * magnitude,
                            "{isa:?} {format:?} {rows}x{inputs}x{outputs} [{i}][{j}]: {got} vs {expected}"
                        );
                    }
                    assert!(
                        out[i * ldc + outputs..(i + 1) * ldc]
                            .iter()
                            .all(|v| v.is_nan()),
                        "wrote past the columns"
                    );
                }
            }
        }
    }

    #[test]
    fn f32_products_match_f64_sums_on_every_isa() {
        check(WeightFormat::F32, 1e-6);
    }

    #[test]
    fn bf16_products_are_within_bf16_rounding() {
        if Isa::detected().has_bf16() {
            check(WeightFormat::Bf16, 1e-2);
        } else {
            // Said, not silent: on this CPU `fast` runs f32, so there is nothing to compare.
            eprintln!("skipped: this CPU has no AVX512-BF16; bf16 weights are not used here");
        }
    }

    #[test]
    fn linear_layer_blocks_rows_and_runs_the_epilogue_once_per_row() {
        let (rows, inputs, outputs) = (100, 48, 40);
        let (input, weight, bias) = (
            values(rows * inputs, 4),
            values(outputs * inputs, 5),
            values(outputs, 6),
        );
        let layer = PackedLinear::new(&weight, &bias, inputs, outputs, WeightFormat::F32);
        let mut out = vec![0.0; rows * outputs];
        let seen = std::sync::Mutex::new(vec![0; rows]);
        layer.forward(&input, &mut out, |block, first| {
            let mut seen = seen.lock().unwrap();
            (first..first + block.len() / outputs).for_each(|r| seen[r] += 1);
        });
        assert!(seen.into_inner().unwrap().iter().all(|&n| n == 1));
        let expected: f32 = bias[7]
            + (0..inputs)
                .map(|k| input[99 * inputs + k] * weight[7 * inputs + k])
                .sum::<f32>();
        assert!((out[99 * outputs + 7] - expected).abs() < 1e-5);
    }
}
