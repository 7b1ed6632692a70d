//! `POST /v1/completions`: a prompt in, its continuation out (whole or streamed), with a
//! text-generation or a text-to-text model.

use modelhost_guest::{generate_text, stream_text};
use serde::Deserialize;

use crate::completion::{Completion, Kind};
use crate::reply::{Reply, invalid};
use crate::sampling::Sampling;

/// What the request body must look like, for error messages.
pub const SHAPE: &str = r#"{"model": ID, "prompt": TEXT}"#;

/// The fields a request may have besides the sampling ones: those honoured, and those checked
/// and refused when they ask for something this module cannot do (`echo`, ...).
pub const FIELDS: &[&str] = &["model", "prompt", "echo", "suffix", "best_of", "user"];

/// `prompt`: one text, or a list holding one text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
}

/// The request body.
#[derive(Deserialize)]
pub struct CompletionRequest {
    model: String,
    prompt: Prompt,
    #[serde(flatten)]
    sampling: Sampling,
    #[serde(default)]
    echo: Option<bool>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    best_of: Option<u32>,
}

/// Answers one request.
pub fn answer(request: CompletionRequest) -> Reply {
    let prompt = match request.prompt {
        Prompt::One(prompt) => prompt,
        Prompt::Many(mut prompts) if prompts.len() == 1 => prompts.remove(0),
        Prompt::Many(_) => {
            return invalid(Some("prompt"), "give one prompt per request");
        }
    };
    if request.echo == Some(true) {
        return invalid(Some("echo"), "echo is not supported");
    }
    if request.suffix.is_some_and(|s| !s.is_empty()) {
        return invalid(Some("suffix"), "suffix is not supported");
    }
    if request.best_of.is_some_and(|n| n != 1) {
        return invalid(Some("best_of"), "only best_of = 1 is supported");
    }
    Completion::new(Kind::Text, request.model).answer(
        &request.sampling,
        |model, options| stream_text(model, &prompt, options),
        |model, options| generate_text(model, &prompt, options),
    )
}
