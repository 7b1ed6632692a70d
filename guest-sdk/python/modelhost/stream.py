"""`TextStream`: generated text as it is produced."""

from types import TracebackType

from ._bindings import Err, wit
from .errors import error_from_wit
from .results import FinishReason, StreamUsage


class TextStream:
    """Generated text as it is produced, from `stream_text` or `stream_chat`.

    Iterate it for the pieces (str, whole characters, in order); a failure while generating
    raises `ModelhostError`. After the last piece `finish_reason` tells why generation ended and
    `usage` how many tokens the prompt had and were generated.
    Use it in a `with` block (or call `close`) to stop a generation that is not read to the end:
    closing drops the host's stream, which stops the generation.

        with modelhost.stream_chat("chat", messages) as stream:
            for piece in stream:
                print(piece, end="", flush=True)
        print(stream.finish_reason)

    Attributes:
        finish_reason: a `FinishReason` once the stream has ended normally, None before.
        usage: a `StreamUsage` (prompt_tokens, tokens_generated) once the stream has ended
            normally, None before.
    """

    def __init__(self, stream: wit.TextStream):
        self._stream: wit.TextStream | None = stream
        self.finish_reason: FinishReason | None = None
        self.usage: StreamUsage | None = None

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        if self._stream is None:
            raise StopIteration
        try:
            event = self._stream.next()
        except Err as failure:
            self.close()
            raise error_from_wit(failure.value) from None
        if isinstance(event, wit.StreamEvent_Text):
            return event.value
        self.finish_reason = event.value
        self.usage = self._stream.usage()
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Drops the host's stream, stopping the generation if it still runs. Closing twice is
        harmless."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.__exit__(None, None, None)

    def __enter__(self) -> "TextStream":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
