//! The service status in the Model Manager specification's shape, as a guest sees it through the
//! WIT (every part: pool, cache, models keyed by id, totals), registration counts across modules,
//! and a host whose configuration turns the model manager off.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use modelhost_tests::fake::FakeBackend;
use modelhost_tests::{MINILM, code, probe, runtime_with, test_settings};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn register(id: &str) -> Value {
    json!({"op": "register", "id": id, "requirement": {"model_type": "embedding", "name": MINILM}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_sees_the_whole_status_in_the_specifications_shape() {
    let runtime = runtime_with(
        Arc::new(FakeBackend::default()),
        test_settings(Duration::from_secs(300)),
    );
    let before = now();
    let commands = [
        register("e"),
        register("same-weights"),
        json!({"op": "embed", "id": "e", "texts": ["x", "y"]}),
        json!({"op": "embed", "id": "e", "texts": ["x", "z"]}),
    ];
    let (first, _a) = probe(&runtime, "a", "", &commands).await.unwrap();
    assert!(first.iter().all(|r| code(r) == "ok"), "{first:?}");
    assert_eq!(first[0]["ok"]["total_reference_count"], 1);
    // The second module to register an id sees the id's count across modules.
    let (second, _b) = probe(&runtime, "b", "", &[register("e"), json!({"op": "status"})])
        .await
        .unwrap();
    let after = now();
    assert_eq!(second[0]["ok"]["reference_count"], 1);
    assert_eq!(second[0]["ok"]["total_reference_count"], 2);

    let seen = &second[1]["ok"];
    assert_eq!(seen["initialized"], true);
    let pool = &seen["worker_pool"];
    assert_eq!(
        (
            &pool["enabled"],
            &pool["num_workers"],
            &pool["active_workers"]
        ),
        (&json!(true), &json!(1), &json!(0))
    );
    assert_eq!(pool["pending_tasks"], 0);
    assert_eq!(pool["workers"][0]["worker_id"], "cpu-0");
    assert_eq!(pool["workers"][0]["loaded_models"], 1);
    // Four texts looked up, "x" once found: a quarter of the lookups hit; three vectors held.
    let cache = &seen["embedding_cache"];
    assert_eq!(cache["enabled"], true);
    assert_eq!(cache["cached_count"], 3);
    assert_eq!(cache["hit_rate"], 0.25);
    // Models keyed by id; two ids, one copy of the weights.
    let models = seen["loaded_models"].as_object().unwrap();
    assert_eq!(
        models.keys().collect::<Vec<_>>(),
        ["e", "same-weights"],
        "{seen}"
    );
    assert_eq!(seen["total_loaded_models"], 2);
    assert_eq!(seen["loaded_weights"], 1);
    let e = &models["e"];
    assert_eq!(e["reference_count"], 2);
    assert_eq!(e["loaded"], true);
    assert_eq!(e["source"], "worker_pool");
    assert_eq!(e["device"], "cpu");
    assert_eq!(e["model_name"], MINILM);
    let accessed = e["last_accessed"].as_f64().unwrap();
    assert!(
        (before..=after).contains(&accessed),
        "{before} <= {accessed} <= {after}"
    );
    assert_eq!(models["same-weights"]["loaded"], true);
    assert_eq!(seen["module_references"].as_array().unwrap().len(), 3);

    // The host's own view (what `/status` serves) says the same.
    let host = serde_json::to_value(runtime.manager().status()).unwrap();
    for path in [
        "/initialized",
        "/worker_pool/num_workers",
        "/embedding_cache/cached_count",
        "/embedding_cache/hit_rate",
        "/total_loaded_models",
        "/loaded_weights",
        "/loaded_models/e/reference_count",
        "/loaded_models/e/source",
    ] {
        assert_eq!(host.pointer(path), seen.pointer(path), "{path}");
    }
    // JSON text parsing may round the last bit of a float.
    let host_accessed = host["loaded_models"]["e"]["last_accessed"]
        .as_f64()
        .unwrap();
    assert!(
        (host_accessed - accessed).abs() < 1e-6,
        "{host_accessed} vs {accessed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_with_the_manager_turned_off_refuses_registrations_and_says_so() {
    let mut settings = test_settings(Duration::from_secs(300));
    settings.enabled = false;
    let runtime = runtime_with(Arc::new(FakeBackend::default()), settings);
    let (replies, _) = probe(&runtime, "m", "", &[register("e"), json!({"op": "status"})])
        .await
        .unwrap();
    assert_eq!(code(&replies[0]), "not-allowed");
    let message = replies[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("enabled = true"), "{message}");
    assert_eq!(replies[1]["ok"]["initialized"], false);
    assert_eq!(replies[1]["ok"]["total_loaded_models"], 0);
}
