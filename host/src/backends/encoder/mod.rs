//! BERT-family encoders: their `config.json`, the encoder on the host's CPU kernels and the same
//! encoder in candle's device-generic ops (for GPUs), sentence embeddings with the
//! sentence-transformers pooling head, and sequence classification.

pub mod classifier;
pub mod config;
pub mod cpu;
pub mod device;
pub mod embedder;
pub mod pooling;

#[cfg(test)]
mod tests;
