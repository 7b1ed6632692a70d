//! `ModelManager`: the domain service behind the `model-manager` interface. It validates
//! requirements, verifies model files, keeps the registry, places models on workers, serves
//! embeddings from the cache or through the batching queues, and unloads weights nobody has used
//! for the idle time.

pub mod cache;
mod generation;
pub mod limits;
mod placement;
pub mod registry;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::backends::ModelBackend;
use crate::engine::device::DeviceInventory;
use crate::engine::metrics::Metrics;
use crate::engine::workers::{PoolSettings, ServedModel, WorkerPool};
use crate::manager::cache::{CacheSettings, Embedded, EmbeddingCache};
use crate::manager::limits::{ModuleLimits, check_model_id};
use crate::manager::registry::{Registry, SharedModel};
use crate::store::hub::{Downloader, FileProgress, HubSettings};
use crate::store::local::ModelStore;
use crate::types::error::{HostError, panic_message};
use crate::types::requirement::{ModelRequirement, ModelType, check_requirement};
use crate::types::results::{Classification, Classifications, Embeddings, Registration, Release};
use crate::types::{ModelKey, ModuleId};

/// Most tokens a generation call produces when neither the call nor the requirement says.
pub const DEFAULT_MAX_NEW_TOKENS: u32 = 256;

/// How the manager behaves; see the host configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerSettings {
    /// Whether modules may register models at all (the specification's top-level `enabled`).
    pub enabled: bool,
    /// How long weights nobody references stay in memory.
    pub idle_unload: Duration,
    /// The worker pool.
    pub pool: PoolSettings,
    /// The embedding cache.
    pub cache: CacheSettings,
    /// Where models missing from the store are downloaded from; `None` never downloads.
    pub downloads: Option<HubSettings>,
}

/// The model-manager service shared by every module of a host.
pub struct ModelManager {
    enabled: bool,
    store: ModelStore,
    backend: Arc<dyn ModelBackend>,
    pool: Arc<WorkerPool>,
    cache: EmbeddingCache,
    idle_unload: Duration,
    registry: Mutex<Registry>,
    downloader: Option<Arc<Downloader>>,
    metrics: Arc<Metrics>,
    limits: Mutex<HashMap<ModuleId, Arc<ModuleLimits>>>,
}

/// The outputs of sequences run through a model's batching queue.
struct SequenceRun {
    /// One output per text, in order.
    outputs: Vec<Vec<f32>>,
    /// The workers that ran them.
    workers: Vec<String>,
    /// Tokens read per text.
    tokens: Vec<u32>,
}

impl ModelManager {
    /// A manager over `store`, running models with `backend` on workers for the devices
    /// `inventory` reports. Starts a background task that unloads idle weights, so it must be
    /// called inside a Tokio runtime.
    pub fn new(
        store: ModelStore,
        backend: Arc<dyn ModelBackend>,
        inventory: &dyn DeviceInventory,
        settings: ManagerSettings,
    ) -> Result<Arc<Self>, HostError> {
        let pool = WorkerPool::start(settings.pool, inventory, backend.clone())
            .map_err(HostError::DeviceUnavailable)?;
        let manager = Arc::new(Self {
            enabled: settings.enabled,
            store,
            backend,
            pool,
            cache: EmbeddingCache::new(settings.cache),
            idle_unload: settings.idle_unload,
            registry: Mutex::new(Registry::default()),
            downloader: settings.downloads.map(|hub| Arc::new(Downloader::new(hub))),
            metrics: Arc::new(Metrics::default()),
            limits: Mutex::new(HashMap::new()),
        });
        tokio::spawn(reap_idle(Arc::downgrade(&manager)));
        Ok(manager)
    }

