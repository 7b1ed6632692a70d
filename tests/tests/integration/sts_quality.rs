//! Quality through a real guest: STS Benchmark dev, Spearman correlation between cosine
//! similarity and the human score, against sentence-transformers' 86.72.

use std::collections::HashMap;

use modelhost_tests::{cosine, embed_with_document_processor, fixtures, real_runtime};

/// sentence-transformers with all-MiniLM-L6-v2 on the same pairs.
const REFERENCE_SPEARMAN: f64 = 86.72;
const TOLERANCE: f64 = 0.05;
/// The lowest score `"precision": "fast"` may reach.
const FAST_MINIMUM: f64 = 86.4;
const FAST_SETTINGS: &str = r#"{"model": {"model_type": "embedding",
    "name": "sentence-transformers/all-MiniLM-L6-v2", "precision": "fast"}}"#;

/// (score, sentence 1, sentence 2) of every pair. Fields are tab-separated; `"` is not a quote.
fn sts_dev() -> Vec<(f64, String, String)> {
    let text = std::fs::read_to_string(fixtures().join("data/sts-dev.tsv")).unwrap();
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (
                fields[4].parse().unwrap(),
                fields[5].to_string(),
                fields[6].to_string(),
            )
        })
        .collect()
}

/// Ranks with ties given their average rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let average = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = average;
        }
        i = j + 1;
    }
    ranks
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sx = x.iter().map(|a| (a - mx).powi(2)).sum::<f64>().sqrt();
    let sy = y.iter().map(|b| (b - my).powi(2)).sum::<f64>().sqrt();
    cov / (sx * sy)
}

#[test]
fn spearman_handles_ties() {
    assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), [2.0, 3.5, 3.5, 1.0]);
    assert!((pearson(&ranks(&[1.0, 2.0, 3.0]), &ranks(&[3.0, 2.0, 1.0])) + 1.0).abs() < 1e-12);
}

/// STS-B dev Spearman x100 of the document-processor module run with `settings`.
async fn sts_spearman(settings: &str) -> f64 {
    let pairs = sts_dev();
    assert_eq!(pairs.len(), 1500);
    let mut unique: Vec<String> = pairs
        .iter()
        .flat_map(|(_, a, b)| [a.clone(), b.clone()])
        .collect();
    unique.sort();
    unique.dedup();
    let vectors = embed_with_document_processor(&real_runtime(), settings, &unique)
        .await
        .unwrap();
    let index: HashMap<&str, &Vec<f32>> = unique.iter().map(String::as_str).zip(&vectors).collect();
    let (scores, similarities): (Vec<f64>, Vec<f64>) = pairs
        .iter()
        .map(|(score, a, b)| (*score, cosine(index[a.as_str()], index[b.as_str()]) as f64))
        .unzip();
    pearson(&ranks(&scores), &ranks(&similarities)) * 100.0
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_dev_spearman_matches_sentence_transformers() {
    let spearman = sts_spearman("").await;
    println!("STS-B dev Spearman x100: {spearman:.3} (reference {REFERENCE_SPEARMAN})");
    assert!(
        (spearman - REFERENCE_SPEARMAN).abs() <= TOLERANCE,
        "Spearman {spearman:.3} is not within {TOLERANCE} of {REFERENCE_SPEARMAN}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_precision_keeps_sts_quality() {
    let spearman = sts_spearman(FAST_SETTINGS).await;
    println!("STS-B dev Spearman x100, fast precision: {spearman:.3} (minimum {FAST_MINIMUM})");
    assert!(
        spearman >= FAST_MINIMUM,
        "fast precision Spearman {spearman:.3} is below {FAST_MINIMUM}"
    );
}
