//! Placement: which devices a model goes to, checked against their memory budgets before
//! anything is loaded, evicting models nobody references when that makes room.

use std::sync::Arc;

use super::ModelManager;
use crate::manager::registry::SharedModel;
use crate::types::ComputeDevice;
use crate::types::ModelKey;
use crate::types::error::mib;
use crate::types::error::{DeviceFree, FreeMemory, HostError};
use crate::types::requirement::DevicePreference;

/// The workers a model may run on.
pub(super) struct Placement {
    /// The workers, by index in the pool.
    pub workers: Vec<usize>,
    /// Why they are not the ones the requirement asked for, when no worker matches it.
    pub fallback: Option<String>,
}

impl ModelManager {
    /// The workers `weights` may run on: the matching devices where the model fits, GPUs before
    /// the CPU for `auto` (which means `worker_pool.device_preference`). Where it fits nowhere,
    /// models no id uses are evicted from the first device that can make room, least recently
    /// used first; then the next devices are tried; then the call fails with `out-of-memory`.
    /// The model's estimate is accounted on the devices it is placed on.
    pub(super) fn place(
        &self,
        weights: &Arc<SharedModel>,
        device: DevicePreference,
    ) -> Result<Placement, HostError> {
        let preference = match device {
            DevicePreference::Auto => self.pool.settings().device_preference,
            device => device,
        };
        let (matching, fallback) = self.pool.matching(preference);
        let mut classes = vec![matching];
        if preference == DevicePreference::Auto {
            let (cpu, none) = self.pool.matching(DevicePreference::Cpu);
            if none.is_none() && cpu != classes[0] {
                classes.push(cpu);
            }
        }
        let workers = self.pool.workers();
        let mut shortfalls = Vec::new();
        for class in &classes {
            let mut devices: Vec<ComputeDevice> =
                class.iter().map(|&i| workers[i].device).collect();
            devices.dedup();
            let mut fitting: Vec<ComputeDevice> = devices
                .iter()
                .copied()
                .filter(|&d| self.account(weights, d, false).is_ok())
                .collect();
            if fitting.is_empty() {
                for &device in &devices {
                    match self.account(weights, device, true) {
                        Ok(()) => {
                            fitting.push(device);
                            break;
                        }
                        Err(free) => shortfalls.push((device, free)),
                    }
                }
            }
            if !fitting.is_empty() {
                let placed = class
                    .iter()
                    .copied()
                    .filter(|&i| fitting.contains(&workers[i].device))
                    .collect();
                return Ok(Placement {
                    workers: placed,
                    fallback,
                });
            }
        }
        let free = shortfalls
            .iter()
            .map(|&(device, free)| DeviceFree {
                device: device.to_string(),
                free,
                budget: self.pool.memory(device).status().budget_bytes.unwrap_or(0),
            })
            .collect();
        Err(HostError::OutOfMemory {
            name: weights.key.name.clone(),
            needed: Some(self.needed(
                weights,
                shortfalls.first().map_or(ComputeDevice::Cpu, |s| s.0),
            )),
            free: FreeMemory::Devices(free),
        })
    }

    /// Bytes `weights` are accounted for on `device`: the weights, plus the working memory on a
    /// GPU without `allow_gpu_growth`.
    fn needed(&self, weights: &SharedModel, device: ComputeDevice) -> u64 {
        let estimate = weights.info.memory;
        let reserve_working =
            matches!(device, ComputeDevice::Cuda(_)) && !self.pool.settings().memory.gpu_growth;
        estimate.weights + if reserve_working { estimate.working } else { 0 }
    }

    /// Accounts `weights` on `device`; with `evict`, unloads models no id uses from it, least
    /// recently used first, until they fit. Returns the free bytes when they do not.
    fn account(
        &self,
        weights: &SharedModel,
        device: ComputeDevice,
        evict: bool,
    ) -> Result<(), u64> {
        let memory = self.pool.memory(device);
        let needed = self.needed(weights, device);
        loop {
            let free = match memory.try_account(&weights.key, needed) {
                Ok(()) => return Ok(()),
                Err(free) if !evict => return Err(free),
                Err(free) => free,
            };
            let others: Vec<ModelKey> = memory
                .keys()
                .into_iter()
                .filter(|k| k != &weights.key)
                .collect();
            let Some(victim) = self.registry().take_least_recently_used(&others) else {
                return Err(free);
            };
            tracing::info!(model = %victim.key.name, %device, needed = %mib(needed),
                "evicting an unreferenced model to make room");
            victim.served.close();
            memory.count_eviction();
        }
    }
}
