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


class Chat(modelhost.Command):
    """Answers stdin line by line with the model the settings name."""

    name = "python-chat"

    def __init__(self, settings: dict) -> None:
        """Registers the model and keeps the conversation's settings (at `initialize`)."""
        config = modelhost.read_settings(settings, DEFAULTS)
        self.options = GenerationOptions.from_settings(config["options"])
        self.system = config["system"]
        self.stream = config["stream"]
        modelhost.register_model(MODEL_ID, ModelRequirement.from_settings(config["model"]))

    def run(self) -> None:
        """Prints the reply to each line of stdin, keeping the conversation."""
        history = [ChatMessage("system", self.system)] if self.system else []
        for line in modelhost.stdin_lines():
            if not line.strip():
                continue
            history.append(ChatMessage("user", line))
            if self.stream:
                reply = self.print_streamed(history)
            else:
                reply = modelhost.chat(MODEL_ID, history, self.options).text
                sys.stdout.write(reply)
            print(flush=True)
            history.append(ChatMessage("assistant", reply))

    def print_streamed(self, history: list[ChatMessage]) -> str:
        """Prints the reply to `history` as it is generated and returns it."""
        pieces = []
        with modelhost.stream_chat(MODEL_ID, history, self.options) as stream:
            for piece in stream:
                sys.stdout.write(piece)
                sys.stdout.flush()
                pieces.append(piece)
        return "".join(pieces)


Lifecycle, Run = modelhost.export_command(Chat)
