//! Which vector instructions the kernels use, detected once per process.

use std::sync::OnceLock;

/// The instruction sets the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 F/BW/DQ/VL (with AVX512-BF16 for bf16 products when [`Isa::has_bf16`]).
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// Plain Rust, vectorized by the compiler for the build's baseline.
    Portable,
}

impl Isa {
    /// The widest instruction set this CPU supports. `MODELHOST_CPU_ISA=avx2|portable` narrows
    /// it (to compare kernels, or to work around a faulty CPU feature report).
    pub fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let widest = Self::widest_supported();
            let chosen = match std::env::var("MODELHOST_CPU_ISA").as_deref() {
                Ok("portable") => Isa::Portable,
                Ok("avx2") if widest != Isa::Portable => Isa::Avx2,
                _ => widest,
            };
            tracing::debug!(isa = ?chosen, "cpu kernels");
            chosen
        })
    }

    /// Whether bf16 dot products (AVX512-BF16) are available next to [`Isa::Avx512`].
    pub fn has_bf16(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 {
            return std::arch::is_x86_feature_detected!("avx512bf16");
        }
        false
    }

    fn widest_supported() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
                return Isa::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }
}

/// Defines `$vis fn $name(args) -> ret` that runs the `#[inline(always)]` function `$generic`
/// compiled for the detected [`Isa`], so plain Rust loops get vectorized with the widest
/// instructions available.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                match $crate::kernels::Isa::detected() {
                    // SAFETY: the CPU supports the enabled features (checked by `Isa::detected`).
                    $crate::kernels::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::kernels::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::kernels::Isa::Portable => {}
                }
            }
            $generic($($arg),*)
        }
    };
}

pub(crate) use multiversion;
