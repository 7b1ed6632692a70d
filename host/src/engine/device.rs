//! Compute devices: what a worker runs on, how the configured device list (`"auto"`, `"cpu"`,
//! `"cuda"`, `"cuda:N"`, parsed as [`DevicePreference`]s) expands on this machine, and the
//! inventory that says which GPUs exist.
//!
//! GPU detection sits behind [`DeviceInventory`] so tests can simulate a machine with GPUs.

use crate::types::ComputeDevice;
use crate::types::requirement::DevicePreference;

/// Which GPUs this machine has, and how much memory each device has.
pub trait DeviceInventory: Send + Sync {
    /// The ordinals of the usable CUDA devices.
    fn cuda_devices(&self) -> Vec<u32>;

    /// The total memory of `device` in bytes (system RAM for the CPU), when known.
    fn memory_bytes(&self, device: ComputeDevice) -> Option<u64>;
}

/// The real machine: CUDA devices when built with the `cuda` feature, none otherwise.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemDevices;

impl DeviceInventory for SystemDevices {
    fn cuda_devices(&self) -> Vec<u32> {
        (0..cuda::device_count()).collect()
    }

    /// RAM from `/proc/meminfo`; a GPU's memory from its driver.
    fn memory_bytes(&self, device: ComputeDevice) -> Option<u64> {
        match device {
            ComputeDevice::Cpu => {
                let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
                let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            }
            ComputeDevice::Cuda(n) => cuda::memory(n).map(|(_, total)| total),
        }
    }
}

/// Bytes in use on `device` now, as its driver reports them (every process's allocations
/// together); `None` for the CPU, whose allocations are measured otherwise.
pub fn used_bytes(device: ComputeDevice) -> Option<u64> {
    match device {
        ComputeDevice::Cpu => None,
        ComputeDevice::Cuda(n) => cuda::memory(n).map(|(free, total)| total.saturating_sub(free)),
    }
}

/// The CUDA driver, through cudarc (as candle links it).
#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda_backend::cudarc::driver::CudaContext;

    /// Usable CUDA devices (none when the driver is missing or fails).
    pub fn device_count() -> u32 {
        CudaContext::device_count().map_or(0, |n| n.max(0) as u32)
    }

    /// Free and total bytes of GPU `ordinal`.
    pub fn memory(ordinal: u32) -> Option<(u64, u64)> {
        let context = CudaContext::new(ordinal as usize).ok()?;
        let (free, total) = context.mem_get_info().ok()?;
        Some((free as u64, total as u64))
    }
}

/// Without the `cuda` feature there is no GPU.
#[cfg(not(feature = "cuda"))]
mod cuda {
    /// Usable CUDA devices: none in this build.
    pub fn device_count() -> u32 {
        0
    }

    /// Free and total bytes of a GPU: unknown in this build.
    pub fn memory(_: u32) -> Option<(u64, u64)> {
        None
    }
}

/// The devices a configured list stands for on this machine, in order and without repeats,
/// plus notes on what was substituted (for the log and the status).
pub fn expand(
    specs: &[DevicePreference],
    inventory: &dyn DeviceInventory,
) -> Result<(Vec<ComputeDevice>, Vec<String>), String> {
    let gpus = inventory.cuda_devices();
    let mut devices = Vec::new();
    let mut notes = Vec::new();
    let push = |d: ComputeDevice, devices: &mut Vec<ComputeDevice>| {
        if !devices.contains(&d) {
            devices.push(d);
        }
    };
    for spec in specs {
        match spec {
            DevicePreference::Cpu => push(ComputeDevice::Cpu, &mut devices),
            DevicePreference::Auto if gpus.is_empty() => {
                notes.push("\"auto\" found no GPU; using the cpu".to_string());
                push(ComputeDevice::Cpu, &mut devices);
            }
            DevicePreference::Auto | DevicePreference::Cuda => {
                if gpus.is_empty() {
                    return Err("\"cuda\" is listed but this machine has no usable GPU \
                                (or modelhost was built without the `cuda` feature)"
                        .into());
                }
                for &n in &gpus {
                    push(ComputeDevice::Cuda(n), &mut devices);
                }
            }
            DevicePreference::CudaOrdinal(n) => {
                if !gpus.contains(n) {
                    return Err(format!(
                        "\"cuda:{n}\" is listed but this machine's usable GPUs are {gpus:?} \
                         (built with the `cuda` feature: {})",
                        cfg!(feature = "cuda")
                    ));
                }
                push(ComputeDevice::Cuda(*n), &mut devices);
            }
        }
    }
    if devices.is_empty() {
        return Err("the device list is empty".into());
    }
    Ok((devices, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Gpus(Vec<u32>);

    impl DeviceInventory for Gpus {
        fn cuda_devices(&self) -> Vec<u32> {
            self.0.clone()
        }

        fn memory_bytes(&self, _: ComputeDevice) -> Option<u64> {
            None
        }
    }

    #[test]
    fn the_machine_reports_its_ram() {
        let ram = SystemDevices.memory_bytes(ComputeDevice::Cpu).unwrap();
        assert!(ram > 256 << 20, "{ram}");
    }

    fn specs(list: &[&str]) -> Vec<DevicePreference> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn auto_expands_to_every_gpu_or_falls_back_to_the_cpu() {
        let (devices, notes) = expand(&specs(&["auto", "cpu"]), &Gpus(vec![0, 1])).unwrap();
        assert_eq!(
            devices,
            [
                ComputeDevice::Cuda(0),
                ComputeDevice::Cuda(1),
                ComputeDevice::Cpu
            ]
        );
        assert!(notes.is_empty());
        let (devices, notes) = expand(&specs(&["auto", "cpu"]), &Gpus(vec![])).unwrap();
        assert_eq!(devices, [ComputeDevice::Cpu]);
        assert!(notes[0].contains("no GPU"));
    }

    #[test]
    fn explicit_devices_must_exist() {
        let (devices, _) = expand(&specs(&["cuda:1", "cpu"]), &Gpus(vec![0, 1])).unwrap();
        assert_eq!(devices, [ComputeDevice::Cuda(1), ComputeDevice::Cpu]);
        assert!(
            expand(&specs(&["cuda:2"]), &Gpus(vec![0, 1]))
                .unwrap_err()
                .contains("cuda:2")
        );
        assert!(expand(&specs(&["cuda"]), &Gpus(vec![])).is_err());
        assert!(
            "tpu"
                .parse::<DevicePreference>()
                .unwrap_err()
                .message()
                .contains("unknown device 'tpu'")
        );
    }
}
