//! The admin API, on its own listener (`serve.admin_address`): `/healthz` (the process
//! answers), `/readyz` (every module started and its preloads finished), `/status` (the service
//! status and the modules, as JSON) and `/metrics` (Prometheus text format); optionally behind a
//! bearer token (`serve.admin_token_env`). The public listener answers only `/healthz` and
//! `/readyz` ([`health`]): they reveal nothing.

use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};

use super::modules::{ModuleSummary, Modules};
use crate::manager::ModelManager;
use crate::runtime::HttpResponse;
use crate::types::results::ServiceStatus;

/// What `/status` returns: the service status (as `get-service-status` reports it), whether the
/// host is ready, and every configured module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Whether every module started.
    pub ready: bool,
    /// The configured modules.
    pub modules: Vec<ModuleSummary>,
    /// Workers, cache, models and references.
    #[serde(flatten)]
    pub service: ServiceStatus,
}

/// The answer to `/healthz` or `/readyz`, or `None` for any other path.
pub fn health(path: &str, modules: &Modules) -> Option<HttpResponse> {
    Some(match path {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if modules.all_started() => text(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting modules\n".into(),
        ),
        _ => return None,
    })
}

/// The answer to an admin path, or `None` when `path` is not one.
pub fn answer(path: &str, modules: &Modules, manager: &ModelManager) -> Option<HttpResponse> {
    if let Some(response) = health(path, modules) {
        return Some(response);
    }
    let ready = modules.all_started();
    Some(match path {
        "/status" => {
            let status = HostStatus {
                ready,
                modules: modules.summaries(),
                service: manager.status(),
            };
            let body = serde_json::to_string_pretty(&status).expect("the status serializes");
            text(StatusCode::OK, "application/json", body)
        }
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            manager.metrics_text(),
        ),
        _ => return None,
    })
}

/// Whether `request` carries `Authorization: Bearer <token>` (compared in constant time).
pub fn authorized<B>(request: &hyper::Request<B>, token: &str) -> bool {
    let Some(given) = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (given, token) = (given.trim().as_bytes(), token.as_bytes());
    given.len() == token.len()
        && given
            .iter()
            .zip(token)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// 401 with a `WWW-Authenticate: Bearer` challenge.
pub fn unauthorized() -> HttpResponse {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the admin API needs `Authorization: Bearer TOKEN` (serve.admin_token_env)",
    );
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// 404 for a path nothing serves.
pub fn not_found(path: &str) -> HttpResponse {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("nothing serves {path}"),
    )
}

/// A response with a complete body.
pub fn text(status: StatusCode, content_type: &str, body: String) -> HttpResponse {
    hyper::Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("a valid response")
}

/// A JSON error body `{"error": {"message": ..., "type": ...}}`.
pub fn error(status: StatusCode, kind: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({ "error": { "message": message, "type": kind } });
    text(status, "application/json", body.to_string())
}
