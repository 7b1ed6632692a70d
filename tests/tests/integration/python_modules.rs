//! The Python example modules, built on the Python SDK (`guest-sdk/python`) by
//! `scripts/build-modules`, as a user runs them: `modelhost run`, next to their Rust twins.

use modelhost_tests::served::built_module;
use modelhost_tests::{FIXTURE_ORG, SMOLLM2, guests};
use serde_json::json;

use crate::support::{modelhost, run_ok};

/// Lines to classify: several topics, a blank line and non-ASCII text.
const LINES: &str = "buy a used car with low mileage and new tires\n\
                     we are hiring senior software engineers\n\
                     the striker scored twice in the final minutes\n\
                     \n\
                     Café prices in Zürich rose again this winter\n\
                     the new phone has a faster chip and a brighter screen\n";

/// The real topic classifier among the fixture checkpoints.
fn categorium() -> String {
    format!("{FIXTURE_ORG}/categorium-bert-cls-en")
}

/// The path of the Python module `name` (`target/modules/NAME.wasm`).
fn python_module(name: &str) -> String {
    built_module(&format!("{name}.wasm"))
        .to_str()
        .unwrap()
        .to_string()
}

/// The stderr of `module` run with `settings`, which must fail with exit status 1 and print
/// nothing.
fn run_failing(module: &str, settings: &str) -> String {
    let output = modelhost(&["run", "--settings", settings, module], "hello\n");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{module}: {stderr}");
    assert!(output.stdout.is_empty(), "{module}: {stderr}");
    stderr
}

#[test]
fn the_python_classifier_prints_what_the_rust_sentiment_module_prints() {
    let classifier = python_module("python-classifier");
    for threshold in [None, Some(0.5)] {
        let mut model = json!({"model_type": "classification", "name": categorium()});
        if let Some(threshold) = threshold {
            model["threshold"] = json!(threshold);
        }
        // Two lines per call: the chunks of both modules are compared too.
        let settings = json!({"model": model, "lines_per_call": 2});
        let settings = settings.to_string();
        let rust = run_ok(guests::SENTIMENT, &settings, LINES);
        let python = run_ok(&classifier, &settings, LINES);
        assert_eq!(python, rust, "threshold {threshold:?}");
        let labels: Vec<&str> = python
            .lines()
            .map(|line| line.split('\t').next().unwrap())
            .collect();
        assert_eq!(labels.len(), LINES.lines().count(), "{python}");
        // The car line's best label (autos, 0.46) does not reach a threshold of 0.5.
        let first = if threshold.is_some() { "-" } else { "autos" };
        assert_eq!(labels[0], first, "{python}");
        assert!(labels.iter().any(|label| *label != "-"), "{python}");
    }
}

#[test]
fn python_chat_streams_the_reply_it_gives_whole_and_the_rust_chat_gives() {
    let chat = python_module("python-chat");
    let model = json!({"model_type": "text-generation", "name": SMOLLM2, "max_output_length": 24});
    let options = json!({"temperature": 0});
    let stdin = "What is the capital of France?\nAnd which river flows through it?\n";
    let streamed = run_ok(
        &chat,
        &json!({"model": model, "options": options, "stream": true}).to_string(),
        stdin,
    );
    let whole = run_ok(
        &chat,
        &json!({"model": model, "options": options, "stream": false}).to_string(),
        stdin,
    );
    assert_eq!(streamed, whole);
    assert!(streamed.contains("Paris"), "{streamed}");
    let rust = run_ok(
        guests::CHAT,
        &json!({"model": model, "options": options}).to_string(),
        stdin,
    );
    assert_eq!(streamed, rust);
}

#[test]
fn bad_settings_stop_a_python_module_at_initialize_with_their_error_code() {
    let classifier = python_module("python-classifier");
    let chat = python_module("python-chat");
    let typo = json!({"model": {"model_type": "classification", "name": categorium(),
        "thresold": 0.5}});
    let cases = [
        (&classifier, typo.to_string(), "unknown field `thresold`"),
        (
            &classifier,
            json!({"lines_per_call": "64"}).to_string(),
            "the setting `lines_per_call` must be a whole number",
        ),
        (
            &chat,
            json!({"options": {"temprature": 0}}).to_string(),
            "unknown field `temprature` in the generation options",
        ),
        (
            &chat,
            "{not json".to_string(),
            "the module settings are not valid JSON",
        ),
    ];
    for (module, settings, needle) in cases {
        let stderr = run_failing(module, &settings);
        assert!(
            stderr.contains("failed to initialize: invalid-requirement: "),
            "{settings}: {stderr}"
        );
        assert!(stderr.contains(needle), "{settings}: {stderr}");
    }
}

#[test]
fn host_error_codes_reach_python_modules() {
    // At initialize: the model is not in the store.
    let missing =
        json!({"model": {"model_type": "classification", "name": "nobody/no-such-model"}});
    let stderr = run_failing(&python_module("python-classifier"), &missing.to_string());
    assert!(
        stderr.contains("failed to initialize: model-not-found: "),
        "{stderr}"
    );
    // At run: a chat with a classification model fails, and the module says so.
    let classifier = json!({"model": {"model_type": "classification", "name": categorium()}});
    let stderr = run_failing(&python_module("python-chat"), &classifier.to_string());
    assert!(
        stderr.contains("python-chat: wrong-model-type: "),
        "{stderr}"
    );
}
