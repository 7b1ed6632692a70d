//! Sequence classification on the two fixture checkpoints (BERT with a tanh pooler, DistilBERT
//! with a ReLU pre-classifier) against the transformers reference logits: token ids and logits
//! from the backend, labels and scores through a real guest.

use modelhost::backends::{CandleBackend, ModelBackend, SequenceClassifier};
use modelhost::types::ComputeDevice;
use modelhost::types::requirement::{ModelType, Precision};
use modelhost_tests::{FIXTURE_ORG, code, fixtures, model_store, probe, real_runtime};
use serde::Deserialize;
use serde_json::{Value, json};

const BERT: &str = "categorium-bert-cls-en";
const DISTILBERT: &str = "distilbert-tiny-random-cls";
/// Reference tolerance for logits (`tests/fixtures/README.md`).
const LOGIT_TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Reference {
    text: String,
    input_ids: Vec<u32>,
    logits: Vec<f32>,
    top_label: Option<String>,
    top_score: Option<f32>,
}

fn reference(folder: &str) -> Vec<Reference> {
    let file = match folder {
        BERT => "categorium-bert-cls-logits.json",
        _ => "distilbert-tiny-random-cls-logits.json",
    };
    let path = fixtures().join("reference").join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn name(folder: &str) -> String {
    format!("{FIXTURE_ORG}/{folder}")
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let peak = logits.iter().copied().fold(f32::MIN, f32::max);
    let exps: Vec<f32> = logits.iter().map(|l| (l - peak).exp()).collect();
    let total: f32 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

#[test]
fn token_ids_and_logits_match_transformers() {
    for folder in [BERT, DISTILBERT] {
        let files = model_store().resolve(&name(folder), "main").unwrap();
        let inspection = CandleBackend
            .inspect(ModelType::Classification, &files)
            .unwrap();
        let model = SequenceClassifier::load(&files, ComputeDevice::Cpu, Precision::Exact).unwrap();
        let cases = reference(folder);
        let texts: Vec<String> = cases.iter().map(|c| c.text.clone()).collect();
        let ids = inspection.encoder.encode(&texts, 512).unwrap();
        let rows: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let logits = model.logits(&rows).unwrap();
        let mut worst = 0f32;
        for ((case, ids), logits) in cases.iter().zip(&ids).zip(&logits) {
            assert_eq!(ids, &case.input_ids, "{folder}: {:?}", case.text);
            for (a, b) in logits.iter().zip(&case.logits) {
                worst = worst.max((a - b).abs());
            }
        }
        println!(
            "{folder}: max abs logit difference {worst:e} over {} texts",
            cases.len()
        );
        assert!(
            worst <= LOGIT_TOLERANCE,
            "{folder}: logits differ by {worst}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_gets_ranked_labels_and_the_threshold_applies() {
    let cases = reference(BERT);
    let texts: Vec<String> = cases.iter().map(|c| c.text.clone()).collect();
    let requirement = json!({"model_type": "classification", "name": name(BERT), "num_labels": 27});
    let strict = json!({"model_type": "classification", "name": name(BERT), "threshold": 0.99});
    let commands = [
        json!({"op": "register", "id": "topics", "requirement": requirement}),
        json!({"op": "classify", "id": "topics", "texts": texts}),
        json!({"op": "register", "id": "strict", "requirement": strict}),
        json!({"op": "classify", "id": "strict", "texts": texts}),
        json!({"op": "classify", "id": "topics", "texts": []}),
    ];
    let (replies, _) = probe(&real_runtime(), "classifier", "", &commands)
        .await
        .unwrap();
    for reply in &replies {
        assert_eq!(code(reply), "ok", "{reply}");
    }
    let results = replies[1]["ok"]["results"].as_array().unwrap();
    assert_eq!(results.len(), cases.len());
    for (case, result) in cases.iter().zip(results) {
        let expected = softmax(&case.logits);
        let scores = result["scores"].as_array().unwrap();
        assert_eq!(scores.len(), 27);
        let score = |s: &Value| s["score"].as_f64().unwrap() as f32;
        assert!(
            scores.windows(2).all(|w| score(&w[0]) >= score(&w[1])),
            "ranked best first"
        );
        assert_eq!(
            result["label"].as_str(),
            case.top_label.as_deref(),
            "{:?}",
            case.text
        );
        assert!((result["score"].as_f64().unwrap() as f32 - case.top_score.unwrap()).abs() < 1e-4);
        let best = expected.iter().copied().fold(0.0, f32::max);
        assert!((score(&scores[0]) - best).abs() < 1e-5);
    }
    // The same scores, but no label reaches 0.99.
    for (loose, strict) in results
        .iter()
        .zip(replies[3]["ok"]["results"].as_array().unwrap())
    {
        assert_eq!(strict["label"], Value::Null);
        assert_eq!(strict["score"], loose["score"]);
    }
    assert_eq!(replies[4]["ok"]["results"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_classification_requirements_get_typed_errors() {
    let commands = [
        json!({"op": "register", "id": "wrong-count", "requirement":
            {"model_type": "classification", "name": name(DISTILBERT), "num_labels": 3}}),
        json!({"op": "register", "id": "not-a-classifier", "requirement":
            {"model_type": "classification", "name": modelhost_tests::MINILM}}),
        json!({"op": "register", "id": "sst", "requirement":
            {"model_type": "classification", "name": name(DISTILBERT), "num_labels": 2}}),
        json!({"op": "embed", "id": "sst", "texts": ["a"]}),
        json!({"op": "classify", "id": "sst", "texts": ["still works"]}),
    ];
    let (replies, _) = probe(&real_runtime(), "bad-classifier", "", &commands)
        .await
        .unwrap();
    let codes: Vec<&str> = replies.iter().map(code).collect();
    assert_eq!(
        codes,
        [
            "dimension-mismatch",
            "unsupported-architecture",
            "ok",
            "wrong-model-type",
            "ok"
        ]
    );
    let message = replies[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("has 2 labels") && message.contains("num_labels 3"),
        "{message}"
    );
    let labels: Vec<&str> = replies[4]["ok"]["results"][0]["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert!(labels.contains(&"POSITIVE") && labels.contains(&"NEGATIVE"));
}
