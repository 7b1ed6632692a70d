"""Checks of values read from settings: each field has a `Kind` (the JSON values it takes), and a
record read from settings rejects unknown and missing fields. Every failure is a
`ModelhostError` (`invalid-requirement` for settings) that names the field and says what it
takes."""

import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields

from .errors import ModelhostError, invalid_requirement

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1


@dataclass(frozen=True)
class Kind:
    """What values a field takes: `accepts` decides, `expected` says it in words."""

    expected: str
    accepts: Callable[[object], bool]

    def or_null(self) -> "Kind":
        """This kind, or None (JSON `null`)."""
        return Kind(f"{self.expected} or null", lambda value: value is None or self.accepts(value))


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def whole_number(largest: int) -> Kind:
    """A whole number from 0 to `largest`."""
    return Kind(f"a whole number from 0 to {largest}",
                lambda value: _is_integer(value) and 0 <= value <= largest)


def one_of(*choices: str, also: tuple[str, ...] = ()) -> Kind:
    """One of the strings `choices` (or of `also`, accepted but not advertised)."""
    words = ", ".join(f'"{choice}"' for choice in choices[:-1]) + f' or "{choices[-1]}"'
    return Kind(words, lambda value: isinstance(value, str) and value in choices + also)


TEXT = Kind("a string", lambda value: isinstance(value, str))
FLAG = Kind("true or false", lambda value: isinstance(value, bool))
INTEGER = Kind("a whole number", _is_integer)
NUMBER = Kind("a number", lambda value: _is_integer(value) or isinstance(value, float))
OBJECT = Kind("a JSON object", lambda value: isinstance(value, Mapping))
LIST = Kind("a list", lambda value: isinstance(value, list))
TEXTS = Kind("a list of strings", _is_text_list)
U32 = whole_number(U32_MAX)
U64 = whole_number(U64_MAX)


def shown(value: object) -> str:
    """`value` as it would be written in JSON settings, for messages."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def check_fields(record: object, kinds: Mapping[str, Kind], what: str,
                 code: str = "invalid-requirement") -> None:
    """Checks each field of `record` named in `kinds` against its kind; a mismatch is an error
    with `code`."""
    for name, kind in kinds.items():
        value = getattr(record, name)
        if not kind.accepts(value):
            raise ModelhostError(
                code, f"`{name}` of the {what} must be {kind.expected}, not {shown(value)}")


def reject_unknown(settings: Mapping[str, object], known: list[str], what: str) -> None:
    """Fails on the first key of `settings` that is not in `known`."""
    for name in settings:
        if name not in known:
            raise invalid_requirement(
                f"unknown field `{name}` in the {what}; it takes: {', '.join(known)}")


def record_from_settings(cls: type, settings: object, what: str):
    """An instance of the dataclass `cls` from the JSON object `settings`: the keys are the
    field names; fields with a default may be left out."""
    if not OBJECT.accepts(settings):
        raise invalid_requirement(f"the {what} must be a JSON object, not {shown(settings)}")
    known = [field.name for field in fields(cls)]
    reject_unknown(settings, known, what)
    for field in fields(cls):
        required = field.default is MISSING and field.default_factory is MISSING
        if required and field.name not in settings:
            raise invalid_requirement(f"the {what} lacks `{field.name}`, which is required")
    return cls(**settings)
