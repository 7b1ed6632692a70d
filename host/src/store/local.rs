//! The model store: model files in the Hugging Face cache layout, resolved without the network
//! (the Hub client in [`crate::store::hub`] fills it).
//!
//! A repository `org/name` lives in `<root>/models--org--name/`, with one folder per commit under
//! `snapshots/` and branch or tag names mapped to commits by the files under `refs/`. This is the
//! layout `huggingface-cli download` and the Python libraries write, so the folder can be shared
//! with them.
//!
//! The store is a jail: a repository name and a revision are checked before they become paths
//! ([`check_repo_name`], [`check_revision`]), a ref file must name a snapshot folder (one path
//! component, such as a 40-hex commit), and [`ModelStore::resolve`] refuses a snapshot of which
//! any entry (symlinks followed) lies outside the store's folder, so nothing a backend later opens
//! through [`ModelFiles::path`] can be a file elsewhere on the machine.
//!
//! The layout is read here rather than with hf-hub's `Cache`: hf-hub joins the contents of a ref
//! file and the requested names into paths as they are, with none of the checks above, so a
//! planted ref or a hostile name would resolve outside the store.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::store::StoreError;
use crate::types::error::HostError;

/// Environment variable naming the Hugging Face cache folder itself.
pub const HF_HUB_CACHE_ENV: &str = "HF_HUB_CACHE";
/// Environment variable naming the Hugging Face home; the cache is its `hub/` folder.
pub const HF_HOME_ENV: &str = "HF_HOME";
/// The store's folder when neither the configuration nor the environment names one.
pub const DEFAULT_MODELS_DIR: &str = "data/models";

/// Where a model's files were found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelFiles {
    /// Hugging Face repository id.
    pub name: String,
    /// The commit the files belong to.
    pub revision: String,
    /// The snapshot folder holding `config.json` and the rest.
    pub dir: PathBuf,
    /// The weights file a requirement named, when the repository holds several.
    pub weights_file: Option<String>,
}

impl ModelFiles {
    /// The path of `file` inside the snapshot.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Reads a small file of the snapshot as text: `file` must be a relative path of plain
    /// names (a checkpoint's own files name others, as `modules.json` does), and at most
    /// [`MAX_TEXT_FILE_BYTES`] long. Fails with `InvalidModelFiles`.
    pub fn read_to_string(&self, file: &str) -> Result<String, StoreError> {
        let plain = Path::new(file)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if file.is_empty() || !plain {
            return Err(self.invalid(format!("{file:?} is not a file of the snapshot")));
        }
        let mut text = String::new();
        std::fs::File::open(self.path(file))
            .and_then(|f| f.take(MAX_TEXT_FILE_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| self.invalid(format!("cannot read {file}: {e}")))?;
        if text.len() as u64 > MAX_TEXT_FILE_BYTES {
            return Err(self.invalid(format!(
                "{file} is larger than {MAX_TEXT_FILE_BYTES} bytes, the most read into memory"
            )));
        }
        Ok(text)
    }

    /// An `InvalidModelFiles` error about this snapshot.
    pub fn invalid(&self, reason: impl Into<String>) -> StoreError {
        StoreError::InvalidModelFiles {
            name: self.name.clone(),
            path: self.dir.clone(),
            reason: reason.into(),
        }
    }
}

/// Largest config, tokenizer or template file read into memory.
pub const MAX_TEXT_FILE_BYTES: u64 = 64 << 20;

/// A folder of models in the Hugging Face cache layout.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
}

