//! Generation settings along the whole path (guest SDK, WIT, manager, worker) with a fake
//! generator that writes out the settings it was given: the requirement's own sampling settings
//! apply when a call gives none, a call's options override them one by one, and the host's
//! defaults (greedy, no top-k/top-p) apply when neither sets them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use modelhost_tests::fake::FakeBackend;
use modelhost_tests::{SMOLLM2, code, probe, runtime_with, test_settings};

#[tokio::test(flavor = "multi_thread")]
async fn a_requirements_sampling_settings_apply_unless_the_call_overrides_them() {
    let runtime = runtime_with(
        Arc::new(FakeBackend::default()),
        test_settings(Duration::from_secs(300)),
    );
    let tuned = json!({"model_type": "text-generation", "name": SMOLLM2, "temperature": 0.7,
        "top_k": 5, "top_p": 0.9, "repetition_penalty": 1.3, "max_output_length": 16});
    let plain = json!({"model_type": "text-generation", "name": SMOLLM2});
    let chat = json!([{"role": "user", "content": "hi"}]);
    let commands = [
        json!({"op": "register", "id": "tuned", "requirement": tuned}),
        json!({"op": "register", "id": "plain", "requirement": plain}),
        json!({"op": "generate", "id": "tuned", "prompt": "hi", "options": {"seed": 42}}),
        json!({"op": "chat", "id": "tuned", "messages": chat, "options": {"seed": 42}}),
        json!({"op": "stream", "id": "tuned", "prompt": "hi", "options": {"seed": 42}}),
        json!({"op": "generate", "id": "tuned", "prompt": "hi", "options": {"temperature": 0.2,
            "top_k": 3, "top_p": 0.5, "repetition_penalty": 1.1, "max_output_length": 8,
            "seed": 7}}),
        json!({"op": "generate", "id": "tuned", "prompt": "hi", "options": {"top_k": 2,
            "seed": 1}}),
        json!({"op": "generate", "id": "plain", "prompt": "hi", "options": {"seed": 3}}),
    ];
    let (replies, _) = probe(&runtime, "sampler", "", &commands).await.unwrap();
    assert!(replies.iter().all(|r| code(r) == "ok"), "{replies:?}");
    let text = |i: usize| replies[i]["ok"]["text"].as_str().unwrap().to_string();
    let requirement = "cpu t=0.7 k=Some(5) p=Some(0.9) r=1.3 seed=42 max=16";
    assert_eq!(text(2), requirement);
    assert_eq!(text(3), requirement, "chat");
    assert_eq!(text(4), requirement, "stream");
    assert_eq!(
        text(5),
        "cpu t=0.2 k=Some(3) p=Some(0.5) r=1.1 seed=7 max=8"
    );
    assert_eq!(
        text(6),
        "cpu t=0.7 k=Some(2) p=Some(0.9) r=1.3 seed=1 max=16"
    );
    assert_eq!(text(7), "cpu t=0 k=None p=None r=1 seed=3 max=256");
}
