//! Hostile input and misbehaving modules, through real guests on the real backend: every bad
//! call gets its error code and the host keeps serving good ones; modules that trap, spin, eat
//! memory or hoard models are stopped or refused without touching other modules, and leave no
//! reference behind.

use std::path::Path;
use std::time::Duration;

use modelhost::manager::limits::ModuleLimits;
use modelhost::runtime::{Runtime, RuntimeError};
use modelhost_tests::{
    FIXTURE_ORG, MINILM, SMOLLM2, code, guests, model_store, probe, probe_limited, real_runtime,
    start_limited,
};
use serde_json::{Value, json};

fn register(id: &str, requirement: Value) -> Value {
    json!({"op": "register", "id": id, "requirement": requirement})
}

/// A registration under an id of its own, so one case's outcome cannot affect another's.
fn register_new(requirement: Value) -> Value {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    register(&format!("case-{n}"), requirement)
}

fn embedding(name: &str) -> Value {
    json!({"model_type": "embedding", "name": name})
}

fn minilm_with(field: &str, value: Value) -> Value {
    let mut requirement = embedding(MINILM);
    requirement[field] = value;
    requirement
}

fn generate(options: Value) -> Value {
    json!({"op": "generate", "id": "gen", "prompt": "Hello", "options": options})
}

/// Installs broken copies of MiniLM in the test model store, as `modelhost-broken/<name>`.
fn install_broken_models() {
    let root = model_store().root().to_path_buf();
    let minilm = root.join(format!("models--{}", MINILM.replace('/', "--")));
    let revision = std::fs::read_to_string(minilm.join("refs/main")).unwrap();
    let source = minilm.join("snapshots").join(revision.trim());
    let install = |name: &str, change: &dyn Fn(&Path)| {
        let repo = root.join(format!("models--modelhost-broken--{name}"));
        if repo.exists() {
            return;
        }
        let snapshot = repo.join("snapshots/broken");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "broken").unwrap();
        for file in [
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "vocab.txt",
        ] {
            modelhost_tests::link_or_copy(&source.join(file), &snapshot.join(file));
        }
        change(&snapshot);
    };
    let replace = |dir: &Path, file: &str, bytes: &[u8]| {
        std::fs::remove_file(dir.join(file)).unwrap();
        std::fs::write(dir.join(file), bytes).unwrap();
    };
    install("truncated-weights", &|dir| {
        let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
        replace(dir, "model.safetensors", &weights[..weights.len() / 3]);
    });
    install("broken-tokenizer", &|dir| {
        replace(dir, "tokenizer.json", b"{\"version\": \"1.0\", \"model\": ");
    });
    install("garbage-config", &|dir| {
        replace(dir, "config.json", b"not json")
    });
    install("no-weights", &|dir| {
        std::fs::remove_file(dir.join("model.safetensors")).unwrap()
    });
}

