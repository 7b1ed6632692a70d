//! Write [modelhost](https://github.com/modelhost/modelhost) modules in Rust.
//!
//! A module is a WebAssembly component that registers the models it needs, runs inference on them
//! and releases them. This crate holds the bindings of the `framework-module` world and a small,
//! idiomatic API over them:
//!
//! - [`ModelRequirement`]: what a module asks of a model, readable from JSON settings;
//! - [`register_model`], [`generate_embeddings`], [`release_model`], [`release_all`]: the calls;
//! - [`Module`] and [`export_module!`]: the `lifecycle` export in a few lines;
//! - [`Error`]: every failure, with a stable [`ErrorCode`].
//!
//! ```no_run
//! use modelhost_guest::{parse_settings, register_model, release_all, Error, ModelRequirement, Module};
//!
//! struct Embedder;
//!
//! impl Module for Embedder {
//!     fn initialize(settings: &str) -> Result<(), Error> {
//!         let requirement: ModelRequirement = parse_settings(settings)?;
//!         register_model("embedder", &requirement)?;
//!         Ok(())
//!     }
//!     fn cleanup() {
//!         release_all();
//!     }
//! }
//!
//! modelhost_guest::export_module!(Embedder);
//!
//! fn main() {
//!     let texts = vec!["hello world".to_string()];
//!     let vectors = modelhost_guest::generate_embeddings("embedder", &texts).unwrap();
//!     println!("{:?}", vectors.embeddings[0]);
//! }
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2`; a component comes out directly. A `fn main`
//! becomes the `wasi:cli/run` export that `modelhost run` calls between `initialize` and `cleanup`.

/// Bindings generated from the `framework-module` world (`wit/`); their documentation is the WIT's.
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "framework-module",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "modelhost_guest::bindings",
    });
}

mod error;
mod generation;
mod models;
mod module;
mod wit_convert;

pub use bindings::modelhost::models::types::{
    Classification, Classifications, Embeddings, ErrorCode, FinishReason, Generation, LabelScore,
    ModelStatus, ModuleReference, Registration, Release, ServiceStatus,
};
pub use error::{Error, parse_settings};
pub use generation::{TextStream, chat, generate_text, stream_chat, stream_text};
pub use modelhost_types::{
    ChatMessage, DevicePreference, GenerationOptions, Invalid, ModelRequirement, ModelType,
    Precision,
};
pub use models::{
    classify, embed, generate_embeddings, list_models, register_model, release_all,
    release_model, service_status,
};
pub use module::Module;
