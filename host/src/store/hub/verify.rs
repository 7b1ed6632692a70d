//! Hashing: what a file must hash to (from the repository listing, never from response headers)
//! and a hasher fed while the file is written, so a download is checked without reading it again.

use std::io::Read;
use std::path::Path;

use sha1::Digest;

/// The hash a file must have, as the repository listing announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// An LFS file: the sha256 of its content (64 lowercase hex digits).
    Sha256(String),
    /// A file kept in git: its git blob hash, the sha1 of `blob <size>\0` and the content (40
    /// lowercase hex digits).
    GitSha1(String),
}

impl Expected {
    /// The announced hash, lowercase hex; also the file's blob name in the store.
    pub fn hex(&self) -> &str {
        match self {
            Self::Sha256(hex) | Self::GitSha1(hex) => hex,
        }
    }

    /// A hasher for a file of `size` bytes (the git blob hash covers the size).
    pub fn hasher(&self, size: u64) -> StreamHasher {
        match self {
            Self::Sha256(_) => StreamHasher::Sha256(sha2::Sha256::new()),
            Self::GitSha1(_) => {
                let mut hasher = sha1::Sha1::new();
                hasher.update(format!("blob {size}\0").as_bytes());
                StreamHasher::GitSha1(hasher)
            }
        }
    }

    /// Checks `actual` (from [`StreamHasher::finish`]) against the announced hash.
    pub fn check(&self, actual: &str) -> Result<(), HashMismatch> {
        if actual == self.hex() {
            Ok(())
        } else {
            Err(HashMismatch {
                actual: actual.to_string(),
                announced: self.hex().to_string(),
            })
        }
    }
}

/// A file whose hash is not the one the listing announced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("its hash is {actual}, the hub's listing announced {announced}")]
pub struct HashMismatch {
    /// The file's hash, lowercase hex.
    pub actual: String,
    /// The listing's, lowercase hex.
    pub announced: String,
}

/// Why a file on disk is not the one the listing announced.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// It cannot be read.
    #[error("{0}")]
    Unreadable(#[from] std::io::Error),
    /// Its size differs.
    #[error("it holds {actual} bytes, the hub's listing announced {announced}")]
    Size {
        /// The file's size in bytes.
        actual: u64,
        /// The listing's.
        announced: u64,
    },
    /// Its hash differs.
    #[error(transparent)]
    Hash(#[from] HashMismatch),
}

/// A running sha256 or git blob sha1.
pub enum StreamHasher {
    /// For [`Expected::Sha256`].
    Sha256(sha2::Sha256),
    /// For [`Expected::GitSha1`] (the `blob <size>\0` header already fed).
    GitSha1(sha1::Sha1),
}

impl StreamHasher {
    /// Feeds more of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::GitSha1(h) => h.update(bytes),
        }
    }

    /// The hash of everything fed, lowercase hex.
    pub fn finish(self) -> String {
        match self {
            Self::Sha256(h) => hex(&h.finalize()),
            Self::GitSha1(h) => hex(&h.finalize()),
        }
    }
}

/// Feeds the first `len` bytes of the file at `path` to `hasher` (the part of an interrupted
/// download that is already on disk).
pub fn feed_file(path: &Path, len: u64, hasher: &mut StreamHasher) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?.take(len);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buffer[..n]);
    }
}

/// Checks a complete file on disk: its size must be `size` and its hash `expected`.
pub fn verify_file(path: &Path, size: u64, expected: &Expected) -> Result<(), VerifyError> {
    let len = std::fs::metadata(path)?.len();
    if len != size {
        return Err(VerifyError::Size {
            actual: len,
            announced: size,
        });
    }
    let mut hasher = expected.hasher(size);
    feed_file(path, size, &mut hasher)?;
    Ok(expected.check(&hasher.finish())?)
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_hashes_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        let expected = Expected::GitSha1("ce013625030ba8dba906f756967f9e9ca394464a".into());
        let mut hasher = expected.hasher(6);
        hasher.update(b"hello\n");
        assert_eq!(expected.check(&hasher.finish()), Ok(()));
    }

    #[test]
    fn sha256_mismatches_are_reported() {
        let expected = Expected::Sha256(
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
        );
        let mut hasher = expected.hasher(5);
        hasher.update(b"hello");
        assert_eq!(expected.check(&hasher.finish()), Ok(()));
        let mut other = expected.hasher(5);
        other.update(b"hellO");
        assert!(
            expected
                .check(&other.finish())
                .unwrap_err()
                .to_string()
                .starts_with("its hash is ")
        );
    }

    #[test]
    fn files_on_disk_are_checked_for_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").unwrap();
        let expected = Expected::GitSha1("ce013625030ba8dba906f756967f9e9ca394464a".into());
        assert!(verify_file(&path, 6, &expected).is_ok());
        assert!(matches!(
            verify_file(&path, 7, &expected),
            Err(VerifyError::Size {
                actual: 6,
                announced: 7
            })
        ));
        std::fs::write(&path, b"hellO\n").unwrap();
        assert!(matches!(
            verify_file(&path, 6, &expected),
            Err(VerifyError::Hash(_))
        ));
        assert!(matches!(
            verify_file(&dir.path().join("missing"), 6, &expected),
            Err(VerifyError::Unreadable(_))
        ));
    }
}
