// Compiled by `npm run check-types` (never run): the declarations describe the API the examples
// use, and refuse what the API refuses.

import {
  chat,
  defineLifecycle,
  embed,
  generateText,
  listModels,
  ModelhostError,
  ModelRequirement,
  registerModel,
  releaseAll,
  streamChat,
  type FinishReason,
} from "@modelhost/guest";
import { defineRun, readLines, write, writeLine } from "@modelhost/guest/command";

export const lifecycle = defineLifecycle({
  setup(settings) {
    const requirement = ModelRequirement.fromSettings(settings.model);
    requirement.max_output_length = 16;
    registerModel("generator", requirement);
    registerModel("embedder", { model_type: "embedding", name: "org/model", device: "cuda:1" });
  },
  cleanup: releaseAll,
});

export const run = defineRun(async () => {
  for (const line of readLines()) {
    const vector: Float32Array = embed("embedder", line);
    writeLine(`${vector.length} ${generateText("generator", line, { max_output_length: 8 }).text}`);
    const stream = streamChat("generator", [{ role: "user", content: line }]);
    for await (const piece of stream) write(piece);
    const reason: FinishReason | undefined = stream.finishReason;
    writeLine(reason ?? "");
  }
  const ids: string[] = listModels().map((model) => model.modelId);
  try {
    chat("generator", [{ role: "user", content: ids.join(",") }]);
  } catch (error) {
    if (error instanceof ModelhostError && error.code === "not-registered")
      writeLine(error.message);
  }
});

// @ts-expect-error: a device is "auto", "cpu", "cuda" or "cuda:N"
registerModel("x", { model_type: "embedding", name: "m", device: "tpu" });
// @ts-expect-error: error codes are the WIT's
new ModelhostError("not-a-code", "message");
