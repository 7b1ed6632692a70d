//! The WebAssembly runtime: one wasmtime engine and linker for the host, compiled module images,
//! and module instances, each in its own store that carries the module's identity.
//!
//! The `model-manager` imports come from [`crate::wit_host`], linked here next to WASI; this layer
//! owns what is about wasmtime itself: the engine, compiling, stores and their sandbox limits.

mod error;
mod http;
mod instance;
pub mod settings;
mod state;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Cache, CacheConfig, Config, Engine};

use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::manager::ModelManager;
use crate::types::ModuleId;

pub use crate::wit_host::GuestError;
pub use error::RuntimeError;
pub use http::{HttpRequestOptions, HttpResponse};
pub use instance::{ExportDeadlines, ModuleInstance, ModuleOptions, Stdio};
pub use settings::RuntimeSettings;
pub use state::ModuleState;

/// A compiled module, ready to be instantiated any number of times.
#[derive(Clone)]
pub struct ModuleImage {
    name: String,
    pre: InstancePre<ModuleState>,
    proxy: Option<ProxyPre<ModuleState>>,
}

impl ModuleImage {
    /// Whether the module exports `wasi:http/incoming-handler`.
    pub fn serves_http(&self) -> bool {
        self.proxy.is_some()
    }
}

/// The engine, the linker with WASI 0.2 (HTTP included) and `model-manager`, and the manager
/// modules talk to.
pub struct Runtime {
    engine: Engine,
    linker: Linker<ModuleState>,
    manager: Arc<ModelManager>,
    instances_started: AtomicU64,
    deadlines: ExportDeadlines,
}

impl Runtime {
    /// An engine configured for async component-model modules, with every host import linked.
    pub fn new(
        manager: Arc<ModelManager>,
        settings: &RuntimeSettings,
    ) -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        if settings.compile_cache {
            let mut cache_config = CacheConfig::new();
            if let Some(dir) = &settings.compile_cache_dir {
                cache_config.with_directory(dir);
            }
            let cache = Cache::new(cache_config).map_err(RuntimeError::Engine)?;
            config.cache(Some(cache));
        }
        let engine = Engine::new(&config).map_err(RuntimeError::Engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(RuntimeError::Engine)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(RuntimeError::Engine)?;
        crate::wit_host::add_to_linker(&mut linker, ModuleState::model_manager)
            .map_err(RuntimeError::Engine)?;
        start_epoch_ticker(&engine);
        Ok(Self {
            engine,
            linker,
            manager,
            instances_started: AtomicU64::new(0),
            deadlines: ExportDeadlines::from_settings(settings),
        })
    }

    /// The model manager modules of this runtime share.
    pub fn manager(&self) -> &Arc<ModelManager> {
        &self.manager
    }

    /// Compiles (or fetches from the cache) the component at `path` and links its imports.
    pub fn load(&self, path: &Path) -> Result<ModuleImage, RuntimeError> {
        let started = std::time::Instant::now();
        let component =
            Component::from_file(&self.engine, path).map_err(|source| RuntimeError::Compile {
                path: path.to_path_buf(),
                source,
            })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|source| RuntimeError::Link {
                path: path.to_path_buf(),
                source,
            })?;
        let name = path
            .file_stem()
            .map_or_else(|| "module".into(), |s| s.to_string_lossy().into_owned());
        let proxy = ProxyPre::new(pre.clone()).ok();
        tracing::info!(module = %name, elapsed_ms = started.elapsed().as_millis() as u64,
            "module compiled (or read from the compile cache)");
        Ok(ModuleImage { name, pre, proxy })
    }

    /// Starts a new instance of `image` in a store of its own.
    pub async fn instantiate(
        &self,
        image: &ModuleImage,
        options: ModuleOptions,
    ) -> Result<ModuleInstance, RuntimeError> {
        let n = self.instances_started.fetch_add(1, Ordering::Relaxed) + 1;
        let name = options.name.clone().unwrap_or_else(|| image.name.clone());
        let id = ModuleId::new(format!("{name}#{n}"));
        self.instantiate_as(image, id, options).await
    }

    /// Starts a new instance of `image` with exactly the identity `id` (a configured module id);
    /// the caller keeps ids unique.
    pub async fn instantiate_as(
        &self,
        image: &ModuleImage,
        id: ModuleId,
        options: ModuleOptions,
    ) -> Result<ModuleInstance, RuntimeError> {
        ModuleInstance::start(
            &self.engine,
            &image.pre,
            self.manager.clone(),
            id,
            options,
            self.deadlines,
        )
        .await
    }
}

/// Advances `engine`'s epoch every [`state::EPOCH_TICK`] until the engine is dropped: running
/// guests yield at each tick and are stopped past their CPU limit.
fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("modelhost-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(state::EPOCH_TICK);
            }
        })
        .expect("cannot start the epoch thread");
}
