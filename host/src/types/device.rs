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

/// The kinds of device a backend can run a model on, as it reports when it inspects the model;
/// placement puts the model only on workers whose device is among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceSupport {
    /// The host CPU.
    pub cpu: bool,
    /// CUDA GPUs.
    pub cuda: bool,
}

impl DeviceSupport {
    /// The CPU only.
    pub const CPU: Self = Self {
        cpu: true,
        cuda: false,
    };

    /// The CPU and CUDA GPUs.
    pub const CPU_AND_CUDA: Self = Self {
        cpu: true,
        cuda: true,
    };

    /// Whether a model with this support can run on `device`.
    pub fn runs(&self, device: ComputeDevice) -> bool {
        match device {
            ComputeDevice::Cpu => self.cpu,
            ComputeDevice::Cuda(_) => self.cuda,
        }
    }
}

impl fmt::Display for DeviceSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.cpu, self.cuda) {
            (true, true) => "cpu and cuda",
            (true, false) => "cpu only",
            (false, true) => "cuda only",
            (false, false) => "no device",
        })
    }
}
