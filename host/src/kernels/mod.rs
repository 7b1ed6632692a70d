//! CPU compute kernels for transformer encoders: matrix products against weights packed once at
//! load, fused element-wise operations (GELU, softmax, layer norm) and multi-head attention over
//! packed variable-length sequences.
//!
//! Each kernel is compiled for AVX-512, for AVX2 + FMA and as portable code; the widest the CPU
//! supports is chosen once, at first use ([`Isa::detected`]). Work is split over the rayon thread
//! pool by blocks of rows, so one matrix product is one fork-join, not one per operation.

mod attention;
mod gemm;
mod isa;
mod math;
mod microkernels;

pub use attention::{Sequence, attention, attention_causal};
pub use gemm::{PackedLinear, WeightFormat};
pub use isa::Isa;
pub use math::{
    gelu_in_place, gelu_tanh_in_place, lane_sum, layer_norm_rows, rms_norm_rows, silu_mul,
};
