//! The `model-manager` imports, served for one module: convert the arguments, call the
//! [`ModelManager`](crate::manager::ModelManager) with the caller's identity, record the call in
//! the metrics, convert the result.

use std::time::Instant;

use wasmtime::component::Resource;

use super::ModelManagerView;
use super::convert::{error_code_name, wit_error, wit_error_code};
use crate::backends::Prompt;
use crate::engine::workers::GenerationStream;
use crate::types::error::HostError;
use crate::wit_host::bindings::modelhost::models::{model_manager, types as wit};

impl wit::Host for ModelManagerView<'_> {
    fn convert_error(&mut self, error: HostError) -> wasmtime::Result<wit::Error> {
        Ok(wit_error(error, self.ctx.manager.store_root()))
    }
}

impl wit::HostTextStream for ModelManagerView<'_> {
    async fn next(
        &mut self,
        stream: Resource<GenerationStream>,
    ) -> Result<wit::StreamEvent, HostError> {
        let stream = self
            .table
            .get_mut(&stream)
            .map_err(|e| HostError::InvalidInput(format!("unknown text stream: {e}")))?;
        Ok(stream.next().await?.into())
    }

    async fn usage(
        &mut self,
        stream: Resource<GenerationStream>,
    ) -> wasmtime::Result<Option<wit::StreamUsage>> {
        let stream = self.table.get(&stream)?;
        Ok(stream.finished().map(|summary| wit::StreamUsage {
            prompt_tokens: summary.prompt_tokens,
            tokens_generated: summary.generated_tokens,
        }))
    }

    async fn drop(&mut self, stream: Resource<GenerationStream>) -> wasmtime::Result<()> {
        // Dropping the stream's receiver stops the generation at its next token.
        self.table.delete(stream)?;
        Ok(())
    }
}

impl ModelManagerView<'_> {
    /// Whether this module holds `model_id` now.
    fn holds(&self, model_id: &str) -> bool {
        self.ctx.manager.holds(&self.ctx.module, model_id)
    }

    /// Records a finished call (its latency, and its error code if it failed) in the metrics,
    /// labelled with the model id only when the module held it before or after the call.
    fn observe<T>(
        &self,
        operation: &'static str,
        model_id: &str,
        held_before: bool,
        started: Instant,
        result: Result<T, HostError>,
    ) -> Result<T, HostError> {
        let error = result
            .as_ref()
            .err()
            .map(|e| error_code_name(wit_error_code(e)));
        let label = (held_before || self.holds(model_id)).then_some(model_id);
        self.ctx.manager.metrics().record_call(
            self.ctx.module.as_str(),
            label,
            operation,
            started.elapsed(),
            error,
        );
        result
    }

    /// Starts a generation and hands the guest a stream resource for it.
    async fn open_stream(
        &mut self,
        model_id: String,
        prompt: Prompt,
        options: Option<wit::GenerationOptions>,
    ) -> Result<Resource<GenerationStream>, HostError> {
        let options = options.map(Into::into).unwrap_or_default();
        let started = Instant::now();
        let stream = self
            .ctx
            .manager
            .generate_stream(&self.ctx.module, &model_id, prompt, options)
            .await;
        let stream = self.observe("stream", &model_id, false, started, stream)?;
        self.table
            .push(stream)
            .map_err(|e| HostError::Internal(format!("cannot hand out the text stream: {e}")))
    }

    async fn generate(
        &mut self,
        model_id: String,
        prompt: Prompt,
        options: Option<wit::GenerationOptions>,
    ) -> Result<wit::Generation, HostError> {
        let options = options.map(Into::into).unwrap_or_default();
        let started = Instant::now();
        let generation = self
            .ctx
            .manager
            .generate(&self.ctx.module, &model_id, prompt, options)
            .await;
        Ok(self
            .observe("generate", &model_id, false, started, generation)?
            .into())
    }
}

impl model_manager::Host for ModelManagerView<'_> {
    async fn register_model(
        &mut self,
        model_id: String,
        requirement: wit::ModelRequirement,
    ) -> Result<wit::Registration, HostError> {
        let started = Instant::now();
        let registration = self
            .ctx
            .manager
            .register(&self.ctx.module, &model_id, requirement.into())
            .await;
        Ok(self
            .observe("register", &model_id, false, started, registration)?
            .into())
    }

    async fn release_model(&mut self, model_id: String) -> Result<wit::Release, HostError> {
        let started = Instant::now();
        let held = self.holds(&model_id);
        let release = self.ctx.manager.release(&self.ctx.module, &model_id);
        Ok(self
            .observe("release", &model_id, held, started, release)?
            .into())
    }

    async fn generate_embeddings(
        &mut self,
        model_id: String,
        texts: Vec<String>,
    ) -> Result<wit::Embeddings, HostError> {
        let started = Instant::now();
        let result = self
            .ctx
            .manager
            .embed(&self.ctx.module, &model_id, texts)
            .await;
        Ok(self
            .observe("embed", &model_id, false, started, result)?
            .into())
    }

    async fn classify(
        &mut self,
        model_id: String,
        texts: Vec<String>,
    ) -> Result<wit::Classifications, HostError> {
        let started = Instant::now();
        let result = self
            .ctx
            .manager
            .classify(&self.ctx.module, &model_id, texts)
            .await;
        Ok(self
            .observe("classify", &model_id, false, started, result)?
            .into())
    }

    async fn generate_text(
        &mut self,
        model_id: String,
        prompt: String,
        options: Option<wit::GenerationOptions>,
    ) -> Result<wit::Generation, HostError> {
        self.generate(model_id, Prompt::Text(prompt), options).await
    }

    async fn stream_text(
        &mut self,
        model_id: String,
        prompt: String,
        options: Option<wit::GenerationOptions>,
    ) -> Result<Resource<GenerationStream>, HostError> {
        self.open_stream(model_id, Prompt::Text(prompt), options)
            .await
    }

    async fn chat(
        &mut self,
        model_id: String,
        messages: Vec<wit::ChatMessage>,
        options: Option<wit::GenerationOptions>,
    ) -> Result<wit::Generation, HostError> {
        let messages = messages.into_iter().map(Into::into).collect();
        self.generate(model_id, Prompt::Chat(messages), options)
            .await
    }

    async fn stream_chat(
        &mut self,
        model_id: String,
        messages: Vec<wit::ChatMessage>,
        options: Option<wit::GenerationOptions>,
    ) -> Result<Resource<GenerationStream>, HostError> {
        let messages = messages.into_iter().map(Into::into).collect();
        self.open_stream(model_id, Prompt::Chat(messages), options)
            .await
    }

    async fn get_service_status(&mut self) -> Result<wit::ServiceStatus, HostError> {
        Ok(self.ctx.manager.status().into())
    }

    async fn list_models(&mut self) -> Result<Vec<wit::ModelStatus>, HostError> {
        let models = self.ctx.manager.module_models(&self.ctx.module);
        Ok(models.into_iter().map(Into::into).collect())
    }
}
