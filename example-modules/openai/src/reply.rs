//! What an endpoint answers: a JSON body with a status, or a stream of server-sent events; and
//! errors in the shape OpenAI clients expect (`{"error": {"message", "type", "param", "code"}}`).

use modelhost_guest::{Error, ErrorCode};
use serde_json::{Value, json};

/// An endpoint's answer.
pub enum Reply {
    /// A status and a JSON body.
    Json {
        /// HTTP status code.
        status: u16,
        /// The body.
        body: Value,
    },
    /// `200` and server-sent events, each one JSON text, produced as the client reads them.
    Events(Box<dyn Iterator<Item = String>>),
}

impl Reply {
    /// `200` with `body`.
    pub fn ok(body: Value) -> Self {
        Self::Json { status: 200, body }
    }
}

/// An OpenAI error: `status`, the error `kind` (`invalid_request_error`, ...), the request field
/// at fault and a message for people.
pub fn error(status: u16, kind: &str, param: Option<&str>, message: &str) -> Reply {
    Reply::Json {
        status,
        body: error_body(kind, param, message, None),
    }
}

/// A `400 invalid_request_error` about `param`.
pub fn invalid(param: Option<&str>, message: &str) -> Reply {
    error(400, "invalid_request_error", param, message)
}

/// A host error as an OpenAI error with a fitting status; `code` is the host's error code.
pub fn host_error(e: &Error) -> Reply {
    let (status, kind, param) = host_error_kind(e.code);
    Reply::Json {
        status,
        body: error_body(kind, param, &e.message, Some(e.code_name())),
    }
}

/// The `data` of the event that ends a stream which failed after it started.
pub fn stream_error_event(e: &Error) -> String {
    let (_, kind, param) = host_error_kind(e.code);
    error_body(kind, param, &e.message, Some(e.code_name())).to_string()
}

fn host_error_kind(code: ErrorCode) -> (u16, &'static str, Option<&'static str>) {
    match code {
        ErrorCode::NotRegistered | ErrorCode::ModelNotFound => {
            (404, "invalid_request_error", Some("model"))
        }
        ErrorCode::WrongModelType => (400, "invalid_request_error", Some("model")),
        ErrorCode::InvalidInput | ErrorCode::LimitExceeded => (400, "invalid_request_error", None),
        ErrorCode::NotAllowed => (403, "permission_error", None),
        ErrorCode::Overloaded => (429, "rate_limit_error", None),
        ErrorCode::OutOfMemory => (503, "server_error", None),
        ErrorCode::Timeout => (504, "timeout_error", None),
        _ => (500, "server_error", None),
    }
}

fn error_body(kind: &str, param: Option<&str>, message: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}
