//! Helpers for the integration tests: the compiled guest modules, the fixtures, a model store in
//! the Hugging Face layout holding the real and the fixture models, and a host to run guests on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use modelhost::backends::{
    CandleBackend, GenerationRequest, GenerationSummary, ModelBackend, TextGenerator,
};
use modelhost::cli::config::HostConfig;
use modelhost::engine::device::{DeviceInventory, SystemDevices};
use modelhost::manager::limits::ModuleLimits;
use modelhost::manager::{ManagerSettings, ModelManager};
use modelhost::runtime::RuntimeSettings;
use modelhost::runtime::{ModuleInstance, ModuleOptions, Runtime, Stdio};
use modelhost::store::local::ModelStore;
use serde_json::Value;

pub mod fake;
pub mod hub_emulator;
pub mod served;

/// Paths of the guest components compiled by `build.rs`.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The real embedding model every numeric test uses.
pub const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The real text generation model (GGUF Q4_1) the generation tests use.
pub const SMOLLM2: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";
/// The Hub-style name under which the small fixture checkpoints are installed in the test store.
pub const FIXTURE_ORG: &str = "modelhost-fixtures";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `tests/fixtures/`: reference outputs, evaluation data and small checkpoints.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A model store (Hugging Face cache layout) with the real MiniLM and SmolLM2 checkpoints fetched
/// by `scripts/fetch-models` and every checkpoint of `tests/fixtures/models` as
/// `modelhost-fixtures/<folder>`. Built once per test process, of hard links (copies across file
/// systems): the store is a jail, and symbolic links out of it are refused.
pub fn model_store() -> ModelStore {
    static STORE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let fetched = ModelStore::default_root(None);
        let fetched = if fetched.is_absolute() {
            fetched
        } else {
            repo_root().join(fetched)
        };
        for name in [MINILM, SMOLLM2] {
            let repo = format!("models--{}", name.replace('/', "--"));
            let source = fetched.join(&repo);
            assert!(
                source.join("refs/main").is_file(),
                "{name} is not in {}: run scripts/fetch-models first",
                fetched.display()
            );
            link_tree(&source, &dir.path().join(repo));
        }
        for entry in std::fs::read_dir(fixtures().join("models")).unwrap() {
            let entry = entry.unwrap();
            let repo = dir.path().join(format!(
                "models--{FIXTURE_ORG}--{}",
                entry.file_name().to_string_lossy()
            ));
            std::fs::create_dir_all(repo.join("snapshots")).unwrap();
            std::fs::create_dir_all(repo.join("refs")).unwrap();
            std::fs::write(repo.join("refs/main"), "fixture").unwrap();
            link_tree(&entry.path(), &repo.join("snapshots/fixture"));
        }
        dir
    });
    ModelStore::new(dir.path())
}

/// `to` as a hard link to `from`, or a copy where the two are on different file systems.
pub fn link_or_copy(from: &Path, to: &Path) {
    let from = std::fs::canonicalize(from).expect("the file exists");
    if std::fs::hard_link(&from, to).is_err() {
        std::fs::copy(&from, to).expect("copy");
    }
}

/// The folder `from` recreated at `to`, its files hard-linked (symbolic links followed).
pub fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("folder");
    for entry in std::fs::read_dir(from).expect("folder").flatten() {
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if source.is_dir() {
            link_tree(&source, &target);
        } else {
            link_or_copy(&source, &target);
        }
    }
}

/// The default host settings with `idle_unload` as the idle time.
pub fn test_settings(idle_unload: Duration) -> ManagerSettings {
    ManagerSettings {
        idle_unload,
        downloads: None,
        ..HostConfig::default().manager_settings()
    }
}

/// A manager over the test model store.
pub fn manager(
    backend: Arc<dyn ModelBackend>,
    inventory: &dyn DeviceInventory,
    settings: ManagerSettings,
) -> Arc<ModelManager> {
    ModelManager::new(model_store(), backend, inventory, settings).expect("manager")
}

/// A runtime over the test model store with the real candle backend and default settings.
pub fn real_runtime() -> Runtime {
    runtime_with(
        Arc::new(CandleBackend),
        test_settings(Duration::from_secs(300)),
    )
}

