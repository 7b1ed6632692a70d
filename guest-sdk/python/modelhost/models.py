"""Registering and releasing models, embeddings, classification and the host's status, with the
references this module holds tracked so that `release_all` can give every one of them back."""

from collections.abc import Sequence

from ._bindings import Err, host
from .errors import ModelhostError, call_host
from .requirement import ModelRequirement
from .results import Classifications, Embeddings, ModelStatus, Registration, Release, ServiceStatus

#: Model ids this module holds references to, one entry per reference.
_held: list[str] = []


def register_model(model_id: str, requirement: ModelRequirement) -> Registration:
    """Registers `model_id` with `requirement`, or adds a reference to it. The host verifies the
    model's files now, so a missing or mismatched model fails here (`model-not-found`,
    `dimension-mismatch`, ...)."""
    if not isinstance(requirement, ModelRequirement):
        raise TypeError("`requirement` must be a ModelRequirement; "
                        "ModelRequirement.from_settings(mapping) reads one from settings")
    registration = call_host(host.register_model, model_id, requirement._to_wit())
    _held.append(model_id)
    return registration


def release_model(model_id: str) -> Release:
    """Drops one of this module's references to `model_id`."""
    release = call_host(host.release_model, model_id)
    if model_id in _held:
        _held.remove(model_id)
    return release


def release_all() -> None:
    """Releases every reference registered through this SDK and not yet released."""
    held = _held.copy()
    _held.clear()
    for model_id in held:
        try:
            host.release_model(model_id)
        except Err:
            pass  # A reference the host already dropped is not worth reporting at cleanup.


def generate_embeddings(model_id: str, texts: Sequence[str]) -> Embeddings:
    """Embeds `texts` with the embedding model registered as `model_id`; the vectors come back
    in input order."""
    return call_host(host.generate_embeddings, model_id, _text_list(texts))


def embed(model_id: str, text: str) -> list[float]:
    """The vector of one text, from the embedding model registered as `model_id`."""
    vectors = generate_embeddings(model_id, [text]).embeddings
    if not vectors:
        raise ModelhostError("inference-failed", "the host returned no vector for one text")
    return vectors[0]


def classify(model_id: str, texts: Sequence[str]) -> Classifications:
    """Scores the labels of each text with the classification model registered as
    `model_id`."""
    return call_host(host.classify, model_id, _text_list(texts))


def list_models() -> list[ModelStatus]:
    """The model ids this module holds, with their status, sorted by id. An HTTP handler runs in
    a fresh instance per request: this is how it learns what `initialize` registered."""
    return call_host(host.list_models)


def service_status() -> ServiceStatus:
    """The host's workers, cache, registered models and references."""
    return call_host(host.get_service_status)


def _text_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("`texts` must be a list of strings, not one string: pass [text]")
    return list(texts)
