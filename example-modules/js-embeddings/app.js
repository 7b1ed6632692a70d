// js-embeddings: a modelhost HTTP module in JavaScript (world `http-module`, served by
// `modelhost serve`), written with the `@modelhost/guest` SDK.
//
// `initialize` registers one embedding model under the id "embedder" (loaded at once);
//   POST /embed   {"texts": ["...", ...]} answers
//                 {"model": ..., "dimension": n, "embeddings": [[...], ...]};
//   GET /models   answers the module's registered ids:
//                 {"models": [{"id": ..., "model_name": ..., "model_type": ..., "loaded": true}]}.
//
// Settings (optional): {"model": "org/name", "dimension": 384}; the default model is
// sentence-transformers/all-MiniLM-L6-v2. Usage: a `[[modules]]` entry of `modelhost serve`
// (see modelhost.toml) with `route = "/js"`, then `curl -d '{"texts": ["hi"]}' HOST/js/embed`.
//
// Every request runs in a fresh instance that shares the module's identity, so the handlers use
// the id registered at `initialize` and keep no state of their own.

import {
  defineLifecycle,
  generateEmbeddings,
  listModels,
  ModelhostError,
  ModelRequirement,
  registerModel,
} from "@modelhost/guest";
import { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } from "wasi:http/types@0.2.12";

const MODEL_ID = "embedder";
const DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2";
const MAX_BODY_BYTES = 8 << 20;

/** HTTP statuses of the error codes a request can cause; the rest are 500. */
const ERROR_STATUS = {
  "invalid-input": 400,
  "not-registered": 404,
  overloaded: 429,
  timeout: 504,
};

/** The paths this module answers: the method each takes and the function that answers it. */
const ROUTES = new Map([
  ["/embed", { method: "post", answer: embed }],
  ["/models", { method: "get", answer: models }],
]);

/** Registers the embedding model (loaded at once); the default cleanup releases it. */
export const lifecycle = defineLifecycle({
  setup(settings) {
    const requirement = ModelRequirement.embedding(
      settings.model ?? DEFAULT_MODEL,
      settings.dimension,
    );
    requirement.preload_workers = 1;
    registerModel(MODEL_ID, requirement);
  },
});

/** The `wasi:http` handler: one JSON answer per request. */
export const incomingHandler = {
  handle(request, responseOut) {
    const [status, payload] = route(request);
    respond(responseOut, status, payload);
  },
};

/** The status and JSON answer of one request. */
function route(request) {
  const path = (request.pathWithQuery() ?? "").split("?")[0];
  const entry = ROUTES.get(path);
  if (!entry) return [404, { error: "this module serves POST /embed and GET /models" }];
  if (request.method().tag !== entry.method) {
    return [405, { error: `use ${entry.method.toUpperCase()} for ${path}` }];
  }
  try {
    return entry.answer(request);
  } catch (error) {
    if (!(error instanceof ModelhostError)) throw error;
    return [ERROR_STATUS[error.code] ?? 500, { error: error.message }];
  }
}

/** POST /embed: the vectors of {"texts": [...]}. */
function embed(request) {
  let texts;
  try {
    texts = JSON.parse(readBody(request)).texts;
  } catch (e) {
    return [400, { error: `expected {"texts": ["...", ...]}: ${e.message}` }];
  }
  if (!Array.isArray(texts) || !texts.every((t) => typeof t === "string")) {
    return [400, { error: '"texts" must be a list of strings' }];
  }
  const result = generateEmbeddings(MODEL_ID, texts);
  return [
    200,
    {
      model: result.modelId,
      dimension: result.dimension,
      embeddings: result.embeddings.map((v) => Array.from(v)),
    },
  ];
}

/** GET /models: the ids this module registered. */
function models() {
  return [
    200,
    {
      models: listModels().map((model) => ({
        id: model.modelId,
        model_name: model.modelName,
        model_type: model.modelType,
        loaded: model.loaded,
      })),
    },
  ];
}

/** The request body as text, refused past MAX_BODY_BYTES. */
function readBody(request) {
  const body = request.consume();
  const stream = body.stream();
  const chunks = [];
  let length = 0;
  for (;;) {
    let chunk;
    try {
      chunk = stream.blockingRead(65536n);
    } catch (e) {
      if (e.payload?.tag === "closed") break;
      throw e;
    }
    chunks.push(chunk);
    length += chunk.length;
    if (length > MAX_BODY_BYTES) throw new Error("the request body is over 8 MiB");
  }
  stream[Symbol.dispose]();
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return new TextDecoder().decode(bytes);
}

/** Sends `payload` as the JSON body of a `status` response. */
function respond(responseOut, status, payload) {
  const data = new TextEncoder().encode(JSON.stringify(payload));
  const headers = Fields.fromList([
    ["content-type", new TextEncoder().encode("application/json")],
    ["content-length", new TextEncoder().encode(String(data.length))],
  ]);
  const response = new OutgoingResponse(headers);
  response.setStatusCode(status);
  const body = response.body();
  ResponseOutparam.set(responseOut, { tag: "ok", val: response });
  const stream = body.write();
  for (let start = 0; start < data.length; start += 4096) {
    stream.blockingWriteAndFlush(data.subarray(start, start + 4096));
  }
  stream[Symbol.dispose]();
  OutgoingBody.finish(body, undefined);
}
