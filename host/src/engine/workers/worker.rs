//! One worker: a dedicated thread that owns a device and the models loaded on it, fed jobs by a
//! channel, so inference never runs on the async runtime (as TEI's backend thread).

use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc as async_mpsc, oneshot};

use crate::backends::{GenerationRequest, GenerationSummary, LoadedModel, ModelBackend};
use crate::engine::device;
use crate::store::local::ModelFiles;
use crate::types::ComputeDevice;
use crate::types::ModelKey;
use crate::types::error::{FreeMemory, HostError, mib, panic_message};

/// What a worker is asked to do.
enum Job {
    /// Load a model (if not loaded yet).
    Load {
        key: ModelKey,
        files: ModelFiles,
        reply: oneshot::Sender<Result<(), HostError>>,
    },
    /// Run one batch of token sequences, loading the model first if needed.
    Run {
        key: ModelKey,
        files: ModelFiles,
        batch: Vec<Vec<u32>>,
        reply: oneshot::Sender<Result<Vec<Vec<f32>>, HostError>>,
    },
    /// Generate text, loading the model first if needed; pieces of text go to `chunks` as they
    /// are decoded, and generation stops when `chunks` is closed.
    Generate {
        key: ModelKey,
        files: ModelFiles,
        request: GenerationRequest,
        chunks: async_mpsc::UnboundedSender<String>,
        reply: oneshot::Sender<Result<GenerationSummary, HostError>>,
    },
    /// Drop a model from memory.
    Unload { key: ModelKey },
}

/// A handle to a worker thread. A thread that dies anyway (every job already runs under
/// `catch_unwind`, so only a fault in the loop itself can end it) is replaced on the next job; its
/// models load again on first use.
pub struct Worker {
    /// The worker's name in results and the status, e.g. `cpu-0`.
    pub id: String,
    /// The device it runs on.
    pub device: ComputeDevice,
    jobs: Mutex<mpsc::Sender<Job>>,
    backend: Arc<dyn ModelBackend>,
    busy: AtomicUsize,
    loaded: LoadedKeys,
    busy_micros: Arc<AtomicU64>,
}

/// The models a worker thread holds, each with the device memory its load took when that was
/// measured (GPUs), kept by the thread and read by the pool.
type LoadedKeys = Arc<Mutex<HashMap<ModelKey, Option<u64>>>>;

/// `keys`, locked (a panic elsewhere cannot leave the map half changed: it is only inserted into
/// and removed from).
fn lock(keys: &LoadedKeys) -> MutexGuard<'_, HashMap<ModelKey, Option<u64>>> {
    keys.lock().unwrap_or_else(|p| p.into_inner())
}

impl Worker {
    /// Starts the worker's thread.
    pub fn spawn(
        id: String,
        device: ComputeDevice,
        backend: Arc<dyn ModelBackend>,
    ) -> std::io::Result<Self> {
        let loaded = LoadedKeys::default();
        let busy_micros = Arc::new(AtomicU64::new(0));
        let jobs = start_thread(&id, device, &backend, &loaded, &busy_micros)?;
        Ok(Self {
            id,
            device,
            jobs: Mutex::new(jobs),
            backend,
            busy: AtomicUsize::new(0),
            loaded,
            busy_micros,
        })
    }

    /// Batches this worker has been given and not finished.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// Models in this worker's memory.
    pub fn loaded_models(&self) -> usize {
        lock(&self.loaded).len()
    }

    /// Whether `key` is in this worker's memory now.
    pub fn holds(&self, key: &ModelKey) -> bool {
        lock(&self.loaded).contains_key(key)
    }

    /// The device memory loading `key` here took, as the device's allocator reported it (GPUs
    /// only; approximate when loads on the same device overlap).
    pub fn measured_bytes(&self, key: &ModelKey) -> Option<u64> {
        lock(&self.loaded).get(key).copied().flatten()
    }

