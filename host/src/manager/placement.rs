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
    /// The workers `weights` may run on: the matching devices where the model fits, among those
    /// its backend can run it on (a note says so when that overrides the requirement's device),
    /// GPUs before the CPU for `auto` (which means `worker_pool.device_preference`). Where it fits nowhere,
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
        let runs_on = weights.info.runs_on;
        let (matching, fallback) = self.pool.matching(preference, &runs_on)?;
        let mut classes = vec![matching];
        if preference == DevicePreference::Auto
            && let Ok((cpu, None)) = self.pool.matching(DevicePreference::Cpu, &runs_on)
            && cpu != classes[0]
        {
            classes.push(cpu);
        }
        let workers = self.pool.workers();
        let mut shortfalls = Vec::new();
        for class in &classes {
            let mut devices: Vec<ComputeDevice> =
                class.iter().map(|&i| workers[i].device).collect();
            devices.dedup();
            let copies =
                |d: ComputeDevice| class.iter().filter(|&&i| workers[i].device == d).count();
            let mut fitting: Vec<ComputeDevice> = devices
                .iter()
                .copied()
                .filter(|&d| self.account(weights, d, copies(d), false).is_ok())
                .collect();
            if fitting.is_empty() {
                for &device in &devices {
                    match self.account(weights, device, copies(device), true) {
                        Ok(()) => {
                            fitting.push(device);
                            break;
                        }
                        Err(free) => shortfalls.push((device, free, copies(device))),
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
            .map(|&(device, free, _)| DeviceFree {
                device: device.to_string(),
                free,
                budget: self.pool.memory(device).status().budget_bytes.unwrap_or(0),
            })
            .collect();
        Err(HostError::OutOfMemory {
            name: weights.key.name.clone(),
            needed: Some(shortfalls.first().map_or(0, |&(device, _, copies)| {
                self.needed(weights, device, copies as u64)
            })),
            free: FreeMemory::Devices(free),
        })
    }

    /// Bytes `weights` are accounted for on `device`: the weights once per worker there that may
    /// load them (each worker holds its own copy), plus the working memory on a GPU without
    /// `allow_gpu_growth`.
    fn needed(&self, weights: &SharedModel, device: ComputeDevice, copies: u64) -> u64 {
        let estimate = weights.info.memory;
        let reserve_working =
            matches!(device, ComputeDevice::Cuda(_)) && !self.pool.settings().memory.gpu_growth;
        estimate.weights.saturating_mul(copies.max(1))
            + if reserve_working { estimate.working } else { 0 }
    }

    /// Accounts `weights` on `device` (`copies`: the workers there that may load them); with
    /// `evict`, unloads models no id uses from it, least recently used first, until they fit. Returns the free bytes when they do not.
    fn account(
        &self,
        weights: &SharedModel,
        device: ComputeDevice,
        copies: usize,
        evict: bool,
    ) -> Result<(), u64> {
        let memory = self.pool.memory(device);
        let needed = self.needed(weights, device, copies as u64);
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
