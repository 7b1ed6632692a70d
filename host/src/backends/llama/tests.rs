//! The candle engine (`device`), run on candle's CPU device, against the host's CPU kernels
//! (`cpu`) and the transformers reference (`smollm2-greedy.json`, computed on the dequantized
//! weights in f32), with the real SmolLM2-135M-Instruct GGUF from the model store. This machine
//! proves the GPU code's numerics here; CUDA runs the same ops.

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::cpu::LlamaCpu;
use super::device::LlamaDevice;
use super::{Engine, LlamaGenerator, Target};
use crate::backends::InferenceError;
use crate::backends::common::generation::{Decoder, GenerationRequest, TextGenerator};
use crate::backends::common::test_support::{max_abs_diff, model_files, reference_file};
use crate::kernels::WeightFormat;
use crate::store::local::ModelFiles;

const SMOLLM2: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";
/// The end-of-sequence token (`<|im_end|>`).
const EOS: u32 = 2;
/// Largest difference allowed between two f32 engines' logits (SmolLM2's logits reach ~30; the
/// engines sum in different orders through 30 layers).
const LOGITS_TOLERANCE: f32 = 1e-3;

fn files() -> ModelFiles {
    model_files(SMOLLM2)
}

#[derive(Deserialize)]
struct Reference {
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    greedy_text: String,
    first_step_top5_ids: Vec<u32>,
    first_step_top5_logits: Vec<f32>,
}

fn references() -> &'static [Reference] {
    static REFERENCES: OnceLock<Vec<Reference>> = OnceLock::new();
    REFERENCES.get_or_init(|| serde_json::from_str(&reference_file("smollm2-greedy.json")).unwrap())
}

/// The model loaded once per test process for each target.
fn generator(target: &'static str) -> &'static LlamaGenerator {
    static CPU: OnceLock<LlamaGenerator> = OnceLock::new();
    static CANDLE_F32: OnceLock<LlamaGenerator> = OnceLock::new();
    static CANDLE_BF16: OnceLock<LlamaGenerator> = OnceLock::new();
    let (cell, build) = match target {
        "cpu" => (&CPU, Target::Cpu(WeightFormat::F32)),
        "candle-f32" => (&CANDLE_F32, Target::Candle(Device::Cpu, DType::F32)),
        "candle-bf16" => (&CANDLE_BF16, Target::Candle(Device::Cpu, DType::BF16)),
        _ => unreachable!(),
    };
    cell.get_or_init(|| {
        let started = std::time::Instant::now();
        let model = LlamaGenerator::load_on(&files(), build, target).unwrap();
        println!("loaded {target} in {:.1?}", started.elapsed());
        model
    })
}

fn cpu() -> &'static LlamaCpu {
    match &generator("cpu").engine {
        Engine::Cpu(model) => model,
        Engine::Device(_) => unreachable!(),
    }
}

fn candle(dtype: DType) -> &'static LlamaDevice {
    let target = match dtype {
        DType::F32 => "candle-f32",
        _ => "candle-bf16",
    };
    match &generator(target).engine {
        Engine::Device(model) => model,
        Engine::Cpu(_) => unreachable!(),
    }
}

