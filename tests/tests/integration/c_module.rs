//! The C example module (`example-modules/c-embeddings`, world `command-module`, built by
//! `scripts/build-modules`) under `modelhost run`: a component written in C embeds stdin lines to
//! the reference vectors, prints them as the Rust document-processor does, and reports host and
//! settings errors by their WIT error code.

use std::process::Output;

use modelhost_tests::served::built_module;
use modelhost_tests::{guests, max_abs_diff, reference_embeddings};

use crate::support::modelhost;

/// `modelhost run [--settings SETTINGS] MODULE` with `stdin`.
fn run(module: &str, settings: Option<&str>, stdin: &str) -> Output {
    let mut args = vec!["run"];
    if let Some(settings) = settings {
        args.extend(["--settings", settings]);
    }
    args.push(module);
    modelhost(&args, stdin)
}

fn c_module() -> String {
    built_module("c-embeddings.wasm")
        .to_str()
        .unwrap()
        .to_string()
}

/// The JSON arrays of a successful run's stdout, one per line.
fn vectors(output: &Output) -> Vec<Vec<f32>> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Every reference text in one run: 136 lines go to the host as 64 + 64 + 8, and each vector
/// matches the PyTorch reference (measured: at most 3e-7 apart).
#[test]
fn the_c_module_embeds_stdin_lines_to_the_reference_vectors() {
    let reference = reference_embeddings();
    let texts: Vec<&str> = reference.iter().map(|(text, _)| text.as_str()).collect();
    let stdin = texts.join("\n") + "\n";
    let embedded = vectors(&run(&c_module(), None, &stdin));
    assert_eq!(embedded.len(), reference.len());
    for (vector, (text, expected)) in embedded.iter().zip(&reference) {
        assert_eq!(vector.len(), 384, "{text}");
        let difference = max_abs_diff(vector, expected);
        assert!(difference <= 1e-5, "{text}: differs by {difference}");
    }
}

/// The settings name the model and dimension explicitly, and the vectors are the Rust
/// document-processor's, number for number (both print enough digits to read back every f32).
#[test]
fn the_c_module_prints_what_the_rust_module_prints() {
    let reference = reference_embeddings();
    let texts: Vec<&str> = reference.iter().take(6).map(|(t, _)| t.as_str()).collect();
    let stdin = texts.join("\n") + "\n";
    let settings = r#"{"model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384}"#;
    let from_c = vectors(&run(&c_module(), Some(settings), &stdin));
    let from_rust = vectors(&run(guests::DOCUMENT_PROCESSOR, None, &stdin));
    assert_eq!(from_c.len(), 6);
    assert_eq!(from_c, from_rust);
}

#[test]
fn an_unknown_model_fails_the_c_module_with_model_not_found() {
    let settings = r#"{"model": "nobody/no-such-model"}"#;
    let output = run(&c_module(), Some(settings), "hello\n");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("model-not-found"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn malformed_settings_fail_the_c_module_with_invalid_requirement() {
    for settings in [
        r#"{"model": 7}"#,
        r#"{"dimension": "384"}"#,
        r#"{"modle": "org/name"}"#,
        r#"{"model": "org/name""#,
    ] {
        let output = run(&c_module(), Some(settings), "hello\n");
        assert!(!output.status.success(), "{settings}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("invalid-requirement") && stderr.contains("invalid settings"),
            "{settings}: {stderr}"
        );
        assert!(output.stdout.is_empty());
    }
}
