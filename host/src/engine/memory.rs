//! Device memory as the host accounts it: each device's budget (a fraction of its memory), and
//! the bytes accounted to each model placed on it, from the model's estimate. Placement checks
//! that a model fits before it is loaded; see `ModelManager::register`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::types::ComputeDevice;
use crate::types::{DeviceMemoryStatus, ModelKey};

/// One device's budget and the models accounted on it.
pub struct DeviceMemory {
    /// The device.
    pub device: ComputeDevice,
    budget: Option<u64>,
    accounted: Mutex<HashMap<ModelKey, u64>>,
    working: Arc<AtomicU64>,
    evictions: AtomicU64,
}

/// Working memory held while a batch or generation runs; given back when dropped.
pub struct WorkingMemory {
    bytes: u64,
    counter: Arc<AtomicU64>,
}

impl Drop for WorkingMemory {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl DeviceMemory {
    /// A device with `budget` bytes for models (`None`: no limit).
    pub fn new(device: ComputeDevice, budget: Option<u64>) -> Self {
        Self {
            device,
            budget,
            accounted: Mutex::new(HashMap::new()),
            working: Arc::new(AtomicU64::new(0)),
            evictions: AtomicU64::new(0),
        }
    }

    fn accounted(&self) -> std::sync::MutexGuard<'_, HashMap<ModelKey, u64>> {
        self.accounted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes accounted to models, and to the work running on them.
    pub fn used(&self) -> u64 {
        self.accounted().values().sum::<u64>() + self.working.load(Ordering::Relaxed)
    }

    /// Accounts `bytes` of working memory until the returned guard is dropped. Growth is
    /// allowed: the bytes are accounted even past the budget, which later placements see.
    pub fn hold(&self, bytes: u64) -> WorkingMemory {
        self.working.fetch_add(bytes, Ordering::Relaxed);
        WorkingMemory {
            bytes,
            counter: self.working.clone(),
        }
    }

    /// Accounts `bytes` of working memory like [`Self::hold`] (concurrent work may grow past
    /// the budget, as there), but refuses work that could never fit: more than the whole
    /// budget, as a hostile checkpoint's context or input length would make. Returns the
    /// budget when it refuses.
    pub fn try_hold(&self, bytes: u64) -> Result<WorkingMemory, u64> {
        match self.budget {
            Some(budget) if bytes > budget => Err(budget),
            _ => Ok(self.hold(bytes)),
        }
    }

    /// Bytes left in the budget (`None`: no limit).
    pub fn free(&self) -> Option<u64> {
        self.budget.map(|b| b.saturating_sub(self.used()))
    }

    /// Bytes accounted to `key` here, if it is placed here.
    pub fn accounted_to(&self, key: &ModelKey) -> Option<u64> {
        self.accounted().get(key).copied()
    }

    /// Accounts `bytes` to `key` if they fit (or `key` is accounted already); otherwise returns
    /// the free bytes.
    pub fn try_account(&self, key: &ModelKey, bytes: u64) -> Result<(), u64> {
        let mut accounted = self.accounted();
        if accounted.contains_key(key) {
            return Ok(());
        }
        let used = accounted.values().sum::<u64>() + self.working.load(Ordering::Relaxed);
        match self.budget {
            Some(budget) if used + bytes > budget => Err(budget.saturating_sub(used)),
            _ => {
                accounted.insert(key.clone(), bytes);
                Ok(())
            }
        }
    }

    /// Stops accounting `key` (it was unloaded).
    pub fn release(&self, key: &ModelKey) {
        self.accounted().remove(key);
    }

    /// The models accounted here.
    pub fn keys(&self) -> Vec<ModelKey> {
        self.accounted().keys().cloned().collect()
    }

    /// Counts a model evicted to make room here.
    pub fn count_eviction(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    /// Budget, use and evictions.
    pub fn status(&self) -> DeviceMemoryStatus {
        DeviceMemoryStatus {
            device: self.device.to_string(),
            budget_bytes: self.budget,
            used_bytes: self.used(),
            working_bytes: self.working.load(Ordering::Relaxed),
            free_bytes: self.free(),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}
