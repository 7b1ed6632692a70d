//! The integration tests: real guest components against the real host, one module per area (a
//! test's path is `module::name`, so `cargo test --test integration embeddings::` runs one area).
//! They share one test binary because every binary links wasmtime and candle, and linking
//! dominated incremental builds when each file was a binary of its own.
//!
//! Tests that depend on state of the whole process stay in binaries of their own, where no other
//! test runs on another thread: `memory_rss` and `hostile_memory` measure the process's resident
//! memory, and `isolation` sets an environment variable.

mod batching;
mod c_module;
mod cache;
mod classification;
mod cli;
mod downloads;
mod embeddings;
mod errors;
mod generation;
mod generation_settings;
mod hardening;
mod hostile_hub;
mod js_modules;
mod lifecycle;
mod memory;
mod openai_api;
mod pool;
mod properties;
mod python_modules;
mod registry;
mod serve;
mod serve_hostile;
mod serve_load;
mod status;
mod sts_quality;
mod support;
mod text2text;
mod trust_boundary;
