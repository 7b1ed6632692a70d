//! Model files: the local model store (the Hugging Face cache layout, a jail nothing resolves
//! outside of) and the Hub client that fills it.

pub mod hub;
pub mod local;

pub use local::{ModelFiles, ModelStore};