/// A runtime over the test model store with `backend` and `settings`, on this machine.
pub fn runtime_with(backend: Arc<dyn ModelBackend>, settings: ManagerSettings) -> Runtime {
    let manager = manager(backend, &SystemDevices, settings);
    Runtime::new(manager, &RuntimeSettings::default()).expect("runtime")
}

/// Starts `guest` with `settings`, feeding `stdin`, and returns the initialized instance.
pub async fn start(
    runtime: &Runtime,
    guest: &str,
    name: &str,
    settings: &str,
    stdin: Vec<u8>,
) -> anyhow::Result<ModuleInstance> {
    start_limited(
        runtime,
        guest,
        name,
        settings,
        stdin,
        ModuleLimits::default(),
    )
    .await
}

/// [`start`] with `limits`.
pub async fn start_limited(
    runtime: &Runtime,
    guest: &str,
    name: &str,
    settings: &str,
    stdin: Vec<u8>,
    limits: ModuleLimits,
) -> anyhow::Result<ModuleInstance> {
    let image = runtime.load(Path::new(guest))?;
    let options = ModuleOptions {
        name: Some(name.into()),
        stdio: Stdio::Capture { stdin },
        limits,
        ..ModuleOptions::default()
    };
    let mut instance = runtime.instantiate(&image, options).await?;
    instance.initialize(settings).await?;
    Ok(instance)
}

/// Runs the probe module: `initialize(settings)`, then one reply per command. The instance is
/// returned un-cleaned so tests can check what it still holds.
pub async fn probe(
    runtime: &Runtime,
    name: &str,
    settings: &str,
    commands: &[Value],
) -> anyhow::Result<(Vec<Value>, ModuleInstance)> {
    probe_limited(runtime, name, settings, commands, ModuleLimits::default()).await
}

/// [`probe`] with `limits`.
pub async fn probe_limited(
    runtime: &Runtime,
    name: &str,
    settings: &str,
    commands: &[Value],
    limits: ModuleLimits,
) -> anyhow::Result<(Vec<Value>, ModuleInstance)> {
    let stdin: String = commands.iter().map(|c| format!("{c}\n")).collect();
    let stdin = stdin.into_bytes();
    let mut instance = start_limited(runtime, guests::PROBE, name, settings, stdin, limits).await?;
    let status = instance.run().await?;
    let stdout = String::from_utf8(instance.stdout().unwrap_or_default())?;
    anyhow::ensure!(
        status == 0,
        "probe exited with {status}: {}",
        String::from_utf8_lossy(&instance.stderr().unwrap_or_default())
    );
    let replies = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<Value>, _>>()?;
    Ok((replies, instance))
}

/// The error code of a probe reply, or `"ok"`.
pub fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("ok")
}

/// Runs document-processor on `texts` (one per line) and returns one vector per text.
pub async fn embed_with_document_processor(
    runtime: &Runtime,
    settings: &str,
    texts: &[String],
) -> anyhow::Result<Vec<Vec<f32>>> {
    let stdin: String = texts.iter().map(|t| format!("{t}\n")).collect();
    let mut instance = start(
        runtime,
        guests::DOCUMENT_PROCESSOR,
        "document-processor",
        settings,
        stdin.into_bytes(),
    )
    .await?;
    let status = instance.run().await?;
    anyhow::ensure!(
        status == 0,
        "document-processor exited with {status}: {}",
        String::from_utf8_lossy(&instance.stderr().unwrap_or_default())
    );
    let stdout = String::from_utf8(instance.stdout().unwrap_or_default())?;
    instance.cleanup().await?;
    Ok(stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// The reference embeddings: (text, vector) for each of the 136 texts.
pub fn reference_embeddings() -> Vec<(String, Vec<f32>)> {
    #[derive(serde::Deserialize)]
    struct Row {
        text: String,
        embedding: Vec<f32>,
    }
    let text =
        std::fs::read_to_string(fixtures().join("reference/minilm-embeddings.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let row: Row = serde_json::from_str(line).unwrap();
            (row.text, row.embedding)
        })
        .collect()
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Largest absolute element-wise difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs `request` on `model`: the text it handed out, and its summary.
pub fn generate_collecting(
    model: &dyn TextGenerator,
    request: &GenerationRequest,
) -> (String, GenerationSummary) {
    let mut text = String::new();
    let summary = model
        .generate(request, &mut |piece| {
            text.push_str(piece);
            true
        })
        .unwrap();
    (text, summary)
}
