//! What every backend shares: the bounds a checkpoint's numbers must keep, feed-forward
//! activations, tokenizer loading, checkpoint checks, memory estimates from safetensors headers
//! and shapes, the generation loop with sampling and stop sequences, the causal mask, chat templates, and (for tests)
//! the model store and references the tests on real weights read.

pub mod activation;
pub mod bounds;
pub mod chat_template;
pub mod checkpoint;
pub mod generation;
pub mod mask;
pub mod memory_estimate;
#[cfg(test)]
pub mod test_support;
pub mod tokenizer;
