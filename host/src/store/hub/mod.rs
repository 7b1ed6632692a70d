//! Downloads from the Hugging Face Hub (or a mirror named by `HF_ENDPOINT`) into the model store:
//! only the files the model needs, each checked against the hash the repository listing
//! announced (sha256 for LFS files, the git blob hash for the others) before it is linked into
//! the snapshot; resumable; one download at a time per model; every failure a typed error.
//!
//! This is our own small client over `ureq` rather than `hf-hub`, because a hub (or a mirror, or
//! anything in between) must not be able to write outside the store or exhaust it: hf-hub uses the
//! `ETag`/`X-Linked-Etag` and `X-Repo-Commit` response headers as path components unchecked (an
//! absolute or `../` value writes files or folders outside the store), takes the hash to check
//! from those same headers, follows redirects with the token attached, and has no size cap and no
//! read timeout. Here the listing is checked first and is the only source of paths, sizes and
//! hashes ([`listing`]); every request is https (or loopback http) with timeouts, hand-followed
//! redirects and the token for the endpoint's origin only ([`transfer`]); bodies are hashed while
//! written ([`verify`]); and the store is written through real folders only ([`layout`]). Headers
//! of the responses are never used as paths or hashes.
//!
//! The token comes from `HF_TOKEN` (in the environment, else in the working folder's `.env` file,
//! as the Python tools read it), else the file `huggingface-cli login` writes
//! (`$HF_HOME/token`); it is sent to the hub's own origin only and never logged.
//! `HF_HUB_OFFLINE=1` never touches the network.

pub mod dotenv;
pub mod layout;
pub mod listing;
pub mod transfer;
pub mod verify;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::StoreError;
use crate::store::local::{ModelFiles, ModelStore, check_repo_name, check_revision};
use crate::types::error::HostError;
use layout::RepoDirs;
use listing::{LISTING, Refusal, Wanted};
use transfer::{Client, MAX_LISTING_BYTES, TransferError, encode_part};

/// The Hub when `HF_ENDPOINT` names no mirror.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Most bytes one pull downloads unless configured (`models.max_download_gb`): 20 GiB.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 20 << 30;
/// How long connecting to the hub may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest silence of the hub in the middle of an answer.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to download.
#[derive(Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// The hub's address, without a trailing slash: https, or http to a loopback address.
    pub endpoint: String,
    /// The access token, if any; sent only to the endpoint's origin.
    pub token: Option<String>,
    /// Never use the network.
    pub offline: bool,
    /// Most bytes one pull may download (the sizes the listing announces for what is missing),
    /// checked before the first byte is fetched.
    pub max_download_bytes: u64,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long the hub may stay silent in the middle of an answer.
    pub read_timeout: Duration,
}

impl Default for HubSettings {
    /// The Hub itself, online, without a token, with the default limits.
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.into(),
            token: None,
            offline: false,
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

impl fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .field("max_download_bytes", &self.max_download_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

impl HubSettings {
    /// From the environment: `HF_ENDPOINT`, `HF_TOKEN` (else `$HF_HOME/token`, `HF_HOME`
    /// defaulting to `~/.cache/huggingface`) and `HF_HUB_OFFLINE`; each of the three may also be
    /// set in a `.env` file in the working folder (the environment wins). The limits are the
    /// defaults.
    pub fn from_env() -> Self {
        Self::from_lookup(with_dotenv(Path::new(".env"), |name| {
            std::env::var(name).ok()
        }))
    }

    /// From the variables `lookup` answers (see [`from_env`](Self::from_env)); empty values
    /// count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let token = var("HF_TOKEN").or_else(|| {
            let home = var("HF_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache/huggingface")))?;
            let token = std::fs::read_to_string(home.join("token")).ok()?;
            Some(token.trim().to_string()).filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE")
            .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"));
        Self {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_string(),
            token,
            offline,
            ..Self::default()
        }
    }

    /// These settings with `bytes` as the most one pull may download.
    pub fn with_max_download_bytes(mut self, bytes: u64) -> Self {
        self.max_download_bytes = bytes;
        self
    }
}

