//! One worker: a dedicated thread that owns a device and the models loaded on it, fed jobs by a
//! channel, so inference never runs on the async runtime (as TEI's backend thread).

use std::any::Any;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

use tokio::sync::{mpsc as async_mpsc, oneshot};

use crate::backends::{GenerationRequest, GenerationSummary, LoadedModel, ModelBackend};
use crate::device::ComputeDevice;
use crate::error::HostError;
use crate::hub::ModelFiles;
use crate::registry::WeightsKey;

/// What a worker is asked to do.
enum Job {
    /// Load a model (if not loaded yet).
    Load {
        key: WeightsKey,
        files: ModelFiles,
        reply: oneshot::Sender<Result<(), HostError>>,
    },
    /// Run one batch of token sequences, loading the model first if needed.
    Run {
        key: WeightsKey,
        files: ModelFiles,
        batch: Vec<Vec<u32>>,
        reply: oneshot::Sender<Result<Vec<Vec<f32>>, HostError>>,
    },
    /// Generate text, loading the model first if needed; pieces of text go to `chunks` as they
    /// are decoded, and generation stops when `chunks` is closed.
    Generate {
        key: WeightsKey,
        files: ModelFiles,
        request: GenerationRequest,
        chunks: async_mpsc::UnboundedSender<String>,
        reply: oneshot::Sender<Result<GenerationSummary, HostError>>,
    },
    /// Drop a model from memory.
    Unload { key: WeightsKey },
}

/// A handle to a worker thread.
pub struct Worker {
    /// The worker's name in results and the status, e.g. `cpu-0`.
    pub id: String,
    /// The device it runs on.
    pub device: ComputeDevice,
    jobs: mpsc::Sender<Job>,
    busy: AtomicUsize,
    loaded: Arc<AtomicUsize>,
    busy_micros: Arc<AtomicU64>,
}

impl Worker {
    /// Starts the worker's thread.
    pub fn spawn(id: String, device: ComputeDevice, backend: Arc<dyn ModelBackend>) -> Self {
        let (jobs, inbox) = mpsc::channel();
        let loaded = Arc::new(AtomicUsize::new(0));
        let busy_micros = Arc::new(AtomicU64::new(0));
        let counters = (loaded.clone(), busy_micros.clone());
        let thread_id = id.clone();
        std::thread::Builder::new()
            .name(format!("modelhost-{id}"))
            .spawn(move || serve(thread_id, device, backend, inbox, counters))
            .expect("cannot start a worker thread");
        Self {
            id,
            device,
            jobs,
            busy: AtomicUsize::new(0),
            loaded,
            busy_micros,
        }
    }

