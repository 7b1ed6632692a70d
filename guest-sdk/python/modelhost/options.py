"""`GenerationOptions` (per-call overrides of a requirement's generation settings) and
`ChatMessage`."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from ._bindings import wit
from ._fields import NUMBER, TEXT, TEXTS, U32, U64, Kind, check_fields, record_from_settings

_KINDS: dict[str, Kind] = {
    "max_output_length": U32.or_null(),
    "temperature": NUMBER.or_null(),
    "top_k": U32.or_null(),
    "top_p": NUMBER.or_null(),
    "repetition_penalty": NUMBER.or_null(),
    "seed": U64.or_null(),
    "stop": TEXTS,
}


@dataclass(frozen=True)
class GenerationOptions:
    """Per-call overrides of the requirement's generation settings (the WIT
    `generation-options`); None leaves a setting to the requirement (then the host: greedy,
    256 tokens).

    Attributes:
        max_output_length: most tokens to generate.
        temperature: sampling temperature; 0 is greedy.
        top_k: sample only from the k most likely tokens.
        top_p: nucleus sampling threshold, in (0, 1].
        repetition_penalty: > 1 discourages repeats.
        seed: seed for sampling: the same seed gives the same text.
        stop: generation stops when one of these appears (it is left out of the text).
    """

    max_output_length: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_fields(self, _KINDS, "generation options")

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> "GenerationOptions":
        """The options a JSON object of settings describes, e.g. `{"temperature": 0.7,
        "seed": 42}`. Unknown fields and values of the wrong type raise `ModelhostError`
        (`invalid-requirement`) naming the field."""
        return record_from_settings(cls, settings, "generation options")

    def _to_wit(self) -> wit.GenerationOptions:
        """The WIT record the generation calls take."""
        return wit.GenerationOptions(**{**vars(self), "stop": list(self.stop)})


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation.

    Attributes:
        role: "system", "user" or "assistant".
        content: the message text.
    """

    role: str
    content: str

    def __post_init__(self) -> None:
        check_fields(self, {"role": TEXT, "content": TEXT}, "chat message", "invalid-input")

    def _to_wit(self) -> wit.ChatMessage:
        """The WIT record the chat calls take."""
        return wit.ChatMessage(self.role, self.content)
