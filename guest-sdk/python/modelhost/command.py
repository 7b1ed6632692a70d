"""`Command` and `export_command`: a module that `modelhost run` starts, in one class. Its
constructor reads the settings and registers the models at `initialize`; `run` does the work with
the object that comes out; `cleanup` releases what is left."""

import sys
from collections.abc import Iterator

from .lifecycle import Lifecycle, Run
from .models import release_all


class Command:
    """A module started by `modelhost run` (world `command-module`): subclass it, then export it
    with `Lifecycle, Run = modelhost.export_command(MyCommand)`.

        class Classifier(modelhost.Command):
            name = "classifier"

            def __init__(self, settings: dict) -> None:
                self.requirement = modelhost.ModelRequirement.from_settings(settings)
                modelhost.register_model("classifier", self.requirement)

            def run(self) -> None:
                lines = list(modelhost.stdin_lines())
                for result in modelhost.classify("classifier", lines).results:
                    print(result.label)

        Lifecycle, Run = modelhost.export_command(Classifier)

    Attributes:
        name: the module's name, which starts its error messages on stderr.
    """

    name = "module"

    def __init__(self, settings: dict) -> None:
        """Called at `initialize` with the parsed settings (`{}` when there are none): registers
        the models and keeps what `run` needs. A `ModelhostError` is the error the host reports
        for the module's start; any other exception becomes code `internal`."""

    def run(self) -> None:
        """The module's work: read stdin, call models, write stdout. An exception makes the
        module exit with status 1 and `name: message` on stderr (see `Run`)."""
        raise NotImplementedError("override Command.run with the module's work")

    def cleanup(self) -> None:
        """Called before the module is dropped. The default releases every model registered
        through the SDK; an override should call `super().cleanup()`."""
        release_all()


def export_command(command: type[Command]) -> tuple[type[Lifecycle], type[Run]]:
    """The `Lifecycle` and `Run` export classes of `command`. Assign them to those two names in
    the app module, where componentize-py looks for them. `initialize` constructs `command` with
    the settings; `run` and `cleanup` call that object's methods."""
    started: list[Command] = []

    class CommandLifecycle(Lifecycle):
        """`command`'s `lifecycle` export."""

        def setup(self, settings: dict) -> None:
            if not started:  # `initialize` runs once per instance; a second call keeps the first
                started.append(command(settings))

        def cleanup(self) -> None:
            if started:
                started[0].cleanup()
            else:
                release_all()

    class CommandRun(Run):
        """`command`'s `wasi:cli/run` export."""

        name = command.name

        def main(self) -> None:
            if not started:
                sys.exit("not initialized; start it with `modelhost run`")
            started[0].run()

    return CommandLifecycle, CommandRun


def stdin_lines() -> Iterator[str]:
    """The lines of stdin as they arrive, decoded as UTF-8, without their line ends (`\\n` or
    `\\r\\n`)."""
    for line in sys.stdin.buffer:
        if line.endswith(b"\n"):
            line = line[:-1].removesuffix(b"\r")
        yield line.decode("utf-8")
