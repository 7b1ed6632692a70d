//! The worker pool: workers on the configured devices, which workers may serve a model
//! (placement), which worker runs the next batch (load balancing), and the batching queue of each
//! served model.
//!
//! Each worker runs at most one batch at a time; everything else waits in the model's queue,
//! where concurrent requests (from one module or many) are merged into batches.

mod generate;
mod served;
mod worker;

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::backends::ModelBackend;
use crate::engine::device::{self, DeviceInventory};
use crate::engine::memory::{DeviceMemory, WorkingMemory};
use crate::types::ModelKey;
use crate::types::error::HostError;
use crate::types::error::mib;
use crate::types::requirement::DevicePreference;
use crate::types::results::{WorkerPoolStatus, WorkerStatus};
use crate::types::{ComputeDevice, DeviceSupport};

pub use generate::{GenerationStream, StreamEvent};
pub use served::{Placement, ServedModel};
pub use worker::Worker;

/// How the next batch picks among the workers holding a model; configured as `"round_robin"` or
/// `"least_busy"` (`worker_pool.load_balancing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    /// Each holder in turn.
    RoundRobin,
    /// The holder with the fewest batches in progress (the first on ties).
    LeastBusy,
}

/// The pool's settings (the `[worker_pool]` section of the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    /// When false: one CPU worker, and requests are not merged with each other.
    pub enabled: bool,
    /// Workers to start, spread over the devices in turn; 0 means one per device.
    pub num_workers: usize,
    /// The configured device list.
    pub devices: Vec<DevicePreference>,
    /// Texts per batch when a requirement sets no `batch_size`.
    pub batch_size: usize,
    /// Longest a request may wait in a queue before it starts.
    pub queue_timeout: Duration,
    /// How batches are spread over the workers holding a model.
    pub load_balancing: LoadBalancing,
    /// Most tokens in one batch, padding included.
    pub max_batch_tokens: usize,
    /// Most requests waiting in one model's queue; more are refused as `overloaded`.
    pub max_queue_length: usize,
    /// Device memory budgets.
    pub memory: MemorySettings,
    /// Where models go whose requirement says `auto`.
    pub device_preference: DevicePreference,
}

/// How much of each device's memory models may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemorySettings {
    /// Share of each GPU's memory.
    pub gpu_fraction: f64,
    /// Share of the system's RAM, for the CPU workers together.
    pub cpu_fraction: f64,
    /// When false, a model's working memory is accounted on a GPU with its weights, at placement;
    /// when true only its weights are (the working memory grows as batches run).
    pub gpu_growth: bool,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            gpu_fraction: 0.8,
            cpu_fraction: 0.8,
            gpu_growth: true,
        }
    }
}

/// The workers and how work is spread over them.
pub struct WorkerPool {
    workers: Vec<Worker>,
    memory: Vec<Arc<DeviceMemory>>,
    settings: PoolSettings,
    notes: Vec<String>,
    freed: Notify,
}

