//! Downloads from the Hugging Face Hub (or a mirror named by `HF_ENDPOINT`) into the model store,
//! with hf-hub: only the files the model needs, each verified before it is kept (sha256 for LFS
//! files, the git blob hash for the others) and linked into the snapshot; resumable; one download
//! at a time per model; every failure a typed error.
//!
//! The token comes from `HF_TOKEN`, else the file `huggingface-cli login` writes
//! (`$HF_HOME/token`); it is sent to the hub only and never logged. `HF_HUB_OFFLINE=1` never
//! touches the network.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use sha1::Digest;

use crate::error::HostError;
use crate::hub::{ModelFiles, ModelStore};

/// The Hub when `HF_ENDPOINT` names no mirror.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Files a model may need besides its weights.
const SMALL_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
];

/// Where and how to download.
#[derive(Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// The hub's address, without a trailing slash.
    pub endpoint: String,
    /// The access token, if any.
    pub token: Option<String>,
    /// Never use the network.
    pub offline: bool,
}

impl fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .finish()
    }
}

impl HubSettings {
    /// From the environment: `HF_ENDPOINT`, `HF_TOKEN` (else `$HF_HOME/token`, `HF_HOME`
    /// defaulting to `~/.cache/huggingface`) and `HF_HUB_OFFLINE`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
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
        }
    }
}

/// Progress of one file, for progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProgress {
    /// A download starts: the file and its size in bytes.
    Started { file: String, size: u64 },
    /// More bytes arrived.
    Advanced { file: String, bytes: u64 },
    /// The file is in place (downloaded and verified, or already there).
    Done { file: String, downloaded: bool },
}

/// One lock per (repository, revision): pulls of the same model wait for each other.
type PullLocks = Mutex<HashMap<(String, String), Arc<Mutex<()>>>>;

/// Downloads models into a store; concurrent pulls of one model download it once.
pub struct Downloader {
    settings: HubSettings,
    in_flight: PullLocks,
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
        let gate = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            in_flight
                .entry((name.to_string(), revision.to_string()))
                .or_default()
                .clone()
        };
        let _only_one = gate.lock().unwrap_or_else(|e| e.into_inner());
        let cached = store.resolve(name, revision);
        if self.settings.offline || cached.as_ref().is_ok_and(|f| has_weights(f, weights_file)) {
            return cached;
        }
        // hf-hub points the ref at the commit after each file; until every file is in place the
        // ref must not say the model is there.
        let reference = store
            .root()
            .join(format!("models--{}", name.replace('/', "--")))
            .join("refs")
            .join(revision);
        let previous = std::fs::read_to_string(&reference).ok();
        if let Err(error) = self.download(store, name, revision, weights_file, progress) {
            let _ = match previous {
                Some(commit) => std::fs::write(&reference, commit),
                None => std::fs::remove_file(&reference),
            };
            return Err(error);
        }
        store.resolve(name, revision)
    }

    fn download(
        &self,
        store: &ModelStore,
        name: &str,
        revision: &str,
        weights_file: Option<&str>,
        progress: &mut dyn FnMut(FileProgress),
    ) -> Result<(), HostError> {
        let failed = |e: ApiError| self.error(name, revision, store, e);
        let api = ApiBuilder::from_cache(Cache::new(store.root().to_path_buf()))
            .with_endpoint(self.settings.endpoint.clone())
            .with_token(self.settings.token.clone())
            .with_progress(false)
            .build()
            .map_err(failed)?;
        let repo = api.repo(Repo::with_revision(
            name.to_string(),
            RepoType::Model,
            revision.to_string(),
        ));
        let info = repo.info().map_err(failed)?;
        let available: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        let wanted =
            needed_files(&available, weights_file).map_err(|reason| HostError::NotOnHub {
                name: name.to_string(),
                revision: revision.to_string(),
                endpoint: self.settings.endpoint.clone(),
                reason,
            })?;
        let snapshot = store
            .root()
            .join(format!("models--{}", name.replace('/', "--")))
            .join("snapshots")
            .join(&info.sha);
        for file in wanted {
            if snapshot.join(&file).is_file() {
                progress(FileProgress::Done {
                    file,
                    downloaded: false,
                });
                continue;
            }
            let reporter = Reporter {
                file: file.clone(),
                started: false,
                sink: progress,
            };
            let pointer = repo
                .download_with_progress(&file, reporter)
                .map_err(failed)?;
            verify(&pointer).map_err(|reason| {
                let blob = std::fs::canonicalize(&pointer).ok();
                let _ = std::fs::remove_file(&pointer);
                if let Some(blob) = blob {
                    let _ = std::fs::remove_file(blob);
                }
                HostError::CorruptDownload {
                    name: name.to_string(),
                    file: file.clone(),
                    reason,
                }
            })?;
            progress(FileProgress::Done {
                file,
                downloaded: true,
            });
        }
        let refs = snapshot
            .parent()
            .and_then(Path::parent)
            .map(|repo| repo.join("refs"))
            .expect("snapshot path");
        std::fs::create_dir_all(&refs)
            .and_then(|()| std::fs::write(refs.join(revision), &info.sha))
            .map_err(|e| self.io_error(name, store, e))?;
        Ok(())
    }

    /// The typed error for an hf-hub failure.
    fn error(&self, name: &str, revision: &str, store: &ModelStore, error: ApiError) -> HostError {
        let endpoint = self.settings.endpoint.clone();
        let network = |reason: String| HostError::NetworkUnreachable {
            name: name.to_string(),
            endpoint: endpoint.clone(),
            reason,
        };
        match error {
            ApiError::TooManyRetries(inner) => self.error(name, revision, store, *inner),
            ApiError::RequestError(request) => match *request {
                ureq::Error::Status(401, _) => HostError::Unauthorized {
                    name: name.to_string(),
                    endpoint,
                },
                ureq::Error::Status(403, _) => HostError::Gated {
                    name: name.to_string(),
                    endpoint,
                },
                ureq::Error::Status(404, _) => HostError::NotOnHub {
                    name: name.to_string(),
                    revision: revision.to_string(),
                    endpoint,
                    reason: "the hub has no such model or revision".into(),
                },
                ureq::Error::Status(code, _) => network(format!("the hub answered HTTP {code}")),
                ureq::Error::Transport(transport) => network(transport.to_string()),
            },
            ApiError::IoError(e) => self.io_error(name, store, e),
            other => network(other.to_string()),
        }
    }

    fn io_error(&self, name: &str, store: &ModelStore, error: std::io::Error) -> HostError {
        match error.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                HostError::DiskFull {
                    name: name.to_string(),
                    root: store.root().to_path_buf(),
                }
            }
            _ => HostError::NetworkUnreachable {
                name: name.to_string(),
                endpoint: self.settings.endpoint.clone(),
                reason: format!("the transfer broke off: {error}"),
            },
        }
    }
}

