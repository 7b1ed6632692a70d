//! Text generation with the real SmolLM2-135M-Instruct (GGUF Q4_1) against the transformers
//! reference (`smollm2-greedy.json`, computed on the dequantized weights): prompt ids, the first
//! greedy tokens and the first step's top token from the backend; text, streaming, seeds, stop
//! sequences, chat templates and bad input through a real guest.

use modelhost::backends::{
    CandleBackend, GenerationRequest, LlamaGenerator, ModelBackend, Prompt, TextGenerator,
};
use modelhost::types::ComputeDevice;
use modelhost::types::FinishReason;
use modelhost::types::requirement::{ModelType, Precision};
use modelhost_tests::{
    SMOLLM2, code, fixtures, generate_collecting, model_store, probe, real_runtime,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Reference {
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    greedy_text: String,
    first_step_top5_ids: Vec<u32>,
}

fn references() -> Vec<Reference> {
    let path = fixtures().join("reference/smollm2-greedy.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The reference text without its end-of-sequence marker.
fn expected_text(reference: &Reference) -> &str {
    reference.greedy_text.trim_end_matches("<|im_end|>")
}

#[test]
fn greedy_decoding_matches_transformers() {
    let files = model_store().resolve(SMOLLM2, "main").unwrap();
    CandleBackend
        .inspect(ModelType::TextGeneration, &files)
        .unwrap();
    let model = LlamaGenerator::load(&files, ComputeDevice::Cpu, Precision::Exact).unwrap();
    for reference in references() {
        let ids = model
            .prompt_ids(&Prompt::Text(reference.prompt.clone()))
            .unwrap();
        assert_eq!(
            ids, reference.prompt_ids,
            "prompt ids of {:?}",
            reference.prompt
        );
        let request = GenerationRequest::greedy(&reference.prompt, 1);
        let one = model.generate(&request, &mut |_| true).unwrap();
        assert_eq!(one.generated_tokens, 1);
        let request = GenerationRequest::greedy(&reference.prompt, reference.greedy_ids.len());
        let (text, summary) = generate_collecting(&model, &request);
        println!("{:?} -> {text:?} ({summary:?})", reference.prompt);
        // The first greedy token is the reference's top-1 of the first step, and the first 8
        // generated ids equal the reference's (the quantized path may drift later).
        assert_eq!(summary.tokens[0], reference.first_step_top5_ids[0]);
        let n = 8.min(reference.greedy_ids.len());
        let expected: Vec<u32> = reference.greedy_ids[..n]
            .iter()
            .copied()
            .filter(|&t| t != 2)
            .collect();
        assert_eq!(
            summary.tokens[..expected.len()],
            expected[..],
            "ids of {text:?}"
        );
        assert_eq!(text, expected_text(&reference));
        let ended = reference.greedy_ids.last() == Some(&2);
        let finish = if ended {
            FinishReason::EndOfSequence
        } else {
            FinishReason::Length
        };
        assert_eq!(summary.finish, finish);
        assert_eq!(summary.prompt_tokens as usize, reference.prompt_ids.len());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_generates_streams_and_samples_reproducibly() {
    let reference = &references()[0];
    let prompt = &reference.prompt;
    // Sampling is checked on an open prompt, where many continuations are likely.
    let open = "Once upon a time, in a small village,";
    let sampled =
        json!({"temperature": 0.9, "top_p": 0.95, "top_k": 40, "seed": 7, "max_output_length": 16});
    let commands = [
        json!({"op": "register", "id": "lm", "requirement":
            {"model_type": "text-generation", "name": SMOLLM2, "max_output_length": 32}}),
        json!({"op": "generate", "id": "lm", "prompt": prompt}),
        json!({"op": "stream", "id": "lm", "prompt": prompt}),
        json!({"op": "generate", "id": "lm", "prompt": open, "options": sampled}),
        json!({"op": "generate", "id": "lm", "prompt": open, "options": sampled}),
        json!({"op": "generate", "id": "lm", "prompt": prompt, "options": {"stop": [" of"]}}),
        json!({"op": "generate", "id": "lm", "prompt": prompt, "options": {"max_output_length": 3}}),
        json!({"op": "chat", "id": "lm", "messages": [
            {"role": "user", "content": "What is the capital of France?"}]}),
        json!({"op": "generate", "id": "lm", "prompt": open, "options": {"max_output_length": 16}}),
        json!({"op": "generate", "id": "lm", "prompt": open, "options": {"temperature": 0.9,
            "top_p": 0.95, "top_k": 40, "seed": 8, "max_output_length": 16}}),
    ];
    let (replies, _) = probe(&real_runtime(), "generator", "", &commands)
        .await
        .unwrap();
    for reply in &replies {
        assert_eq!(code(reply), "ok", "{reply}");
    }
    let text = |i: usize| replies[i]["ok"]["text"].as_str().unwrap().to_string();
    assert_eq!(text(1), expected_text(reference));
    assert_eq!(
        replies[1]["ok"]["finish_reason"],
        "FinishReason::EndOfSequence"
    );
    assert_eq!(
        replies[1]["ok"]["prompt_tokens"],
        reference.prompt_ids.len()
    );
    // Streaming hands out the same text, in several pieces.
    assert_eq!(text(2), text(1));
    assert!(replies[2]["ok"]["pieces"].as_array().unwrap().len() > 3);
    assert_eq!(
        replies[2]["ok"]["finish_reason"],
        "FinishReason::EndOfSequence"
    );
    // The same seed samples the same text; sampling is not greedy decoding (as long), and
    // another seed samples another text.
    assert_eq!(text(3), text(4));
    assert_ne!(text(3), text(8), "sampled text equals the greedy text");
    assert_ne!(text(3), text(9), "seeds 7 and 8 sample the same text");
    // A stop sequence ends the text before it.
    assert_eq!(text(5), "The capital");
    assert_eq!(replies[5]["ok"]["finish_reason"], "FinishReason::Stop");
    assert_eq!(replies[6]["ok"]["tokens_generated"], 3);
    assert_eq!(replies[6]["ok"]["finish_reason"], "FinishReason::Length");
    // The chat template adds SmolLM's system prompt, so the prompt is longer than the raw one.
    assert!(
        replies[7]["ok"]["prompt_tokens"].as_u64().unwrap() > reference.prompt_ids.len() as u64
    );
    assert!(text(7).contains("Paris"), "{}", text(7));
}

/// Dropping a stream stops its generation: a 4,000-token generation abandoned after its first
/// piece frees the worker for the next call (which would otherwise wait past the queue timeout).
#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_stream_stops_the_generation() {
    let prompt = "<|im_start|>user\nTell a very long story.<|im_end|>\n<|im_start|>assistant\n";
    let commands = [
        json!({"op": "register", "id": "lm", "requirement": {"model_type": "text-generation", "name": SMOLLM2}}),
        json!({"op": "stream_first", "id": "lm", "prompt": prompt, "options": {"max_output_length": 4000}}),
        json!({"op": "generate", "id": "lm", "prompt": prompt, "options": {"max_output_length": 4}}),
    ];
    let started = std::time::Instant::now();
    let (replies, _) = probe(&real_runtime(), "cancel", "", &commands)
        .await
        .unwrap();
    let codes: Vec<&str> = replies.iter().map(code).collect();
    assert_eq!(codes, ["ok", "ok", "ok"], "{replies:?}");
    assert!(replies[1]["ok"]["first"].is_string());
    assert_eq!(replies[2]["ok"]["tokens_generated"], 4);
    println!("abandoned stream + next call: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_generation_input_gets_typed_errors() {
    let long_prompt = "word ".repeat(9000);
    let register = |id: &str, extra: Value| {
        let mut requirement = json!({"model_type": "text-generation", "name": SMOLLM2});
        requirement
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"op": "register", "id": id, "requirement": requirement})
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            register("neg", json!({"temperature": -1.0})),
            "invalid-requirement",
        ),
        (register("p", json!({"top_p": 1.5})), "invalid-requirement"),
        (register("lm", json!({})), "ok"),
        (
            json!({"op": "generate", "id": "lm", "prompt": "hi", "options": {"top_p": 0.0}}),
            "invalid-input",
        ),
        (
            json!({"op": "generate", "id": "lm", "prompt": "hi", "options": {"temperature": -0.5}}),
            "invalid-input",
        ),
        (
            json!({"op": "generate", "id": "lm", "prompt": long_prompt}),
            "invalid-input",
        ),
        (
            json!({"op": "generate", "id": "lm", "prompt": ""}),
            "invalid-input",
        ),
        (
            json!({"op": "embed", "id": "lm", "texts": ["x"]}),
            "wrong-model-type",
        ),
        (
            json!({"op": "generate", "id": "lm", "prompt": "Hello", "options": {"max_output_length": 2}}),
            "ok",
        ),
    ];
    let commands: Vec<Value> = cases.iter().map(|(c, _)| c.clone()).collect();
    let (replies, _) = probe(&real_runtime(), "bad-generation", "", &commands)
        .await
        .unwrap();
    for ((command, expected), reply) in cases.iter().zip(&replies) {
        let shown: String = command.to_string().chars().take(120).collect();
        assert_eq!(code(reply), *expected, "{shown} gave {reply}");
    }
    let message = replies[5]["error"]["message"].as_str().unwrap();
    assert!(message.contains("context of 8192"), "{message}");
}

/// `"precision": "fast"` multiplies in bf16 (on CPUs with AVX512-BF16): the first step still picks
/// the reference's top token, and a short factual answer reads the same.
#[test]
fn fast_precision_keeps_the_first_steps() {
    let files = model_store().resolve(SMOLLM2, "main").unwrap();
    let model = LlamaGenerator::load(&files, ComputeDevice::Cpu, Precision::Fast).unwrap();
    for (i, reference) in references().iter().enumerate() {
        let request = GenerationRequest::greedy(&reference.prompt, reference.greedy_ids.len());
        let (text, summary) = generate_collecting(&model, &request);
        assert_eq!(summary.tokens[0], reference.first_step_top5_ids[0]);
        if i == 0 {
            assert_eq!(text, expected_text(reference));
        }
    }
}

/// The same model as a Hugging Face safetensors checkpoint, made from the GGUF file: tensors
/// dequantized and renamed, and the query/key rows put back from GGUF's interleaved rotary layout
/// into halves. It generates the reference's text.
#[test]
fn safetensors_checkpoints_generate_the_same_text() {
    use candle_core::quantized::gguf_file;
    use candle_core::{Device, Tensor};
    use modelhost::store::local::ModelStore;

    let gguf_files = model_store().resolve(SMOLLM2, "main").unwrap();
    let gguf_path = std::fs::read_dir(&gguf_files.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        .unwrap();
    let mut file = std::fs::File::open(&gguf_path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let meta = |key: &str| content.metadata[key].to_u32().unwrap() as usize;
    let (heads, kv_heads) = (
        meta("llama.attention.head_count"),
        meta("llama.attention.head_count_kv"),
    );
    let d = meta("llama.embedding_length") / heads;
    let mut tensors = std::collections::HashMap::new();
    for name in content.tensor_infos.keys() {
        let tensor = content
            .tensor(&mut file, name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let hf = hf_name(name);
        let tensor = match name.rsplit('.').nth(1) {
            Some("attn_q") => halves(&tensor, heads, d),
            Some("attn_k") => halves(&tensor, kv_heads, d),
            _ => tensor,
        };
        tensors.insert(hf, tensor);
    }
    let store = tempfile::tempdir().unwrap();
    let repo = store.path().join("models--local--smollm2-safetensors");
    let snapshot = repo.join("snapshots/converted");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "converted").unwrap();
    candle_core::safetensors::save(&tensors, snapshot.join("model.safetensors")).unwrap();
    for companion in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(gguf_files.path(companion), snapshot.join(companion)).unwrap();
    }
    let files = ModelStore::new(store.path())
        .resolve("local/smollm2-safetensors", "main")
        .unwrap();
    CandleBackend
        .inspect(ModelType::TextGeneration, &files)
        .unwrap();
    let model = LlamaGenerator::load(&files, ComputeDevice::Cpu, Precision::Exact).unwrap();
    let reference = &references()[1];
    let request = GenerationRequest::greedy(&reference.prompt, reference.greedy_ids.len());
    let (text, _) = generate_collecting(&model, &request);
    assert_eq!(text, expected_text(reference));

    /// Rows `[h][2i + j]` (GGUF) back to `[h][j·d/2 + i]` (Hugging Face) for each head.
    fn halves(tensor: &Tensor, heads: usize, d: usize) -> Tensor {
        let (rows, cols) = tensor.dims2().unwrap();
        let values = tensor.to_vec2::<f32>().unwrap();
        let mut out = vec![vec![0.0f32; cols]; rows];
        for h in 0..heads {
            for i in 0..d / 2 {
                for j in 0..2 {
                    out[h * d + j * (d / 2) + i] = values[h * d + 2 * i + j].clone();
                }
            }
        }
        Tensor::new(out, &Device::Cpu).unwrap()
    }

    /// A GGUF tensor name in Hugging Face's naming.
    fn hf_name(gguf: &str) -> String {
        let fixed = [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("output.weight", "lm_head.weight"),
        ];
        if let Some((_, hf)) = fixed.iter().find(|(g, _)| *g == gguf) {
            return hf.to_string();
        }
        let parts: Vec<&str> = gguf.split('.').collect();
        let part = match parts[2] {
            "attn_norm" => "input_layernorm",
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "ffn_norm" => "post_attention_layernorm",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            other => panic!("unexpected tensor {other}"),
        };
        format!("model.layers.{}.{part}.weight", parts[1])
    }
}

/// A repository holding several GGUF quantizations: the requirement's `weights_file` picks one;
/// without it, registration says to name one.
#[tokio::test(flavor = "multi_thread")]
async fn weights_file_picks_one_of_several_gguf_files() {
    use modelhost::backends::CandleBackend;
    use modelhost::engine::device::SystemDevices;
    use modelhost::manager::ModelManager;
    use modelhost::runtime::Runtime;
    use modelhost::runtime::RuntimeSettings;
    use modelhost::store::local::ModelStore;
    use modelhost_tests::test_settings;

    let source = model_store().resolve(SMOLLM2, "main").unwrap();
    let store = tempfile::tempdir().unwrap();
    let repo = store.path().join("models--local--smollm2-quants");
    let snapshot = repo.join("snapshots/quants");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "quants").unwrap();
    for entry in std::fs::read_dir(&source.dir).unwrap().flatten() {
        let target = std::fs::canonicalize(entry.path()).unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".gguf") {
            for copy in ["SmolLM2.Q4_1.gguf", "SmolLM2.Q4_1-copy.gguf"] {
                modelhost_tests::link_or_copy(&target, &snapshot.join(copy));
            }
        } else {
            modelhost_tests::link_or_copy(&target, &snapshot.join(name));
        }
    }
    let settings = test_settings(std::time::Duration::from_secs(60));
    let manager = ModelManager::new(
        ModelStore::new(store.path()),
        std::sync::Arc::new(CandleBackend),
        &SystemDevices,
        settings,
    )
    .unwrap();
    let runtime = Runtime::new(manager, &RuntimeSettings::default()).unwrap();
    let lm = |extra: Value| {
        let mut r = json!({"model_type": "text-generation", "name": "local/smollm2-quants"});
        r.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        r
    };
    let reference = &references()[0];
    let commands = [
        json!({"op": "register", "id": "any", "requirement": lm(json!({}))}),
        json!({"op": "register", "id": "named", "requirement": lm(json!({"weights_file": "SmolLM2.Q4_1.gguf"}))}),
        json!({"op": "generate", "id": "named", "prompt": reference.prompt, "options": {"max_output_length": 8}}),
        json!({"op": "register", "id": "bad", "requirement": lm(json!({"weights_file": "../escape.gguf"}))}),
    ];
    let (replies, _) = probe(&runtime, "quants", "", &commands).await.unwrap();
    let codes: Vec<&str> = replies.iter().map(code).collect();
    assert_eq!(
        codes,
        ["invalid-model-files", "ok", "ok", "invalid-requirement"],
        "{replies:?}"
    );
    assert!(
        replies[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("weights_file")
    );
    assert_eq!(replies[2]["ok"]["text"], expected_text(reference));
}