    /// Seconds this worker's thread has spent running jobs.
    pub fn busy_seconds(&self) -> f64 {
        self.busy_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    pub(super) fn begin(&self) {
        self.busy.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn end(&self) {
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    /// Loads `key` onto this worker.
    pub async fn load(&self, key: &ModelKey, files: &ModelFiles) -> Result<(), HostError> {
        let (reply, result) = oneshot::channel();
        self.send(Job::Load {
            key: key.clone(),
            files: files.clone(),
            reply,
        });
        result.await.map_err(|_| self.gone())?
    }

    /// Embeds `batch` with `key` on this worker.
    pub async fn run(
        &self,
        key: &ModelKey,
        files: &ModelFiles,
        batch: Vec<Vec<u32>>,
    ) -> Result<Vec<Vec<f32>>, HostError> {
        let (reply, result) = oneshot::channel();
        self.send(Job::Run {
            key: key.clone(),
            files: files.clone(),
            batch,
            reply,
        });
        result.await.map_err(|_| self.gone())?
    }

    /// Generates text for `request` with `key` on this worker, sending the text to `chunks` as it
    /// is produced; returns when generation has ended.
    pub async fn generate(
        &self,
        key: &ModelKey,
        files: &ModelFiles,
        request: GenerationRequest,
        chunks: async_mpsc::UnboundedSender<String>,
    ) -> Result<GenerationSummary, HostError> {
        let (reply, result) = oneshot::channel();
        self.send(Job::Generate {
            key: key.clone(),
            files: files.clone(),
            request,
            chunks,
            reply,
        });
        result.await.map_err(|_| self.gone())?
    }

    /// Drops `key` from this worker's memory (a no-op when it is not loaded).
    pub fn unload(&self, key: &ModelKey) {
        self.send(Job::Unload { key: key.clone() });
    }

    /// Hands `job` to the thread, replacing a thread that died. A job that cannot be handed over
    /// is dropped, with its reply sender, which the caller reports through `gone`.
    fn send(&self, job: Job) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let Err(mpsc::SendError(job)) = jobs.send(job) else {
            return;
        };
        lock(&self.loaded).clear();
        tracing::error!(worker = %self.id, "worker thread died; starting a new one");
        match start_thread(
            &self.id,
            self.device,
            &self.backend,
            &self.loaded,
            &self.busy_micros,
        ) {
            Ok(fresh) => {
                let _ = fresh.send(job);
                *jobs = fresh;
            }
            Err(error) => {
                tracing::error!(worker = %self.id, %error, "cannot start a worker thread")
            }
        }
    }

    fn gone(&self) -> HostError {
        HostError::Internal(format!("worker {} stopped unexpectedly", self.id))
    }
}

/// Starts a worker thread and returns the sender of its jobs.
fn start_thread(
    id: &str,
    device: ComputeDevice,
    backend: &Arc<dyn ModelBackend>,
    loaded: &LoadedKeys,
    busy_micros: &Arc<AtomicU64>,
) -> std::io::Result<mpsc::Sender<Job>> {
    let (jobs, inbox) = mpsc::channel();
    let mut thread = WorkerThread {
        id: id.to_string(),
        device,
        backend: backend.clone(),
        models: HashMap::new(),
        loaded: loaded.clone(),
    };
    let busy_micros = busy_micros.clone();
    std::thread::Builder::new()
        .name(format!("modelhost-{id}"))
        .spawn(move || {
            for job in inbox {
                let started = std::time::Instant::now();
                thread.handle(job);
                busy_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        })?;
    Ok(jobs)
}

/// The state of a worker thread: its device and the models loaded on it.
struct WorkerThread {
    id: String,
    device: ComputeDevice,
    backend: Arc<dyn ModelBackend>,
    models: HashMap<ModelKey, LoadedModel>,
    loaded: LoadedKeys,
}

impl WorkerThread {
    /// Runs one job. Everything a job does (loading included) runs under `catch_unwind`: a
    /// panicking checkpoint or model fails its job with a typed error, never the thread.
    fn handle(&mut self, job: Job) {
        match job {
            Job::Load { key, files, reply } => {
                let outcome =
                    self.guarded(&key, Stage::Load, |this| this.ensure_loaded(&key, &files));
                let _ = reply.send(outcome);
            }
            Job::Run {
                key,
                files,
                batch,
                reply,
            } => {
                let outcome = self.load_and_run(&key, &files, |this| {
                    let Some(LoadedModel::Sequence(model)) = this.models.get(&key) else {
                        return Err(not_a(&key, "sequence"));
                    };
                    let rows: Vec<&[u32]> = batch.iter().map(Vec::as_slice).collect();
                    model.run(&rows)
                });
                let _ = reply.send(outcome);
            }
            Job::Generate {
                key,
                files,
                request,
                chunks,
                reply,
            } => {
                let outcome = self.load_and_run(&key, &files, |this| {
                    let Some(LoadedModel::Generator(model)) = this.models.get(&key) else {
                        return Err(not_a(&key, "text generation"));
                    };
                    let mut emit = |piece: &str| chunks.send(piece.to_string()).is_ok();
                    model.generate(&request, &mut emit)
                });
                let _ = reply.send(outcome);
            }
            Job::Unload { key } => {
                // Dropping a model runs its code too.
                lock(&self.loaded).remove(&key);
                let dropped = panic::catch_unwind(AssertUnwindSafe(|| self.models.remove(&key)));
                if matches!(dropped, Ok(Some(_))) {
                    tracing::info!(worker = %self.id, model = %key.name, revision = %key.revision, "unloaded model");
                }
            }
        }
    }

    /// Loads `key` if this worker does not hold it yet, then runs `work` on it; each stage is
    /// [`guarded`](Self::guarded), so a panic in either becomes that stage's error.
    fn load_and_run<T>(
        &mut self,
        key: &ModelKey,
        files: &ModelFiles,
        work: impl FnOnce(&mut Self) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        self.guarded(key, Stage::Load, |this| this.ensure_loaded(key, files))?;
        self.guarded(key, Stage::Inference, work)
    }

    /// Runs `work`, turning a panic into the typed error of `stage` and an allocation failure
    /// into `out-of-memory`. A model that panicked while loading is not kept.
    fn guarded<T>(
        &mut self,
        key: &ModelKey,
        stage: Stage,
        work: impl FnOnce(&mut Self) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| work(self)));
        let outcome = outcome.unwrap_or_else(|payload| {
            let reason = panic_message(payload.as_ref()).to_string();
            tracing::error!(worker = %self.id, model = %key.name, %reason, "model panicked");
            Err(match stage {
                Stage::Load => HostError::LoadFailed {
                    name: key.name.clone(),
                    reason: format!("loading panicked: {reason}"),
                },
                Stage::Inference => HostError::InferenceFailed {
                    name: key.name.clone(),
                    reason: format!("the model panicked: {reason}"),
                },
            })
        });
        outcome.map_err(|error| out_of_memory(error, self.device))
    }

    /// Loads `key` unless it is loaded already.
    fn ensure_loaded(&mut self, key: &ModelKey, files: &ModelFiles) -> Result<(), HostError> {
        if self.models.contains_key(key) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let before = device::used_bytes(self.device);
        let model = self
            .backend
            .load(key.model_type, files, self.device, key.precision)?;
        let measured = before
            .zip(device::used_bytes(self.device))
            .map(|(before, after)| after.saturating_sub(before));
        self.models.insert(key.clone(), model);
        lock(&self.loaded).insert(key.clone(), measured);
        tracing::info!(worker = %self.id, model = %key.name, revision = %key.revision,
            elapsed_ms = started.elapsed().as_millis() as u64,
            device_bytes = ?measured.map(mib), "loaded model");
        Ok(())
    }
}

/// What a job was doing, for the error a panic becomes.
#[derive(Clone, Copy)]
enum Stage {
    Load,
    Inference,
}

/// A load or inference failure that is a real allocation failure (CUDA or the allocator reporting that memory
/// ran out), reported as `out-of-memory`.
fn out_of_memory(error: HostError, device: ComputeDevice) -> HostError {
    match error {
        HostError::LoadFailed { name, reason } | HostError::InferenceFailed { name, reason }
            if is_out_of_memory(&reason) =>
        {
            HostError::OutOfMemory {
                name,
                needed: None,
                free: FreeMemory::AllocationFailed {
                    device: device.to_string(),
                    reason,
                },
            }
        }
        other => other,
    }
}

/// Whether a failure's reason is an allocation failure: the allocator's, or the CUDA driver's
/// (`CUDA_ERROR_OUT_OF_MEMORY`, "out of memory") and cuBLAS's (`CUBLAS_STATUS_ALLOC_FAILED`).
fn is_out_of_memory(reason: &str) -> bool {
    let reason = reason.to_lowercase();
    ["out of memory", "out_of_memory", "alloc_failed"]
        .iter()
        .any(|sign| reason.contains(sign))
}

/// The error for a job that does not fit the loaded model's kind.
fn not_a(key: &ModelKey, kind: &str) -> HostError {
    HostError::Internal(format!("model '{}' is not a {kind} model", key.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(reason: &str) -> HostError {
        HostError::LoadFailed {
            name: "m".into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn allocation_failures_of_the_allocator_cuda_and_cublas_are_out_of_memory() {
        for reason in [
            "on cuda:0: DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
            "on cuda:0: cublas error: CUBLAS_STATUS_ALLOC_FAILED",
            "memory allocation of 1073741824 bytes failed: out of memory",
        ] {
            let error = out_of_memory(failed(reason), ComputeDevice::Cuda(0));
            assert!(
                matches!(&error, HostError::OutOfMemory { free: FreeMemory::AllocationFailed { device, .. }, .. } if device == "cuda:0"),
                "{reason}: {error:?}"
            );
        }
        let other = out_of_memory(failed("CUDA_ERROR_ILLEGAL_ADDRESS"), ComputeDevice::Cuda(0));
        assert!(matches!(other, HostError::LoadFailed { .. }), "{other:?}");
    }
}
