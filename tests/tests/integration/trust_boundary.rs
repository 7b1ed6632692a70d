//! The trust boundary: checkpoints built by the test to be hostile, guests that hammer ids,
//! strings and lists, and races between the calls of one module. Every case asserts the typed
//! error and that the host then serves a good request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use modelhost::manager::limits::ModuleLimits;
use modelhost::types::ModuleId;
use modelhost::types::error::HostError;
use modelhost::types::requirement::{ModelRequirement, ModelType};
use modelhost_tests::fake::FakeBackend;
use modelhost_tests::{
    FIXTURE_ORG, MINILM, SMOLLM2, code, link_tree, manager, model_store, probe_limited,
    real_runtime, test_settings,
};
use serde_json::{Value, json};

/// The commit hostile checkpoints are installed under.
const COMMIT: &str = "1111111111111111111111111111111111111111";

/// Installs a copy of `source` (a repository of the test store) as `modelhost-hostile/<name>`:
/// every file hard-linked, then `change` rewrites what it wants. Returns the repository id.
fn install(source: &str, name: &str, change: &dyn Fn(&Path)) -> String {
    let root = model_store().root().to_path_buf();
    let repo = root.join(format!("models--modelhost-hostile--{name}"));
    let id = format!("modelhost-hostile/{name}");
    if repo.exists() {
        return id;
    }
    let original = model_store().resolve(source, "main").unwrap().dir;
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    link_tree(&original, &snapshot);
    change(&snapshot);
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    id
}

/// Replaces the link `file` in `dir` by a file holding `bytes`.
fn replace(dir: &Path, file: &str, bytes: &[u8]) {
    let _ = std::fs::remove_file(dir.join(file));
    std::fs::write(dir.join(file), bytes).unwrap();
}

/// A copy of `source` whose JSON file `file` is rewritten by `change`.
fn json_file(source: &str, name: &str, file: &str, change: &dyn Fn(&mut Value)) -> String {
    install(source, name, &|dir| {
        let mut value: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        change(&mut value);
        replace(dir, file, value.to_string().as_bytes());
    })
}

/// A copy of MiniLM whose `config.json` has `key` set to `value`.
fn minilm_config(name: &str, key: &str, value: Value) -> String {
    json_file(MINILM, name, "config.json", &|config| {
        config[key] = value.clone()
    })
}

/// A copy of SmolLM2 whose GGUF file has the u32 metadata `key` set to `value`.
fn smollm2_metadata(name: &str, key: &str, value: u32) -> String {
    install(SMOLLM2, name, &|dir| {
        let gguf = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "gguf"))
            .unwrap();
        let mut bytes = std::fs::read(gguf.path()).unwrap();
        // The key as GGUF writes it: its length (u64), then its bytes.
        let mut written = (key.len() as u64).to_le_bytes().to_vec();
        written.extend(key.as_bytes());
        let at = bytes
            .windows(written.len())
            .position(|w| w == written)
            .expect("the key is in the GGUF file")
            + written.len();
        // A metadata value: its type (4 = uint32), then the value.
        assert_eq!(bytes[at..at + 4], 4u32.to_le_bytes());
        bytes[at + 4..at + 8].copy_from_slice(&value.to_le_bytes());
        replace(dir, &gguf.file_name().to_string_lossy(), &bytes);
    })
}

/// A safetensors file with one tensor whose header states `shape` over 16 bytes of data.
fn lying_safetensors(shape: &[u64]) -> Vec<u8> {
    let header = json!({
        "embeddings.word_embeddings.weight":
            {"dtype": "F32", "shape": shape, "data_offsets": [0, 16]}
    })
    .to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 16]);
    bytes
}

fn register(id: &str, requirement: Value) -> Value {
    json!({"op": "register", "id": id, "requirement": requirement})
}

fn embedding(name: &str) -> Value {
    json!({"model_type": "embedding", "name": name})
}

fn good_call() -> Value {
    json!({"op": "embed", "id": "good", "texts": ["the host still serves"]})
}

