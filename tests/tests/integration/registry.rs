//! Registry semantics on the manager, with a fake backend (the numbers do not matter here):
//! sharing, reference counts, release, ownership, conflicts, preloading and idle unloading.

use std::sync::Arc;
use std::time::Duration;

use modelhost::manager::ModelManager;
use modelhost::types::ModuleId;
use modelhost::types::error::HostError;
use modelhost::types::requirement::{ModelRequirement, ModelType};
use modelhost_tests::fake::{FAKE_DIMENSION, FakeBackend, SimulatedDevices, fake_vector};
use modelhost_tests::{FIXTURE_ORG, MINILM, test_settings};

fn manager(idle: Duration) -> (Arc<ModelManager>, Arc<FakeBackend>) {
    let backend = Arc::new(FakeBackend::default());
    let manager = modelhost_tests::manager(
        backend.clone(),
        &SimulatedDevices(vec![]),
        test_settings(idle),
    );
    (manager, backend)
}

fn embedding(name: &str) -> ModelRequirement {
    ModelRequirement::new(ModelType::Embedding, name)
}

fn module(name: &str) -> ModuleId {
    ModuleId::new(name)
}

const LONG: Duration = Duration::from_secs(300);

#[tokio::test]
async fn modules_share_an_id_and_count_references_per_module() {
    let (manager, _) = manager(LONG);
    let (a, b) = (module("a"), module("b"));
    let first = manager
        .register(&a, "emb", embedding(MINILM))
        .await
        .unwrap();
    assert!(first.new_registration);
    assert_eq!(
        (
            first.reference_count,
            first.total_reference_count,
            first.dimension
        ),
        (1, 1, Some(FAKE_DIMENSION))
    );
    let again = manager
        .register(&a, "emb", embedding(MINILM))
        .await
        .unwrap();
    assert_eq!(
        (
            again.new_registration,
            again.reference_count,
            again.total_reference_count
        ),
        (false, 2, 2)
    );
    let other = manager
        .register(&b, "emb", embedding(MINILM))
        .await
        .unwrap();
    // The specification's count is the id's, across modules: the second module sees 3 here.
    assert_eq!(
        (
            other.new_registration,
            other.reference_count,
            other.total_reference_count
        ),
        (false, 1, 3)
    );

    let status = manager.status();
    assert_eq!(status.loaded_models.len(), 1);
    assert_eq!(status.total_loaded_models, 1);
    assert_eq!(status.loaded_models[0].reference_count, 3);
    let refs: Vec<(&str, u32)> = status
        .module_references
        .iter()
        .map(|r| (r.module_id.as_str(), r.reference_count))
        .collect();
    assert_eq!(refs, [("a", 2), ("b", 1)]);

    let released = manager.release(&a, "emb").unwrap();
    assert_eq!(
        (released.reference_count, released.total_reference_count),
        (1, 2)
    );
    let released = manager.release(&b, "emb").unwrap();
    assert_eq!(
        (released.reference_count, released.total_reference_count),
        (0, 1)
    );
    let released = manager.release(&a, "emb").unwrap();
    assert_eq!(
        (released.reference_count, released.total_reference_count),
        (0, 0)
    );
    assert!(manager.status().loaded_models.is_empty());
    assert!(matches!(
        manager.release(&a, "emb"),
        Err(HostError::NotRegistered { .. })
    ));
}

#[tokio::test]
async fn ids_naming_the_same_model_share_one_copy_of_the_weights() {
    let (manager, backend) = manager(LONG);
    let (a, b) = (module("a"), module("b"));
    manager.register(&a, "x", embedding(MINILM)).await.unwrap();
    manager.register(&b, "y", embedding(MINILM)).await.unwrap();
    let x = manager.embed(&a, "x", vec!["hello".into()]).await.unwrap();
    let y = manager
        .embed(&b, "y", vec!["hello world".into()])
        .await
        .unwrap();
    assert_eq!(x.vectors, [fake_vector("hello")]);
    assert_eq!(y.vectors, [fake_vector("hello world")]);
    assert_eq!(backend.loads(), 1);
    let status = manager.status();
    assert_eq!((status.total_loaded_models, status.loaded_weights), (2, 1));

    // Another model gets its own copy.
    let other = format!("{FIXTURE_ORG}/categorium-bert-cls-en");
    manager.register(&a, "z", embedding(&other)).await.unwrap();
    manager.embed(&a, "z", vec!["x".into()]).await.unwrap();
    assert_eq!(backend.loads(), 2);
    let status = manager.status();
    assert_eq!((status.total_loaded_models, status.loaded_weights), (3, 2));
}

#[tokio::test]
async fn a_module_can_only_use_and_release_its_own_ids() {
    let (manager, _) = manager(LONG);
    let (owner, stranger) = (module("owner"), module("stranger"));
    manager
        .register(&owner, "private", embedding(MINILM))
        .await
        .unwrap();
    let use_err = manager
        .embed(&stranger, "private", vec!["x".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(use_err, HostError::NotRegistered { .. }),
        "{use_err}"
    );
    let release_err = manager.release(&stranger, "private").unwrap_err();
    assert!(
        matches!(release_err, HostError::NotRegistered { .. }),
        "{release_err}"
    );
    assert_eq!(manager.status().loaded_models[0].reference_count, 1);
    let unknown = manager
        .embed(&owner, "unknown", vec!["x".into()])
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, HostError::NotRegistered { .. }),
        "{unknown}"
    );
}

