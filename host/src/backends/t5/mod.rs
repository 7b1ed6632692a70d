//! Encoder-decoder text-to-text models (`T5ForConditionalGeneration`: T5 and flan-T5, gated and
//! plain feed-forward, tied and untied heads): the encoder runs once over the prompt, then the
//! decoder generates with its KV cache (`model`).

mod model;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::backends::common::bounds::MAX_ENCODER_INPUT;
use crate::backends::common::checkpoint::{architecture, require_safetensors};
use crate::backends::common::generation::{
    Decoder, GenerationRequest, GenerationSummary, Prompt, TextGenerator, decode_loop,
};
use crate::backends::common::tokenizer::{load_tokenizer, truncating_tokenizer};
use crate::backends::{BackendError, InferenceError, Inspection, ModelInfo};
use crate::store::local::ModelFiles;
use crate::types::ComputeDevice;
use crate::types::error::UnsupportedArchitecture;
use crate::types::requirement::ModelType;
use crate::types::{HostError, MemoryEstimate};
use model::{DecoderState, T5Config, T5Model};

const SUPPORTED: &str = "T5ForConditionalGeneration (T5, flan-T5)";
const WEIGHTS_FILE: &str = "model.safetensors";
/// The input limit when `tokenizer_config.json` sets none (T5's relative positions have none).
const DEFAULT_MAX_INPUT: u32 = 512;

fn read_config(files: &ModelFiles) -> Result<(T5Config, String), BackendError> {
    let name = architecture(files)?.name;
    if name != "T5ForConditionalGeneration" {
        return Err(BackendError::UnsupportedArchitecture(
            UnsupportedArchitecture {
                name: files.name.clone(),
                architecture: name,
                model_type: ModelType::Text2Text,
                supported: SUPPORTED,
            },
        ));
    }
    let config: T5Config = serde_json::from_str(&files.read_to_string("config.json")?)
        .map_err(|e| files.invalid(format!("config.json is not a valid T5 config: {e}")))?;
    config.check(files)?;
    if config.feed_forward().is_none() {
        return Err(files
            .invalid("config.json: unsupported feed_forward_proj / dense_act_fn")
            .into());
    }
    Ok((config, name))
}

/// `model_max_length` of `tokenizer_config.json`, capped at [`MAX_ENCODER_INPUT`] (T5's
/// attention and position buckets grow with the square of the input).
fn max_input_length(files: &ModelFiles) -> u32 {
    #[derive(Deserialize)]
    struct TokenizerConfig {
        model_max_length: Option<f64>,
    }
    files
        .read_to_string("tokenizer_config.json")
        .ok()
        .and_then(|t| serde_json::from_str::<TokenizerConfig>(&t).ok())
        .and_then(|c| c.model_max_length)
        .filter(|n| (1.0..1e6).contains(n))
        .map_or(DEFAULT_MAX_INPUT, |n| n as u32)
        .min(MAX_ENCODER_INPUT as u32)
}

/// Verifies a T5 checkpoint and loads its tokenizer.
pub fn inspect(files: &ModelFiles) -> Result<Inspection, BackendError> {
    let (config, name) = read_config(files)?;
    let tokenizer = load_tokenizer(files)?;
    let weights = require_safetensors(files)?;
    let max_input = max_input_length(files);
    let per_token = config.working_bytes_per_token(max_input as usize);
    let info = ModelInfo {
        architecture: name,
        dimension: None,
        max_input_length: max_input,
        head: "t5".into(),
        labels: Vec::new(),
        memory: MemoryEstimate {
            weights,
            working: per_token * u64::from(max_input),
            per_token,
        },
        runs_on: crate::backends::CANDLE_DEVICES,
    };
    Ok(Inspection {
        info,
        encoder: Arc::new(truncating_tokenizer(tokenizer, max_input)),
    })
}

/// A loaded T5 model. Generations keep their state apart, so the model itself is shared.
pub struct T5Generator {
    name: String,
    model: T5Model,
    tokenizer: Tokenizer,
    max_input: usize,
}

impl T5Generator {
    /// Loads the checkpoint in `files` onto `device`.
    pub fn load(files: &ModelFiles, device: ComputeDevice) -> Result<Self, BackendError> {
        let load_failed = |e: candle_core::Error| BackendError::LoadFailed {
            name: files.name.clone(),
            reason: format!("on {device}: {e}"),
        };
        let (config, _) = read_config(files)?;
        let device = match device {
            ComputeDevice::Cpu => Device::Cpu,
            ComputeDevice::Cuda(n) => Device::new_cuda(n as usize).map_err(load_failed)?,
        };
        // SAFETY: the weights file is mapped read-only; the model store never rewrites a
        // snapshot file in place (downloads land in new files and are renamed).
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[files.path(WEIGHTS_FILE)], DType::F32, &device)
        }
        .map_err(load_failed)?;
        Ok(Self {
            name: files.name.clone(),
            model: T5Model::load(vb, config).map_err(load_failed)?,
            tokenizer: load_tokenizer(files)?,
            max_input: max_input_length(files) as usize,
        })
    }

    /// The encoder's input ids for `prompt`: tokenized with `</s>`, truncated to `limit` tokens
    /// (at most the model's input limit), keeping `</s>` last.
    pub fn input_ids(&self, prompt: &Prompt, limit: usize) -> Result<Vec<u32>, BackendError> {
        let limit = limit.clamp(1, self.max_input);
        let Prompt::Text(text) = prompt else {
            return Err(BackendError::InvalidInput(format!(
                "model '{}' is a text2text model; chats need a text-generation model",
                self.name
            )));
        };
        let encoding = self
            .tokenizer
            .encode(text.as_str(), true)
            .map_err(|e| BackendError::InvalidInput(format!("cannot tokenize the prompt: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.len() > limit {
            let last = ids[ids.len() - 1];
            ids.truncate(limit);
            ids[limit - 1] = last;
        }
        Ok(ids)
    }
}

/// The decoder of one generation, as a [`Decoder`].
struct T5Decoder<'a> {
    model: &'a T5Model,
    state: DecoderState,
}

impl Decoder for T5Decoder<'_> {
    fn next_logits(&mut self, tokens: &[u32]) -> Result<Tensor, InferenceError> {
        Ok(self.model.decode(&mut self.state, tokens)?)
    }
}

impl TextGenerator for T5Generator {
    fn generate(
        &self,
        request: &GenerationRequest,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationSummary, HostError> {
        let input = self.input_ids(&request.prompt, request.max_input_tokens)?;
        let failed = |source: InferenceError| BackendError::InferenceFailed {
            name: self.name.clone(),
            source,
        };
        let state = self.model.start(&input).map_err(|e| failed(e.into()))?;
        let mut decoder = T5Decoder {
            model: &self.model,
            state,
        };
        let config = self.model.config();
        let mut summary = decode_loop(
            &mut decoder,
            &self.tokenizer,
            &[config.decoder_start()],
            &[config.eos_token_id],
            request,
            emit,
        )
        .map_err(failed)?;
        summary.prompt_tokens = input.len() as u32;
        Ok(summary)
    }
}
