"""A module's settings: the JSON text the host hands to `initialize`, and the module's own
settings with their defaults."""

import json
from collections.abc import Mapping

from ._fields import FLAG, INTEGER, LIST, NUMBER, OBJECT, TEXT, Kind, reject_unknown, shown
from .errors import invalid_requirement


def parse_settings(text: str) -> dict:
    """The settings as a dict: `{}` when `text` is empty. Malformed JSON, or JSON that is not an
    object, raises `ModelhostError` (`invalid-requirement`)."""
    if not text.strip():
        return {}
    try:
        settings = json.loads(text)
    except ValueError as error:
        raise invalid_requirement(f"the module settings are not valid JSON: {error}") from None
    if not isinstance(settings, dict):
        raise invalid_requirement(
            f"the module settings must be a JSON object, not {shown(settings)}")
    return settings


def read_settings(settings: Mapping[str, object], defaults: Mapping[str, object]) -> dict:
    """`defaults` with the values `settings` gives. A key that `defaults` lacks, or a value of
    another JSON type than its default's (a whole number where the default is one, a string
    where it is a string, ...), raises `ModelhostError` (`invalid-requirement`) naming it. A
    default of None takes any value.

        DEFAULTS = {"model": {"model_type": "classification", "name": "org/name"},
                    "lines_per_call": 64}
        config = modelhost.read_settings(settings, DEFAULTS)
        requirement = modelhost.ModelRequirement.from_settings(config["model"])
    """
    reject_unknown(settings, list(defaults), "module settings")
    for name, value in settings.items():
        kind = _kind_of(defaults[name])
        if kind is not None and not kind.accepts(value):
            raise invalid_requirement(
                f"the setting `{name}` must be {kind.expected}, not {shown(value)}")
    return {**defaults, **settings}


def _kind_of(default: object) -> Kind | None:
    """The kind of values that may replace `default` (None: any)."""
    if isinstance(default, bool):
        return FLAG
    if isinstance(default, int):
        return INTEGER
    if isinstance(default, float):
        return NUMBER
    if isinstance(default, str):
        return TEXT
    if isinstance(default, Mapping):
        return OBJECT
    if isinstance(default, list):
        return LIST
    return None
