//! Device memory budgets on a simulated machine with small budgets (the fake backend reports the
//! estimates): models are placed where they fit, unreferenced models are evicted least recently
//! used first, `auto` falls back from the GPUs to the CPU, and what does not fit anywhere fails
//! with `out-of-memory`, saying what it needs and what is free.

use std::sync::Arc;
use std::time::Duration;

use modelhost::manager::{ManagerSettings, ModelManager};
use modelhost::types::MemoryEstimate;
use modelhost::types::ModuleId;
use modelhost::types::error::HostError;
use modelhost::types::requirement::{DevicePreference, ModelRequirement, ModelType};
use modelhost_tests::fake::{FakeBackend, SimulatedMemory};
use modelhost_tests::{FIXTURE_ORG, MINILM, manager, test_settings};

const MIB: u64 = 1 << 20;

/// Four models of the test store, each with its estimate.
fn models() -> [(String, MemoryEstimate); 4] {
    let sized = |weights: u64, working: u64| MemoryEstimate {
        weights: weights * MIB,
        working: working * MIB,
        per_token: MIB,
    };
    [
        (MINILM.to_string(), sized(400, 300)),
        (
            format!("{FIXTURE_ORG}/categorium-bert-cls-en"),
            sized(400, 0),
        ),
        (
            format!("{FIXTURE_ORG}/distilbert-tiny-random-cls"),
            sized(400, 0),
        ),
        (
            format!("{FIXTURE_ORG}/t5-tiny-random-realvocab"),
            sized(100, 0),
        ),
    ]
}

/// A manager on a machine with `cpu` MiB of RAM and GPUs of `gpus` MiB, all usable by models.
fn machine(cpu: u64, gpus: &[u64], change: impl FnOnce(&mut ManagerSettings)) -> Arc<ModelManager> {
    let sizes = models();
    let sizes: Vec<(&str, MemoryEstimate)> = sizes.iter().map(|(n, e)| (n.as_str(), *e)).collect();
    let mut settings = test_settings(Duration::from_secs(3600));
    settings.pool.memory.cpu_fraction = 1.0;
    settings.pool.memory.gpu_fraction = 1.0;
    change(&mut settings);
    let inventory = SimulatedMemory {
        cpu: cpu * MIB,
        gpus: gpus.iter().map(|g| g * MIB).collect(),
    };
    let backend = FakeBackend::with_sizes(&sizes).delayed(Duration::from_millis(300));
    manager(Arc::new(backend), &inventory, settings)
}

fn requirement(model: usize, device: DevicePreference) -> ModelRequirement {
    ModelRequirement {
        device,
        ..ModelRequirement::new(ModelType::Embedding, models()[model].0.clone())
    }
}

/// Registers `id` for module `m` with model number `model` and device `auto`.
async fn place(manager: &ModelManager, id: &str, model: usize) {
    let requirement = requirement(model, DevicePreference::Auto);
    manager
        .register(&ModuleId::new("m"), id, requirement)
        .await
        .unwrap();
}

/// (device, budget MiB, used MiB, evictions) of every device.
fn devices(manager: &ModelManager) -> Vec<(String, u64, u64, u64)> {
    let status = manager.status();
    status
        .worker_pool
        .devices
        .iter()
        .map(|d| {
            let budget = d.budget_bytes.unwrap_or(0) / MIB;
            (d.device.clone(), budget, d.used_bytes / MIB, d.evictions)
        })
        .collect()
}

