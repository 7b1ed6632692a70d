//! The model store: model files in the Hugging Face cache layout, resolved without the network
//! (`download` fills it).
//!
//! A repository `org/name` lives in `<root>/models--org--name/`, with one folder per commit under
//! `snapshots/` and branch or tag names mapped to commits by the files under `refs/`. This is the
//! layout `huggingface-cli download` and the Python libraries write, so the folder can be shared
//! with them.

use std::path::{Path, PathBuf};

use crate::error::HostError;

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

    /// Reads a file of the snapshot as text, failing with `InvalidModelFiles` if it is missing.
    pub fn read_to_string(&self, file: &str) -> Result<String, HostError> {
        std::fs::read_to_string(self.path(file))
            .map_err(|e| self.invalid(format!("cannot read {file}: {e}")))
    }

    /// An `InvalidModelFiles` error about this snapshot.
    pub fn invalid(&self, reason: impl Into<String>) -> HostError {
        HostError::InvalidModelFiles {
            name: self.name.clone(),
            path: self.dir.clone(),
            reason: reason.into(),
        }
    }
}

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

    /// Finds the snapshot of `name` at `revision` (a branch, tag or commit).
    pub fn resolve(&self, name: &str, revision: &str) -> Result<ModelFiles, HostError> {
        let repo = self
            .root
            .join(format!("models--{}", name.replace('/', "--")));
        let not_found = || HostError::ModelNotFound {
            name: name.to_string(),
            revision: revision.to_string(),
            root: self.root.clone(),
        };
        let commit = match std::fs::read_to_string(repo.join("refs").join(revision)) {
            Ok(commit) => commit.trim().to_string(),
            Err(_) => revision.to_string(),
        };
        let dir = repo.join("snapshots").join(&commit);
        if commit.is_empty() || !dir.join("config.json").is_file() {
            return Err(not_found());
        }
        Ok(ModelFiles {
            name: name.to_string(),
            revision: commit,
            dir,
            weights_file: None,
        })
    }
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
}
