//! `GET /v1/models` and `GET /v1/models/{id}`: the model ids this module registered.

use modelhost_guest::{ModelStatus, list_models};
use serde_json::{Value, json};

use crate::reply::{Reply, error, host_error};

/// Every model id the module holds.
pub fn list() -> Reply {
    match list_models() {
        Ok(models) => Reply::ok(json!({
            "object": "list",
            "data": models.iter().map(model_object).collect::<Vec<_>>(),
        })),
        Err(e) => host_error(&e),
    }
}

/// One model id, or a 404 when the module does not hold it.
pub fn get(id: &str) -> Reply {
    match list_models() {
        Ok(models) => match models.iter().find(|m| m.model_id == id) {
            Some(model) => Reply::ok(model_object(model)),
            None => error(
                404,
                "invalid_request_error",
                Some("model"),
                &format!("The model '{id}' does not exist; GET /v1/models lists the models"),
            ),
        },
        Err(e) => host_error(&e),
    }
}

/// A model as OpenAI lists it, with what modelhost knows about it under `modelhost`.
fn model_object(model: &ModelStatus) -> Value {
    json!({
        "id": model.model_id,
        "object": "model",
        // When the model was made is not known here; OpenAI clients need a number.
        "created": 0,
        "owned_by": model.model_name.split('/').next().unwrap_or_default(),
        "modelhost": {
            "model_name": model.model_name,
            "revision": model.revision,
            "model_type": model_type_name(model),
            "loaded": model.loaded,
        },
    })
}

fn model_type_name(model: &ModelStatus) -> &'static str {
    use modelhost_guest::bindings::modelhost::models::types::ModelType;
    match model.model_type {
        ModelType::Embedding => "embedding",
        ModelType::Text2text => "text2text",
        ModelType::TextGeneration => "text-generation",
        ModelType::Classification => "classification",
    }
}
