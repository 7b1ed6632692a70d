//! A fake backend for tests about registration, placement, batching and unloading, where the
//! numbers do not matter: deterministic 4-dimensional vectors, a generator that writes out the
//! sampling settings it was given, an optional delay per batch, loads that fail on chosen devices,
//! and a record of what the host asked it to do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modelhost::backends::{
    GenerationRequest, GenerationSummary, Inspection, LoadedModel, ModelBackend, ModelInfo,
    SequenceModel, TextEncoder, TextGenerator,
};
use modelhost::engine::device::DeviceInventory;
use modelhost::store::local::ModelFiles;
use modelhost::types::FinishReason;
use modelhost::types::MemoryEstimate;
use modelhost::types::error::HostError;
use modelhost::types::requirement::{ModelType, Precision};
use modelhost::types::{ComputeDevice, DeviceSupport};

/// A text that makes the fake model panic.
pub const PANIC_TEXT: &str = "panic!";

/// Vector size of every fake model.
pub const FAKE_DIMENSION: u32 = 4;

/// Counts and records what the host does with models.
#[derive(Default)]
pub struct FakeBackend {
    delay: Duration,
    loads: Mutex<Vec<ComputeDevice>>,
    live: Arc<AtomicUsize>,
    batches: Arc<Mutex<Vec<usize>>>,
    sizes: Vec<(String, MemoryEstimate)>,
    panicking_loads: AtomicUsize,
    failing_devices: Vec<ComputeDevice>,
    failed_loads: Mutex<Vec<ComputeDevice>>,
    piece_interval: Option<Duration>,
    pieces: Arc<AtomicUsize>,
    cpu_only: Vec<ModelType>,
}

impl FakeBackend {
    /// This backend with batches that each take `delay`.
    pub fn delayed(self, delay: Duration) -> Self {
        Self { delay, ..self }
    }

    /// A backend whose models named in `sizes` report those memory estimates (others: none).
    pub fn with_sizes(sizes: &[(&str, MemoryEstimate)]) -> Self {
        Self {
            sizes: sizes.iter().map(|(n, e)| (n.to_string(), *e)).collect(),
            ..Self::default()
        }
    }

    /// A backend whose batches each take `delay`.
    pub fn with_delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }

    /// A backend whose first `count` loads panic (as a hostile checkpoint might make a real
    /// loader do).
    pub fn panicking_on_load(count: usize) -> Self {
        Self {
            panicking_loads: AtomicUsize::new(count),
            ..Self::default()
        }
    }

    /// A backend whose loads on `devices` fail with `load-failed` (as a device without room, or
    /// without a kernel the model needs, makes a real loader do).
    pub fn failing_on(devices: &[ComputeDevice]) -> Self {
        Self {
            failing_devices: devices.to_vec(),
            ..Self::default()
        }
    }

    /// A backend whose generators write one piece every `interval` until they are told to stop
    /// or reach the request's most new tokens (instead of writing out their settings).
    pub fn generating_every(interval: Duration) -> Self {
        Self {
            piece_interval: Some(interval),
            ..Self::default()
        }
    }

    /// A backend that reports models of `types` as running on the CPU only (as a backend without
    /// GPU kernels for a family does), and fails to load them anywhere else.
    pub fn cpu_only(types: &[ModelType]) -> Self {
        Self {
            cpu_only: types.to_vec(),
            ..Self::default()
        }
    }

    /// Pieces of text generators wrote so far.
    pub fn pieces(&self) -> usize {
        self.pieces.load(Ordering::SeqCst)
    }

    /// The devices loads failed on, in order.
    pub fn failed_loads(&self) -> Vec<ComputeDevice> {
        self.failed_loads.lock().unwrap().clone()
    }

    /// How many times a model was loaded.
    pub fn loads(&self) -> usize {
        self.loads.lock().unwrap().len()
    }

    /// The devices models were loaded onto, in order.
    pub fn load_devices(&self) -> Vec<ComputeDevice> {
        self.loads.lock().unwrap().clone()
    }

    /// How many loaded models are still in memory.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// The size of every batch run so far, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.batches.lock().unwrap().clone()
    }
}

impl ModelBackend for FakeBackend {
    fn inspect(&self, model_type: ModelType, files: &ModelFiles) -> Result<Inspection, HostError> {
        Ok(Inspection {
            info: ModelInfo {
                architecture: format!("fake:{}", files.name),
                dimension: Some(FAKE_DIMENSION),
                max_input_length: 512,
                head: "fake".into(),
                labels: Vec::new(),
                memory: self
                    .sizes
                    .iter()
                    .find(|(name, _)| *name == files.name)
                    .map(|(_, estimate)| *estimate)
                    .unwrap_or_default(),
                runs_on: if self.cpu_only.contains(&model_type) {
                    DeviceSupport::CPU
                } else {
                    DeviceSupport::CPU_AND_CUDA
                },
            },
            encoder: Arc::new(FakeEncoder),
        })
    }