/// Whether a snapshot holds weights (the named file, or any; an interrupted download leaves
/// configs without them).
fn has_weights(files: &ModelFiles, weights_file: Option<&str>) -> bool {
    if let Some(file) = weights_file {
        return files.path(file).is_file();
    }
    let Ok(entries) = std::fs::read_dir(&files.dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.ends_with(".safetensors") || name.ends_with(".gguf") || name == "pytorch_model.bin"
    })
}

/// Which of the repository's files to download: the small config and tokenizer files, the
/// sentence-transformers module configs, and one set of weights (`weights_file` when given, else
/// `model.safetensors`, a sharded index and its shards, a single `.gguf`, or `pytorch_model.bin`).
fn needed_files(available: &[String], weights_file: Option<&str>) -> Result<Vec<String>, String> {
    let has = |f: &str| available.iter().any(|a| a == f);
    let mut wanted: Vec<String> = available
        .iter()
        .filter(|f| {
            SMALL_FILES.contains(&f.as_str())
                || (f.ends_with("/config.json") && f.matches('/').count() == 1)
        })
        .cloned()
        .collect();
    if !has("config.json") {
        return Err("it has no config.json".into());
    }
    let ggufs: Vec<&String> = available.iter().filter(|f| f.ends_with(".gguf")).collect();
    if let Some(file) = weights_file {
        if !has(file) {
            return Err(format!("it has no file {file}"));
        }
        wanted.push(file.to_string());
    } else if has("model.safetensors") {
        wanted.push("model.safetensors".into());
    } else if has("model.safetensors.index.json") {
        wanted.push("model.safetensors.index.json".into());
        wanted.extend(
            available
                .iter()
                .filter(|f| f.starts_with("model-") && f.ends_with(".safetensors"))
                .cloned(),
        );
    } else if ggufs.len() == 1 {
        wanted.push(ggufs[0].clone());
    } else if has("pytorch_model.bin") {
        wanted.push("pytorch_model.bin".into());
    } else if ggufs.len() > 1 {
        return Err(format!(
            "it holds {} .gguf files; name one with the requirement's weights_file",
            ggufs.len()
        ));
    } else {
        return Err("it has no weights this host reads (model.safetensors, sharded safetensors, one .gguf file)".into());
    }
    Ok(wanted)
}

