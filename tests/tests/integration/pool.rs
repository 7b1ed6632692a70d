//! The worker pool on a simulated machine with a fake backend: device expansion, placement,
//! preload capping, fallback, load balancing, batching across callers, token budget, overload,
//! timeout, abandoned callers, workers that cannot load a model, and models placed only where
//! their backend runs them.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use modelhost::backends::Prompt;
use modelhost::engine::workers::{LoadBalancing, StreamEvent};
use modelhost::manager::{ManagerSettings, ModelManager};
use modelhost::types::ComputeDevice;
use modelhost::types::ModuleId;
use modelhost::types::error::HostError;
use modelhost::types::requirement::{
    DevicePreference, GenerationOptions, ModelRequirement, ModelType,
};
use modelhost::types::results::{Embeddings, ServiceStatus};
use modelhost_tests::fake::{FakeBackend, PANIC_TEXT, SimulatedDevices, fake_vector};
use modelhost_tests::{MINILM, SMOLLM2, test_settings};

fn settings(devices: &[&str], balancing: LoadBalancing) -> ManagerSettings {
    let mut settings = test_settings(Duration::from_secs(300));
    settings.pool.devices = devices.iter().map(|d| d.parse().unwrap()).collect();
    settings.pool.load_balancing = balancing;
    settings.cache.enabled = false;
    settings
}

fn start(
    gpus: &[u32],
    settings: ManagerSettings,
    backend: FakeBackend,
) -> (Arc<ModelManager>, Arc<FakeBackend>) {
    let backend = Arc::new(backend);
    let manager =
        modelhost_tests::manager(backend.clone(), &SimulatedDevices(gpus.to_vec()), settings);
    (manager, backend)
}

fn requirement(device: DevicePreference, preload: u32) -> ModelRequirement {
    ModelRequirement {
        device,
        preload_workers: preload,
        ..ModelRequirement::new(ModelType::Embedding, MINILM)
    }
}

fn worker_ids(manager: &ModelManager) -> Vec<String> {
    let status = manager.status();
    status
        .worker_pool
        .workers
        .iter()
        .map(|w| w.worker_id.clone())
        .collect()
}

const MODULE: &str = "m";

#[tokio::test]
async fn auto_expands_to_every_gpu_and_falls_back_to_the_cpu_without_one() {
    let (manager, _) = start(
        &[0, 1],
        settings(&["auto", "cpu"], LoadBalancing::LeastBusy),
        FakeBackend::default(),
    );
    assert_eq!(worker_ids(&manager), ["cuda:0-0", "cuda:1-0", "cpu-0"]);
    assert!(manager.status().worker_pool.notes.is_empty());

    let (manager, _) = start(
        &[],
        settings(&["auto", "cpu"], LoadBalancing::LeastBusy),
        FakeBackend::default(),
    );
    assert_eq!(worker_ids(&manager), ["cpu-0"]);
    assert!(manager.status().worker_pool.notes[0].contains("no GPU"));

    let mut many = settings(&["cuda:0", "cpu"], LoadBalancing::LeastBusy);
    many.pool.num_workers = 3;
    let (manager, _) = start(&[0], many, FakeBackend::default());
    assert_eq!(worker_ids(&manager), ["cuda:0-0", "cpu-0", "cuda:0-1"]);

    let missing = ModelManager::new(
        modelhost_tests::model_store(),
        Arc::new(FakeBackend::default()),
        &SimulatedDevices(vec![0]),
        settings(&["cuda:3"], LoadBalancing::LeastBusy),
    );
    assert!(matches!(missing.err(), Some(HostError::DeviceUnavailable(m)) if m.contains("cuda:3")));
}

