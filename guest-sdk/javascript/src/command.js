// `@modelhost/guest/command`: the `wasi:cli/run` export and standard input and output, for modules
// of the `command-module` world (started by `modelhost run`).

import { toModelhostError } from "./errors.js";
import { writeError } from "./stdio.js";

export { readLines, write, writeError, writeLine } from "./stdio.js";

/**
 * The `run` export (`wasi:cli/run`) of a command module: `modelhost run` calls it after the
 * lifecycle's `initialize` and before its `cleanup`.
 *
 * ```js
 * export const run = defineRun(() => {
 *   for (const line of readLines()) writeLine(line.toUpperCase());
 * });
 * ```
 *
 * `main` may be async. When it throws, the error goes to stderr (`error: CODE: MESSAGE`) and the
 * module exits with status 1.
 * @param {() => void | Promise<void>} main
 */
export function defineRun(main) {
  if (typeof main !== "function") {
    throw new TypeError("defineRun needs a main() function");
  }
  return {
    async run() {
      try {
        await main();
      } catch (thrown) {
        writeError(`error: ${toModelhostError(thrown)}`);
        return { tag: "err", val: undefined };
      }
      return { tag: "ok", val: undefined };
    },
  };
}
