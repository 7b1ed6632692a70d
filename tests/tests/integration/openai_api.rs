//! The `openai` module under `modelhost serve`, driven by the real OpenAI Python client (installed
//! by `scripts/test` into `.tools/test-python`) and by `curl -N`: chat completions and completions,
//! whole and streamed as server-sent events, equal text, usage counts, stop sequences, seeds,
//! embeddings, the model list, and OpenAI-shaped errors for bad requests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use modelhost_tests::served::{Served, module_entry};
use modelhost_tests::{guests, repo_root};
use serde_json::{Value, json};

const MODELHOST: &str = env!("CARGO_BIN_EXE_modelhost-cli");

const SETTINGS: &str = r#"{ models = { "org/minilm" = { model_type = "embedding", name = "sentence-transformers/all-MiniLM-L6-v2" }, "smollm2" = { model_type = "text-generation", name = "HuggingFaceTB/SmolLM2-135M-Instruct" } } }"#;

/// `modelhost serve` with the openai module at `/openai`, ready.
fn serve_openai(dir: &Path) -> Served {
    let modules = module_entry("openai", Path::new(guests::OPENAI), "/openai", SETTINGS);
    let host = Served::start(MODELHOST, dir, &dir.join("compiled"), &modules);
    host.wait_ready();
    host
}

/// The Python of `.tools/test-python`, where `scripts/test` installs the OpenAI client.
fn client_python() -> std::path::PathBuf {
    let python = repo_root().join(".tools/test-python/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/test, which installs tests/clients/requirements.txt",
        python.display()
    );
    python
}

fn error_of(report: &Value, case: &str) -> (u64, String, Value, Value) {
    let e = &report["errors"][case];
    (
        e["status"].as_u64().unwrap(),
        e["type"].as_str().unwrap_or_default().to_string(),
        e["param"].clone(),
        e["code"].clone(),
    )
}

