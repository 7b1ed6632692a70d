"""python-embeddings: a modelhost HTTP module written in Python (built with componentize-py).

`initialize` registers one embedding model under the id "embedder"; `POST /embed` with
`{"texts": ["...", ...]}` answers `{"model": ..., "dimension": n, "embeddings": [[...], ...]}`.
Settings (optional): `{"model": "org/name", "dimension": 384}`.

Every request runs in a fresh instance that shares the module's identity, so the handler uses
the id registered at `initialize` and keeps no state of its own.
"""

import json

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import model_manager
from wit_world.imports import modelhost_models_types as models
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

MODEL_ID = "embedder"
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_BODY_BYTES = 8 << 20


def requirement(name, dimension):
    """An embedding requirement with the host's defaults for everything else."""
    return models.ModelRequirement(
        model_type=models.ModelType.EMBEDDING, name=name, revision=None,
        device=models.Device_Auto(), dimension=dimension, batch_size=None,
        cache_embeddings=True, max_input_length=None, max_output_length=None,
        temperature=None, top_k=None, top_p=None, repetition_penalty=None,
        streaming=False, num_labels=None, threshold=None, preload_workers=1,
        weights_file=None, precision=models.Precision.EXACT)


class Lifecycle(exports.Lifecycle):
    def initialize(self, settings: str) -> None:
        config = json.loads(settings) if settings.strip() else {}
        model_manager.register_model(
            MODEL_ID, requirement(config.get("model", DEFAULT_MODEL), config.get("dimension")))

    def cleanup(self) -> None:
        try:
            model_manager.release_model(MODEL_ID)
        except Err:
            pass


def read_body(request: IncomingRequest) -> bytes:
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


def error_status(code) -> int:
    return {models.ErrorCode.INVALID_INPUT: 400, models.ErrorCode.NOT_REGISTERED: 404,
            models.ErrorCode.OVERLOADED: 429, models.ErrorCode.TIMEOUT: 504}.get(code, 500)


def embed(request: IncomingRequest):
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
        result = model_manager.generate_embeddings(MODEL_ID, texts)
    except Err as e:
        return error_status(e.value.code), {"error": e.value.message}
    return 200, {"model": result.model_id, "dimension": result.dimension,
                 "embeddings": result.embeddings}


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        status, payload = embed(request)
        respond(response_out, status, payload)