/// A good embedding call, run after every bad case.
fn good_call() -> Value {
    json!({"op": "embed", "id": "good", "texts": ["the host still serves"]})
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_input_gets_its_code_and_the_host_keeps_serving() {
    install_broken_models();
    let t5 = format!("{FIXTURE_ORG}/t5-tiny-random-realvocab");
    let classifier = format!("{FIXTURE_ORG}/categorium-bert-cls-en");
    let huge_text = "word ".repeat(40_000);
    let cases: Vec<(&str, Value, &str)> = vec![
        // Malformed or impossible requirements.
        (
            "unknown model",
            register_new(embedding("nobody/no-such-model")),
            "model-not-found",
        ),
        (
            "unknown revision",
            register_new(minilm_with("revision", json!("v9"))),
            "model-not-found",
        ),
        (
            "empty name",
            register_new(embedding("")),
            "invalid-requirement",
        ),
        ("empty id", register("", embedding(MINILM)), "invalid-input"),
        (
            "blank id",
            register("   ", embedding(MINILM)),
            "invalid-input",
        ),
        (
            "zero batch size",
            register_new(minilm_with("batch_size", json!(0))),
            "invalid-requirement",
        ),
        (
            "huge batch size",
            register_new(minilm_with("batch_size", json!(4_000_000_000u32))),
            "invalid-requirement",
        ),
        (
            "zero input length",
            register_new(minilm_with("max_input_length", json!(0))),
            "invalid-requirement",
        ),
        (
            "wrong dimension",
            register_new(minilm_with("dimension", json!(768))),
            "dimension-mismatch",
        ),
        (
            "negative temperature",
            register_new(minilm_with("temperature", json!(-1.0))),
            "invalid-requirement",
        ),
        (
            "top_p above 1",
            register_new(minilm_with("top_p", json!(1.5))),
            "invalid-requirement",
        ),
        (
            "top_p of 0",
            register_new(minilm_with("top_p", json!(0.0))),
            "invalid-requirement",
        ),
        (
            "negative repetition penalty",
            register_new(minilm_with("repetition_penalty", json!(-2.0))),
            "invalid-requirement",
        ),
        (
            "zero top_k",
            register_new(minilm_with("top_k", json!(0))),
            "invalid-requirement",
        ),
        (
            "t5 as an embedding model",
            register_new(embedding(&t5)),
            "unsupported-architecture",
        ),
        (
            "an encoder as text2text",
            register_new(json!({"model_type": "text2text", "name": MINILM})),
            "unsupported-architecture",
        ),
        (
            "an encoder as text generation",
            register(
                "a",
                json!({"model_type": "text-generation", "name": MINILM}),
            ),
            "unsupported-architecture",
        ),
        (
            "wrong label count",
            register(
                "a",
                json!({"model_type": "classification", "name": classifier, "num_labels": 3}),
            ),
            "dimension-mismatch",
        ),
        (
            "missing weights file",
            register_new(minilm_with("weights_file", json!("model-q4.gguf"))),
            "invalid-model-files",
        ),
        (
            "truncated safetensors",
            register_new(embedding("modelhost-broken/truncated-weights")),
            "invalid-model-files",
        ),
        (
            "broken tokenizer.json",
            register_new(embedding("modelhost-broken/broken-tokenizer")),
            "invalid-model-files",
        ),
        (
            "config.json not JSON",
            register_new(embedding("modelhost-broken/garbage-config")),
            "invalid-model-files",
        ),
        (
            "no weights at all",
            register_new(embedding("modelhost-broken/no-weights")),
            "invalid-model-files",
        ),
        (
            "conflicting re-registration",
            register("good", minilm_with("max_input_length", json!(8))),
            "conflict",
        ),
        // Calls on ids that are not (or no longer) there, or of the wrong type.
        (
            "embed with an unknown id",
            json!({"op": "embed", "id": "nope", "texts": ["x"]}),
            "not-registered",
        ),
        (
            "release before register",
            json!({"op": "release", "id": "later"}),
            "not-registered",
        ),
        (
            "register then release",
            register("later", embedding(MINILM)),
            "ok",
        ),
        ("release", json!({"op": "release", "id": "later"}), "ok"),
        (
            "double release",
            json!({"op": "release", "id": "later"}),
            "not-registered",
        ),
        (
            "use after release",
            json!({"op": "embed", "id": "later", "texts": ["x"]}),
            "not-registered",
        ),
        (
            "classify with an embedding id",
            json!({"op": "classify", "id": "good", "texts": ["x"]}),
            "wrong-model-type",
        ),
        (
            "generate with an embedding id",
            json!({"op": "generate", "id": "good", "prompt": "x"}),
            "wrong-model-type",
        ),
        (
            "stream with an embedding id",
            json!({"op": "stream", "id": "good", "prompt": "x"}),
            "wrong-model-type",
        ),
        (
            "chat with a text2text id",
            json!({"op": "chat", "id": "t5", "messages": [{"role": "user", "content": "x"}]}),
            "wrong-model-type",
        ),
        // Inputs: empty, odd and oversized.
        (
            "no texts",
            json!({"op": "embed", "id": "good", "texts": []}),
            "ok",
        ),
        (
            "an empty text",
            json!({"op": "embed", "id": "good", "texts": [""]}),
            "ok",
        ),
        (
            "control characters",
            json!({"op": "embed", "id": "good", "texts": ["\u{0}\u{7}\u{ffff}"]}),
            "ok",
        ),
        (
            "a 200 kB text is truncated",
            json!({"op": "embed", "id": "good", "texts": [huge_text]}),
            "ok",
        ),
        (
            "more texts than the limit",
            json!({"op": "embed", "id": "good", "texts": vec!["x"; 101]}),
            "limit-exceeded",
        ),
        (
            "more bytes than the limit",
            json!({"op": "embed", "id": "good", "texts": ["y".repeat(300_000)]}),
            "limit-exceeded",
        ),
        (
            "classify no texts",
            json!({"op": "classify", "id": "cls", "texts": []}),
            "ok",
        ),
        // Generation options.
        (
            "negative sampling temperature",
            generate(json!({"temperature": -0.5})),
            "invalid-input",
        ),
        (
            "top_p of 2",
            generate(json!({"top_p": 2.0})),
            "invalid-input",
        ),
        (
            "zero repetition penalty",
            generate(json!({"repetition_penalty": 0.0})),
            "invalid-input",
        ),
        (
            "zero new tokens",
            generate(json!({"max_output_length": 0})),
            "invalid-input",
        ),
        (
            "more new tokens than the limit",
            generate(json!({"max_output_length": 100_000})),
            "limit-exceeded",
        ),
        (
            "an empty stop sequence",
            generate(json!({"stop": [""]})),
            "invalid-input",
        ),
        (
            "a prompt longer than the context",
            json!({"op": "generate", "id": "gen", "prompt": "word ".repeat(9000)}),
            "invalid-input",
        ),
        (
            "a chat without messages",
            json!({"op": "chat", "id": "gen", "messages": []}),
            "invalid-input",
        ),
        (
            "a good generation",
            generate(json!({"max_output_length": 2})),
            "ok",
        ),
        // Policy.
        (
            "a model outside the allowlist",
            register_new(embedding(&t5.replace("t5", "other"))),
            "not-allowed",
        ),
        (
            "a fifth model id",
            register("fifth", embedding(MINILM)),
            "ok",
        ),
        (
            "more model ids than the limit",
            register("one-too-many", embedding(MINILM)),
            "limit-exceeded",
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut commands = vec![
        register("good", embedding(MINILM)),
        register(
            "cls",
            json!({"model_type": "classification", "name": classifier}),
        ),
        register("t5", json!({"model_type": "text2text", "name": t5})),
        register(
            "gen",
            json!({"model_type": "text-generation", "name": SMOLLM2}),
        ),
    ];
    for (_, command, _) in &cases {
        commands.push(command.clone());
        commands.push(good_call());
    }
    let limits = ModuleLimits {
        max_texts_per_call: 100,
        max_bytes_per_call: 256 << 10,
        max_new_tokens: 512,
        max_models: 5,
        allowed_models: vec![
            "sentence-transformers/*".into(),
            "HuggingFaceTB/*".into(),
            "modelhost-broken/*".into(),
            t5.clone(),
            classifier.clone(),
            "nobody/no-such-model".into(),
        ],
        ..ModuleLimits::default()
    };
    let runtime = real_runtime();
    let (replies, _) = probe_limited(&runtime, "bad-input", "", &commands, limits)
        .await
        .unwrap();
    assert_eq!(replies.len(), commands.len());
    for (reply, setup) in replies.iter().zip(&commands[..4]) {
        assert_eq!(code(reply), "ok", "{setup} gave {reply}");
    }
    let mut failures = Vec::new();
    for (i, (name, _, expected)) in cases.iter().enumerate() {
        let (reply, after) = (&replies[4 + 2 * i], &replies[5 + 2 * i]);
        if code(reply) != *expected {
            failures.push(format!("{name}: expected {expected}, got {reply}"));
        }
        if code(after) != "ok" {
            failures.push(format!("after {name}, a good call failed: {after}"));
        }
        let message = reply["error"]["message"].as_str().unwrap_or("a message");
        assert!(!message.is_empty(), "{name}: no message");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_with_a_bad_device_or_settings_fails_to_start_with_a_code() {
    let runtime = real_runtime();
    for (settings, expected) in [
        (
            r#"{"register": {"x": {"model_type": "embedding", "name": "a/b", "device": "gpu"}}}"#,
            "invalid-requirement",
        ),
        (
            r#"{"register": {"x": {"model_type": "embedding", "name": "a/b", "colour": 1}}}"#,
            "invalid-requirement",
        ),
        (r#"{"register": "#, "invalid-requirement"),
    ] {
        let Err(error) = probe(&runtime, "bad-settings", settings, &[]).await else {
            panic!("{settings} started");
        };
        match error.downcast_ref::<RuntimeError>() {
            Some(RuntimeError::Initialize { error, .. }) => assert_eq!(error.code, expected),
            other => panic!("{settings}: {other:?}"),
        }
    }
    // A GPU that is not there: the model runs on a device that is, and the status says so.
    let device = json!({"model_type": "embedding", "name": MINILM, "device": "cuda:99"});
    let (replies, _instance) = probe(
        &runtime,
        "no-such-gpu",
        "",
        &[
            register("x", device),
            json!({"op": "embed", "id": "x", "texts": ["y"]}),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        (code(&replies[0]), code(&replies[1])),
        ("ok", "ok"),
        "{replies:?}"
    );
    let status = runtime.manager().status();
    let note = status.loaded_models[0]
        .placement_note
        .clone()
        .unwrap_or_default();
    assert!(note.contains("cuda:99"), "{note}");
}

/// Runs the probe with one fault command under `limits`; returns the error it ended with.
async fn fault(runtime: &Runtime, name: &str, commands: &[Value], limits: ModuleLimits) -> String {
    let stdin: String = commands.iter().map(|c| format!("{c}\n")).collect();
    let settings = json!({"register": {"held": embedding(MINILM)}}).to_string();
    let mut instance = start_limited(
        runtime,
        guests::PROBE,
        name,
        &settings,
        stdin.into_bytes(),
        limits,
    )
    .await
    .unwrap();
    let outcome = instance.run().await;
    format!("{outcome:?}")
}

#[tokio::test(flavor = "multi_thread")]
async fn faulty_modules_are_stopped_and_leak_nothing() {
    let runtime = real_runtime();
    let tight = ModuleLimits {
        memory_bytes: 64 << 20,
        cpu_time_per_call: Some(Duration::from_millis(500)),
        max_models: 50,
        ..ModuleLimits::default()
    };
    // A healthy module holding the same model keeps working through every fault.
    let (replies, mut healthy) = probe(
        &runtime,
        "healthy",
        &json!({"register": {"mine": embedding(MINILM)}}).to_string(),
        &[],
    )
    .await
    .unwrap();
    assert!(replies.is_empty());
    let many = json!({"op": "register_many", "count": 1000, "requirement": embedding(MINILM)});
    // 128 MiB is over the 64 MiB limit and far under the 4 GiB a wasm32 guest can address at
    // all, so only the host's limit stops it; 16 MiB under the same limit is fine.
    let faults: [(&str, Value, &str); 6] = [
        ("trap", json!({"op": "trap"}), "Trap"),
        ("spin", json!({"op": "spin"}), "limits.cpu_seconds_per_call"),
        ("memory-bomb", json!({"op": "allocate", "mb": 128}), "Trap"),
        ("modest", json!({"op": "allocate", "mb": 16}), "ok"),
        ("hoarder", many, "ok"),
        ("never-releases", json!({"op": "status"}), "ok"),
    ];
    for cycle in 0..3 {
        for (name, command, expected) in &faults {
            let started = std::time::Instant::now();
            let outcome = fault(&runtime, name, std::slice::from_ref(command), tight.clone()).await;
            let ok = *expected == "ok" && outcome.starts_with("Ok(");
            assert!(ok || outcome.contains(expected), "{name}: {outcome}");
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{name} took too long"
            );
            // Only the healthy module's reference is left.
            let status = runtime.manager().status();
            let holders: Vec<&str> = status
                .module_references
                .iter()
                .map(|r| r.module_id.as_str())
                .collect();
            assert_eq!(holders.len(), 1, "cycle {cycle}, after {name}: {holders:?}");
            assert!(holders[0].starts_with("healthy"), "{holders:?}");
        }
    }
    // The hoarder was refused past its limit of 50 ids.
    let (replies, _) = probe_limited(
        &runtime,
        "hoarder",
        "",
        &[json!({"op": "register_many", "count": 51, "requirement": embedding(MINILM)})],
        tight.clone(),
    )
    .await
    .unwrap();
    assert_eq!(code(&replies[0]), "limit-exceeded", "{replies:?}");
    drop(healthy.cleanup().await);
    assert!(runtime.manager().status().module_references.is_empty());
}
