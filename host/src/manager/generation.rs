//! Text generation through the manager: a call's options over the requirement's settings, the
//! prompt checked (roles, stop sequences) and measured, and the stream that hands the text out.

use std::time::{Instant, UNIX_EPOCH};

use super::{DEFAULT_MAX_NEW_TOKENS, ModelManager, max_tokens};
use crate::backends::{GenerationRequest, Prompt, SamplingSettings};
use crate::engine::workers::{GenerationStream, StreamEvent};
use crate::types::requirement::{GenerationOptions, ModelType, check_options};
use crate::types::results::Generation;
use crate::types::{HostError, ModuleId};

impl ModelManager {
    /// Starts generating from `prompt` with the generation model `model_id` (see the WIT
    /// `stream-text` and `stream-chat`). The requirement's settings apply where `options` sets
    /// none; greedy decoding and [`DEFAULT_MAX_NEW_TOKENS`] where neither does.
    pub async fn generate_stream(
        &self,
        module: &ModuleId,
        model_id: &str,
        prompt: Prompt,
        options: GenerationOptions,
    ) -> Result<GenerationStream, HostError> {
        check_options(&options)?;
        if matches!(&prompt, Prompt::Chat(messages) if messages.is_empty()) {
            return Err(HostError::InvalidInput(
                "a chat needs at least one message".into(),
            ));
        }
        let limits = self.limits(module);
        // A chat's messages count as texts; stop sequences count as bytes of the call.
        let texts = match &prompt {
            Prompt::Text(_) => 1,
            Prompt::Chat(messages) => messages.len(),
        };
        let stop_bytes: usize = options.stop.iter().map(String::len).sum();
        limits.check_input(texts, prompt.text_bytes() + stop_bytes)?;
        if let Prompt::Chat(messages) = &prompt
            && let Some(role) = messages.iter().find(|m| !is_valid_role(&m.role))
        {
            return Err(HostError::InvalidInput(format!(
                "a chat role of {} bytes: roles are 1 to {MAX_ROLE_BYTES} letters, digits, '_' or '-'",
                role.role.len()
            )));
        }
        if let Some(wanted) = options
            .max_output_length
            .filter(|&n| n > limits.max_new_tokens)
        {
            return Err(HostError::LimitExceeded(format!(
                "max-output-length {wanted}; the module's limit is {} (limits.max_new_tokens)",
                limits.max_new_tokens
            )));
        }
        let types: &[ModelType] = match prompt {
            Prompt::Text(_) => &[ModelType::TextGeneration, ModelType::Text2Text],
            Prompt::Chat(_) => &[ModelType::TextGeneration],
        };
        let (requirement, weights) = self.lookup(module, model_id, types)?;
        let request = GenerationRequest {
            prompt,
            max_input_tokens: max_tokens(&requirement, &weights) as usize,
            max_new_tokens: options
                .max_output_length
                .or(requirement.max_output_length)
                .unwrap_or(DEFAULT_MAX_NEW_TOKENS)
                .min(limits.max_new_tokens) as usize,
            sampling: SamplingSettings {
                temperature: options
                    .temperature
                    .or(requirement.temperature)
                    .unwrap_or(0.0),
                top_k: options.top_k.or(requirement.top_k).map(|k| k as usize),
                top_p: options.top_p.or(requirement.top_p),
                repetition_penalty: options
                    .repetition_penalty
                    .or(requirement.repetition_penalty)
                    .unwrap_or(1.0),
                seed: options.seed.unwrap_or_else(random_seed),
            },
            stop: options.stop,
        };
        let timeout = self.pool.settings().queue_timeout;
        let stream = weights.served.generate(request, timeout).await?;
        weights.touch();
        Ok(stream)
    }

    /// Generates the whole text (see the WIT `generate-text` and `chat`).
    pub async fn generate(
        &self,
        module: &ModuleId,
        model_id: &str,
        prompt: Prompt,
        options: GenerationOptions,
    ) -> Result<Generation, HostError> {
        let started = Instant::now();
        let mut stream = self
            .generate_stream(module, model_id, prompt, options)
            .await?;
        let mut text = String::new();
        while let StreamEvent::Text(piece) = stream.next().await? {
            text.push_str(&piece);
        }
        let summary = stream.summary().await?;
        Ok(Generation {
            text,
            model_id: model_id.to_string(),
            prompt_tokens: summary.prompt_tokens,
            tokens_generated: summary.generated_tokens,
            finish_reason: summary.finish,
            processing_time: started.elapsed(),
        })
    }
}

/// Longest chat role, in bytes.
const MAX_ROLE_BYTES: usize = 32;

/// Whether `role` is shaped like a chat role (`system`, `user`, `assistant`, `tool`, ...).
fn is_valid_role(role: &str) -> bool {
    (1..=MAX_ROLE_BYTES).contains(&role.len())
        && role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// A seed for calls that set none: different on every call.
fn random_seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as u64 ^ (std::process::id() as u64) << 32
}
