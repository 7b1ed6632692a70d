//! The embedding cache with a fake backend: hits, partial hits, hit rate, TTL expiry, the size
//! bound, bypass per requirement, and keys that keep different input limits apart.

use std::sync::Arc;
use std::time::Duration;

use modelhost::manager::{ManagerSettings, ModelManager};
use modelhost::types::ModuleId;
use modelhost::types::requirement::{ModelRequirement, ModelType};
use modelhost_tests::fake::{FakeBackend, SimulatedDevices, fake_vector};
use modelhost_tests::{MINILM, test_settings};

fn start(configure: impl FnOnce(&mut ManagerSettings)) -> (Arc<ModelManager>, Arc<FakeBackend>) {
    let mut settings = test_settings(Duration::from_secs(300));
    configure(&mut settings);
    let backend = Arc::new(FakeBackend::default());
    let manager = modelhost_tests::manager(backend.clone(), &SimulatedDevices(vec![]), settings);
    (manager, backend)
}

fn texts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn texts_run(backend: &FakeBackend) -> usize {
    backend.batch_sizes().iter().sum()
}

#[tokio::test]
async fn whole_and_partial_hits_skip_the_model_and_count_in_the_hit_rate() {
    let (manager, backend) = start(|_| {});
    let m = ModuleId::new("m");
    let requirement = ModelRequirement::new(ModelType::Embedding, MINILM);
    manager.register(&m, "e", requirement).await.unwrap();

    let first = manager.embed(&m, "e", texts(&["a", "b"])).await.unwrap();
    assert!(!first.cached);
    let again = manager.embed(&m, "e", texts(&["a", "b"])).await.unwrap();
    assert!(again.cached);
    assert_eq!(again.vectors, first.vectors);
    assert_eq!(again.worker_id, None, "no worker ran");
    let partial = manager.embed(&m, "e", texts(&["c", "a"])).await.unwrap();
    assert!(!partial.cached);
    assert_eq!(partial.vectors, [fake_vector("c"), fake_vector("a")]);
    assert_eq!(texts_run(&backend), 3, "a, b, then only c");

    let status = manager.status().embedding_cache;
    assert!(status.enabled);
    assert_eq!(status.cached_count, 3);
    assert!(
        (status.hit_rate - 0.5).abs() < 1e-9,
        "3 hits in 6 lookups: {}",
        status.hit_rate
    );
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let (manager, backend) = start(|s| s.cache.ttl = Duration::from_millis(150));
    let m = ModuleId::new("m");
    manager
        .register(&m, "e", ModelRequirement::new(ModelType::Embedding, MINILM))
        .await
        .unwrap();
    manager.embed(&m, "e", texts(&["a"])).await.unwrap();
    assert!(manager.embed(&m, "e", texts(&["a"])).await.unwrap().cached);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!manager.embed(&m, "e", texts(&["a"])).await.unwrap().cached);
    assert_eq!(texts_run(&backend), 2);
}

#[tokio::test]
async fn the_cache_holds_at_most_its_size() {
    let (manager, _) = start(|s| s.cache.max_entries = 3);
    let m = ModuleId::new("m");
    manager
        .register(&m, "e", ModelRequirement::new(ModelType::Embedding, MINILM))
        .await
        .unwrap();
    let many: Vec<String> = (0..20).map(|i| format!("text {i}")).collect();
    manager.embed(&m, "e", many).await.unwrap();
    let count = manager.status().embedding_cache.cached_count;
    assert!((1..=3).contains(&count), "{count} entries");
}

#[tokio::test]
async fn a_requirement_can_bypass_the_cache() {
    let (manager, backend) = start(|_| {});
    let m = ModuleId::new("m");
    let uncached = ModelRequirement {
        cache_embeddings: false,
        ..ModelRequirement::new(ModelType::Embedding, MINILM)
    };
    manager.register(&m, "e", uncached).await.unwrap();
    for _ in 0..3 {
        assert!(!manager.embed(&m, "e", texts(&["a"])).await.unwrap().cached);
    }
    assert_eq!(texts_run(&backend), 3);
    assert_eq!(manager.status().embedding_cache.cached_count, 0);
}

#[tokio::test]
async fn different_input_limits_do_not_share_entries() {
    let (manager, backend) = start(|_| {});
    let m = ModuleId::new("m");
    let full = ModelRequirement::new(ModelType::Embedding, MINILM);
    let short = ModelRequirement {
        max_input_length: Some(4),
        ..full.clone()
    };
    manager.register(&m, "full", full).await.unwrap();
    manager.register(&m, "short", short).await.unwrap();
    let long = texts(&["a long text"]);
    let a = manager.embed(&m, "full", long.clone()).await.unwrap();
    let b = manager.embed(&m, "short", long.clone()).await.unwrap();
    assert!(!b.cached);
    assert_ne!(a.vectors, b.vectors, "the short id sees only 4 tokens");
    assert!(manager.embed(&m, "full", long).await.unwrap().cached);
    assert_eq!(texts_run(&backend), 2);
}

#[tokio::test]
async fn a_disabled_cache_reports_so() {
    let (manager, backend) = start(|s| s.cache.enabled = false);
    let m = ModuleId::new("m");
    manager
        .register(&m, "e", ModelRequirement::new(ModelType::Embedding, MINILM))
        .await
        .unwrap();
    manager.embed(&m, "e", texts(&["a"])).await.unwrap();
    assert!(!manager.embed(&m, "e", texts(&["a"])).await.unwrap().cached);
    assert_eq!(texts_run(&backend), 2);
    let status = manager.status().embedding_cache;
    assert!(!status.enabled);
    assert_eq!((status.cached_count, status.hit_rate), (0, 0.0));
}
