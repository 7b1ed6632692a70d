//! Text generation: whole texts, chats through the model's chat template, and streams that hand
//! the text out as it is produced.

use modelhost_types::{ChatMessage, GenerationOptions};

use crate::bindings::modelhost::models::model_manager as host;
use crate::bindings::modelhost::models::types as wit;
use crate::wit_convert::{message_to_wit, options_to_wit};
use crate::{Error, FinishReason, Generation, StreamUsage};

/// Continues `prompt` with the generation model registered as `model_id`.
pub fn generate_text(
    model_id: &str,
    prompt: &str,
    options: &GenerationOptions,
) -> Result<Generation, Error> {
    Ok(host::generate_text(
        model_id,
        prompt,
        Some(&options_to_wit(options)),
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
        Some(&options_to_wit(options)),
    )?))
}

/// The assistant's reply to `messages`, through the model's own chat template.
pub fn chat(
    model_id: &str,
    messages: &[ChatMessage],
    options: &GenerationOptions,
) -> Result<Generation, Error> {
    let messages: Vec<wit::ChatMessage> = messages.iter().map(message_to_wit).collect();
    Ok(host::chat(
        model_id,
        &messages,
        Some(&options_to_wit(options)),
    )?)
}

/// Like [`chat`], handing the reply out as it is produced.
pub fn stream_chat(
    model_id: &str,
    messages: &[ChatMessage],
    options: &GenerationOptions,
) -> Result<TextStream, Error> {
    let messages: Vec<wit::ChatMessage> = messages.iter().map(message_to_wit).collect();
    Ok(TextStream::new(host::stream_chat(
        model_id,
        &messages,
        Some(&options_to_wit(options)),
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

    /// The prompt's and the generated token counts, once the iterator has returned `None`.
    pub fn usage(&self) -> Option<StreamUsage> {
        self.stream.usage()
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
