//! A hostile hub (or mirror, or anything in between) cannot make a pull write outside the model
//! store, fetch more than the configured cap, hang forever or collect the token elsewhere; and a
//! store someone tampered with cannot make a backend open files outside it.
//!
//! Each attack is checked for (a) its typed error, (b) nothing written outside the store (the
//! store is `<tempdir>/store`; the tempdir must hold nothing else, and the paths the attack named
//! must not exist), and (c) a good pull into the same store working afterwards.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modelhost::store::hub::{Downloader, HubSettings};
use modelhost::store::local::{ModelFiles, ModelStore};
use modelhost::types::error::HostError;
use modelhost_tests::fixtures;
use modelhost_tests::hub_emulator::{COMMIT, HubConfig, HubEmulator, git_blob_id};

const REPO: &str = "org/tiny-classifier";
const TOKEN: &str = "hf_hostile_test";

fn fixture() -> PathBuf {
    fixtures().join("models/distilbert-tiny-random-cls")
}

fn good_config() -> HubConfig {
    let mut config = HubConfig::default();
    config.models.insert(REPO.into(), fixture());
    config
}

fn emulator(change: impl FnOnce(&mut HubConfig)) -> HubEmulator {
    let mut config = good_config();
    change(&mut config);
    HubEmulator::start(config)
}

fn settings(endpoint: &str) -> HubSettings {
    HubSettings {
        endpoint: endpoint.into(),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        ..HubSettings::default()
    }
}

fn pull(settings: HubSettings, store: &ModelStore) -> Result<ModelFiles, HostError> {
    Downloader::new(settings).pull(store, REPO, "main", None, &mut |_| {})
}

/// A tempdir and a store in its `store` folder.
struct Jail {
    tmp: tempfile::TempDir,
    store: ModelStore,
}

impl Jail {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let store = ModelStore::new(tmp.path().join("store"));
        Self { tmp, store }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn repo(&self) -> PathBuf {
        self.path().join("store/models--org--tiny-classifier")
    }

    /// (b): the tempdir holds only the store (and `allowed`, which the test made itself), and
    /// none of `named` exists.
    fn assert_nothing_outside(&self, allowed: &[&str], named: &[PathBuf]) {
        let mut entries: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name != "store" && !allowed.contains(&name.as_str()))
            .collect();
        entries.sort();
        assert!(entries.is_empty(), "written outside the store: {entries:?}");
        for path in named.iter().map(|p| lexical(p)) {
            assert!(
                std::fs::symlink_metadata(&path).is_err(),
                "{} exists",
                path.display()
            );
        }
    }

    /// (c): with the hub behaving again, a pull into the same store works and gives the
    /// fixture's files.
    fn assert_good_pull_works(&self, hub: &HubEmulator, settings: HubSettings) {
        hub.configure(|c| *c = good_config());
        let files = pull(settings, &self.store).expect("a good pull after the attack");
        assert_eq!(files.revision, COMMIT);
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            assert_eq!(
                std::fs::read(files.path(file)).unwrap(),
                std::fs::read(fixture().join(file)).unwrap(),
                "{file}"
            );
        }
        self.assert_blobs_are_named_by_hashes();
    }

    /// Every blob is named by a hash (or is a transfer under way).
    fn assert_blobs_are_named_by_hashes(&self) {
        let Ok(blobs) = std::fs::read_dir(self.repo().join("blobs")) else {
            return;
        };
        for blob in blobs.flatten() {
            let name = blob.file_name().to_string_lossy().into_owned();
            let hash = name.strip_suffix(".incomplete").unwrap_or(&name);
            assert!(
                matches!(hash.len(), 40 | 64) && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                "blob {name}"
            );
        }
    }
}

/// `path` with `.` and `..` resolved by name (not through the file system, where a missing folder
/// would hide what the path names).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn assert_corrupt(result: Result<ModelFiles, HostError>, file: &str, says: &str) {
    match result {
        Err(HostError::CorruptDownload {
            file: f, reason, ..
        }) => {
            assert_eq!(f, file, "{reason}");
            assert!(reason.contains(says), "'{says}' not in: {reason}");
        }
        other => panic!("expected corrupt-download for {file}: {other:?}"),
    }
}

