//! What the backends' tests on real weights share: the model store the test command fills
//! (`data/models`, by `scripts/fetch-models`), the reference outputs in `tests/fixtures/reference`,
//! and how two engines' outputs are compared.

use std::path::Path;

use crate::store::local::{ModelFiles, ModelStore};

/// The snapshot of `name` in the repository's model store, as the host resolves it.
pub fn model_files(name: &str) -> ModelFiles {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/models");
    ModelStore::new(&root)
        .resolve(name, "main")
        .unwrap_or_else(|e| {
            panic!(
                "{name} is not in the model store {}: run scripts/fetch-models first ({e})",
                root.display()
            )
        })
}

/// The text of `tests/fixtures/reference/<file>`.
pub fn reference_file(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The largest absolute difference between two equally long vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