/// Runs `cases` through the probe guest, each followed by a good call, after `setup`; checks
/// each case's code and that every good call succeeded. Returns the replies to the cases.
async fn run_cases(
    setup: Vec<Value>,
    cases: &[(&str, Value, &str)],
    limits: ModuleLimits,
) -> Vec<Value> {
    let mut commands = setup.clone();
    for (_, command, _) in cases {
        commands.push(command.clone());
        commands.push(good_call());
    }
    let runtime = real_runtime();
    let (replies, _) = probe_limited(&runtime, "hostile", "", &commands, limits)
        .await
        .unwrap();
    for (reply, command) in replies.iter().zip(&setup) {
        assert_eq!(code(reply), "ok", "{command} gave {reply}");
    }
    let mut failures = Vec::new();
    let mut answers = Vec::new();
    for (i, (name, _, expected)) in cases.iter().enumerate() {
        let reply = &replies[setup.len() + 2 * i];
        let after = &replies[setup.len() + 2 * i + 1];
        println!("{name}: {reply}");
        // `code|words`: the code, and words the message must contain.
        let (expected_code, words) = expected.split_once('|').unwrap_or((expected, ""));
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        if code(reply) != expected_code || !message.contains(words) {
            failures.push(format!("{name}: expected {expected}, got {reply}"));
        }
        if code(after) != "ok" {
            failures.push(format!("after {name}, a good call failed: {after}"));
        }
        answers.push(reply.clone());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    answers
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_checkpoints_get_typed_errors_and_the_host_serves_on() {
    let classifier = format!("{FIXTURE_ORG}/distilbert-tiny-random-cls");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "hidden_size 0 (a division by zero on the worker before)",
            register(
                "h0",
                embedding(&minilm_config("hidden0", "hidden_size", json!(0))),
            ),
            "invalid-model-files|`hidden_size` is 0",
        ),
        (
            "no attention heads",
            register(
                "a0",
                embedding(&minilm_config("heads0", "num_attention_heads", json!(0))),
            ),
            "invalid-model-files|`num_attention_heads` is 0",
        ),
        (
            "a width that does not split over the heads",
            register(
                "a7",
                embedding(&minilm_config("heads7", "num_attention_heads", json!(7))),
            ),
            "invalid-model-files|inconsistent head counts",
        ),
        (
            "a feed-forward layer of 10^12",
            register(
                "ff",
                embedding(&minilm_config(
                    "huge-ffn",
                    "intermediate_size",
                    json!(1_000_000_000_000u64),
                )),
            ),
            "invalid-model-files|`intermediate_size`",
        ),
        (
            "two billion positions",
            register(
                "pos",
                embedding(&minilm_config(
                    "huge-positions",
                    "max_position_embeddings",
                    json!(2_000_000_000u64),
                )),
            ),
            "invalid-model-files|`max_position_embeddings`",
        ),
        (
            "a hundred thousand layers",
            register(
                "layers",
                embedding(&minilm_config(
                    "many-layers",
                    "num_hidden_layers",
                    json!(100_000),
                )),
            ),
            "invalid-model-files|`num_hidden_layers`",
        ),
        (
            "a layer norm epsilon of 0",
            register(
                "eps",
                embedding(&minilm_config("eps0", "layer_norm_eps", json!(0.0))),
            ),
            "invalid-model-files|`layer_norm_eps`",
        ),
        (
            "a negative vocabulary",
            register(
                "vocab",
                embedding(&minilm_config("negative-vocab", "vocab_size", json!(-5))),
            ),
            "invalid-model-files|vocab",
        ),
        (
            "a safetensors header whose shape overflows",
            register(
                "overflow",
                embedding(&install(MINILM, "overflowing-shape", &|dir| {
                    replace(
                        dir,
                        "model.safetensors",
                        &lying_safetensors(&[1 << 40, 1 << 40]),
                    );
                })),
            ),
            "invalid-model-files|overflows",
        ),
        (
            "a safetensors header whose shape exceeds its data",
            register(
                "lying",
                embedding(&install(MINILM, "lying-shape", &|dir| {
                    replace(
                        dir,
                        "model.safetensors",
                        &lying_safetensors(&[1_000_000, 384]),
                    );
                })),
            ),
            "invalid-model-files|needs 1536000000 bytes",
        ),
        (
            "a 65 MB tokenizer.json",
            register(
                "tok",
                embedding(&install(MINILM, "huge-tokenizer", &|dir| {
                    replace(dir, "tokenizer.json", b"");
                    let file = std::fs::File::options()
                        .write(true)
                        .open(dir.join("tokenizer.json"))
                        .unwrap();
                    file.set_len(65 << 20).unwrap();
                })),
            ),
            "invalid-model-files|tokenizer.json has",
        ),
        (
            "seventy thousand labels",
            register(
                "labels",
                json!({"model_type": "classification", "name": install(&classifier, "many-labels", &|dir| {
                    let mut config: Value = serde_json::from_str(
                        &std::fs::read_to_string(dir.join("config.json")).unwrap(),
                    )
                    .unwrap();
                    let labels: serde_json::Map<String, Value> =
                        (0..70_000).map(|i| (i.to_string(), json!(format!("l{i}")))).collect();
                    config["id2label"] = Value::Object(labels);
                    replace(dir, "config.json", config.to_string().as_bytes());
                })}),
            ),
            "invalid-model-files|70000 labels",
        ),
        (
            "a GGUF file with no attention heads",
            register(
                "gguf-heads",
                json!({"model_type": "text-generation",
                       "name": smollm2_metadata("gguf-heads0", "llama.attention.head_count", 0)}),
            ),
            "invalid-model-files|`attention heads` is 0",
        ),
        (
            "a GGUF file with 7 key/value heads for 9 heads",
            register(
                "gguf-kv",
                json!({"model_type": "text-generation",
                       "name": smollm2_metadata("gguf-kv7", "llama.attention.head_count_kv", 7)}),
            ),
            "invalid-model-files|inconsistent head counts",
        ),
        (
            "a GGUF file declaring two billion positions registers (its context is capped)",
            register(
                "long",
                json!({"model_type": "text-generation",
                       "name": smollm2_metadata("gguf-long", "llama.context_length", 2_000_000_000)}),
            ),
            "ok",
        ),
        (
            "and generates within the memory budget",
            json!({"op": "generate", "id": "long", "prompt": "Hello", "options": {"max_output_length": 2}}),
            "ok",
        ),
        (
            "a chat template that loops ten billion times registers",
            register(
                "loop",
                json!({"model_type": "text-generation", "name": json_file(SMOLLM2, "endless-template", "tokenizer_config.json", &|config| {
                    config["chat_template"] = json!(
                        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
                    );
                })}),
            ),
            "ok",
        ),
        (
            "and its chat runs out of steps instead of holding the worker",
            json!({"op": "chat", "id": "loop", "messages": [{"role": "user", "content": "hi"}],
                   "options": {"max_output_length": 1}}),
            "invalid-input|chat template",
        ),
        (
            "a label of 1 KB",
            register(
                "long-label",
                json!({"model_type": "classification", "name": json_file(&classifier, "long-label", "config.json", &|config| {
                    config["id2label"]["0"] = json!("l".repeat(1024));
                })}),
            ),
            "invalid-model-files|at most 256",
        ),
        (
            "a modules.json naming a folder outside the snapshot",
            register(
                "escape",
                embedding(&json_file(
                    MINILM,
                    "escaping-modules",
                    "modules.json",
                    &|modules| {
                        modules[1]["path"] = json!("../../../../../../etc");
                    },
                )),
            ),
            "invalid-model-files|not a file of the snapshot",
        ),
    ];
    run_cases(
        vec![register("good", embedding(MINILM))],
        &cases,
        ModuleLimits::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_strings_and_lists_are_capped_and_host_paths_hidden() {
    let long_id = "i".repeat(64 << 10);
    let user = |content: &str| json!({"role": "user", "content": content});
    let chat = |messages: Vec<Value>| json!({"op": "chat", "id": "gen", "messages": messages});
    let generate_with_stop = |stop: Vec<String>| {
        json!({"op": "generate", "id": "gen", "prompt": "Hello",
               "options": {"stop": stop, "max_output_length": 1}})
    };
    let with = |field: &str, value: Value| {
        let mut requirement = embedding(MINILM);
        requirement[field] = value;
        register("capped", requirement)
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "a 300-byte model id",
            register(&"r".repeat(300), embedding(MINILM)),
            "invalid-input",
        ),
        (
            "a model id with a newline",
            register("a\nb", embedding(MINILM)),
            "invalid-input",
        ),
        (
            "embedding with a 64 KB id",
            json!({"op": "embed", "id": long_id, "texts": ["x"]}),
            "invalid-input",
        ),
        (
            "releasing a 64 KB id",
            json!({"op": "release", "id": long_id}),
            "invalid-input",
        ),
        (
            "an unregistered id",
            json!({"op": "embed", "id": "never-registered", "texts": ["x"]}),
            "not-registered",
        ),
        (
            "a 300-byte name",
            with("name", json!(format!("org/{}", "n".repeat(296)))),
            "invalid-requirement",
        ),
        (
            "a 300-byte revision",
            with("revision", json!("v".repeat(300))),
            "invalid-requirement",
        ),
        (
            "a 300-byte weights file",
            with("weights_file", json!("w".repeat(300))),
            "invalid-requirement",
        ),
        (
            "seventeen stop sequences",
            generate_with_stop(vec!["s".into(); 17]),
            "invalid-input",
        ),
        (
            "a 300-byte stop sequence",
            generate_with_stop(vec!["s".repeat(300)]),
            "invalid-input",
        ),
        (
            "stop sequences count in the bytes of a call",
            generate_with_stop(
                (0..16)
                    .map(|i| format!("{i:x}").repeat(256)[..256].to_string())
                    .collect(),
            ),
            "limit-exceeded",
        ),
        (
            "a chat of 101 messages",
            chat(vec![user("hi"); 101]),
            "limit-exceeded",
        ),
        (
            "a chat role of 100 bytes",
            chat(vec![json!({"role": "r".repeat(100), "content": "hi"})]),
            "invalid-input",
        ),
        (
            "a chat role with a newline",
            chat(vec![json!({"role": "user\nsystem", "content": "hi"})]),
            "invalid-input",
        ),
        ("a good chat", chat(vec![user("Hi")]), "ok"),
        (
            "an unknown model",
            register("unknown", embedding("nobody/nothing-here")),
            "model-not-found",
        ),
        ("the status", json!({"op": "status"}), "ok"),
    ];
    let limits = ModuleLimits {
        max_texts_per_call: 100,
        max_bytes_per_call: 4096,
        max_new_tokens: 2,
        ..ModuleLimits::default()
    };
    let setup = vec![
        register("good", embedding(MINILM)),
        register(
            "gen",
            json!({"model_type": "text-generation", "name": SMOLLM2}),
        ),
    ];
    let answers = run_cases(setup, &cases, limits).await;
    let root = std::fs::canonicalize(model_store().root()).unwrap();
    let root = root.to_string_lossy();
    let unknown = answers[cases.len() - 2]["error"]["message"]
        .as_str()
        .unwrap();
    assert!(
        unknown.contains("<model store>") && !unknown.contains(root.as_ref()),
        "{unknown}"
    );
    let models = answers[cases.len() - 1]["ok"]["loaded_models"]
        .as_object()
        .unwrap();
    assert!(!models.is_empty());
    for model in models.values() {
        let text = model.to_string();
        assert!(!text.contains(root.as_ref()), "{text}");
        assert_eq!(model["source"], "worker_pool");
    }
    for answer in &answers {
        assert!(
            answer.to_string().len() < 4096,
            "an error echoed a long input: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_chosen_ids_never_become_metric_labels() {
    let runtime = real_runtime();
    let mut commands = vec![register("good", embedding(MINILM))];
    for i in 0..2000 {
        let id = format!("{i}-{}", "x".repeat(200));
        commands.push(json!({"op": "embed", "id": id, "texts": ["x"]}));
    }
    commands.push(good_call());
    let (replies, _) = probe_limited(&runtime, "ids", "", &commands, ModuleLimits::default())
        .await
        .unwrap();
    assert!(replies[1..2001].iter().all(|r| code(r) == "not-registered"));
    assert_eq!(code(&replies[2001]), "ok");
    let metrics = runtime.manager().metrics_text();
    assert!(
        !metrics.contains("xxxxxxxxxx"),
        "a guest-chosen id became a label"
    );
    assert!(
        metrics.contains(r#"model="(unregistered)",operation="embed"} 2000"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"model="good",operation="embed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_load_fails_its_request_and_the_worker_serves_on() {
    let backend = Arc::new(FakeBackend::panicking_on_load(2));
    let manager = manager(
        backend.clone(),
        &modelhost::engine::device::SystemDevices,
        test_settings(Duration::from_secs(60)),
    );
    let m = ModuleId::new("m");
    let preloaded = ModelRequirement {
        preload_workers: 1,
        ..ModelRequirement::new(ModelType::Embedding, MINILM)
    };
    // The preload panics: registration still succeeds and the model loads on first use.
    manager.register(&m, "e", preloaded).await.unwrap();
    // The load on the request's own path panics: that request fails with its type.
    let error = manager.embed(&m, "e", vec!["x".into()]).await.unwrap_err();
    assert!(
        matches!(&error, HostError::LoadFailed { reason, .. } if reason.contains("panicked")),
        "{error:?}"
    );
    // The same worker thread loads it now and serves.
    let served = manager.embed(&m, "e", vec!["x".into()]).await.unwrap();
    assert_eq!(served.vectors.len(), 1);
    assert_eq!(backend.loads(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn releases_racing_preloading_registrations_never_poison_the_registry() {
    let manager = manager(
        Arc::new(FakeBackend::with_delay(Duration::from_millis(1))),
        &modelhost::engine::device::SystemDevices,
        test_settings(Duration::from_secs(60)),
    );
    let m = ModuleId::new("m");
    let preloaded = ModelRequirement {
        preload_workers: 2,
        ..ModelRequirement::new(ModelType::Embedding, MINILM)
    };
    for _ in 0..200 {
        let registering = {
            let (manager, m, requirement) = (manager.clone(), m.clone(), preloaded.clone());
            tokio::spawn(async move { manager.register(&m, "raced", requirement).await })
        };
        let releasing = {
            let (manager, m) = (manager.clone(), m.clone());
            tokio::spawn(async move {
                for _ in 0..50 {
                    if manager.release(&m, "raced").is_ok() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let registration = registering.await.expect("registration does not panic");
        assert_eq!(registration.unwrap().model_id, "raced");
        releasing.await.expect("release does not panic");
        while manager.release(&m, "raced").is_ok() {}
    }
    manager.register(&m, "after", preloaded).await.unwrap();
    assert_eq!(
        manager
            .embed(&m, "after", vec!["x".into()])
            .await
            .unwrap()
            .vectors
            .len(),
        1
    );
    assert_eq!(manager.status().module_references.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_requests_leave_the_queue_count_exactly_once() {
    let mut settings = test_settings(Duration::from_secs(60));
    settings.pool.queue_timeout = Duration::from_millis(3);
    settings.pool.max_queue_length = 4;
    settings.pool.batch_size = 1;
    settings.cache.enabled = false;
    let manager = manager(
        Arc::new(FakeBackend::with_delay(Duration::from_millis(5))),
        &modelhost::engine::device::SystemDevices,
        settings,
    );
    let m = ModuleId::new("m");
    manager
        .register(&m, "e", ModelRequirement::new(ModelType::Embedding, MINILM))
        .await
        .unwrap();
    for round in 0..20 {
        let calls: Vec<_> = (0..16)
            .map(|i| {
                let (manager, m) = (manager.clone(), m.clone());
                tokio::spawn(
                    async move { manager.embed(&m, "e", vec![format!("{round}-{i}")]).await },
                )
            })
            .collect();
        for call in calls {
            match call.await.unwrap() {
                Ok(_) | Err(HostError::Timeout(_) | HostError::Overloaded(_)) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(manager.status().worker_pool.pending_tasks, 0);
    // The count is back to zero: a request is queued again, not refused as overloaded.
    let mut served = false;
    for _ in 0..20 {
        match manager.embed(&m, "e", vec!["again".into()]).await {
            Ok(_) => {
                served = true;
                break;
            }
            Err(HostError::Timeout(_)) => {}
            Err(other) => panic!("after the storm: {other:?}"),
        }
    }
    assert!(served, "no request was served after the storm");
}
