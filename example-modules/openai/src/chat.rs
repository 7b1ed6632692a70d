//! `POST /v1/chat/completions`: a conversation in, the assistant's reply out (whole or streamed),
//! through the model's own chat template.

use modelhost_guest::{ChatMessage, chat, stream_chat};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

use crate::completion::{Completion, Kind};
use crate::reply::{Reply, invalid};
use crate::sampling::Sampling;

/// What the request body must look like, for error messages.
pub const SHAPE: &str = r#"{"model": ID, "messages": [{"role": "user", "content": TEXT}, ...]}"#;

/// The fields a request may have besides the sampling ones: those honoured, those checked and
/// refused when they ask for something this module cannot do (`tools`, ...), and those that change
/// nothing here (`user`, `store`, `metadata`, `service_tier`, `parallel_tool_calls`).
pub const FIELDS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "response_format",
    "user",
    "store",
    "metadata",
    "service_tier",
    "parallel_tool_calls",
];

/// A message's `content`: text, or a list of parts of which only text parts are accepted.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One part of a message's content.
#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// One message of the conversation (`name` is accepted and changes nothing; tool calls and
/// other fields are refused).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default, rename = "name")]
    _name: Option<IgnoredAny>,
}

/// The request body.
#[derive(Deserialize)]
pub struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    #[serde(flatten)]
    sampling: Sampling,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    response_format: Option<Value>,
}

/// Answers one request.
pub fn answer(request: ChatRequest) -> Reply {
    if request.tools.as_ref().is_some_and(|t| !is_empty(t)) {
        return invalid(Some("tools"), "tools are not supported");
    }
    if let Some(format) = &request.response_format
        && !format.is_null()
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        return invalid(
            Some("response_format"),
            "only {\"type\": \"text\"} responses are supported",
        );
    }
    if request.messages.is_empty() {
        return invalid(Some("messages"), "`messages` is an empty list");
    }
    let messages: Vec<ChatMessage> = match request.messages.into_iter().map(message).collect() {
        Ok(messages) => messages,
        Err(reply) => return reply,
    };
    Completion::new(Kind::Chat, request.model).answer(
        &request.sampling,
        |model, options| stream_chat(model, &messages, options),
        |model, options| chat(model, &messages, options),
    )
}

/// One OpenAI message as the host's: `developer` is the newer name of `system`; tool messages and
/// non-text content cannot be run here.
fn message(message: Message) -> Result<ChatMessage, Reply> {
    let role = match message.role.as_str() {
        "developer" => "system".to_string(),
        "tool" | "function" => {
            return Err(invalid(
                Some("messages"),
                &format!("{} messages are not supported", message.role),
            ));
        }
        _ => message.role,
    };
    let content = match message.content {
        None => String::new(),
        Some(Content::Text(text)) => text,
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(piece)) => text.push_str(&piece),
                    (kind, _) => {
                        return Err(invalid(
                            Some("messages"),
                            &format!("content parts of type '{kind}' are not supported; send text"),
                        ));
                    }
                }
            }
            text
        }
    };
    Ok(ChatMessage::new(role, content))
}

/// Whether a `tools` value asks for nothing (null or an empty list).
fn is_empty(tools: &Value) -> bool {
    tools.is_null() || tools.as_array().is_some_and(Vec::is_empty)
}
