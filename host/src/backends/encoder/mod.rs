//! BERT-family encoders: their `config.json`, the CPU encoder on the host's kernels, sentence
//! embeddings with the sentence-transformers pooling head, and sequence classification.

pub mod classifier;
pub mod config;
pub mod cpu;
pub mod embedder;
pub mod pooling;
