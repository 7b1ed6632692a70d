// `TextStream`: generated text as it is produced, iterable with `for...of` and `for await...of`.

import { toModelhostError } from "./errors.js";

/**
 * Generated text as it is produced: iterate it (`for (const piece of stream)` or
 * `for await (const piece of stream)`) for the pieces, whole characters in order; `finishReason`
 * and `usage` say why generation ended and how many tokens it took once the iteration is over.
 * Leaving the loop early, or disposing the stream, stops the generation.
 */
export class TextStream {
  /** The host's `text-stream`, until generation ends or the stream is dropped. */
  #resource;
  /** @type {string | undefined} */
  #finishReason;
  /** @type {{ promptTokens: number, tokensGenerated: number } | undefined} */
  #usage;

  /** @param {any} resource the WIT `text-stream` resource */
  constructor(resource) {
    this.#resource = resource;
  }

  /** Why generation ended ("end-of-sequence", "length" or "stop"); undefined until it has. */
  get finishReason() {
    return this.#finishReason;
  }

  /** The prompt's and the generated token counts; undefined until generation has ended. */
  get usage() {
    return this.#usage;
  }

  /**
   * The next piece (waiting for it), or `done` once generation has ended.
   * @returns {IteratorResult<string, undefined>}
   */
  next() {
    if (!this.#resource) return { done: true, value: undefined };
    let event;
    try {
      event = this.#resource.next();
    } catch (thrown) {
      this.#drop();
      throw toModelhostError(thrown);
    }
    if (event.tag === "text") return { done: false, value: event.val };
    this.#finishReason = event.val;
    this.#usage = this.#resource.usage();
    this.#drop();
    return { done: true, value: undefined };
  }

  /**
   * Stops the generation (called when a `for...of` loop is left early).
   * @returns {IteratorResult<string, undefined>}
   */
  return() {
    this.#drop();
    return { done: true, value: undefined };
  }

  /** The stream itself: `for (const piece of stream)`. */
  [Symbol.iterator]() {
    return this;
  }

  /** The same pieces for `for await (const piece of stream)`. */
  [Symbol.asyncIterator]() {
    return {
      next: async () => this.next(),
      return: async () => this.return(),
    };
  }

  /** Stops the generation and drops the host's stream. */
  [Symbol.dispose]() {
    this.#drop();
  }

  #drop() {
    const resource = this.#resource;
    this.#resource = undefined;
    resource?.[Symbol.dispose]();
  }
}
