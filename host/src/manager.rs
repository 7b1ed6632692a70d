//! `ModelManager`: the domain service behind the `model-manager` interface. It validates
//! requirements, verifies model files, keeps the registry, loads models on first use, runs
//! inference off the async runtime and unloads weights nobody has used for the idle time.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::backends::{EmbedOptions, LoadedModel, ModelBackend};
use crate::error::HostError;
use crate::hub::ModelStore;
use crate::registry::{IdEntry, ModuleId, Registry, Weights, WeightsKey};
use crate::requirement::{DevicePreference, ModelRequirement, ModelType};
use crate::results::{
    CacheStatus, Embeddings, ModelStatus, ModuleReference, Registration, Release, ServiceStatus,
    WorkerPoolStatus,
};

/// Where models run in this build: the CPU.
const DEVICE: &str = "cpu";

/// How the manager behaves; see the `[models]` section of the host configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerSettings {
    /// How long weights nobody references stay in memory.
    pub idle_unload: Duration,
    /// Texts per forward pass when the requirement does not say.
    pub default_batch_size: u32,
}

/// The model-manager service shared by every module of a host.
pub struct ModelManager {
    store: ModelStore,
    backend: Arc<dyn ModelBackend>,
    settings: ManagerSettings,
    registry: Mutex<Registry>,
    in_flight: AtomicU32,
}

impl ModelManager {
    /// A manager over `store`, running models with `backend`. Starts a background task that
    /// unloads idle weights, so it must be called inside a Tokio runtime.
    pub fn new(
        store: ModelStore,
        backend: Arc<dyn ModelBackend>,
        settings: ManagerSettings,
    ) -> Arc<Self> {
        let manager = Arc::new(Self {
            store,
            backend,
            settings,
            registry: Mutex::new(Registry::default()),
            in_flight: AtomicU32::new(0),
        });
        tokio::spawn(reap_idle(Arc::downgrade(&manager)));
        manager
    }

    /// The model store.
    pub fn store(&self) -> &ModelStore {
        &self.store
    }

    /// Registers `model_id` for `module` (see the WIT `register-model`).
    pub async fn register(
        &self,
        module: &ModuleId,
        model_id: &str,
        requirement: ModelRequirement,
    ) -> Result<Registration, HostError> {
        if model_id.trim().is_empty() {
            return Err(HostError::InvalidInput("the model id is empty".into()));
        }
        requirement.validate()?;
        let existing = self
            .registry()
            .add_reference(module, model_id, &requirement)?;
        if let Some(count) = existing {
            return Ok(self.registration(model_id, false, count));
        }
        let weights = self.verified_weights(&requirement).await?;
        if let (Some(expected), Some(actual)) = (requirement.dimension, weights.info.dimension) {
            if expected != actual {
                return Err(HostError::DimensionMismatch {
                    name: requirement.name.clone(),
                    expected,
                    actual,
                });
            }
        }
        if matches!(
            requirement.device,
            DevicePreference::Cuda | DevicePreference::CudaOrdinal(_)
        ) {
            tracing::warn!(%module, model_id, device = %requirement.device,
                "no such device in this host; the model runs on the cpu");
        }
        let preload = requirement.preload_workers > 0;
        let (new_registration, count) = {
            let mut registry = self.registry();
            // Another caller may have created the id while the files were verified.
            match registry.add_reference(module, model_id, &requirement)? {
                Some(count) => (false, count),
                None => {
                    registry.insert(module, model_id, requirement, weights.clone());
                    (true, 1)
                }
            }
        };
        tracing::info!(%module, model_id, model = %weights.key.name, new_registration,
            references = count, "registered model");
        if preload {
            if let Err(error) = weights.get_or_load(&self.backend).await {
                tracing::warn!(%module, model_id, %error, "preload failed; the model loads on first use");
            }
        }
        Ok(self.registration(model_id, new_registration, count))
    }

    /// Drops one of `module`'s references to `model_id` (see the WIT `release-model`).
    pub fn release(&self, module: &ModuleId, model_id: &str) -> Result<Release, HostError> {
        let remaining = self.registry().release(module, model_id)?;
        tracing::info!(%module, model_id, module_references = remaining.module,
            total_references = remaining.total, "released model");
        Ok(Release {
            model_id: model_id.to_string(),
            reference_count: remaining.module,
            total_reference_count: remaining.total,
        })
    }

