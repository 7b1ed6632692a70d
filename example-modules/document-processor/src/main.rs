//! document-processor: registers an embedding model at `initialize`, embeds each line of stdin
//! when run (one JSON array per line, in order, on stdout), and releases the model at `cleanup`.
//!
//! Settings (all optional):
//!
//! ```json
//! {"model_id": "document-embedder",
//!  "model": {"model_type": "embedding", "name": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384},
//!  "lines_per_call": 1024}
//! ```

use std::io::{BufRead, Write};
use std::sync::OnceLock;

use modelhost_guest::{
    Error, ModelRequirement, Module, generate_embeddings, parse_settings, register_model,
};
use serde::Deserialize;

/// The module's settings.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// The id the model is registered under.
    model_id: String,
    /// The embedding model.
    model: ModelRequirement,
    /// Lines sent to the host per call.
    lines_per_call: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model_id: "document-embedder".into(),
            model: ModelRequirement::embedding("sentence-transformers/all-MiniLM-L6-v2", 384),
            lines_per_call: 1024,
        }
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

struct DocumentProcessor;

impl Module for DocumentProcessor {
    fn initialize(settings: &str) -> Result<(), Error> {
        let settings: Settings = parse_settings(settings)?;
        register_model(&settings.model_id, &settings.model)?;
        let _ = SETTINGS.set(settings);
        Ok(())
    }
}

modelhost_guest::export_module!(DocumentProcessor);

fn main() {
    let Some(settings) = SETTINGS.get() else {
        eprintln!("document-processor: not initialized; start it with `modelhost run`");
        std::process::exit(2);
    };
    if let Err(message) = embed_stdin(settings) {
        eprintln!("document-processor: {message}");
        std::process::exit(1);
    }
}

/// Embeds stdin line by line, `lines_per_call` lines per host call.
fn embed_stdin(settings: &Settings) -> Result<(), String> {
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut lines = Vec::with_capacity(settings.lines_per_call);
    let mut flush = |lines: &mut Vec<String>| -> Result<(), String> {
        if lines.is_empty() {
            return Ok(());
        }
        let result = generate_embeddings(&settings.model_id, lines).map_err(|e| e.to_string())?;
        for vector in &result.embeddings {
            let json = serde_json::to_string(vector).map_err(|e| e.to_string())?;
            writeln!(stdout, "{json}").map_err(|e| e.to_string())?;
        }
        lines.clear();
        Ok(())
    };
    for line in stdin.lines() {
        lines.push(line.map_err(|e| format!("cannot read stdin: {e}"))?);
        if lines.len() >= settings.lines_per_call.max(1) {
            flush(&mut lines)?;
        }
    }
    flush(&mut lines)?;
    stdout.flush().map_err(|e| e.to_string())
}