    /// Registers `model_id` for `module` (see the WIT `register-model`).
    pub async fn register(
        &self,
        module: &ModuleId,
        model_id: &str,
        requirement: ModelRequirement,
    ) -> Result<Registration, HostError> {
        if !self.enabled {
            return Err(HostError::Disabled);
        }
        check_model_id(model_id)?;
        check_requirement(&requirement)?;
        let limits = self.limits(module);
        if !limits.allows(&requirement.name) {
            return Err(HostError::NotAllowed {
                module: module.to_string(),
                name: requirement.name.clone(),
            });
        }
        let held = {
            let registry = self.registry();
            let held = registry.ids_held_by(module);
            (!held.contains(&model_id)).then_some(held.len())
        };
        if let Some(held) = held.filter(|&n| n >= limits.max_models) {
            return Err(HostError::LimitExceeded(format!(
                "module holds {held} model ids; its limit is {} (limits.max_models): release one first",
                limits.max_models
            )));
        }
        let existing = self
            .registry()
            .add_reference(module, model_id, &requirement)?;
        if let Some(reference) = existing {
            return Ok(registration(
                model_id,
                &requirement,
                &reference.weights,
                false,
                (reference.count, reference.total),
            ));
        }
        let weights = self.verified_weights(&requirement).await?;
        if let (Some(expected), Some(actual)) = (requirement.dimension, weights.info.dimension)
            && expected != actual
        {
            return Err(HostError::DimensionMismatch {
                name: requirement.name.clone(),
                expected,
                actual,
            });
        }
        let labels = weights.info.labels.len() as u32;
        if let Some(expected) = requirement.num_labels
            && requirement.model_type == ModelType::Classification
            && expected != labels
        {
            return Err(HostError::LabelCountMismatch {
                name: requirement.name.clone(),
                expected,
                actual: labels,
            });
        }
        let placement = self.place(&weights, requirement.device)?;
        if let Some(note) = &placement.fallback {
            tracing::warn!(%module, model_id, "{note}");
        }
        weights.served.allow(&placement.workers, placement.fallback);
        let preload = requirement.preload_workers as usize;
        // The answer is built now, under the lock that registers the id: a release may remove
        // the id while the preload below awaits.
        let registered = {
            let mut registry = self.registry();
            // Another caller may have created the id while the files were verified.
            match registry.add_reference(module, model_id, &requirement)? {
                Some(existing) => registration(
                    model_id,
                    &requirement,
                    &existing.weights,
                    false,
                    (existing.count, existing.total),
                ),
                None => {
                    let answer = registration(model_id, &requirement, &weights, true, (1, 1));
                    registry.insert(module, model_id, requirement, weights.clone());
                    answer
                }
            }
        };
        tracing::info!(%module, model_id, model = %weights.key.name,
            architecture = %weights.info.architecture, new_registration = registered.new_registration,
            module_references = registered.reference_count,
            total_references = registered.total_reference_count, "registered model");
        if preload > 0 {
            let holders = weights.served.preload(preload).await;
            tracing::info!(model_id, requested = preload, holders, "preloaded model");
        }
        Ok(registered)
    }

    /// Drops one of `module`'s references to `model_id` (see the WIT `release-model`).
    pub fn release(&self, module: &ModuleId, model_id: &str) -> Result<Release, HostError> {
        check_model_id(model_id)?;
        let remaining = self.registry().release(module, model_id)?;
        tracing::info!(%module, model_id, module_references = remaining.module,
            total_references = remaining.total, "released model");
        Ok(Release {
            model_id: model_id.to_string(),
            reference_count: remaining.module,
            total_reference_count: remaining.total,
        })
    }

    /// Whether `module` holds a reference to `model_id`.
    pub fn holds(&self, module: &ModuleId, model_id: &str) -> bool {
        self.registry().entry_for(module, model_id).is_ok()
    }

    /// Sets the limits `module`'s calls are held to (the defaults until set).
    pub fn set_limits(&self, module: &ModuleId, limits: ModuleLimits) {
        self.limits_map().insert(module.clone(), Arc::new(limits));
    }

    /// The limits of `module`.
    pub fn limits(&self, module: &ModuleId) -> Arc<ModuleLimits> {
        self.limits_map().get(module).cloned().unwrap_or_default()
    }

    fn limits_map(&self) -> MutexGuard<'_, HashMap<ModuleId, Arc<ModuleLimits>>> {
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops every reference `module` holds and forgets its limits; used when a module is cleaned
    /// up, traps or is dropped. Returns how many references were dropped.
    pub fn release_module(&self, module: &ModuleId) -> u32 {
        self.limits_map().remove(module);
        let released = self.registry().release_module(module);
        for r in &released {
            tracing::info!(%module, model_id = %r.model_id, references = r.references,
                "released references of departing module");
        }
        released.iter().map(|r| r.references).sum()
    }

