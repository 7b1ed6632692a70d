//! Linear layers against packed weights: `out = input · Wᵀ + bias`, with `W` (PyTorch's
//! `[outputs, inputs]` layout) packed once at load into panels of [`NR`] output columns stored
//! input-major, so the inner loop streams one panel and broadcasts one input value per row.
//!
//! Rows are split into blocks that fit the L2 cache together with a panel; blocks run in parallel
//! and each block's rows are packed into micro-panels of `MR` rows, `MR` being the most rows the
//! ISA's register file holds accumulators for. An epilogue (GELU, residual + layer norm) runs on
//! each finished block while it is still in cache.

use std::cell::RefCell;

use rayon::prelude::*;

use super::isa::Isa;

/// Output columns per packed panel: two AVX-512 registers of f32.
pub const NR: usize = 32;

/// How a layer's weights are stored and multiplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// f32 weights and products: results match PyTorch's to rounding.
    F32,
    /// bf16 weights and inputs with f32 accumulation (AVX512-BF16): twice the arithmetic rate,
    /// about three significant digits per product.
    Bf16,
}

/// A 64-byte aligned line of 16 f32, so panels start on cache lines.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A linear layer's weights and bias, packed for [`PackedLinear::forward`].
pub struct PackedLinear {
    inputs: usize,
    outputs: usize,
    format: WeightFormat,
    /// 32-bit words per panel column: `inputs` f32, or `inputs / 2` (rounded up) bf16 pairs.
    depth: usize,
    /// Panels of `depth × NR` words: f32, or pairs of bf16 for consecutive inputs.
    panels: Vec<Line>,
    bias: Vec<f32>,
}

impl PackedLinear {
    /// Packs `weight` (`outputs` rows of `inputs` values) and `bias` (`outputs` values).
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
        assert!(
            format == WeightFormat::F32 || Isa::detected().has_bf16(),
            "bf16 needs AVX512-BF16"
        );
        let depth = match format {
            WeightFormat::F32 => inputs,
            WeightFormat::Bf16 => inputs.div_ceil(2),
        };
        let panels = outputs.div_ceil(NR);
        let mut packed = vec![0u32; panels * depth * NR];
        for p in 0..panels {
            let panel = &mut packed[p * depth * NR..(p + 1) * depth * NR];
            for j in 0..NR.min(outputs - p * NR) {
                let row = &weight[(p * NR + j) * inputs..(p * NR + j + 1) * inputs];
                for d in 0..depth {
                    panel[d * NR + j] = match format {
                        WeightFormat::F32 => row[d].to_bits(),
                        WeightFormat::Bf16 => bf16_pair(row, 2 * d),
                    };
                }
            }
        }
        let mut bias = bias.to_vec();
        bias.resize(panels * NR, 0.0);
        let lines = packed
            .chunks_exact(16)
            .map(|c| Line(std::array::from_fn(|i| f32::from_bits(c[i]))))
            .collect();
        Self {
            inputs,
            outputs,
            format,
            depth,
            panels: lines,
            bias,
        }
    }

    /// Values per output row.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Computes `out = input · Wᵀ + bias` for every row of `input`, then runs `epilogue` on each
    /// block of finished output rows, with the index of the block's first row.
    pub fn forward(
        &self,
        input: &[f32],
        out: &mut [f32],
        epilogue: impl Fn(&mut [f32], usize) + Sync,
    ) {
        let rows = input.len() / self.inputs;
        assert_eq!(input.len(), rows * self.inputs, "input size");
        assert_eq!(out.len(), rows * self.outputs, "output size");
        let block = self.block_rows(rows);
        out.par_chunks_mut(block * self.outputs)
            .zip(input.par_chunks(block * self.inputs))
            .enumerate()
            .for_each(|(b, (out, input))| {
                self.block(input, out);
                epilogue(out, b * block);
            });
    }

    /// Rows per parallel block: enough blocks for every thread, each small enough that its
    /// packed rows stay in L2 (256 KiB) next to a weight panel.
    fn block_rows(&self, rows: usize) -> usize {
        let mr = kernel_rows(Isa::detected());
        let cache_fit = (256 * 1024 / (4 * self.inputs)).max(mr) / mr * mr;
        let per_thread = rows.div_ceil(rayon::current_num_threads()).div_ceil(mr) * mr;
        per_thread.clamp(mr, cache_fit.max(mr))
    }

    fn panel(&self, p: usize) -> &[f32] {
        let lines = &self.panels[p * self.depth * NR / 16..(p + 1) * self.depth * NR / 16];
        // SAFETY: `Line` is `repr(C)` around `[f32; 16]`, so the lines are contiguous f32.
        unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<f32>(), lines.len() * 16) }
    }

    /// One block of rows: pack them, then run every panel over every micro-panel.
    fn block(&self, input: &[f32], out: &mut [f32]) {
        thread_local! {
            static PACKED_ROWS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
        }
        let isa = Isa::detected();
        let mr = kernel_rows(isa);
        let rows = input.len() / self.inputs;
        PACKED_ROWS.with_borrow_mut(|packed| {
            pack_rows(input, self.inputs, mr, self.format, packed);
            for p in 0..self.outputs.div_ceil(NR) {
                let panel = self.panel(p);
                let bias = &self.bias[p * NR..(p + 1) * NR];
                let cols = NR.min(self.outputs - p * NR);
                for r0 in (0..rows).step_by(mr) {
                    let m = mr.min(rows - r0);
                    let a = &packed[r0 * self.depth..(r0 + m) * self.depth];
                    let c = &mut out[r0 * self.outputs + p * NR..];
                    let tile = Tile {
                        m,
                        depth: self.depth,
                        ldc: self.outputs,
                        cols,
                    };
                    match self.format {
                        WeightFormat::F32 => micro_kernel_f32(isa, tile, a, panel, c, bias),
                        WeightFormat::Bf16 => micro_kernel_bf16(tile, a, panel, c, bias),
                    }
                }
            }
        });
    }
}