#[tokio::test]
async fn models_are_placed_on_the_requested_device_and_preloads_are_capped() {
    let (manager, backend) = start(
        &[0, 1],
        settings(&["auto", "cpu"], LoadBalancing::LeastBusy),
        FakeBackend::default(),
    );
    let m = ModuleId::new(MODULE);
    manager
        .register(
            &m,
            "on-gpu1",
            requirement(DevicePreference::CudaOrdinal(1), 1),
        )
        .await
        .unwrap();
    assert_eq!(backend.load_devices(), [ComputeDevice::Cuda(1)]);

    let status = manager.status();
    assert_eq!(status.loaded_models[0].workers, ["cuda:1-0"]);
    assert_eq!(status.loaded_models[0].device, "cuda:1");
    assert!(status.loaded_models[0].placement_note.is_none());

    // "cuda" matches both GPUs: a preload of 5 is capped at 2 workers.
    let other = ModelRequirement {
        device: DevicePreference::Cuda,
        preload_workers: 5,
        ..ModelRequirement::new(
            ModelType::Embedding,
            "modelhost-fixtures/categorium-bert-cls-en",
        )
    };
    manager.register(&m, "on-all-gpus", other).await.unwrap();
    let status = manager.status();
    let all = status
        .loaded_models
        .iter()
        .find(|s| s.model_id == "on-all-gpus")
        .unwrap();
    assert_eq!(all.workers.len(), 2);
    assert_eq!(backend.loads(), 3);

    // Lazy registration loads nothing until first use, then on one matching worker.
    manager
        .register(&m, "cpu-lazy", requirement(DevicePreference::Cpu, 0))
        .await
        .unwrap();
    assert_eq!(backend.loads(), 3);
}

#[tokio::test]
async fn a_device_no_worker_has_falls_back_to_any_worker_and_says_so() {
    let (manager, backend) = start(
        &[],
        settings(&["cpu"], LoadBalancing::LeastBusy),
        FakeBackend::default(),
    );
    let m = ModuleId::new(MODULE);
    manager
        .register(&m, "e", requirement(DevicePreference::CudaOrdinal(1), 0))
        .await
        .unwrap();
    let result = manager.embed(&m, "e", vec!["hello".into()]).await.unwrap();
    assert_eq!(result.vectors, [fake_vector("hello")]);
    assert_eq!(result.worker_id.as_deref(), Some("cpu-0"));
    assert_eq!(backend.load_devices(), [ComputeDevice::Cpu]);
    let note = manager.status().loaded_models[0]
        .placement_note
        .clone()
        .unwrap();
    assert!(note.contains("no worker on cuda:1"), "{note}");
}

async fn workers_used(balancing: LoadBalancing) -> Vec<String> {
    let (manager, _) = start(
        &[0, 1, 2],
        settings(&["cuda"], balancing),
        FakeBackend::default(),
    );
    let m = ModuleId::new(MODULE);
    manager
        .register(&m, "e", requirement(DevicePreference::Cuda, 3))
        .await
        .unwrap();
    let mut used = Vec::new();
    for i in 0..6 {
        let result = manager
            .embed(&m, "e", vec![format!("text {i}")])
            .await
            .unwrap();
        used.push(result.worker_id.unwrap());
    }
    used
}

#[tokio::test]
async fn round_robin_takes_each_holder_in_turn() {
    let used = workers_used(LoadBalancing::RoundRobin).await;
    assert_eq!(
        used,
        [
            "cuda:0-0", "cuda:1-0", "cuda:2-0", "cuda:0-0", "cuda:1-0", "cuda:2-0"
        ]
    );
}

#[tokio::test]
async fn least_busy_takes_the_first_idle_holder() {
    // One request at a time: every worker is idle, so the first one always wins.
    let used = workers_used(LoadBalancing::LeastBusy).await;
    assert_eq!(used, ["cuda:0-0"; 6]);

    // Concurrent batches spread over idle workers.
    let (manager, _) = start(
        &[0, 1, 2],
        settings(&["cuda"], LoadBalancing::LeastBusy),
        FakeBackend::with_delay(Duration::from_millis(200)),
    );
    let m = ModuleId::new(MODULE);
    let one_per_batch = ModelRequirement {
        batch_size: Some(1),
        ..requirement(DevicePreference::Cuda, 3)
    };
    manager.register(&m, "e", one_per_batch).await.unwrap();
    let texts: Vec<String> = (0..3).map(|i| format!("text {i}")).collect();
    let result = manager.embed(&m, "e", texts).await.unwrap();
    let mut workers: Vec<&str> = result.worker_id.as_deref().unwrap().split(',').collect();
    workers.sort();
    assert_eq!(workers, ["cuda:0-0", "cuda:1-0", "cuda:2-0"]);
}

