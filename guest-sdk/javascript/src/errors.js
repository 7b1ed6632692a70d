// Errors: `ModelhostError` (a stable WIT error code, a message for people, optional details), and
// the conversions between it and the WIT `error` record the host sends and expects.

/** Every WIT `error-code`, in the contract's order. */
export const ERROR_CODES = Object.freeze([
  "invalid-requirement",
  "model-not-found",
  "invalid-model-files",
  "unsupported-architecture",
  "dimension-mismatch",
  "wrong-model-type",
  "not-registered",
  "conflict",
  "invalid-input",
  "unsupported",
  "device-unavailable",
  "load-failed",
  "inference-failed",
  "overloaded",
  "timeout",
  "internal",
  "unauthorized",
  "gated",
  "network-unreachable",
  "disk-full",
  "corrupt-download",
  "limit-exceeded",
  "not-allowed",
  "out-of-memory",
]);

/**
 * A failed call or a module's own failure: `code` is the WIT error code (`"model-not-found"`, ...)
 * to branch on, `message` says what went wrong and what to do, `details` adds context or is null.
 */
export class ModelhostError extends Error {
  /**
   * @param {string} code one of {@link ERROR_CODES}
   * @param {string} message what went wrong and, where possible, what to do about it
   * @param {string | null} [details] extra context, such as the underlying cause
   */
  constructor(code, message, details = null) {
    if (!ERROR_CODES.includes(code)) {
      throw new TypeError(
        `unknown modelhost error code "${code}"; use one of ${ERROR_CODES.join(", ")}`,
      );
    }
    super(message);
    this.name = "ModelhostError";
    /** The WIT error code. */
    this.code = code;
    /** Extra context, or null. */
    this.details = details ?? null;
  }

  /** `code: message (details)`, as the Rust SDK prints errors. */
  toString() {
    const details = this.details ? ` (${this.details})` : "";
    return `${this.code}: ${this.message}${details}`;
  }
}

/**
 * The `ModelhostError` for anything a host call (or a module) threw. componentize-js throws a
 * host's `err` as an exception whose `payload` is the WIT error record; anything else is a failure
 * of this module, reported as `internal`.
 * @param {unknown} thrown
 * @returns {ModelhostError}
 */
export function toModelhostError(thrown) {
  if (thrown instanceof ModelhostError) return thrown;
  const record = /** @type {any} */ (thrown)?.payload;
  if (record && ERROR_CODES.includes(record.code)) {
    return new ModelhostError(record.code, String(record.message), record.details ?? null);
  }
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  const stack = thrown instanceof Error && thrown.stack ? thrown.stack : null;
  return new ModelhostError("internal", `the module failed: ${message}`, stack);
}

/**
 * Runs one host call, turning its failure into a `ModelhostError`.
 * @template T
 * @param {() => T} call
 * @returns {T}
 */
export function callHost(call) {
  try {
    return call();
  } catch (thrown) {
    throw toModelhostError(thrown);
  }
}

/**
 * The WIT `error` record for `thrown`, as an export returns it to the host.
 * @param {unknown} thrown
 * @returns {{ code: string, message: string, details: string | undefined }}
 */
export function errorRecord(thrown) {
  const error = toModelhostError(thrown);
  return { code: error.code, message: error.message, details: error.details ?? undefined };
}