    fn load(
        &self,
        model_type: ModelType,
        files: &ModelFiles,
        device: ComputeDevice,
        _: Precision,
    ) -> Result<LoadedModel, HostError> {
        let panics = self
            .panicking_loads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        assert!(!panics, "the fake checkpoint made the loader panic");
        let unsupported = self.cpu_only.contains(&model_type) && device != ComputeDevice::Cpu;
        if unsupported || self.failing_devices.contains(&device) {
            self.failed_loads.lock().unwrap().push(device);
            return Err(HostError::LoadFailed {
                name: files.name.clone(),
                reason: format!("the fake backend cannot load on {device}"),
            });
        }
        self.loads.lock().unwrap().push(device);
        self.live.fetch_add(1, Ordering::SeqCst);
        if model_type == ModelType::TextGeneration {
            if let Some(interval) = self.piece_interval {
                return Ok(LoadedModel::Generator(Box::new(Endless {
                    interval,
                    pieces: self.pieces.clone(),
                })));
            }
            return Ok(LoadedModel::Generator(Box::new(SamplingEcho {
                device,
                live: self.live.clone(),
            })));
        }
        Ok(LoadedModel::Sequence(Box::new(FakeModel {
            delay: self.delay,
            live: self.live.clone(),
            batches: self.batches.clone(),
        })))
    }
}

/// A generator that writes out, as its text, the device it runs on and the sampling settings it
/// was given: `cpu t=0.7 k=Some(5) p=Some(0.9) r=1 seed=42 max=16`.
struct SamplingEcho {
    device: ComputeDevice,
    live: Arc<AtomicUsize>,
}

impl Drop for SamplingEcho {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TextGenerator for SamplingEcho {
    fn generate(
        &self,
        request: &GenerationRequest,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationSummary, HostError> {
        let s = &request.sampling;
        let text = format!(
            "{} t={} k={:?} p={:?} r={} seed={} max={}",
            self.device,
            s.temperature,
            s.top_k,
            s.top_p,
            s.repetition_penalty,
            s.seed,
            request.max_new_tokens
        );
        emit(&text);
        Ok(GenerationSummary {
            prompt_tokens: 1,
            generated_tokens: 1,
            tokens: Vec::new(),
            finish: FinishReason::Length,
        })
    }
}

/// A generator that writes "x" every `interval`, counting the pieces, until `emit` says stop.
struct Endless {
    interval: Duration,
    pieces: Arc<AtomicUsize>,
}

impl TextGenerator for Endless {
    fn generate(
        &self,
        request: &GenerationRequest,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationSummary, HostError> {
        let mut generated = 0;
        while generated < request.max_new_tokens {
            std::thread::sleep(self.interval);
            self.pieces.fetch_add(1, Ordering::SeqCst);
            generated += 1;
            if !emit("x") {
                break;
            }
        }
        Ok(GenerationSummary {
            prompt_tokens: 1,
            generated_tokens: generated as u32,
            tokens: Vec::new(),
            finish: FinishReason::Length,
        })
    }
}

/// One token per byte.
struct FakeEncoder;

impl TextEncoder for FakeEncoder {
    fn encode(&self, texts: &[String], max_tokens: usize) -> Result<Vec<Vec<u32>>, HostError> {
        Ok(texts.iter().map(|t| fake_tokens(t, max_tokens)).collect())
    }
}

fn fake_tokens(text: &str, max_tokens: usize) -> Vec<u32> {
    text.bytes().map(u32::from).take(max_tokens).collect()
}

struct FakeModel {
    delay: Duration,
    live: Arc<AtomicUsize>,
    batches: Arc<Mutex<Vec<usize>>>,
}

impl SequenceModel for FakeModel {
    fn run(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, HostError> {
        std::thread::sleep(self.delay);
        let panic_tokens = fake_tokens(PANIC_TEXT, usize::MAX);
        assert!(
            !batch.contains(&panic_tokens.as_slice()),
            "the fake model was told to panic"
        );
        self.batches.lock().unwrap().push(batch.len());
        Ok(batch.iter().map(|tokens| vector_of(tokens)).collect())
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn vector_of(tokens: &[u32]) -> Vec<f32> {
    let sum: u32 = tokens.iter().sum();
    vec![
        tokens.len() as f32,
        sum as f32,
        *tokens.first().unwrap_or(&0) as f32,
        1.0,
    ]
}

/// The vector the fake model gives `text`.
pub fn fake_vector(text: &str) -> Vec<f32> {
    vector_of(&fake_tokens(text, usize::MAX))
}

/// A machine with the given CUDA ordinals (and a CPU), of unknown memory sizes.
pub struct SimulatedDevices(pub Vec<u32>);

impl DeviceInventory for SimulatedDevices {
    fn cuda_devices(&self) -> Vec<u32> {
        self.0.clone()
    }

    fn memory_bytes(&self, _: ComputeDevice) -> Option<u64> {
        None
    }
}

/// A machine with CUDA devices of the given memory sizes, and a CPU with `cpu` bytes.
pub struct SimulatedMemory {
    /// RAM.
    pub cpu: u64,
    /// Each GPU's memory, by ordinal.
    pub gpus: Vec<u64>,
}

impl DeviceInventory for SimulatedMemory {
    fn cuda_devices(&self) -> Vec<u32> {
        (0..self.gpus.len() as u32).collect()
    }

    fn memory_bytes(&self, device: ComputeDevice) -> Option<u64> {
        match device {
            ComputeDevice::Cpu => Some(self.cpu),
            ComputeDevice::Cuda(n) => self.gpus.get(n as usize).copied(),
        }
    }
}
