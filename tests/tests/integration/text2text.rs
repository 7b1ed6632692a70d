//! Text-to-text generation with the T5 fixture (flan-T5 layout: gated-GELU feed-forward, untied
//! head; random weights, real tokenizer) against transformers' greedy ids, from the backend and
//! through a real guest.

use modelhost::backends::{GenerationRequest, Prompt, T5Generator, TextGenerator};
use modelhost::types::ComputeDevice;
use modelhost::types::FinishReason;
use modelhost_tests::{FIXTURE_ORG, code, fixtures, model_store, probe, real_runtime};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Reference {
    prompt: String,
    input_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
}

fn t5() -> String {
    format!("{FIXTURE_ORG}/t5-tiny-random-realvocab")
}

fn references() -> Vec<Reference> {
    let path = fixtures().join("reference/t5-tiny-random-greedy.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn greedy_ids_match_transformers() {
    let files = model_store().resolve(&t5(), "main").unwrap();
    let model = T5Generator::load(&files, ComputeDevice::Cpu).unwrap();
    for reference in references() {
        let prompt = Prompt::Text(reference.prompt.clone());
        assert_eq!(model.input_ids(&prompt, 512).unwrap(), reference.input_ids);
        let new_tokens = reference.greedy_ids.len() - 1;
        let request = GenerationRequest::greedy(&reference.prompt, new_tokens);
        let summary = model.generate(&request, &mut |_| true).unwrap();
        // The reference starts with the decoder start token.
        assert_eq!(
            summary.tokens,
            reference.greedy_ids[1..],
            "{:?}",
            reference.prompt
        );
        assert_eq!(summary.finish, FinishReason::Length);
        assert_eq!(summary.prompt_tokens as usize, reference.input_ids.len());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_generates_text_to_text_with_truncation() {
    let reference = &references()[1];
    let commands = [
        json!({"op": "register", "id": "t5", "requirement":
            {"model_type": "text2text", "name": t5(), "max_output_length": 12}}),
        json!({"op": "generate", "id": "t5", "prompt": reference.prompt}),
        json!({"op": "stream", "id": "t5", "prompt": reference.prompt}),
        json!({"op": "register", "id": "short", "requirement":
            {"model_type": "text2text", "name": t5(), "max_input_length": 5, "max_output_length": 2}}),
        json!({"op": "generate", "id": "short", "prompt": reference.prompt}),
        json!({"op": "chat", "id": "t5", "messages": [{"role": "user", "content": "hi"}]}),
    ];
    let (replies, _) = probe(&real_runtime(), "t5", "", &commands).await.unwrap();
    let codes: Vec<&str> = replies.iter().map(code).collect();
    assert_eq!(codes, ["ok", "ok", "ok", "ok", "ok", "wrong-model-type"]);
    assert_eq!(replies[1]["ok"]["tokens_generated"], 12);
    assert_eq!(replies[1]["ok"]["prompt_tokens"], reference.input_ids.len());
    assert_eq!(replies[2]["ok"]["text"], replies[1]["ok"]["text"]);
    assert_eq!(replies[4]["ok"]["prompt_tokens"], 5);
}
