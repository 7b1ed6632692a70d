//! The device encoder (`device.rs`, the code GPUs run) checked on real weights, on candle's CPU
//! device: against the CPU kernels, against transformers' reference outputs, in f16, and with
//! hostile input. A machine without a GPU proves the GPU path's numerics this way; on a GPU only
//! candle's kernels differ.
//!
//! The weights come from the model store `data/models` (filled by `scripts/fetch-models`), the
//! reference outputs from `tests/fixtures/reference`.

use candle_core::{DType, Device};
use serde::Deserialize;

use super::classifier::{self, SequenceClassifier};
use super::config::{EncoderConfig, Family};
use super::cpu::{CpuBertEncoder, TensorReader};
use super::device::{DeviceEncoder, Target};
use super::embedder::{self, BertEmbedder};
use crate::backends::common::test_support::{max_abs_diff, model_files, reference_file};
use crate::backends::{BackendError, InferenceError, SequenceModel};
use crate::kernels::WeightFormat;
use crate::store::local::ModelFiles;
use crate::types::ComputeDevice;
use crate::types::requirement::Precision;

const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";
const BERT_CLASSIFIER: &str = "modelhost-fixtures/categorium-bert-cls-en";
const DISTILBERT_CLASSIFIER: &str = "modelhost-fixtures/distilbert-tiny-random-cls";

/// The device engine against the kernels, and both against the reference (f32).
const EXACT_TOLERANCE: f32 = 1e-4;
/// Cosine of the f16 engine's embeddings with the f32 engine's.
const FAST_COSINE: f32 = 0.999;

fn candle_f32() -> Target {
    Target::Candle {
        device: Device::Cpu,
        dtype: DType::F32,
    }
}

fn candle_f16() -> Target {
    Target::Candle {
        device: Device::Cpu,
        dtype: DType::F16,
    }
}

fn kernels_f32() -> Target {
    Target::Kernels(WeightFormat::F32)
}

