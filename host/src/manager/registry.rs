//! The registry: model ids, the references each module holds on them, and the shared copies of
//! weights behind them.
//!
//! Ids are names chosen by modules. Every id points at one [`SharedModel`] entry, keyed by model type,
//! repository and resolved commit, so ids that name the same model share one copy in memory.
//! An id lives while any module holds a reference; a weights entry lives while any id points at it
//! and, after that, until it has been idle for the configured time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::backends::{Inspection, ModelInfo, TextEncoder};
use crate::engine::workers::ServedModel;
use crate::store::local::ModelFiles;
use crate::types::error::HostError;
use crate::types::requirement::ModelRequirement;
use crate::types::{ModelKey, ModuleId};

/// One verified model: its files, what it is, its tokenizer, and how the workers serve it.
/// Dropping the last reference to it unloads it from every worker.
pub struct SharedModel {
    /// The entry's key.
    pub key: ModelKey,
    /// Where the files are.
    pub files: ModelFiles,
    /// What verification found.
    pub info: ModelInfo,
    /// The model's tokenizer.
    pub encoder: Arc<dyn TextEncoder>,
    /// Its placement on the workers and its batching queue.
    pub served: Arc<ServedModel>,
    last_used: Mutex<LastUse>,
}

/// When weights were last used.
#[derive(Debug, Clone, Copy)]
pub struct LastUse {
    /// As a monotonic instant, for idle times.
    pub at: Instant,
    /// As wall-clock time, for the status.
    pub wall: SystemTime,
}

impl LastUse {
    fn now() -> Self {
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

impl SharedModel {
    /// A verified model, served by `served`.
    pub fn new(
        key: ModelKey,
        files: ModelFiles,
        inspection: Inspection,
        served: Arc<ServedModel>,
    ) -> Self {
        Self {
            key,
            files,
            info: inspection.info,
            encoder: inspection.encoder,
            served,
            last_used: Mutex::new(LastUse::now()),
        }
    }

    /// Whether any worker holds (or is loading) the weights.
    pub fn is_loaded(&self) -> bool {
        !self.served.placement_snapshot().holders.is_empty()
    }

    /// Records a use now.
    pub fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = LastUse::now();
    }

    /// When the weights were last used.
    pub fn last_used(&self) -> LastUse {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for SharedModel {
    fn drop(&mut self) {
        self.served.close();
    }
}

/// Most references one module may hold to one id (registrations without a release).
pub const MAX_REFERENCES: u32 = 1 << 20;

/// One registered model id.
pub struct IdEntry {
    /// The requirement it was registered with.
    pub requirement: ModelRequirement,
    /// The weights it uses.
    pub weights: Arc<SharedModel>,
    /// References per module.
    pub holders: BTreeMap<ModuleId, u32>,
}

impl IdEntry {
    /// References all modules together hold.
    pub fn total_references(&self) -> u32 {
        self.holders.values().sum()
    }
}

/// A module's reference to an existing id, as [`Registry::add_reference`] adds it.
pub struct Reference {
    /// The references the module now holds to the id.
    pub count: u32,
    /// The references all modules together now hold to the id.
    pub total: u32,
    /// The id's weights.
    pub weights: Arc<SharedModel>,
}

/// The references a departing module held to one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The model id.
    pub model_id: String,
    /// How many references the module held to it.
    pub references: u32,
}

/// What is left after a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining {
    /// References the releasing module still holds.
    pub module: u32,
    /// References all modules together still hold.
    pub total: u32,
}

/// Model ids, references and weights. Not synchronized: the manager keeps it behind a mutex and
/// never holds that across an await or an inference.
#[derive(Default)]
pub struct Registry {
    ids: HashMap<String, IdEntry>,
    weights: HashMap<ModelKey, Arc<SharedModel>>,
}

impl Registry {
    /// The id's entry, if `module` holds a reference to it.
    pub fn entry_for(&self, module: &ModuleId, model_id: &str) -> Result<&IdEntry, HostError> {
        self.ids
            .get(model_id)
            .filter(|entry| entry.holders.contains_key(module))
            .ok_or_else(|| HostError::NotRegistered {
                model_id: model_id.to_string(),
            })
    }