fn values(logits: &Tensor) -> Vec<f32> {
    assert_eq!(logits.dims().len(), 1, "logits are 1-D");
    assert_eq!(logits.dtype(), DType::F32);
    assert!(logits.device().is_cpu());
    logits.to_vec1().unwrap()
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// `count` greedy tokens after `prompt` (past an end-of-sequence token too).
fn greedy(decoder: &mut dyn Decoder, prompt: &[u32], count: usize) -> Vec<u32> {
    let mut logits = values(&decoder.next_logits(prompt).unwrap());
    let mut tokens = Vec::with_capacity(count);
    loop {
        let token = argmax(&logits);
        tokens.push(token);
        if tokens.len() == count {
            return tokens;
        }
        logits = values(&decoder.next_logits(&[token]).unwrap());
    }
}

/// The reference's tokens: up to and including its end-of-sequence token.
fn reference_prefix(reference: &Reference) -> &[u32] {
    let end = reference
        .greedy_ids
        .iter()
        .position(|&t| t == EOS)
        .map_or(reference.greedy_ids.len(), |i| i + 1);
    &reference.greedy_ids[..end]
}

#[test]
fn candle_f32_logits_equal_the_cpu_kernels_and_the_reference() {
    let reference = &references()[0];
    let (mut exact, mut kernels) = (candle(DType::F32).state(), cpu().state());
    let mut candle_logits = values(&exact.next_logits(&reference.prompt_ids).unwrap());
    let mut cpu_logits = values(&kernels.next_logits(&reference.prompt_ids).unwrap());
    let diff = max_abs_diff(&candle_logits, &cpu_logits);
    println!(
        "prefill of {} tokens: logits max abs diff {diff:e}",
        reference.prompt_ids.len()
    );
    assert!(diff <= LOGITS_TOLERANCE, "prefill: {diff}");
    // The first step's top 5 against transformers (rounded to 4 decimals there).
    for (&id, &expected) in reference
        .first_step_top5_ids
        .iter()
        .zip(&reference.first_step_top5_logits)
    {
        let got = candle_logits[id as usize];
        println!("token {id}: candle {got:.4}, transformers {expected:.4}");
        assert!(
            (got - expected).abs() <= 1e-2,
            "token {id}: {got} vs {expected}"
        );
    }
    assert_eq!(argmax(&candle_logits), reference.first_step_top5_ids[0]);
    for step in 1..=4 {
        let token = argmax(&cpu_logits);
        candle_logits = values(&exact.next_logits(&[token]).unwrap());
        cpu_logits = values(&kernels.next_logits(&[token]).unwrap());
        let diff = max_abs_diff(&candle_logits, &cpu_logits);
        println!("decode step {step} (token {token}): logits max abs diff {diff:e}");
        assert!(diff <= LOGITS_TOLERANCE, "decode step {step}: {diff}");
    }
}

#[test]
fn candle_f32_greedy_tokens_equal_the_reference_and_the_cpu_kernels() {
    // Every reference prompt, as many tokens as the reference has (at least 16: past the
    // end-of-sequence token, which only the reference stops at).
    for reference in references() {
        let count = reference.greedy_ids.len().max(16);
        let tokens = greedy(
            &mut candle(DType::F32).state(),
            &reference.prompt_ids,
            count,
        );
        println!("{:?}: {tokens:?}", reference.prompt);
        let expected = reference_prefix(reference);
        assert_eq!(
            tokens[..expected.len()],
            expected[..],
            "{:?}",
            reference.prompt
        );
    }
    // The CPU kernels are slow in a debug build: 16 tokens of the prompt that runs longest.
    const COUNT: usize = 16;
    let prompt = &references()[2].prompt_ids;
    let started = std::time::Instant::now();
    let candle_tokens = greedy(&mut candle(DType::F32).state(), prompt, COUNT);
    let candle_time = started.elapsed();
    let started = std::time::Instant::now();
    let cpu_tokens = greedy(&mut cpu().state(), prompt, COUNT);
    println!(
        "{COUNT} greedy tokens: candle {candle_time:.1?}, cpu kernels {:.1?}",
        started.elapsed()
    );
    assert_eq!(candle_tokens, cpu_tokens);
}

#[test]
fn a_prefill_in_two_chunks_equals_one_shot() {
    let model = candle(DType::F32);
    let prompt = &references()[1].prompt_ids;
    let mut whole = model.state();
    let one_shot = values(&whole.next_logits(prompt).unwrap());
    let mut split = model.state();
    split.next_logits(&prompt[..7]).unwrap();
    let chunked = values(&split.next_logits(&prompt[7..]).unwrap());
    let diff = max_abs_diff(&one_shot, &chunked);
    println!(
        "{} tokens as 7 + {}: logits max abs diff {diff:e}",
        prompt.len(),
        prompt.len() - 7
    );
    assert!(diff <= 1e-3, "{diff}");
    // The caches agree too: the next step sees the same keys and values.
    let token = argmax(&one_shot);
    let after_whole = values(&whole.next_logits(&[token]).unwrap());
    let after_split = values(&split.next_logits(&[token]).unwrap());
    let diff = max_abs_diff(&after_whole, &after_split);
    println!("the step after: logits max abs diff {diff:e}");
    assert!(diff <= 1e-3, "{diff}");
}

#[test]
fn candle_bf16_greedy_tokens_mostly_agree_with_exact() {
    const COUNT: usize = 16;
    let (mut agreeing, mut total) = (0, 0);
    for reference in references() {
        let fast = greedy(
            &mut candle(DType::BF16).state(),
            &reference.prompt_ids,
            COUNT,
        );
        let exact = greedy(
            &mut candle(DType::F32).state(),
            &reference.prompt_ids,
            COUNT,
        );
        let prefix = fast.iter().zip(&exact).take_while(|(a, b)| a == b).count();
        println!(
            "{:?}: bf16 agrees with f32 on the first {prefix} of {COUNT} greedy tokens",
            reference.prompt
        );
        // The first token is the clear favourite in every reference prompt.
        assert!(prefix >= 1, "bf16 {fast:?}, f32 {exact:?}");
        agreeing += prefix;
        total += COUNT;
    }
    println!("bf16: {agreeing} of {total} greedy tokens before the first difference");
}

#[test]
fn hostile_tokens_and_contexts_are_typed_errors_before_the_device() {
    let model = candle(DType::F32);
    let vocab = 49_152;
    let mut state = model.state();
    for id in [vocab as u32, u32::MAX] {
        match state.next_logits(&[1, id]) {
            Err(InferenceError::UnknownToken { id: got, vocab: v }) => {
                assert_eq!((got, v), (id as usize, vocab));
            }
            other => panic!("token {id}: {:?}", other.map(|t| t.dims().to_vec())),
        }
    }
    let context = 8192;
    match state.next_logits(&vec![1; context + 1]) {
        Err(InferenceError::ContextExceeded { context: c }) => assert_eq!(c, context),
        other => panic!("{:?}", other.map(|t| t.dims().to_vec())),
    }
    assert!(state.next_logits(&[]).is_err());
    // Nothing was run: the state still starts at position 0.
    let logits = values(&state.next_logits(&references()[0].prompt_ids).unwrap());
    let fresh = values(
        &model
            .state()
            .next_logits(&references()[0].prompt_ids)
            .unwrap(),
    );
    assert_eq!(logits, fresh);
    // A context that fills up on a later step.
    let mut state = model.state();
    state.next_logits(&[1]).unwrap();
    match state.next_logits(&vec![1; context]) {
        Err(InferenceError::ContextExceeded { context: c }) => assert_eq!(c, context),
        other => panic!("{:?}", other.map(|t| t.dims().to_vec())),
    }
    // The CPU kernels answer alike.
    let mut state = cpu().state();
    assert!(matches!(
        state.next_logits(&[vocab as u32]),
        Err(InferenceError::UnknownToken { .. })
    ));
    assert!(matches!(
        state.next_logits(&vec![1; context + 1]),
        Err(InferenceError::ContextExceeded { .. })
    ));
    assert!(state.next_logits(&[]).is_err());
}

#[test]
fn generation_on_the_candle_engine_reads_like_the_reference() {
    let model = generator("candle-f32");
    for reference in references() {
        let request = GenerationRequest::greedy(&reference.prompt, reference.greedy_ids.len());
        let mut text = String::new();
        let summary = model
            .generate(&request, &mut |piece| {
                text.push_str(piece);
                true
            })
            .unwrap();
        assert_eq!(summary.prompt_tokens as usize, reference.prompt_ids.len());
        assert_eq!(text, reference.greedy_text.trim_end_matches("<|im_end|>"));
    }
}

#[test]
#[cfg(not(feature = "cuda"))]
fn a_gpu_load_without_cuda_fails_as_a_load_error() {
    use crate::backends::BackendError;
    use crate::types::ComputeDevice;
    use crate::types::requirement::Precision;

    match LlamaGenerator::load(&files(), ComputeDevice::Cuda(0), Precision::Exact) {
        Err(BackendError::LoadFailed { reason, .. }) => {
            assert!(reason.starts_with("on cuda:0: "), "{reason}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("loaded on cuda:0 without the cuda feature"),
    }
}
