"""Write modelhost modules in Python (componentize-py).

A module is a WebAssembly component that registers the models it needs at `initialize`, runs
inference on them, and releases them at `cleanup`. This package wraps the bindings componentize-py
generates for the module's world:

- `ModelRequirement`, `GenerationOptions`, `ChatMessage`: what a module asks for, readable from
  JSON settings with the specification's defaults;
- `register_model`, `release_model`, `release_all`, `embed`, `generate_embeddings`, `classify`,
  `generate_text`, `stream_text`, `chat`, `stream_chat`, `list_models`, `service_status`: the
  calls, returning the typed records of `modelhost.results`;
- `TextStream`: generated text, piece by piece;
- `Command` and `export_command`: a module `modelhost run` starts, in one class; `Lifecycle` and
  `Run`: the exports they are made of (an HTTP module subclasses `Lifecycle` itself);
- `ModelhostError`: every failure, with a stable `code`.

    import modelhost

    class Embedder(modelhost.Command):
        name = "embedder"

        def __init__(self, settings: dict) -> None:
            requirement = modelhost.ModelRequirement.embedding(
                "sentence-transformers/all-MiniLM-L6-v2", dimension=384)
            modelhost.register_model("embedder", requirement)

        def run(self) -> None:
            for line in modelhost.stdin_lines():
                print(modelhost.embed("embedder", line))

    Lifecycle, Run = modelhost.export_command(Embedder)

Build with `componentize-py -d wit -w command-module
--import-interface-name 'modelhost:models/types@0.1.0=modelhost_types' componentize
-p guest-sdk/python -p MODULE_DIR app -o module.wasm`.
"""

from .command import Command, export_command, stdin_lines
from .errors import ERROR_CODES, ModelhostError
from .generation import chat, generate_text, stream_chat, stream_text
from .lifecycle import Lifecycle, Run
from .models import (
    classify,
    embed,
    generate_embeddings,
    list_models,
    register_model,
    release_all,
    release_model,
    service_status,
)
from .options import ChatMessage, GenerationOptions
from .requirement import MODEL_TYPES, PRECISIONS, ModelRequirement
from .results import (
    Classification,
    Classifications,
    Embeddings,
    FinishReason,
    Generation,
    LabelScore,
    ModelStatus,
    ModelType,
    Registration,
    Release,
    ServiceStatus,
    StreamUsage,
)
from .settings import parse_settings, read_settings
from .stream import TextStream

__all__ = [
    "ERROR_CODES",
    "MODEL_TYPES",
    "PRECISIONS",
    "ChatMessage",
    "Command",
    "Classification",
    "Classifications",
    "Embeddings",
    "FinishReason",
    "GenerationOptions",
    "Generation",
    "LabelScore",
    "Lifecycle",
    "ModelRequirement",
    "ModelStatus",
    "ModelType",
    "ModelhostError",
    "Registration",
    "Release",
    "Run",
    "ServiceStatus",
    "StreamUsage",
    "TextStream",
    "chat",
    "classify",
    "embed",
    "export_command",
    "generate_embeddings",
    "generate_text",
    "list_models",
    "parse_settings",
    "read_settings",
    "register_model",
    "release_all",
    "release_model",
    "service_status",
    "stdin_lines",
    "stream_chat",
    "stream_text",
]
