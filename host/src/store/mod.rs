//! Model files: the local model store (the Hugging Face cache layout, a jail nothing resolves
//! outside of) and the Hub client that fills it.
//!
//! Store code fails with [`StoreError`]; the two entry points, [`ModelStore::resolve`] and
//! [`hub::Downloader::pull`], return it converted into `HostError`, as their callers do.

mod error;
pub mod hub;
pub mod local;

pub use error::StoreError;
pub use local::{ModelFiles, ModelStore};