#[test]
fn the_openai_client_chats_completes_and_embeds_streamed_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let host = serve_openai(dir.path());
    let output = Command::new(client_python())
        .arg(repo_root().join("tests/clients/openai_client.py"))
        .args([&format!("{}/openai/v1", host.base), "smollm2", "org/minilm"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();

    // Chat: the streamed reply is the whole reply, in several pieces, with the same counts.
    let (chat, streamed) = (&report["chat"], &report["chat_stream"]);
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["role"], "assistant");
    assert_eq!(chat["model"], "smollm2");
    assert!(chat["text"].as_str().unwrap().contains("Paris"), "{chat}");
    assert_eq!(streamed["text"], chat["text"], "{report}");
    assert!(streamed["pieces"].as_u64().unwrap() > 3, "{streamed}");
    assert_eq!(streamed["roles"], json!(["assistant"]));
    assert_eq!(streamed["finish_reason"], chat["finish_reason"]);
    assert_eq!(streamed["usage"], chat["usage"]);
    let usage = &chat["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 5, "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    if chat["finish_reason"] == "length" {
        assert_eq!(usage["completion_tokens"], 24);
    }

    // A stop sequence from the middle of the reply ends it just before the stop sequence.
    let stopped = &report["chat_stop"];
    let stop = stopped["stop"].as_str().unwrap();
    let whole = chat["text"].as_str().unwrap();
    let expected = &whole[..whole.find(stop).unwrap()];
    assert_eq!(stopped["text"], expected, "{report}");
    assert_eq!(stopped["finish_reason"], "stop");

    // Sampling with a seed repeats itself.
    assert_eq!(report["seeded"][0], report["seeded"][1], "{report}");

    // Completions continue the prompt, whole or streamed alike.
    let completion = &report["completion"];
    assert_eq!(completion["object"], "text_completion");
    assert!(!completion["text"].as_str().unwrap().is_empty());
    assert_eq!(report["completion_stream"]["text"], completion["text"]);
    assert_eq!(
        report["completion_stream"]["finish_reason"],
        completion["finish_reason"]
    );

    assert_eq!(report["embeddings"], json!([384, 384]));
    assert_eq!(report["models"], json!(["org/minilm", "smollm2"]));
    assert_eq!(report["model"], "smollm2");
    // The client sends an id with a `/` percent-encoded.
    assert_eq!(report["embedding_model"], "org/minilm");

    // Bad requests: OpenAI's error shape, as the client parses it.
    let (status, kind, param, code) = error_of(&report, "unknown_model");
    assert_eq!((status, kind.as_str()), (404, "invalid_request_error"));
    assert_eq!((param, code), (json!("model"), json!("not-registered")));
    let (status, _, param, _) = error_of(&report, "two_choices");
    assert_eq!((status, param), (400, json!("n")));
    let (status, kind, _, code) = error_of(&report, "bad_temperature");
    assert_eq!((status, kind.as_str()), (400, "invalid_request_error"));
    assert_eq!(code, json!("invalid-input"));
    let (status, _, param, code) = error_of(&report, "embedding_model_for_chat");
    assert_eq!((status, param), (400, json!("model")));
    assert_eq!(code, json!("wrong-model-type"));
    let (status, _, param, _) = error_of(&report, "no_messages");
    assert_eq!((status, param), (400, json!("messages")));
    let (status, _, param, _) = error_of(&report, "unknown_model_listed");
    assert_eq!((status, param), (404, json!("model")));
    // A field the module cannot honour is refused, not ignored.
    let (status, _, param, _) = error_of(&report, "unsupported_field");
    assert_eq!((status, param), (400, json!("logit_bias")));
}

#[test]
fn curl_sees_server_sent_events_and_openai_errors() {
    let dir = tempfile::tempdir().unwrap();
    let host = serve_openai(dir.path());
    let curl = |path: &str, body: &str| {
        let output = Command::new("curl")
            .args([
                "-sN",
                "-w",
                "\n%{http_code}",
                "-H",
                "content-type: application/json",
            ])
            .args(["-d", body, &host.url(path)])
            .output()
            .expect("curl");
        String::from_utf8(output.stdout).unwrap()
    };

    let body = json!({"model": "smollm2", "prompt": "The capital of France is",
                      "max_tokens": 8, "temperature": 0, "stream": true,
                      "stream_options": {"include_usage": true}});
    let text = curl("/openai/v1/completions", &body.to_string());
    let (events, status) = text.rsplit_once('\n').unwrap();
    assert_eq!(status, "200", "{text}");
    let data: Vec<&str> = events
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("{e:?}")))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.len() >= 3, "{text}");
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() >= 1, "{text}");

    // Malformed JSON, a missing field, a wrong method, an unknown path: OpenAI-shaped errors.
    for (path, body, status) in [
        ("/openai/v1/chat/completions", "{not json", "400"),
        (
            "/openai/v1/chat/completions",
            r#"{"model": "smollm2"}"#,
            "400",
        ),
        ("/openai/v1/nothing", "{}", "404"),
        ("/openai/v1/models", "{}", "405"),
    ] {
        let text = curl(path, body);
        let (body, code) = text.rsplit_once('\n').unwrap();
        assert_eq!(code, status, "{path}: {text}");
        let error: Value = serde_json::from_str(body).unwrap();
        assert!(
            error["error"]["message"].as_str().unwrap().len() > 10,
            "{error}"
        );
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    }
}

/// Whether any worker of the host is running a batch or a generation now.
fn any_worker_busy(host: &Served) -> bool {
    let status = host.status();
    let workers = status["worker_pool"]["workers"].as_array().unwrap().clone();
    workers.iter().any(|w| w["busy"].as_u64().unwrap() > 0)
}

#[test]
fn a_client_that_goes_away_mid_stream_stops_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let host = serve_openai(dir.path());
    // A prompt greedy SmolLM2 keeps continuing: 2000 tokens take tens of seconds here.
    let body = json!({"model": "smollm2", "prompt": "1, 2, 3, 4, 5, 6, 7, 8,",
                      "max_tokens": 2000, "temperature": 0, "stream": true})
    .to_string();
    let address = host.base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /openai/v1/completions HTTP/1.1\r\nhost: {address}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    let mut events = 0;
    while events < 3 {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended early"
        );
        if line.starts_with("data: ") {
            events += 1;
        }
    }
    assert!(
        any_worker_busy(&host),
        "the generation runs while the client reads"
    );
    drop(reader);
    stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(stream);

    // The instance ends with the connection, dropping the stream: the worker stops at its next
    // token instead of generating the 2000.
    let started = Instant::now();
    while any_worker_busy(&host) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the generation went on after the client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