    /// Embeds `texts` with the embedding model `model_id` (see the WIT `generate-embeddings`):
    /// from the cache where it can, the rest through the model's batching queue.
    pub async fn embed(
        &self,
        module: &ModuleId,
        model_id: &str,
        texts: Vec<String>,
    ) -> Result<Embeddings, HostError> {
        let started = Instant::now();
        self.limits(module)
            .check_input(texts.len(), texts.iter().map(String::len).sum())?;
        let (requirement, weights) = self.lookup(module, model_id, &[ModelType::Embedding])?;
        let dimension = weights.info.dimension.unwrap_or(0);
        let cache_model: Arc<str> = format!(
            "{}@{}#{}#{}#{}",
            weights.key.name,
            weights.key.revision,
            weights.info.head,
            max_tokens(&requirement, &weights),
            weights.key.precision
        )
        .into();
        let use_cache = requirement.cache_embeddings && !texts.is_empty();
        let mut embedded = if use_cache {
            self.cache.get_many(&cache_model, &texts)
        } else {
            vec![None; texts.len()]
        };
        let misses: Vec<usize> = (0..texts.len())
            .filter(|&i| embedded[i].is_none())
            .collect();
        let mut workers = Vec::new();
        if !misses.is_empty() {
            let missing: Vec<String> = misses.iter().map(|&i| texts[i].clone()).collect();
            let run = self.run_sequences(&requirement, &weights, missing).await?;
            let computed: Vec<Embedded> = run
                .outputs
                .into_iter()
                .zip(run.tokens)
                .map(|(vector, tokens)| Embedded { vector, tokens })
                .collect();
            if use_cache {
                self.cache.insert_many(
                    &cache_model,
                    misses.iter().map(|&i| &texts[i]).zip(&computed),
                );
            }
            for (i, computed) in misses.iter().zip(computed) {
                embedded[*i] = Some(computed);
            }
            workers = run.workers;
        }
        let embedded: Vec<Embedded> = embedded
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        Ok(Embeddings {
            input_tokens: embedded.iter().map(|e| e.tokens).sum(),
            vectors: embedded.into_iter().map(|e| e.vector).collect(),
            model_id: model_id.to_string(),
            dimension,
            cached: use_cache && misses.is_empty(),
            processing_time: started.elapsed(),
            worker_id: (!workers.is_empty()).then(|| workers.join(",")),
        })
    }

