//! The configured modules of a serving host: started in order (compile, instantiate with the
//! configured id, `initialize`), looked up by route for HTTP requests, and cleaned up at shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::settings::{ModuleSettings, ServedModule, route_matches};
use crate::manager::limits::ModuleLimits;
use crate::runtime::{ModuleImage, ModuleInstance, ModuleOptions, Runtime, RuntimeError, Stdio};
use crate::types::ModuleId;

/// Where a configured module is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "reason")]
pub enum ModulePhase {
    /// Not started yet, or initializing.
    Starting,
    /// Initialized and serving.
    Ready,
    /// Failed to start (and was optional); the reason.
    Failed(String),
    /// Cleaned up at shutdown.
    Stopped,
}

/// One configured module as `/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleSummary {
    /// The configured id.
    pub id: String,
    /// Its route prefix, if it serves HTTP.
    pub route: Option<String>,
    /// Its state.
    #[serde(flatten)]
    pub state: ModulePhase,
}

/// A started module: its image (for request instances) and its main instance (for cleanup).
struct Started {
    image: ModuleImage,
    instance: Mutex<ModuleInstance>,
}

struct Entry {
    config: ModuleSettings,
    limits: ModuleLimits,
    in_flight: Arc<AtomicUsize>,
    id: ModuleId,
    state: ModulePhase,
    started: Option<Arc<Started>>,
}

/// The configured modules, in configuration order.
pub struct Modules {
    runtime: Arc<Runtime>,
    entries: RwLock<Vec<Entry>>,
}

/// A module an HTTP request goes to.
pub struct Route {
    /// The module's identity.
    pub id: ModuleId,
    /// The module's compiled image and a slot among its requests in flight, or why it cannot
    /// take the request now.
    pub target: Result<(ModuleImage, InFlight), String>,
    /// The request path with the route prefix removed.
    pub path: String,
}

/// One of a module's requests in flight; the slot frees when this is dropped. The server hands
/// it to the request's instance, which keeps it until it has ended (its response body finished
/// or dropped, or the request's deadline passed), so unread response bodies count too.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Takes a slot unless `limit` requests are in flight already.
    fn take(counter: &Arc<AtomicUsize>, limit: usize) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(counter.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Modules {
    /// The modules of `configs` with their limits, none started yet.
    pub fn new(runtime: Arc<Runtime>, configs: Vec<ServedModule>) -> Self {
        let entries = configs
            .into_iter()
            .map(
                |ServedModule {
                     settings: config,
                     limits,
                 }| Entry {
                    id: ModuleId::new(config.id.as_str()),
                    config,
                    limits,
                    in_flight: Arc::new(AtomicUsize::new(0)),
                    state: ModulePhase::Starting,
                    started: None,
                },
            )
            .collect();
        Self {
            runtime,
            entries: RwLock::new(entries),
        }
    }

    fn entries(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn entries_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Entry>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts every module in order. A required module that fails stops the start and its error
    /// is returned; an optional one is marked failed and left out.
    pub async fn start_all(&self) -> Result<(), RuntimeError> {
        let count = self.entries().len();
        for index in 0..count {
            let (config, limits, id) = {
                let entry = &self.entries()[index];
                (entry.config.clone(), entry.limits.clone(), entry.id.clone())
            };
            let started = std::time::Instant::now();
            let outcome = self.start(&config, limits, id).await;
            let mut entries = self.entries_mut();
            match outcome {
                Ok(module) => {
                    tracing::info!(module = %config.id, route = ?config.route,
                        elapsed_ms = started.elapsed().as_millis() as u64, "module ready");
                    entries[index].state = ModulePhase::Ready;
                    entries[index].started = Some(Arc::new(module));
                }
                Err(error) if config.required => {
                    entries[index].state = ModulePhase::Failed(error.to_string());
                    return Err(error);
                }
                Err(error) => {
                    tracing::error!(module = %config.id, %error, "optional module failed to start; serving without it");
                    entries[index].state = ModulePhase::Failed(error.to_string());
                }
            }
        }
        Ok(())
    }

    async fn start(
        &self,
        config: &ModuleSettings,
        limits: ModuleLimits,
        id: ModuleId,
    ) -> Result<Started, RuntimeError> {
        let path = config.path.clone();
        let runtime = self.runtime.clone();
        // Compiling a large component takes seconds: keep it off the threads serving requests.
        let image = tokio::task::spawn_blocking(move || runtime.load(&path))
            .await
            .expect("compilation does not panic")?;
        if config.route.is_some() && !image.serves_http() {
            return Err(RuntimeError::MissingExport {
                module: id,
                export: "wasi:http/incoming-handler (the module has a route)",
            });
        }
        let options = ModuleOptions {
            name: Some(config.id.clone()),
            stdio: Stdio::Inherit,
            limits,
            ..ModuleOptions::default()
        };
        let mut instance = self.runtime.instantiate_as(&image, id, options).await?;
        instance.initialize(&config.settings_text()).await?;
        Ok(Started {
            image,
            instance: Mutex::new(instance),
        })
    }

    /// Whether every module has left `Starting` and none is starting.
    pub fn all_started(&self) -> bool {
        self.entries()
            .iter()
            .all(|e| e.state != ModulePhase::Starting)
    }

    /// The module whose route prefix is the longest one `path` falls under.
    pub fn route(&self, path: &str) -> Option<Route> {
        let entries = self.entries();
        let entry = entries
            .iter()
            .filter(|e| {
                e.config
                    .route
                    .as_deref()
                    .is_some_and(|r| route_matches(r, path))
            })
            .max_by_key(|e| e.config.route.as_ref().map_or(0, String::len))?;
        let route = entry.config.route.as_deref().unwrap_or("/");
        let rest = if route == "/" {
            path
        } else {
            &path[route.len()..]
        };
        let target = match (&entry.started, &entry.state) {
            (Some(started), ModulePhase::Ready) => {
                match InFlight::take(&entry.in_flight, entry.limits.max_in_flight) {
                    Some(slot) => Ok((started.image.clone(), slot)),
                    None => Err(format!(
                        "module has {} requests in flight, its limit (limits.max_in_flight); \
                         retry shortly",
                        entry.limits.max_in_flight
                    )),
                }
            }
            // The reason may name host paths: it is in the log and the admin API's /status only.
            (_, ModulePhase::Failed(_)) => Err("module failed to start".into()),
            (_, ModulePhase::Stopped) => Err("module has stopped".into()),
            _ => Err("module is starting".into()),
        };
        Some(Route {
            id: entry.id.clone(),
            target,
            path: if rest.is_empty() {
                "/".into()
            } else {
                rest.into()
            },
        })
    }

    /// Every configured module and its state.
    pub fn summaries(&self) -> Vec<ModuleSummary> {
        self.entries()
            .iter()
            .map(|e| ModuleSummary {
                id: e.config.id.clone(),
                route: e.config.route.clone(),
                state: e.state.clone(),
            })
            .collect()
    }

    /// Calls every started module's `cleanup`, last started first; the host releases whatever
    /// references they still hold.
    pub async fn cleanup_all(&self) {
        let started: Vec<(String, Arc<Started>)> = self
            .entries_mut()
            .iter_mut()
            .rev()
            .filter_map(|e| {
                let started = e.started.take()?;
                e.state = ModulePhase::Stopped;
                Some((e.config.id.clone(), started))
            })
            .collect();
        for (id, module) in started {
            match module.instance.lock().await.cleanup().await {
                Ok(()) => tracing::info!(module = %id, "module cleaned up"),
                Err(error) => tracing::warn!(module = %id, %error, "module cleanup failed"),
            }
        }
    }
}
