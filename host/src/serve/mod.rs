//! `modelhost serve`: the host as a long-running service. Two listeners: the public one
//! carries the routes of the modules that export `wasi:http/incoming-handler` (`modules`) plus
//! `/healthz` and `/readyz`; the admin one (`serve.admin_address`, optionally behind a bearer
//! token) carries the admin API (`admin`). Modules start in configuration order while the
//! listeners already answer `/healthz` and `/readyz`. On shutdown the listeners stop accepting,
//! in-flight requests finish (within a grace period), every module's `cleanup` runs and every
//! reference is released.
//!
//! Hostile clients and handlers: a client gets `serve.header_read_timeout_seconds` to send its
//! headers (idle connections close after as long); each listener serves at most
//! `serve.max_connections` connections at once (the next waits to be accepted); a request,
//! handler and response body together, gets `serve.request_timeout_seconds`, after which its
//! instance is stopped; a request holds its module's in-flight slot until its instance has
//! ended, so response bodies a client never reads cannot exceed `limits.max_in_flight`.

mod admin;
mod modules;
pub mod settings;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::runtime::settings::{duration, optional_seconds};
use crate::runtime::{HttpRequestOptions, HttpResponse, Runtime, RuntimeError};
use crate::types::ModuleId;

pub use admin::HostStatus;
pub use modules::{ModulePhase, ModuleSummary};
pub use settings::{ModuleSettings, ServeSettings, ServedModule};

use modules::Modules;

/// How long the accept loop waits after a failed `accept` (such as EMFILE: out of file
/// descriptors) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Least time between two warnings that a listener is at its connection cap.
const CAP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// A failure to serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}; set `{key}` to a free host:port")]
    Bind {
        /// The configuration key of the address.
        key: &'static str,
        /// The configured address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `serve.admin_token_env` names a variable that is not set.
    #[error(
        "`serve.admin_token_env` names {name}, which is not set (or empty); set it to the admin \
         API's token, or remove the key"
    )]
    AdminToken {
        /// The variable's name.
        name: String,
    },
    /// A required module failed to start.
    #[error("{0}; fix the module or set `required = false` in its [[modules]] entry")]
    Module(#[from] RuntimeError),
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    /// Module routes, `/healthz` and `/readyz`.
    Public,
    /// The admin API.
    Admin,
}

impl Listener {
    fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Admin => "admin",
        }
    }
}

/// Bound listeners with their modules, not yet serving.
pub struct Server {
    public: TcpListener,
    admin: Option<TcpListener>,
    service: Arc<Service>,
    grace: Duration,
    max_connections: usize,
    header_read_timeout: Duration,
}

impl Server {
    /// Binds `serve.address` (and `serve.admin_address`, unless empty) of `settings` for
    /// `modules` (the `[[modules]]` entries, each with its limits), none started yet. Port 0 picks
    /// a free port ([`Server::local_addr`], [`Server::admin_addr`]).
    pub async fn bind(
        settings: &ServeSettings,
        modules: Vec<ServedModule>,
        runtime: Arc<Runtime>,
    ) -> Result<Self, ServeError> {
        let admin_token = match &settings.admin_token_env {
            None => None,
            Some(_) if settings.admin_address.is_empty() => None,
            Some(name) => match std::env::var(name) {
                Ok(token) if !token.is_empty() => Some(token),
                _ => return Err(ServeError::AdminToken { name: name.clone() }),
            },
        };
        let public = bind("serve.address", &settings.address).await?;
        let admin = if settings.admin_address.is_empty() {
            None
        } else {
            Some(bind("serve.admin_address", &settings.admin_address).await?)
        };
        Ok(Self {
            public,
            admin,
            service: Arc::new(Service {
                modules: Arc::new(Modules::new(runtime.clone(), modules)),
                runtime,
                request_timeout: optional_seconds(settings.request_timeout_seconds),
                admin_token,
            }),
            grace: duration(settings.shutdown_grace_seconds as f64),
            max_connections: usize::try_from(settings.max_connections)
                .unwrap_or(usize::MAX)
                .clamp(1, Semaphore::MAX_PERMITS),
            header_read_timeout: duration(settings.header_read_timeout_seconds)
                .max(Duration::from_millis(1)),
        })
    }

