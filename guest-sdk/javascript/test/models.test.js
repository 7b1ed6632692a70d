// Calls through the SDK: arguments checked, host errors turned into ModelhostError, and every
// registered reference released by releaseAll.

import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import {
  embed,
  generateEmbeddings,
  generateText,
  ModelhostError,
  registerModel,
  releaseAll,
  releaseModel,
} from "../src/index.js";
import { host } from "./fakes/model-manager.js";

const REQUIREMENT = { model_type: "embedding", name: "org/model", dimension: 3 };

beforeEach(() => host.reset());

test("releaseAll gives back one reference per successful registration", () => {
  registerModel("a", REQUIREMENT);
  registerModel("a", REQUIREMENT);
  registerModel("b", REQUIREMENT);
  host.replies.registerModel = { error: { code: "conflict", message: "differs" } };
  assert.throws(() => registerModel("c", REQUIREMENT), { code: "conflict" });
  releaseModel("b");
  host.replies.releaseModel = { error: { code: "not-registered", message: "gone" } };
  releaseAll();
  const released = host.calls.filter((c) => c.name === "releaseModel").map((c) => c.args[0]);
  assert.deepEqual(released, ["b", "a", "a"]);
  host.calls = [];
  releaseAll();
  assert.deepEqual(host.calls, []);
});

test("host errors become ModelhostError with the WIT code, message and details", () => {
  host.replies.generateEmbeddings = {
    error: { code: "model-not-found", message: "not in the store", details: "org/model" },
  };
  assert.throws(
    () => generateEmbeddings("e", ["x"]),
    (error) => {
      assert.ok(error instanceof ModelhostError);
      assert.deepEqual(
        [error.code, error.message, error.details],
        ["model-not-found", "not in the store", "org/model"],
      );
      assert.equal(String(error), "model-not-found: not in the store (org/model)");
      return true;
    },
  );
});

test("arguments of the wrong type are invalid input, never sent", () => {
  assert.throws(() => generateEmbeddings("e", "one text"), { code: "invalid-input" });
  assert.throws(() => generateEmbeddings("e", ["a", 2]), {
    code: "invalid-input",
    message: /texts\[1\]/,
  });
  assert.throws(() => generateText(7, "prompt"), { code: "invalid-input", message: /modelId/ });
  assert.deepEqual(host.calls, []);
});

test("embed returns the one vector", () => {
  host.replies.generateEmbeddings = { embeddings: [new Float32Array([1, 2, 3])] };
  assert.deepEqual(Array.from(embed("e", "x")), [1, 2, 3]);
  assert.deepEqual(host.calls[0].args, ["e", ["x"]]);
});

test("generation options are passed as the WIT record, or not at all", () => {
  host.replies.generateText = { text: "out" };
  generateText("g", "prompt");
  generateText("g", "prompt", { max_output_length: 4 });
  assert.equal(host.calls[0].args[2], undefined);
  assert.equal(host.calls[1].args[2].maxOutputLength, 4);
});