/// One CPU worker whose batches take `delay_ms`, with `configure` applied to the settings, and the
/// model registered as `e` and already loaded.
async fn one_slow_worker(
    delay_ms: u64,
    configure: impl FnOnce(&mut ManagerSettings),
) -> (Arc<ModelManager>, Arc<FakeBackend>) {
    let mut settings = settings(&["cpu"], LoadBalancing::LeastBusy);
    configure(&mut settings);
    let backend = FakeBackend::with_delay(Duration::from_millis(delay_ms));
    let (manager, backend) = start(&[], settings, backend);
    let m = ModuleId::new(MODULE);
    manager
        .register(&m, "e", requirement(DevicePreference::Cpu, 1))
        .await
        .unwrap();
    (manager, backend)
}

/// Embeds `texts` with `e` on a task of its own.
fn spawn_embed(
    manager: &Arc<ModelManager>,
    texts: Vec<String>,
) -> JoinHandle<Result<Embeddings, HostError>> {
    let manager = manager.clone();
    tokio::spawn(async move { manager.embed(&ModuleId::new(MODULE), "e", texts).await })
}

fn pause(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

/// Waits until the status satisfies `ready`, so tests follow the host's state, not the clock.
async fn until(manager: &ModelManager, ready: impl Fn(&ServiceStatus) -> bool) {
    while !ready(&manager.status()) {
        pause(5).await;
    }
}

/// Waits until the worker is running a batch.
async fn busy(manager: &ModelManager) {
    until(manager, |s| s.worker_pool.active_workers == 1).await;
}

/// Waits until `n` requests wait in the queue.
async fn queued(manager: &ModelManager, n: u32) {
    until(manager, |s| s.worker_pool.pending_tasks == n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_merged_into_one_batch_and_answered_in_order() {
    let (manager, backend) = one_slow_worker(1000, |_| {}).await;
    let first = spawn_embed(&manager, vec!["first".into()]);
    busy(&manager).await;
    let texts: Vec<Vec<String>> = (0..10)
        .map(|i| {
            vec![
                format!("caller {i} a"),
                format!("caller {i} bb{}", "b".repeat(i)),
            ]
        })
        .collect();
    let callers: Vec<_> = texts
        .iter()
        .map(|t| spawn_embed(&manager, t.clone()))
        .collect();
    first.await.unwrap().unwrap();
    for (texts, caller) in texts.iter().zip(callers) {
        let expected: Vec<Vec<f32>> = texts.iter().map(|t| fake_vector(t)).collect();
        assert_eq!(caller.await.unwrap().unwrap().vectors, expected);
    }
    assert_eq!(
        backend.batch_sizes(),
        [1, 20],
        "the ten waiting callers shared one batch"
    );
}

#[tokio::test]
async fn batches_respect_the_batch_size_and_the_token_budget() {
    let mut budget = settings(&["cpu"], LoadBalancing::LeastBusy);
    budget.pool.max_batch_tokens = 100;
    let (manager, backend) = start(&[], budget, FakeBackend::default());
    let m = ModuleId::new(MODULE);
    manager
        .register(&m, "e", requirement(DevicePreference::Cpu, 0))
        .await
        .unwrap();
    let thirty: Vec<String> = (0..10).map(|i| format!("{i}{}", "x".repeat(29))).collect();
    let result = manager.embed(&m, "e", thirty.clone()).await.unwrap();
    assert_eq!(
        result.vectors,
        thirty.iter().map(|t| fake_vector(t)).collect::<Vec<_>>()
    );
    assert_eq!(
        backend.batch_sizes(),
        [3, 3, 3, 1],
        "3 x 30 tokens fit in 100, 4 do not"
    );

    let small = ModelRequirement {
        batch_size: Some(4),
        ..requirement(DevicePreference::Cpu, 0)
    };
    manager.register(&m, "small", small).await.unwrap();
    let short: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    manager.embed(&m, "small", short).await.unwrap();
    assert_eq!(backend.batch_sizes()[4..], [4, 4, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_overloaded_at_once() {
    let (manager, _) = one_slow_worker(1000, |s| s.pool.max_queue_length = 2).await;
    let running = spawn_embed(&manager, vec!["running".into()]);
    busy(&manager).await;
    let waiting = [
        spawn_embed(&manager, vec!["w1".into()]),
        spawn_embed(&manager, vec!["w2".into()]),
    ];
    queued(&manager, 2).await;
    let started = std::time::Instant::now();
    let refused = spawn_embed(&manager, vec!["one too many".into()])
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(refused, HostError::Overloaded(_)), "{refused}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused without waiting"
    );
    assert_eq!(manager.status().worker_pool.pending_tasks, 2);
    running.await.unwrap().unwrap();
    for w in waiting {
        w.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_waiting_past_the_queue_timeout_times_out() {
    let (manager, backend) =
        one_slow_worker(400, |s| s.pool.queue_timeout = Duration::from_millis(100)).await;
    let running = spawn_embed(&manager, vec!["slow".into()]);
    busy(&manager).await;
    let err = spawn_embed(&manager, vec!["late".into()])
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, HostError::Timeout(_)), "{err}");
    // The batch that had started finishes normally; the timed-out text never runs.
    running.await.unwrap().unwrap();
    pause(100).await;
    assert_eq!(backend.batch_sizes(), [1]);
    assert_eq!(manager.status().worker_pool.pending_tasks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_that_went_away_are_dropped_from_the_queue() {
    let (manager, backend) = one_slow_worker(300, |_| {}).await;
    let running = spawn_embed(&manager, vec!["running".into()]);
    busy(&manager).await;
    let gone = spawn_embed(&manager, (0..5).map(|i| format!("gone {i}")).collect());
    queued(&manager, 1).await;
    gone.abort();
    let kept = spawn_embed(&manager, vec!["kept".into()]);
    running.await.unwrap().unwrap();
    assert_eq!(kept.await.unwrap().unwrap().vectors, [fake_vector("kept")]);
    assert_eq!(
        backend.batch_sizes(),
        [1, 1],
        "the abandoned texts never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disabled_pool_runs_one_cpu_worker_and_never_merges_requests() {
    let mut disabled = settings(&["auto", "cpu"], LoadBalancing::LeastBusy);
    disabled.pool.enabled = false;
    let backend = FakeBackend::with_delay(Duration::from_millis(200));
    let (manager, backend) = start(&[0, 1], disabled, backend);
    assert_eq!(worker_ids(&manager), ["cpu-0"]);
    assert!(!manager.status().worker_pool.enabled);
    let m = ModuleId::new(MODULE);
    manager
        .register(&m, "e", requirement(DevicePreference::Auto, 1))
        .await
        .unwrap();
    let callers: Vec<_> = (0..3)
        .map(|i| spawn_embed(&manager, vec![format!("{i} a"), format!("{i} b")]))
        .collect();
    for caller in callers {
        caller.await.unwrap().unwrap();
    }
    assert_eq!(
        backend.batch_sizes(),
        [2, 2, 2],
        "each request ran on its own"
    );
}

#[tokio::test]
async fn a_panicking_model_fails_its_batch_and_the_worker_carries_on() {
    let (manager, _) = one_slow_worker(0, |_| {}).await;
    let m = ModuleId::new(MODULE);
    let err = manager
        .embed(&m, "e", vec![PANIC_TEXT.into()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::InferenceFailed { reason, .. } if reason.contains("told to panic")),
        "{err}"
    );
    let fine = manager.embed(&m, "e", vec!["fine".into()]).await.unwrap();
    assert_eq!(fine.vectors, [fake_vector("fine")]);
}

/// Two GPUs and the cpu, where loading fails on `failing`.
fn failing_machine(failing: &[ComputeDevice]) -> (Arc<ModelManager>, Arc<FakeBackend>) {
    start(
        &[0, 1],
        settings(&["cuda", "cpu"], LoadBalancing::LeastBusy),
        FakeBackend::failing_on(failing),
    )
}

#[tokio::test]
async fn a_failed_preload_leaves_the_model_to_load_on_first_use_on_another_worker() {
    let (manager, backend) = failing_machine(&[ComputeDevice::Cuda(0)]);
    let m = ModuleId::new(MODULE);
    // Both GPUs match; the preload fails on cuda:0 and succeeds on cuda:1: not an error.
    let registered = manager
        .register(&m, "e", requirement(DevicePreference::Cuda, 2))
        .await
        .unwrap();
    assert!(registered.new_registration);
    assert_eq!(backend.failed_loads(), [ComputeDevice::Cuda(0)]);
    assert_eq!(manager.status().loaded_models[0].workers, ["cuda:1-0"]);
    let result = manager.embed(&m, "e", vec!["hi".into()]).await.unwrap();
    assert_eq!(result.vectors, [fake_vector("hi")]);
    assert_eq!(result.worker_id.as_deref(), Some("cuda:1-0"));

    // A preload that fails everywhere still registers; the first use loads the model.
    let (manager, backend) = failing_machine(&[ComputeDevice::Cuda(0), ComputeDevice::Cuda(1)]);
    manager
        .register(&m, "e", requirement(DevicePreference::Cuda, 2))
        .await
        .unwrap();
    assert_eq!(backend.failed_loads().len(), 2);
    assert!(!manager.status().loaded_models[0].loaded);
    let error = manager.embed(&m, "e", vec!["hi".into()]).await.unwrap_err();
    assert!(matches!(error, HostError::LoadFailed { .. }), "{error}");
}

#[tokio::test]
async fn a_worker_that_cannot_load_hands_the_batch_to_the_next_matching_worker() {
    let (manager, backend) = failing_machine(&[ComputeDevice::Cuda(0)]);
    let m = ModuleId::new(MODULE);
    manager
        .register(&m, "e", requirement(DevicePreference::Cuda, 0))
        .await
        .unwrap();
    // The least busy matching worker is cuda:0; it fails, cuda:1 answers the same call.
    let texts: Vec<String> = ["one", "two", "three"].map(String::from).to_vec();
    let result = manager.embed(&m, "e", texts.clone()).await.unwrap();
    let expected: Vec<Vec<f32>> = texts.iter().map(|t| fake_vector(t)).collect();
    assert_eq!(result.vectors, expected);
    assert_eq!(result.worker_id.as_deref(), Some("cuda:1-0"));
    assert_eq!(backend.failed_loads(), [ComputeDevice::Cuda(0)]);
    // Later calls go to the worker that holds the model; cuda:0 is not tried again.
    manager.embed(&m, "e", vec!["four".into()]).await.unwrap();
    assert_eq!(backend.failed_loads(), [ComputeDevice::Cuda(0)]);
    assert_eq!(backend.load_devices(), [ComputeDevice::Cuda(1)]);
    assert_eq!(manager.status().worker_pool.pending_tasks, 0);

    // A generation moves on the same way.
    let generator = ModelRequirement {
        device: DevicePreference::Cuda,
        ..ModelRequirement::new(ModelType::TextGeneration, SMOLLM2)
    };
    manager.register(&m, "g", generator).await.unwrap();
    let generation = manager
        .generate(&m, "g", Prompt::Text("hi".into()), Default::default())
        .await
        .unwrap();
    assert!(
        generation.text.starts_with("cuda:1 "),
        "{}",
        generation.text
    );
    assert_eq!(
        backend.failed_loads(),
        [ComputeDevice::Cuda(0), ComputeDevice::Cuda(0)]
    );
}

#[tokio::test]
async fn when_every_matching_worker_fails_the_call_fails_and_the_next_call_tries_again() {
    let (manager, backend) = failing_machine(&[ComputeDevice::Cuda(0), ComputeDevice::Cuda(1)]);
    let m = ModuleId::new(MODULE);
    manager
        .register(&m, "e", requirement(DevicePreference::Cuda, 0))
        .await
        .unwrap();
    for round in 1..=2 {
        let error = manager.embed(&m, "e", vec!["x".into()]).await.unwrap_err();
        assert!(matches!(error, HostError::LoadFailed { .. }), "{error}");
        // Each GPU was tried once per call; the cpu, which the requirement excludes, never.
        assert_eq!(backend.failed_loads().len(), 2 * round);
        assert_eq!(backend.loads(), 0);
    }
    let status = manager.status();
    assert_eq!(status.worker_pool.pending_tasks, 0);
    assert!(!status.loaded_models[0].loaded);
}

#[tokio::test]
async fn a_dropped_stream_stops_its_generation_and_frees_the_worker() {
    let (manager, backend) = start(
        &[],
        settings(&["cpu"], LoadBalancing::LeastBusy),
        FakeBackend::generating_every(Duration::from_millis(5)),
    );
    let m = ModuleId::new(MODULE);
    let generator = ModelRequirement::new(ModelType::TextGeneration, SMOLLM2);
    manager.register(&m, "g", generator).await.unwrap();
    let options = GenerationOptions {
        max_output_length: Some(4000),
        ..GenerationOptions::default()
    };
    let mut stream = manager
        .generate_stream(&m, "g", Prompt::Text("go".into()), options)
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap(), StreamEvent::Text("x".into()));
    drop(stream);
    // Stopped at the next piece: the count no longer grows (4000 pieces would take 20 s).
    pause(100).await;
    let stopped = backend.pieces();
    pause(300).await;
    assert_eq!(backend.pieces(), stopped);
    assert!(stopped < 100, "{stopped} pieces");
    // The worker is free for the next generation at once.
    let short = GenerationOptions {
        max_output_length: Some(3),
        ..GenerationOptions::default()
    };
    let next = manager
        .generate(&m, "g", Prompt::Text("go".into()), short)
        .await
        .unwrap();
    assert_eq!(next.text, "xxx");
}

/// A machine with one GPU and a CPU, whose backend runs text generation on the CPU only.
fn generation_on_cpu_only(devices: &[&str]) -> (Arc<ModelManager>, Arc<FakeBackend>) {
    start(
        &[0],
        settings(devices, LoadBalancing::LeastBusy),
        FakeBackend::cpu_only(&[ModelType::TextGeneration]),
    )
}

fn generator(device: DevicePreference) -> ModelRequirement {
    ModelRequirement {
        device,
        preload_workers: 1,
        ..ModelRequirement::new(ModelType::TextGeneration, SMOLLM2)
    }
}

#[tokio::test]
async fn a_model_goes_only_to_devices_its_backend_runs_it_on_and_the_status_says_why() {
    let (manager, backend) = generation_on_cpu_only(&["auto", "cpu"]);
    let m = ModuleId::new(MODULE);
    // `auto` puts what the GPU can run on the GPU, and the rest on the cpu.
    manager
        .register(&m, "e", requirement(DevicePreference::Auto, 1))
        .await
        .unwrap();
    manager
        .register(&m, "g", generator(DevicePreference::Auto))
        .await
        .unwrap();
    assert_eq!(
        backend.load_devices(),
        [ComputeDevice::Cuda(0), ComputeDevice::Cpu]
    );
    let generation = manager
        .generate(&m, "g", Prompt::Text("hi".into()), Default::default())
        .await
        .unwrap();
    assert!(generation.text.starts_with("cpu "), "{}", generation.text);
    let status = manager.status();
    let [e, g] = &status.loaded_models[..] else {
        panic!("{:?}", status.loaded_models)
    };
    assert_eq!((e.device.as_str(), g.device.as_str()), ("cuda:0", "cpu"));
    assert!(e.placement_note.is_none());
    let note = g.placement_note.as_deref().unwrap();
    assert!(note.contains("auto") && note.contains("cpu only"), "{note}");
    // The backend was never asked to load the generator on the GPU.
    assert!(backend.failed_loads().is_empty());

    // A requirement naming the GPU gets the cpu too, with the reason.
    manager
        .register(&m, "g-gpu", generator(DevicePreference::CudaOrdinal(0)))
        .await
        .unwrap();
    let status = manager.status();
    let on_gpu = status
        .loaded_models
        .iter()
        .find(|s| s.model_id == "g-gpu")
        .unwrap();
    assert_eq!(on_gpu.device, "cpu");
    let note = on_gpu.placement_note.as_deref().unwrap();
    assert!(note.contains("cannot run on cuda:0"), "{note}");
    assert!(backend.failed_loads().is_empty());
}

#[tokio::test]
async fn a_model_no_worker_can_run_is_refused_at_registration() {
    let (manager, backend) = generation_on_cpu_only(&["cuda"]);
    let m = ModuleId::new(MODULE);
    let error = manager
        .register(&m, "g", generator(DevicePreference::Auto))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, HostError::DeviceUnavailable(m) if m.contains("cpu only") && m.contains("cuda:0")),
        "{error}"
    );
    assert_eq!(backend.loads() + backend.failed_loads().len(), 0);
    assert!(manager.status().loaded_models.is_empty());
    // The same host serves what its GPU can run.
    manager
        .register(&m, "e", requirement(DevicePreference::Auto, 1))
        .await
        .unwrap();
    assert_eq!(backend.load_devices(), [ComputeDevice::Cuda(0)]);
}
