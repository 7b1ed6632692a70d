// Reading settings objects (snake_case JSON) field by field with the rules of the Rust
// `modelhost-types` structs: unknown fields, missing required fields and values of the wrong type
// are `invalid-requirement` errors that name the field.

import { ModelhostError } from "./errors.js";

const U32_MAX = 4294967295;
const U64_MAX = 18446744073709551615n;

/** `value` as messages show it. */
function describe(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "object") return "an object";
  return String(value);
}

/** The names of `fields`, for messages. */
function list(fields) {
  return Object.keys(fields).join(", ");
}

/** The invalid-requirement error of `what` (e.g. "the model requirement"). */
function invalid(what, message) {
  return new ModelhostError("invalid-requirement", `${what} is not valid: ${message}`);
}

/**
 * A field kind: which values a field takes, and what is kept of them.
 * @typedef {object} Kind
 * @property {string} expected what the field takes, for messages
 * @property {(value: unknown) => boolean} accepts whether `value` is one
 * @property {(value: any) => unknown} [read] the value to keep (default: `value` itself)
 */

/** @type {Record<string, Kind>} */
export const kinds = {
  string: { expected: "a string", accepts: (v) => typeof v === "string" },
  bool: { expected: "true or false", accepts: (v) => typeof v === "boolean" },
  u32: {
    expected: `a whole number from 0 to ${U32_MAX}`,
    accepts: (v) => Number.isInteger(v) && v >= 0 && v <= U32_MAX,
  },
  u64: {
    expected: "a whole number from 0 to 2^64 - 1",
    accepts: (v) =>
      (Number.isSafeInteger(v) && v >= 0) || (typeof v === "bigint" && v >= 0n && v <= U64_MAX),
  },
  f32: { expected: "a number", accepts: (v) => typeof v === "number" },
  strings: {
    expected: "a list of strings",
    accepts: (v) => Array.isArray(v) && v.every((s) => typeof s === "string"),
    read: (v) => [...v],
  },
};

/**
 * A kind that accepts one of `values` (after `aliases` map other spellings onto them).
 * @param {readonly string[]} values
 * @param {Record<string, string>} [aliases]
 * @returns {Kind}
 */
export function oneOf(values, aliases = {}) {
  return {
    expected: values.map((v) => JSON.stringify(v)).join(", "),
    accepts: (v) => typeof v === "string" && (values.includes(v) || Object.hasOwn(aliases, v)),
    read: (v) => (Object.hasOwn(aliases, v) ? aliases[v] : v),
  };
}

/**
 * One field of a settings object.
 * @typedef {{ kind: Kind, required?: boolean, optional?: boolean, default?: unknown }} Field
 */

/**
 * Reads `settings` with `fields`: every field of `fields` comes back, given or defaulted. A field
 * marked `optional` may be absent or null (then it is null); a `required` one must be given; any
 * other one takes its `default` when absent.
 * @param {unknown} settings the parsed JSON
 * @param {Record<string, Field>} fields
 * @param {string} what the object's name in messages, e.g. "the model requirement"
 * @returns {Record<string, unknown>}
 */
export function readFields(settings, fields, what) {
  if (settings === null || typeof settings !== "object" || Array.isArray(settings)) {
    throw invalid(
      what,
      `expected an object with the fields ${list(fields)}, not ${describe(settings)}`,
    );
  }
  for (const name of Object.keys(settings)) {
    if (!Object.hasOwn(fields, name)) {
      throw invalid(what, `unknown field \`${name}\`; the fields are ${list(fields)}`);
    }
  }
  /** @type {Record<string, unknown>} */
  const values = {};
  for (const [name, field] of Object.entries(fields)) {
    const value = /** @type {Record<string, unknown>} */ (settings)[name];
    if (value === undefined || (value === null && field.optional)) {
      if (field.required) throw invalid(what, `missing field \`${name}\` (${field.kind.expected})`);
      const fallback = Array.isArray(field.default) ? [...field.default] : field.default;
      values[name] = field.optional ? null : fallback;
    } else if (field.kind.accepts(value)) {
      values[name] = field.kind.read ? field.kind.read(value) : value;
    } else {
      throw invalid(what, `\`${name}\` must be ${field.kind.expected}, not ${describe(value)}`);
    }
  }
  return values;
}
