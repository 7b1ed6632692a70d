//! What model-manager operations return: the domain forms of the WIT result records.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use modelhost_types::ModelType;

/// The outcome of a registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The registered id.
    pub model_id: String,
    /// Whether the call created the id.
    pub new_registration: bool,
    /// The id's model type.
    pub model_type: ModelType,
    /// Hugging Face repository id.
    pub model_name: String,
    /// Resolved commit.
    pub revision: String,
    /// Embedding models: the vector size.
    pub dimension: Option<u32>,
    /// References all modules together now hold on the id (the specification's
    /// `reference_count`: the second module to register an id sees 2).
    pub total_reference_count: u32,
    /// References the calling module now holds.
    pub reference_count: u32,
}

/// The outcome of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The released id.
    pub model_id: String,
    /// References the calling module still holds.
    pub reference_count: u32,
    /// References all modules together still hold.
    pub total_reference_count: u32,
}

/// Vectors for a list of texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per text, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the model read for all texts (after truncation), cached texts included.
    pub input_tokens: u32,
    /// The id used.
    pub model_id: String,
    /// Vector length.
    pub dimension: u32,
    /// Whether every vector came from the cache.
    pub cached: bool,
    /// Time spent in the host.
    pub processing_time: Duration,
    /// The worker that ran the model, if one did.
    pub worker_id: Option<String>,
}

/// One label and its score.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelScore {
    /// The label, from the model's `id2label`.
    pub label: String,
    /// Its probability.
    pub score: f32,
}

/// The labels of one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The best label, when its score reaches the requirement's threshold (always without one).
    pub label: Option<String>,
    /// The best label's score.
    pub score: f32,
    /// Every label, highest score first.
    pub scores: Vec<LabelScore>,
}

impl Classification {
    /// Ranks `scores` (one per label, in `labels` order) and applies `threshold`.
    pub fn rank(labels: &[String], scores: &[f32], threshold: Option<f32>) -> Self {
        let mut ranked: Vec<LabelScore> = labels
            .iter()
            .zip(scores)
            .map(|(label, &score)| LabelScore {
                label: label.clone(),
                score,
            })
            .collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
        let best = ranked.first().map_or(0.0, |b| b.score);
        let reaches = threshold.is_none_or(|t| best >= t);
        Self {
            label: ranked.first().filter(|_| reaches).map(|b| b.label.clone()),
            score: best,
            scores: ranked,
        }
    }
}

/// Labels for a list of texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifications {
    /// One entry per text, in input order.
    pub results: Vec<Classification>,
    /// The id used.
    pub model_id: String,
    /// Time spent in the host.
    pub processing_time: Duration,
    /// The worker that ran the model, if one did.
    pub worker_id: Option<String>,
}

/// Generated text.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The text, without the prompt.
    pub text: String,
    /// The id used.
    pub model_id: String,
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub tokens_generated: u32,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Time spent in the host.
    pub processing_time: Duration,
}

/// The worker pool as seen by the status call.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct WorkerPoolStatus {
    /// Whether requests are merged into batches across callers on a pool of workers.
    pub enabled: bool,
    /// Workers in the pool.
    pub num_workers: u32,
    /// Workers running a batch now.
    pub active_workers: u32,
    /// Requests waiting in the models' queues.
    pub pending_tasks: u32,
    /// Each worker.
    pub workers: Vec<WorkerStatus>,
    /// What the pool substituted for its configuration (e.g. no GPU for `auto`).
    pub notes: Vec<String>,
    /// Each device's memory budget and use.
    pub devices: Vec<DeviceMemoryStatus>,
}

/// One worker as seen by the status call.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct WorkerStatus {
    /// The worker's name, e.g. `cpu-0`.
    pub worker_id: String,
    /// Its device, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// Batches given to it and not finished.
    pub busy: u32,
    /// Models in its memory.
    pub loaded_models: u32,
    /// Seconds spent running jobs since the host started.
    pub busy_seconds: f64,
}

/// The embedding cache as seen by the status call.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct CacheStatus {
    /// Whether the cache is on.
    pub enabled: bool,
    /// Vectors held.
    pub cached_count: u64,
    /// Share of lookups that hit.
    pub hit_rate: f64,
}

