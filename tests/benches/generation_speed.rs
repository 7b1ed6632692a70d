//! Generation speed on the real SmolLM2-135M-Instruct (GGUF Q4_1), driven by
//! `scripts/bench-generation`.
//!
//! Reads one JSON command per stdin line, `{"prompt": TEXT, "new_tokens": N, "precision":
//! "exact"|"fast"}`, and answers one JSON line: `prefill_s` (the prompt processed and one token
//! picked), `total_s` and `generated` for up to N greedy tokens, and `prompt_tokens`. The model
//! is loaded before the first answer, so no figure includes loading.

/// The allocator the `modelhost` binary uses, so these figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::io::BufRead;
use std::time::Instant;

use modelhost::backends::{GenerationRequest, LlamaGenerator, TextGenerator};
use modelhost::types::ComputeDevice;
use modelhost::types::requirement::Precision;
use modelhost_tests::{SMOLLM2, model_store};
use serde_json::json;

#[derive(serde::Deserialize)]
struct Command {
    prompt: String,
    new_tokens: usize,
    precision: String,
}

fn main() {
    let files = model_store().resolve(SMOLLM2, "main").unwrap();
    let mut models: HashMap<String, LlamaGenerator> = HashMap::new();
    for line in std::io::stdin().lock().lines() {
        let command: Command = serde_json::from_str(&line.unwrap()).expect("a command");
        let model = models.entry(command.precision.clone()).or_insert_with(|| {
            let precision = match command.precision.as_str() {
                "exact" => Precision::Exact,
                "fast" => Precision::Fast,
                other => panic!("unknown precision {other:?}"),
            };
            LlamaGenerator::load(&files, ComputeDevice::Cpu, precision).unwrap()
        });
        let started = Instant::now();
        let first = model
            .generate(&GenerationRequest::greedy(&command.prompt, 1), &mut |_| {
                true
            })
            .unwrap();
        let prefill_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let run = model
            .generate(
                &GenerationRequest::greedy(&command.prompt, command.new_tokens),
                &mut |_| true,
            )
            .unwrap();
        let total_s = started.elapsed().as_secs_f64();
        let answer = json!({"prefill_s": prefill_s, "prompt_tokens": first.prompt_tokens,
            "total_s": total_s, "generated": run.generated_tokens});
        println!("{answer}");
    }
}