#[tokio::test]
async fn conflicting_requirements_under_one_id_are_refused() {
    let (manager, _) = manager(LONG);
    let (a, b) = (module("a"), module("b"));
    manager
        .register(&a, "emb", embedding(MINILM))
        .await
        .unwrap();
    let mut different = embedding(MINILM);
    different.batch_size = Some(8);
    different.cache_embeddings = false;
    let err = manager.register(&b, "emb", different).await.unwrap_err();
    match err {
        HostError::Conflict { fields, .. } => {
            assert_eq!(fields, ["batch_size", "cache_embeddings"])
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(manager.status().loaded_models[0].reference_count, 1);
}

#[tokio::test]
async fn concurrent_first_registrations_create_the_id_once() {
    let (manager, _) = manager(LONG);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let manager = manager.clone();
            tokio::spawn(async move {
                manager
                    .register(&module(&format!("m{i}")), "emb", embedding(MINILM))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        created += task.await.unwrap().new_registration as usize;
    }
    assert_eq!(created, 1);
    assert_eq!(manager.status().loaded_models[0].reference_count, 8);
}

#[tokio::test]
async fn models_load_lazily_or_at_registration_when_preloaded() {
    let (manager, backend) = manager(LONG);
    let a = module("a");
    manager
        .register(&a, "lazy", embedding(MINILM))
        .await
        .unwrap();
    assert_eq!(backend.loads(), 0);
    assert!(!manager.status().loaded_models[0].loaded);
    manager.embed(&a, "lazy", vec![]).await.unwrap();
    assert_eq!(backend.loads(), 0, "an empty call loads nothing");

    let mut preloaded = embedding(&format!("{FIXTURE_ORG}/categorium-bert-cls-en"));
    preloaded.preload_workers = 1;
    manager.register(&a, "eager", preloaded).await.unwrap();
    assert_eq!(backend.loads(), 1);
}

#[tokio::test]
async fn idle_models_are_unloaded_and_reloaded_on_next_use() {
    let idle = Duration::from_millis(100);
    let (manager, backend) = manager(idle);
    let a = module("a");
    manager
        .register(&a, "emb", embedding(MINILM))
        .await
        .unwrap();
    manager.embed(&a, "emb", vec!["x".into()]).await.unwrap();
    assert_eq!(backend.live(), 1);

    // Referenced models stay, however long they are idle.
    tokio::time::sleep(idle * 4).await;
    assert_eq!(backend.live(), 1);
    assert_eq!(manager.status().loaded_weights, 1);

    manager.release(&a, "emb").unwrap();
    tokio::time::sleep(idle * 4).await;
    assert_eq!(backend.live(), 0, "the weights were freed");
    assert_eq!(manager.status().loaded_weights, 0);

    manager
        .register(&a, "emb", embedding(MINILM))
        .await
        .unwrap();
    // A text the cache does not hold, so the model must run again.
    manager.embed(&a, "emb", vec!["y".into()]).await.unwrap();
    assert_eq!((backend.loads(), backend.live()), (2, 1));
}

#[tokio::test]
async fn re_registering_before_the_idle_time_reuses_the_loaded_weights() {
    let (manager, backend) = manager(Duration::from_secs(60));
    let a = module("a");
    manager
        .register(&a, "emb", embedding(MINILM))
        .await
        .unwrap();
    manager.embed(&a, "emb", vec!["x".into()]).await.unwrap();
    manager.release(&a, "emb").unwrap();
    assert_eq!(manager.unload_idle(), 0, "not idle long enough yet");
    manager
        .register(&a, "emb2", embedding(MINILM))
        .await
        .unwrap();
    // Another text: "x" would be answered from the cache without touching the weights.
    let second = manager.embed(&a, "emb2", vec!["y".into()]).await.unwrap();
    assert!(!second.cached, "the second call must run the model");
    assert_eq!(backend.loads(), 1);
}

#[tokio::test]
async fn a_departing_module_releases_everything_it_holds() {
    let (manager, _) = manager(LONG);
    let (a, b) = (module("a"), module("b"));
    manager.register(&a, "x", embedding(MINILM)).await.unwrap();
    manager.register(&a, "x", embedding(MINILM)).await.unwrap();
    manager.register(&a, "y", embedding(MINILM)).await.unwrap();
    manager.register(&b, "y", embedding(MINILM)).await.unwrap();
    assert_eq!(manager.release_module(&a), 3);
    let status = manager.status();
    assert_eq!(status.loaded_models.len(), 1);
    assert_eq!(status.loaded_models[0].model_id, "y");
    assert_eq!(status.module_references.len(), 1);
    assert_eq!(status.module_references[0].module_id, "b");
}
