//! The JavaScript modules built on the `@modelhost/guest` SDK (`guest-sdk/javascript`) as a user
//! runs them: `js-summarizer` under `modelhost run`, line for line the Rust summarizer's output,
//! and its setting errors; `js-embeddings` under `modelhost serve`, listing its own model ids.
//!
//! The components come from `scripts/build-modules` (run by `scripts/test`).

use modelhost_tests::served::{Served, built_module, module_entry};
use modelhost_tests::{MINILM, guests};
use serde_json::{Value, json};

use crate::support::{modelhost, run_ok};

const MODELHOST: &str = env!("CARGO_BIN_EXE_modelhost-cli");

/// Lines with a CRLF line end, non-ASCII text and no line end at the very end, which both
/// summarizers must read alike.
const LINES: &str = "The quick brown fox jumps over the lazy dog.\r\n\
                     Le café est très chaud, dit-il — naïvement.\n\
                     Modules run models in a sandbox";

#[test]
fn js_summarizer_prints_what_the_rust_summarizer_prints() {
    let js = built_module("js-summarizer.wasm");
    let text2text = r#"{"model": {"model_type": "text2text",
        "name": "modelhost-fixtures/t5-tiny-random-realvocab", "max_output_length": 8}}"#;
    let text_generation = r#"{"model": {"model_type": "text-generation",
        "name": "HuggingFaceTB/SmolLM2-135M-Instruct", "max_output_length": 16,
        "temperature": 0}, "prefix": ""}"#;
    for settings in [text2text, text_generation] {
        let rust = run_ok(guests::SUMMARIZER, settings, LINES);
        let javascript = run_ok(js.to_str().unwrap(), settings, LINES);
        assert_eq!(rust.lines().count(), 3, "{rust}");
        assert!(rust.lines().any(|line| !line.trim().is_empty()), "{rust}");
        assert_eq!(javascript, rust, "{settings}");
    }
}

#[test]
fn js_summarizer_setting_errors_stop_modelhost_run_with_their_code() {
    let js = built_module("js-summarizer.wasm");
    let cases = [
        (
            r#"{"model": {"model_type": "text2text",
                "name": "modelhost-fixtures/t5-tiny-random-realvocab", "max_output_lenght": 8}}"#,
            ["invalid-requirement", "`max_output_lenght`"],
        ),
        (
            r#"{"model": {"model_type": "text2text", "name": "modelhost-fixtures/t5-tiny-random-realvocab", "max_output_length": "8"}}"#,
            ["invalid-requirement", "`max_output_length`"],
        ),
        (
            r#"{"prefixes": "summarize: "}"#,
            ["invalid-requirement", "`prefixes`"],
        ),
        ("{\"prefix\": ", ["invalid-requirement", "not valid JSON"]),
        (
            r#"{"model": {"model_type": "text2text", "name": "modelhost-fixtures/no-such-model"}}"#,
            ["model-not-found", "no-such-model"],
        ),
    ];
    for (settings, needles) in cases {
        let output = modelhost(
            &["run", "--settings", settings, js.to_str().unwrap()],
            "a line\n",
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{settings}: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{settings}: {needle} missing from {stderr}"
            );
        }
        assert!(output.stdout.is_empty(), "{settings}");
    }
}

#[test]
fn served_js_embeddings_lists_its_own_models() {
    let dir = tempfile::tempdir().unwrap();
    let settings = format!("{{ model = {MINILM:?}, dimension = 384 }}");
    let modules = module_entry("js", &built_module("js-embeddings.wasm"), "/js", &settings);
    let host = Served::start(
        MODELHOST,
        dir.path(),
        &dir.path().join("compiled"),
        &modules,
    );
    host.wait_ready();

    // `initialize` preloaded the model, so it is in memory once the host is ready.
    let (code, body) = host.get("/js/models");
    assert_eq!(code, 200, "{body}");
    let models: Value = serde_json::from_str(&body).unwrap();
    let expected = json!({ "models": [
        { "id": "embedder", "model_name": MINILM, "model_type": "embedding", "loaded": true }
    ] });
    assert_eq!(models, expected);

    let (code, body) = host.post("/js/embed", &json!({ "texts": ["hello", "world"] }));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["dimension"], 384);
    assert_eq!(body["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(host.get("/js/embed").0, 405);
    assert_eq!(host.post("/js/models", &json!({})).0, 405);
    assert_eq!(host.get("/js/nowhere").0, 404);
}
