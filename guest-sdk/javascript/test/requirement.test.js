// ModelRequirement and GenerationOptions read from settings: the Rust types' fields, defaults and
// errors, and the WIT records they become.

import assert from "node:assert/strict";
import { test } from "node:test";

import { GenerationOptions, ModelhostError, ModelRequirement } from "../src/index.js";
import { optionsToWit } from "../src/options.js";
import { requirementToWit } from "../src/requirement.js";

/** Asserts that `call` throws an invalid-requirement error whose message contains `needle`. */
function assertInvalid(call, needle) {
  assert.throws(call, (error) => {
    assert.ok(error instanceof ModelhostError, String(error));
    assert.equal(error.code, "invalid-requirement");
    assert.ok(error.message.includes(needle), `"${error.message}" should mention ${needle}`);
    return true;
  });
}

test("a requirement takes the specification's defaults", () => {
  const r = ModelRequirement.fromSettings({ model_type: "embedding", name: "org/model" });
  assert.deepEqual(
    { ...r },
    {
      model_type: "embedding",
      name: "org/model",
      revision: null,
      device: "auto",
      dimension: null,
      batch_size: null,
      cache_embeddings: true,
      max_input_length: null,
      max_output_length: null,
      temperature: null,
      top_k: null,
      top_p: null,
      repetition_penalty: null,
      streaming: false,
      num_labels: null,
      threshold: null,
      preload_workers: 0,
      weights_file: null,
      precision: "exact",
    },
  );
  assert.ok(r instanceof ModelRequirement);
  assert.deepEqual({ ...new ModelRequirement("embedding", "org/model") }, { ...r });
  assert.equal(ModelRequirement.embedding("org/model", 384).dimension, 384);
});

test("a requirement becomes the WIT record", () => {
  const r = ModelRequirement.fromSettings({
    model_type: "text_generation",
    name: "org/model",
    device: "cuda:1",
    max_output_length: 16,
    temperature: 0,
    precision: "fast",
  });
  assert.equal(r.model_type, "text-generation");
  const wit = requirementToWit(r);
  assert.deepEqual(wit.device, { tag: "cuda-ordinal", val: 1 });
  assert.equal(wit.modelType, "text-generation");
  assert.equal(wit.maxOutputLength, 16);
  assert.equal(wit.temperature, 0);
  assert.equal(wit.dimension, undefined);
  assert.equal(wit.cacheEmbeddings, true);
  assert.equal(wit.precision, "fast");
  assert.deepEqual(requirementToWit({ model_type: "embedding", name: "m", device: "cpu" }).device, {
    tag: "cpu",
  });
});

test("a requirement names the field that is unknown, missing or of the wrong type", () => {
  const base = { model_type: "embedding", name: "org/model" };
  assertInvalid(() => ModelRequirement.fromSettings({ ...base, dimensions: 3 }), "`dimensions`");
  assertInvalid(() => ModelRequirement.fromSettings({ model_type: "embedding" }), "`name`");
  assertInvalid(() => ModelRequirement.fromSettings({ name: "m" }), "`model_type`");
  assertInvalid(
    () => ModelRequirement.fromSettings({ ...base, model_type: "vision" }),
    "`model_type`",
  );
  assertInvalid(() => ModelRequirement.fromSettings({ ...base, dimension: "384" }), "`dimension`");
  assertInvalid(() => ModelRequirement.fromSettings({ ...base, dimension: -1 }), "`dimension`");
  assertInvalid(() => ModelRequirement.fromSettings({ ...base, batch_size: 1.5 }), "`batch_size`");
  assertInvalid(() => ModelRequirement.fromSettings({ ...base, device: "tpu" }), "`device`");
  assertInvalid(() => ModelRequirement.fromSettings({ ...base, device: null }), "`device`");
  assertInvalid(() => ModelRequirement.fromSettings({ ...base, streaming: "yes" }), "`streaming`");
  assertInvalid(
    () => ModelRequirement.fromSettings({ ...base, temperature: "hot" }),
    "`temperature`",
  );
  assertInvalid(() => ModelRequirement.fromSettings("org/model"), "expected an object");
  assert.equal(ModelRequirement.fromSettings({ ...base, revision: null }).revision, null);
});

test("generation options default to nothing and become the WIT record", () => {
  assert.deepEqual(
    { ...new GenerationOptions() },
    {
      max_output_length: null,
      temperature: null,
      top_k: null,
      top_p: null,
      repetition_penalty: null,
      seed: null,
      stop: [],
    },
  );
  const wit = optionsToWit({ max_output_length: 8, seed: 7, stop: ["\n"] });
  assert.equal(wit.maxOutputLength, 8);
  assert.equal(wit.seed, 7n);
  assert.deepEqual(wit.stop, ["\n"]);
  assert.equal(wit.temperature, undefined);
  assert.equal(optionsToWit(undefined), undefined);
  assertInvalid(() => GenerationOptions.fromSettings({ max_tokens: 8 }), "`max_tokens`");
  assertInvalid(() => GenerationOptions.fromSettings({ stop: "\n" }), "`stop`");
  assertInvalid(() => GenerationOptions.fromSettings({ seed: -1 }), "`seed`");
});