/// Rows per micro-panel for `isa`.
fn kernel_rows(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 12,
        Isa::Avx2 => 6,
        Isa::Portable => 4,
    }
}

/// Packs `input` rows into micro-panels of `mr` rows, each stored word-major
/// (`packed[d * m + i]` for row `i` of a micro-panel of `m` rows), a word being one f32 or a pair
/// of bf16 for consecutive inputs.
fn pack_rows(input: &[f32], inputs: usize, mr: usize, format: WeightFormat, packed: &mut Vec<u32>) {
    let rows = input.len() / inputs;
    let depth = match format {
        WeightFormat::F32 => inputs,
        WeightFormat::Bf16 => inputs.div_ceil(2),
    };
    packed.clear();
    packed.resize(rows * depth, 0);
    for r0 in (0..rows).step_by(mr) {
        let m = mr.min(rows - r0);
        let dst = &mut packed[r0 * depth..(r0 + m) * depth];
        for i in 0..m {
            let row = &input[(r0 + i) * inputs..(r0 + i + 1) * inputs];
            for d in 0..depth {
                dst[d * m + i] = match format {
                    WeightFormat::F32 => row[d].to_bits(),
                    WeightFormat::Bf16 => bf16_pair(row, 2 * d),
                };
            }
        }
    }
}

/// `row[k]` and `row[k + 1]` (0 past the end) as bf16, rounded to nearest even, in one word with
/// `row[k]` in the low half.
fn bf16_pair(row: &[f32], k: usize) -> u32 {
    let bf16 = |v: f32| {
        let bits = v.to_bits();
        (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) & 0xffff
    };
    bf16(row[k]) | bf16(row.get(k + 1).copied().unwrap_or(0.0)) << 16
}

/// The shape of one micro-kernel call: `m` rows, `depth` words per row, `cols` valid columns of
/// the panel, output rows `ldc` apart.
#[derive(Clone, Copy)]
struct Tile {
    m: usize,
    depth: usize,
    ldc: usize,
    cols: usize,
}

