//! Llama-family causal language models from a GGUF file (quantized weights) or
//! `model.safetensors` (with `tokenizer.json`, `tokenizer_config.json` and
//! `generation_config.json` next to them), with a KV cache per generation.
//!
//! The weights are dequantized at load (`checkpoint` reads them for either engine) and run
//! - on a CPU worker, on the host's CPU kernels (`cpu`): f32 for `exact` precision, so the logits
//!   are those of the dequantized model (what transformers computes from the same file), or bf16
//!   for `fast` on CPUs with AVX512-BF16 (half the memory and bandwidth; the text drifts from the
//!   exact one after a few tokens);
//! - on a CUDA worker, in candle's ops on the GPU (`device`): the same math, with f32 matrices
//!   for `exact` and bf16 ones for `fast` (norms, softmax and the residual stream stay f32).

mod checkpoint;
mod cpu;
mod device;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use candle_core::{DType, Device};
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::backends::BackendError;
use crate::backends::common::bounds::{MAX_VOCAB, positive};
use crate::backends::common::chat_template::ChatTemplate;
use crate::backends::common::checkpoint::architecture;
use crate::backends::common::generation::{
    Decoder, GenerationRequest, GenerationSummary, Prompt, TextGenerator, decode_loop,
};
use crate::backends::common::memory_estimate::{self, DecoderShape};
use crate::backends::common::tokenizer::{load_tokenizer, truncating_tokenizer};
use crate::backends::{Inspection, ModelInfo, cpu_weight_format};
use crate::kernels::WeightFormat;
use crate::store::local::ModelFiles;
use crate::types::ComputeDevice;
use crate::types::HostError;
use crate::types::error::UnsupportedArchitecture;
use crate::types::requirement::{ModelType, Precision};
use checkpoint::LlamaCheckpoint;
use cpu::LlamaCpu;
use device::LlamaDevice;

const SUPPORTED: &str =
    "Llama-family models (config.json model_type \"llama\") in a GGUF file or model.safetensors";

/// The tokens that end a sequence: `generation_config.json`'s `eos_token_id` and the
/// tokenizer's end-of-sequence token.
fn end_of_sequence(
    files: &ModelFiles,
    tokenizer: &Tokenizer,
    template_eos: Option<&str>,
) -> Vec<u32> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ids {
        One(u32),
        Many(Vec<u32>),
    }
    #[derive(Deserialize)]
    struct GenerationConfig {
        eos_token_id: Option<Ids>,
    }
    let mut ids = match files
        .read_to_string("generation_config.json")
        .ok()
        .and_then(|t| serde_json::from_str::<GenerationConfig>(&t).ok())
        .and_then(|c| c.eos_token_id)
    {
        Some(Ids::One(id)) => vec![id],
        Some(Ids::Many(ids)) => ids,
        None => Vec::new(),
    };
    ids.extend(template_eos.and_then(|t| tokenizer.token_to_id(t)));
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Verifies a Llama model: architecture, weights (GGUF header or safetensors config), tokenizer,
/// chat template.
pub fn inspect(files: &ModelFiles) -> Result<Inspection, BackendError> {
    let architecture = architecture(files)?;
    if architecture.model_type.as_deref() != Some("llama") {
        return Err(BackendError::UnsupportedArchitecture(
            UnsupportedArchitecture {
                name: files.name.clone(),
                architecture: architecture.name,
                model_type: ModelType::TextGeneration,
                supported: SUPPORTED,
            },
        ));
    }
    let checkpoint = LlamaCheckpoint::find(files)?;
    let shape = checkpoint.verified_shape(files)?;
    let context = checkpoint.context(files)?;
    let tokenizer = load_tokenizer(files)?;
    let vocab = tokenizer.get_vocab_size(true);
    positive(files, "vocabulary size", vocab, MAX_VOCAB)?;
    let mut memory = memory_estimate::decoder(&DecoderShape {
        vocab: vocab as u64,
        hidden: shape.hidden as u64,
        layers: shape.layers as u64,
        heads: shape.heads as u64,
        kv_heads: shape.kv_heads as u64,
        intermediate: shape.intermediate as u64,
        context: context as u64,
    });
    // Loading dequantizes every tensor it reads: the file's own tensors bound what it allocates.
    memory.weights = memory.weights.max(checkpoint.f32_bytes(files)?);
    ChatTemplate::read(files)?;
    let info = ModelInfo {
        architecture: architecture.name,
        dimension: None,
        max_input_length: context,
        head: checkpoint.describe(),
        labels: Vec::new(),
        memory,
        runs_on: crate::backends::CANDLE_DEVICES,
    };
    Ok(Inspection {
        info,
        encoder: Arc::new(truncating_tokenizer(tokenizer, context)),
    })
}

