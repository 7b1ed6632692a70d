//! The request fields `/v1/chat/completions` and `/v1/completions` share: streaming, length,
//! sampling and stop sequences, checked and turned into the host's generation options.

use modelhost_guest::GenerationOptions;
use serde::Deserialize;
use serde_json::Value;

use crate::reply::{Reply, invalid};

/// The request fields [`Sampling`] reads.
pub const FIELDS: &[&str] = &[
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "seed",
    "stop",
    "n",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
];

/// `stop`: one string or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The shared request fields. `top_k` and `repetition_penalty` are extensions (as in vLLM);
/// fields this module cannot honour are refused rather than ignored.
#[derive(Deserialize)]
pub struct Sampling {
    /// Whether to answer with server-sent events (`null` is false).
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    repetition_penalty: Option<f32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    logprobs: Option<Value>,
}

impl Sampling {
    /// Whether to answer with server-sent events.
    pub fn stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether a streamed answer ends with a usage event (`stream_options.include_usage`).
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }

    /// The host's generation options, or the OpenAI error for a field this module cannot honour.
    /// Values the host checks itself (ranges, stop sequence sizes) are left to it.
    pub fn options(&self) -> Result<GenerationOptions, Reply> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(invalid(Some("n"), "only one choice per request (n = 1)"));
        }
        for (param, value) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if value.is_some_and(|v| v != 0.0) {
                return Err(invalid(
                    Some(param),
                    &format!(
                        "{param} is not supported; use repetition_penalty (> 1 discourages repeats)"
                    ),
                ));
            }
        }
        if matches!(&self.logprobs, Some(v) if !v.is_null() && v != &Value::Bool(false)) {
            return Err(invalid(Some("logprobs"), "logprobs are not supported"));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(stop)) => vec![stop.clone()],
            Some(Stop::Many(stops)) => stops.clone(),
        };
        Ok(GenerationOptions {
            max_output_length: self.max_completion_tokens.or(self.max_tokens),
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            stop,
        })
    }
}
