//! Text generation: whole texts, chats through the model's chat template, and streams that hand
//! the text out as it is produced.

use serde::{Deserialize, Serialize};

use crate::bindings::modelhost::models::model_manager as host;
use crate::bindings::modelhost::models::types as wit;
use crate::{Error, FinishReason, Generation};

/// Per-call overrides of the requirement's generation settings; every field defaults to the
/// requirement's (then the host's: greedy, 256 tokens).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationOptions {
    /// Most tokens to generate.
    pub max_output_length: Option<u32>,
    /// Sampling temperature; 0 is greedy.
    pub temperature: Option<f32>,
    /// Sample only from the k most likely tokens.
    pub top_k: Option<u32>,
    /// Sample only from the smallest token set whose probability reaches p, in (0, 1].
    pub top_p: Option<f32>,
    /// Penalty on tokens already in the context (> 1 discourages repeats).
    pub repetition_penalty: Option<f32>,
    /// Seed for sampling: the same seed gives the same text.
    pub seed: Option<u64>,
    /// Generation stops when one of these appears (it is left out of the text).
    pub stop: Vec<String>,
}

impl GenerationOptions {
    fn to_wit(&self) -> wit::GenerationOptions {
        wit::GenerationOptions {
            max_output_length: self.max_output_length,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            stop: self.stop.clone(),
        }
    }
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    fn to_wit(&self) -> wit::ChatMessage {
        wit::ChatMessage {
            role: self.role.clone(),
            content: self.content.clone(),
        }
    }
}

/// Continues `prompt` with the generation model registered as `model_id`.
pub fn generate_text(
    model_id: &str,
    prompt: &str,
    options: &GenerationOptions,
) -> Result<Generation, Error> {
    Ok(host::generate_text(
        model_id,
        prompt,
        Some(&options.to_wit()),
    )?)
}

/// Like [`generate_text`], handing the text out as it is produced.
pub fn stream_text(
    model_id: &str,
    prompt: &str,
    options: &GenerationOptions,
) -> Result<TextStream, Error> {
    Ok(TextStream::new(host::stream_text(
        model_id,
        prompt,
        Some(&options.to_wit()),
    )?))
}

/// The assistant's reply to `messages`, through the model's own chat template.
pub fn chat(
    model_id: &str,
    messages: &[ChatMessage],
    options: &GenerationOptions,
) -> Result<Generation, Error> {
    let messages: Vec<wit::ChatMessage> = messages.iter().map(ChatMessage::to_wit).collect();
    Ok(host::chat(model_id, &messages, Some(&options.to_wit()))?)
}

/// Like [`chat`], handing the reply out as it is produced.
pub fn stream_chat(
    model_id: &str,
    messages: &[ChatMessage],
    options: &GenerationOptions,
) -> Result<TextStream, Error> {
    let messages: Vec<wit::ChatMessage> = messages.iter().map(ChatMessage::to_wit).collect();
    Ok(TextStream::new(host::stream_chat(
        model_id,
        &messages,
        Some(&options.to_wit()),
    )?))
}

/// Generated text as it is produced: an iterator of pieces (whole characters). Dropping it stops
/// the generation.
pub struct TextStream {
    stream: wit::TextStream,
    finish: Option<FinishReason>,
    ended: bool,
}

impl TextStream {
    fn new(stream: wit::TextStream) -> Self {
        Self {
            stream,
            finish: None,
            ended: false,
        }
    }

    /// Why generation ended, once the iterator has returned `None`.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }
}

impl Iterator for TextStream {
    type Item = Result<String, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        match self.stream.next() {
            Ok(wit::StreamEvent::Text(piece)) => Some(Ok(piece)),
            Ok(wit::StreamEvent::Finished(reason)) => {
                self.finish = Some(reason);
                self.ended = true;
                None
            }
            Err(e) => {
                self.ended = true;
                Some(Err(e.into()))
            }
        }
    }
}
