//! document-processor: registers an embedding model at `initialize`, embeds each line of stdin
//! when run, and releases the model at `cleanup`. What it prints depends on `output`:
//!
//! - `"vectors"` (the default): one JSON array per input line, in order, on stdout.
//! - `"neighbours"`: what embeddings are for. For each non-blank line, the `neighbours` other
//!   lines closest in meaning, with their cosine similarity; with a `query`, the lines closest
//!   to the query instead.
//!
//! Settings (all optional):
//!
//! ```json
//! {"model_id": "document-embedder",
//!  "model": {"model_type": "embedding", "name": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384},
//!  "lines_per_call": 1024,
//!  "output": "vectors",
//!  "neighbours": 3,
//!  "query": "a text to rank the lines against (output neighbours only)"}
//! ```

use std::cmp::Ordering;
use std::io::{BufRead, Write};
use std::time::Instant;

use modelhost_guest::{
    Command, Error, ErrorCode, ModelRequirement, generate_embeddings, register_model,
};
use serde::Deserialize;

/// What the module prints.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Output {
    /// One JSON array per input line.
    #[default]
    Vectors,
    /// A table of nearest neighbours with cosine similarities.
    #[serde(alias = "neighbors")]
    Neighbours,
}

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
    /// What to print.
    output: Output,
    /// Neighbours listed per line (or for the query), `output: "neighbours"` only.
    #[serde(alias = "neighbors")]
    neighbours: usize,
    /// Rank the lines against this text instead of against each other; `output: "neighbours"`
    /// only.
    query: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model_id: "document-embedder".into(),
            model: ModelRequirement::embedding("sentence-transformers/all-MiniLM-L6-v2", 384),
            lines_per_call: 1024,
            output: Output::Vectors,
            neighbours: 3,
            query: None,
        }
    }
}

/// The settings and the model the host registered for them.
struct DocumentProcessor {
    settings: Settings,
    /// The Hugging Face repository id the host resolved.
    model_name: String,
}

impl Command for DocumentProcessor {
    type Settings = Settings;

    fn initialize(settings: Settings) -> Result<Self, Error> {
        let invalid = |message: &str| Err(Error::new(ErrorCode::InvalidRequirement, message));
        if settings.output == Output::Vectors && settings.query.is_some() {
            return invalid("`query` needs `\"output\": \"neighbours\"`");
        }
        if settings.output == Output::Neighbours && settings.neighbours == 0 {
            return invalid("`neighbours` must be at least 1");
        }
        let registration = register_model(&settings.model_id, &settings.model)?;
        Ok(DocumentProcessor {
            settings,
            model_name: registration.model_name,
        })
    }

    fn run(&self) -> Result<(), Box<dyn std::error::Error>> {
        match self.settings.output {
            Output::Vectors => print_vectors(&self.settings),
            Output::Neighbours => print_neighbours(self),
        }
    }
}

modelhost_guest::export_command!(DocumentProcessor);

