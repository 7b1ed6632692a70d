//! Downloads into the model store from a local Hub emulator (no real Hub is reachable): a pull
//! into the cache layout and a later offline resolve, tokens, gated and missing models, a refused
//! connection, a body cut short, a wrong checksum and two pulls at once. Every failure has its
//! type, and the store never holds a file that would later be taken for good.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use modelhost::store::hub::{Downloader, FileProgress, HubSettings};
use modelhost::store::local::ModelStore;
use modelhost::types::error::HostError;
use modelhost_tests::fixtures;
use modelhost_tests::hub_emulator::{COMMIT, HubConfig, HubEmulator};

const REPO: &str = "org/tiny-classifier";

fn emulator(change: impl FnOnce(&mut HubConfig)) -> HubEmulator {
    let mut config = HubConfig::default();
    config.models.insert(
        REPO.into(),
        fixtures().join("models/distilbert-tiny-random-cls"),
    );
    change(&mut config);
    HubEmulator::start(config)
}

fn downloader(endpoint: &str, token: Option<&str>, offline: bool) -> Downloader {
    Downloader::new(HubSettings {
        endpoint: endpoint.into(),
        token: token.map(str::to_string),
        offline,
        ..HubSettings::default()
    })
}

fn pull(
    downloader: &Downloader,
    store: &ModelStore,
) -> Result<modelhost::store::local::ModelFiles, HostError> {
    downloader.pull(store, REPO, "main", None, &mut |_| {})
}

