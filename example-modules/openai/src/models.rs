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

/// One model id (percent-encoded in the path, as clients send an id with a `/`), or a 404 when
/// the module does not hold it.
pub fn get(encoded_id: &str) -> Reply {
    let Some(id) = percent_decode(encoded_id) else {
        return error(
            404,
            "invalid_request_error",
            Some("model"),
            &format!("'{encoded_id}' is not a percent-encoded UTF-8 model id"),
        );
    };
    let id = id.as_str();
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

/// `text` with its `%XX` escapes decoded; `None` when an escape is malformed or the bytes are
/// not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
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