/// Embeds stdin line by line, `lines_per_call` lines per host call, and prints one JSON array per
/// line.
fn print_vectors(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut lines = Vec::with_capacity(settings.lines_per_call);
    let mut flush = |lines: &mut Vec<String>| -> Result<(), Box<dyn std::error::Error>> {
        if lines.is_empty() {
            return Ok(());
        }
        let result = generate_embeddings(&settings.model_id, lines)?;
        for vector in &result.embeddings {
            writeln!(stdout, "{}", serde_json::to_string(vector)?)?;
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
    Ok(stdout.flush()?)
}

/// Embeds the non-blank lines of stdin (and the query), then prints the nearest neighbours of
/// each line (or of the query) by cosine similarity.
fn print_neighbours(state: &DocumentProcessor) -> Result<(), Box<dyn std::error::Error>> {
    let settings = &state.settings;
    let mut texts = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("cannot read stdin: {e}"))?;
        let text = line.trim();
        if !text.is_empty() {
            texts.push(text.to_string());
        }
    }
    if texts.is_empty() {
        return Err("no text on stdin: give one text per line".into());
    }
    let query = settings.query.as_deref().map(str::trim);
    let mut inputs = texts.clone();
    if let Some(query) = query {
        inputs.push(query.to_string());
    }

    let started = Instant::now();
    let mut vectors = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(settings.lines_per_call.max(1)) {
        let result = generate_embeddings(&settings.model_id, chunk)?;
        vectors.extend(result.embeddings);
    }
    let elapsed_ms = started.elapsed().as_millis();
    if vectors.len() != inputs.len() {
        return Err(format!(
            "the host returned {} vectors for {} texts",
            vectors.len(),
            inputs.len()
        )
        .into());
    }
    let dimension = vectors.first().map_or(0, Vec::len);
    let unit: Vec<Vec<f32>> = vectors.iter().map(|v| unit_vector(v)).collect();

    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let count = match texts.len() {
        1 => "1 text".to_string(),
        n => format!("{n} texts"),
    };
    let and_query = if query.is_some() {
        " and the query"
    } else {
        ""
    };
    // Without preloading, the host loads the weights on the first call, timed here too.
    let load = if settings.model.preload_workers == 0 {
        ", loading the model included"
    } else {
        ""
    };
    writeln!(
        out,
        "Embedded {count}{and_query} with {} ({dimension} dimensions) in {elapsed_ms} ms{load}.\n",
        state.model_name
    )?;

    let k = settings.neighbours;
    if let Some(query) = query {
        let query_vector = &unit[texts.len()];
        writeln!(out, "Texts nearest to the query (cosine similarity):")?;
        writeln!(out, "  {}", quoted(query))?;
        for (score, j) in nearest(query_vector, &unit[..texts.len()], None, k) {
            writeln!(out, "    {score:5.2}  {}", shorten(&texts[j]))?;
        }
    } else if texts.len() == 1 {
        writeln!(
            out,
            "One text: nothing to compare it with. Give two lines or more."
        )?;
    } else {
        writeln!(out, "Nearest neighbours (cosine similarity):")?;
        for (i, text) in texts.iter().enumerate() {
            writeln!(out, "  {}", quoted(text))?;
            for (score, j) in nearest(&unit[i], &unit, Some(i), k) {
                writeln!(out, "    {score:5.2}  {}", shorten(&texts[j]))?;
            }
        }
    }
    Ok(out.flush()?)
}

/// `v` scaled to length 1 (all zeros stays all zeros), so that a dot product of two such vectors
/// is their cosine similarity whether or not the host normalized them.
fn unit_vector(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// The `k` vectors of `candidates` (other than index `skip`) with the highest cosine similarity
/// to `target`, best first, as (similarity, index). All vectors are unit vectors.
fn nearest(
    target: &[f32],
    candidates: &[Vec<f32>],
    skip: Option<usize>,
    k: usize,
) -> Vec<(f32, usize)> {
    let mut scored: Vec<(f32, usize)> = candidates
        .iter()
        .enumerate()
        .filter(|&(j, _)| Some(j) != skip)
        .map(|(j, c)| (target.iter().zip(c).map(|(a, b)| a * b).sum(), j))
        .collect();
    let best_first = |a: &(f32, usize), b: &(f32, usize)| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(Ordering::Equal)
            .then(a.1.cmp(&b.1))
    };
    if scored.len() > k {
        scored.select_nth_unstable_by(k, best_first);
        scored.truncate(k);
    }
    scored.sort_by(best_first);
    scored
}

/// Longest text shown in the table, in characters.
const SHOWN_CHARS: usize = 72;

/// `text`, cut to [`SHOWN_CHARS`] characters with an ellipsis.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", text[..end].trim_end()),
        None => text.to_string(),
    }
}

/// [`shorten`]ed `text` in double quotes.
fn quoted(text: &str) -> String {
    format!("\"{}\"", shorten(text))
}
