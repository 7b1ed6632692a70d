//! [`ComputeDevice`]: a device this host computes on, as placement, workers, backends and the
//! status name it.

use std::fmt;

/// A device a worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComputeDevice {
    /// The host CPU.
    Cpu,
    /// A CUDA GPU by ordinal.
    Cuda(u32),
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}