/// The variables `env` answers, with the hub's own (`HF_ENDPOINT`, `HF_TOKEN`,
/// `HF_HUB_OFFLINE`) read from the `.env` file at `dotenv` when `env` has them unset or empty.
fn with_dotenv(
    dotenv: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> impl Fn(&str) -> Option<String> {
    move |name| {
        let from_file = || {
            matches!(name, "HF_ENDPOINT" | "HF_TOKEN" | "HF_HUB_OFFLINE")
                .then(|| dotenv::dotenv_var(dotenv, name))
                .flatten()
        };
        env(name)
            .filter(|v| !v.trim().is_empty())
            .or_else(from_file)
    }
}

/// Progress of one file, for progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProgress {
    /// A download starts.
    Started {
        /// The file's name in the repository.
        file: String,
        /// Its size in bytes.
        size: u64,
    },
    /// More bytes arrived.
    Advanced {
        /// The file's name in the repository.
        file: String,
        /// Bytes that arrived since the last report.
        bytes: u64,
    },
    /// The file is in place (downloaded and verified, or already there).
    Done {
        /// The file's name in the repository.
        file: String,
        /// Whether it was downloaded now (false: it was already there).
        downloaded: bool,
    },
}

/// One lock per (repository, revision): pulls of the same model wait for each other. An entry
/// lives while a pull holds or waits for it.
type PullLocks = Mutex<HashMap<(String, String), Arc<Mutex<()>>>>;

/// Downloads models into a store; concurrent pulls of one model download it once.
pub struct Downloader {
    settings: HubSettings,
    in_flight: PullLocks,
}

/// A pull's claim on its (repository, revision) lock; the map entry goes when the last claim
/// does.
struct Claim<'a> {
    locks: &'a PullLocks,
    key: (String, String),
    gate: Arc<Mutex<()>>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Clones are only made under this lock: the map's and ours mean nobody else has one.
        if Arc::strong_count(&self.gate) == 2 {
            locks.remove(&self.key);
        }
    }
}

