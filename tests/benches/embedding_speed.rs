//! Embedding throughput on the real all-MiniLM-L6-v2, driven by `scripts/bench-embeddings`.
//!
//! Reads one JSON command per stdin line, `{"texts": FILE, "precision": "exact"|"fast"}`, embeds
//! the file's lines (one text per line) and answers one JSON line:
//!
//! - `module_s`: the load-generator guest sending every text in one `generate-embeddings` call,
//!   timed inside the guest (the host tokenizes, cuts batches of 32 by length, runs them on the
//!   cpu worker; the embedding cache is off);
//! - `direct_s`: the same work with the backend called directly on one thread (tokenize, sort by
//!   length, batches of 32, embed), so `module_s / direct_s - 1` is what the guest boundary and
//!   the host's queueing add;
//! - `first`: the first text's vector, to check both paths compute the same thing;
//! - `tokens_per_text`: the mean sequence length, `[CLS]` and `[SEP]` included.
//!
//! The model is loaded before the first answer, so no figure includes loading.

/// The allocator the `modelhost` binary uses, so these figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelhost::backends::{CandleBackend, LoadedModel, ModelBackend, SequenceModel, TextEncoder};
use modelhost::runtime::{ModuleImage, ModuleOptions, Runtime, Stdio};
use modelhost::types::ComputeDevice;
use modelhost::types::requirement::{ModelType, Precision};
use modelhost_tests::{MINILM, guests, model_store, runtime_with, test_settings};
use serde_json::{Value, json};

/// Texts per forward pass, on both paths.
const BATCH: usize = 32;

#[derive(serde::Deserialize)]
struct Command {
    texts: String,
    precision: String,
}

/// The backend called directly, as a worker would.
struct Direct {
    encoder: Arc<dyn TextEncoder>,
    model: Box<dyn SequenceModel>,
    max_tokens: usize,
}

impl Direct {
    fn load(precision: Precision) -> Self {
        let files = model_store().resolve(MINILM, "main").unwrap();
        let inspection = CandleBackend.inspect(ModelType::Embedding, &files).unwrap();
        let LoadedModel::Sequence(model) = CandleBackend
            .load(ModelType::Embedding, &files, ComputeDevice::Cpu, precision)
            .unwrap()
        else {
            panic!("an embedding model loads as a sequence model");
        };
        Self {
            encoder: inspection.encoder,
            model,
            max_tokens: inspection.info.max_input_length as usize,
        }
    }

    /// Tokenizes, sorts by length, embeds in batches; returns the vectors in input order and
    /// the mean tokens per text.
    fn embed(&self, texts: &[String]) -> (Vec<Vec<f32>>, f64) {
        let tokens = self.encoder.encode(texts, self.max_tokens).unwrap();
        let mean_tokens = tokens.iter().map(Vec::len).sum::<usize>() as f64 / texts.len() as f64;
        let mut order: Vec<usize> = (0..tokens.len()).collect();
        order.sort_by_key(|&i| tokens[i].len());
        let mut vectors = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let rows: Vec<&[u32]> = chunk.iter().map(|&i| tokens[i].as_slice()).collect();
            for (&i, v) in chunk.iter().zip(self.model.run(&rows).unwrap()) {
                vectors[i] = v;
            }
        }
        (vectors, mean_tokens)
    }
}

/// Runs the load-generator guest over `texts` in one call; returns its own timing in seconds.
async fn through_module(
    runtime: &Runtime,
    image: &ModuleImage,
    precision: &str,
    texts: &[String],
) -> f64 {
    let options = ModuleOptions {
        args: vec![texts.len().to_string(), "1".into()],
        stdio: Stdio::Capture {
            stdin: texts.join("\n").into_bytes(),
        },
        ..ModuleOptions::default()
    };
    let requirement = json!({"model_type": "embedding", "name": MINILM, "batch_size": BATCH,
        "cache_embeddings": false, "precision": precision});
    let mut module = runtime.instantiate(image, options).await.unwrap();
    module.initialize(&requirement.to_string()).await.unwrap();
    assert_eq!(module.run().await.unwrap(), 0, "load-generator failed");
    let summary: Value = serde_json::from_slice(&module.stdout().unwrap()).unwrap();
    module.cleanup().await.unwrap();
    summary["elapsed_ms"].as_f64().unwrap() / 1000.0
}

fn precision(name: &str) -> Precision {
    match name {
        "exact" => Precision::Exact,
        "fast" => Precision::Fast,
        other => panic!("unknown precision {other:?}"),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut settings = test_settings(Duration::from_secs(3600));
    settings.cache.enabled = false;
    settings.pool.devices = vec!["cpu".parse().unwrap()];
    settings.pool.num_workers = 1;
    let runtime = runtime_with(Arc::new(CandleBackend), settings);
    let image = runtime.load(Path::new(guests::LOAD_GENERATOR)).unwrap();
    let mut direct: HashMap<String, Direct> = HashMap::new();
    for line in std::io::stdin().lock().lines() {
        let command: Command = serde_json::from_str(&line.unwrap()).expect("a command");
        let texts: Vec<String> = std::fs::read_to_string(&command.texts)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let backend = direct
            .entry(command.precision.clone())
            .or_insert_with(|| Direct::load(precision(&command.precision)));
        let module_s = through_module(&runtime, &image, &command.precision, &texts).await;
        let started = Instant::now();
        let (vectors, tokens_per_text) =
            std::thread::scope(|s| s.spawn(|| backend.embed(&texts)).join().unwrap());
        let direct_s = started.elapsed().as_secs_f64();
        let answer = json!({"module_s": module_s, "direct_s": direct_s, "first": vectors[0],
            "tokens_per_text": tokens_per_text});
        println!("{answer}");
    }
}
