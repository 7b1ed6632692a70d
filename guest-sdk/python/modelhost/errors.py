"""`ModelhostError`: every failed host call, and a module's own failures, with a stable code."""

from collections.abc import Callable
from typing import TypeVar

from ._bindings import Err, wit, wit_member, wit_name

#: Every error code, spelled as in the WIT (`model-not-found`, ...), in the WIT's order.
ERROR_CODES: tuple[str, ...] = tuple(wit_name(code) for code in wit.ErrorCode)

T = TypeVar("T")


class ModelhostError(Exception):
    """A failed call or a module's own failure.

    Attributes:
        code: what kind of failure, spelled as in the WIT (`"model-not-found"`,
            `"invalid-requirement"`, ...; see `ERROR_CODES`). Stable: branch on it.
        message: what went wrong and, where possible, what to do about it.
        details: extra context such as the underlying cause, or None.
    """

    def __init__(self, code: str, message: str, details: str | None = None):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}; use one of: {', '.join(ERROR_CODES)}")
        super().__init__(code, message, details)
        self.code = code
        self.message = message
        self.details = details

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}"
        return f"{text} ({self.details})" if self.details else text


def invalid_requirement(message: str) -> ModelhostError:
    """An `invalid-requirement` error: settings or a requirement the module cannot use."""
    return ModelhostError("invalid-requirement", message)


def error_from_wit(error: wit.Error) -> ModelhostError:
    """The host's error record as a `ModelhostError`."""
    return ModelhostError(wit_name(error.code), error.message, error.details)


def error_to_wit(error: ModelhostError) -> wit.Error:
    """`error` as the WIT record an export returns to the host."""
    return wit.Error(wit_member(wit.ErrorCode, error.code), error.message, error.details)


def call_host(function: Callable[..., T], *args: object) -> T:
    """Calls `function` of the host's interface with `args`; its error result raises
    `ModelhostError`."""
    try:
        return function(*args)
    except Err as failure:
        raise error_from_wit(failure.value) from None
