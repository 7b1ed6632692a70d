//! `modelhost serve` as a user runs it: a real process on a 127.0.0.1 port serving the Rust,
//! Python and JavaScript example modules over real HTTP, its admin API, `modelhost status`, and
//! a SIGTERM that drains in-flight work and releases every reference.
//!
//! The Python and JavaScript components come from `scripts/build-modules` (run by `scripts/test`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use modelhost_tests::served::{Served, built_module, metric, module_entry, reply};
use modelhost_tests::{guests, max_abs_diff, reference_embeddings};
use serde_json::{Value, json};

const MODELHOST: &str = env!("CARGO_BIN_EXE_modelhost-cli");

const MINILM_SETTINGS: &str =
    r#"{ model = "sentence-transformers/all-MiniLM-L6-v2", dimension = 384 }"#;
const OPENAI_SETTINGS: &str = r#"{ models = { "minilm" = { model_type = "embedding", name = "sentence-transformers/all-MiniLM-L6-v2", dimension = 384 } } }"#;

fn vectors(values: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(values.clone()).unwrap()
}

fn assert_matches_reference(got: &[Vec<f32>], reference: &[(String, Vec<f32>)], who: &str) {
    assert_eq!(got.len(), reference.len(), "{who}");
    for (vector, (text, expected)) in got.iter().zip(reference) {
        let diff = max_abs_diff(vector, expected);
        assert!(diff <= 1e-4, "{who}: '{text}' differs by {diff}");
    }
}

#[test]
fn serves_rust_python_and_javascript_modules_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let modules = [
        module_entry(
            "python",
            &built_module("python-embeddings.wasm"),
            "/python",
            MINILM_SETTINGS,
        ),
        module_entry(
            "js",
            &built_module("js-embeddings.wasm"),
            "/js",
            MINILM_SETTINGS,
        ),
        module_entry(
            "openai",
            Path::new(guests::OPENAI),
            "/openai",
            OPENAI_SETTINGS,
        ),
    ]
    .concat();
    let mut host = Served::start(MODELHOST, dir.path(), &cache, &modules);

    // Compiling the Python module takes seconds: the host answers, but is not ready.
    assert_eq!(host.get("/healthz").0, 200);
    assert_eq!(host.get("/readyz").0, 503);
    assert_eq!(host.admin_get("/readyz").0, 503);
    // The status and the metrics are on the admin listener only.
    assert_eq!(host.get("/status").0, 404);
    assert_eq!(host.get("/metrics").0, 404);
    let status = host.status();
    assert_eq!(status["ready"], false);
    assert_eq!(status["modules"][2]["state"], "starting", "{status}");
    let cold = host.wait_ready();

    let reference: Vec<(String, Vec<f32>)> = reference_embeddings().into_iter().take(8).collect();
    let texts: Vec<&str> = reference.iter().map(|(t, _)| t.as_str()).collect();
    for route in ["/python/embed", "/js/embed"] {
        let (code, body) = host.post(route, &json!({ "texts": texts }));
        assert_eq!(code, 200, "{route}: {body}");
        assert_eq!(body["dimension"], 384);
        assert_matches_reference(&vectors(&body["embeddings"]), &reference, route);
    }

    // The OpenAI request and response shapes.
    let (code, body) = host.post(
        "/openai/v1/embeddings",
        &json!({ "model": "minilm", "input": texts }),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (&body["object"], &body["model"]),
        (&json!("list"), &json!("minilm"))
    );
    let data = body["data"].as_array().unwrap();
    let got: Vec<Vec<f32>> = data
        .iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(
                (&item["object"], &item["index"]),
                (&json!("embedding"), &json!(i))
            );
            serde_json::from_value(item["embedding"].clone()).unwrap()
        })
        .collect();
    assert_matches_reference(&got, &reference, "openai");
    let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(tokens > texts.len() as u64, "{body}");
    assert_eq!(body["usage"]["total_tokens"].as_u64(), Some(tokens));
    // The OpenAI Python client asks for base64 (little-endian f32) by default.
    let (code, body) = host.post(
        "/openai/v1/embeddings",
        &json!({ "model": "minilm", "input": texts[0], "encoding_format": "base64" }),
    );
    assert_eq!(code, 200, "{body}");
    let decoded = decode_base64_f32(body["data"][0]["embedding"].as_str().unwrap());
    assert_matches_reference(&[decoded], &reference[..1], "openai base64");
    let (code, body) = host.post(
        "/openai/v1/embeddings",
        &json!({ "model": "gpt-nope", "input": "x" }),
    );
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["error"]["code"], "not-registered");
    assert_eq!(host.get("/nowhere").0, 404);

    // One copy of the weights serves the three modules, each with its own reference. The status
    // has the specification's shape: models keyed by id, times in seconds since the epoch.
    let status = host.status();
    assert_eq!(status["ready"], true);
    assert_eq!(status["initialized"], true);
    assert_eq!(status["total_loaded_models"], 2, "{status}");
    assert_eq!(status["loaded_weights"], 1, "{status}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (id, references) in [("embedder", 2), ("minilm", 1)] {
        let model = &status["loaded_models"][id];
        assert_eq!(model["reference_count"], references, "{status}");
        assert_eq!(model["source"], "worker_pool");
        assert_eq!(model["device"], "cpu");
        let accessed = model["last_accessed"].as_f64().unwrap();
        assert!(
            accessed <= now && accessed > now - 600.0,
            "{accessed} vs {now}"
        );
    }
    assert_eq!(status["worker_pool"]["num_workers"], 1);
    assert_eq!(status["embedding_cache"]["enabled"], true);
    let references: Vec<(String, String)> = status["module_references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["reference_count"], 1);
            (
                r["module_id"].as_str().unwrap().into(),
                r["model_id"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [
        ("js", "embedder"),
        ("openai", "minilm"),
        ("python", "embedder"),
    ];
    assert_eq!(references, expected.map(|(a, b)| (a.into(), b.into())));

    // Metrics count what happened, and change with the next request (a cache hit).
    let metrics = host.metrics();
    let python_ok = ["module=\"python\"", "status=\"200\""];
    assert_eq!(
        metric(&metrics, "modelhost_http_requests_total", &python_ok),
        1.0
    );
    let embeds = ["module=\"python\"", "operation=\"embed\""];
    assert_eq!(metric(&metrics, "modelhost_requests_total", &embeds), 1.0);
    let not_registered = ["module=\"openai\"", "code=\"not-registered\""];
    assert_eq!(
        metric(&metrics, "modelhost_request_errors_total", &not_registered),
        1.0
    );
    assert!(
        metric(
            &metrics,
            "modelhost_batch_size_count",
            &["all-MiniLM-L6-v2"]
        ) >= 1.0
    );
    assert_eq!(metric(&metrics, "modelhost_loaded_models", &[]), 1.0);
    let hits = metric(&metrics, "modelhost_cache_hits_total", &[]);
    host.post("/python/embed", &json!({ "texts": texts }));
    let metrics = host.metrics();
    assert_eq!(
        metric(&metrics, "modelhost_http_requests_total", &python_ok),
        2.0
    );
    assert_eq!(
        metric(&metrics, "modelhost_cache_hits_total", &[]),
        hits + texts.len() as f64
    );
    assert!(metric(&metrics, "modelhost_worker_busy_seconds_total", &["cpu-0"]) > 0.0);

    // `modelhost status` shows the same as a table.
    let table = Command::new(env!("CARGO_BIN_EXE_modelhost-cli"))
        .args(["status", "--address", host.admin.as_ref().unwrap()])
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("ready: yes"), "{table}");
    for row in ["openai  /openai  ready", "python  /python  ready", "minilm"] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }

    // SIGTERM: every module cleaned up, every reference released, a clean exit.
    let exit = host.terminate();
    let log = host.stderr();
    assert!(exit.success(), "{exit:?}\n{log}");
    for module in ["python", "js", "openai"] {
        assert!(
            log.contains(&format!("module cleaned up module={module}")),
            "{log}"
        );
    }
    assert!(log.contains("stopped references_left=0"), "{log}");

    // The second start reads the compiled modules back from the cache.
    let host = Served::start(MODELHOST, dir.path(), &cache, &modules);
    let warm = host.wait_ready();
    eprintln!(
        "start until ready: cold compile {:.2} s, from the compile cache {:.2} s",
        cold.as_secs_f64(),
        warm.as_secs_f64()
    );
    assert!(warm < cold, "cold {cold:?}, warm {warm:?}");
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let modules = module_entry(
        "openai",
        Path::new(guests::OPENAI),
        "/openai",
        OPENAI_SETTINGS,
    );
    let mut host = Served::start(
        MODELHOST,
        dir.path(),
        &dir.path().join("compiled"),
        &modules,
    );
    host.wait_ready();
    // Long texts, distinct so that none is cached: seconds of work on two cores.
    let texts: Vec<String> = (0..400)
        .map(|i| {
            format!(
                "request {i}: {}",
                "the quick brown fox jumps over the lazy dog ".repeat(12)
            )
        })
        .collect();
    let url = host.url("/openai/v1/embeddings");
    let request = std::thread::spawn(move || {
        reply(
            ureq::post(&url)
                .set("content-type", "application/json")
                .send_string(&json!({ "model": "minilm", "input": texts }).to_string()),
        )
    });
    let started = Instant::now();
    while host.status()["worker_pool"]["pending_tasks"] == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the request never queued"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let metrics = host.metrics();
    let queued = ["model=\"minilm\""];
    assert!(
        metric(&metrics, "modelhost_model_queue_depth", &queued) >= 1.0,
        "{metrics}"
    );
    let exit = host.terminate();
    let (code, body) = request.join().unwrap();
    assert_eq!(code, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 400);
    assert!(exit.success(), "{}", host.stderr());
    assert!(host.stderr().contains("stopped references_left=0"));
}

