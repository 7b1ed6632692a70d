//! openai-embeddings: an OpenAI-compatible `POST /v1/embeddings` endpoint as a modelhost module.
//! Existing OpenAI clients work against it with the base URL `http://HOST/ROUTE/v1`.
//!
//! `initialize` registers the embedding models named in the settings; a request's `model` is
//! one of those ids. Settings (all optional; the default serves all-MiniLM-L6-v2):
//!
//! ```json
//! {"models": {"all-MiniLM-L6-v2": {"model_type": "embedding",
//!                                  "name": "sentence-transformers/all-MiniLM-L6-v2"}}}
//! ```

mod http;
mod openai;

use std::collections::BTreeMap;

use modelhost_guest::{Error, ModelRequirement, parse_settings, register_model};
use serde::Deserialize;

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "http-module",
        with: {
            "modelhost:models/types@0.1.0": modelhost_guest::bindings::modelhost::models::types,
            "modelhost:models/model-manager@0.1.0": modelhost_guest::bindings::modelhost::models::model_manager,
        },
        generate_all,
    });
}

use bindings::exports::modelhost::models::lifecycle;
use bindings::exports::wasi::http::incoming_handler;
use bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};

/// The module's settings.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Model ids (the `model` of requests) and what each one is.
    models: BTreeMap<String, ModelRequirement>,
}

impl Default for Settings {
    fn default() -> Self {
        let minilm = ModelRequirement::embedding("sentence-transformers/all-MiniLM-L6-v2", 384);
        Self {
            models: BTreeMap::from([("all-MiniLM-L6-v2".to_string(), minilm)]),
        }
    }
}

struct OpenAiEmbeddings;

impl lifecycle::Guest for OpenAiEmbeddings {
    fn initialize(settings: String) -> Result<(), lifecycle::Error> {
        let settings: Settings = parse_settings(&settings)?;
        for (id, requirement) in &settings.models {
            register_model(id, requirement)?;
        }
        Ok(())
    }

    fn cleanup() {
        modelhost_guest::release_all();
    }
}

impl incoming_handler::Guest for OpenAiEmbeddings {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let reply = openai::answer(&request);
        http::respond(response_out, reply.status, &reply.body);
    }
}

/// Keeps `Error` in scope for the `?` conversions above.
const _: fn(Error) -> lifecycle::Error = Into::into;

bindings::export!(OpenAiEmbeddings with_types_in bindings);
