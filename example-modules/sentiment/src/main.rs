//! sentiment: registers a text classification model at `initialize`, classifies each line of
//! stdin when run and prints `LABEL<TAB>SCORE<TAB>TEXT` per line (`-` when no label reaches the
//! threshold), and releases the model at `cleanup`.
//!
//! Settings (all optional; the default model is the usual SST-2 sentiment classifier):
//!
//! ```json
//! {"model": {"model_type": "classification",
//!            "name": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
//!            "threshold": 0.6},
//!  "lines_per_call": 64}
//! ```

use std::io::{BufRead, Write};
use std::sync::OnceLock;

use modelhost_guest::{
    Error, ModelRequirement, ModelType, Module, classify, parse_settings, register_model,
};
use serde::Deserialize;

/// The id the model is registered under.
const MODEL_ID: &str = "sentiment";

/// The module's settings.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// The classification model.
    model: ModelRequirement,
    /// Lines sent to the host per call.
    lines_per_call: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: ModelRequirement::new(
                ModelType::Classification,
                "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
            ),
            lines_per_call: 64,
        }
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

struct Sentiment;

impl Module for Sentiment {
    fn initialize(settings: &str) -> Result<(), Error> {
        let settings: Settings = parse_settings(settings)?;
        register_model(MODEL_ID, &settings.model)?;
        let _ = SETTINGS.set(settings);
        Ok(())
    }
}

modelhost_guest::export_module!(Sentiment);

fn main() {
    let Some(settings) = SETTINGS.get() else {
        eprintln!("sentiment: not initialized; start it with `modelhost run`");
        std::process::exit(2);
    };
    if let Err(message) = classify_stdin(settings.lines_per_call.max(1)) {
        eprintln!("sentiment: {message}");
        std::process::exit(1);
    }
}

/// Classifies stdin line by line, `per_call` lines per host call.
fn classify_stdin(per_call: usize) -> Result<(), String> {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let lines: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    for chunk in lines.chunks(per_call) {
        let result = classify(MODEL_ID, chunk).map_err(|e| e.to_string())?;
        for (text, labels) in chunk.iter().zip(&result.results) {
            let label = labels.label.as_deref().unwrap_or("-");
            writeln!(stdout, "{label}\t{:.4}\t{text}", labels.score).map_err(|e| e.to_string())?;
        }
    }
    stdout.flush().map_err(|e| e.to_string())
}
