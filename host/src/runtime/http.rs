//! Serving one HTTP request with a module's `wasi:http/incoming-handler`: a fresh instance per
//! request (instantiation from the pre-linked image takes tens of microseconds), in a store that
//! carries the module's identity, so the handler uses the model ids the module registered at
//! `initialize` and requests run concurrently.
//!
//! The instance runs in a task of its own until the handler returns, the request's deadline
//! passes, or the response is dropped before its body ended (the client went away): the
//! response body owns the task. Whatever the caller passes as [`HttpRequestOptions::guard`]
//! (a slot among the module's requests in flight) lives exactly as long as the instance.

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::error::RuntimeError;
use super::state::sandboxed_store;
use super::{ModuleImage, Runtime};
use crate::types::ModuleId;

/// A response a module produced; its body streams from the module's instance.
pub type HttpResponse = hyper::Response<HyperOutgoingBody>;

const HANDLER: &str = "wasi:http/incoming-handler";

/// The configuration key of the request deadline, named in its error.
const DEADLINE_SETTING: &str = "serve.request_timeout_seconds";

/// How one request's instance runs.
#[derive(Default)]
pub struct HttpRequestOptions {
    /// Wall-clock time the handler and its response body get together; past it the instance
    /// is stopped. `None` is no limit.
    pub timeout: Option<Duration>,
    /// Kept until the instance has ended, whichever way it ends.
    pub guard: Option<Box<dyn Any + Send>>,
}

/// What the request's task and its response body share.
#[derive(Default)]
struct Shared {
    /// 0 while the handler runs, then [`SUCCEEDED`] or [`FAILED`]; set before the store (and
    /// with it the body's sending side) is dropped.
    outcome: AtomicU8,
    /// Whether the response head went to the caller (later failures are logged by the task).
    head_sent: AtomicBool,
}

const SUCCEEDED: u8 = 1;
const FAILED: u8 = 2;

/// How the task ended: the handler's result, or `None` when the deadline passed.
type Outcome = Option<wasmtime::Result<()>>;

impl Runtime {
    /// Hands `request` to the `incoming-handler` of a new instance of `image` that acts as
    /// `module`. The instance ends when the handler returns, when `options.timeout` passes
    /// (before the response: [`RuntimeError::Deadline`]; during its body: the body ends with an
    /// error, so the client sees a cut response), or when the response is dropped before its
    /// body ended.
    pub async fn handle_http(
        &self,
        image: &ModuleImage,
        module: &ModuleId,
        request: hyper::Request<Incoming>,
        options: HttpRequestOptions,
    ) -> Result<HttpResponse, RuntimeError> {
        let Some(proxy) = image.proxy.clone() else {
            return Err(RuntimeError::MissingExport {
                module: module.clone(),
                export: HANDLER,
            });
        };
        let failed = |source| RuntimeError::Instantiate {
            module: module.clone(),
            source,
        };
        let wasi = WasiCtxBuilder::new()
            .arg(module.as_str())
            .inherit_stdout()
            .inherit_stderr()
            .build();
        let mut store = sandboxed_store(&self.engine, module.clone(), self.manager.clone(), wasi);
        let (sender, receiver) = oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(failed)?;
        let response_out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(failed)?;
        let deadline = options
            .timeout
            .and_then(|timeout| tokio::time::Instant::now().checked_add(timeout));
        let shared = Arc::new(Shared::default());
        let (task_shared, guard, id) = (shared.clone(), options.guard, module.clone());
        // If the client goes away before the response, the instance is stopped with it.
        let mut task = AbortOnDrop(Some(tokio::spawn(async move {
            let _guard = guard;
            let call = async {
                let instance = proxy.instantiate_async(&mut store).await?;
                instance
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, response_out)
                    .await
            };
            let outcome: Outcome = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, call).await.ok(),
                None => Some(call.await),
            };
            let ended = match outcome {
                Some(Ok(())) => SUCCEEDED,
                _ => FAILED,
            };
            task_shared.outcome.store(ended, Ordering::Release);
            // Only now does the body's sending side go: a failed instance's body reads as cut.
            drop(store);
            if task_shared.head_sent.load(Ordering::Acquire) {
                match &outcome {
                    Some(Ok(())) => {}
                    Some(Err(error)) => tracing::warn!(module = %id, ?error,
                        "module trapped after its response started; the response was cut"),
                    None => tracing::warn!(module = %id, setting = DEADLINE_SETTING,
                        "request deadline passed during the response body; instance stopped"),
                }
            }
            outcome
        })));
        match receiver.await {
            Ok(Ok(response)) => {
                shared.head_sent.store(true, Ordering::Release);
                // The instance goes on writing the body; the body owns its task from now on.
                let task = task.0.take();
                Ok(response.map(|inner| {
                    InstanceBody {
                        inner,
                        task,
                        shared,
                        ended: false,
                    }
                    .boxed_unsync()
                }))
            }
            Ok(Err(code)) => Err(RuntimeError::HttpHandler {
                module: module.clone(),
                reason: format!("the handler answered with error {code:?}"),
            }),
            Err(_) => Err(match task.0.take().expect("the task is held").await {
                Ok(Some(Ok(()))) => RuntimeError::HttpHandler {
                    module: module.clone(),
                    reason: "the handler returned without setting a response".into(),
                },
                Ok(Some(Err(source))) => RuntimeError::Trap {
                    module: module.clone(),
                    export: HANDLER,
                    source,
                },
                Ok(None) => RuntimeError::Deadline {
                    module: module.clone(),
                    export: HANDLER,
                    seconds: options.timeout.unwrap_or_default().as_secs_f64(),
                    setting: DEADLINE_SETTING,
                },
                Err(join) => RuntimeError::HttpHandler {
                    module: module.clone(),
                    reason: format!("the handler task failed: {join}"),
                },
            }),
        }
    }
}

/// A request's task, aborted if the request is dropped while it is still held.
struct AbortOnDrop(Option<JoinHandle<Outcome>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// A response body that owns its instance's task: dropped before it ended (the client went
/// away), it stops the instance; ended, it lets the handler return (within the deadline). A
/// body whose instance failed (trap, deadline) ends with an error instead of a clean end, so
/// the client can tell the response is incomplete.
struct InstanceBody {
    inner: HyperOutgoingBody,
    task: Option<JoinHandle<Outcome>>,
    shared: Arc<Shared>,
    ended: bool,
}

impl Body for InstanceBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.ended = true;
                match this.shared.outcome.load(Ordering::Acquire) {
                    FAILED => {
                        Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseIncomplete)))
                    }
                    _ => Poll::Ready(None),
                }
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for InstanceBody {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else { return };
        if !(self.ended || self.inner.is_end_stream()) {
            task.abort();
        }
        // Otherwise the detached task ends when the handler returns, or at the deadline.
    }
}
