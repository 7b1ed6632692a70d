//! The admin API: `/healthz` (the process answers), `/readyz` (every module started and its
//! preloads finished), `/status` (the service status and the modules, as JSON) and `/metrics`
//! (Prometheus text format).

use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};

use super::modules::{ModuleSummary, Modules};
use crate::manager::ModelManager;
use crate::results::ServiceStatus;
use crate::runtime::HttpResponse;

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

/// The answer to an admin path, or `None` when `path` is not one.
pub fn answer(path: &str, modules: &Modules, manager: &ModelManager) -> Option<HttpResponse> {
    let ready = modules.all_started();
    Some(match path {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" if ready => text(StatusCode::OK, "text/plain", "ready\n".into()),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "starting modules\n".into(),
        ),
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