/// Where a loaded model runs.
enum Engine {
    /// The host's CPU kernels.
    Cpu(LlamaCpu),
    /// candle's ops on a device (a CUDA GPU).
    Device(LlamaDevice),
}

/// What to build a model for.
enum Target {
    /// The host's CPU kernels, with the linear layers in this format.
    Cpu(WeightFormat),
    /// candle's ops on this device, with the linear layers in this dtype.
    Candle(Device, DType),
}

/// The candle dtype of the linear layers for `precision` on a device: bf16 for `Fast`.
fn device_dtype(precision: Precision) -> DType {
    match precision {
        Precision::Exact => DType::F32,
        Precision::Fast => DType::BF16,
    }
}

/// A loaded Llama model. Generations keep their KV caches apart, so the model is shared.
pub struct LlamaGenerator {
    name: String,
    engine: Engine,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    end_of_sequence: Vec<u32>,
    context: usize,
}

impl LlamaGenerator {
    /// Loads the model in `files` for `precision` onto `device`: the CPU kernels on `cpu`,
    /// candle's ops on `cuda:N`.
    pub fn load(
        files: &ModelFiles,
        device: ComputeDevice,
        precision: Precision,
    ) -> Result<Self, BackendError> {
        let target = match device {
            ComputeDevice::Cpu => Target::Cpu(cpu_weight_format(precision, &files.name)),
            ComputeDevice::Cuda(n) => Target::Candle(
                Device::new_cuda(n as usize).map_err(|e| BackendError::LoadFailed {
                    name: files.name.clone(),
                    reason: format!("on {device}: {e}"),
                })?,
                device_dtype(precision),
            ),
        };
        Self::load_on(files, target, &device.to_string())
    }

    /// Loads the model in `files` onto `target` (`device` names it in errors). The tests build
    /// the candle engine on candle's CPU device through it.
    fn load_on(files: &ModelFiles, target: Target, device: &str) -> Result<Self, BackendError> {
        let load_failed = |e: candle_core::Error| BackendError::LoadFailed {
            name: files.name.clone(),
            reason: format!("on {device}: {e}"),
        };
        let checkpoint = LlamaCheckpoint::find(files)?;
        let shape = checkpoint.verified_shape(files)?;
        let context = checkpoint.context(files)? as usize;
        let engine = match target {
            Target::Cpu(format) => Engine::Cpu(
                checkpoint
                    .load(|read| LlamaCpu::load(shape, read, format, context))
                    .map_err(load_failed)?,
            ),
            Target::Candle(device, dtype) => Engine::Device(
                checkpoint
                    .load(|read| LlamaDevice::load(shape, read, &device, dtype, context))
                    .map_err(load_failed)?,
            ),
        };
        let tokenizer = load_tokenizer(files)?;
        let template = ChatTemplate::read(files)?;
        let end_of_sequence = end_of_sequence(
            files,
            &tokenizer,
            template.as_ref().map(ChatTemplate::eos_token),
        );
        Ok(Self {
            name: files.name.clone(),
            engine,
            tokenizer,
            template,
            end_of_sequence,
            context,
        })
    }

    /// The token ids of `prompt` as the model sees it (chat messages rendered by the template).
    pub fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<u32>, BackendError> {
        let text = match prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => self
                .template
                .as_ref()
                .ok_or_else(|| {
                    BackendError::InvalidInput(format!(
                        "model '{}' has no chat template; send a plain prompt",
                        self.name
                    ))
                })?
                .render(messages)?,
        };
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| BackendError::InvalidInput(format!("cannot tokenize the prompt: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }
}

impl TextGenerator for LlamaGenerator {
    fn generate(
        &self,
        request: &GenerationRequest,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationSummary, HostError> {
        let prompt = self.prompt_ids(&request.prompt)?;
        if prompt.is_empty() {
            return Err(BackendError::InvalidInput("the prompt is empty".into()).into());
        }
        if prompt.len() + request.max_new_tokens > self.context {
            return Err(BackendError::InvalidInput(format!(
                "the prompt has {} tokens; with {} new tokens it exceeds the model's context of {} (shorten the prompt or lower max_output_length)",
                prompt.len(),
                request.max_new_tokens,
                self.context
            ))
            .into());
        }
        let (mut cpu, mut device);
        let decoder: &mut dyn Decoder = match &self.engine {
            Engine::Cpu(model) => {
                cpu = model.state();
                &mut cpu
            }
            Engine::Device(model) => {
                device = model.state();
                &mut device
            }
        };
        let summary = decode_loop(
            decoder,
            &self.tokenizer,
            &prompt,
            &self.end_of_sequence,
            request,
            emit,
        )
        .map_err(|source| BackendError::InferenceFailed {
            name: self.name.clone(),
            source,
        })?;
        Ok(summary)
    }
}
