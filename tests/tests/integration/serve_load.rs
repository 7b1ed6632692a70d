//! `modelhost serve` under faults and load, over real HTTP on 127.0.0.1: handlers that trap,
//! spin or exhaust memory answer 500 while the module and its neighbours keep serving; 16
//! modules under concurrent load get every result right; overload is refused fast, and nothing
//! is lost. Latencies are printed (run with `--nocapture`).

use std::path::Path;
use std::time::{Duration, Instant};

use modelhost_tests::served::{Served, metric, module_entry, reply};
use modelhost_tests::{MINILM, guests, max_abs_diff, reference_embeddings};
use serde_json::{Value, json};

const MODELHOST: &str = env!("CARGO_BIN_EXE_modelhost-cli");

const OPENAI_SETTINGS: &str = r#"{ models = { "minilm" = { model_type = "embedding", name = "sentence-transformers/all-MiniLM-L6-v2", dimension = 384 } } }"#;

fn openai(id: &str) -> String {
    module_entry(
        id,
        Path::new(guests::OPENAI),
        &format!("/{id}"),
        OPENAI_SETTINGS,
    )
}

/// POSTs an OpenAI embeddings request for `texts` to module `id`: status, body, latency.
fn embed(base: &str, id: &str, texts: &[&str]) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, body) = reply(
        ureq::post(&format!("{base}/{id}/v1/embeddings"))
            .set("content-type", "application/json")
            .send_string(&json!({ "model": "minilm", "input": texts }).to_string()),
    );
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, body, started.elapsed())
}