    /// Scores the labels of `texts` with the classification model `model_id` (see the WIT
    /// `classify`), through the model's batching queue.
    pub async fn classify(
        &self,
        module: &ModuleId,
        model_id: &str,
        texts: Vec<String>,
    ) -> Result<Classifications, HostError> {
        let started = Instant::now();
        self.limits(module)
            .check_input(texts.len(), texts.iter().map(String::len).sum())?;
        let (requirement, weights) = self.lookup(module, model_id, &[ModelType::Classification])?;
        // Every text gets a score per label: the answer grows with both.
        let scores = texts.len().saturating_mul(weights.info.labels.len());
        if scores > MAX_SCORES_PER_CALL {
            return Err(HostError::LimitExceeded(format!(
                "{} texts x {} labels is {scores} scores; one call may ask for at most \
                 {MAX_SCORES_PER_CALL}: split the call",
                texts.len(),
                weights.info.labels.len()
            )));
        }
        let (scores, workers) = if texts.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let run = self.run_sequences(&requirement, &weights, texts).await?;
            (run.outputs, run.workers)
        };
        let labels = &weights.info.labels;
        Ok(Classifications {
            results: scores
                .iter()
                .map(|s| Classification::rank(labels, s, requirement.threshold))
                .collect(),
            model_id: model_id.to_string(),
            processing_time: started.elapsed(),
            worker_id: (!workers.is_empty()).then(|| workers.join(",")),
        })
    }

    /// Tokenizes `texts` (truncated to the requirement's limit) and runs them through the
    /// model's batching queue: one vector per text, and the workers that ran them.
    async fn run_sequences(
        &self,
        requirement: &ModelRequirement,
        weights: &SharedModel,
        texts: Vec<String>,
    ) -> Result<SequenceRun, HostError> {
        let encoder = weights.encoder.clone();
        let limit = max_tokens(requirement, weights) as usize;
        let name = weights.key.name.clone();
        let tokens = run_blocking(
            move || encoder.encode(&texts, limit),
            |reason| HostError::InferenceFailed {
                name,
                reason: format!("the tokenizer panicked: {reason}"),
            },
        )
        .await?;
        let counts = tokens.iter().map(|t| t.len() as u32).collect();
        let batch_size = requirement
            .batch_size
            .map_or(self.pool.settings().batch_size, |n| n as usize);
        let timeout = self.pool.settings().queue_timeout;
        let (outputs, workers) = weights.served.run(tokens, batch_size, timeout).await?;
        weights.touch();
        Ok(SequenceRun {
            outputs,
            workers,
            tokens: counts,
        })
    }

    /// The model store's folder.
    pub fn store_root(&self) -> &std::path::Path {
        self.store.root()
    }

    /// The counters of calls, HTTP requests and batches.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Every metric in the Prometheus text format, live values included.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(&self.status(), self.cache.counts())
    }

    /// Unloads the weights that no id uses and that have been idle for the configured time.
    /// Returns how many copies were unloaded. Runs periodically on its own; public for callers
    /// that want to free memory at a known point.
    pub fn unload_idle(&self) -> usize {
        let expired = self.registry().take_idle(self.idle_unload, Instant::now());
        for weights in &expired {
            tracing::info!(model = %weights.key.name, revision = %weights.key.revision, "unloading idle model");
        }
        expired.len()
    }

    /// The requirement and weights of `model_id`, if `module` registered it with one of `types`.
    fn lookup(
        &self,
        module: &ModuleId,
        model_id: &str,
        types: &[ModelType],
    ) -> Result<(ModelRequirement, Arc<SharedModel>), HostError> {
        check_model_id(model_id)?;
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
    ) -> Result<Arc<SharedModel>, HostError> {
        let store = self.store.clone();
        let backend = self.backend.clone();
        let (model_type, name, revision) = (
            requirement.model_type,
            requirement.name.clone(),
            requirement.revision_or_main().to_string(),
        );
        let downloader = self.downloader.clone();
        let weights_file = requirement.weights_file.clone();
        let named = weights_file.clone();
        let model = name.clone();
        let mut files = run_blocking(
            move || match downloader {
                Some(downloader) => {
                    let mut log = log_progress(&name);
                    downloader.pull(&store, &name, &revision, named.as_deref(), &mut log)
                }
                None => store.resolve(&name, &revision),
            },
            |reason| HostError::Internal(format!("fetching '{model}' panicked: {reason}")),
        )
        .await?;
        if let Some(file) = weights_file.as_deref()
            && !files.path(file).is_file()
        {
            return Err(files
                .invalid(format!(
                    "the requirement's weights_file '{file}' is not in the snapshot"
                ))
                .into());
        }
        files.weights_file = weights_file;
        let key = ModelKey {
            model_type,
            name: files.name.clone(),
            revision: files.revision.clone(),
            weights_file: files.weights_file.clone(),
            precision: requirement.precision,
        };
        if let Some(weights) = self.registry().weights(&key) {
            return Ok(weights);
        }
        let inspection = {
            let checked = files.clone();
            let invalid = files.clone();
            run_blocking(
                move || backend.inspect(model_type, &checked),
                move |reason| {
                    let reason = format!("verifying the files panicked: {reason}");
                    invalid.invalid(reason).into()
                },
            )
            .await?
        };
        let (pool, metrics) = (self.pool.clone(), self.metrics.clone());
        let per_token = inspection.info.memory.per_token;
        Ok(self.registry().weights_or_insert(&key, || {
            let served = ServedModel::start(key.clone(), files.clone(), pool, metrics, per_token);
            SharedModel::new(key.clone(), files, inspection, served)
        }))
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The answer to a registration of `model_id` with `requirement` on `weights`.
fn registration(
    model_id: &str,
    requirement: &ModelRequirement,
    weights: &SharedModel,
    new_registration: bool,
    (reference_count, total_reference_count): (u32, u32),
) -> Registration {
    Registration {
        model_id: model_id.to_string(),
        new_registration,
        model_type: requirement.model_type,
        model_name: weights.key.name.clone(),
        revision: weights.key.revision.clone(),
        dimension: weights.info.dimension,
        reference_count,
        total_reference_count,
    }
}

/// Logs each file of a download at registration.
fn log_progress(name: &str) -> impl FnMut(FileProgress) + '_ {
    move |event| match event {
        FileProgress::Started { file, size } => {
            tracing::info!(model = %name, %file, bytes = size, "downloading");
        }
        FileProgress::Done {
            file,
            downloaded: true,
        } => {
            tracing::info!(model = %name, %file, "downloaded and verified");
        }
        FileProgress::Advanced { .. } | FileProgress::Done { .. } => {}
    }
}

/// Most label scores one classification call may return.
const MAX_SCORES_PER_CALL: usize = 1 << 20;

/// The longest input, in tokens, for `requirement` on `weights`: the requirement's limit capped
/// at the model's.
fn max_tokens(requirement: &ModelRequirement, weights: &SharedModel) -> u32 {
    let model_limit = weights.info.max_input_length;
    requirement
        .max_input_length
        .map_or(model_limit, |n| n.min(model_limit))
}

/// Runs blocking work (files, verification, tokenization) off the async runtime. A panic in it
/// (a checkpoint's tokenizer or config driving a library into one) becomes the error `failed`
/// makes of its message, never a panic of the caller.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, HostError> + Send + 'static,
    failed: impl FnOnce(String) -> HostError,
) -> Result<T, HostError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(outcome) => outcome,
        Err(error) => match error.try_into_panic() {
            Ok(payload) => Err(failed(panic_message(payload.as_ref()).to_string())),
            Err(error) => Err(HostError::Internal(format!(
                "blocking task failed: {error}"
            ))),
        },
    }
}

/// Unloads idle weights periodically for as long as the manager exists.
async fn reap_idle(manager: Weak<ModelManager>) {
    let period = match manager.upgrade() {
        Some(m) => (m.idle_unload / 4).clamp(Duration::from_millis(10), Duration::from_secs(10)),
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