    /// Batches this worker has been given and not finished.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// Models in this worker's memory.
    pub fn loaded_models(&self) -> usize {
        self.loaded.load(Ordering::SeqCst)
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
    pub async fn load(&self, key: &WeightsKey, files: &ModelFiles) -> Result<(), HostError> {
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
        key: &WeightsKey,
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
        key: &WeightsKey,
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
    pub fn unload(&self, key: &WeightsKey) {
        self.send(Job::Unload { key: key.clone() });
    }

    fn send(&self, job: Job) {
        // The thread only ends when this handle is dropped, so the channel is open; a job sent
        // to a thread that died anyway gets its reply sender dropped, which `gone` reports.
        let _ = self.jobs.send(job);
    }

    fn gone(&self) -> HostError {
        HostError::Internal(format!("worker {} stopped unexpectedly", self.id))
    }
}

/// The worker thread: runs jobs in order until its handle is dropped.
fn serve(
    id: String,
    device: ComputeDevice,
    backend: Arc<dyn ModelBackend>,
    inbox: mpsc::Receiver<Job>,
    (loaded, busy_micros): (Arc<AtomicUsize>, Arc<AtomicU64>),
) {
    let mut models: HashMap<WeightsKey, LoadedModel> = HashMap::new();
    let ensure_loaded = |models: &mut HashMap<WeightsKey, LoadedModel>,
                         key: &WeightsKey,
                         files: &ModelFiles|
     -> Result<(), HostError> {
        if !models.contains_key(key) {
            let started = std::time::Instant::now();
            let model = backend
                .load(key.model_type, files, device, key.precision)
                .map_err(|error| out_of_memory(error, device))?;
            models.insert(key.clone(), model);
            loaded.store(models.len(), Ordering::SeqCst);
            tracing::info!(worker = %id, model = %key.name, revision = %key.revision,
                elapsed_ms = started.elapsed().as_millis() as u64, "loaded model");
        }
        Ok(())
    };
    for job in inbox {
        let started = std::time::Instant::now();
        match job {
            Job::Load { key, files, reply } => {
                let loaded = panic::catch_unwind(AssertUnwindSafe(|| {
                    ensure_loaded(&mut models, &key, &files)
                }))
                .unwrap_or_else(|payload| {
                    Err(HostError::LoadFailed {
                        name: key.name.clone(),
                        reason: format!("loading panicked: {}", panic_message(&payload)),
                    })
                });
                let _ = reply.send(loaded);
            }
            Job::Run {
                key,
                files,
                batch,
                reply,
            } => {
                let result = ensure_loaded(&mut models, &key, &files).and_then(|()| {
                    let LoadedModel::Sequence(model) = &models[&key] else {
                        return Err(not_a(&key, "sequence"));
                    };
                    let rows: Vec<&[u32]> = batch.iter().map(Vec::as_slice).collect();
                    // A panicking model fails its batch, not the worker.
                    panic::catch_unwind(AssertUnwindSafe(|| model.run(&rows))).unwrap_or_else(
                        |payload| {
                            Err(HostError::InferenceFailed {
                                name: key.name.clone(),
                                reason: format!("the model panicked: {}", panic_message(&payload)),
                            })
                        },
                    )
                });
                let _ = reply.send(result.map_err(|error| out_of_memory(error, device)));
            }
            Job::Generate {
                key,
                files,
                request,
                chunks,
                reply,
            } => {
                let result = ensure_loaded(&mut models, &key, &files).and_then(|()| {
                    let LoadedModel::Generator(model) = &models[&key] else {
                        return Err(not_a(&key, "text generation"));
                    };
                    let mut emit = |piece: &str| chunks.send(piece.to_string()).is_ok();
                    // A panicking model fails its generation, not the worker.
                    panic::catch_unwind(AssertUnwindSafe(|| model.generate(&request, &mut emit)))
                        .unwrap_or_else(|payload| {
                            Err(HostError::InferenceFailed {
                                name: key.name.clone(),
                                reason: format!("the model panicked: {}", panic_message(&payload)),
                            })
                        })
                });
                let _ = reply.send(result);
            }
            Job::Unload { key } => {
                if models.remove(&key).is_some() {
                    loaded.store(models.len(), Ordering::SeqCst);
                    tracing::info!(worker = %id, model = %key.name, revision = %key.revision, "unloaded model");
                }
            }
        }
        busy_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// A load or inference failure that is a real allocation failure (CUDA or the allocator reporting that memory
/// ran out), reported as `out-of-memory`.
fn out_of_memory(error: HostError, device: ComputeDevice) -> HostError {
    match error {
        HostError::LoadFailed { name, reason } | HostError::InferenceFailed { name, reason }
            if reason.to_lowercase().contains("out of memory") =>
        {
            HostError::OutOfMemory {
                name,
                needed: "more than was free".into(),
                free: format!("{device} failed to allocate: {reason}"),
            }
        }
        other => other,
    }
}

/// The error for a job that does not fit the loaded model's kind.
fn not_a(key: &WeightsKey, kind: &str) -> HostError {
    HostError::Internal(format!("model '{}' is not a {kind} model", key.name))
}

/// The text of a panic's payload.
fn panic_message(payload: &Box<dyn Any + Send>) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}
