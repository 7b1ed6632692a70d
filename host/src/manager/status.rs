//! The manager's answer to `get-service-status` and `/status`: models with their references and
//! placement, the worker pool, the devices' memory, the cache.

use super::ModelManager;
use super::registry::IdEntry;
use crate::types::ModuleId;
use crate::types::results::{ModelStatus, ModuleReference, ServiceStatus, WORKER_POOL_SOURCE};
use std::time::UNIX_EPOCH;

impl ModelManager {
    /// The host's state (see the WIT `get-service-status`).
    pub fn status(&self) -> ServiceStatus {
        let registry = self.registry();
        let mut loaded_models: Vec<ModelStatus> = registry
            .ids()
            .map(|(id, e)| self.model_status(id, e))
            .collect();
        loaded_models.sort_by(|a, b| a.model_id.cmp(&b.model_id));
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
        let loaded_weights = registry.all_weights().filter(|w| w.is_loaded()).count() as u32;
        let mut worker_pool = self.pool.status();
        worker_pool.pending_tasks = registry
            .all_weights()
            .map(|w| w.served.waiting_requests() as u32)
            .sum();
        ServiceStatus {
            initialized: self.enabled,
            worker_pool,
            embedding_cache: self.cache.status(),
            total_loaded_models: loaded_models.len() as u32,
            loaded_models,
            loaded_weights,
            module_references,
        }
    }

    /// The model ids `module` holds, with their status, sorted by id (see the WIT `list-models`).
    pub fn module_models(&self, module: &ModuleId) -> Vec<ModelStatus> {
        let registry = self.registry();
        let mut models: Vec<ModelStatus> = registry
            .ids()
            .filter(|(_, entry)| entry.holders.contains_key(module))
            .map(|(id, entry)| self.model_status(id, entry))
            .collect();
        models.sort_by(|a, b| a.model_id.cmp(&b.model_id));
        models
    }

    fn model_status(&self, model_id: &str, entry: &IdEntry) -> ModelStatus {
        let wall = entry.weights.last_used().wall;
        let placement = entry.weights.served.placement_snapshot();
        let workers = self.pool.workers();
        let shown = if placement.holders.is_empty() {
            &placement.matching
        } else {
            &placement.holders
        };
        let mut devices: Vec<String> = shown
            .iter()
            .map(|&i| workers[i].device.to_string())
            .collect();
        devices.dedup();
        ModelStatus {
            model_id: model_id.to_string(),
            model_type: entry.requirement.model_type,
            model_name: entry.weights.key.name.clone(),
            revision: entry.weights.key.revision.clone(),
            reference_count: entry.total_references(),
            loaded: !placement.holders.is_empty(),
            last_accessed: wall
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            source: WORKER_POOL_SOURCE.to_string(),
            device: devices.join(","),
            workers: placement
                .holders
                .iter()
                .map(|&i| workers[i].id.clone())
                .collect(),
            placement_note: placement.fallback,
            waiting_requests: entry.weights.served.waiting_requests() as u32,
            estimated_bytes: entry.weights.info.memory,
            measured_bytes: placement
                .holders
                .iter()
                .filter_map(|&i| workers[i].measured_bytes(&entry.weights.key))
                .reduce(|a, b| a + b),
            accounted_bytes: self
                .pool
                .memories()
                .iter()
                .filter_map(|m| m.accounted_to(&entry.weights.key))
                .sum(),
        }
    }
}
