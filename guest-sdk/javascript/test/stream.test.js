// TextStream: iteration with for...of and for await...of, the finish reason and usage, errors,
// and the host's stream dropped when generation ends, a loop is left early, or it is disposed.

import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { streamChat, streamText } from "../src/index.js";
import { fakeStream, host } from "./fakes/model-manager.js";

beforeEach(() => host.reset());

test("for...of hands out every piece, then the finish reason", () => {
  const resource = fakeStream(["Par", "is"], "end-of-sequence");
  host.replies.streamText = resource;
  const stream = streamText("g", "The capital of France is");
  assert.equal(stream.finishReason, undefined);
  assert.equal(stream.usage, undefined);
  assert.deepEqual([...stream], ["Par", "is"]);
  assert.equal(stream.finishReason, "end-of-sequence");
  assert.deepEqual(stream.usage, { promptTokens: 5, tokensGenerated: 2 });
  assert.ok(resource.dropped);
  assert.deepEqual([...stream], []);
});

test("for await...of hands out the same pieces", async () => {
  host.replies.streamChat = fakeStream(["a", "b", "c"], "length");
  const stream = streamChat("g", [{ role: "user", content: "hi" }], { max_output_length: 3 });
  const pieces = [];
  for await (const piece of stream) pieces.push(piece);
  assert.deepEqual(pieces, ["a", "b", "c"]);
  assert.equal(stream.finishReason, "length");
});

test("leaving the loop or disposing the stream drops the host's stream", () => {
  const resource = fakeStream(["a", "b"], "length");
  host.replies.streamText = resource;
  for (const piece of streamText("g", "p")) {
    assert.equal(piece, "a");
    break;
  }
  assert.ok(resource.dropped);
  const second = fakeStream(["a"], "length");
  host.replies.streamText = second;
  streamText("g", "p")[Symbol.dispose]();
  assert.ok(second.dropped);
});

test("an error while streaming is a ModelhostError and ends the stream", () => {
  const resource = fakeStream(["a"], "length");
  resource.next = () => {
    throw Object.assign(new Error("failed"), {
      payload: { code: "inference-failed", message: "boom" },
    });
  };
  host.replies.streamText = resource;
  const stream = streamText("g", "p");
  assert.throws(() => stream.next(), { code: "inference-failed", message: "boom" });
  assert.ok(resource.dropped);
  assert.equal(stream.next().done, true);
});
