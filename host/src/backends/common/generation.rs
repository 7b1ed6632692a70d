//! Text generation, independent of the architecture: what a request asks for, the decoding loop
//! (repetition penalty, temperature / top-k / top-p sampling with a seed, end-of-sequence and
//! length limits) and the streaming of decoded text (never splitting a character, never handing
//! out text that a stop sequence may still claim).

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokenizers::Tokenizer;

use crate::backends::InferenceError;
use crate::types::requirement::ChatMessage;
use crate::types::{FinishReason, HostError};

/// What the model continues.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Text, tokenized as it is.
    Text(String),
    /// A conversation, rendered with the model's chat template and followed by the assistant's
    /// turn.
    Chat(Vec<ChatMessage>),
}

impl Prompt {
    /// Bytes of text in the prompt (every message's content for a chat).
    pub fn text_bytes(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Chat(messages) => messages
                .iter()
                .map(|m| m.role.len() + m.content.len())
                .sum(),
        }
    }
}

/// How tokens are picked.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingSettings {
    /// 0 picks the most likely token (greedy); more flattens the distribution.
    pub temperature: f32,
    /// Only the k most likely tokens are candidates.
    pub top_k: Option<usize>,
    /// Only the smallest set of tokens whose probability reaches p are candidates.
    pub top_p: Option<f32>,
    /// Logits of tokens already in the context are divided (positive) or multiplied (negative)
    /// by this; 1 leaves them alone.
    pub repetition_penalty: f32,
    /// The random seed: the same seed gives the same text.
    pub seed: u64,
}

/// A generation request with every setting resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// What to continue.
    pub prompt: Prompt,
    /// Encoder-decoder models truncate longer prompts to this many tokens.
    pub max_input_tokens: usize,
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// How tokens are picked.
    pub sampling: SamplingSettings,
    /// Generation ends when the text contains one of these (which is left out).
    pub stop: Vec<String>,
}

impl GenerationRequest {
    /// A greedy generation of up to `max_new_tokens` after `prompt`: no stop sequences, no
    /// repetition penalty, the model's own input limit.
    pub fn greedy(prompt: &str, max_new_tokens: usize) -> Self {
        Self {
            prompt: Prompt::Text(prompt.into()),
            max_input_tokens: usize::MAX,
            max_new_tokens,
            sampling: SamplingSettings {
                temperature: 0.0,
                top_k: None,
                top_p: None,
                repetition_penalty: 1.0,
                seed: 0,
            },
            stop: Vec::new(),
        }
    }
}

/// What a finished generation reports besides its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationSummary {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated (an end-of-sequence token included).
    pub generated_tokens: u32,
    /// The generated token ids, an end-of-sequence token left out.
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub finish: FinishReason,
}

/// A model that continues prompts. Runs on a worker thread; `emit` receives the text as it is
/// decoded and returns false when nobody wants more, which ends generation.
pub trait TextGenerator: Send + Sync {
    /// Generates for `request`, handing text pieces to `emit` in order.
    fn generate(
        &self,
        request: &GenerationRequest,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerationSummary, HostError>;
}

/// One step of a decoder: the logits of the next token after `tokens`, which follow the tokens
/// of earlier steps (the decoder keeps them in its cache and knows their positions).
pub trait Decoder {
    /// Next-token logits, a 1-D tensor over the vocabulary.
    fn next_logits(&mut self, tokens: &[u32]) -> Result<Tensor, InferenceError>;
}

/// Most prompt tokens run through a decoder in one step.
pub const PREFILL_CHUNK: usize = 512;

/// Runs the decoding loop: `prompt` (token ids) through `decoder`, then one token at a time.
pub fn decode_loop(
    decoder: &mut dyn Decoder,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    end_of_sequence: &[u32],
    request: &GenerationRequest,
    emit: &mut dyn FnMut(&str) -> bool,
) -> Result<GenerationSummary, InferenceError> {
    let mut sampler =
        LogitsProcessor::from_sampling(request.sampling.seed, sampling(&request.sampling));
    let mut text = StreamedText::new(tokenizer, &request.stop);
    let mut context: Vec<u32> = prompt.to_vec();
    // The prompt goes through in chunks: prefill attention grows with the chunk times the
    // context, so a long prompt costs what its chunks do, not the square of its length.
    let mut logits = decoder.next_logits(&prompt[..prompt.len().min(PREFILL_CHUNK)])?;
    for chunk in prompt.chunks(PREFILL_CHUNK).skip(1) {
        logits = decoder.next_logits(chunk)?;
    }
    let mut finish = FinishReason::Length;
    let mut generated = 0;
    while generated < request.max_new_tokens {
        if request.sampling.repetition_penalty != 1.0 {
            logits = candle_transformers::utils::apply_repeat_penalty(
                &logits,
                request.sampling.repetition_penalty,
                &context,
            )?;
        }
        let token = sampler.sample(&logits)?;
        generated += 1;
        if end_of_sequence.contains(&token) {
            finish = FinishReason::EndOfSequence;
            break;
        }
        context.push(token);
        match text.push(token)? {
            Progress::Stopped(piece) => {
                emit(&piece);
                finish = FinishReason::Stop;
                break;
            }
            Progress::Text(piece) => {
                if !piece.is_empty() && !emit(&piece) {
                    return Err(InferenceError::Cancelled);
                }
            }
        }
        if generated < request.max_new_tokens {
            logits = decoder.next_logits(&[token])?;
        }
    }
    if finish != FinishReason::Stop {
        let rest = text.finish();
        if !rest.is_empty() {
            emit(&rest);
        }
    }
    Ok(GenerationSummary {
        prompt_tokens: prompt.len() as u32,
        generated_tokens: generated as u32,
        tokens: context.split_off(prompt.len()),
        finish,
    })
}

fn sampling(settings: &SamplingSettings) -> Sampling {
    let temperature = settings.temperature as f64;
    if temperature <= 0.0 {
        return Sampling::ArgMax;
    }
    match (settings.top_k, settings.top_p) {
        (None, None) => Sampling::All { temperature },
        (Some(k), None) => Sampling::TopK { k, temperature },
        (None, Some(p)) => Sampling::TopP {
            p: p as f64,
            temperature,
        },
        (Some(k), Some(p)) => Sampling::TopKThenTopP {
            k,
            p: p as f64,
            temperature,
        },
    }
}

/// What one more token produced.
enum Progress {
    /// Text that is now safe to hand out (possibly empty).
    Text(String),
    /// A stop sequence appeared: the text before it that was not handed out yet.
    Stopped(String),
}

/// The generated text, decoded as a whole after every token (so multi-token characters and
/// merges come out right) and handed out in pieces.
struct StreamedText<'a> {
    tokenizer: &'a Tokenizer,
    stop: &'a [String],
    tokens: Vec<u32>,
    text: String,
    emitted: usize,
}

