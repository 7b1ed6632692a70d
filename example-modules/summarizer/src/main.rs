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

use modelhost_guest::{
    Command, Error, GenerationOptions, ModelRequirement, ModelType, generate_text, register_model,
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

struct Summarizer(Settings);

impl Command for Summarizer {
    type Settings = Settings;

    fn initialize(settings: Settings) -> Result<Self, Error> {
        register_model(MODEL_ID, &settings.model)?;
        Ok(Summarizer(settings))
    }

    fn run(&self) -> Result<(), Box<dyn std::error::Error>> {
        summarize_stdin(&self.0.prefix)
    }
}

modelhost_guest::export_command!(Summarizer);

/// One output line per stdin line (line breaks in outputs become spaces).
fn summarize_stdin(prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        let prompt = format!("{prefix}{line}");
        let output = generate_text(MODEL_ID, &prompt, &GenerationOptions::default())?;
        writeln!(stdout, "{}", output.text.replace('\n', " "))?;
    }
    Ok(stdout.flush()?)
}