fn placed_on(manager: &ModelManager, id: &str) -> String {
    let status = manager.status();
    let model = status
        .loaded_models
        .iter()
        .find(|m| m.model_id == id)
        .unwrap();
    model.device.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn models_are_placed_where_they_fit_and_evicted_least_recently_used_first() {
    let manager = machine(1000, &[], |_| {});
    let m = ModuleId::new("m");
    let auto = DevicePreference::Auto;
    place(&manager, "a", 0).await;
    place(&manager, "b", 1).await;
    assert_eq!(devices(&manager), [("cpu".into(), 1000, 800, 0)]);
    let status = manager.status();
    assert_eq!(status.loaded_models[0].accounted_bytes, 400 * MIB);
    assert_eq!(status.loaded_models[0].estimated_bytes.working, 300 * MIB);

    // Both are referenced: the third does not fit, and nothing is evicted.
    let err = manager
        .register(&m, "c", requirement(2, auto))
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::OutOfMemory { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("needs 400.0 MiB") && text.contains("cpu: 200.0 MiB free of 1000.0 MiB"),
        "{text}"
    );
    assert_eq!(devices(&manager)[0].2, 800);

    // Unreferenced, b is evicted before a would be (a was used more recently).
    manager.embed(&m, "a", vec!["x".into()]).await.unwrap();
    manager.release(&m, "b").unwrap();
    place(&manager, "keep", 3).await;
    manager.release(&m, "a").unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    manager.embed(&m, "keep", vec!["x".into()]).await.unwrap();
    // 900 used: a (400, unreferenced, used second), b (400, unreferenced, used first), keep (100).
    assert_eq!(devices(&manager)[0].2, 900);
    place(&manager, "c", 2).await;
    assert_eq!(devices(&manager), [("cpu".into(), 1000, 900, 1)]);
    let metrics = manager.metrics_text();
    for line in [
        "modelhost_evictions_total{device=\"cpu\"} 1",
        "modelhost_device_memory_budget_bytes{device=\"cpu\"} 1048576000",
        "modelhost_device_memory_used_bytes{device=\"cpu\"} 943718400",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    let status = manager.status();
    let loaded: Vec<&str> = status
        .loaded_models
        .iter()
        .map(|m| m.model_id.as_str())
        .collect();
    assert_eq!(loaded, ["c", "keep"]);
    // a is still accounted (evicted only when needed), b is gone.
    // Had a been evicted instead of b, placing it again would evict b now: a second eviction.
    place(&manager, "a-again", 0).await;
    assert_eq!(
        devices(&manager),
        [("cpu".into(), 1000, 900, 1)],
        "a was still in memory"
    );

    // Everything released and unloaded: the accounts return to zero.
    for id in ["c", "keep", "a-again"] {
        manager.release(&m, id).unwrap();
    }
    let fresh = machine(1000, &[], |s| s.idle_unload = Duration::ZERO);
    place(&fresh, "a", 0).await;
    fresh.release(&m, "a").unwrap();
    fresh.unload_idle();
    assert_eq!(devices(&fresh)[0].2, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_falls_back_from_full_gpus_to_the_cpu_and_explicit_devices_do_not() {
    let gpu = |settings: &mut ManagerSettings| {
        settings.pool.devices = vec![DevicePreference::Auto, DevicePreference::Cpu];
    };
    let manager = machine(2000, &[500], gpu);
    let m = ModuleId::new("m");
    place(&manager, "a", 0).await;
    assert_eq!(placed_on(&manager, "a"), "cuda:0");
    place(&manager, "b", 1).await;
    assert_eq!(placed_on(&manager, "b"), "cpu");
    let on_gpu = requirement(2, DevicePreference::CudaOrdinal(0));
    let err = manager.register(&m, "c", on_gpu).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("cuda:0: 100.0 MiB free of 500.0 MiB"),
        "{err}"
    );
    assert_eq!(
        devices(&manager),
        [("cuda:0".into(), 500, 400, 0), ("cpu".into(), 2000, 400, 0)]
    );

    // A host-wide preference for the cpu sends `auto` there even with room on the GPU.
    let manager = machine(2000, &[500], |s| {
        gpu(s);
        s.pool.device_preference = DevicePreference::Cpu;
    });
    place(&manager, "t5", 3).await;
    assert_eq!(placed_on(&manager, "t5"), "cpu");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_gpu_growth_working_memory_is_accounted_at_placement() {
    for (growth, used) in [(true, 400), (false, 700)] {
        let manager = machine(2000, &[1000], |s| {
            s.pool.devices = vec![DevicePreference::Auto];
            s.pool.memory.gpu_growth = growth;
        });
        place(&manager, "a", 0).await;
        assert_eq!(devices(&manager)[0], ("cuda:0".into(), 1000, used, 0));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn working_memory_is_accounted_while_a_batch_runs() {
    let manager = machine(2000, &[], |_| {});
    let m = ModuleId::new("m");
    place(&manager, "a", 0).await;
    let running = {
        let manager = manager.clone();
        let m = m.clone();
        tokio::spawn(async move { manager.embed(&m, "a", vec!["one two three".into()]).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let during = manager.status().worker_pool.devices[0].clone();
    running.await.unwrap().unwrap();
    let after = manager.status().worker_pool.devices[0].clone();
    assert!(during.working_bytes >= MIB, "{during:?}");
    assert_eq!(during.used_bytes, 400 * MIB + during.working_bytes);
    assert_eq!((after.working_bytes, after.used_bytes), (0, 400 * MIB));
}

#[tokio::test]
async fn each_worker_on_a_device_is_accounted_its_own_copy_of_the_weights() {
    // Two workers on one 1000 MiB GPU: a 400 MiB model may load on both, so it is accounted
    // twice; a second such model no longer fits there and goes to the CPU.
    let manager = machine(2000, &[1000], |s| {
        s.pool.devices = vec![DevicePreference::CudaOrdinal(0), DevicePreference::Cpu];
        s.pool.num_workers = 3;
    });
    place(&manager, "a", 1).await;
    place(&manager, "b", 2).await;
    let status = manager.status();
    let accounted: Vec<(&str, &str, u64)> = status
        .loaded_models
        .iter()
        .map(|m| {
            (
                m.model_id.as_str(),
                m.device.as_str(),
                m.accounted_bytes / MIB,
            )
        })
        .collect();
    assert_eq!(accounted, [("a", "cuda:0", 800), ("b", "cpu", 400)]);
    assert!(
        status
            .loaded_models
            .iter()
            .all(|m| m.measured_bytes.is_none())
    );
}
