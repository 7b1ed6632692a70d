//! `StoreError`: every way finding, checking or downloading a model's files fails. Its messages
//! say what went wrong; each variant converts (`From`) into the [`HostError`] variant of the same
//! name, whose message adds what to do about it.

use std::path::PathBuf;

use crate::types::error::HostError;

/// A failure of the model store or of a download into it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A repository name, revision or weights file is malformed; the message names the field.
    /// Becomes [`HostError::InvalidRequirement`].
    #[error("{0}")]
    InvalidName(String),

    /// The model is not in the model store.
    #[error(
        "model '{name}' (revision '{revision}') is not in the model store at {}",
        root.display()
    )]
    ModelNotFound {
        /// Hugging Face repository id.
        name: String,
        /// Requested revision.
        revision: String,
        /// The model store's root folder.
        root: PathBuf,
    },

    /// The model's files are present but unusable.
    #[error("the files of model '{name}' in {} are unusable: {reason}", path.display())]
    InvalidModelFiles {
        /// Hugging Face repository id.
        name: String,
        /// The snapshot folder (or the repository's folder, or a ref file).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The hub has no such model or revision, or none this host can read.
    #[error("cannot download '{name}' (revision '{revision}') from {endpoint}: {reason}")]
    NotOnHub {
        /// Hugging Face repository id.
        name: String,
        /// Requested revision.
        revision: String,
        /// The hub's address.
        endpoint: String,
        /// What is missing.
        reason: String,
    },

    /// The hub wants credentials for the model (HTTP 401).
    #[error("the model hub at {endpoint} refused '{name}' without valid credentials (HTTP 401)")]
    Unauthorized {
        /// Hugging Face repository id.
        name: String,
        /// The hub's address.
        endpoint: String,
    },

    /// The model is gated and the token's account has not accepted its terms (HTTP 403).
    #[error("model '{name}' is gated (HTTP 403 from {endpoint})")]
    Gated {
        /// Hugging Face repository id.
        name: String,
        /// The hub's address.
        endpoint: String,
    },

    /// The hub could not be reached, or a transfer broke off.
    #[error("cannot download '{name}' from {endpoint}: {reason}")]
    NetworkUnreachable {
        /// Hugging Face repository id.
        name: String,
        /// The hub's address.
        endpoint: String,
        /// What failed.
        reason: String,
    },

    /// The model store's disk is full.
    #[error("the model store at {} is out of space while downloading '{name}'", root.display())]
    DiskFull {
        /// Hugging Face repository id.
        name: String,
        /// The model store's root folder.
        root: PathBuf,
    },

    /// A downloaded file does not match its checksum or size, or the hub's answer is unsafe; what
    /// was written of it is deleted.
    #[error("the download of {file} of '{name}' is corrupt ({reason})")]
    CorruptDownload {
        /// Hugging Face repository id.
        name: String,
        /// The file, or `repository listing`.
        file: String,
        /// What did not match.
        reason: String,
    },

    /// What a pull would download is more than the configured cap. Becomes
    /// [`HostError::LimitExceeded`].
    #[error(
        "downloading '{name}' needs {needed} bytes ({:.2} GiB), more than \
         models.max_download_gb allows ({:.2} GiB)",
        gib(*needed),
        gib(*allowed)
    )]
    DownloadTooLarge {
        /// Hugging Face repository id.
        name: String,
        /// Bytes of the files that are missing.
        needed: u64,
        /// The most one pull may download.
        allowed: u64,
    },
}

impl From<StoreError> for HostError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InvalidName(message) => Self::InvalidRequirement(message),
            StoreError::ModelNotFound {
                name,
                revision,
                root,
            } => Self::ModelNotFound {
                name,
                revision,
                root,
            },
            StoreError::InvalidModelFiles { name, path, reason } => {
                Self::InvalidModelFiles { name, path, reason }
            }
            StoreError::NotOnHub {
                name,
                revision,
                endpoint,
                reason,
            } => Self::NotOnHub {
                name,
                revision,
                endpoint,
                reason,
            },
            StoreError::Unauthorized { name, endpoint } => Self::Unauthorized { name, endpoint },
            StoreError::Gated { name, endpoint } => Self::Gated { name, endpoint },
            StoreError::NetworkUnreachable {
                name,
                endpoint,
                reason,
            } => Self::NetworkUnreachable {
                name,
                endpoint,
                reason,
            },
            StoreError::DiskFull { name, root } => Self::DiskFull { name, root },
            StoreError::CorruptDownload { name, file, reason } => {
                Self::CorruptDownload { name, file, reason }
            }
            too_large @ StoreError::DownloadTooLarge { .. } => {
                Self::LimitExceeded(too_large.to_string())
            }
        }
    }
}

/// `bytes` in GiB.
fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guest or user sees at least what the store said, under the variant of the same name.
    #[test]
    fn every_store_error_keeps_its_message_in_the_host_error() {
        let (name, endpoint) = (String::from("org/m"), String::from("https://hub.example"));
        let errors = [
            StoreError::InvalidName("`revision` '..' is not a branch, tag or commit name".into()),
            StoreError::ModelNotFound {
                name: name.clone(),
                revision: "main".into(),
                root: "/store".into(),
            },
            StoreError::InvalidModelFiles {
                name: name.clone(),
                path: "/store/models--org--m".into(),
                reason: "config.json does not parse".into(),
            },
            StoreError::NotOnHub {
                name: name.clone(),
                revision: "main".into(),
                endpoint: endpoint.clone(),
                reason: "the hub has no such model or revision".into(),
            },
            StoreError::Unauthorized {
                name: name.clone(),
                endpoint: endpoint.clone(),
            },
            StoreError::Gated {
                name: name.clone(),
                endpoint: endpoint.clone(),
            },
            StoreError::NetworkUnreachable {
                name: name.clone(),
                endpoint,
                reason: "connection refused".into(),
            },
            StoreError::DiskFull {
                name: name.clone(),
                root: "/store".into(),
            },
            StoreError::CorruptDownload {
                name: name.clone(),
                file: "config.json".into(),
                reason: "its hash is 00, the hub's listing announced 11".into(),
            },
            StoreError::DownloadTooLarge {
                name,
                needed: 3 << 30,
                allowed: 1 << 30,
            },
        ];
        for error in errors {
            let host = HostError::from(error.clone());
            assert!(
                host.to_string().contains(&error.to_string()),
                "{error} / {host}"
            );
        }
        let host = HostError::from(StoreError::DownloadTooLarge {
            name: "org/m".into(),
            needed: 3 << 30,
            allowed: 1 << 30,
        });
        assert_eq!(
            host.to_string(),
            "limit exceeded: downloading 'org/m' needs 3221225472 bytes (3.00 GiB), more than \
             models.max_download_gb allows (1.00 GiB)"
        );
    }
}