#[derive(Deserialize)]
struct EmbeddingCase {
    text: String,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct LogitCase {
    text: String,
    input_ids: Vec<u32>,
    logits: Vec<f32>,
}

/// MiniLM reference texts of many lengths: STS sentences, the edge cases (empty, a space, one
/// character, non-ASCII) and a text truncated at 256 tokens, so the batch is mostly padding.
fn minilm_cases() -> Vec<EmbeddingCase> {
    let all: Vec<EmbeddingCase> = reference_file("minilm-embeddings.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let (head, tail) = all.split_at(all.len() - 10);
    head.iter()
        .take(10)
        .chain(tail)
        .map(|c| EmbeddingCase {
            text: c.text.clone(),
            embedding: c.embedding.clone(),
        })
        .collect()
}

fn minilm_ids(files: &ModelFiles, texts: &[String]) -> Vec<Vec<u32>> {
    let inspection = embedder::inspect(files).unwrap();
    let max = inspection.info.max_input_length as usize;
    inspection.encoder.encode(texts, max).unwrap()
}

fn rows(ids: &[Vec<u32>]) -> Vec<&[u32]> {
    ids.iter().map(Vec::as_slice).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-12)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

fn encoders(files: &ModelFiles, family: Family) -> (EncoderConfig, TensorReader) {
    let config = EncoderConfig::read(files, family).unwrap();
    let reader = TensorReader::open(&files.path("model.safetensors"), family).unwrap();
    (config, reader)
}

#[test]
fn minilm_hidden_states_on_candle_match_the_kernels() {
    let files = model_files(MINILM);
    let cases = minilm_cases();
    let texts: Vec<String> = cases.iter().map(|c| c.text.clone()).collect();
    let ids = minilm_ids(&files, &texts);
    let batch = rows(&ids);
    let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
    assert!(lengths.iter().min() < lengths.iter().max(), "{lengths:?}");

    let (config, reader) = encoders(&files, Family::Bert);
    let kernels = CpuBertEncoder::load(&reader, &config, WeightFormat::F32).unwrap();
    let device = DeviceEncoder::load(&reader, &config, &Device::Cpu, DType::F32).unwrap();
    let h = config.hidden_size;
    let expected: Vec<Vec<f32>> = kernels
        .forward(&batch, |states, sequences| {
            sequences
                .iter()
                .map(|s| states[s.start * h..(s.start + s.len) * h].to_vec())
                .collect()
        })
        .unwrap();
    let output = device.forward(&batch).unwrap();
    let padded = output.hidden.to_vec3::<f32>().unwrap();
    let mut worst = 0f32;
    for (sequence, (rows, want)) in padded.iter().zip(&expected).enumerate() {
        let real: Vec<f32> = rows[..ids[sequence].len()].concat();
        worst = worst.max(max_abs_diff(&real, want));
    }
    println!(
        "MiniLM hidden states, candle cpu f32 vs kernels: max abs diff {worst:e} over {} \
         sequences of {}..={} tokens",
        ids.len(),
        lengths.iter().min().unwrap(),
        lengths.iter().max().unwrap()
    );
    assert!(worst <= EXACT_TOLERANCE, "{worst:e}");

    // Padding changes nothing: each sequence alone gives what it gave in the padded batch.
    let mut worst_alone = 0f32;
    for (sequence, ids) in ids.iter().enumerate() {
        let alone = device
            .forward(&[ids])
            .unwrap()
            .hidden
            .to_vec3::<f32>()
            .unwrap();
        let batched: Vec<f32> = padded[sequence][..ids.len()].concat();
        worst_alone = worst_alone.max(max_abs_diff(&alone[0].concat(), &batched));
    }
    println!(
        "MiniLM hidden states, candle cpu f32, batched vs alone: max abs diff {worst_alone:e}"
    );
    assert!(worst_alone <= EXACT_TOLERANCE, "{worst_alone:e}");
}

#[test]
fn minilm_embeddings_on_candle_match_the_kernels_and_the_reference() {
    let files = model_files(MINILM);
    let cases = minilm_cases();
    let texts: Vec<String> = cases.iter().map(|c| c.text.clone()).collect();
    let ids = minilm_ids(&files, &texts);
    let batch = rows(&ids);
    let kernels = BertEmbedder::load_on(&files, kernels_f32())
        .unwrap()
        .run(&batch)
        .unwrap();
    let exact = BertEmbedder::load_on(&files, candle_f32())
        .unwrap()
        .run(&batch)
        .unwrap();
    let (mut vs_kernels, mut vs_reference, mut worst_cosine) = (0f32, 0f32, 1f32);
    for ((case, device), kernel) in cases.iter().zip(&exact).zip(&kernels) {
        vs_kernels = vs_kernels.max(max_abs_diff(device, kernel));
        vs_reference = vs_reference.max(max_abs_diff(device, &case.embedding));
        worst_cosine = worst_cosine.min(cosine(device, &case.embedding));
    }
    println!(
        "MiniLM embeddings, candle cpu f32: max abs diff {vs_kernels:e} vs kernels, \
         {vs_reference:e} vs sentence-transformers (min cosine {worst_cosine})"
    );
    assert!(vs_kernels <= EXACT_TOLERANCE, "{vs_kernels:e}");
    assert!(vs_reference <= EXACT_TOLERANCE, "{vs_reference:e}");
    assert!(worst_cosine >= 0.9999, "{worst_cosine}");

    // candle's CPU backend multiplies f16 (the gemm crate), so the Fast engine runs here too.
    let fast = BertEmbedder::load_on(&files, candle_f16())
        .unwrap()
        .run(&batch)
        .unwrap();
    let (mut fast_cosine, mut fast_diff) = (1f32, 0f32);
    for (fast, exact) in fast.iter().zip(&exact) {
        fast_cosine = fast_cosine.min(cosine(fast, exact));
        fast_diff = fast_diff.max(max_abs_diff(fast, exact));
    }
    println!(
        "MiniLM embeddings, candle cpu f16 vs f32: min cosine {fast_cosine}, max abs diff \
         {fast_diff:e}"
    );
    assert!(fast_cosine >= FAST_COSINE, "{fast_cosine}");
}

/// An empty sequence (no tokenizer makes one, a hostile batch could) pools to zeros on both
/// engines and leaves its neighbours alone.
#[test]
fn an_empty_sequence_pools_to_zeros() {
    let files = model_files(MINILM);
    let device = BertEmbedder::load_on(&files, candle_f32()).unwrap();
    let kernels = BertEmbedder::load(&files, ComputeDevice::Cpu, Precision::Exact).unwrap();
    let text: &[u32] = &[101, 7592, 102];
    for engine in [&device, &kernels] {
        let alone = engine.run(&[text]).unwrap();
        for batch in [[&[][..], text], [text, &[][..]]] {
            let out = engine.run(&batch).unwrap();
            let (empty, full) = if batch[0].is_empty() { (0, 1) } else { (1, 0) };
            assert!(
                out[empty].iter().all(|&v| v == 0.0),
                "{:?}",
                &out[empty][..4]
            );
            assert!(max_abs_diff(&out[full], &alone[0]) <= EXACT_TOLERANCE);
        }
        let only_empty = engine.run(&[&[]]).unwrap();
        assert!(only_empty[0].iter().all(|&v| v == 0.0));
    }
}

fn classifier_cases(reference: &str) -> Vec<LogitCase> {
    serde_json::from_str(&reference_file(reference)).unwrap()
}

fn check_classifier(name: &str, reference: &str) {
    let files = model_files(name);
    let cases = classifier_cases(reference);
    let texts: Vec<String> = cases.iter().map(|c| c.text.clone()).collect();
    let inspection = classifier::inspect(&files).unwrap();
    let max = inspection.info.max_input_length as usize;
    let ids = inspection.encoder.encode(&texts, max).unwrap();
    for (case, ids) in cases.iter().zip(&ids) {
        assert_eq!(ids, &case.input_ids, "{name}: {:?}", case.text);
    }
    let batch = rows(&ids);
    let logits = |target| {
        SequenceClassifier::load_on(&files, target)
            .unwrap()
            .logits(&batch)
            .unwrap()
    };
    let (kernels, exact, fast) = (
        logits(kernels_f32()),
        logits(candle_f32()),
        logits(candle_f16()),
    );
    let (mut vs_kernels, mut vs_reference, mut kernels_vs_reference, mut fast_diff) =
        (0f32, 0f32, 0f32, 0f32);
    for (i, case) in cases.iter().enumerate() {
        vs_kernels = vs_kernels.max(max_abs_diff(&exact[i], &kernels[i]));
        vs_reference = vs_reference.max(max_abs_diff(&exact[i], &case.logits));
        kernels_vs_reference = kernels_vs_reference.max(max_abs_diff(&kernels[i], &case.logits));
        fast_diff = fast_diff.max(max_abs_diff(&fast[i], &exact[i]));
    }
    println!(
        "{name}: {} texts, logits max abs diff: candle cpu f32 vs kernels {vs_kernels:e}, vs \
         transformers {vs_reference:e} (kernels vs transformers {kernels_vs_reference:e}); f16 vs \
         f32 {fast_diff:e}",
        cases.len()
    );
    assert!(vs_kernels <= EXACT_TOLERANCE, "{vs_kernels:e}");
    assert!(vs_reference <= EXACT_TOLERANCE, "{vs_reference:e}");
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(
            argmax(&exact[i]),
            argmax(&case.logits),
            "{name}: {:?}",
            case.text
        );
        assert_eq!(
            argmax(&fast[i]),
            argmax(&exact[i]),
            "{name} f16: {:?}",
            case.text
        );
    }
}

#[test]
fn bert_classifier_on_candle_matches_the_kernels_and_the_reference() {
    check_classifier(BERT_CLASSIFIER, "categorium-bert-cls-logits.json");
}

#[test]
fn distilbert_classifier_on_candle_matches_the_kernels_and_the_reference() {
    check_classifier(
        DISTILBERT_CLASSIFIER,
        "distilbert-tiny-random-cls-logits.json",
    );
}

#[test]
fn hostile_ids_and_lengths_are_refused_before_the_device() {
    let files = model_files(DISTILBERT_CLASSIFIER);
    let (config, reader) = encoders(&files, Family::DistilBert);
    let (vocab, positions) = (config.vocab_size, config.max_positions);
    let encoder = DeviceEncoder::load(&reader, &config, &Device::Cpu, DType::F32).unwrap();
    let vocab_id = vocab as u32;
    for id in [vocab_id, vocab_id + 1, u32::MAX] {
        let batch: [&[u32]; 2] = [&[101, 102], &[101, 2009, id, 102]];
        match encoder.forward(&batch) {
            Err(InferenceError::UnknownToken { id: got, vocab: v }) => {
                assert_eq!((got, v), (id as usize, vocab));
            }
            other => panic!("id {id}: {:?}", other.map(|_| ())),
        }
    }
    let longest = vec![101u32; positions];
    assert!(
        encoder.forward(&[&longest]).is_ok(),
        "{positions} tokens fit"
    );
    let too_long = vec![101u32; positions + 1];
    match encoder.forward(&[&[101, 102], &too_long]) {
        Err(InferenceError::TooManyPositions {
            tokens,
            positions: p,
        }) => {
            assert_eq!((tokens, p), (positions + 1, positions));
        }
        other => panic!("{:?}", other.map(|_| ())),
    }

    // Through the classifier, the same refusal as a typed inference failure.
    let classifier = SequenceClassifier::load_on(&files, candle_f32()).unwrap();
    match classifier.logits(&[&[101, vocab_id, 102]]) {
        Err(BackendError::InferenceFailed {
            source: InferenceError::UnknownToken { .. },
            ..
        }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    match classifier.logits(&[&too_long]) {
        Err(BackendError::InferenceFailed {
            source: InferenceError::TooManyPositions { .. },
            ..
        }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn a_missing_gpu_is_a_load_error() {
    // Without the `cuda` feature (or a GPU) `cuda:0` cannot open; the load says so, no panic.
    if cfg!(feature = "cuda") {
        return;
    }
    let files = model_files(DISTILBERT_CLASSIFIER);
    let device = crate::types::ComputeDevice::Cuda(0);
    let precision = crate::types::requirement::Precision::Fast;
    assert!(matches!(
        SequenceClassifier::load(&files, device, precision),
        Err(BackendError::LoadFailed { .. })
    ));
}
