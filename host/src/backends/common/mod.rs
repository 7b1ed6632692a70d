//! What every backend shares: the bounds a checkpoint's numbers must keep, feed-forward
//! activations, tokenizer loading, checkpoint checks, memory estimates from safetensors headers
//! and shapes, the generation loop with sampling and stop sequences, and chat templates.

pub mod activation;
pub mod bounds;
pub mod chat_template;
pub mod checkpoint;
pub mod generation;
pub mod memory_estimate;
pub mod tokenizer;
