// Type declarations of `@modelhost/guest/command`: the `wasi:cli/run` export and standard input
// and output for modules of the `command-module` world.

import type { WitResult } from "./modelhost.js";

/**
 * The `run` export: `export const run = defineRun(() => {...})`. When `main` throws, the error goes
 * to stderr and the module exits with status 1.
 */
export function defineRun(main: () => void | Promise<void>): {
  run(): Promise<WitResult<undefined>>;
};
/** The lines of stdin without their line ends, read as they arrive. */
export function readLines(): Generator<string, void, undefined>;
/** Writes `text` to stdout and flushes it. */
export function write(text: string): void;
/** Writes `text` and a line end to stdout and flushes them. */
export function writeLine(text: string): void;
/** Writes `text` and a line end to stderr and flushes them. */
export function writeError(text: string): void;