/// A listing that is unsafe as a whole: refused before any file is fetched.
fn refused_listing(change: impl FnOnce(&mut HubConfig, &Path), says: &str, named: &[&str]) {
    let jail = Jail::new();
    let dir = jail.path().to_path_buf();
    let hub = emulator(|c| change(c, &dir));
    let result = pull(settings(&hub.endpoint), &jail.store);
    assert_corrupt(result, "repository listing", says);
    assert!(hub.downloads().is_empty(), "fetched {:?}", hub.downloads());
    let snapshot = jail.repo().join("snapshots").join(COMMIT);
    let named: Vec<PathBuf> = named
        .iter()
        .flat_map(|n| [snapshot.join(n), jail.repo().join("snapshots").join(n)])
        .collect();
    jail.assert_nothing_outside(&[], &named);
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn a_listing_commit_with_dot_dot_is_refused() {
    refused_listing(
        |c, _| c.listing_commit = Some("../../../x".into()),
        "commit",
        &["../../../x"],
    );
}

#[test]
fn a_listing_commit_that_is_not_forty_hex_digits_is_refused() {
    refused_listing(
        |c, _| c.listing_commit = Some("0123abc".into()),
        "commit",
        &[],
    );
}

#[test]
fn a_listed_file_climbing_out_with_dot_dot_is_refused() {
    refused_listing(
        |c, _| {
            for name in ["../../evil", "../../../../evil"] {
                c.extra_files.push((name.into(), b"pwned".to_vec()));
            }
        },
        "../../evil",
        &["../../evil", "../../../../evil"],
    );
}

#[test]
fn a_listed_file_with_an_absolute_path_is_refused() {
    let absolute = std::env::temp_dir().join("modelhost-hostile-absolute-evil");
    refused_listing(
        |c, dir| {
            c.extra_files
                .push((dir.join("abs-evil").display().to_string(), b"x".to_vec()));
            c.extra_files.push(("/etc/x".into(), b"x".to_vec()));
            c.extra_files
                .push((absolute.display().to_string(), b"x".to_vec()));
        },
        "absolute",
        &[],
    );
    assert!(!absolute.exists() && !Path::new("/etc/x").exists());
}

#[test]
fn a_listed_file_climbing_out_mid_path_is_refused() {
    refused_listing(
        |c, _| {
            c.extra_files
                .push(("1_Pooling/../../../../config.json".into(), b"{}".to_vec()));
            c.extra_files.push(("a/../../b".into(), b"x".to_vec()));
        },
        "..",
        &["../../b", "../../../../config.json"],
    );
}

#[test]
fn path_like_headers_are_ignored() {
    let jail = Jail::new();
    let etag = jail.path().join("etag-evil");
    let hub = emulator(|c| {
        c.file_headers = vec![
            ("ETag".into(), format!("\"{}\"", etag.display())),
            ("X-Linked-Etag".into(), "\"../../../../linked-evil\"".into()),
            ("X-Repo-Commit".into(), "../../../../commit-evil".into()),
        ];
    });
    let files = pull(settings(&hub.endpoint), &jail.store).unwrap();
    assert_eq!(files.revision, COMMIT);
    assert!(files.dir.ends_with(format!("snapshots/{COMMIT}")));
    let snapshot = jail.repo().join("snapshots").join(COMMIT);
    jail.assert_nothing_outside(
        &[],
        &[
            etag,
            snapshot.join("../../../../linked-evil"),
            jail.repo().join("blobs/../../../../linked-evil"),
            jail.repo().join("snapshots/../../../../commit-evil"),
        ],
    );
    jail.assert_blobs_are_named_by_hashes();
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn hashes_come_from_the_listing_not_from_headers() {
    let jail = Jail::new();
    let original = std::fs::read(fixture().join("tokenizer.json")).unwrap();
    let mut corrupted = original.clone();
    corrupted[0] ^= 0xff;
    let hub = emulator(|c| {
        c.corrupt.insert("tokenizer.json".into());
        // Headers that vouch for the corrupted body.
        c.file_headers = vec![
            ("ETag".into(), format!("\"{}\"", git_blob_id(&corrupted))),
            (
                "X-Linked-Etag".into(),
                format!("\"{}\"", git_blob_id(&corrupted)),
            ),
        ];
    });
    let result = pull(settings(&hub.endpoint), &jail.store);
    assert_corrupt(result, "tokenizer.json", "listing announced");
    assert!(jail.store.resolve(REPO, "main").is_err());
    jail.assert_nothing_outside(&[], &[]);
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn a_body_longer_than_announced_is_refused_and_not_kept() {
    let jail = Jail::new();
    let hub = emulator(|c| {
        c.oversize.insert("model.safetensors".into());
    });
    let result = pull(settings(&hub.endpoint), &jail.store);
    assert_corrupt(result, "model.safetensors", "longer than");
    let blobs: Vec<String> = std::fs::read_dir(jail.repo().join("blobs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        blobs.iter().all(|b| !b.ends_with(".incomplete")),
        "{blobs:?}"
    );
    jail.assert_nothing_outside(&[], &[]);
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn a_stalled_body_times_out_and_a_retry_resumes() {
    let jail = Jail::new();
    let hub = emulator(|c| {
        c.stall.insert("model.safetensors".into());
        c.stall_for = Duration::from_secs(20);
    });
    let started = Instant::now();
    let mut quick = settings(&hub.endpoint);
    quick.read_timeout = Duration::from_millis(500);
    let err = pull(quick.clone(), &jail.store).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, HostError::NetworkUnreachable { .. }), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(jail.store.resolve(REPO, "main").is_err());
    jail.assert_nothing_outside(&[], &[]);
    jail.assert_good_pull_works(&hub, quick);
    // The retry asked only for the rest of the stalled file.
    let ranges = hub.ranges();
    assert!(
        ranges
            .iter()
            .any(|(file, range)| file.ends_with("/model.safetensors") && range != "bytes=0-"),
        "{ranges:?}"
    );
}

#[test]
fn the_token_is_not_sent_to_another_origin() {
    let jail = Jail::new();
    let cdn = emulator(|_| {});
    let hub = emulator(|c| {
        c.token = Some(TOKEN.into());
        c.redirect_to = Some(cdn.endpoint.clone());
    });
    let mut with_token = settings(&hub.endpoint);
    with_token.token = Some(TOKEN.into());
    let files = pull(with_token.clone(), &jail.store).unwrap();
    assert_eq!(files.revision, COMMIT);
    assert_eq!(cdn.downloads().len(), 3, "{:?}", cdn.downloads());
    assert!(hub.downloads().is_empty());
    assert!(cdn.tokens_seen().is_empty(), "the token went to the CDN");
    assert!(!hub.tokens_seen().is_empty() && hub.tokens_seen().iter().all(|t| t == TOKEN));
    jail.assert_nothing_outside(&[], &[]);
    // (c): the token still works at the hub itself.
    hub.configure(|c| {
        *c = good_config();
        c.token = Some(TOKEN.into());
    });
    std::fs::remove_dir_all(jail.path().join("store")).unwrap();
    pull(with_token, &jail.store).unwrap();
}

#[test]
fn redirects_to_plain_http_elsewhere_are_refused_without_connecting() {
    let jail = Jail::new();
    let hub = emulator(|c| c.redirect_to = Some("http://203.0.113.9:81".into()));
    let started = Instant::now();
    let result = pull(settings(&hub.endpoint), &jail.store);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_corrupt(result, "config.json", "https");
    jail.assert_nothing_outside(&[], &[]);
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn redirect_loops_stop_after_five_hops() {
    let jail = Jail::new();
    let hub = emulator(|_| {});
    let endpoint = hub.endpoint.clone();
    hub.configure(|c| c.redirect_to = Some(endpoint));
    let result = pull(settings(&hub.endpoint), &jail.store);
    assert_corrupt(result, "config.json", "more than 5 redirects");
    let hops = hub
        .requests()
        .iter()
        .filter(|r| r.contains("/resolve/"))
        .count();
    assert_eq!(hops, 6, "{:?}", hub.requests());
    jail.assert_nothing_outside(&[], &[]);
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn a_pull_beyond_max_download_bytes_is_refused_before_any_byte() {
    let jail = Jail::new();
    let hub = emulator(|_| {});
    let small = settings(&hub.endpoint).with_max_download_bytes(1000);
    let err = pull(small, &jail.store).unwrap_err();
    assert!(matches!(err, HostError::LimitExceeded(_)), "{err}");
    assert!(err.to_string().contains("models.max_download_gb"), "{err}");
    assert!(hub.downloads().is_empty(), "{:?}", hub.downloads());
    jail.assert_nothing_outside(&[], &[]);
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn a_huge_announced_size_is_refused_by_the_default_cap() {
    let jail = Jail::new();
    let hub = emulator(|c| {
        c.announced_sizes
            .insert("model.safetensors".into(), 1 << 50);
    });
    let err = pull(settings(&hub.endpoint), &jail.store).unwrap_err();
    assert!(matches!(err, HostError::LimitExceeded(_)), "{err}");
    assert!(hub.downloads().is_empty(), "{:?}", hub.downloads());
    jail.assert_nothing_outside(&[], &[]);
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn a_listing_without_sizes_and_hashes_fails_closed() {
    let jail = Jail::new();
    let hub = emulator(|c| c.bare_listing = true);
    let result = pull(settings(&hub.endpoint), &jail.store);
    assert_corrupt(result, "config.json", "no size or no hash");
    assert!(hub.downloads().is_empty(), "{:?}", hub.downloads());
    jail.assert_nothing_outside(&[], &[]);
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn plain_http_endpoints_elsewhere_are_refused_without_connecting() {
    let jail = Jail::new();
    let started = Instant::now();
    let err = pull(settings("http://203.0.113.9:81"), &jail.store).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(err, HostError::NetworkUnreachable { .. }), "{err}");
    assert!(err.to_string().contains("only https"), "{err}");
    jail.assert_nothing_outside(&[], &[]);
    let hub = emulator(|_| {});
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn pytorch_weights_are_never_fetched() {
    let jail = Jail::new();
    // Every repository lists the extra pytorch_model.bin: this one has nothing else to offer.
    let bin_only = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture().join("config.json"),
        bin_only.path().join("config.json"),
    )
    .unwrap();
    let hub = emulator(|c| {
        c.extra_files
            .push(("pytorch_model.bin".into(), b"pickle".to_vec()));
        c.models
            .insert("org/bin-only".into(), bin_only.path().into());
    });
    let files = pull(settings(&hub.endpoint), &jail.store).unwrap();
    assert!(!files.path("pytorch_model.bin").exists());
    let err = Downloader::new(settings(&hub.endpoint))
        .pull(&jail.store, "org/bin-only", "main", None, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, HostError::NotOnHub { .. }), "{err}");
    let err = Downloader::new(settings(&hub.endpoint))
        .pull(
            &jail.store,
            REPO,
            "main",
            Some("pytorch_model.bin"),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(matches!(err, HostError::InvalidRequirement(_)), "{err}");
    assert!(
        hub.downloads().iter().all(|d| !d.ends_with(".bin")),
        "{:?}",
        hub.downloads()
    );
    jail.assert_nothing_outside(&[], &[]);
}

/// A good pull, then `plant` (given the snapshot folder and the tempdir) tampers with the store.
fn tampered(plant: impl FnOnce(&Path, &Path)) -> (Jail, HubEmulator) {
    let jail = Jail::new();
    let hub = emulator(|_| {});
    let files = pull(settings(&hub.endpoint), &jail.store).unwrap();
    std::fs::write(jail.path().join("secret"), b"{\"secret\": true}").unwrap();
    plant(&files.dir, jail.path());
    (jail, hub)
}

fn assert_invalid_files(result: Result<ModelFiles, HostError>, says: &str) {
    match result {
        Err(HostError::InvalidModelFiles { reason, .. }) => {
            assert!(reason.contains(says), "'{says}' not in: {reason}")
        }
        other => panic!("expected invalid-model-files: {other:?}"),
    }
}

#[test]
fn a_symlink_planted_in_a_snapshot_pointing_outside_is_refused() {
    let (jail, hub) = tampered(|snapshot, tmp| {
        std::fs::remove_file(snapshot.join("tokenizer.json")).unwrap();
        std::os::unix::fs::symlink(tmp.join("secret"), snapshot.join("tokenizer.json")).unwrap();
    });
    assert_invalid_files(jail.store.resolve(REPO, "main"), "outside the model store");
    let mut offline = settings("http://127.0.0.1:9");
    offline.offline = true;
    assert_invalid_files(pull(offline, &jail.store), "outside the model store");
    jail.assert_nothing_outside(&["secret"], &[]);
    // An online pull puts the real file back in place.
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn a_symlink_planted_in_a_nested_folder_or_a_dangling_one_is_refused() {
    let (jail, _hub) = tampered(|snapshot, tmp| {
        std::fs::create_dir_all(snapshot.join("1_Pooling")).unwrap();
        std::os::unix::fs::symlink(tmp.join("secret"), snapshot.join("1_Pooling/config.json"))
            .unwrap();
    });
    assert_invalid_files(jail.store.resolve(REPO, "main"), "1_Pooling");
    let (jail, _hub) = tampered(|snapshot, tmp| {
        std::os::unix::fs::symlink(tmp.join("not-yet"), snapshot.join("later.json")).unwrap();
    });
    assert_invalid_files(jail.store.resolve(REPO, "main"), "later.json");
    jail.assert_nothing_outside(&["secret"], &[]);
}

#[test]
fn a_snapshot_folder_linked_outside_is_refused() {
    let (jail, _hub) = tampered(|snapshot, tmp| {
        let outside = tmp.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("config.json"), b"{}").unwrap();
        std::fs::rename(snapshot, tmp.join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, snapshot).unwrap();
    });
    assert_invalid_files(jail.store.resolve(REPO, "main"), "outside the model store");
    jail.assert_nothing_outside(&["secret", "outside", "moved"], &[]);
}

#[test]
fn a_ref_naming_a_folder_outside_is_refused() {
    let (jail, hub) = tampered(|_, tmp| {
        // What the ref points at, were it followed: a folder with a config.json.
        std::fs::create_dir_all(tmp.join("x")).unwrap();
        std::fs::write(tmp.join("x/config.json"), b"{}").unwrap();
    });
    for content in ["../../../x", "../..", "/etc", "a/b"] {
        std::fs::write(jail.repo().join("refs/main"), content).unwrap();
        let err = jail.store.resolve(REPO, "main").unwrap_err();
        assert!(
            matches!(err, HostError::InvalidModelFiles { .. }),
            "{content}: {err}"
        );
    }
    jail.assert_nothing_outside(&["secret", "x"], &[]);
    // A pull writes the ref again.
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
    assert_eq!(
        std::fs::read_to_string(jail.repo().join("refs/main")).unwrap(),
        COMMIT
    );
}

#[test]
fn names_and_revisions_that_are_paths_are_refused() {
    let jail = Jail::new();
    let hub = emulator(|_| {});
    for (name, revision) in [
        ("../../x", "main"),
        ("org/..", "main"),
        ("/abs", "main"),
        ("org/a--b", "main"),
        (REPO, "../../x"),
        (REPO, "/etc"),
        (REPO, "a/../../b"),
        (REPO, "a\\b"),
    ] {
        let err = jail.store.resolve(name, revision).unwrap_err();
        assert!(matches!(err, HostError::InvalidRequirement(_)), "{err}");
        let err = Downloader::new(settings(&hub.endpoint))
            .pull(&jail.store, name, revision, None, &mut |_| {})
            .unwrap_err();
        assert!(matches!(err, HostError::InvalidRequirement(_)), "{err}");
    }
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
    jail.assert_nothing_outside(&[], &[]);
    jail.assert_good_pull_works(&hub, settings(&hub.endpoint));
}

#[test]
fn max_download_gb_is_configured_and_checked() {
    use modelhost::cli::config::HostConfig;
    let config = HostConfig::parse("[models]\nmax_download_gb = 0.5").unwrap();
    let downloads = config.manager_settings().downloads.unwrap();
    assert_eq!(downloads.max_download_bytes, 1 << 29);
    let default = HostConfig::default().manager_settings().downloads.unwrap();
    assert_eq!(default.max_download_bytes, 20 << 30);
    for bad in ["0", "-1", "nan", "inf", "\"20\""] {
        let err = HostConfig::parse(&format!("[models]\nmax_download_gb = {bad}")).unwrap_err();
        assert!(err.to_string().contains("max_download_gb"), "{bad}: {err}");
    }
}