#[test]
fn a_failing_module_stops_the_start_unless_it_is_optional() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("compiled");
    let broken = r#"{ models = { "minilm" = { model_type = "embedding", name = "sentence-transformers/all-MiniLM-L6-v2", dimension = 512 } } }"#;
    let rust = Path::new(guests::OPENAI);
    let required = module_entry("broken", rust, "/broken", broken);
    let mut host = Served::start(MODELHOST, dir.path(), &cache, &required);
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = host.child.try_wait().unwrap() {
            break exit;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "kept running");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = host.stderr();
    assert!(!exit.success());
    assert!(
        log.contains("module broken failed to initialize") && log.contains("required = false"),
        "{log}"
    );

    let optional = format!(
        "{}required = false\n{}",
        module_entry("broken", rust, "/broken", broken),
        module_entry("openai", rust, "/openai", OPENAI_SETTINGS)
    );
    let host = Served::start(MODELHOST, dir.path(), &cache, &optional);
    host.wait_ready();
    let status = host.status();
    assert_eq!(status["modules"][0]["state"], "failed", "{status}");
    assert!(
        status["modules"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("dimension"),
        "{status}"
    );
    assert_eq!(host.get("/broken/v1/embeddings").0, 503);
    let (code, _) = host.post(
        "/openai/v1/embeddings",
        &json!({ "model": "minilm", "input": "still serving" }),
    );
    assert_eq!(code, 200);
}

fn decode_base64_f32(text: &str) -> Vec<f32> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
        }
    }
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
