//! Calls into the host's `model-manager`, with the references this module holds tracked so that
//! [`release_all`] can give every one of them back.

use std::sync::Mutex;

use crate::bindings::modelhost::models::model_manager as host;
use crate::wit_convert::requirement_to_wit;
use crate::{
    Classifications, Embeddings, Error, ModelRequirement, Registration, Release, ServiceStatus,
};

/// Model ids this module holds references to, one entry per reference.
static HELD: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn held() -> std::sync::MutexGuard<'static, Vec<String>> {
    HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registers `model_id` with `requirement` (or adds a reference to it). The host verifies the
/// model's files now, so a missing or mismatched model fails here.
pub fn register_model(
    model_id: &str,
    requirement: &ModelRequirement,
) -> Result<Registration, Error> {
    let registration = host::register_model(model_id, &requirement_to_wit(requirement))?;
    held().push(model_id.to_string());
    Ok(registration)
}

/// Drops one reference to `model_id`.
pub fn release_model(model_id: &str) -> Result<Release, Error> {
    let release = host::release_model(model_id)?;
    let mut held = held();
    if let Some(i) = held.iter().position(|id| id == model_id) {
        held.swap_remove(i);
    }
    Ok(release)
}

/// Releases every reference registered through this crate and not yet released.
pub fn release_all() {
    let ids = std::mem::take(&mut *held());
    for id in ids {
        // A reference the host already dropped is not an error worth reporting at cleanup.
        let _ = host::release_model(&id);
    }
}

/// Embeds `texts` with the embedding model registered as `model_id`.
pub fn generate_embeddings(model_id: &str, texts: &[String]) -> Result<Embeddings, Error> {
    Ok(host::generate_embeddings(model_id, texts)?)
}

/// The vector of one text, from the embedding model registered as `model_id`.
pub fn embed(model_id: &str, text: &str) -> Result<Vec<f32>, Error> {
    let mut result = host::generate_embeddings(model_id, &[text.to_string()])?;
    result.embeddings.pop().ok_or_else(|| {
        Error::new(
            crate::ErrorCode::InferenceFailed,
            "the host returned no vector for one text",
        )
    })
}

/// Scores the labels of each text with the classification model registered as `model_id`.
pub fn classify(model_id: &str, texts: &[String]) -> Result<Classifications, Error> {
    Ok(host::classify(model_id, texts)?)
}

/// The model ids this module holds, with their status, sorted by id. An HTTP handler runs in a
/// fresh instance per request: this is how it learns what `initialize` registered.
pub fn list_models() -> Result<Vec<crate::ModelStatus>, Error> {
    Ok(host::list_models()?)
}

/// The host's workers, cache, registered models and references.
pub fn service_status() -> Result<ServiceStatus, Error> {
    Ok(host::get_service_status()?)
}
