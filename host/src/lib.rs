//! modelhost runs AI models for sandboxed WebAssembly modules.
//!
//! Modules are WebAssembly components that import the `model-manager` interface
//! (`wit/model-manager.wit`) to register the Hugging Face models they need, run inference and
//! release them, and export `lifecycle` so the host can initialize and clean them up. The host owns
//! the "how": model files, verification, loading, sharing one copy of weights between modules,
//! reference counting and unloading what nobody uses.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use modelhost::backends::CandleBackend;
//! use modelhost::cli::config::HostConfig;
//! use modelhost::engine::device::SystemDevices;
//! use modelhost::manager::ModelManager;
//! use modelhost::runtime::{ModuleOptions, Runtime};
//!
//! let config = HostConfig::default();
//! let manager = ModelManager::new(
//!     config.model_store(),
//!     Arc::new(CandleBackend),
//!     &SystemDevices,
//!     config.manager_settings(),
//! )?;
//! let runtime = Runtime::new(manager, &config.runtime)?;
//! let image = runtime.load("document-processor.wasm".as_ref())?;
//! let mut module = runtime.instantiate(&image, ModuleOptions::default()).await?;
//! module.initialize("").await?;
//! let status = module.run().await?;
//! module.cleanup().await?;
//! # Ok(()) }
//! ```

// The layers, lowest first; each imports only the ones before it (ARCHITECTURE.md, checked by
// tests/layers.rs). Blank lines keep rustfmt from sorting them.
pub mod types;

pub mod store;

mod kernels;

pub mod backends;

pub mod engine;

pub mod manager;

pub mod wit_host;

pub mod runtime;

pub mod serve;

pub mod cli;
