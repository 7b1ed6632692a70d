//! The embedding cache: one vector per (model, text), bounded in entries, bytes and age, shared
//! by every module, with its hit rate for the status.
//!
//! The model part of the key is the repository, the resolved commit, the output head (pooling
//! and normalization), the input limit and the precision, so a vector is only reused where it
//! would come out the same. The text part is its SHA-256: what a guest sends is never kept, and
//! an entry's size does not depend on the text's length. Entries are weighed by their bytes (a
//! checkpoint chooses its vector size), with a floor of `max_bytes / max_entries` per entry, so
//! both bounds hold at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::engine::metrics::CacheCounts;
use crate::types::results::CacheStatus;

/// The cache's settings (the `[embedding_cache]` section of the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Whether vectors are cached at all.
    pub enabled: bool,
    /// Most vectors held.
    pub max_entries: u64,
    /// Most bytes held (vectors and keys).
    pub max_bytes: u64,
    /// How long a vector stays after it was stored.
    pub ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    model: Arc<str>,
    text: [u8; 32],
}

impl Key {
    fn new(model: &Arc<str>, text: &str) -> Self {
        Self {
            model: model.clone(),
            text: Sha256::digest(text.as_bytes()).into(),
        }
    }
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
        let floor = settings.max_bytes / settings.max_entries.max(1);
        let entries = settings.enabled.then(|| {
            Cache::builder()
                .max_capacity(settings.max_bytes)
                .weigher(move |key: &Key, (vector, _): &Stored| {
                    let bytes = std::mem::size_of::<Key>()
                        + key.model.len()
                        + std::mem::size_of_val::<[f32]>(vector);
                    u32::try_from((bytes as u64).max(floor)).unwrap_or(u32::MAX)
                })
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
                entries
                    .get(&Key::new(model, text))
                    .map(|(vector, tokens)| Embedded {
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
                entries.insert(
                    Key::new(model, text),
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
            misses: lookups.saturating_sub(hits),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: u64, max_bytes: u64) -> EmbeddingCache {
        EmbeddingCache::new(CacheSettings {
            enabled: true,
            max_entries,
            max_bytes,
            ttl: Duration::from_secs(60),
        })
    }

    fn weighed(cache: &EmbeddingCache) -> u64 {
        let entries = cache.entries.as_ref().unwrap();
        entries.run_pending_tasks();
        entries.weighted_size()
    }

    #[test]
    fn long_texts_cost_their_hash_not_their_length() {
        // A floor of 1 KiB per entry, below the vector's own size.
        let cache = cache(1 << 20, 1 << 30);
        let model: Arc<str> = "org/model@abc".into();
        let vector = Embedded {
            vector: vec![0.5; 384],
            tokens: 3,
        };
        let texts: Vec<String> = (0..50)
            .map(|i| format!("{i}{}", "x".repeat(1 << 20)))
            .collect();
        cache.insert_many(&model, texts.iter().map(|t| (t, &vector)));
        // 50 MB of text; each entry weighs its key hash and its vector, nothing of the text.
        assert!(weighed(&cache) < 50 * 2048, "{}", weighed(&cache));
        let found = cache.get_many(&model, &texts[..2]);
        assert_eq!(found[0].as_ref().unwrap().vector, vector.vector);
    }

    #[test]
    fn both_the_entry_and_the_byte_bound_hold() {
        let model: Arc<str> = "m".into();
        let small = Embedded {
            vector: vec![0.0; 4],
            tokens: 1,
        };
        let by_entries = cache(10, 1 << 20);
        let texts: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        by_entries.insert_many(&model, texts.iter().map(|t| (t, &small)));
        weighed(&by_entries);
        assert!(by_entries.status().cached_count <= 10);
        // A checkpoint with huge vectors: the byte bound holds whatever the entry count.
        let huge = Embedded {
            vector: vec![0.0; 1 << 16],
            tokens: 1,
        };
        let by_bytes = cache(10_000, 1 << 20);
        by_bytes.insert_many(&model, texts.iter().map(|t| (t, &huge)));
        assert!(weighed(&by_bytes) <= 1 << 20);
        assert!(by_bytes.status().cached_count <= 4);
    }
}
