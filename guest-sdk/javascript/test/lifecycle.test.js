// defineLifecycle and defineRun: settings parsing, errors as the WIT results the host sees, the
// default cleanup, and stdin and stdout through the command helpers.

import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { defineLifecycle, ModelhostError, registerModel } from "../src/index.js";
import { defineRun, readLines, write, writeLine } from "../src/command.js";
import { host } from "./fakes/model-manager.js";
import { stdio } from "./fakes/stdio.js";

const encode = (text) => new TextEncoder().encode(text);

beforeEach(() => {
  host.reset();
  stdio.reset();
});

test("setup gets the parsed settings, {} when empty", async () => {
  const seen = [];
  const lifecycle = defineLifecycle({ setup: (settings) => seen.push(settings) });
  assert.deepEqual(await lifecycle.initialize(' {"a": 1} '), { tag: "ok", val: undefined });
  assert.deepEqual(await lifecycle.initialize("  "), { tag: "ok", val: undefined });
  assert.deepEqual(seen, [{ a: 1 }, {}]);
});

test("malformed settings and setup failures are the WIT error the host sees", async () => {
  const lifecycle = defineLifecycle({
    setup(settings) {
      if (settings.fail === "modelhost") throw new ModelhostError("conflict", "taken", "by x");
      if (settings.fail === "other") throw new TypeError("oops");
    },
  });
  const malformed = await lifecycle.initialize("{model:");
  assert.equal(malformed.tag, "err");
  assert.equal(malformed.val.code, "invalid-requirement");
  assert.match(malformed.val.message, /not valid JSON/);
  assert.equal((await lifecycle.initialize("[1]")).val.code, "invalid-requirement");
  assert.deepEqual(await lifecycle.initialize('{"fail": "modelhost"}'), {
    tag: "err",
    val: { code: "conflict", message: "taken", details: "by x" },
  });
  const other = await lifecycle.initialize('{"fail": "other"}');
  assert.equal(other.val.code, "internal");
  assert.match(other.val.message, /oops/);
});

test("the default cleanup releases every registration", async () => {
  const lifecycle = defineLifecycle({
    setup: () => registerModel("m", { model_type: "embedding", name: "m" }),
  });
  await lifecycle.initialize("");
  await lifecycle.cleanup();
  assert.deepEqual(
    host.calls.map((c) => [c.name, c.args[0]]),
    [
      ["registerModel", "m"],
      ["releaseModel", "m"],
    ],
  );
});

test("readLines splits stdin at line ends, across chunks and multi-byte characters", () => {
  const bytes = encode("first\r\ncafé ☕\n\nlast");
  stdio.input = [bytes.subarray(0, 3), bytes.subarray(3, 12), bytes.subarray(12)];
  assert.deepEqual([...readLines()], ["first", "café ☕", "", "last"]);
  stdio.input = [encode("one\n")];
  assert.deepEqual([...readLines()], ["one"]);
  stdio.input = [new Uint8Array([0xff, 0x0a])];
  assert.throws(() => [...readLines()], { code: "invalid-input" });
});

test("writes are flushed at once, in chunks the stream accepts", () => {
  write("piece");
  assert.equal(stdio.writes, 1);
  writeLine("é".repeat(3000));
  assert.equal(stdio.stdout, `piece${"é".repeat(3000)}\n`);
  assert.equal(stdio.writes, 3);
});

test("a failing run prints the error and fails", async () => {
  const ok = defineRun(async () => writeLine("done"));
  assert.deepEqual(await ok.run(), { tag: "ok", val: undefined });
  const failing = defineRun(() => {
    throw new ModelhostError("not-registered", "no model 'x'");
  });
  assert.deepEqual(await failing.run(), { tag: "err", val: undefined });
  assert.equal(stdio.stderr, "error: not-registered: no model 'x'\n");
});
