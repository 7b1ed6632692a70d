// js-embeddings: a modelhost HTTP module written in JavaScript (built with componentize-js).
//
// `initialize` registers one embedding model under the id "embedder"; `POST /embed` with
// {"texts": ["...", ...]} answers {"model": ..., "dimension": n, "embeddings": [[...], ...]}.
// Settings (optional): {"model": "org/name", "dimension": 384}.
//
// Every request runs in a fresh instance that shares the module's identity, so the handler uses
// the id registered at `initialize` and keeps no state of its own.

import {
  generateEmbeddings,
  registerModel,
  releaseModel,
} from "modelhost:models/model-manager@0.1.0";
import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from "wasi:http/types@0.2.12";

const MODEL_ID = "embedder";
const DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2";
const MAX_BODY_BYTES = 8 << 20;

/** An embedding requirement with the host's defaults for everything else. */
function requirement(name, dimension) {
  return {
    modelType: "embedding",
    name,
    device: { tag: "auto" },
    dimension,
    cacheEmbeddings: true,
    streaming: false,
    preloadWorkers: 1,
    precision: "exact",
  };
}

export const lifecycle = {
  initialize(settings) {
    const config = settings.trim() ? JSON.parse(settings) : {};
    registerModel(MODEL_ID, requirement(config.model ?? DEFAULT_MODEL, config.dimension));
  },
  cleanup() {
    try {
      releaseModel(MODEL_ID);
    } catch {
      // Already released; the host drops what is left anyway.
    }
  },
};

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

const ERROR_STATUS = {
  "invalid-input": 400,
  "not-registered": 404,
  overloaded: 429,
  timeout: 504,
};

function embed(request) {
  const path = (request.pathWithQuery() ?? "").split("?")[0];
  if (path !== "/embed") return [404, { error: "this module serves POST /embed" }];
  if (request.method().tag !== "post") return [405, { error: "use POST for /embed" }];
  let texts;
  try {
    texts = JSON.parse(readBody(request)).texts;
  } catch (e) {
    return [400, { error: `expected {"texts": ["...", ...]}: ${e.message}` }];
  }
  if (!Array.isArray(texts) || !texts.every((t) => typeof t === "string")) {
    return [400, { error: '"texts" must be a list of strings' }];
  }
  try {
    const result = generateEmbeddings(MODEL_ID, texts);
    return [200, {
      model: result.modelId,
      dimension: result.dimension,
      embeddings: result.embeddings.map((v) => Array.from(v)),
    }];
  } catch (e) {
    const error = e.payload ?? { code: "internal", message: String(e) };
    return [ERROR_STATUS[error.code] ?? 500, { error: error.message }];
  }
}

export const incomingHandler = {
  handle(request, responseOut) {
    const [status, payload] = embed(request);
    respond(responseOut, status, payload);
  },
};