/// Checks an embeddings answer against the reference vectors of `expected`.
fn check(body: &Value, expected: &[&(String, Vec<f32>)]) {
    let data = body["data"].as_array().expect("data");
    assert_eq!(data.len(), expected.len());
    for (item, (text, vector)) in data.iter().zip(expected) {
        let got: Vec<f32> = serde_json::from_value(item["embedding"].clone()).unwrap();
        assert!(max_abs_diff(&got, vector) <= 1e-4, "'{text}' differs");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[test]
fn handlers_that_trap_spin_or_exhaust_memory_answer_500_and_the_host_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let faults = format!(
        "{}limits = {{ cpu_seconds_per_call = 0.5, memory_mb = 64 }}\n",
        module_entry("faults", Path::new(guests::HTTP_FAULTS), "/faults", "{}")
    );
    let modules = format!("{faults}{}", openai("openai"));
    let mut host = Served::start(
        MODELHOST,
        dir.path(),
        &dir.path().join("compiled"),
        &modules,
    );
    host.wait_ready();
    for fault in ["/faults/trap", "/faults/spin", "/faults/allocate"] {
        let started = Instant::now();
        let (status, body) = host.get(fault);
        assert_eq!(status, 500, "{fault}: {body}");
        assert!(body.contains("trapped"), "{fault}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{fault} was not stopped"
        );
        // The same module and its neighbour answer the next request.
        assert_eq!(host.get("/faults/ok"), (200, "384".into()), "after {fault}");
        let (status, _, _) = embed(&host.base, "openai", &["fine"]);
        assert_eq!(status, 200, "after {fault}");
    }
    let log = host.stderr();
    assert!(log.contains("limits.cpu_seconds_per_call"), "{log}");
    // The module's registration survives its requests' faults.
    let status = host.status();
    let references: Vec<&str> = status["module_references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["module_id"].as_str().unwrap())
        .collect();
    assert_eq!(references, ["faults", "openai"]);
    let metrics = host.metrics();
    let failed = ["module=\"faults\"", "status=\"500\""];
    assert_eq!(
        metric(&metrics, "modelhost_http_requests_total", &failed),
        3.0
    );
}

#[test]
fn sixteen_modules_under_concurrent_load_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..16).map(|i| format!("m{i}")).collect();
    let modules: String = ids.iter().map(|id| openai(id)).collect();
    // No embedding cache: every request is computed.
    let config = format!("{modules}[embedding_cache]\nenabled = false\n");
    let host = Served::start(MODELHOST, dir.path(), &dir.path().join("compiled"), &config);
    host.wait_ready();
    let reference = reference_embeddings();
    let (threads, requests_per_thread, texts_per_request) = (64, 6, 4);
    let started = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (reference, base, id) = (&reference, &host.base, &ids[t % ids.len()]);
                scope.spawn(move || {
                    (0..requests_per_thread)
                        .map(|r| {
                            let first = (t * requests_per_thread + r) * texts_per_request;
                            let expected: Vec<&(String, Vec<f32>)> = (0..texts_per_request)
                                .map(|k| &reference[(first + k) % reference.len()])
                                .collect();
                            let texts: Vec<&str> =
                                expected.iter().map(|(t, _)| t.as_str()).collect();
                            let (status, body, latency) = embed(base, id, &texts);
                            assert_eq!(status, 200, "{id}: {body}");
                            check(&body, &expected);
                            latency
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    let mut sorted = latencies;
    sorted.sort();
    assert_eq!(sorted.len(), threads * requests_per_thread);
    eprintln!(
        "load: 16 modules, {} requests of {texts_per_request} texts from {threads} clients in {:.2} s \
         ({:.0} texts/s); latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sorted.len(),
        elapsed.as_secs_f64(),
        (sorted.len() * texts_per_request) as f64 / elapsed.as_secs_f64(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        percentile(&sorted, 1.0),
    );
    let metrics = host.metrics();
    let served: f64 = ids
        .iter()
        .map(|id| {
            let labels = [format!("module=\"{id}\""), "status=\"200\"".to_string()];
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            metric(&metrics, "modelhost_http_requests_total", &labels)
        })
        .sum();
    assert_eq!(served as usize, threads * requests_per_thread);
    // Batches merged requests from different modules.
    let batches = metric(
        &metrics,
        "modelhost_batch_size_count",
        &["all-MiniLM-L6-v2"],
    );
    assert!(
        batches < (threads * requests_per_thread) as f64,
        "{batches} batches"
    );
}

#[test]
fn overload_is_refused_fast_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let tight = format!("{}limits = {{ max_in_flight = 2 }}\n", openai("tight"));
    let config = format!(
        "{}{tight}[embedding_cache]\nenabled = false\n[worker_pool]\nmax_queue_length = 4\n",
        openai("open")
    );
    let host = Served::start(MODELHOST, dir.path(), &dir.path().join("compiled"), &config);
    host.wait_ready();
    let reference = reference_embeddings();
    let expected: Vec<&(String, Vec<f32>)> = reference.iter().take(32).collect();
    let texts: Vec<&str> = expected.iter().map(|(t, _)| t.as_str()).collect();
    let outcomes: Vec<(String, u16, Value, Duration)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..48)
            .map(|c| {
                let id = if c % 3 == 0 { "tight" } else { "open" };
                let (base, texts) = (&host.base, &texts);
                scope.spawn(move || {
                    let (status, body, latency) = embed(base, id, texts);
                    (id.to_string(), status, body, latency)
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let (mut ok, mut refused) = (Vec::new(), Vec::new());
    for (id, status, body, latency) in &outcomes {
        match status {
            200 => {
                check(body, &expected);
                ok.push(*latency);
            }
            // The model's queue was full.
            429 => {
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
                refused.push(*latency);
            }
            // The module had its limit of requests in flight.
            503 => {
                assert_eq!(id, "tight");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains("max_in_flight"), "{message}");
                refused.push(*latency);
            }
            _ => panic!("{id}: {status} {body}"),
        }
    }
    assert_eq!(ok.len() + refused.len(), 48, "every request was answered");
    assert!(!ok.is_empty() && !refused.is_empty(), "{} ok", ok.len());
    ok.sort();
    refused.sort();
    eprintln!(
        "overload: 48 requests of 32 texts at once, queue of 4: {} served (p50 {:.0} ms, max {:.0} ms), \
         {} refused (p50 {:.1} ms, max {:.1} ms)",
        ok.len(),
        percentile(&ok, 0.5),
        percentile(&ok, 1.0),
        refused.len(),
        percentile(&refused, 0.5),
        percentile(&refused, 1.0),
    );
    // Refusals do not wait for the work ahead of them.
    assert!(percentile(&refused, 0.5) < percentile(&ok, 0.5));
    // The host still serves normally afterwards.
    let (status, body, _) = embed(&host.base, "tight", &texts[..2]);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_client_that_goes_away_stops_its_work_and_shared_batches_complete() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}{}[embedding_cache]\nenabled = false\n",
        openai("a"),
        openai("b")
    );
    let host = Served::start(MODELHOST, dir.path(), &dir.path().join("compiled"), &config);
    host.wait_ready();
    let long: Vec<String> = (0..600)
        .map(|i| {
            format!(
                "text {i}: {}",
                "a long sentence about nothing in particular ".repeat(10)
            )
        })
        .collect();
    let url = format!("{}/a/v1/embeddings", host.base);
    let body = json!({ "model": "minilm", "input": long }).to_string();
    let reference = reference_embeddings();
    let expected: Vec<&(String, Vec<f32>)> = reference.iter().take(8).collect();
    let texts: Vec<&str> = expected.iter().map(|(t, _)| t.as_str()).collect();
    std::thread::scope(|scope| {
        // Module a's client gives up after 500 ms, long before its 600 texts are done.
        let impatient = scope.spawn(|| {
            ureq::post(&url)
                .timeout(Duration::from_millis(500))
                .set("content-type", "application/json")
                .send_string(&body)
                .is_ok()
        });
        std::thread::sleep(Duration::from_millis(100));
        // Module b's request is queued behind and alongside it, and completes.
        let (status, answer, _) = embed(&host.base, "b", &texts);
        assert_eq!(status, 200, "{answer}");
        check(&answer, &expected);
        assert!(
            !impatient.join().unwrap(),
            "the impatient client got an answer"
        );
    });
    // The abandoned texts leave the queue instead of running.
    let started = Instant::now();
    while host.status()["worker_pool"]["pending_tasks"] != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the queue never drained"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = host.status();
    assert_eq!(status["module_references"].as_array().unwrap().len(), 2);
    // Most of the 608 texts never ran: the workers' batches add up to far fewer.
    let ran = metric(
        &host.metrics(),
        "modelhost_batch_size_sum",
        &[&format!("model=\"{MINILM}\"")],
    );
    assert!(ran > 0.0 && ran < 400.0, "{ran} texts ran");
    let (status, _, _) = embed(&host.base, "a", &texts);
    assert_eq!(status, 200);
}