/// f32 tile: `c[i][j] = bias[j] + Σ_d a[d·m + i] · b[d·NR + j]` for `i < m`, `j < cols`.
fn micro_kernel_f32(isa: Isa, tile: Tile, a: &[u32], b: &[f32], c: &mut [f32], bias: &[f32]) {
    check_tile(tile, a, b, c, bias);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx512` is only detected on CPUs with AVX-512F; sizes checked above.
        Isa::Avx512 => unsafe {
            x86::avx512_f32(tile, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), bias.as_ptr())
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only detected on CPUs with AVX2 and FMA; sizes checked above.
        Isa::Avx2 => unsafe {
            x86::avx2_f32(tile, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), bias.as_ptr())
        },
        _ => portable_f32(tile, a, b, c, bias),
    }
}

/// bf16 tile: as [`micro_kernel_f32`] with each word a pair of bf16 products summed in f32.
fn micro_kernel_bf16(tile: Tile, a: &[u32], b: &[f32], c: &mut [f32], bias: &[f32]) {
    check_tile(tile, a, b, c, bias);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: bf16 layers are only built when the CPU has AVX512-BF16 (see `PackedLinear::new`);
    // sizes checked above.
    unsafe {
        x86::avx512_bf16(
            tile,
            a.as_ptr(),
            b.as_ptr().cast(),
            c.as_mut_ptr(),
            bias.as_ptr(),
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("bf16 layers need AVX512-BF16")
}

fn check_tile(tile: Tile, a: &[u32], b: &[f32], c: &[f32], bias: &[f32]) {
    assert!(tile.m >= 1 && a.len() == tile.m * tile.depth && b.len() == tile.depth * NR);
    assert!(bias.len() == NR && tile.cols <= NR && c.len() >= (tile.m - 1) * tile.ldc + tile.cols);
}

fn portable_f32(tile: Tile, a: &[u32], b: &[f32], c: &mut [f32], bias: &[f32]) {
    for i in 0..tile.m {
        let mut acc = [0.0f32; NR];
        acc.copy_from_slice(bias);
        for d in 0..tile.depth {
            let av = f32::from_bits(a[d * tile.m + i]);
            for (r, &bv) in acc.iter_mut().zip(&b[d * NR..(d + 1) * NR]) {
                *r += av * bv;
            }
        }
        c[i * tile.ldc..i * tile.ldc + tile.cols].copy_from_slice(&acc[..tile.cols]);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The x86 micro-kernels, one instantiation per micro-panel height. Callers guarantee the
    //! CPU features and that the pointers cover the tile (see `check_tile`).

    use std::arch::x86_64::*;

    use super::{NR, Tile};

    macro_rules! by_rows {
        ($m:expr, $kernel:ident $args:tt; $($rows:literal)*) => {
            match $m {
                // SAFETY: forwarded from the caller's contract.
                $($rows => unsafe { $kernel::<$rows> $args },)*
                _ => unreachable!("micro-panel of {} rows", $m),
            }
        };
    }

    /// Masks of the valid lanes in the low and high 16 columns of a 32-column tile.
    fn column_masks(cols: usize) -> (__mmask16, __mmask16) {
        let bits = if cols >= 32 {
            u32::MAX
        } else {
            (1u32 << cols) - 1
        };
        (bits as u16, (bits >> 16) as u16)
    }

    pub unsafe fn avx512_f32(t: Tile, a: *const u32, b: *const f32, c: *mut f32, bias: *const f32) {
        by_rows!(t.m, avx512_f32_rows(t, a, b, c, bias); 1 2 3 4 5 6 7 8 9 10 11 12)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_f32_rows<const M: usize>(
        t: Tile,
        a: *const u32,
        b: *const f32,
        c: *mut f32,
        bias: *const f32,
    ) {
        unsafe {
            let a = a.cast::<f32>();
            let mut lo = [_mm512_loadu_ps(bias); M];
            let mut hi = [_mm512_loadu_ps(bias.add(16)); M];
            for d in 0..t.depth {
                let b0 = _mm512_loadu_ps(b.add(d * NR));
                let b1 = _mm512_loadu_ps(b.add(d * NR + 16));
                for i in 0..M {
                    let av = _mm512_set1_ps(*a.add(d * M + i));
                    lo[i] = _mm512_fmadd_ps(av, b0, lo[i]);
                    hi[i] = _mm512_fmadd_ps(av, b1, hi[i]);
                }
            }
            let (mask_lo, mask_hi) = column_masks(t.cols);
            for i in 0..M {
                _mm512_mask_storeu_ps(c.add(i * t.ldc), mask_lo, lo[i]);
                _mm512_mask_storeu_ps(c.add(i * t.ldc + 16), mask_hi, hi[i]);
            }
        }
    }

    pub unsafe fn avx512_bf16(
        t: Tile,
        a: *const u32,
        b: *const u32,
        c: *mut f32,
        bias: *const f32,
    ) {
        by_rows!(t.m, avx512_bf16_rows(t, a, b, c, bias); 1 2 3 4 5 6 7 8 9 10 11 12)
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn avx512_bf16_rows<const M: usize>(
        t: Tile,
        a: *const u32,
        b: *const u32,
        c: *mut f32,
        bias: *const f32,
    ) {
        unsafe {
            let mut lo = [_mm512_loadu_ps(bias); M];
            let mut hi = [_mm512_loadu_ps(bias.add(16)); M];
            for d in 0..t.depth {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(d * NR).cast()));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(b.add(d * NR + 16).cast()));
                for i in 0..M {
                    let av: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*a.add(d * M + i) as i32));
                    lo[i] = _mm512_dpbf16_ps(lo[i], av, b0);
                    hi[i] = _mm512_dpbf16_ps(hi[i], av, b1);
                }
            }
            let (mask_lo, mask_hi) = column_masks(t.cols);
            for i in 0..M {
                _mm512_mask_storeu_ps(c.add(i * t.ldc), mask_lo, lo[i]);
                _mm512_mask_storeu_ps(c.add(i * t.ldc + 16), mask_hi, hi[i]);
            }
        }
    }

    pub unsafe fn avx2_f32(t: Tile, a: *const u32, b: *const f32, c: *mut f32, bias: *const f32) {
        by_rows!(t.m, avx2_f32_rows(t, a, b, c, bias); 1 2 3 4 5 6)
    }

    /// The classic 6×16 AVX2 kernel, run once per half of the 32-column panel.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_f32_rows<const M: usize>(
        t: Tile,
        a: *const u32,
        b: *const f32,
        c: *mut f32,
        bias: *const f32,
    ) {
        unsafe {
            let a = a.cast::<f32>();
            for first in [0, 16] {
                if first >= t.cols {
                    break;
                }
                let b = b.add(first);
                let mut acc = [[
                    _mm256_loadu_ps(bias.add(first)),
                    _mm256_loadu_ps(bias.add(first + 8)),
                ]; M];
                for d in 0..t.depth {
                    let b0 = _mm256_loadu_ps(b.add(d * NR));
                    let b1 = _mm256_loadu_ps(b.add(d * NR + 8));
                    for (i, row) in acc.iter_mut().enumerate() {
                        let av = _mm256_set1_ps(*a.add(d * M + i));
                        row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                        row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                    }
                }
                let width = (t.cols - first).min(16);
                for (i, row) in acc.iter().enumerate() {
                    let dst = c.add(i * t.ldc + first);
                    if width == 16 {
                        _mm256_storeu_ps(dst, row[0]);
                        _mm256_storeu_ps(dst.add(8), row[1]);
                    } else {
                        let mut tmp = [0.0f32; 16];
                        _mm256_storeu_ps(tmp.as_mut_ptr(), row[0]);
                        _mm256_storeu_ps(tmp.as_mut_ptr().add(8), row[1]);
                        std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, width);
                    }
                }
            }
        }
    }
}