    /// Drops every reference `module` holds; used when a module is cleaned up, traps or is dropped.
    /// Returns how many references were dropped.
    pub fn release_module(&self, module: &ModuleId) -> u32 {
        let released = self.registry().release_module(module);
        for (model_id, count) in &released {
            tracing::info!(%module, model_id, references = count, "released references of departing module");
        }
        released.iter().map(|(_, count)| count).sum()
    }

    /// Embeds `texts` with the embedding model `model_id` (see the WIT `generate-embeddings`).
    pub async fn embed(
        &self,
        module: &ModuleId,
        model_id: &str,
        texts: Vec<String>,
    ) -> Result<Embeddings, HostError> {
        let started = Instant::now();
        let (requirement, weights) = self.lookup(module, model_id, &[ModelType::Embedding])?;
        let dimension = weights.info.dimension.unwrap_or(0);
        let vectors = if texts.is_empty() {
            Vec::new()
        } else {
            let model = weights.get_or_load(&self.backend).await?;
            let options = EmbedOptions {
                max_input_length: requirement
                    .max_input_length
                    .map_or(usize::MAX, |n| n as usize),
                batch_size: requirement
                    .batch_size
                    .unwrap_or(self.settings.default_batch_size)
                    as usize,
            };
            let _in_flight = InFlight::enter(&self.in_flight);
            let vectors = tokio::task::spawn_blocking(move || match &*model {
                LoadedModel::Embedding(model) => model.embed(&texts, &options),
            })
            .await
            .map_err(|e| HostError::Internal(format!("inference thread failed: {e}")))??;
            weights.touch();
            vectors
        };
        Ok(Embeddings {
            vectors,
            model_id: model_id.to_string(),
            dimension,
            cached: false,
            processing_time: started.elapsed(),
            worker_id: None,
        })
    }

    /// Checks that `model_id` is a classification model of `module`'s. Classification is not
    /// available in this host yet, so a valid call answers `Unsupported`.
    pub fn classify(&self, module: &ModuleId, model_id: &str) -> Result<Infallible, HostError> {
        self.lookup(module, model_id, &[ModelType::Classification])?;
        Err(HostError::Unsupported(
            "classification is not available in this host yet".into(),
        ))
    }

    /// Checks that `model_id` is a generation model of `module`'s. Text generation is not
    /// available in this host yet, so a valid call answers `Unsupported`.
    pub fn generate(&self, module: &ModuleId, model_id: &str) -> Result<Infallible, HostError> {
        self.lookup(
            module,
            model_id,
            &[ModelType::Text2Text, ModelType::TextGeneration],
        )?;
        Err(HostError::Unsupported(
            "text generation is not available in this host yet".into(),
        ))
    }

    /// The host's state (see the WIT `service-status`).
    pub fn status(&self) -> ServiceStatus {
        let registry = self.registry();
        let mut models: Vec<ModelStatus> =
            registry.ids().map(|(id, e)| model_status(id, e)).collect();
        models.sort_by(|a, b| a.model_id.cmp(&b.model_id));
        let mut module_references: Vec<ModuleReference> = registry
            .ids()
            .flat_map(|(model_id, entry)| {
                entry
                    .holders
                    .iter()
                    .map(|(module, &count)| ModuleReference {
                        module_id: module.to_string(),
                        model_id: model_id.clone(),
                        reference_count: count,
                    })
            })
            .collect();
        module_references
            .sort_by(|a, b| (&a.module_id, &a.model_id).cmp(&(&b.module_id, &b.model_id)));
        let total_loaded_models = registry
            .all_weights()
            .filter(|w| w.loaded().is_some())
            .count() as u32;
        let pending = self.in_flight.load(Ordering::Relaxed);
        ServiceStatus {
            worker_pool: WorkerPoolStatus {
                enabled: false,
                num_workers: 0,
                active_workers: 0,
                pending_tasks: pending,
            },
            embedding_cache: CacheStatus::default(),
            models,
            total_loaded_models,
            module_references,
        }
    }

