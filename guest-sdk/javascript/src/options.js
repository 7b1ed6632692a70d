// `GenerationOptions`: per-call overrides of a requirement's generation settings, with the fields
// and defaults of the settings format (the Rust `modelhost_types::GenerationOptions`), and their
// conversion to the WIT `generation-options` record.

import { kinds, readFields } from "./fields.js";

/** The fields of generation options in settings; every one may be left out. */
const FIELDS = {
  max_output_length: { kind: kinds.u32, optional: true },
  temperature: { kind: kinds.f32, optional: true },
  top_k: { kind: kinds.u32, optional: true },
  top_p: { kind: kinds.f32, optional: true },
  repetition_penalty: { kind: kinds.f32, optional: true },
  seed: { kind: kinds.u64, optional: true },
  stop: { kind: kinds.strings, default: [] },
};

/**
 * Per-call overrides of the requirement's generation settings. Every field defaults to the
 * requirement's (then the host's: greedy, 256 tokens); `stop` lists strings that end generation.
 */
export class GenerationOptions {
  /** Options that override nothing. */
  constructor() {
    Object.assign(this, readFields({}, FIELDS, "the generation options"));
  }

  /**
   * Reads options from settings (a parsed JSON object, or other options). Unknown fields and
   * values of the wrong type throw a `ModelhostError` with code "invalid-requirement" that names
   * the field.
   * @param {unknown} settings
   * @returns {GenerationOptions}
   */
  static fromSettings(settings) {
    const options = Object.create(GenerationOptions.prototype);
    return Object.assign(options, readFields(settings, FIELDS, "the generation options"));
  }
}

/**
 * The WIT `generation-options` record for options (or a settings object), checked first;
 * `undefined` (no options) stays `undefined`.
 * @param {unknown} options
 */
export function optionsToWit(options) {
  if (options === undefined) return undefined;
  const o = /** @type {Record<string, any>} */ (GenerationOptions.fromSettings(options));
  return {
    maxOutputLength: o.max_output_length ?? undefined,
    temperature: o.temperature ?? undefined,
    topK: o.top_k ?? undefined,
    topP: o.top_p ?? undefined,
    repetitionPenalty: o.repetition_penalty ?? undefined,
    seed: o.seed === null ? undefined : BigInt(o.seed),
    stop: o.stop,
  };
}
