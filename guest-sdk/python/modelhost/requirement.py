"""`ModelRequirement`: everything a module asks of one model, in the settings format."""

from collections.abc import Mapping
from dataclasses import dataclass

from ._bindings import wit, wit_member
from ._fields import FLAG, NUMBER, TEXT, U32, Kind, check_fields, one_of, record_from_settings

#: The model types, as settings spell them.
MODEL_TYPES = ("embedding", "text2text", "text-generation", "classification")

#: The precisions, as settings spell them.
PRECISIONS = ("exact", "fast")


def _is_device(value: object) -> bool:
    if value in ("auto", "cpu", "cuda"):
        return True
    ordinal = value.removeprefix("cuda:") if isinstance(value, str) else ""
    return value != ordinal and ordinal.isascii() and ordinal.isdigit() and int(ordinal) < 2**32


_KINDS: dict[str, Kind] = {
    "model_type": one_of(*MODEL_TYPES, also=("text_generation",)),
    "name": TEXT,
    "revision": TEXT.or_null(),
    "device": Kind('"auto", "cpu", "cuda" or "cuda:N"', _is_device),
    "dimension": U32.or_null(),
    "batch_size": U32.or_null(),
    "cache_embeddings": FLAG,
    "max_input_length": U32.or_null(),
    "max_output_length": U32.or_null(),
    "temperature": NUMBER.or_null(),
    "top_k": U32.or_null(),
    "top_p": NUMBER.or_null(),
    "repetition_penalty": NUMBER.or_null(),
    "streaming": FLAG,
    "num_labels": U32.or_null(),
    "threshold": NUMBER.or_null(),
    "preload_workers": U32,
    "weights_file": TEXT.or_null(),
    "precision": one_of(*PRECISIONS),
}


@dataclass(frozen=True)
class ModelRequirement:
    """Everything a module asks of one model (the WIT `model-requirement`).

    The fields and their defaults are those of the settings format: only `model_type` and `name`
    are required, and None means "the host's or the model's default". The host checks the values
    (an empty name, a zero batch size, ...) at registration; this class checks their types, so a
    wrong one fails early with `invalid-requirement`. Change a field with `dataclasses.replace`.

    Attributes:
        model_type: "embedding", "text2text", "text-generation" or "classification".
        name: Hugging Face repository id, e.g. "sentence-transformers/all-MiniLM-L6-v2".
        revision: branch, tag or commit (None: "main").
        device: "auto", "cpu", "cuda" or "cuda:N".
        dimension: embedding: the expected vector size, checked at registration.
        batch_size: most texts per forward pass (None: the host's).
        cache_embeddings: embedding: whether the host's embedding cache may be used.
        max_input_length: longest input in tokens; longer inputs are truncated.
        max_output_length: generation: most tokens generated per call.
        temperature: generation: sampling temperature; 0 is greedy.
        top_k: generation: sample only from the k most likely tokens.
        top_p: generation: nucleus sampling threshold, in (0, 1].
        repetition_penalty: generation: > 1 discourages repeats; 1 or None leaves tokens alone.
        streaming: generation: whether the module will stream text.
        num_labels: classification: the expected number of labels, checked at registration.
        threshold: classification: the lowest score a label needs to be reported.
        preload_workers: workers that load the model at registration (0: on first use).
        weights_file: the weights file, when the repository holds several.
        precision: "exact" or "fast" (reduced-precision products where the device has them).
    """

    model_type: str
    name: str
    revision: str | None = None
    device: str = "auto"
    dimension: int | None = None
    batch_size: int | None = None
    cache_embeddings: bool = True
    max_input_length: int | None = None
    max_output_length: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    streaming: bool = False
    num_labels: int | None = None
    threshold: float | None = None
    preload_workers: int = 0
    weights_file: str | None = None
    precision: str = "exact"

    def __post_init__(self) -> None:
        check_fields(self, _KINDS, "model requirement")

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> "ModelRequirement":
        """The requirement a JSON object of settings describes, e.g.
        `{"model_type": "embedding", "name": "org/name", "dimension": 384}`. Unknown fields,
        missing required ones and values of the wrong type raise `ModelhostError`
        (`invalid-requirement`) naming the field."""
        return record_from_settings(cls, settings, "model requirement")

    @classmethod
    def embedding(cls, name: str, dimension: int | None = None, **fields) -> "ModelRequirement":
        """An embedding model `name`, optionally checked to produce vectors of `dimension`;
        `fields` sets any other field."""
        return cls("embedding", name, dimension=dimension, **fields)

    @classmethod
    def classification(cls, name: str, **fields) -> "ModelRequirement":
        """A classification model `name`; `fields` sets any other field (e.g. `threshold`)."""
        return cls("classification", name, **fields)

    @classmethod
    def text_generation(cls, name: str, **fields) -> "ModelRequirement":
        """A decoder-only generation model `name` (Llama family); `fields` sets any other field
        (e.g. `max_output_length`)."""
        return cls("text-generation", name, **fields)

    @classmethod
    def text2text(cls, name: str, **fields) -> "ModelRequirement":
        """An encoder-decoder generation model `name` (T5 family); `fields` sets any other
        field."""
        return cls("text2text", name, **fields)

    def _to_wit(self) -> wit.ModelRequirement:
        """The WIT record `register-model` takes."""
        return wit.ModelRequirement(**{
            **vars(self),
            "model_type": wit_member(wit.ModelType, self.model_type),
            "device": _device_to_wit(self.device),
            "precision": wit_member(wit.Precision, self.precision),
        })


def _device_to_wit(device: str) -> wit.Device:
    if device == "auto":
        return wit.Device_Auto()
    if device == "cpu":
        return wit.Device_Cpu()
    if device == "cuda":
        return wit.Device_Cuda()
    return wit.Device_CudaOrdinal(int(device.removeprefix("cuda:")))
