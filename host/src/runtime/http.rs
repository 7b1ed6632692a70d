//! Serving one HTTP request with a module's `wasi:http/incoming-handler`: a fresh instance per
//! request (instantiation from the pre-linked image takes tens of microseconds), in a store that
//! carries the module's identity, so the handler uses the model ids the module registered at
//! `initialize` and requests run concurrently.

use hyper::body::Incoming;
use tokio::sync::oneshot;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::error::RuntimeError;
use super::state::sandboxed_store;
use super::{ModuleImage, Runtime};
use crate::registry::ModuleId;

/// A response a module produced; its body streams from the module's instance.
pub type HttpResponse = hyper::Response<HyperOutgoingBody>;

const HANDLER: &str = "wasi:http/incoming-handler";

impl Runtime {
    /// Hands `request` to the `incoming-handler` of a new instance of `image` that acts as
    /// `module`. The instance ends when the handler returns and the response body is written.
    pub async fn handle_http(
        &self,
        image: &ModuleImage,
        module: &ModuleId,
        request: hyper::Request<Incoming>,
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
        // If the client goes away before the response, the instance is stopped with it.
        let mut task = AbortOnDrop(Some(tokio::spawn(async move {
            let instance = proxy.instantiate_async(&mut store).await?;
            instance
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, response_out)
                .await
        })));
        match receiver.await {
            Ok(Ok(response)) => {
                // The instance goes on writing the body.
                task.0 = None;
                Ok(response)
            }
            Ok(Err(code)) => Err(RuntimeError::HttpHandler {
                module: module.clone(),
                reason: format!("the handler answered with error {code:?}"),
            }),
            Err(_) => Err(match task.0.take().expect("the task is held").await {
                Ok(Ok(())) => RuntimeError::HttpHandler {
                    module: module.clone(),
                    reason: "the handler returned without setting a response".into(),
                },
                Ok(Err(source)) => {
                    tracing::warn!(module = %module, error = ?source, "module trapped");
                    RuntimeError::Trap {
                        module: module.clone(),
                        export: HANDLER,
                        source,
                    }
                }
                Err(join) => RuntimeError::HttpHandler {
                    module: module.clone(),
                    reason: format!("the handler task failed: {join}"),
                },
            }),
        }
    }
}

/// A request's task, aborted if the request is dropped while it is still held.
struct AbortOnDrop(Option<tokio::task::JoinHandle<wasmtime::Result<()>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}