    /// Adds a reference for `module` to an existing id with an identical requirement.
    /// Returns the module's and all modules' new counts and the id's weights, or `None` when the id does not exist.
    pub fn add_reference(
        &mut self,
        module: &ModuleId,
        model_id: &str,
        requirement: &ModelRequirement,
    ) -> Result<Option<Reference>, HostError> {
        let Some(entry) = self.ids.get_mut(model_id) else {
            return Ok(None);
        };
        let fields = entry.requirement.differing_fields(requirement);
        if !fields.is_empty() {
            return Err(HostError::Conflict {
                model_id: model_id.to_string(),
                fields,
            });
        }
        let count = entry.holders.entry(module.clone()).or_insert(0);
        if *count >= MAX_REFERENCES {
            return Err(HostError::LimitExceeded(format!(
                "module holds {MAX_REFERENCES} references to model id '{model_id}'; release some first"
            )));
        }
        *count += 1;
        let count = *count;
        Ok(Some(Reference {
            count,
            total: entry.total_references(),
            weights: entry.weights.clone(),
        }))
    }

    /// Creates `model_id` with one reference from `module`. The id must not exist.
    pub fn insert(
        &mut self,
        module: &ModuleId,
        model_id: &str,
        requirement: ModelRequirement,
        weights: Arc<SharedModel>,
    ) {
        let holders = BTreeMap::from([(module.clone(), 1)]);
        let entry = IdEntry {
            requirement,
            weights,
            holders,
        };
        let previous = self.ids.insert(model_id.to_string(), entry);
        debug_assert!(previous.is_none(), "insert over an existing model id");
    }

    /// The weights entry for `key`, if one exists.
    pub fn weights(&self, key: &ModelKey) -> Option<Arc<SharedModel>> {
        self.weights.get(key).cloned()
    }

    /// The weights entry for `key`, created by `make` if there is none.
    pub fn weights_or_insert(
        &mut self,
        key: &ModelKey,
        make: impl FnOnce() -> SharedModel,
    ) -> Arc<SharedModel> {
        self.weights
            .entry(key.clone())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }

    /// Drops one of `module`'s references to `model_id`.
    pub fn release(&mut self, module: &ModuleId, model_id: &str) -> Result<Remaining, HostError> {
        let not_registered = || HostError::NotRegistered {
            model_id: model_id.to_string(),
        };
        let entry = self.ids.get_mut(model_id).ok_or_else(not_registered)?;
        let count = entry.holders.get_mut(module).ok_or_else(not_registered)?;
        *count = count.saturating_sub(1);
        let module_left = *count;
        if module_left == 0 {
            entry.holders.remove(module);
        }
        let total = entry.total_references();
        entry.weights.touch();
        if total == 0 {
            self.ids.remove(model_id);
        }
        Ok(Remaining {
            module: module_left,
            total,
        })
    }

    /// Drops every reference `module` holds. Returns the ids and how many references each lost.
    pub fn release_module(&mut self, module: &ModuleId) -> Vec<Released> {
        let mut released = Vec::new();
        for (model_id, entry) in &mut self.ids {
            if let Some(references) = entry.holders.remove(module) {
                entry.weights.touch();
                released.push(Released {
                    model_id: model_id.clone(),
                    references,
                });
            }
        }
        self.ids.retain(|_, entry| !entry.holders.is_empty());
        released
    }

    /// Removes the weights that no id uses and that have been idle for at least `idle`, and
    /// returns them, so the caller drops them (which unloads them) outside the lock.
    pub fn take_idle(&mut self, idle: Duration, now: Instant) -> Vec<Arc<SharedModel>> {
        let in_use: Vec<&ModelKey> = self.ids.values().map(|e| &e.weights.key).collect();
        let expired: Vec<ModelKey> = self
            .weights
            .iter()
            .filter(|(key, w)| {
                !in_use.contains(key) && now.saturating_duration_since(w.last_used().at) >= idle
            })
            .map(|(key, _)| key.clone())
            .collect();
        expired
            .iter()
            .filter_map(|key| self.weights.remove(key))
            .collect()
    }

    /// Removes the least recently used of `keys` whose weights no id uses, and returns it, so the
    /// caller can unload it to make room.
    pub fn take_least_recently_used(&mut self, keys: &[ModelKey]) -> Option<Arc<SharedModel>> {
        let in_use: Vec<&ModelKey> = self.ids.values().map(|e| &e.weights.key).collect();
        let key = keys
            .iter()
            .filter(|key| !in_use.contains(key))
            .filter_map(|key| Some((self.weights.get(key)?.last_used().at, key)))
            .min_by_key(|(used, _)| *used)?
            .1
            .clone();
        self.weights.remove(&key)
    }

    /// The ids `module` holds references to.
    pub fn ids_held_by(&self, module: &ModuleId) -> Vec<&str> {
        self.ids
            .iter()
            .filter(|(_, entry)| entry.holders.contains_key(module))
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// Every registered id with its entry.
    pub fn ids(&self) -> impl Iterator<Item = (&String, &IdEntry)> {
        self.ids.iter()
    }

    /// Every weights entry.
    pub fn all_weights(&self) -> impl Iterator<Item = &Arc<SharedModel>> {
        self.weights.values()
    }
}