impl ModelStore {
    /// A store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The store's folder: `configured` if given, else `$HF_HUB_CACHE`, else `$HF_HOME/hub`,
    /// else `data/models`.
    pub fn default_root(configured: Option<&Path>) -> PathBuf {
        let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        match (configured, env(HF_HUB_CACHE_ENV), env(HF_HOME_ENV)) {
            (Some(dir), _, _) => dir.to_path_buf(),
            (None, Some(cache), _) => PathBuf::from(cache),
            (None, None, Some(home)) => PathBuf::from(home).join("hub"),
            (None, None, None) => PathBuf::from(DEFAULT_MODELS_DIR),
        }
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds the snapshot of `name` at `revision` (a branch, tag or commit). The name and the
    /// revision must be well formed (`InvalidRequirement`), and every entry of the snapshot must
    /// lie inside the store once symlinks are followed (`InvalidModelFiles`).
    pub fn resolve(&self, name: &str, revision: &str) -> Result<ModelFiles, HostError> {
        check_repo_name(name)?;
        check_revision(revision)?;
        let repo = self.root.join(repo_folder(name));
        let not_found = || StoreError::ModelNotFound {
            name: name.to_string(),
            revision: revision.to_string(),
            root: self.root.clone(),
        };
        let commit = match read_ref(&repo.join("refs").join(revision)) {
            Some(commit) if is_snapshot_name(&commit) => commit,
            Some(commit) => {
                return Err(StoreError::InvalidModelFiles {
                    name: name.to_string(),
                    path: repo.join("refs").join(revision),
                    reason: format!(
                        "the ref does not name a snapshot folder ('{}')",
                        commit.escape_debug()
                    ),
                }
                .into());
            }
            None if is_snapshot_name(revision) => revision.to_string(),
            None => return Err(not_found().into()),
        };
        let dir = repo.join("snapshots").join(&commit);
        if !dir.join("config.json").is_file() {
            return Err(not_found().into());
        }
        let files = ModelFiles {
            name: name.to_string(),
            revision: commit,
            dir,
            weights_file: None,
        };
        let root = std::fs::canonicalize(&self.root).map_err(|_| not_found())?;
        check_inside(&root, &files)?;
        Ok(files)
    }
}

/// Longest repository name part (as the Hub allows).
const MAX_NAME_PART: usize = 96;
/// Longest revision (branch, tag or commit name) and longest ref file read.
const MAX_REVISION: usize = 255;
/// Most entries of a snapshot that [`ModelStore::resolve`] checks before it gives up.
const MAX_SNAPSHOT_ENTRIES: usize = 10_000;
/// Deepest folder nesting inside a snapshot.
const MAX_SNAPSHOT_DEPTH: usize = 16;

/// The store folder of repository `name`: `models--org--name`.
pub fn repo_folder(name: &str) -> String {
    format!("models--{}", name.replace('/', "--"))
}

/// Checks a repository id: `name` or `org/name`, each part 1 to 96 of `[A-Za-z0-9._-]`, not
/// starting or ending with `.` or `-`, without `..` or `--` (which would be ambiguous in the
/// store's folder names).
pub fn check_repo_name(name: &str) -> Result<(), StoreError> {
    let part_ok = |p: &str| {
        (1..=MAX_NAME_PART).contains(&p.len())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !p.starts_with(['.', '-'])
            && !p.ends_with(['.', '-'])
            && !p.contains("..")
            && !p.contains("--")
    };
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() <= 2 && parts.iter().all(|p| part_ok(p)) {
        return Ok(());
    }
    Err(StoreError::InvalidName(format!(
        "`name` '{}' is not a Hugging Face repository id ('name' or 'org/name' of letters, \
         digits, '-', '_' and '.')",
        name.escape_debug()
    )))
}

/// Checks a revision (branch, tag or commit name): 1 to 255 of `[A-Za-z0-9._/-]`, `/`-separated
/// parts none of which is empty, `.` or `..`.
pub fn check_revision(revision: &str) -> Result<(), StoreError> {
    let ok = (1..=MAX_REVISION).contains(&revision.len())
        && revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && revision
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    if ok {
        return Ok(());
    }
    Err(StoreError::InvalidName(format!(
        "`revision` '{}' is not a branch, tag or commit name",
        revision.escape_debug()
    )))
}

/// Whether `name` can be a snapshot folder: one path component of `[A-Za-z0-9._-]`, not `.` or
/// `..`. Downloads name snapshots by 40-hex commits; `scripts/fetch-models` by package versions.
fn is_snapshot_name(name: &str) -> bool {
    (1..=MAX_REVISION).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The trimmed content of a ref file (at most [`MAX_REVISION`] bytes are read), if it exists.
fn read_ref(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_REVISION as u64 + 2)
        .read_to_string(&mut text)
        .ok()?;
    Some(text.trim().to_string())
}

/// Checks that the snapshot folder and every entry under it (symlinks followed) lie inside
/// `root` (the store's canonical folder); a dangling symlink is refused too.
fn check_inside(root: &Path, files: &ModelFiles) -> Result<(), StoreError> {
    let outside = |path: &Path| {
        files.invalid(format!(
            "{} leads outside the model store at {}",
            path.display(),
            root.display()
        ))
    };
    let dir = std::fs::canonicalize(&files.dir).map_err(|_| outside(&files.dir))?;
    if !dir.starts_with(root) {
        return Err(outside(&files.dir));
    }
    let mut pending = vec![(files.dir.clone(), 0usize)];
    let mut seen = 0usize;
    while let Some((folder, depth)) = pending.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| files.invalid(format!("cannot list {}: {e}", folder.display())))?;
        for entry in entries {
            let path = entry
                .map_err(|e| files.invalid(format!("cannot list {}: {e}", folder.display())))?
                .path();
            seen += 1;
            if seen > MAX_SNAPSHOT_ENTRIES {
                return Err(files.invalid(format!(
                    "the snapshot holds more than {MAX_SNAPSHOT_ENTRIES} entries"
                )));
            }
            let target = std::fs::canonicalize(&path).map_err(|_| outside(&path))?;
            if !target.starts_with(root) {
                return Err(outside(&path));
            }
            if target.is_dir() {
                if depth + 1 >= MAX_SNAPSHOT_DEPTH {
                    return Err(files.invalid(format!(
                        "the snapshot nests folders deeper than {MAX_SNAPSHOT_DEPTH}"
                    )));
                }
                pending.push((path, depth + 1));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(commit: &str, refs: &[(&str, &str)]) -> (tempfile::TempDir, ModelStore) {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("models--org--model");
        let snapshot = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::write(snapshot.join("config.json"), "{}").unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        for (name, target) in refs {
            std::fs::write(repo.join("refs").join(name), target).unwrap();
        }
        let store = ModelStore::new(tmp.path());
        (tmp, store)
    }

    #[test]
    fn resolves_branches_and_commits() {
        let (_tmp, store) = store_with("abc123", &[("main", "abc123\n")]);
        let by_branch = store.resolve("org/model", "main").unwrap();
        assert_eq!(by_branch.revision, "abc123");
        assert!(
            by_branch
                .dir
                .ends_with("models--org--model/snapshots/abc123")
        );
        assert_eq!(store.resolve("org/model", "abc123").unwrap(), by_branch);
    }

    #[test]
    fn missing_model_or_revision_is_not_found() {
        let (_tmp, store) = store_with("abc123", &[("main", "abc123")]);
        for (name, rev) in [
            ("org/other", "main"),
            ("org/model", "v2"),
            ("org/model", "def456"),
        ] {
            let err = store.resolve(name, rev).unwrap_err();
            assert!(matches!(err, HostError::ModelNotFound { .. }), "{err}");
            assert!(err.to_string().contains("huggingface-cli download"));
        }
    }
    #[test]
    fn names_and_revisions_are_checked_before_they_become_paths() {
        let (_tmp, store) = store_with("abc123", &[("main", "abc123")]);
        for (name, revision) in [
            ("../org/model", "main"),
            ("org/../model", "main"),
            ("org/model/extra", "main"),
            ("/org/model", "main"),
            ("org/a--b", "main"),
            ("org/-model", "main"),
            ("", "main"),
            ("org/model", "../../etc"),
            ("org/model", "a/../b"),
            ("org/model", "/main"),
            ("org/model", "main/"),
            ("org/model", "a//b"),
            ("org/model", "ma in"),
            ("org/model", ""),
        ] {
            let err = store.resolve(name, revision).unwrap_err();
            assert!(
                matches!(&err, HostError::InvalidRequirement(m)
                    if m.contains("`name`") || m.contains("`revision`")),
                "{name} {revision}: {err}"
            );
        }
        assert!(check_repo_name(&"a".repeat(97)).is_err());
        assert!(check_revision(&"a".repeat(256)).is_err());
        for name in ["model", "org/model", "Org_1/m.v2-x"] {
            assert!(check_repo_name(name).is_ok(), "{name}");
        }
        for revision in ["main", "v1.0", "refs/pr/1", "feature/x_y-z"] {
            assert!(check_revision(revision).is_ok(), "{revision}");
        }
    }

    #[test]
    fn a_ref_must_name_one_snapshot_folder() {
        // scripts/fetch-models names snapshots by package versions; downloads by commits.
        let (_tmp, store) = store_with("pypi-x-0.1.0", &[("main", "pypi-x-0.1.0\n")]);
        assert_eq!(
            store.resolve("org/model", "main").unwrap().revision,
            "pypi-x-0.1.0"
        );
        for content in ["../..", "../../x", "/etc", "a/b", ".", "..", "x y"] {
            let (tmp, store) = store_with("abc123", &[("main", content)]);
            std::fs::create_dir_all(tmp.path().join("x")).unwrap();
            std::fs::write(tmp.path().join("x/config.json"), "{}").unwrap();
            let err = store.resolve("org/model", "main").unwrap_err();
            assert!(
                matches!(err, HostError::InvalidModelFiles { .. }),
                "{content}: {err}"
            );
        }
        // A branch with a slash and no ref is simply not there.
        let (_tmp, store) = store_with("abc123", &[]);
        let err = store.resolve("org/model", "feature/x").unwrap_err();
        assert!(matches!(err, HostError::ModelNotFound { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn links_inside_the_store_resolve_and_links_outside_are_refused() {
        use std::os::unix::fs::symlink;
        let (tmp, store) = store_with("abc123", &[("main", "abc123")]);
        let repo = tmp.path().join("models--org--model");
        let snapshot = repo.join("snapshots/abc123");
        // The layout huggingface_hub writes: relative links into blobs/.
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::write(repo.join("blobs/0123"), "{}").unwrap();
        std::fs::create_dir_all(snapshot.join("1_Pooling")).unwrap();
        symlink(
            "../../../blobs/0123",
            snapshot.join("1_Pooling/config.json"),
        )
        .unwrap();
        symlink("../../blobs/0123", snapshot.join("tokenizer.json")).unwrap();
        store.resolve("org/model", "main").unwrap();
        // The store's own folder may be reached through a symlink.
        let alias = tempfile::tempdir().unwrap();
        symlink(tmp.path(), alias.path().join("store")).unwrap();
        ModelStore::new(alias.path().join("store"))
            .resolve("org/model", "main")
            .unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "{}").unwrap();
        for planted in ["1_Pooling/extra.json", "model.safetensors"] {
            let link = snapshot.join(planted);
            symlink(outside.path().join("secret"), &link).unwrap();
            let err = store.resolve("org/model", "main").unwrap_err();
            assert!(
                matches!(&err, HostError::InvalidModelFiles { reason, .. }
                    if reason.contains("outside the model store")),
                "{planted}: {err}"
            );
            std::fs::remove_file(link).unwrap();
        }
        // A dangling link (which could later be made to point anywhere) is refused too.
        symlink("../../blobs/missing", snapshot.join("vocab.txt")).unwrap();
        assert!(store.resolve("org/model", "main").is_err());
        std::fs::remove_file(snapshot.join("vocab.txt")).unwrap();
        // A whole snapshot folder linked outside is refused.
        std::fs::write(outside.path().join("config.json"), "{}").unwrap();
        symlink(outside.path(), repo.join("snapshots/elsewhere")).unwrap();
        let err = store.resolve("org/model", "elsewhere").unwrap_err();
        assert!(matches!(err, HostError::InvalidModelFiles { .. }), "{err}");
        store.resolve("org/model", "main").unwrap();
    }
}
