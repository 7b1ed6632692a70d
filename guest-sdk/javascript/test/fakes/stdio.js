// A fake `wasi:cli` stdin, stdout and stderr: stdin hands out `stdio.input` in the chunks given,
// stdout and stderr collect what is written (and count the flushes).

/** The fake streams' contents. */
export const stdio = {
  /** @type {Uint8Array[]} */
  input: [],
  stdout: "",
  stderr: "",
  writes: 0,
  /** Empties every stream. */
  reset() {
    this.input = [];
    this.stdout = "";
    this.stderr = "";
    this.writes = 0;
  },
};

const decoder = new TextDecoder();

export function getStdin() {
  return {
    blockingRead() {
      const chunk = stdio.input.shift();
      if (chunk === undefined)
        throw Object.assign(new Error("closed"), { payload: { tag: "closed" } });
      return chunk;
    },
    [Symbol.dispose]() {},
  };
}

function output(name) {
  return {
    blockingWriteAndFlush(bytes) {
      if (bytes.length > 4096) throw new Error("more than 4096 bytes in one write");
      stdio[name] += decoder.decode(bytes, { stream: true });
      stdio.writes += 1;
    },
  };
}

export const getStdout = () => output("stdout");
export const getStderr = () => output("stderr");