impl Downloader {
    /// A downloader with `settings`.
    pub fn new(settings: HubSettings) -> Self {
        Self {
            settings,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// The model `name` at `revision` from `store`, downloading what is missing first (unless
    /// offline). `weights_file` names the weights to take when the repository holds several.
    pub fn pull(
        &self,
        store: &ModelStore,
        name: &str,
        revision: &str,
        weights_file: Option<&str>,
        progress: &mut dyn FnMut(FileProgress),
    ) -> Result<ModelFiles, HostError> {
        check_repo_name(name)?;
        check_revision(revision)?;
        if let Some(file) = weights_file {
            check_weights_file(file)?;
        }
        let claim = self.claim(name, revision);
        let _only_one = claim.gate.lock().unwrap_or_else(|e| e.into_inner());
        let cached = store.resolve(name, revision);
        if self.settings.offline || cached.as_ref().is_ok_and(|f| has_weights(f, weights_file)) {
            return cached;
        }
        self.download(store, name, revision, weights_file, progress)?;
        store.resolve(name, revision)
    }

    fn claim(&self, name: &str, revision: &str) -> Claim<'_> {
        let key = (name.to_string(), revision.to_string());
        let mut locks = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let gate = locks.entry(key.clone()).or_default().clone();
        Claim {
            locks: &self.in_flight,
            key,
            gate,
        }
    }

    /// How many (repository, revision) locks are held or waited for.
    #[cfg(test)]
    fn locks_in_use(&self) -> usize {
        self.in_flight.lock().unwrap().len()
    }

    /// Lists the repository, checks what it needs against the size cap, fetches what is missing
    /// and points `refs/<revision>` at the commit once every file is in place.
    fn download(
        &self,
        store: &ModelStore,
        name: &str,
        revision: &str,
        weights_file: Option<&str>,
        progress: &mut dyn FnMut(FileProgress),
    ) -> Result<(), StoreError> {
        let client = Client::new(&self.settings)
            .map_err(|refused| self.unreachable(name, refused.to_string()))?;
        let url = client.url(&format!(
            "api/models/{name}/revision/{}?blobs=true",
            encode_part(revision)
        ));
        let body = client
            .get_bytes(&url, MAX_LISTING_BYTES)
            .map_err(|e| self.transfer_error(store, name, revision, LISTING, e))?;
        let refused = |refusal| self.refusal(name, revision, refusal);
        let listing = listing::parse(&body).map_err(refused)?;
        if is_commit(revision) && listing.commit != revision {
            return Err(corrupt(
                name,
                LISTING,
                format!(
                    "asked for commit {revision}, the listing is of commit {}",
                    listing.commit
                ),
            ));
        }
        let wanted = listing::select(&listing, weights_file).map_err(refused)?;
        let store_error = |e| self.store_error(store, name, e);
        let dirs = RepoDirs::open(store.root(), name).map_err(store_error)?;
        let snapshot = dirs.snapshot(&listing.commit).map_err(store_error)?;
        let missing = wanted
            .iter()
            .filter(|w| !dirs.in_place(&snapshot, &w.name) && !dirs.has_blob(&w.expected, w.size))
            .fold(0u64, |sum, w| sum.saturating_add(w.size));
        if missing > self.settings.max_download_bytes {
            return Err(StoreError::DownloadTooLarge {
                name: name.to_string(),
                needed: missing,
                allowed: self.settings.max_download_bytes,
            });
        }
        for file in &wanted {
            if dirs.in_place(&snapshot, &file.name) {
                progress(FileProgress::Done {
                    file: file.name.clone(),
                    downloaded: false,
                });
                continue;
            }
            let downloaded =
                self.fetch(&client, &dirs, store, name, &listing.commit, file, progress)?;
            dirs.link(&snapshot, &file.name, &file.expected)
                .map_err(store_error)?;
            progress(FileProgress::Done {
                file: file.name.clone(),
                downloaded,
            });
        }
        if revision != listing.commit {
            dirs.write_ref(revision, &listing.commit)
                .map_err(store_error)?;
        }
        Ok(())
    }

    /// Puts the checked blob of `file` in place: kept if it is there and checks out, else
    /// downloaded into its `.incomplete` file (resumed), checked, and renamed. Whether it was
    /// downloaded.
    #[allow(clippy::too_many_arguments)]
    fn fetch(
        &self,
        client: &Client,
        dirs: &RepoDirs,
        store: &ModelStore,
        name: &str,
        commit: &str,
        file: &Wanted,
        progress: &mut dyn FnMut(FileProgress),
    ) -> Result<bool, StoreError> {
        let blob = dirs.blob(&file.expected);
        if std::fs::symlink_metadata(&blob).is_ok_and(|m| m.is_file()) {
            if verify::verify_file(&blob, file.size, &file.expected).is_ok() {
                return Ok(false);
            }
            std::fs::remove_file(&blob).map_err(|e| self.store_error(store, name, e))?;
        }
        let partial = dirs.partial(&file.expected);
        progress(FileProgress::Started {
            file: file.name.clone(),
            size: file.size,
        });
        let path: Vec<String> = file.name.split('/').map(encode_part).collect();
        let url = client.url(&format!("{name}/resolve/{commit}/{}", path.join("/")));
        let mut advanced = |bytes| {
            progress(FileProgress::Advanced {
                file: file.name.clone(),
                bytes,
            })
        };
        let result = client.download(&url, &partial, file.size, &file.expected, &mut advanced);
        let checked = match result {
            Ok(actual) => file.expected.check(&actual).map_err(|mismatch| {
                let _ = std::fs::remove_file(&partial);
                corrupt(name, &file.name, mismatch.to_string())
            }),
            Err(error) => {
                if matches!(error, TransferError::Unsafe(_) | TransferError::Disk(_)) {
                    let _ = std::fs::remove_file(&partial);
                }
                Err(self.transfer_error(store, name, commit, &file.name, error))
            }
        };
        checked?;
        std::fs::rename(&partial, &blob).map_err(|e| self.store_error(store, name, e))?;
        Ok(true)
    }

    /// The typed error for a failed request about `file` (or the listing).
    fn transfer_error(
        &self,
        store: &ModelStore,
        name: &str,
        revision: &str,
        file: &str,
        error: TransferError,
    ) -> StoreError {
        let endpoint = self.settings.endpoint.clone();
        match error {
            TransferError::Status(401) => StoreError::Unauthorized {
                name: name.to_string(),
                endpoint,
            },
            TransferError::Status(403) => StoreError::Gated {
                name: name.to_string(),
                endpoint,
            },
            TransferError::Status(404) => StoreError::NotOnHub {
                name: name.to_string(),
                revision: revision.to_string(),
                endpoint,
                reason: if file == LISTING {
                    "the hub has no such model or revision".into()
                } else {
                    format!("the hub lists {file} but does not serve it")
                },
            },
            TransferError::Status(code) => {
                self.unreachable(name, format!("the hub answered HTTP {code} for {file}"))
            }
            TransferError::Network(reason) => self.unreachable(name, reason),
            TransferError::TimedOut(reason) => self.unreachable(
                name,
                format!(
                    "timed out fetching {file}: {reason} (connect timeout {} s, read timeout {} s)",
                    self.settings.connect_timeout.as_secs_f64(),
                    self.settings.read_timeout.as_secs_f64()
                ),
            ),
            TransferError::Unsafe(reason) => corrupt(name, file, reason),
            TransferError::Disk(e) => self.store_error(store, name, e),
        }
    }

    /// The typed error for a listing that cannot be used.
    fn refusal(&self, name: &str, revision: &str, refusal: Refusal) -> StoreError {
        match refusal {
            Refusal::Missing(missing) => StoreError::NotOnHub {
                name: name.to_string(),
                revision: revision.to_string(),
                endpoint: self.settings.endpoint.clone(),
                reason: missing.to_string(),
            },
            Refusal::Unsafe { file, reason } => corrupt(name, &file, reason),
        }
    }

    fn unreachable(&self, name: &str, reason: String) -> StoreError {
        StoreError::NetworkUnreachable {
            name: name.to_string(),
            endpoint: self.settings.endpoint.clone(),
            reason,
        }
    }

    /// The typed error for a failed write into the store.
    fn store_error(&self, store: &ModelStore, name: &str, error: std::io::Error) -> StoreError {
        match error.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                StoreError::DiskFull {
                    name: name.to_string(),
                    root: store.root().to_path_buf(),
                }
            }
            _ => StoreError::InvalidModelFiles {
                name: name.to_string(),
                path: store.root().join(crate::store::local::repo_folder(name)),
                reason: format!("cannot write the download into the model store: {error}"),
            },
        }
    }
}

