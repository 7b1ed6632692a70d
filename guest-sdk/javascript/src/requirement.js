// `ModelRequirement`: what a module asks of one model, with the fields, spellings and defaults of
// the settings format (the Rust `modelhost_types::ModelRequirement`), and its conversion to the WIT
// `model-requirement` record.

import { kinds, oneOf, readFields } from "./fields.js";

/** The model types, as settings write them. */
export const MODEL_TYPES = Object.freeze([
  "embedding",
  "text2text",
  "text-generation",
  "classification",
]);

/** `"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"`. */
const device = {
  expected: '"auto", "cpu", "cuda" or "cuda:N"',
  accepts: (v) =>
    typeof v === "string" &&
    (["auto", "cpu", "cuda"].includes(v) ||
      (/^cuda:\d+$/.test(v) && Number(v.slice(5)) <= 4294967295)),
};

/** The fields of a requirement in settings, with their defaults. */
const FIELDS = {
  model_type: { kind: oneOf(MODEL_TYPES, { text_generation: "text-generation" }), required: true },
  name: { kind: kinds.string, required: true },
  revision: { kind: kinds.string, optional: true },
  device: { kind: device, default: "auto" },
  dimension: { kind: kinds.u32, optional: true },
  batch_size: { kind: kinds.u32, optional: true },
  cache_embeddings: { kind: kinds.bool, default: true },
  max_input_length: { kind: kinds.u32, optional: true },
  max_output_length: { kind: kinds.u32, optional: true },
  temperature: { kind: kinds.f32, optional: true },
  top_k: { kind: kinds.u32, optional: true },
  top_p: { kind: kinds.f32, optional: true },
  repetition_penalty: { kind: kinds.f32, optional: true },
  streaming: { kind: kinds.bool, default: false },
  num_labels: { kind: kinds.u32, optional: true },
  threshold: { kind: kinds.f32, optional: true },
  preload_workers: { kind: kinds.u32, default: 0 },
  weights_file: { kind: kinds.string, optional: true },
  precision: { kind: oneOf(["exact", "fast"]), default: "exact" },
};

/**
 * Everything a module asks of one model. The fields are those of the settings JSON (snake_case);
 * only `model_type` and `name` are required, the rest default as the host's specification says
 * (`null` means "the host's or the model's default"). The host checks the values (ranges, the
 * model's files) when the requirement is registered.
 */
export class ModelRequirement {
  /**
   * A requirement of `model_type` for `name`, every other field at its default.
   * @param {string} model_type "embedding", "text2text", "text-generation" or "classification"
   * @param {string} name Hugging Face repository id, e.g. "sentence-transformers/all-MiniLM-L6-v2"
   */
  constructor(model_type, name) {
    Object.assign(this, readFields({ model_type, name }, FIELDS, "the model requirement"));
  }

  /**
   * Reads a requirement from settings (a parsed JSON object, or another requirement). Unknown
   * fields, missing required fields and values of the wrong type throw a `ModelhostError` with
   * code "invalid-requirement" that names the field.
   * @param {unknown} settings
   * @returns {ModelRequirement}
   */
  static fromSettings(settings) {
    const requirement = Object.create(ModelRequirement.prototype);
    return Object.assign(requirement, readFields(settings, FIELDS, "the model requirement"));
  }

  /**
   * An embedding model `name` producing vectors of `dimension` (checked at registration; left
   * out or null, any size is taken).
   * @param {string} name
   * @param {number | null} [dimension]
   * @returns {ModelRequirement}
   */
  static embedding(name, dimension) {
    return ModelRequirement.fromSettings({ model_type: "embedding", name, dimension });
  }
}

/**
 * The WIT `model-requirement` record for a requirement (or settings object), checked first.
 * @param {unknown} requirement
 */
export function requirementToWit(requirement) {
  const r = /** @type {Record<string, any>} */ (ModelRequirement.fromSettings(requirement));
  return {
    modelType: r.model_type,
    name: r.name,
    revision: r.revision ?? undefined,
    device: deviceToWit(r.device),
    dimension: r.dimension ?? undefined,
    batchSize: r.batch_size ?? undefined,
    cacheEmbeddings: r.cache_embeddings,
    maxInputLength: r.max_input_length ?? undefined,
    maxOutputLength: r.max_output_length ?? undefined,
    temperature: r.temperature ?? undefined,
    topK: r.top_k ?? undefined,
    topP: r.top_p ?? undefined,
    repetitionPenalty: r.repetition_penalty ?? undefined,
    streaming: r.streaming,
    numLabels: r.num_labels ?? undefined,
    threshold: r.threshold ?? undefined,
    preloadWorkers: r.preload_workers,
    weightsFile: r.weights_file ?? undefined,
    precision: r.precision,
  };
}

/** The WIT `device` variant of a settings device string. */
function deviceToWit(text) {
  if (text.startsWith("cuda:")) return { tag: "cuda-ordinal", val: Number(text.slice(5)) };
  return { tag: text };
}
