//! `POST /v1/embeddings`: one text or several in, one vector each out (floats or base64).

use base64::Engine;
use modelhost_guest::generate_embeddings;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::reply::{Reply, host_error, invalid};

/// `input`: one text or several (token arrays are not accepted).
#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

/// The request body.
#[derive(Deserialize)]
pub struct EmbeddingsRequest {
    model: String,
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u32>,
}

/// What the request body must look like, for error messages.
pub const SHAPE: &str = r#"{"model": ID, "input": TEXT or [TEXT, ...]}"#;

/// The fields a request may have (`user` changes nothing here).
pub const FIELDS: &[&str] = &["model", "input", "encoding_format", "dimensions", "user"];

/// Answers one request.
pub fn answer(request: EmbeddingsRequest) -> Reply {
    let texts = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
    };
    if texts.is_empty() {
        return invalid(Some("input"), "`input` is an empty list");
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return invalid(
                Some("encoding_format"),
                &format!("unknown encoding_format '{other}'; use float or base64"),
            );
        }
    };
    let embeddings = match generate_embeddings(&request.model, &texts) {
        Ok(embeddings) => embeddings,
        Err(e) => return host_error(&e),
    };
    if let Some(wanted) = request.dimensions.filter(|&d| d != embeddings.dimension) {
        return invalid(
            Some("dimensions"),
            &format!(
                "model '{}' makes {}-dimensional vectors, not {wanted}",
                request.model, embeddings.dimension
            ),
        );
    }
    let data: Vec<Value> = embeddings
        .embeddings
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                json!(encode_base64(vector))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Reply::ok(json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": embeddings.input_tokens, "total_tokens": embeddings.input_tokens},
    }))
}

/// Little-endian f32 bytes in base64, as OpenAI's `encoding_format: "base64"`.
fn encode_base64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
