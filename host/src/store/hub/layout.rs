//! The store as a download writes it, in the Hugging Face cache layout:
//! `<root>/models--org--name/blobs/<hash>` (the content, named by the hash the listing
//! announced), `blobs/<hash>.incomplete` (a transfer under way, resumable),
//! `snapshots/<commit>/<file>` (a relative symlink `../../blobs/<hash>`, one more `..` per folder
//! of a nested file, as `huggingface_hub` writes) and `refs/<revision>` (the commit, written
//! atomically once every file is in place).
//!
//! Every folder is created one part at a time and must be a real folder, not a symlink, so nothing
//! a download writes can land outside the store; the parts themselves were checked before they got
//! here (repository name, revision, commit, file names, hashes).

use std::io;
use std::path::{Path, PathBuf};

use super::verify::Expected;
use crate::store::local::repo_folder;

/// One repository's folders in a store.
pub struct RepoDirs {
    /// The store's folder, canonical.
    root: PathBuf,
    /// `<root>/models--org--name`.
    pub repo: PathBuf,
    /// `<repo>/blobs`.
    blobs: PathBuf,
}

impl RepoDirs {
    /// Creates (where missing) the store's folder, `models--org--name` and its `blobs` folder.
    /// `name` must have passed [`crate::store::local::check_repo_name`].
    pub fn open(root: &Path, name: &str) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let root = std::fs::canonicalize(root)?;
        let repo = real_dir(&root, [repo_folder(name).as_str()])?;
        let blobs = real_dir(&repo, ["blobs"])?;
        Ok(Self { root, repo, blobs })
    }

    /// Creates (where missing) `snapshots/<commit>`; `commit` must be 40 hex digits.
    pub fn snapshot(&self, commit: &str) -> io::Result<PathBuf> {
        real_dir(&self.repo, ["snapshots", commit])
    }

    /// Where the checked content of a file lives.
    pub fn blob(&self, expected: &Expected) -> PathBuf {
        self.blobs.join(expected.hex())
    }

    /// Where a transfer of that content goes until it is checked.
    pub fn partial(&self, expected: &Expected) -> PathBuf {
        self.blobs.join(format!("{}.incomplete", expected.hex()))
    }

    /// Whether the blob of `expected` is there with `size` bytes (not yet hashed).
    pub fn has_blob(&self, expected: &Expected, size: u64) -> bool {
        std::fs::symlink_metadata(self.blob(expected)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Whether `file` of the snapshot is in place: a file that, symlinks followed, lies inside
    /// the store.
    pub fn in_place(&self, snapshot: &Path, file: &str) -> bool {
        std::fs::canonicalize(snapshot.join(file))
            .is_ok_and(|path| path.starts_with(&self.root) && path.is_file())
    }

    /// Links `snapshot/<file>` to its blob (replacing whatever entry was there) with a relative
    /// symlink, creating the folders of a nested file.
    pub fn link(&self, snapshot: &Path, file: &str, expected: &Expected) -> io::Result<()> {
        let mut parts: Vec<&str> = file.split('/').collect();
        let leaf = parts.pop().expect("a file name has a part");
        let folder = real_dir(snapshot, parts.iter().copied())?;
        let target = format!("{}blobs/{}", "../".repeat(parts.len() + 2), expected.hex());
        let temporary = folder.join(format!(".{leaf}.{}.link", std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        make_link(&target, &self.blob(expected), &temporary)?;
        let link = folder.join(leaf);
        if std::fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir()) {
            let _ = std::fs::remove_file(&temporary);
            return Err(io::Error::other(format!(
                "{} is a folder where a file belongs",
                link.display()
            )));
        }
        std::fs::rename(&temporary, &link)
    }

    /// Points `refs/<revision>` at `commit`: written to a temporary file, then renamed over.
    /// `revision` must have passed [`crate::store::local::check_revision`].
    pub fn write_ref(&self, revision: &str, commit: &str) -> io::Result<()> {
        let mut parts: Vec<&str> = std::iter::once("refs").chain(revision.split('/')).collect();
        let leaf = parts.pop().expect("a revision has a part");
        let folder = real_dir(&self.repo, parts)?;
        let temporary = folder.join(format!(".{leaf}.{}.tmp", std::process::id()));
        let written = std::fs::write(&temporary, commit)
            .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
            .and_then(|()| std::fs::rename(&temporary, folder.join(leaf)));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }
}

/// `base/<parts...>`, each part created where missing and required to be a real folder (not a
/// symlink, not a file).
fn real_dir<'a>(base: &Path, parts: impl IntoIterator<Item = &'a str>) -> io::Result<PathBuf> {
    let mut path = base.to_path_buf();
    for part in parts {
        path.push(part);
        match std::fs::create_dir(&path) {
            Ok(()) => continue,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if !std::fs::symlink_metadata(&path)?.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a folder (a symlink or a file is in the way)",
                path.display()
            )));
        }
    }
    Ok(path)
}

#[cfg(unix)]
fn make_link(target: &str, _blob: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

/// Without symlinks the snapshot holds a copy.
#[cfg(not(unix))]
fn make_link(_target: &str, blob: &Path, link: &Path) -> io::Result<()> {
    std::fs::copy(blob, link).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "ce013625030ba8dba906f756967f9e9ca394464a";

    #[test]
    fn nested_files_link_back_to_their_blob() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = RepoDirs::open(&tmp.path().join("store"), "org/m").unwrap();
        let expected = Expected::GitSha1(HASH.into());
        std::fs::write(dirs.blob(&expected), b"hello\n").unwrap();
        let snapshot = dirs.snapshot("c0ffee").unwrap();
        for file in ["config.json", "1_Pooling/config.json", "a/b/c.json"] {
            dirs.link(&snapshot, file, &expected).unwrap();
            assert!(dirs.in_place(&snapshot, file), "{file}");
            assert_eq!(std::fs::read(snapshot.join(file)).unwrap(), b"hello\n");
        }
        #[cfg(unix)]
        assert_eq!(
            std::fs::read_link(snapshot.join("1_Pooling/config.json")).unwrap(),
            Path::new(&format!("../../../blobs/{HASH}"))
        );
        dirs.write_ref("feature/x", "c0ffee").unwrap();
        assert_eq!(
            std::fs::read_to_string(dirs.repo.join("refs/feature/x")).unwrap(),
            "c0ffee"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dirs.repo.join("refs/feature"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_folder_is_never_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let dirs = RepoDirs::open(&tmp.path().join("store"), "org/m").unwrap();
        let snapshot = dirs.snapshot("c0ffee").unwrap();
        std::os::unix::fs::symlink(&outside, snapshot.join("1_Pooling")).unwrap();
        let expected = Expected::GitSha1(HASH.into());
        assert!(
            dirs.link(&snapshot, "1_Pooling/config.json", &expected)
                .is_err()
        );
        std::os::unix::fs::symlink(&outside, dirs.repo.join("refs")).unwrap();
        assert!(dirs.write_ref("main", "c0ffee").is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // A file linked outside the store is not in place.
        std::fs::write(outside.join("x"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.join("x"), snapshot.join("config.json")).unwrap();
        assert!(!dirs.in_place(&snapshot, "config.json"));
    }
}
