//! Text generation on a served model: a generation holds one worker for its whole length (it is
//! not batched), and its text flows back through a [`GenerationStream`] as it is decoded.

use tokio::sync::{mpsc, oneshot};

use super::ServedModel;
use crate::backends::{GenerationRequest, GenerationSummary};
use crate::types::FinishReason;
use crate::types::error::{FreeMemory, HostError};

/// What a stream hands out next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A piece of generated text (whole characters).
    Text(String),
    /// Generation has ended.
    Finished(FinishReason),
}

/// A running generation. Dropping it stops the generation at the next token.
pub struct GenerationStream {
    chunks: mpsc::UnboundedReceiver<String>,
    done: Option<oneshot::Receiver<Result<GenerationSummary, HostError>>>,
    summary: Option<GenerationSummary>,
}

impl GenerationStream {
    /// The next piece of text, waiting for it, or the end of generation (again on every later
    /// call). A generation that failed reports its error once it has no more text.
    pub async fn next(&mut self) -> Result<StreamEvent, HostError> {
        if let Some(piece) = self.chunks.recv().await {
            return Ok(StreamEvent::Text(piece));
        }
        Ok(StreamEvent::Finished(self.summary().await?.finish))
    }

    /// What generation reported, once [`next`](Self::next) has returned the end; `None` before.
    pub fn finished(&self) -> Option<&GenerationSummary> {
        self.summary.as_ref()
    }

    /// Waits for the end and returns what generation reports (after all text was read).
    pub async fn summary(&mut self) -> Result<GenerationSummary, HostError> {
        if let Some(done) = self.done.take() {
            let outcome = done.await.unwrap_or_else(|_| {
                Err(HostError::Internal(
                    "the generation stopped without an answer".into(),
                ))
            });
            self.summary = Some(outcome?);
        }
        self.summary
            .clone()
            .ok_or_else(|| HostError::Internal("the generation failed earlier".into()))
    }
}

impl ServedModel {
    /// Starts generating on one of the model's workers, once one is free (waiting at most
    /// `timeout`).
    pub async fn generate(
        &self,
        request: GenerationRequest,
        timeout: std::time::Duration,
    ) -> Result<GenerationStream, HostError> {
        let permit = loop {
            let permit = match tokio::time::timeout(timeout, self.pool.acquire(self)).await {
                Ok(Some(permit)) => permit,
                Ok(None) => return Err(self.dropped()),
                Err(_) => {
                    return Err(HostError::Timeout(format!(
                        "no worker was free for model '{}' within {timeout:?}",
                        self.key.name
                    )));
                }
            };
            // A worker that cannot load the model leaves it to the next matching worker.
            match self.load_on(&permit).await {
                Ok(()) => break permit,
                Err(error) => {
                    tracing::warn!(worker = %permit.worker().id, model = %self.key.name, %error,
                        "cannot load the model on this worker");
                    if !self.load_failed(permit.index) {
                        return Err(error);
                    }
                }
            }
        };
        let (chunk_sender, chunks) = mpsc::unbounded_channel();
        let (reply, done) = oneshot::channel();
        let (key, files) = (self.key.clone(), self.files.clone());
        // The KV cache grows to the context: refuse now what the budget can never hold.
        let context = request.max_input_tokens;
        let device = permit.worker().device;
        let working = self
            .pool
            .try_hold_working(device, context, self.working_per_token)
            .map_err(|budget| HostError::OutOfMemory {
                name: self.key.name.clone(),
                needed: Some((context as u64).saturating_mul(self.working_per_token)),
                free: FreeMemory::Budget {
                    device: device.to_string(),
                    budget,
                    work: "a generation's KV cache",
                },
            })?;
        tokio::spawn(async move {
            let _working = working;
            // The permit keeps the worker reserved until the generation ends.
            let outcome = permit
                .worker()
                .generate(&key, &files, request, chunk_sender)
                .await;
            let _ = reply.send(outcome);
        });
        Ok(GenerationStream {
            chunks,
            done: Some(done),
            summary: None,
        })
    }
}
