//! The embedding cache: one vector per (model, text), bounded in entries and age, shared by
//! every module, with its hit rate for the status.
//!
//! The model part of the key is the repository, the resolved commit, the output head (pooling
//! and normalization), the input limit and the precision, so a vector is only reused where it
//! would come out the same.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;

use crate::metrics::CacheCounts;
use crate::results::CacheStatus;

/// The cache's settings (the `[embedding_cache]` section of the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Whether vectors are cached at all.
    pub enabled: bool,
    /// Most vectors held.
    pub max_entries: u64,
    /// How long a vector stays after it was stored.
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    model: Arc<str>,
    text: Box<str>,
}

/// A text's vector and the number of tokens the model read for it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embedded {
    /// The vector.
    pub vector: Vec<f32>,
    /// Tokens read (after truncation).
    pub tokens: u32,
}

/// A cached vector and its token count.
type Stored = (Arc<[f32]>, u32);

/// Vectors already computed, per model and text.
pub struct EmbeddingCache {
    entries: Option<Cache<Key, Stored>>,
    lookups: AtomicU64,
    hits: AtomicU64,
}

impl EmbeddingCache {
    /// An empty cache.
    pub fn new(settings: CacheSettings) -> Self {
        let entries = settings.enabled.then(|| {
            Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(settings.ttl)
                .build()
        });
        Self {
            entries,
            lookups: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// Whether the cache is on.
    pub fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The cached vector of each text, where there is one.
    pub fn get_many(&self, model: &Arc<str>, texts: &[String]) -> Vec<Option<Embedded>> {
        let Some(entries) = &self.entries else {
            return vec![None; texts.len()];
        };
        let found: Vec<Option<Embedded>> = texts
            .iter()
            .map(|text| {
                let key = Key {
                    model: model.clone(),
                    text: text.as_str().into(),
                };
                entries.get(&key).map(|(vector, tokens)| Embedded {
                    vector: vector.to_vec(),
                    tokens,
                })
            })
            .collect();
        let hits = found.iter().filter(|v| v.is_some()).count() as u64;
        self.lookups
            .fetch_add(texts.len() as u64, Ordering::Relaxed);
        self.hits.fetch_add(hits, Ordering::Relaxed);
        found
    }

    /// Stores the vector of each text.
    pub fn insert_many<'a>(
        &self,
        model: &Arc<str>,
        pairs: impl IntoIterator<Item = (&'a String, &'a Embedded)>,
    ) {
        if let Some(entries) = &self.entries {
            for (text, embedded) in pairs {
                let key = Key {
                    model: model.clone(),
                    text: text.as_str().into(),
                };
                entries.insert(
                    key,
                    (Arc::from(embedded.vector.as_slice()), embedded.tokens),
                );
            }
        }
    }

    /// Texts found and not found since the cache was created.
    pub fn counts(&self) -> CacheCounts {
        let lookups = self.lookups.load(Ordering::Relaxed);
        let hits = self.hits.load(Ordering::Relaxed);
        CacheCounts {
            hits,
            misses: lookups - hits,
        }
    }

    /// Entries, hit rate and whether the cache is on.
    pub fn status(&self) -> CacheStatus {
        let CacheCounts { hits, misses } = self.counts();
        let lookups = hits + misses;
        CacheStatus {
            enabled: self.enabled(),
            cached_count: self.entries.as_ref().map_or(0, |e| {
                e.run_pending_tasks();
                e.entry_count()
            }),
            hit_rate: if lookups == 0 {
                0.0
            } else {
                hits as f64 / lookups as f64
            },
        }
    }
}
