"""Base classes for the exports componentize-py looks for in a module's app: `Lifecycle` (the
`lifecycle` interface every modelhost world exports) and `Run` (`wasi:cli/run`, world
`command-module`).

componentize-py creates one object of each export class when the component is built and calls
its methods on every instance of the component; `modelhost run` calls `initialize`, `run` and
`cleanup` on one component instance. What `setup` prepares for `main` must live in module globals
or class attributes, since the two are methods of different objects: `export_command` (in
`command`) does that for a module.
"""

import sys
import traceback

from ._bindings import Err
from .errors import ModelhostError, error_to_wit
from .models import release_all
from .settings import parse_settings


class Lifecycle:
    """The module's `lifecycle` export: subclass it as `Lifecycle` in the app and override
    `setup`.

        class Lifecycle(modelhost.Lifecycle):
            def setup(self, settings: dict) -> None:
                requirement = modelhost.ModelRequirement.from_settings(settings)
                modelhost.register_model("embedder", requirement)
    """

    def setup(self, settings: dict) -> None:
        """Prepares the module: usually registers its models. `settings` is the parsed JSON of
        the host's settings for the module (`{}` when it has none). A `ModelhostError` raised here
        is the error the host sees, and aborts the module's start; any other exception is an
        `internal` error with the exception's text (its traceback goes to stderr). The default
        does nothing."""

    def initialize(self, settings: str) -> None:
        """The `initialize` export: parses `settings` and calls `setup`, turning its exceptions
        into the error result the host sees. Override `setup`, not this."""
        try:
            self.setup(parse_settings(settings))
        except ModelhostError as error:
            raise Err(error_to_wit(error)) from None
        except Exception as error:
            traceback.print_exc()
            raise Err(error_to_wit(ModelhostError("internal", _describe(error)))) from None

    def cleanup(self) -> None:
        """The `cleanup` export: releases every model registered through the SDK. An override
        should call `super().cleanup()`."""
        release_all()


class Run:
    """The module's `wasi:cli/run` export (world `command-module`): subclass it as `Run` in the
    app, set `name` and override `main`.

    An exception out of `main` makes the module exit with status 1, with `name: message` on
    stderr (plus the traceback for exceptions other than `ModelhostError`); `sys.exit()` and
    `sys.exit(0)` end it successfully, `sys.exit("message")` fails with that message (and
    `sys.exit(N)` with "exit status N"). stdout is flushed when `main` returns.

    Attributes:
        name: the module's name, which starts its error messages.
    """

    name = "module"

    def main(self) -> None:
        """The module's work: read stdin, call models, write stdout."""
        raise NotImplementedError("override Run.main with the module's work")

    def run(self) -> None:
        """The `run` export: calls `main`, turning a failure into exit status 1 and a message on
        stderr. Override `main`, not this."""
        try:
            self.main()
            return
        except SystemExit as stop:
            if stop.code in (None, 0):
                return
            message = stop.code if isinstance(stop.code, str) else f"exit status {stop.code}"
        except ModelhostError as error:
            message = str(error)
        except Exception as error:
            traceback.print_exc()
            message = _describe(error)
        finally:
            _flush()
        print(f"{self.name}: {message}", file=sys.stderr, flush=True)
        raise Err(None)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _flush() -> None:
    try:
        sys.stdout.flush()
    except OSError:
        pass  # A reader that went away has nothing left to read.
