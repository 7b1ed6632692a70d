//! The `model-manager` imports, served for one module: convert the arguments, call the
//! [`ModelManager`](crate::manager::ModelManager) with the caller's identity, convert the result.

use wasmtime::component::Resource;

use super::convert::wit_error;
use super::state::ModuleState;
use crate::backends::Prompt;
use crate::bindings::modelhost::models::{model_manager, types as wit};
use crate::error::HostError;
use crate::workers::GenerationStream;

impl wit::Host for ModuleState {
    fn convert_error(&mut self, error: HostError) -> wasmtime::Result<wit::Error> {
        Ok(wit_error(error))
    }
}

impl wit::HostTextStream for ModuleState {
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

    async fn drop(&mut self, stream: Resource<GenerationStream>) -> wasmtime::Result<()> {
        // Dropping the stream's receiver stops the generation at its next token.
        self.table.delete(stream)?;
        Ok(())
    }
}

impl ModuleState {
    /// Starts a generation and hands the guest a stream resource for it.
    async fn open_stream(
        &mut self,
        model_id: String,
        prompt: Prompt,
        options: Option<wit::GenerationOptions>,
    ) -> Result<Resource<GenerationStream>, HostError> {
        let options = options.map(Into::into).unwrap_or_default();
        let stream = self
            .manager
            .generate_stream(&self.module, &model_id, prompt, options)
            .await?;
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
        Ok(self
            .manager
            .generate(&self.module, &model_id, prompt, options)
            .await?
            .into())
    }
}

impl model_manager::Host for ModuleState {
    async fn register_model(
        &mut self,
        model_id: String,
        requirement: wit::ModelRequirement,
    ) -> Result<wit::Registration, HostError> {
        let registration = self
            .manager
            .register(&self.module, &model_id, requirement.into())
            .await?;
        Ok(registration.into())
    }

    async fn release_model(&mut self, model_id: String) -> Result<wit::Release, HostError> {
        Ok(self.manager.release(&self.module, &model_id)?.into())
    }

    async fn generate_embeddings(
        &mut self,
        model_id: String,
        texts: Vec<String>,
    ) -> Result<wit::Embeddings, HostError> {
        Ok(self
            .manager
            .embed(&self.module, &model_id, texts)
            .await?
            .into())
    }

    async fn classify(
        &mut self,
        model_id: String,
        texts: Vec<String>,
    ) -> Result<wit::Classifications, HostError> {
        Ok(self
            .manager
            .classify(&self.module, &model_id, texts)
            .await?
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
        Ok(self.manager.status().into())
    }
}
