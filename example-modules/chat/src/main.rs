//! chat: registers a text generation model at `initialize`; when run, reads one user message per
//! stdin line and streams the assistant's reply to stdout as it is generated (the conversation
//! is kept, so later lines can refer to earlier ones); releases the model at `cleanup`.
//!
//! Settings (all optional):
//!
//! ```json
//! {"model": {"model_type": "text-generation", "name": "HuggingFaceTB/SmolLM2-135M-Instruct",
//!            "max_output_length": 128},
//!  "system": "You are a concise assistant.",
//!  "options": {"temperature": 0.7, "top_p": 0.9, "seed": 42}}
//! ```

use std::io::{BufRead, Write};
use std::sync::OnceLock;

use modelhost_guest::{
    ChatMessage, Error, GenerationOptions, ModelRequirement, ModelType, Module, parse_settings,
    register_model, stream_chat,
};
use serde::Deserialize;

/// The id the model is registered under.
const MODEL_ID: &str = "chat";

/// The module's settings.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// The text generation model.
    model: ModelRequirement,
    /// A system message opening the conversation (the model's template may add its own).
    system: Option<String>,
    /// Sampling settings for every reply.
    options: GenerationOptions,
}

impl Default for Settings {
    fn default() -> Self {
        let mut model = ModelRequirement::new(
            ModelType::TextGeneration,
            "HuggingFaceTB/SmolLM2-135M-Instruct",
        );
        model.max_output_length = Some(128);
        Self {
            model,
            system: None,
            options: GenerationOptions::default(),
        }
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

struct Chat;

impl Module for Chat {
    fn initialize(settings: &str) -> Result<(), Error> {
        let settings: Settings = parse_settings(settings)?;
        register_model(MODEL_ID, &settings.model)?;
        let _ = SETTINGS.set(settings);
        Ok(())
    }
}

modelhost_guest::export_module!(Chat);

fn main() {
    let Some(settings) = SETTINGS.get() else {
        eprintln!("chat: not initialized; start it with `modelhost run`");
        std::process::exit(2);
    };
    if let Err(message) = converse(settings) {
        eprintln!("chat: {message}");
        std::process::exit(1);
    }
}

/// Answers stdin line by line, streaming each reply.
fn converse(settings: &Settings) -> Result<(), String> {
    let mut history: Vec<ChatMessage> = settings
        .system
        .iter()
        .map(|s| ChatMessage::new("system", s.as_str()))
        .collect();
    let mut stdout = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        history.push(ChatMessage::new("user", line));
        let mut reply = String::new();
        let stream =
            stream_chat(MODEL_ID, &history, &settings.options).map_err(|e| e.to_string())?;
        for piece in stream {
            let piece = piece.map_err(|e| e.to_string())?;
            write!(stdout, "{piece}").map_err(|e| e.to_string())?;
            stdout.flush().map_err(|e| e.to_string())?;
            reply.push_str(&piece);
        }
        writeln!(stdout).map_err(|e| e.to_string())?;
        history.push(ChatMessage::new("assistant", reply));
    }
    Ok(())
}