impl WorkerPool {
    /// Starts the workers for `settings` on the devices `inventory` reports.
    pub fn start(
        settings: PoolSettings,
        inventory: &dyn DeviceInventory,
        backend: Arc<dyn ModelBackend>,
    ) -> Result<Arc<Self>, String> {
        let (devices, notes) = if settings.enabled {
            device::expand(&settings.devices, inventory)?
        } else {
            (
                vec![ComputeDevice::Cpu],
                vec!["worker pool disabled: one cpu worker".into()],
            )
        };
        let count = match (settings.enabled, settings.num_workers) {
            (false, _) => 1,
            (true, 0) => devices.len(),
            (true, n) => n,
        };
        let workers: Vec<Worker> = (0..count)
            .map(|i| {
                let device = devices[i % devices.len()];
                let id = format!("{device}-{}", i / devices.len());
                Worker::spawn(id, device, backend.clone())
                    .map_err(|e| format!("cannot start a worker thread: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let mut memory: Vec<Arc<DeviceMemory>> = Vec::new();
        for worker in &workers {
            if memory.iter().all(|m| m.device != worker.device) {
                let fraction = match worker.device {
                    ComputeDevice::Cpu => settings.memory.cpu_fraction,
                    ComputeDevice::Cuda(_) => settings.memory.gpu_fraction,
                };
                let budget = inventory
                    .memory_bytes(worker.device)
                    .map(|total| (total as f64 * fraction) as u64);
                tracing::info!(device = %worker.device, budget = ?budget.map(mib), "device memory budget");
                memory.push(Arc::new(DeviceMemory::new(worker.device, budget)));
            }
        }
        for note in &notes {
            tracing::warn!("{note}");
        }
        tracing::info!(workers = ?workers.iter().map(|w| &w.id).collect::<Vec<_>>(), "worker pool started");
        Ok(Arc::new(Self {
            workers,
            memory,
            settings,
            notes,
            freed: Notify::new(),
        }))
    }

    /// The pool's settings.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// The workers.
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    /// The workers that match a device preference among those whose device `runs_on` accepts
    /// (what the model's backend can run it on), with a note when they are not the ones asked
    /// for: when no worker on the preferred devices can run the model, every worker that can is
    /// used. Fails when no worker can run it at all.
    pub fn matching(
        &self,
        preference: DevicePreference,
        runs_on: &DeviceSupport,
    ) -> Result<(Vec<usize>, Option<String>), HostError> {
        let on = |pred: &dyn Fn(ComputeDevice) -> bool| -> Vec<usize> {
            (0..self.workers.len())
                .filter(|&i| pred(self.workers[i].device))
                .collect()
        };
        let capable = on(&|d| runs_on.runs(d));
        if capable.is_empty() {
            let devices: Vec<String> = self.devices().iter().map(|d| d.to_string()).collect();
            return Err(HostError::DeviceUnavailable(format!(
                "the model runs on {runs_on}, and this host's workers are on {} (add such a device \
                 to worker_pool.devices)",
                devices.join(", ")
            )));
        }
        let gpu = |d: ComputeDevice| matches!(d, ComputeDevice::Cuda(_));
        let wanted = |d: ComputeDevice| match preference {
            DevicePreference::Auto => gpu(d),
            DevicePreference::Cpu => d == ComputeDevice::Cpu,
            DevicePreference::Cuda => gpu(d),
            DevicePreference::CudaOrdinal(n) => d == ComputeDevice::Cuda(n),
        };
        let matching = on(&|d| wanted(d) && runs_on.runs(d));
        if !matching.is_empty() {
            return Ok((matching, None));
        }
        let note = if preference == DevicePreference::Auto {
            // `auto` means the GPUs the model can run on, else the CPU: a note only where the
            // host has GPUs the model cannot use.
            (!on(&gpu).is_empty()).then(|| {
                format!("auto: the model runs on {runs_on}, not on this host's GPUs; using the cpu")
            })
        } else if on(&wanted).is_empty() {
            Some(format!("no worker on {preference}; using any worker"))
        } else {
            Some(format!(
                "the model cannot run on {preference} (it runs on {runs_on}); using the workers \
                 that can"
            ))
        };
        Ok((capable, note))
    }

    /// The devices with workers, in worker order, without repeats.
    fn devices(&self) -> Vec<ComputeDevice> {
        let mut devices: Vec<ComputeDevice> = Vec::new();
        for worker in &self.workers {
            if !devices.contains(&worker.device) {
                devices.push(worker.device);
            }
        }
        devices
    }

    /// Waits until one of `served`'s holders can take a batch and reserves it. Returns `None`
    /// when the model was closed meanwhile.
    async fn acquire(self: &Arc<Self>, served: &ServedModel) -> Option<WorkerPermit> {
        loop {
            let mut freed = pin!(self.freed.notified());
            freed.as_mut().enable();
            if served.is_closed() {
                return None;
            }
            if let Some(index) = served.pick_worker(self) {
                self.workers[index].begin();
                return Some(WorkerPermit {
                    pool: self.clone(),
                    index,
                });
            }
            freed.await;
        }
    }

    /// The index of the least busy worker among `candidates` (the first on ties).
    fn least_busy(&self, candidates: impl Iterator<Item = usize>) -> Option<usize> {
        candidates.min_by_key(|&i| (self.workers[i].busy(), i))
    }

    /// The memory account of `device`.
    pub fn memory(&self, device: ComputeDevice) -> &Arc<DeviceMemory> {
        self.memory
            .iter()
            .find(|m| m.device == device)
            .expect("every worker's device has a memory account")
    }

    /// Every device's memory account, in the order of the workers.
    pub fn memories(&self) -> &[Arc<DeviceMemory>] {
        &self.memory
    }

    /// Accounts the working memory of `tokens` in flight on `device` while the guard lives, unless
    /// it was accounted with the weights (a GPU without growth). Work whose memory alone exceeds
    /// the device's budget is refused before anything is allocated: returns the budget.
    pub fn try_hold_working(
        &self,
        device: ComputeDevice,
        tokens: usize,
        per_token: u64,
    ) -> Result<Option<WorkingMemory>, u64> {
        let reserved = matches!(device, ComputeDevice::Cuda(_)) && !self.settings.memory.gpu_growth;
        if reserved {
            Ok(None)
        } else {
            self.memory(device)
                .try_hold((tokens as u64).saturating_mul(per_token))
                .map(Some)
        }
    }

    /// Stops accounting `key` on every device (its weights were unloaded).
    pub fn release_memory(&self, key: &ModelKey) {
        for memory in &self.memory {
            memory.release(key);
        }
    }

    /// What the status call reports about the pool.
    pub fn status(&self) -> WorkerPoolStatus {
        WorkerPoolStatus {
            enabled: self.settings.enabled,
            num_workers: self.workers.len() as u32,
            active_workers: self.workers.iter().filter(|w| w.busy() > 0).count() as u32,
            pending_tasks: 0,
            workers: self
                .workers
                .iter()
                .map(|w| WorkerStatus {
                    worker_id: w.id.clone(),
                    device: w.device.to_string(),
                    busy: w.busy() as u32,
                    loaded_models: w.loaded_models() as u32,
                    busy_seconds: w.busy_seconds(),
                })
                .collect(),
            notes: self.notes.clone(),
            devices: self.memory.iter().map(|m| m.status()).collect(),
        }
    }
}

/// A reserved worker; dropping it frees the worker for the next batch.
struct WorkerPermit {
    pool: Arc<WorkerPool>,
    index: usize,
}

impl WorkerPermit {
    fn worker(&self) -> &Worker {
        &self.pool.workers[self.index]
    }
}

impl Drop for WorkerPermit {
    fn drop(&mut self) {
        self.pool.workers[self.index].end();
        self.pool.freed.notify_waiters();
    }
}
