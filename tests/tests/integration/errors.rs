//! Bad requirements and inputs, through a real guest and the real backend: each gives its
//! documented error code, and the module keeps working afterwards.

use modelhost::runtime::RuntimeError;
use modelhost_tests::{FIXTURE_ORG, MINILM, code, guests, probe, real_runtime, start};
use serde_json::{Value, json};

fn register(id: &str, requirement: Value) -> Value {
    json!({"op": "register", "id": id, "requirement": requirement})
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requirements_and_calls_give_their_error_codes() {
    let t5 = format!("{FIXTURE_ORG}/t5-tiny-random-realvocab");
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            register(
                "a",
                json!({"model_type": "embedding", "name": "nobody/no-such-model"}),
            ),
            "model-not-found",
            "huggingface-cli download",
        ),
        (
            register(
                "b",
                json!({"model_type": "embedding", "name": MINILM, "revision": "v9"}),
            ),
            "model-not-found",
            "revision 'v9'",
        ),
        (
            register(
                "c",
                json!({"model_type": "embedding", "name": MINILM, "dimension": 768}),
            ),
            "dimension-mismatch",
            "384-dimensional",
        ),
        (
            register("d", json!({"model_type": "embedding", "name": ""})),
            "invalid-requirement",
            "`name` is empty",
        ),
        (
            register(
                "e",
                json!({"model_type": "embedding", "name": MINILM, "batch_size": 0}),
            ),
            "invalid-requirement",
            "batch_size",
        ),
        (
            register("f", json!({"model_type": "embedding", "name": t5})),
            "unsupported-architecture",
            "T5ForConditionalGeneration",
        ),
        (
            register("g", json!({"model_type": "text2text", "name": MINILM})),
            "unsupported-architecture",
            "T5ForConditionalGeneration",
        ),
        (
            register("", json!({"model_type": "embedding", "name": MINILM})),
            "invalid-input",
            "model id is empty",
        ),
        (
            json!({"op": "embed", "id": "never-registered", "texts": ["x"]}),
            "not-registered",
            "call register-model first",
        ),
        (
            register(
                "ok",
                json!({"model_type": "embedding", "name": MINILM, "dimension": 384}),
            ),
            "ok",
            "",
        ),
        (
            json!({"op": "classify", "id": "ok", "texts": ["x"]}),
            "wrong-model-type",
            "registered as model type embedding",
        ),
        (
            json!({"op": "generate", "id": "ok", "prompt": "x"}),
            "wrong-model-type",
            "needs model type text-generation",
        ),
        (
            register(
                "ok",
                json!({"model_type": "embedding", "name": MINILM, "dimension": 384, "max_input_length": 8}),
            ),
            "conflict",
            "differs in: max_input_length",
        ),
        (
            json!({"op": "embed", "id": "ok", "texts": ["still works"]}),
            "ok",
            "",
        ),
    ];
    let commands: Vec<Value> = cases.iter().map(|(c, _, _)| c.clone()).collect();
    let (replies, _) = probe(&real_runtime(), "errors", "", &commands)
        .await
        .unwrap();
    assert_eq!(replies.len(), cases.len());
    for ((command, expected, needle), reply) in cases.iter().zip(&replies) {
        assert_eq!(code(reply), *expected, "{command} gave {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(needle),
            "{command}: message {message:?} lacks {needle:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_that_fails_to_initialize_reports_the_code() {
    let runtime = real_runtime();
    let bad_device = r#"{"model": {"model_type": "embedding", "name": "x", "device": "tpu:0"}}"#;
    let missing = r#"{"model": {"model_type": "embedding", "name": "nobody/missing"}}"#;
    // The probe registers "a" (a real model) before "b" fails: the failed module is dropped, and
    // the reference it took goes with it.
    let second_missing = json!({"register": {
        "a": {"model_type": "embedding", "name": MINILM},
        "b": {"model_type": "embedding", "name": "nobody/missing"}}})
    .to_string();
    for (guest, settings, expected) in [
        (
            guests::DOCUMENT_PROCESSOR,
            bad_device,
            "invalid-requirement",
        ),
        (
            guests::DOCUMENT_PROCESSOR,
            "{not json",
            "invalid-requirement",
        ),
        (guests::DOCUMENT_PROCESSOR, missing, "model-not-found"),
        (guests::PROBE, second_missing.as_str(), "model-not-found"),
    ] {
        let err = start(&runtime, guest, "dp", settings, vec![])
            .await
            .err()
            .expect("initialize must fail");
        match err.downcast::<RuntimeError>().unwrap() {
            RuntimeError::Initialize { error, .. } => {
                assert_eq!(error.code, expected, "{settings}")
            }
            other => panic!("{settings}: unexpected {other}"),
        }
    }
    assert!(runtime.manager().status().module_references.is_empty());
}