fn corrupt(name: &str, file: &str, reason: String) -> StoreError {
    StoreError::CorruptDownload {
        name: name.to_string(),
        file: file.to_string(),
        reason,
    }
}

/// Checks a requirement's `weights_file`: a safe relative path to a format a backend loads.
fn check_weights_file(file: &str) -> Result<(), StoreError> {
    let problem = match listing::check_file_name(file) {
        Err(which) => which.to_string(),
        Ok(()) if !listing::is_weights_format(file) => format!(
            "is not weights this host loads ({})",
            listing::WEIGHTS_EXTENSIONS.join(", ")
        ),
        Ok(()) => return Ok(()),
    };
    Err(StoreError::InvalidName(format!(
        "`weights_file` '{}' {problem}",
        file.escape_debug()
    )))
}

/// Whether `revision` is a full commit hash.
fn is_commit(revision: &str) -> bool {
    revision.len() == 40
        && revision
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether a snapshot holds weights this host loads (the named file, or any; an interrupted
/// download leaves configs without them).
fn has_weights(files: &ModelFiles, weights_file: Option<&str>) -> bool {
    if let Some(file) = weights_file {
        return files.path(file).is_file();
    }
    let Ok(entries) = std::fs::read_dir(&files.dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        listing::is_weights_format(&name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let settings = HubSettings {
            token: Some("hf_secret".into()),
            ..HubSettings::default()
        };
        assert!(!format!("{settings:?}").contains("hf_secret"));
    }

    #[test]
    fn the_hubs_variables_come_from_the_environment_else_from_dotenv() {
        let dir = tempfile::tempdir().unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(
            &dotenv,
            "HF_TOKEN=hf_from_file\nHF_ENDPOINT=https://mirror.example/\nHOME=/elsewhere\n",
        )
        .unwrap();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                let found = pairs.iter().find(|(k, _)| *k == name);
                found.map(|(_, v)| v.to_string())
            }
        };
        let settings = HubSettings::from_lookup(with_dotenv(&dotenv, env(&[])));
        assert_eq!(settings.token.as_deref(), Some("hf_from_file"));
        assert_eq!(settings.endpoint, "https://mirror.example");
        assert!(!settings.offline);
        const SET: &[(&str, &str)] = &[("HF_TOKEN", "hf_from_env"), ("HF_HUB_OFFLINE", "1")];
        let settings = HubSettings::from_lookup(with_dotenv(&dotenv, env(SET)));
        assert_eq!(settings.token.as_deref(), Some("hf_from_env"));
        assert!(settings.offline);
        // An empty variable counts as unset; names other than the hub's are not read from it.
        let empty = with_dotenv(&dotenv, env(&[("HF_TOKEN", " ")]));
        assert_eq!(empty("HF_TOKEN").as_deref(), Some("hf_from_file"));
        assert_eq!(empty("HOME"), None);
    }

    #[test]
    fn the_lock_map_forgets_models_nobody_pulls() {
        let downloader = Downloader::new(HubSettings::default());
        {
            let first = downloader.claim("org/a", "main");
            let second = downloader.claim("org/a", "main");
            let _other = downloader.claim("org/b", "main");
            assert!(Arc::ptr_eq(&first.gate, &second.gate));
            assert_eq!(downloader.locks_in_use(), 2);
            drop(first);
            assert_eq!(downloader.locks_in_use(), 2, "still held by the second");
        }
        assert_eq!(downloader.locks_in_use(), 0);
        // A failed pull leaves nothing either.
        let dir = tempfile::tempdir().unwrap();
        let offline = Downloader::new(HubSettings {
            offline: true,
            ..HubSettings::default()
        });
        for i in 0..10 {
            let name = format!("org/m{i}");
            assert!(
                offline
                    .pull(
                        &ModelStore::new(dir.path()),
                        &name,
                        "main",
                        None,
                        &mut |_| {}
                    )
                    .is_err()
            );
        }
        assert_eq!(offline.locks_in_use(), 0);
    }

    #[test]
    fn names_revisions_and_weights_files_are_checked_before_anything() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path().join("store"));
        let downloader = Downloader::new(HubSettings {
            endpoint: "http://127.0.0.1:9".into(),
            ..HubSettings::default()
        });
        for (name, revision, weights) in [
            ("../x", "main", None),
            ("org/../../x", "main", None),
            ("org/m", "../../x", None),
            ("org/m", "/abs", None),
            ("org/m", "main", Some("../model.safetensors")),
            ("org/m", "main", Some("/etc/passwd.gguf")),
            ("org/m", "main", Some("pytorch_model.bin")),
        ] {
            let err = downloader
                .pull(&store, name, revision, weights, &mut |_| {})
                .unwrap_err();
            assert!(
                matches!(err, HostError::InvalidRequirement(_)),
                "{name} {revision} {weights:?}: {err}"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn plain_http_to_another_machine_is_refused_without_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let downloader = Downloader::new(HubSettings {
            endpoint: "http://203.0.113.7".into(),
            ..HubSettings::default()
        });
        let started = std::time::Instant::now();
        let err = downloader
            .pull(
                &ModelStore::new(dir.path()),
                "org/m",
                "main",
                None,
                &mut |_| {},
            )
            .unwrap_err();
        assert!(matches!(err, HostError::NetworkUnreachable { .. }), "{err}");
        assert!(err.to_string().contains("https"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
