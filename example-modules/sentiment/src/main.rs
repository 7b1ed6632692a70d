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

use modelhost_guest::{Command, Error, ModelRequirement, ModelType, classify, register_model};
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

struct Sentiment(Settings);

impl Command for Sentiment {
    type Settings = Settings;

    fn initialize(settings: Settings) -> Result<Self, Error> {
        register_model(MODEL_ID, &settings.model)?;
        Ok(Sentiment(settings))
    }

    fn run(&self) -> Result<(), Box<dyn std::error::Error>> {
        classify_stdin(self.0.lines_per_call.max(1))
    }
}

modelhost_guest::export_command!(Sentiment);

/// Classifies stdin line by line, `per_call` lines per host call.
fn classify_stdin(per_call: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let lines: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    for chunk in lines.chunks(per_call) {
        let result = classify(MODEL_ID, chunk)?;
        for (text, labels) in chunk.iter().zip(&result.results) {
            let label = labels.label.as_deref().unwrap_or("-");
            writeln!(stdout, "{label}\t{:.4}\t{text}", labels.score)?;
        }
    }
    Ok(stdout.flush()?)
}