/// Checks a downloaded file against the hash its blob is named by: sha256 for LFS files, the git
/// blob sha1 for the others.
fn verify(pointer: &Path) -> Result<(), String> {
    let blob = std::fs::canonicalize(pointer).map_err(|e| e.to_string())?;
    let expected = blob
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_lowercase();
    let is_hex = |n: usize| expected.len() == n && expected.chars().all(|c| c.is_ascii_hexdigit());
    let mut file = std::fs::File::open(&blob).map_err(|e| e.to_string())?;
    let actual = if is_hex(64) {
        let mut hasher = sha2::Sha256::new();
        hash_into(&mut file, |chunk| hasher.update(chunk))?;
        hex(&hasher.finalize())
    } else if is_hex(40) {
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut hasher = sha1::Sha1::new();
        hasher.update(format!("blob {len}\0").as_bytes());
        hash_into(&mut file, |chunk| hasher.update(chunk))?;
        hex(&hasher.finalize())
    } else {
        return Ok(());
    };
    match actual == expected {
        true => Ok(()),
        false => Err(format!(
            "its hash is {actual}, the hub announced {expected}"
        )),
    }
}

fn hash_into(file: &mut std::fs::File, mut update: impl FnMut(&[u8])) -> Result<(), String> {
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        update(&buffer[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// hf-hub's progress callbacks, forwarded as [`FileProgress`] (hf-hub announces a file more
/// than once; it is reported once).
struct Reporter<'a> {
    file: String,
    started: bool,
    sink: &'a mut dyn FnMut(FileProgress),
}

impl hf_hub::api::Progress for Reporter<'_> {
    fn init(&mut self, size: usize, _filename: &str) {
        if !std::mem::replace(&mut self.started, true) {
            (self.sink)(FileProgress::Started {
                file: self.file.clone(),
                size: size as u64,
            });
        }
    }

    fn update(&mut self, bytes: usize) {
        (self.sink)(FileProgress::Advanced {
            file: self.file.clone(),
            bytes: bytes as u64,
        });
    }

    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(files: &[&str]) -> Vec<String> {
        files.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn picks_configs_and_one_set_of_weights() {
        let repo = names(&[
            "config.json",
            "tokenizer.json",
            "1_Pooling/config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "onnx/model.onnx",
            "README.md",
            "2_Dense/config.json",
        ]);
        assert_eq!(
            needed_files(&repo, None).unwrap(),
            names(&[
                "config.json",
                "tokenizer.json",
                "1_Pooling/config.json",
                "2_Dense/config.json",
                "model.safetensors"
            ])
        );
        let sharded = names(&[
            "config.json",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "pytorch_model.bin",
        ]);
        assert_eq!(needed_files(&sharded, None).unwrap().len(), 4);
        let gguf = names(&["config.json", "tokenizer.json", "m.Q4_1.gguf"]);
        assert!(
            needed_files(&gguf, None)
                .unwrap()
                .contains(&"m.Q4_1.gguf".to_string())
        );
        assert!(needed_files(&names(&["config.json", "model.onnx"]), None).is_err());
        assert!(needed_files(&names(&["model.safetensors"]), None).is_err());
    }

    #[test]
    fn a_named_weights_file_picks_one_of_several() {
        let repo = names(&["config.json", "m.Q4_1.gguf", "m.Q8_0.gguf"]);
        assert!(
            needed_files(&repo, None)
                .unwrap_err()
                .contains("weights_file")
        );
        let wanted = needed_files(&repo, Some("m.Q8_0.gguf")).unwrap();
        assert_eq!(wanted, names(&["config.json", "m.Q8_0.gguf"]));
        assert!(needed_files(&repo, Some("m.F16.gguf")).is_err());
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let settings = HubSettings {
            endpoint: DEFAULT_ENDPOINT.into(),
            token: Some("hf_secret".into()),
            offline: false,
        };
        assert!(!format!("{settings:?}").contains("hf_secret"));
    }
}