    /// Unloads the weights that no id uses and that have been idle for the configured time.
    /// Returns how many copies were unloaded. Runs periodically on its own; public for callers
    /// that want to free memory at a known point.
    pub fn unload_idle(&self) -> usize {
        let expired = self
            .registry()
            .take_idle(self.settings.idle_unload, Instant::now());
        let mut unloaded = 0;
        for weights in expired {
            if weights.unload() {
                unloaded += 1;
                tracing::info!(model = %weights.key.name, revision = %weights.key.revision, "unloaded idle model");
            }
        }
        unloaded
    }

    /// The requirement and weights of `model_id`, if `module` registered it with one of `types`.
    fn lookup(
        &self,
        module: &ModuleId,
        model_id: &str,
        types: &[ModelType],
    ) -> Result<(ModelRequirement, Arc<Weights>), HostError> {
        let registry = self.registry();
        let entry = registry.entry_for(module, model_id)?;
        let registered = entry.requirement.model_type;
        if !types.contains(&registered) {
            return Err(HostError::WrongModelType {
                model_id: model_id.to_string(),
                registered,
                needed: types[0],
            });
        }
        entry.weights.touch();
        Ok((entry.requirement.clone(), entry.weights.clone()))
    }

    /// Resolves the requirement's files and returns their weights entry, verifying the files
    /// unless an entry for them exists already.
    async fn verified_weights(
        &self,
        requirement: &ModelRequirement,
    ) -> Result<Arc<Weights>, HostError> {
        let store = self.store.clone();
        let backend = self.backend.clone();
        let (model_type, name, revision) = (
            requirement.model_type,
            requirement.name.clone(),
            requirement.revision_or_main().to_string(),
        );
        let files = run_blocking(move || store.resolve(&name, &revision)).await?;
        let key = WeightsKey {
            model_type,
            name: files.name.clone(),
            revision: files.revision.clone(),
        };
        if let Some(weights) = self.registry().weights(&key) {
            return Ok(weights);
        }
        let info = {
            let files = files.clone();
            run_blocking(move || backend.inspect(model_type, &files)).await?
        };
        Ok(self.registry().add_weights(Weights::new(key, files, info)))
    }

    fn registration(&self, model_id: &str, new_registration: bool, count: u32) -> Registration {
        let registry = self.registry();
        let entry = registry
            .ids()
            .find(|(id, _)| id.as_str() == model_id)
            .map(|(_, e)| e)
            .expect("registered id exists");
        Registration {
            model_id: model_id.to_string(),
            new_registration,
            model_type: entry.requirement.model_type,
            model_name: entry.weights.key.name.clone(),
            revision: entry.weights.key.revision.clone(),
            dimension: entry.weights.info.dimension,
            reference_count: count,
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("registry lock poisoned")
    }
}

fn model_status(model_id: &str, entry: &IdEntry) -> ModelStatus {
    let (_, wall) = entry.weights.last_used();
    ModelStatus {
        model_id: model_id.to_string(),
        model_type: entry.requirement.model_type,
        model_name: entry.weights.key.name.clone(),
        revision: entry.weights.key.revision.clone(),
        reference_count: entry.total_references(),
        loaded: entry.weights.loaded().is_some(),
        last_accessed_ms: wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        source: entry.weights.files.dir.display().to_string(),
        device: DEVICE.to_string(),
    }
}

/// Runs blocking file work off the async runtime.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, HostError> + Send + 'static,
) -> Result<T, HostError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| HostError::Internal(format!("blocking task failed: {e}")))?
}

/// Unloads idle weights periodically for as long as the manager exists.
async fn reap_idle(manager: Weak<ModelManager>) {
    let period = match manager.upgrade() {
        Some(m) => {
            (m.settings.idle_unload / 4).clamp(Duration::from_millis(10), Duration::from_secs(10))
        }
        None => return,
    };
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        match manager.upgrade() {
            Some(manager) => {
                manager.unload_idle();
            }
            None => return,
        }
    }
}

/// Counts a request as in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicU32);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