    /// The address the public listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.public.local_addr().expect("a bound listener")
    }

    /// The address the admin listener is bound to, unless the admin API is disabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener"))
    }

    /// Starts the modules and serves until `shutdown` completes (or a required module fails to
    /// start), then drains in-flight requests and cleans every module up.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        tracing::info!(address = %self.local_addr(), admin = ?self.admin_addr(), "serving");
        let Self {
            public,
            admin,
            service,
            grace,
            max_connections,
            header_read_timeout,
        } = self;
        let starting = {
            let modules = service.modules.clone();
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
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        let accept = |listener, kind| Accept {
            listener,
            kind,
            builder: builder.clone(),
            graceful: &graceful,
            service: service.clone(),
            connections: Arc::new(Semaphore::new(max_connections)),
        };
        let mut public = Box::pin(accept(public, Listener::Public).run());
        let mut admin = Box::pin({
            let admin = admin.map(|listener| accept(listener, Listener::Admin));
            async move {
                match admin {
                    Some(admin) => admin.run().await,
                    None => std::future::pending().await,
                }
            }
        });
        tokio::pin!(shutdown, failed_start);
        let outcome = tokio::select! {
            () = &mut shutdown => Ok(()),
            error = &mut failed_start => Err(ServeError::Module(error)),
            never = &mut public => match never {},
            never = &mut admin => match never {},
        };
        // Dropping the accept loops closes the listeners.
        drop(public);
        drop(admin);
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

async fn bind(key: &'static str, address: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Bind {
            key,
            address: address.to_string(),
            source,
        })
}

/// One listener's accept loop.
struct Accept<'a> {
    listener: TcpListener,
    kind: Listener,
    builder: http1::Builder,
    graceful: &'a GracefulShutdown,
    service: Arc<Service>,
    /// One permit per open connection, held for the connection's life.
    connections: Arc<Semaphore>,
}

impl Accept<'_> {
    /// Accepts connections until dropped: at most `connections` at once (at the cap, the next
    /// waits in the kernel's backlog until one closes); a failed `accept` is logged and retried
    /// after [`ACCEPT_BACKOFF`] instead of spinning.
    async fn run(self) -> Infallible {
        let listener = self.kind.name();
        let mut warned: Option<Instant> = None;
        loop {
            let permit = match self.connections.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    if warned.is_none_or(|at| at.elapsed() > CAP_WARNING_INTERVAL) {
                        warned = Some(Instant::now());
                        tracing::warn!(
                            listener,
                            "connection cap (serve.max_connections) reached; new connections wait"
                        );
                    }
                    self.connections
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed")
                }
            };
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(listener, %error, "cannot accept a connection; retrying shortly");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let (service, kind) = (self.service.clone(), self.kind);
            let connection = self.builder.serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(move |request| {
                    let service = service.clone();
                    async move { Ok::<_, Infallible>(service.handle(request, kind).await) }
                }),
            );
            let connection = self.graceful.watch(connection);
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(error) = connection.await {
                    tracing::debug!(listener, %error, "connection ended with an error");
                }
            });
        }
    }
}

/// Answers requests: on the public listener `/healthz`, `/readyz` and the module routes; on the
/// admin listener the admin API.
struct Service {
    modules: Arc<Modules>,
    runtime: Arc<Runtime>,
    request_timeout: Option<Duration>,
    admin_token: Option<String>,
}

impl Service {
    async fn handle(&self, request: hyper::Request<Incoming>, listener: Listener) -> HttpResponse {
        let path = request.uri().path().to_string();
        if listener == Listener::Admin {
            if let Some(token) = &self.admin_token
                && !admin::authorized(&request, token)
            {
                return admin::unauthorized();
            }
            return admin::answer(&path, &self.modules, self.runtime.manager())
                .unwrap_or_else(|| admin::not_found(&path));
        }
        if let Some(response) = admin::health(&path, &self.modules) {
            return response;
        }
        let Some(route) = self.modules.route(&path) else {
            return admin::not_found(&path);
        };
        let started = Instant::now();
        let response = match route.target {
            Err(reason) => admin::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                &format!("{}: {reason}", route.id),
            ),
            Ok((image, in_flight)) => {
                let request = with_path(request, &route.path);
                let options = HttpRequestOptions {
                    timeout: self.request_timeout,
                    // The slot is freed when the request's instance ends, not with the head.
                    guard: Some(Box::new(in_flight)),
                };
                match self
                    .runtime
                    .handle_http(&image, &route.id, request, options)
                    .await
                {
                    Ok(response) => response,
                    Err(error) => {
                        tracing::warn!(module = %route.id, ?error, "request failed");
                        failure(&route.id, &error)
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

/// What the client learns of a failed request: the module and the kind of failure, never the
/// trap's backtrace or a host path (the log has the whole error).
fn failure(module: &ModuleId, error: &RuntimeError) -> HttpResponse {
    let (status, kind, message) = match error {
        RuntimeError::Deadline {
            seconds, setting, ..
        } => (
            StatusCode::GATEWAY_TIMEOUT,
            "deadline",
            format!(
                "module {module} did not answer within {seconds} s ({setting}); the request was \
                 stopped"
            ),
        ),
        RuntimeError::Trap { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "trap",
            format!("module {module} trapped while handling the request"),
        ),
        RuntimeError::HttpHandler { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "no_response",
            format!("module {module} did not answer the request"),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "module_error",
            format!("module {module} failed to handle the request"),
        ),
    };
    admin::error(status, kind, &message)
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
