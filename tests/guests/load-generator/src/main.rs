//! load-generator: a benchmark module. `initialize` registers the embedding model given as
//! settings (a model requirement) under the id `bench`; `run` reads texts from stdin (one per
//! line) and sends them `TEXTS_PER_CALL` at a time, `ROUNDS` times over
//! (arguments: `TEXTS_PER_CALL ROUNDS`), then prints `{"calls", "texts", "elapsed_ms"}` measured
//! inside the module.

use std::io::BufRead;
use std::time::Instant;

use modelhost_guest::{Error, ModelRequirement, Module, generate_embeddings, parse_settings};

struct LoadGenerator;

impl Module for LoadGenerator {
    fn initialize(settings: &str) -> Result<(), Error> {
        let requirement: ModelRequirement = parse_settings(settings)?;
        modelhost_guest::register_model("bench", &requirement)?;
        Ok(())
    }
}

modelhost_guest::export_module!(LoadGenerator);

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let (per_call, rounds) = (args[0].max(1), args[1]);
    let texts: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map(Result::unwrap)
        .collect();
    let started = Instant::now();
    let mut calls = 0;
    for _ in 0..rounds {
        for chunk in texts.chunks(per_call) {
            let result = generate_embeddings("bench", chunk).expect("embedding call");
            assert_eq!(result.embeddings.len(), chunk.len());
            calls += 1;
        }
    }
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let summary = serde_json::json!({"calls": calls, "texts": texts.len() * rounds, "elapsed_ms": elapsed_ms});
    println!("{summary}");
}
