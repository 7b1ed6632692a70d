"""python-embeddings: a modelhost HTTP module written in Python (built with componentize-py).

`initialize` registers one embedding model under the id "embedder"; `POST /embed` with
`{"texts": ["...", ...]}` answers `{"model": ..., "dimension": n, "embeddings": [[...], ...]}`.
Settings (optional): `{"model": "org/name", "dimension": 384}`.

Every request runs in a fresh instance that shares the module's identity, so the handler uses
the id registered at `initialize` and keeps no state of its own.

Usage: list it as a `[[modules]]` entry with a route (see `modelhost.toml`) and run
`modelhost serve`; then `curl -s localhost:8080/python/embed -d '{"texts": ["hello"]}'`.
"""

import json

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

import modelhost

MODEL_ID = "embedder"
MAX_BODY_BYTES = 8 << 20

DEFAULTS = {"model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": None}

#: HTTP statuses of the error codes that are the client's doing (or a retry's); others are 500.
ERROR_STATUS = {"invalid-input": 400, "not-registered": 404, "overloaded": 429, "timeout": 504}


class Lifecycle(modelhost.Lifecycle):
    """Registers the embedding model, loaded by one worker before the first request."""

    def setup(self, settings: dict) -> None:
        config = modelhost.read_settings(settings, DEFAULTS)
        requirement = modelhost.ModelRequirement.embedding(
            config["model"], config["dimension"], preload_workers=1)
        modelhost.register_model(MODEL_ID, requirement)


def read_body(request: IncomingRequest) -> bytes:
    """The request's body, at most `MAX_BODY_BYTES`."""
    body = request.consume()
    data = bytearray()
    with body.stream() as stream:
        while True:
            try:
                data += stream.blocking_read(65536)
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    break
                raise
            if len(data) > MAX_BODY_BYTES:
                raise ValueError("the request body is over 8 MiB")
    return bytes(data)


def respond(response_out: ResponseOutparam, status: int, payload) -> None:
    """Sends `payload` as a JSON response with `status`."""
    data = json.dumps(payload).encode()
    headers = Fields.from_list([("content-type", b"application/json"),
                                ("content-length", str(len(data)).encode())])
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as stream:
        for start in range(0, len(data), 4096):
            stream.blocking_write_and_flush(data[start:start + 4096])
    OutgoingBody.finish(body, None)


def embed(request: IncomingRequest):
    """The status and JSON answer to `request`."""
    if request.path_with_query().split("?")[0] != "/embed":
        return 404, {"error": "this module serves POST /embed"}
    if not isinstance(request.method(), Method_Post):
        return 405, {"error": "use POST for /embed"}
    try:
        texts = json.loads(read_body(request))["texts"]
    except (ValueError, KeyError, TypeError) as e:
        return 400, {"error": f'expected {{"texts": ["...", ...]}}: {e}'}
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return 400, {"error": '"texts" must be a list of strings'}
    try:
        result = modelhost.generate_embeddings(MODEL_ID, texts)
    except modelhost.ModelhostError as e:
        return ERROR_STATUS.get(e.code, 500), {"error": e.message}
    return 200, {"model": result.model_id, "dimension": result.dimension,
                 "embeddings": result.embeddings}


class IncomingHandler(exports.IncomingHandler):
    """The `wasi:http/incoming-handler` export: serves `POST /embed`."""

    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        """Answers one request."""
        status, payload = embed(request)
        respond(response_out, status, payload)
