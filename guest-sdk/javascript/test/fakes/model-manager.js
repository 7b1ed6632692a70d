// A fake `modelhost:models/model-manager`: records every call and answers from `host.replies`,
// throwing like componentize-js does (an exception whose `payload` is the WIT error record).

/** What the fake was called with, and what it answers. */
export const host = {
  /** @type {{ name: string, args: unknown[] }[]} */
  calls: [],
  /** Answers by function name: a value, or `{ error: record }` to fail. */
  replies: {},
  /** Clears the calls and replies. */
  reset() {
    this.calls = [];
    this.replies = {};
  },
};

/** A host error as componentize-js throws it. */
export class ComponentError extends Error {
  constructor(payload) {
    super(`${payload} (see error.payload)`);
    this.payload = payload;
  }
}

function answer(name, ...args) {
  host.calls.push({ name, args });
  const reply = host.replies[name];
  if (reply?.error) throw new ComponentError(reply.error);
  return typeof reply === "function" ? reply(...args) : reply;
}

export const registerModel = (...args) => answer("registerModel", ...args);
export const releaseModel = (...args) => answer("releaseModel", ...args);
export const generateEmbeddings = (...args) => answer("generateEmbeddings", ...args);
export const classify = (...args) => answer("classify", ...args);
export const generateText = (...args) => answer("generateText", ...args);
export const streamText = (...args) => answer("streamText", ...args);
export const chat = (...args) => answer("chat", ...args);
export const streamChat = (...args) => answer("streamChat", ...args);
export const getServiceStatus = (...args) => answer("getServiceStatus", ...args);
export const listModels = (...args) => answer("listModels", ...args);

/**
 * A fake `text-stream` resource handing out `pieces`, then `finished(reason)`.
 * @param {string[]} pieces
 * @param {string} reason
 */
export function fakeStream(pieces, reason) {
  const queue = [...pieces];
  return {
    dropped: false,
    next() {
      if (this.dropped) throw new Error("next() on a dropped stream");
      const piece = queue.shift();
      return piece === undefined ? { tag: "finished", val: reason } : { tag: "text", val: piece };
    },
    usage() {
      return queue.length === 0 ? { promptTokens: 5, tokensGenerated: pieces.length } : undefined;
    },
    [Symbol.dispose]() {
      this.dropped = true;
    },
  };
}
