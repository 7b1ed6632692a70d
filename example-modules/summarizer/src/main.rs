//! summarizer: registers a text-to-text (T5 family) model at `initialize`; when run, sends each
//! line of stdin as `PREFIX + line` and prints one output line per input line; releases the model
//! at `cleanup`.
//!
//! Settings (all optional; the default model is flan-T5 base):
//!
//! ```json
//! {"model": {"model_type": "text2text", "name": "google/flan-t5-base", "max_output_length": 64},
//!  "prefix": "summarize: "}
//! ```

use std::io::{BufRead, Write};
use std::sync::OnceLock;

use modelhost_guest::{
    Error, GenerationOptions, ModelRequirement, ModelType, Module, generate_text, parse_settings,
    register_model,
};
use serde::Deserialize;

/// The id the model is registered under.
const MODEL_ID: &str = "summarizer";

/// The module's settings.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// The text-to-text model.
    model: ModelRequirement,
    /// Put before every line (T5 models are trained with task prefixes).
    prefix: String,
}

impl Default for Settings {
    fn default() -> Self {
        let mut model = ModelRequirement::new(ModelType::Text2Text, "google/flan-t5-base");
        model.max_output_length = Some(64);
        Self {
            model,
            prefix: "summarize: ".into(),
        }
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

struct Summarizer;

impl Module for Summarizer {
    fn initialize(settings: &str) -> Result<(), Error> {
        let settings: Settings = parse_settings(settings)?;
        register_model(MODEL_ID, &settings.model)?;
        let _ = SETTINGS.set(settings);
        Ok(())
    }
}

modelhost_guest::export_module!(Summarizer);

fn main() {
    let Some(settings) = SETTINGS.get() else {
        eprintln!("summarizer: not initialized; start it with `modelhost run`");
        std::process::exit(2);
    };
    if let Err(message) = summarize_stdin(&settings.prefix) {
        eprintln!("summarizer: {message}");
        std::process::exit(1);
    }
}

/// One output line per stdin line (line breaks in outputs become spaces).
fn summarize_stdin(prefix: &str) -> Result<(), String> {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        let prompt = format!("{prefix}{line}");
        let output = generate_text(MODEL_ID, &prompt, &GenerationOptions::default())
            .map_err(|e| e.to_string())?;
        writeln!(stdout, "{}", output.text.replace('\n', " ")).map_err(|e| e.to_string())?;
    }
    stdout.flush().map_err(|e| e.to_string())
}