/// One registered id as seen by the status call.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct ModelStatus {
    /// The id.
    pub model_id: String,
    /// Its model type.
    pub model_type: ModelType,
    /// Hugging Face repository id.
    pub model_name: String,
    /// Resolved commit.
    pub revision: String,
    /// References all modules hold.
    pub reference_count: u32,
    /// Whether the weights are in memory.
    pub loaded: bool,
    /// Last use (or registration), in seconds since the Unix epoch, fractional.
    pub last_accessed: f64,
    /// What serves the model: `worker_pool` (the host's own workers).
    pub source: String,
    /// The devices of the workers holding the weights (or that would load them), e.g. `cpu`.
    pub device: String,
    /// The workers holding the weights.
    pub workers: Vec<String>,
    /// Set when no worker matched the requested device and another one is used.
    pub placement_note: Option<String>,
    /// Requests waiting in the queue of the id's weights (ids of the same weights share it).
    pub waiting_requests: u32,
    /// What the weights need in memory, estimated before loading.
    pub estimated_bytes: MemoryEstimate,
    /// Bytes accounted to the weights, over the devices they are placed on.
    pub accounted_bytes: u64,
    /// Device memory the loads of the weights took, as the GPUs' drivers reported it (summed
    /// over the workers holding them); absent where nothing was measured (the CPU).
    pub measured_bytes: Option<u64>,
}

/// References one module holds on one id.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct ModuleReference {
    /// The module.
    pub module_id: String,
    /// The model id.
    pub model_id: String,
    /// How many references.
    pub reference_count: u32,
}

/// What serves a model on this host's own workers (the status' `source`).
pub const WORKER_POOL_SOURCE: &str = "worker_pool";

/// The whole host, as the status call reports it. Serialized in the Model Manager
/// specification's shape: `loaded_models` is an object keyed by model id.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct ServiceStatus {
    /// Whether the model manager is on (false when the configuration sets `enabled = false`:
    /// then every registration is refused).
    pub initialized: bool,
    /// The worker pool.
    pub worker_pool: WorkerPoolStatus,
    /// The embedding cache.
    pub embedding_cache: CacheStatus,
    /// Registered ids, sorted by id; loaded or not (see [`ModelStatus::loaded`]).
    #[serde(with = "keyed_by_model_id")]
    pub loaded_models: Vec<ModelStatus>,
    /// Registered ids (the length of `loaded_models`).
    pub total_loaded_models: u32,
    /// Distinct weights in memory now (ids sharing weights count once).
    pub loaded_weights: u32,
    /// References per module and id, sorted.
    pub module_references: Vec<ModuleReference>,
}

/// `Vec<ModelStatus>` as a JSON object keyed by model id, as the specification shows it.
mod keyed_by_model_id {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ModelStatus;

    pub fn serialize<S: Serializer>(models: &[ModelStatus], s: S) -> Result<S::Ok, S::Error> {
        let keyed: BTreeMap<&str, &ModelStatus> =
            models.iter().map(|m| (m.model_id.as_str(), m)).collect();
        keyed.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ModelStatus>, D::Error> {
        let keyed = BTreeMap::<String, ModelStatus>::deserialize(d)?;
        Ok(keyed
            .into_iter()
            .map(|(id, model)| ModelStatus {
                model_id: id,
                ..model
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_sorts_labels_and_applies_the_threshold() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let ranked = Classification::rank(&labels, &[0.2, 0.5, 0.3], None);
        let order: Vec<&str> = ranked.scores.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(order, ["b", "c", "a"]);
        assert_eq!((ranked.label.as_deref(), ranked.score), (Some("b"), 0.5));
        assert_eq!(
            Classification::rank(&labels, &[0.2, 0.5, 0.3], Some(0.5))
                .label
                .as_deref(),
            Some("b")
        );
        let below = Classification::rank(&labels, &[0.2, 0.5, 0.3], Some(0.6));
        assert_eq!((below.label, below.score), (None, 0.5));
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    EndOfSequence,
    /// `max_new_tokens` were generated.
    Length,
    /// A stop sequence was produced.
    Stop,
}

/// What a model needs in memory, estimated before it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// The weights as loaded (for example f32 after dequantizing a GGUF file).
    pub weights: u64,
    /// Working memory at the model's largest batch and input (activations, KV cache).
    pub working: u64,
    /// Working memory per token in flight (a batch's padded tokens, a generation's context).
    pub per_token: u64,
}

/// The memory of one device, as the status reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceMemoryStatus {
    /// The device, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// Bytes models may use; `None` when the device's size is unknown (no limit).
    pub budget_bytes: Option<u64>,
    /// Bytes accounted to the models placed on it, working memory of running batches included.
    pub used_bytes: u64,
    /// Of which working memory of the batches and generations running now.
    pub working_bytes: u64,
    /// `budget - used`, when there is a budget.
    pub free_bytes: Option<u64>,
    /// Models evicted from it to make room.
    pub evictions: u64,
}
