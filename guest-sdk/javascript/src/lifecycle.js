// The `lifecycle` export (`initialize` and `cleanup`) built from a module's `setup` function.

import { errorRecord, ModelhostError } from "./errors.js";
import { releaseAll } from "./models.js";

/**
 * Parses a module's settings: JSON text from the host's configuration or `--settings`, `{}` when
 * empty. Malformed JSON, or JSON that is not an object, is an "invalid-requirement" error.
 * @param {string} text
 * @returns {Record<string, unknown>}
 */
export function parseSettings(text) {
  if (text.trim() === "") return {};
  let settings;
  try {
    settings = JSON.parse(text);
  } catch (error) {
    throw new ModelhostError(
      "invalid-requirement",
      `the module settings are not valid JSON: ${error.message}`,
    );
  }
  if (settings === null || typeof settings !== "object" || Array.isArray(settings)) {
    throw new ModelhostError(
      "invalid-requirement",
      `the module settings must be a JSON object, not ${text.trim()}`,
    );
  }
  return settings;
}

/**
 * The `lifecycle` export of a module:
 *
 * ```js
 * export const lifecycle = defineLifecycle({
 *   setup(settings) {
 *     registerModel("embedder", ModelRequirement.fromSettings(settings.model));
 *   },
 * });
 * ```
 *
 * `setup` gets the parsed settings (`{}` when none were given) and usually registers models; it may
 * be async. A `ModelhostError` it throws is the error the host sees (malformed settings are
 * "invalid-requirement"); any other exception is reported as "internal". `cleanup` runs before the
 * module is dropped; without one, every model registered through this SDK is released.
 * @param {object} hooks
 * @param {(settings: Record<string, any>) => void | Promise<void>} hooks.setup
 * @param {() => void | Promise<void>} [hooks.cleanup]
 */
export function defineLifecycle({ setup, cleanup = releaseAll }) {
  if (typeof setup !== "function") {
    throw new TypeError("defineLifecycle needs a setup(settings) function");
  }
  return {
    /** @param {string} text */
    async initialize(text) {
      try {
        await setup(parseSettings(text));
      } catch (thrown) {
        return { tag: "err", val: errorRecord(thrown) };
      }
      return { tag: "ok", val: undefined };
    },
    async cleanup() {
      try {
        await cleanup();
      } catch (thrown) {
        console.error(`cleanup failed: ${thrown}`);
      }
    },
  };
}
