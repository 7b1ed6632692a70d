//! A generation as OpenAI returns it: a whole `chat.completion` / `text_completion` object, or
//! the chunks of a streamed one (`delta`s or `text` pieces, then the finish reason, then the
//! usage when asked for).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use modelhost_guest::{Error, FinishReason, Generation, GenerationOptions, TextStream};
use serde_json::{Value, json};

use crate::reply::{Reply, host_error, stream_error_event};
use crate::sampling::Sampling;

/// Which endpoint the completion answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/v1/chat/completions`: messages in, an assistant message out.
    Chat,
    /// `/v1/completions`: a prompt in, its continuation out.
    Text,
}

/// One completion's identity: what every object and chunk of it repeats.
pub struct Completion {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
}

impl Completion {
    /// A new completion of `model` (the request's model id), with a fresh random id.
    pub fn new(kind: Kind, model: String) -> Self {
        let prefix = match kind {
            Kind::Chat => "chatcmpl",
            Kind::Text => "cmpl",
        };
        let random = RandomState::new().build_hasher().finish();
        Self {
            kind,
            id: format!("{prefix}-{random:016x}"),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model,
        }
    }

    /// Runs the generation with the request's options: `stream` (the host's streaming call) when
    /// the request asks for server-sent events, else `whole`; each gets the model id and the
    /// options.
    pub fn answer(
        self,
        sampling: &Sampling,
        stream: impl FnOnce(&str, &GenerationOptions) -> Result<TextStream, Error>,
        whole: impl FnOnce(&str, &GenerationOptions) -> Result<Generation, Error>,
    ) -> Reply {
        let options = match sampling.options() {
            Ok(options) => options,
            Err(reply) => return reply,
        };
        if sampling.stream() {
            match stream(&self.model, &options) {
                Ok(stream) => self.streamed(stream, sampling.include_usage()),
                Err(e) => host_error(&e),
            }
        } else {
            match whole(&self.model, &options) {
                Ok(generation) => self.whole(&generation),
                Err(e) => host_error(&e),
            }
        }
    }

    /// The whole answer for a finished generation.
    fn whole(&self, generation: &Generation) -> Reply {
        let mut choice = match self.kind {
            Kind::Chat => json!({"message": {"role": "assistant", "content": generation.text}}),
            Kind::Text => json!({"text": generation.text}),
        };
        choice["index"] = json!(0);
        choice["logprobs"] = Value::Null;
        choice["finish_reason"] = json!(finish_reason(generation.finish_reason));
        let mut body = self.object(false, vec![choice]);
        body["usage"] = usage(generation.prompt_tokens, generation.tokens_generated);
        Reply::ok(body)
    }

    /// The answer as server-sent events, produced while `stream` generates.
    fn streamed(self, stream: TextStream, include_usage: bool) -> Reply {
        let state = match self.kind {
            Kind::Chat => State::Opening,
            Kind::Text => State::Streaming,
        };
        Reply::Events(Box::new(Chunks {
            completion: self,
            stream,
            include_usage,
            state,
        }))
    }

    /// The object (or chunk) around `choices`.
    fn object(&self, chunk: bool, choices: Vec<Value>) -> Value {
        let object = match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        })
    }

    /// The chunk that carries `piece`.
    fn chunk(&self, piece: Piece) -> String {
        let mut choice = match (self.kind, piece) {
            (Kind::Chat, Piece::Opening) => json!({"delta": {"role": "assistant", "content": ""}}),
            (Kind::Chat, Piece::Text(text)) => json!({"delta": {"content": text}}),
            (Kind::Chat, Piece::Finish(_)) => json!({"delta": {}}),
            (Kind::Text, Piece::Text(text)) => json!({"text": text}),
            (Kind::Text, _) => json!({"text": ""}),
        };
        choice["index"] = json!(0);
        choice["logprobs"] = Value::Null;
        choice["finish_reason"] = match piece {
            Piece::Finish(reason) => json!(finish_reason(reason)),
            _ => Value::Null,
        };
        self.object(true, vec![choice]).to_string()
    }
}

/// What one chunk of a stream carries.
#[derive(Clone, Copy)]
enum Piece<'a> {
    /// A chat's first chunk: the assistant role, no text yet.
    Opening,
    /// Generated text.
    Text(&'a str),
    /// The end, and why.
    Finish(FinishReason),
}

/// Where a stream of chunks stands.
enum State {
    /// A chat's first chunk, naming the assistant role, is next.
    Opening,
    /// Text pieces are coming.
    Streaming,
    /// The usage chunk is next.
    Usage,
    /// Nothing more.
    Done,
}

/// The chunks of a streamed completion, generated as they are read.
struct Chunks {
    completion: Completion,
    stream: TextStream,
    include_usage: bool,
    state: State,
}

impl Iterator for Chunks {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        match self.state {
            State::Opening => {
                self.state = State::Streaming;
                Some(self.completion.chunk(Piece::Opening))
            }
            State::Streaming => match self.stream.next() {
                Some(Ok(text)) => Some(self.completion.chunk(Piece::Text(&text))),
                Some(Err(e)) => {
                    self.state = State::Done;
                    Some(stream_error_event(&e))
                }
                None => {
                    self.state = if self.include_usage {
                        State::Usage
                    } else {
                        State::Done
                    };
                    let finish = self.stream.finish_reason().unwrap_or(FinishReason::Length);
                    Some(self.completion.chunk(Piece::Finish(finish)))
                }
            },
            State::Usage => {
                self.state = State::Done;
                let mut chunk = self.completion.object(true, Vec::new());
                chunk["usage"] = match self.stream.usage() {
                    Some(u) => usage(u.prompt_tokens, u.tokens_generated),
                    None => Value::Null,
                };
                Some(chunk.to_string())
            }
            State::Done => None,
        }
    }
}

/// OpenAI's name for why generation ended.
fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::EndOfSequence | FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn usage(prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}
