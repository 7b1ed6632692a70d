//! Write [modelhost](https://github.com/modelhost/modelhost) modules in Rust.
//!
//! A module is a WebAssembly component that registers the models it needs, runs inference on them
//! and releases them. This crate holds the bindings of the `framework-module` world and a small,
//! idiomatic API over them:
//!
//! - [`ModelRequirement`]: what a module asks of a model, readable from JSON settings;
//! - [`register_model`], [`generate_embeddings`], [`release_model`], [`release_all`]: the calls;
//! - [`Command`] and [`export_command!`]: a module `modelhost run` starts, its settings parsed
//!   and handed from `initialize` to `run` for it;
//! - [`Module`] and [`export_module!`]: the `lifecycle` export alone, for modules that keep their
//!   own state (an HTTP module exports `lifecycle` through the bindings of its own world, as
//!   `example-modules/openai` does);
//! - [`Error`]: every failure, with a stable [`ErrorCode`].
//!
//! ```no_run
//! use modelhost_guest::{Command, Error, ModelRequirement, embed, register_model};
//! use serde::Deserialize;
//!
//! /// The module's settings: `{"model": {...}}`, every field optional.
//! #[derive(Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Settings {
//!     model: ModelRequirement,
//! }
//!
//! impl Default for Settings {
//!     fn default() -> Self {
//!         let model = ModelRequirement::embedding("sentence-transformers/all-MiniLM-L6-v2", 384);
//!         Self { model }
//!     }
//! }
//!
//! struct Embedder;
//!
//! impl Command for Embedder {
//!     type Settings = Settings;
//!
//!     fn initialize(settings: Settings) -> Result<Self, Error> {
//!         register_model("embedder", &settings.model)?;
//!         Ok(Embedder)
//!     }
//!
//!     fn run(&self) -> Result<(), Box<dyn std::error::Error>> {
//!         println!("{:?}", embed("embedder", "hello world")?);
//!         Ok(())
//!     }
//! }
//!
//! modelhost_guest::export_command!(Embedder);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2`; a component comes out directly, a
//! `command-module` in the WIT's terms: the `fn main` that `export_command!` defines becomes the
//! `wasi:cli/run` export that `modelhost run` calls between `initialize` and `cleanup`.

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

mod command;
mod error;
mod generation;
mod models;
mod module;
mod wit_convert;

pub use bindings::modelhost::models::types::{
    Classification, Classifications, Embeddings, ErrorCode, FinishReason, Generation, LabelScore,
    ModelStatus, ModuleReference, Registration, Release, ServiceStatus, StreamUsage,
};
pub use command::Command;
#[doc(hidden)]
pub use command::run_command;
pub use error::{Error, parse_settings};
pub use generation::{TextStream, chat, generate_text, stream_chat, stream_text};
pub use modelhost_types::{
    ChatMessage, DevicePreference, GenerationOptions, Invalid, ModelRequirement, ModelType,
    Precision,
};
pub use models::{
    classify, embed, generate_embeddings, list_models, register_model, release_all, release_model,
    service_status,
};
pub use module::Module;
