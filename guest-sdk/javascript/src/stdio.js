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
  // The current line's bytes so far, chunk by chunk: joined once, when its line end arrives.
  /** @type {Uint8Array[]} */
  let parts = [];
  try {
    for (;;) {
      const chunk = readChunk(stdin);
      if (chunk === null) break;
      let start = 0;
      let end;
      while ((end = chunk.indexOf(NEWLINE, start)) >= 0) {
        parts.push(chunk.subarray(start, end));
        yield decodeLine(join(parts));
        parts = [];
        start = end + 1;
      }
      if (start < chunk.length) parts.push(chunk.subarray(start));
    }
    if (parts.length > 0) yield decodeLine(join(parts));
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

/** The bytes of `parts`, one after the other. */
function join(parts) {
  if (parts.length === 1) return parts[0];
  const joined = new Uint8Array(parts.reduce((length, part) => length + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
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
