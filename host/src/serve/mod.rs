//! `modelhost serve`: the host as a long-running service. One listener carries the admin API
//! (`admin`) and the routes of the modules that export `wasi:http/incoming-handler`
//! (`modules`); modules start in configuration order while the listener already answers
//! `/healthz` and `/readyz`. On shutdown the listener stops accepting, in-flight requests finish
//! (within a grace period), every module's `cleanup` runs and every reference is released.

mod admin;
mod modules;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::HostConfig;
use crate::runtime::{HttpResponse, Runtime, RuntimeError};

pub use admin::HostStatus;
pub use modules::{ModuleState, ModuleSummary};

use modules::Modules;

/// A failure to serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}; set `serve.address` to a free host:port")]
    Bind {
        /// The configured address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A required module failed to start.
    #[error("{0}; fix the module or set `required = false` in its [[modules]] entry")]
    Module(#[from] RuntimeError),
}

/// A bound listener with its modules, not yet serving.
pub struct Server {
    listener: TcpListener,
    modules: Arc<Modules>,
    runtime: Arc<Runtime>,
    grace: Duration,
}

impl Server {
    /// Binds `serve.address` for the `[[modules]]` of `config`. Port 0 picks a free port
    /// ([`Server::local_addr`]).
    pub async fn bind(config: &HostConfig, runtime: Arc<Runtime>) -> Result<Self, ServeError> {
        let settings = &config.serve;
        let modules = config
            .modules
            .iter()
            .map(|m| (m.clone(), config.module_limits(Some(m))))
            .collect();
        let listener = TcpListener::bind(&settings.address)
            .await
            .map_err(|source| ServeError::Bind {
                address: settings.address.clone(),
                source,
            })?;
        Ok(Self {
            listener,
            modules: Arc::new(Modules::new(runtime.clone(), modules)),
            runtime,
            grace: Duration::from_secs(settings.shutdown_grace_seconds),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    /// Starts the modules and serves until `shutdown` completes (or a required module fails to
    /// start), then drains in-flight requests and cleans every module up.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Self {
            listener,
            modules,
            runtime,
            grace,
        } = self;
        tracing::info!(address = %listener.local_addr().expect("bound"), "serving");
        let starting = {
            let modules = modules.clone();
            tokio::spawn(async move { modules.start_all().await })
        };
        let failed_start = async {
            match starting.await.expect("module start does not panic") {
                Ok(()) => {
                    tracing::info!("all modules started; ready");
                    std::future::pending().await
                }
                Err(error) => error,
            }
        };
        let graceful = GracefulShutdown::new();
        let service = Arc::new(Service { modules, runtime });
        tokio::pin!(shutdown, failed_start);
        let outcome = loop {
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                error = &mut failed_start => break Err(ServeError::Module(error)),
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let service = service.clone();
                    let connection = hyper::server::conn::http1::Builder::new().serve_connection(
                        TokioIo::new(stream),
                        hyper::service::service_fn(move |request| {
                            let service = service.clone();
                            async move { Ok::<_, std::convert::Infallible>(service.handle(request).await) }
                        }),
                    );
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                    });
                }
            }
        };
        drop(listener);
        tracing::info!("shutting down: finishing in-flight requests");
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "in-flight requests did not finish in time"
            );
        }
        service.modules.cleanup_all().await;
        let left = service.runtime.manager().status().module_references.len();
        tracing::info!(references_left = left, "stopped");
        outcome
    }
}

/// Answers requests: admin paths first, then module routes.
struct Service {
    modules: Arc<Modules>,
    runtime: Arc<Runtime>,
}

impl Service {
    async fn handle(&self, request: hyper::Request<Incoming>) -> HttpResponse {
        let path = request.uri().path().to_string();
        if let Some(response) = admin::answer(&path, &self.modules, self.runtime.manager()) {
            return response;
        }
        let Some(route) = self.modules.route(&path) else {
            return admin::error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no module serves {path}"),
            );
        };
        let started = Instant::now();
        let response = match route.target {
            Err(reason) => admin::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                &format!("{}: {reason}", route.id),
            ),
            Ok((image, _in_flight)) => {
                let request = with_path(request, &route.path);
                match self.runtime.handle_http(&image, &route.id, request).await {
                    Ok(response) => response,
                    Err(error) => {
                        tracing::warn!(module = %route.id, %error, "request failed");
                        admin::error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "module_error",
                            &error.to_string(),
                        )
                    }
                }
            }
        };
        self.runtime.manager().metrics().record_http(
            route.id.as_str(),
            response.status().as_u16(),
            started.elapsed(),
        );
        response
    }
}

/// `request` with its path replaced by `path` (the route prefix removed), query kept.
fn with_path(request: hyper::Request<Incoming>, path: &str) -> hyper::Request<Incoming> {
    let (mut parts, body) = request.into_parts();
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let mut uri = parts.uri.clone().into_parts();
    uri.path_and_query = path_and_query.parse().ok();
    if let Ok(rewritten) = hyper::Uri::from_parts(uri) {
        parts.uri = rewritten;
    }
    hyper::Request::from_parts(parts, body)
}
