// Registering and releasing models, embeddings, classification and status: calls into the host's
// `model-manager`, with every reference this module registers remembered so that `releaseAll` can
// give each one back.

import * as host from "modelhost:models/model-manager@0.1.0";

import { stringArgument, stringsArgument } from "./arguments.js";
import { callHost, ModelhostError } from "./errors.js";
import { requirementToWit } from "./requirement.js";

/** Model ids this module holds references to, one entry per reference. */
const held = [];

/**
 * Registers `modelId` with `requirement` (or adds a reference to it). The host verifies the
 * model's files now, so a missing or mismatched model fails here, not at first use.
 * @param {string} modelId
 * @param {import("./requirement.js").ModelRequirement | object} requirement a `ModelRequirement`
 *   or a settings object in its format
 */
export function registerModel(modelId, requirement) {
  stringArgument(modelId, "modelId");
  const wit = requirementToWit(requirement);
  const registration = callHost(() => host.registerModel(modelId, wit));
  held.push(modelId);
  return registration;
}

/**
 * Drops one reference to `modelId`.
 * @param {string} modelId
 */
export function releaseModel(modelId) {
  stringArgument(modelId, "modelId");
  const release = callHost(() => host.releaseModel(modelId));
  const at = held.indexOf(modelId);
  if (at >= 0) held.splice(at, 1);
  return release;
}

/** Releases every reference registered through this SDK and not yet released. */
export function releaseAll() {
  for (const modelId of held.splice(0)) {
    try {
      host.releaseModel(modelId);
    } catch {
      // A reference the host already dropped is not worth reporting at cleanup.
    }
  }
}

/**
 * Embeds `texts` with the embedding model registered as `modelId`; vectors come back in input
 * order.
 * @param {string} modelId
 * @param {string[]} texts
 */
export function generateEmbeddings(modelId, texts) {
  stringArgument(modelId, "modelId");
  stringsArgument(texts, "texts");
  return callHost(() => host.generateEmbeddings(modelId, texts));
}

/**
 * The vector of one text, from the embedding model registered as `modelId`.
 * @param {string} modelId
 * @param {string} text
 * @returns {Float32Array}
 */
export function embed(modelId, text) {
  stringArgument(text, "text");
  const [vector] = generateEmbeddings(modelId, [text]).embeddings;
  if (!vector)
    throw new ModelhostError("inference-failed", "the host returned no vector for one text");
  return vector;
}

/**
 * Scores the labels of each text with the classification model registered as `modelId`.
 * @param {string} modelId
 * @param {string[]} texts
 */
export function classify(modelId, texts) {
  stringArgument(modelId, "modelId");
  stringsArgument(texts, "texts");
  return callHost(() => host.classify(modelId, texts));
}

/**
 * The model ids this module holds, with their status, sorted by id. An HTTP handler runs in a
 * fresh instance per request: this is how it learns what `initialize` registered.
 */
export function listModels() {
  return callHost(() => host.listModels());
}

/** The host's workers, cache, registered models and references. */
export function serviceStatus() {
  return callHost(() => host.getServiceStatus());
}
