"""Text generation: whole texts, chats through the model's chat template, and streams that hand
the text out as it is produced."""

from collections.abc import Sequence

from ._bindings import host
from .errors import call_host
from .options import ChatMessage, GenerationOptions
from .results import Generation
from .stream import TextStream


def generate_text(model_id: str, prompt: str,
                  options: GenerationOptions | None = None) -> Generation:
    """Continues `prompt` with the generation model (text-generation or text2text) registered as
    `model_id`; `options` overrides the requirement's generation settings for this call."""
    return call_host(host.generate_text, model_id, prompt, _options_to_wit(options))


def stream_text(model_id: str, prompt: str,
                options: GenerationOptions | None = None) -> TextStream:
    """Like `generate_text`, handing the text out piece by piece as it is produced."""
    return TextStream(call_host(host.stream_text, model_id, prompt, _options_to_wit(options)))


def chat(model_id: str, messages: Sequence[ChatMessage],
         options: GenerationOptions | None = None) -> Generation:
    """The assistant's reply to `messages`, from the text-generation model registered as
    `model_id`, through the model's own chat template."""
    return call_host(host.chat, model_id, _messages_to_wit(messages), _options_to_wit(options))


def stream_chat(model_id: str, messages: Sequence[ChatMessage],
                options: GenerationOptions | None = None) -> TextStream:
    """Like `chat`, handing the reply out piece by piece as it is produced."""
    return TextStream(call_host(host.stream_chat, model_id, _messages_to_wit(messages),
                                _options_to_wit(options)))


def _options_to_wit(options: GenerationOptions | None):
    return None if options is None else options._to_wit()


def _messages_to_wit(messages: Sequence[ChatMessage]) -> list:
    return [message._to_wit() for message in messages]
