//! Batching across guest modules: concurrent modules sending single texts to the real MiniLM get
//! exactly their own results, in order; a full queue and a long wait reach guests as
//! `overloaded` and `timeout`.

use std::sync::Arc;
use std::time::Duration;

use modelhost::backends::CandleBackend;
use modelhost::types::results::ServiceStatus;
use modelhost_tests::fake::FakeBackend;
use modelhost_tests::{
    MINILM, code, max_abs_diff, probe, reference_embeddings, runtime_with, test_settings,
};
use serde_json::{Value, json};

fn register() -> Value {
    json!({"op": "register", "id": "e", "requirement": {"model_type": "embedding", "name": MINILM}})
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_modules_get_exactly_their_own_results_in_order() {
    let mut settings = test_settings(Duration::from_secs(300));
    settings.cache.enabled = false;
    let runtime = runtime_with(Arc::new(CandleBackend), settings);
    let reference = reference_embeddings();
    let shares: Vec<&[(String, Vec<f32>)]> = reference[..64].chunks(16).collect();
    let run = |i: usize| {
        let mut commands = vec![register()];
        commands.extend(
            shares[i]
                .iter()
                .map(|(t, _)| json!({"op": "embed", "id": "e", "texts": [t]})),
        );
        let runtime = &runtime;
        async move {
            probe(runtime, &format!("sender{i}"), "", &commands)
                .await
                .unwrap()
                .0
        }
    };
    let (a, b, c, d) = tokio::join!(run(0), run(1), run(2), run(3));
    for (i, replies) in [a, b, c, d].iter().enumerate() {
        assert_eq!(replies.len(), 17);
        for ((text, expected), reply) in shares[i].iter().zip(&replies[1..]) {
            let got: Vec<Vec<f32>> =
                serde_json::from_value(reply["ok"]["embeddings"].clone()).unwrap();
            let diff = max_abs_diff(&got[0], expected);
            assert!(diff <= 1e-4, "module {i}, {text:?}: differs by {diff}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_see_overloaded_and_timeout() {
    let mut settings = test_settings(Duration::from_secs(300));
    settings.cache.enabled = false;
    settings.pool.max_queue_length = 1;
    settings.pool.queue_timeout = Duration::from_secs(2);
    settings.pool.devices = vec!["cpu".parse().unwrap()];
    let backend = FakeBackend::with_delay(Duration::from_secs(3));
    let runtime = runtime_with(Arc::new(backend), settings);
    let embed = |text: &str| {
        vec![
            register(),
            json!({"op": "embed", "id": "e", "texts": [text]}),
        ]
    };
    // Each module starts once the host is in the state the previous one should have caused, so
    // the order holds however busy the machine is.
    let when = |ready: fn(&ServiceStatus) -> bool, name: &'static str, commands: Vec<Value>| {
        let runtime = &runtime;
        async move {
            while !ready(&runtime.manager().status()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            probe(runtime, name, "", &commands).await.unwrap().0
        }
    };
    let (running, waiting, refused) = tokio::join!(
        when(|_| true, "running", embed("first")),
        when(
            |s| s.worker_pool.active_workers == 1,
            "waiting",
            embed("second")
        ),
        when(
            |s| s.worker_pool.pending_tasks == 1,
            "refused",
            embed("third")
        ),
    );
    assert_eq!(code(&running[1]), "ok", "{running:?}");
    assert_eq!(code(&waiting[1]), "timeout", "{waiting:?}");
    assert_eq!(code(&refused[1]), "overloaded", "{refused:?}");
}
