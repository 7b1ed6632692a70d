//! A fake backend for tests about registration, sharing and unloading, where the numbers do not
//! matter: deterministic 4-dimensional vectors, with counters for loads and live models.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use modelhost::backends::{EmbedOptions, EmbeddingModel, LoadedModel, ModelBackend, ModelInfo};
use modelhost::error::HostError;
use modelhost::hub::ModelFiles;
use modelhost::requirement::ModelType;

/// Vector size of every fake model.
pub const FAKE_DIMENSION: u32 = 4;

/// Counts what the host does with models.
#[derive(Default)]
pub struct FakeBackend {
    loads: AtomicUsize,
    live: Arc<AtomicUsize>,
}

impl FakeBackend {
    /// How many times a model was loaded.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// How many loaded models are still in memory.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

impl ModelBackend for FakeBackend {
    fn inspect(&self, _: ModelType, files: &ModelFiles) -> Result<ModelInfo, HostError> {
        Ok(ModelInfo {
            architecture: format!("fake:{}", files.name),
            dimension: Some(FAKE_DIMENSION),
            max_input_length: 512,
        })
    }

    fn load(&self, _: ModelType, _: &ModelFiles) -> Result<LoadedModel, HostError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(LoadedModel::Embedding(Box::new(FakeModel {
            live: self.live.clone(),
        })))
    }
}

struct FakeModel {
    live: Arc<AtomicUsize>,
}

impl EmbeddingModel for FakeModel {
    fn embed(&self, texts: &[String], _: &EmbedOptions) -> Result<Vec<Vec<f32>>, HostError> {
        Ok(texts.iter().map(|t| fake_vector(t)).collect())
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The vector the fake model gives `text`.
pub fn fake_vector(text: &str) -> Vec<f32> {
    let bytes: u32 = text.bytes().map(u32::from).sum();
    vec![
        text.len() as f32,
        bytes as f32,
        text.split_whitespace().count() as f32,
        1.0,
    ]
}
