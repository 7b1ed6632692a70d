//! openai: the OpenAI API as a modelhost HTTP module, over the models named in its settings.
//! Existing OpenAI clients work against it with the base URL `http://HOST/ROUTE/v1`:
//!
//! | endpoint                      | model types                   |
//! |-------------------------------|-------------------------------|
//! | `POST /v1/chat/completions`   | text-generation               |
//! | `POST /v1/completions`        | text-generation, text2text    |
//! | `POST /v1/embeddings`         | embedding                     |
//! | `GET /v1/models[/{id}]`       | every id of the settings      |
//!
//! Completions take `stream` (server-sent events, `stream_options.include_usage`), `max_tokens`
//! (or `max_completion_tokens`), `temperature`, `top_p`, `seed`, `stop`, and as extensions
//! `top_k` and `repetition_penalty`; an unset value falls back to the model's requirement
//! (greedy unless it sets a temperature). Fields that cannot be honoured (`n` > 1, tools,
//! logprobs, penalties other than `repetition_penalty`) are refused with a 400 in OpenAI's error
//! shape, as are host errors (`code` is the host's error code).
//!
//! `initialize` registers the models of the settings; a request's `model` is one of their ids.
//! Settings (all optional; the default serves all-MiniLM-L6-v2 and SmolLM2-135M-Instruct):
//!
//! ```json
//! {"models": {"all-MiniLM-L6-v2": {"model_type": "embedding",
//!                                  "name": "sentence-transformers/all-MiniLM-L6-v2"},
//!             "SmolLM2-135M-Instruct": {"model_type": "text-generation",
//!                                       "name": "HuggingFaceTB/SmolLM2-135M-Instruct"}}}
//! ```

mod chat;
mod completion;
mod completions;
mod embeddings;
mod http;
mod models;
mod reply;
mod sampling;

use std::collections::BTreeMap;

use modelhost_guest::{ModelRequirement, ModelType, parse_settings, register_model};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use bindings::exports::modelhost::models::lifecycle;
use bindings::wasi::http::types::{IncomingRequest, Method, ResponseOutparam};
use http::{BodyError, read_body};
use reply::{Reply, error, invalid};

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
        let smollm2 = ModelRequirement::new(
            ModelType::TextGeneration,
            "HuggingFaceTB/SmolLM2-135M-Instruct",
        );
        Self {
            models: BTreeMap::from([
                ("all-MiniLM-L6-v2".to_string(), minilm),
                ("SmolLM2-135M-Instruct".to_string(), smollm2),
            ]),
        }
    }
}

struct OpenAi;

impl lifecycle::Guest for OpenAi {
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

impl bindings::exports::wasi::http::incoming_handler::Guest for OpenAi {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        match route(&request) {
            Reply::Json { status, body } => {
                http::respond_json(response_out, status, body.to_string().as_bytes());
            }
            Reply::Events(events) => http::respond_events(response_out, events),
        }
    }
}

bindings::export!(OpenAi with_types_in bindings);

/// Largest request body of an embeddings request (many texts at once).
const MAX_EMBEDDINGS_BODY: usize = 8 << 20;

/// Largest request body of a completion request (one conversation or prompt).
const MAX_COMPLETION_BODY: usize = 1 << 20;

/// The endpoint for the request's method and path.
fn route(request: &IncomingRequest) -> Reply {
    let path = request.path_with_query().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    let method = request.method();
    let is_get = matches!(method, Method::Get);
    let is_post = matches!(method, Method::Post);
    match path {
        "/v1/models" if is_get => models::list(),
        "/v1/chat/completions" if is_post => {
            let body = Body::new(
                chat::SHAPE,
                &[chat::FIELDS, sampling::FIELDS],
                MAX_COMPLETION_BODY,
            );
            body.read(request).map_or_else(|reply| reply, chat::answer)
        }
        "/v1/completions" if is_post => {
            let fields = &[completions::FIELDS, sampling::FIELDS];
            let body = Body::new(completions::SHAPE, fields, MAX_COMPLETION_BODY);
            body.read(request)
                .map_or_else(|reply| reply, completions::answer)
        }
        "/v1/embeddings" if is_post => {
            let body = Body::new(
                embeddings::SHAPE,
                &[embeddings::FIELDS],
                MAX_EMBEDDINGS_BODY,
            );
            body.read(request)
                .map_or_else(|reply| reply, embeddings::answer)
        }
        "/v1/models" | "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings" => {
            let allowed = if path == "/v1/models" { "GET" } else { "POST" };
            error(
                405,
                "invalid_request_error",
                None,
                &format!("use {allowed} for {path}"),
            )
        }
        _ => match path.strip_prefix("/v1/models/") {
            Some(id) if is_get && !id.is_empty() => models::get(id),
            _ => error(
                404,
                "invalid_request_error",
                None,
                &format!(
                    "no endpoint {path}; this module serves POST /v1/chat/completions, \
                     /v1/completions, /v1/embeddings and GET /v1/models"
                ),
            ),
        },
    }
}

/// What an endpoint accepts as its JSON body.
struct Body {
    /// What the body must look like, for error messages.
    shape: &'static str,
    /// The top-level fields the endpoint takes, in lists; any other is refused, not ignored.
    fields: &'static [&'static [&'static str]],
    /// The most bytes.
    limit: usize,
}

impl Body {
    fn new(shape: &'static str, fields: &'static [&'static [&'static str]], limit: usize) -> Self {
        Self {
            shape,
            fields,
            limit,
        }
    }

    /// The request body read as JSON of type `T`, or the OpenAI error that says why it is not.
    fn read<T: DeserializeOwned>(&self, request: &IncomingRequest) -> Result<T, Reply> {
        let bytes = read_body(request, self.limit).map_err(|e| match e {
            BodyError::TooLarge => error(
                413,
                "invalid_request_error",
                None,
                &format!("the request body is over {} KiB", self.limit >> 10),
            ),
            BodyError::Broken => invalid(None, "cannot read the request body"),
        })?;
        let not_valid = |e: serde_json::Error| {
            invalid(
                None,
                &format!("invalid request: {e}; expected {}", self.shape),
            )
        };
        let value: Value = serde_json::from_slice(&bytes).map_err(not_valid)?;
        let takes = |key: &str| self.fields.iter().any(|list| list.contains(&key));
        if let Some(field) = value
            .as_object()
            .and_then(|fields| fields.keys().find(|key| !takes(key)))
        {
            return Err(invalid(
                Some(field),
                &format!(
                    "`{field}` is not supported here; the fields this endpoint takes are {}",
                    self.fields.concat().join(", ")
                ),
            ));
        }
        serde_json::from_value(value).map_err(not_valid)
    }
}
