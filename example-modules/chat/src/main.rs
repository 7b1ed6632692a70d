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

use modelhost_guest::{
    ChatMessage, Command, Error, GenerationOptions, ModelRequirement, ModelType, register_model,
    stream_chat,
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

struct Chat(Settings);

impl Command for Chat {
    type Settings = Settings;

    fn initialize(settings: Settings) -> Result<Self, Error> {
        register_model(MODEL_ID, &settings.model)?;
        Ok(Chat(settings))
    }

    fn run(&self) -> Result<(), Box<dyn std::error::Error>> {
        converse(&self.0)
    }
}

modelhost_guest::export_command!(Chat);

/// Answers stdin line by line, streaming each reply.
fn converse(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
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
        for piece in stream_chat(MODEL_ID, &history, &settings.options)? {
            let piece = piece?;
            write!(stdout, "{piece}")?;
            stdout.flush()?;
            reply.push_str(&piece);
        }
        writeln!(stdout)?;
        history.push(ChatMessage::new("assistant", reply));
    }
    Ok(())
}
