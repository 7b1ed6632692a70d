//! The `model-manager` imports, served for one module: convert the arguments, call the
//! [`ModelManager`](crate::manager::ModelManager) with the caller's identity, convert the result.

use wasmtime::component::Resource;

use super::convert::wit_error;
use super::state::ModuleState;
use crate::bindings::modelhost::models::{model_manager, types as wit};
use crate::error::HostError;

impl wit::Host for ModuleState {
    fn convert_error(&mut self, error: HostError) -> wasmtime::Result<wit::Error> {
        Ok(wit_error(error))
    }
}

impl wit::HostTextStream for ModuleState {
    async fn next(
        &mut self,
        _stream: Resource<wit::TextStream>,
    ) -> Result<Option<String>, HostError> {
        Err(HostError::Unsupported(
            "text streams are not available in this host yet".into(),
        ))
    }

    async fn drop(&mut self, stream: Resource<wit::TextStream>) -> wasmtime::Result<()> {
        Err(wasmtime::Error::msg(format!(
            "text stream {} was never handed out by this host",
            stream.rep()
        )))
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
        _prompt: String,
        _options: Option<wit::GenerationOptions>,
    ) -> Result<wit::Generation, HostError> {
        match self.manager.generate(&self.module, &model_id)? {}
    }

    async fn stream_text(
        &mut self,
        model_id: String,
        _prompt: String,
        _options: Option<wit::GenerationOptions>,
    ) -> Result<Resource<wit::TextStream>, HostError> {
        match self.manager.generate(&self.module, &model_id)? {}
    }

    async fn get_service_status(&mut self) -> Result<wit::ServiceStatus, HostError> {
        Ok(self.manager.status().into())
    }
}
