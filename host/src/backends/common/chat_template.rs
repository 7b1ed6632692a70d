//! A model's chat template (`chat_template` in `tokenizer_config.json`), rendered with minijinja
//! as transformers' `apply_chat_template(messages, add_generation_prompt=True)` does.

use minijinja::{Environment, Error, ErrorKind, context};
use serde::Deserialize;

use crate::backends::BackendError;
use crate::store::local::ModelFiles;
use crate::types::requirement::ChatMessage;

/// The template and the special tokens it may refer to.
pub struct ChatTemplate {
    environment: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

#[derive(Deserialize)]
struct TokenizerConfig {
    chat_template: Option<String>,
    #[serde(default)]
    bos_token: Option<SpecialToken>,
    #[serde(default)]
    eos_token: Option<SpecialToken>,
}

/// A special token as `tokenizer_config.json` writes it: a string or `{"content": ...}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum SpecialToken {
    Text(String),
    Added { content: String },
}

impl SpecialToken {
    fn content(self) -> String {
        match self {
            Self::Text(text) | Self::Added { content: text } => text,
        }
    }
}

impl ChatTemplate {
    /// The template of the model in `files`, or `None` when it has none.
    pub fn read(files: &ModelFiles) -> Result<Option<Self>, BackendError> {
        if !files.path("tokenizer_config.json").is_file() {
            return Ok(None);
        }
        let config: TokenizerConfig =
            serde_json::from_str(&files.read_to_string("tokenizer_config.json")?)
                .map_err(|e| files.invalid(format!("tokenizer_config.json: {e}")))?;
        let Some(source) = config.chat_template else {
            return Ok(None);
        };
        let mut environment = Environment::new();
        // A template comes with the checkpoint: its loops are bounded in steps.
        environment.set_fuel(Some(TEMPLATE_FUEL));
        environment
            .set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        environment.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        environment
            .add_template_owned("chat", source)
            .map_err(|e| files.invalid(format!("tokenizer_config.json chat_template: {e}")))?;
        Ok(Some(Self {
            environment,
            bos_token: config
                .bos_token
                .map(SpecialToken::content)
                .unwrap_or_default(),
            eos_token: config
                .eos_token
                .map(SpecialToken::content)
                .unwrap_or_default(),
        }))
    }

    /// The end-of-sequence token the template names.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// The prompt for `messages`, ending where the assistant's reply starts.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, BackendError> {
        let messages: Vec<_> = messages
            .iter()
            .map(|m| context! { role => m.role, content => m.content })
            .collect();
        let template = self
            .environment
            .get_template("chat")
            .expect("added at read");
        let mut prompt = CappedText::default();
        template
            .render_captured_to(
                context! {
                    messages => messages,
                    add_generation_prompt => true,
                    bos_token => self.bos_token,
                    eos_token => self.eos_token,
                },
                &mut prompt,
            )
            .map_err(|e| {
                BackendError::InvalidInput(format!(
                    "the model's chat template rejects these messages: {e}"
                ))
            })?;
        String::from_utf8(prompt.0).map_err(|_| {
            BackendError::InvalidInput("the model's chat template wrote invalid UTF-8".into())
        })
    }
}

/// Template steps one render may take (a chat of thousands of messages takes far fewer).
const TEMPLATE_FUEL: u64 = 10_000_000;

/// Most bytes a rendered chat prompt may have.
const MAX_RENDERED_BYTES: usize = 32 << 20;

/// The rendered prompt, refused as soon as it grows past [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct CappedText(Vec<u8>);

impl std::io::Write for CappedText {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + bytes.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other(format!(
                "the rendered prompt exceeds {MAX_RENDERED_BYTES} bytes"
            )));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
