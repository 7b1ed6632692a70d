// Standard input and output of a command module, through the `wasi:cli` streams its world imports.
// Output is written and flushed at once, so a streamed piece shows up as soon as it is produced.

import { getStderr } from "wasi:cli/stderr@0.2.12";
import { getStdin } from "wasi:cli/stdin@0.2.12";
import { getStdout } from "wasi:cli/stdout@0.2.12";

import { ModelhostError } from "./errors.js";

/** The most bytes one `blocking-write-and-flush` may take. */
const WRITE_CHUNK = 4096;
/** The most bytes one read of stdin asks for. */
const READ_CHUNK = 65536n;
const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** @type {any} */
let stdout;
/** @type {any} */
let stderr;

/**
 * The lines of stdin, without their line ends ("\n" or "\r\n"), read as they arrive; a last line
 * without a line end is included. Input that is not UTF-8 is an "invalid-input" error.
 * @returns {Generator<string, void, undefined>}
 */
export function* readLines() {
  const stdin = getStdin();
  /** @type {Uint8Array} */
  let pending = new Uint8Array(0);
  try {
    for (;;) {
      const chunk = readChunk(stdin);
      if (chunk === null) break;
      pending = concat(pending, chunk);
      let end;
      while ((end = pending.indexOf(NEWLINE)) >= 0) {
        yield decodeLine(pending.subarray(0, end));
        pending = pending.subarray(end + 1);
      }
    }
    if (pending.length > 0) yield decodeLine(pending);
  } finally {
    stdin[Symbol.dispose]();
  }
}

/**
 * Writes `text` to stdout and flushes it.
 * @param {string} text
 */
export function write(text) {
  stdout ??= getStdout();
  writeAll(stdout, text);
}

/**
 * Writes `text` and a line end to stdout and flushes them.
 * @param {string} text
 */
export function writeLine(text) {
  write(`${text}\n`);
}

/**
 * Writes `text` and a line end to stderr and flushes them.
 * @param {string} text
 */
export function writeError(text) {
  stderr ??= getStderr();
  writeAll(stderr, `${text}\n`);
}

/** The next bytes of stdin, or null at its end. */
function readChunk(stdin) {
  try {
    return stdin.blockingRead(READ_CHUNK);
  } catch (thrown) {
    if (thrown?.payload?.tag === "closed") return null;
    throw new ModelhostError(
      "internal",
      "cannot read stdin",
      String(thrown?.payload?.tag ?? thrown),
    );
  }
}

/** `a` followed by `b`. */
function concat(a, b) {
  if (a.length === 0) return b;
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** The text of one line's bytes, without a trailing carriage return. */
function decodeLine(bytes) {
  const line = bytes.at(-1) === CARRIAGE_RETURN ? bytes.subarray(0, -1) : bytes;
  try {
    return decoder.decode(line);
  } catch {
    throw new ModelhostError(
      "invalid-input",
      "stdin is not valid UTF-8; give the module UTF-8 text",
    );
  }
}

/** Writes all of `text` to `stream`, flushing each chunk. */
function writeAll(stream, text) {
  const bytes = encoder.encode(text);
  for (let start = 0; start < bytes.length; start += WRITE_CHUNK) {
    stream.blockingWriteAndFlush(bytes.subarray(start, start + WRITE_CHUNK));
  }
}
