//! Embedding numerics through real guests on the real all-MiniLM-L6-v2 checkpoint, against the
//! sentence-transformers reference outputs.

use modelhost_tests::{
    MINILM, code, cosine, embed_with_document_processor, max_abs_diff, probe, real_runtime,
    reference_embeddings,
};
use serde_json::{Value, json};

/// Reference tolerances (`tests/fixtures/README.md`).
const MIN_COSINE: f32 = 0.9999;
const MAX_ABS_DIFF: f32 = 1e-4;

fn vectors(reply: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(reply["ok"]["embeddings"].clone()).expect("embeddings")
}

#[tokio::test(flavor = "multi_thread")]
async fn document_processor_matches_the_reference() {
    let reference = reference_embeddings();
    assert_eq!(reference.len(), 136);
    let texts: Vec<String> = reference.iter().map(|(t, _)| t.clone()).collect();
    let runtime = real_runtime();
    let got = embed_with_document_processor(&runtime, "", &texts)
        .await
        .unwrap();
    assert_eq!(got.len(), texts.len());
    let mut worst = 0f32;
    for ((text, expected), actual) in reference.iter().zip(&got) {
        assert_eq!(actual.len(), 384);
        let diff = max_abs_diff(actual, expected);
        worst = worst.max(diff);
        assert!(diff <= MAX_ABS_DIFF, "{text:?}: max abs diff {diff}");
        assert!(
            cosine(actual, expected) >= MIN_COSINE,
            "{text:?}: cosine too low"
        );
    }
    println!("max abs difference vs reference over 136 texts: {worst:e}");
}

/// `"precision": "fast"` trades digits for speed: vectors stay close to the reference, and an
/// exact id on the same model in the same host keeps exact vectors.
#[tokio::test(flavor = "multi_thread")]
async fn fast_precision_stays_close_and_leaves_exact_ids_exact() {
    let reference = reference_embeddings();
    let texts: Vec<String> = reference.iter().map(|(t, _)| t.clone()).collect();
    let runtime = real_runtime();
    let fast_settings = r#"{"model": {"model_type": "embedding",
        "name": "sentence-transformers/all-MiniLM-L6-v2", "precision": "fast"}}"#;
    let fast = embed_with_document_processor(&runtime, fast_settings, &texts)
        .await
        .unwrap();
    let exact = embed_with_document_processor(&runtime, "", &texts)
        .await
        .unwrap();
    let mut lowest = 1f32;
    for (((text, expected), fast), exact) in reference.iter().zip(&fast).zip(&exact) {
        lowest = lowest.min(cosine(fast, expected));
        assert!(
            cosine(fast, expected) >= 0.995,
            "{text:?}: fast vector too far"
        );
        assert!(
            max_abs_diff(exact, expected) <= MAX_ABS_DIFF,
            "{text:?}: exact id changed"
        );
    }
    println!("fast precision: lowest cosine to the reference over 136 texts: {lowest}");
    // Fast and exact are two copies of the weights (on a CPU without bf16 both are f32, so the
    // vectors alone could not tell them apart).
    assert_eq!(runtime.manager().status().loaded_weights, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_results_equal_one_by_one_results() {
    let texts: Vec<String> = reference_embeddings().into_iter().map(|(t, _)| t).collect();
    // The cache off: with it, every one-by-one call would be answered from the vectors the
    // batched call stored, and the test would compare them with themselves.
    let register = json!({"op": "register", "id": "e", "requirement":
        {"model_type": "embedding", "name": MINILM, "dimension": 384, "cache_embeddings": false}});
    let mut commands = vec![register, json!({"op": "embed", "id": "e", "texts": texts})];
    commands.extend(
        texts
            .iter()
            .map(|t| json!({"op": "embed", "id": "e", "texts": [t]})),
    );
    commands.push(json!({"op": "embed_one", "id": "e", "text": texts[0]}));
    let (mut replies, _) = probe(&real_runtime(), "batcher", "", &commands)
        .await
        .unwrap();
    let one: Vec<f32> = serde_json::from_value(replies.pop().unwrap()["ok"]["embedding"].clone())
        .expect("the single-text helper's vector");
    let batched = vectors(&replies[1]);
    assert_eq!(batched.len(), texts.len());
    assert!(
        max_abs_diff(&batched[0], &one) <= 1e-5,
        "embed(text) differs"
    );
    for (i, single) in replies[2..].iter().enumerate() {
        assert_eq!(single["ok"]["cached"], json!(false), "{single}");
        let single = vectors(single);
        let diff = max_abs_diff(&batched[i], &single[0]);
        assert!(
            diff <= 1e-5,
            "{:?}: batched and single differ by {diff}",
            texts[i]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn long_texts_are_truncated_at_the_requirement_limit() {
    let shared: String = (0..60).map(|i| format!("word{i} ")).collect();
    let a = format!("{shared} the ending about cats and dogs");
    let b = format!("{shared} a completely different ending about finance");
    let requirement = |limit: Option<u32>| json!({"model_type": "embedding", "name": MINILM, "max_input_length": limit});
    let commands = [
        json!({"op": "register", "id": "short", "requirement": requirement(Some(16))}),
        json!({"op": "register", "id": "full", "requirement": requirement(None)}),
        json!({"op": "embed", "id": "short", "texts": [a, b]}),
        json!({"op": "embed", "id": "full", "texts": [a, b]}),
        json!({"op": "status"}),
    ];
    let (replies, _) = probe(&real_runtime(), "truncation", "", &commands)
        .await
        .unwrap();
    assert!(replies.iter().all(|r| code(r) == "ok"), "{replies:?}");
    let short = vectors(&replies[2]);
    let full = vectors(&replies[3]);
    assert!(
        max_abs_diff(&short[0], &short[1]) < 1e-6,
        "texts equal in their first 16 tokens embed alike"
    );
    assert!(
        max_abs_diff(&full[0], &full[1]) > 1e-3,
        "without the limit the endings count"
    );
    // Two ids on one model share one copy of the weights.
    assert_eq!(replies[4]["ok"]["total_loaded_models"], 2);
    assert_eq!(replies[4]["ok"]["loaded_weights"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_text_list_gives_no_vectors() {
    let commands = [
        json!({"op": "register", "id": "e", "requirement": {"model_type": "embedding", "name": MINILM}}),
        json!({"op": "embed", "id": "e", "texts": []}),
    ];
    let (replies, _) = probe(&real_runtime(), "empty", "", &commands)
        .await
        .unwrap();
    assert_eq!(replies[1]["ok"]["embeddings"], json!([]));
    assert_eq!(replies[1]["ok"]["dimension"], 384);
}