/// Files in the snapshot folder (what the store would take for good).
fn snapshot_files(store: &Path) -> HashSet<String> {
    let snapshot = store
        .join("models--org--tiny-classifier/snapshots")
        .join(COMMIT);
    std::fs::read_dir(snapshot)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_pull_fills_the_cache_layout_and_resolves_offline_later() {
    let hub = emulator(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let mut events = Vec::new();
    let files = downloader(&hub.endpoint, None, false)
        .pull(&store, REPO, "main", None, &mut |e| events.push(e))
        .unwrap();
    assert_eq!(files.revision, COMMIT);
    assert_eq!(
        snapshot_files(dir.path()),
        ["config.json", "model.safetensors", "tokenizer.json"]
            .map(String::from)
            .into()
    );
    let refs =
        std::fs::read_to_string(dir.path().join("models--org--tiny-classifier/refs/main")).unwrap();
    assert_eq!(refs, COMMIT);
    let original =
        std::fs::read(fixtures().join("models/distilbert-tiny-random-cls/model.safetensors"))
            .unwrap();
    assert_eq!(
        std::fs::read(files.path("model.safetensors")).unwrap(),
        original
    );
    let started = events
        .iter()
        .filter(|e| matches!(e, FileProgress::Started { .. }))
        .count();
    assert_eq!(started, 3, "one start per file: {events:?}");
    // Offline, with the hub gone: served from the cache, nothing downloaded again.
    let offline = downloader("http://127.0.0.1:9", None, true);
    assert_eq!(pull(&offline, &store).unwrap(), files);
    assert_eq!(hub.downloads().len(), 3);
    // Online again, the model is in place: nothing is downloaded.
    pull(&downloader(&hub.endpoint, None, false), &store).unwrap();
    assert_eq!(hub.downloads().len(), 3);
}

#[test]
fn offline_without_the_model_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let err = pull(
        &downloader("http://127.0.0.1:9", None, true),
        &ModelStore::new(dir.path()),
    )
    .unwrap_err();
    assert!(matches!(err, HostError::ModelNotFound { .. }), "{err}");
}

#[test]
fn a_token_is_required_and_sent() {
    let hub = emulator(|c| c.token = Some("hf_test_token".into()));
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let err = pull(&downloader(&hub.endpoint, None, false), &store).unwrap_err();
    assert!(matches!(err, HostError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("HF_TOKEN"));
    assert!(snapshot_files(dir.path()).is_empty());
    pull(
        &downloader(&hub.endpoint, Some("hf_test_token"), false),
        &store,
    )
    .unwrap();
    assert!(hub.tokens_seen().iter().all(|t| t == "hf_test_token"));
}

#[test]
fn gated_missing_and_unreachable_models_fail_with_their_types() {
    let hub = emulator(|c| {
        c.gated.insert(REPO.into());
    });
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let err = pull(&downloader(&hub.endpoint, Some("t"), false), &store).unwrap_err();
    assert!(matches!(err, HostError::Gated { .. }), "{err}");
    assert!(err.to_string().contains("accept its terms"));
    let missing = downloader(&hub.endpoint, None, false).pull(
        &store,
        "org/nothing",
        "main",
        None,
        &mut |_| {},
    );
    let err = missing.unwrap_err();
    assert!(matches!(err, HostError::NotOnHub { .. }), "{err}");
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", refused.local_addr().unwrap());
    drop(refused);
    let err = pull(&downloader(&closed, None, false), &store).unwrap_err();
    assert!(matches!(err, HostError::NetworkUnreachable { .. }), "{err}");
    assert!(err.to_string().contains(&closed) && err.to_string().contains("HF_HUB_OFFLINE"));
    assert!(snapshot_files(dir.path()).is_empty());
}

#[test]
fn a_body_cut_short_is_never_kept_and_a_retry_completes() {
    let hub = emulator(|c| {
        c.cut_short.insert("model.safetensors".into());
    });
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let err = pull(&downloader(&hub.endpoint, None, false), &store).unwrap_err();
    assert!(
        matches!(
            err,
            HostError::NetworkUnreachable { .. } | HostError::CorruptDownload { .. }
        ),
        "{err}"
    );
    assert!(!snapshot_files(dir.path()).contains("model.safetensors"));
    assert!(store.resolve(REPO, "main").is_err());
    hub.configure(|c| c.cut_short.clear());
    let files = pull(&downloader(&hub.endpoint, None, false), &store).unwrap();
    let original =
        std::fs::read(fixtures().join("models/distilbert-tiny-random-cls/model.safetensors"))
            .unwrap();
    assert_eq!(
        std::fs::read(files.path("model.safetensors")).unwrap(),
        original
    );
}

#[test]
fn a_wrong_checksum_is_deleted_and_reported() {
    let hub = emulator(|c| {
        c.corrupt.insert("tokenizer.json".into());
    });
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let err = pull(&downloader(&hub.endpoint, None, false), &store).unwrap_err();
    assert!(
        matches!(&err, HostError::CorruptDownload { file, .. } if file == "tokenizer.json"),
        "{err}"
    );
    assert!(!snapshot_files(dir.path()).contains("tokenizer.json"));
    let blobs = dir.path().join("models--org--tiny-classifier/blobs");
    for blob in std::fs::read_dir(blobs).unwrap().flatten() {
        let name = blob.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with('.') || name.ends_with(".lock"),
            "left {name}"
        );
    }
    assert!(store.resolve(REPO, "main").is_err());
}

#[test]
fn two_pulls_at_once_download_once() {
    let hub = emulator(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path());
    let downloader = Arc::new(downloader(&hub.endpoint, None, false));
    let pulls: Vec<_> = (0..2)
        .map(|_| {
            let (downloader, store) = (downloader.clone(), store.clone());
            std::thread::spawn(move || pull(&downloader, &store).unwrap())
        })
        .collect();
    let results: Vec<_> = pulls.into_iter().map(|p| p.join().unwrap()).collect();
    assert_eq!(results[0], results[1]);
    let mut downloads = hub.downloads();
    downloads.sort();
    downloads.dedup();
    assert_eq!(
        hub.downloads().len(),
        downloads.len(),
        "a file was downloaded twice: {:?}",
        hub.downloads()
    );
}

#[test]
fn modelhost_pull_downloads_ahead_with_a_summary() {
    let hub = emulator(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_modelhost-cli"))
        .args([
            "--models-dir",
            dir.path().to_str().unwrap(),
            "pull",
            &format!("{REPO}@main"),
        ])
        .env("HF_ENDPOINT", &hub.endpoint)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_HOME", dir.path().join("hf-home"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("3 files downloaded"), "{stdout}");
    assert_eq!(snapshot_files(dir.path()).len(), 3);
    let offline = std::process::Command::new(env!("CARGO_BIN_EXE_modelhost-cli"))
        .args([
            "--models-dir",
            dir.path().to_str().unwrap(),
            "pull",
            "org/other",
        ])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(!offline.status.success());
    assert!(String::from_utf8_lossy(&offline.stderr).contains("org/other"));
}

/// Registration downloads a missing model (and says what failed when it cannot), through a real
/// guest.
#[tokio::test(flavor = "multi_thread")]
async fn registration_downloads_missing_models() {
    use modelhost::backends::CandleBackend;
    use modelhost::engine::device::SystemDevices;
    use modelhost::manager::ModelManager;
    use modelhost::runtime::Runtime;
    use modelhost::runtime::RuntimeSettings;
    use modelhost_tests::{code, probe, test_settings};
    use serde_json::json;

    let hub = emulator(|c| {
        c.models.insert(
            "org/gated".into(),
            fixtures().join("models/distilbert-tiny-random-cls"),
        );
        c.gated.insert("org/gated".into());
    });
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(std::time::Duration::from_secs(60));
    settings.downloads = Some(HubSettings {
        endpoint: hub.endpoint.clone(),
        ..HubSettings::default()
    });
    let manager = ModelManager::new(
        ModelStore::new(dir.path()),
        Arc::new(CandleBackend),
        &SystemDevices,
        settings,
    )
    .unwrap();
    let runtime = Runtime::new(manager, &RuntimeSettings::default()).unwrap();
    let classifier = |name: &str| json!({"model_type": "classification", "name": name});
    let commands = [
        json!({"op": "register", "id": "c", "requirement": classifier(REPO)}),
        json!({"op": "classify", "id": "c", "texts": ["it works"]}),
        json!({"op": "register", "id": "g", "requirement": classifier("org/gated")}),
        json!({"op": "register", "id": "m", "requirement": classifier("org/missing")}),
    ];
    let (replies, _) = probe(&runtime, "downloader", "", &commands).await.unwrap();
    let codes: Vec<&str> = replies.iter().map(code).collect();
    assert_eq!(
        codes,
        ["ok", "ok", "gated", "model-not-found"],
        "{replies:?}"
    );
    assert_eq!(hub.downloads().len(), 3);
}

#[test]
fn the_token_file_of_huggingface_cli_login_is_used() {
    let hub = emulator(|c| c.token = Some("hf_from_file".into()));
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("hf-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("token"), "hf_from_file\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_modelhost-cli"))
        .args([
            "--models-dir",
            dir.path().join("store").to_str().unwrap(),
            "pull",
            REPO,
        ])
        .env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_HOME", &home)
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(hub.tokens_seen().iter().all(|t| t == "hf_from_file") && !hub.tokens_seen().is_empty());
    assert!(!stderr.contains("hf_from_file"), "the token was logged");
}
