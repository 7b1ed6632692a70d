//! The OpenAI embeddings protocol: request and response shapes, errors as OpenAI clients expect
//! them (`{"error": {"message", "type", "param", "code"}}`).

use base64::Engine;
use modelhost_guest::{Error, ErrorCode, generate_embeddings};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bindings::wasi::http::types::{IncomingRequest, Method};
use crate::http::{BodyError, read_body};

/// A status and a JSON body.
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// JSON text.
    pub body: Vec<u8>,
}

/// `input`: one text or several (token arrays are not accepted).
#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

/// The request body of `POST /v1/embeddings`.
#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(default, rename = "user")]
    _user: Option<String>,
}

/// Answers one request.
pub fn answer(request: &IncomingRequest) -> Reply {
    let path = request.path_with_query().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    if path != "/v1/embeddings" {
        return error(
            404,
            "invalid_request_error",
            None,
            &format!("no endpoint {path}; this module serves POST /v1/embeddings"),
        );
    }
    if !matches!(request.method(), Method::Post) {
        return error(
            405,
            "invalid_request_error",
            None,
            "use POST for /v1/embeddings",
        );
    }
    let body = match read_body(request) {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return error(
                413,
                "invalid_request_error",
                None,
                "the request body is over 8 MiB",
            );
        }
        Err(BodyError::Broken) => {
            return error(
                400,
                "invalid_request_error",
                None,
                "cannot read the request body",
            );
        }
    };
    match serde_json::from_slice::<EmbeddingsRequest>(&body) {
        Ok(request) => embed(request),
        Err(e) => error(
            400,
            "invalid_request_error",
            None,
            &format!(
                "invalid request: {e}; expected {{\"model\": ID, \"input\": TEXT or [TEXT, ...]}}"
            ),
        ),
    }
}

fn embed(request: EmbeddingsRequest) -> Reply {
    let texts = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
    };
    if texts.is_empty() {
        return error(
            400,
            "invalid_request_error",
            Some("input"),
            "`input` is an empty list",
        );
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return error(
                400,
                "invalid_request_error",
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
        return error(
            400,
            "invalid_request_error",
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
    let body = json!({
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": embeddings.input_tokens, "total_tokens": embeddings.input_tokens},
    });
    Reply {
        status: 200,
        body: body.to_string().into_bytes(),
    }
}

/// Little-endian f32 bytes in base64, as OpenAI's `encoding_format: "base64"`.
fn encode_base64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A host error as an OpenAI error with a fitting status.
fn host_error(e: &Error) -> Reply {
    let (status, kind, param) = match e.code {
        ErrorCode::NotRegistered | ErrorCode::ModelNotFound => {
            (404, "invalid_request_error", Some("model"))
        }
        ErrorCode::InvalidInput | ErrorCode::WrongModelType => (400, "invalid_request_error", None),
        ErrorCode::Overloaded => (429, "rate_limit_error", None),
        ErrorCode::Timeout => (504, "timeout_error", None),
        _ => (500, "server_error", None),
    };
    let mut reply = error(status, kind, param, &e.message);
    let mut body: Value = serde_json::from_slice(&reply.body).expect("our own JSON");
    body["error"]["code"] = json!(e.code_name());
    reply.body = body.to_string().into_bytes();
    reply
}

fn error(status: u16, kind: &str, param: Option<&str>, message: &str) -> Reply {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": null}});
    Reply {
        status,
        body: body.to_string().into_bytes(),
    }
}
