//! The `modelhost` command line as a user runs it: `modelhost run` on the example module.

use std::path::Path;

use modelhost_tests::{guests, max_abs_diff, reference_embeddings};

use crate::support::modelhost;

#[test]
fn run_embeds_stdin_lines_through_the_module() {
    let reference = reference_embeddings();
    let texts: Vec<&str> = reference.iter().take(5).map(|(t, _)| t.as_str()).collect();
    let output = modelhost(
        &["run", guests::DOCUMENT_PROCESSOR],
        &(texts.join("\n") + "\n"),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let vectors: Vec<Vec<f32>> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(vectors.len(), 5);
    for (vector, (_, expected)) in vectors.iter().zip(&reference) {
        assert!(max_abs_diff(vector, expected) <= 1e-4);
    }
}

/// The demo's view: each sample's nearest neighbours by cosine similarity, and a query's.
#[test]
fn the_demo_lists_each_texts_nearest_neighbours() {
    let samples = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../example-modules/document-processor/samples.txt"),
    )
    .unwrap();
    let neighbours = r#"{"output": "neighbours", "neighbours": 1}"#;
    let output = modelhost(
        &["run", "--settings", neighbours, guests::DOCUMENT_PROCESSOR],
        &samples,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    let after = |text: &str| {
        let at = lines.iter().position(|l| *l == format!("\"{text}\""));
        lines[at.unwrap_or_else(|| panic!("{text} missing from\n{stdout}")) + 1]
    };
    assert!(
        lines[0].starts_with(
            "Embedded 12 texts with sentence-transformers/all-MiniLM-L6-v2 (384 dimensions)"
        ),
        "{stdout}"
    );
    let nearest = after("A man is playing a guitar.");
    assert!(
        nearest.ends_with("Someone is playing an instrument."),
        "{nearest}"
    );
    let score: f32 = nearest.split_whitespace().next().unwrap().parse().unwrap();
    assert!((0.6..0.75).contains(&score), "{nearest}");
    assert!(
        after("Slice the onions and fry them in butter.")
            .ends_with("Chop the vegetables and cook them in a hot pan.")
    );

    let query = r#"{"output": "neighbours", "neighbours": 1, "query": "Stock prices fell."}"#;
    let output = modelhost(
        &["run", "--settings", query, guests::DOCUMENT_PROCESSOR],
        &samples,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .position(|l| *l == "\"Stock prices fell.\"")
        .unwrap();
    let best = lines[at + 1];
    assert!(
        best.ends_with("The stock market fell sharply today.")
            || best.ends_with("Share prices dropped after weak quarterly earnings."),
        "{stdout}"
    );
}

#[test]
fn run_takes_settings_from_a_file_and_reports_module_errors() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("settings.json");
    std::fs::write(
        &settings,
        r#"{"model": {"model_type": "embedding", "name": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 512}}"#,
    )
    .unwrap();
    let arg = format!("@{}", settings.display());
    let output = modelhost(
        &["run", "--settings", &arg, guests::DOCUMENT_PROCESSOR],
        "hello\n",
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("dimension-mismatch"), "{stderr}");
    assert!(stderr.contains("384-dimensional"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn run_rejects_files_that_are_not_components() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not wasm").unwrap();
    let output = modelhost(&["run", bogus.to_str().unwrap()], "");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot compile") && stderr.contains("wasm32-wasip2"),
        "{stderr}"
    );
}

#[test]
fn help_and_config_describe_the_interface() {
    let help = modelhost(&["run", "--help"], "");
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--settings", "--dir", "--env", "MODULE"] {
        assert!(text.contains(flag), "run --help lacks {flag}:\n{text}");
    }
    let config = modelhost(&["config"], "");
    let text = String::from_utf8_lossy(&config.stdout);
    assert!(text.contains("idle_unload_seconds = 300"), "{text}");
}

#[test]
fn run_classifies_stdin_lines_with_the_sentiment_module() {
    let settings = r#"{"model": {"model_type": "classification",
        "name": "modelhost-fixtures/categorium-bert-cls-en"}}"#;
    let output = modelhost(
        &["run", "--settings", settings, guests::SENTIMENT],
        "buy a used car with low mileage and new tires\nwe are hiring senior software engineers\n",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0][0], "autos", "{stdout}");
    assert_eq!(lines[0][2], "buy a used car with low mileage and new tires");
    assert!((lines[0][1].parse::<f32>().unwrap() - 0.4593).abs() < 1e-3);
}

#[test]
fn run_streams_chat_replies_to_stdout() {
    let settings = r#"{"model": {"model_type": "text-generation",
        "name": "HuggingFaceTB/SmolLM2-135M-Instruct", "max_output_length": 24}}"#;
    let output = modelhost(
        &["run", "--settings", settings, guests::CHAT],
        "What is the capital of France?\n",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("Paris"), "{stdout}");
}

#[test]
fn run_turns_lines_into_text_with_the_summarizer_module() {
    let settings = r#"{"model": {"model_type": "text2text",
        "name": "modelhost-fixtures/t5-tiny-random-realvocab", "max_output_length": 4},
        "prefix": "summarize: "}"#;
    let output = modelhost(
        &["run", "--settings", settings, guests::SUMMARIZER],
        "The quick brown fox jumps over the lazy dog.\nIt was a sunny day.\n",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8(output.stdout).unwrap().lines().count(), 2);
}
