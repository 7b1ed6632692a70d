//! Micro-kernels: one tile of up to `MR` rows × [`NR`] columns of a matrix product, accumulated
//! in registers over the whole depth, for AVX-512 (f32 and bf16), AVX2 + FMA, and portable code.

use super::isa::Isa;

/// Columns per packed panel: two AVX-512 registers of f32.
pub const NR: usize = 32;

/// Rows per micro-panel for `isa`: as many as its register file holds accumulators for.
pub fn kernel_rows(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 12,
        Isa::Avx2 => 6,
        Isa::Portable => 4,
    }
}

/// The shape of one micro-kernel call: `m` rows, `depth` words per row, `cols` valid columns of
/// the panel, output rows `ldc` apart, left-hand rows `lda` words apart.
#[derive(Clone, Copy)]
pub struct Tile {
    pub m: usize,
    pub depth: usize,
    pub ldc: usize,
    pub cols: usize,
    pub lda: usize,
}

/// f32 tile: `c[i][j] = bias[j] + Σ_d a[i·lda + d] · b[d·NR + j]` for `i < m`, `j < cols`.
pub fn micro_kernel_f32(isa: Isa, tile: Tile, a: &[f32], b: &[f32], c: &mut [f32], bias: &[f32]) {
    assert!(
        a.len() >= (tile.m - 1) * tile.lda + tile.depth,
        "left-hand rows too short"
    );
    check_tile(tile, b, c, bias);
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

/// bf16 tile: `c[i][j] = bias[j] + Σ_d a[i·lda + d] · b[d·NR + j]` with each word a pair of
/// bf16 whose two products are summed in f32.
pub fn micro_kernel_bf16(tile: Tile, a: &[u32], b: &[f32], c: &mut [f32], bias: &[f32]) {
    assert!(
        a.len() >= (tile.m - 1) * tile.lda + tile.depth,
        "left-hand rows too short"
    );
    check_tile(tile, b, c, bias);
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

fn check_tile(tile: Tile, b: &[f32], c: &[f32], bias: &[f32]) {
    assert!(tile.m >= 1 && b.len() == tile.depth * NR);
    assert!(bias.len() == NR && tile.cols <= NR && c.len() >= (tile.m - 1) * tile.ldc + tile.cols);
}

fn portable_f32(tile: Tile, a: &[f32], b: &[f32], c: &mut [f32], bias: &[f32]) {
    for i in 0..tile.m {
        let mut acc = [0.0f32; NR];
        acc.copy_from_slice(bias);
        for d in 0..tile.depth {
            let av = a[i * tile.lda + d];
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

    /// Writes `M` rows of accumulators (columns 0-15 in `lo`, 16-31 in `hi`) to the tile's
    /// valid columns.
    #[target_feature(enable = "avx512f")]
    unsafe fn store_rows<const M: usize>(t: Tile, c: *mut f32, lo: &[__m512; M], hi: &[__m512; M]) {
        let (mask_lo, mask_hi) = column_masks(t.cols);
        for i in 0..M {
            // SAFETY: the caller's tile covers `M` rows of `ldc` and `cols` columns.
            unsafe {
                _mm512_mask_storeu_ps(c.add(i * t.ldc), mask_lo, lo[i]);
                _mm512_mask_storeu_ps(c.add(i * t.ldc + 16), mask_hi, hi[i]);
            }
        }
    }

    pub unsafe fn avx512_f32(t: Tile, a: *const f32, b: *const f32, c: *mut f32, bias: *const f32) {
        by_rows!(t.m, avx512_f32_rows(t, a, b, c, bias); 1 2 3 4 5 6 7 8 9 10 11 12)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn avx512_f32_rows<const M: usize>(
        t: Tile,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        bias: *const f32,
    ) {
        unsafe {
            let mut lo = [_mm512_loadu_ps(bias); M];
            let mut hi = [_mm512_loadu_ps(bias.add(16)); M];
            for d in 0..t.depth {
                let b0 = _mm512_loadu_ps(b.add(d * NR));
                let b1 = _mm512_loadu_ps(b.add(d * NR + 16));
                for i in 0..M {
                    let av = _mm512_set1_ps(*a.add(i * t.lda + d));
                    lo[i] = _mm512_fmadd_ps(av, b0, lo[i]);
                    hi[i] = _mm512_fmadd_ps(av, b1, hi[i]);
                }
            }
            store_rows(t, c, &lo, &hi);
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
                        std::mem::transmute(_mm512_set1_epi32(*a.add(i * t.lda + d) as i32));
                    lo[i] = _mm512_dpbf16_ps(lo[i], av, b0);
                    hi[i] = _mm512_dpbf16_ps(hi[i], av, b1);
                }
            }
            store_rows(t, c, &lo, &hi);
        }
    }

    pub unsafe fn avx2_f32(t: Tile, a: *const f32, b: *const f32, c: *mut f32, bias: *const f32) {
        by_rows!(t.m, avx2_f32_rows(t, a, b, c, bias); 1 2 3 4 5 6)
    }

    /// The classic 6×16 AVX2 kernel, run once per half of the 32-column panel.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_f32_rows<const M: usize>(
        t: Tile,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        bias: *const f32,
    ) {
        unsafe {
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
                        let av = _mm256_set1_ps(*a.add(i * t.lda + d));
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
