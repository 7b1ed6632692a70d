"""python-chat: a modelhost command module in Python, the twin of the Rust `chat`.

`initialize` registers a text generation model; when run, the module reads one user message per
stdin line and prints the assistant's reply on a line of its own, streamed piece by piece as it
is generated (or whole, with `"stream": false`). The conversation is kept, so later lines can
refer to earlier ones. `cleanup` releases the model.

Settings (all optional):

    {"model": {"model_type": "text-generation", "name": "HuggingFaceTB/SmolLM2-135M-Instruct",
               "max_output_length": 128},
     "system": "You are a concise assistant.",
     "options": {"temperature": 0.7, "top_p": 0.9, "seed": 42},
     "stream": true}

`options` are generation options for every reply (max_output_length, temperature, top_k, top_p,
repetition_penalty, seed, stop).

Usage:

    echo "What is the capital of France?" | modelhost run target/modules/python-chat.wasm
"""

import sys
from dataclasses import dataclass

import modelhost
from modelhost import ChatMessage, GenerationOptions, ModelRequirement

MODEL_ID = "chat"

DEFAULTS = {
    "model": {
        "model_type": "text-generation",
        "name": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "max_output_length": 128,
    },
    "system": "",
    "options": {},
    "stream": True,
}


@dataclass(frozen=True)
class Conversation:
    """How the module converses, from its settings."""

    #: A system message opening the conversation; none when empty.
    system: str
    #: Generation options for every reply.
    options: GenerationOptions
    #: Whether replies are streamed piece by piece.
    stream: bool


class Lifecycle(modelhost.Lifecycle):
    """Registers the text generation model and keeps the conversation's settings."""

    def setup(self, settings: dict) -> None:
        config = modelhost.read_settings(settings, DEFAULTS)
        options = GenerationOptions.from_settings(config["options"])
        conversation = Conversation(config["system"], options, config["stream"])
        modelhost.register_model(MODEL_ID, ModelRequirement.from_settings(config["model"]))
        Run.conversation = conversation


class Run(modelhost.Run):
    """Answers stdin line by line."""

    name = "python-chat"
    #: The conversation's settings; None until `initialize` ran.
    conversation: Conversation | None = None

    def main(self) -> None:
        conversation = self.conversation
        if conversation is None:
            sys.exit("not initialized; start it with `modelhost run`")
        history = [ChatMessage("system", conversation.system)] if conversation.system else []
        for line in modelhost.stdin_lines():
            if not line.strip():
                continue
            history.append(ChatMessage("user", line))
            if conversation.stream:
                reply = print_streamed(history, conversation.options)
            else:
                reply = modelhost.chat(MODEL_ID, history, conversation.options).text
                sys.stdout.write(reply)
            print(flush=True)
            history.append(ChatMessage("assistant", reply))


def print_streamed(history: list[ChatMessage], options: GenerationOptions) -> str:
    """Prints the reply to `history` as it is generated and returns it."""
    pieces = []
    with modelhost.stream_chat(MODEL_ID, history, options) as stream:
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
            pieces.append(piece)
    return "".join(pieces)