impl<'a> StreamedText<'a> {
    fn new(tokenizer: &'a Tokenizer, stop: &'a [String]) -> Self {
        Self {
            tokenizer,
            stop,
            tokens: Vec::new(),
            text: String::new(),
            emitted: 0,
        }
    }

    fn push(&mut self, token: u32) -> Result<Progress, InferenceError> {
        self.tokens.push(token);
        let text = self
            .tokenizer
            .decode(&self.tokens, true)
            .map_err(InferenceError::Detokenize)?;
        // An incomplete character decodes as U+FFFD until its last byte arrives.
        if text.ends_with('\u{FFFD}') {
            return Ok(Progress::Text(String::new()));
        }
        self.text = text;
        // Re-decoding may change text already handed out (a tokenizer's clean-up of spaces): the
        // search starts at the first character boundary at or after what was emitted.
        let mut from = self.emitted.min(self.text.len());
        while !self.text.is_char_boundary(from) {
            from += 1;
        }
        if let Some(at) = self
            .stop
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i))
            .min()
        {
            let piece = self.text[from..at].to_string();
            self.emitted = at;
            return Ok(Progress::Stopped(piece));
        }
        let safe = self.text.len() - self.held_back();
        let piece = self.text.get(from..safe).unwrap_or_default().to_string();
        self.emitted = self.emitted.max(safe);
        Ok(Progress::Text(piece))
    }

    /// Bytes at the end of the text that could be the start of a stop sequence.
    fn held_back(&self) -> usize {
        let mut held = 0;
        for stop in self.stop {
            for len in (1..stop.len()).filter(|&len| stop.is_char_boundary(len)) {
                if self.text.ends_with(&stop[..len]) {
                    held = held.max(len);
                }
            }
        }
        held
    }

    /// The text not handed out yet, once generation has ended.
    fn finish(&mut self) -> String {
        let rest = self
            .text
            .get(self.emitted..)
            .unwrap_or_default()
            .to_string();
        self.emitted = self.text.len();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/models/smollm2-135m-instruct/tokenizer.json"
        );
        Tokenizer::from_file(path).unwrap()
    }

    /// Feeds the tokens of `text` one at a time and returns the pieces handed out.
    fn stream(text: &str, stop: &[String]) -> (Vec<String>, bool) {
        let tokenizer = tokenizer();
        let ids = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
        let mut streamed = StreamedText::new(&tokenizer, stop);
        let mut pieces = Vec::new();
        for id in ids {
            match streamed.push(id).unwrap() {
                Progress::Text(piece) => pieces.push(piece),
                Progress::Stopped(piece) => {
                    pieces.push(piece);
                    return (pieces, true);
                }
            }
        }
        pieces.push(streamed.finish());
        (pieces, false)
    }

    #[test]
    fn pieces_never_split_a_character() {
        let text = "naïve 🦀 crabs: 東京 🌊";
        let (pieces, stopped) = stream(text, &[]);
        assert!(!stopped);
        assert_eq!(pieces.concat(), text);
        // An emoji is several byte tokens: some steps hand out nothing, none a broken character.
        assert!(pieces.iter().any(String::is_empty));
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')));
    }

    #[test]
    fn text_a_stop_sequence_may_claim_is_held_back() {
        let stop = vec!["STOP here".to_string()];
        let (pieces, stopped) = stream("keep this STOP here and not this", &stop);
        assert!(stopped);
        assert_eq!(pieces.concat(), "keep this ");
        // "STOP" alone is held back until the sequence is decided.
        let (pieces, stopped) = stream("keep STOP going", &stop);
        assert!(!stopped);
        assert_eq!(pieces.concat(), "keep STOP going");
    }
}
