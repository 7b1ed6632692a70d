// js-summarizer: a modelhost command module in JavaScript (world `command-module`, started by
// `modelhost run`). `initialize` registers a text2text (T5 family) or text-generation model; `run`
// sends each line of stdin as `PREFIX + line` and prints one output line per input line (line
// breaks in an output become spaces); `cleanup` releases the model.
//
// Settings (all optional; the default model is flan-T5 base):
//
//   {"model": {"model_type": "text2text", "name": "google/flan-t5-base", "max_output_length": 64},
//    "prefix": "summarize: "}
//
// Usage:
//
//   echo "The quick brown fox jumps over the lazy dog." | modelhost run --settings '{"model":
//     {"model_type": "text2text", "name": "modelhost-fixtures/t5-tiny-random-realvocab"}}' \
//     target/modules/js-summarizer.wasm

import {
  defineLifecycle,
  generateText,
  ModelhostError,
  ModelRequirement,
  registerModel,
} from "@modelhost/guest";
import { defineRun, readLines, writeLine } from "@modelhost/guest/command";

/** The id the model is registered under. */
const MODEL_ID = "summarizer";

/** The model when the settings name none. */
const DEFAULT_MODEL = {
  model_type: "text2text",
  name: "google/flan-t5-base",
  max_output_length: 64,
};

/** Put before every line when the settings give no `prefix` (T5 models learn task prefixes). */
const DEFAULT_PREFIX = "summarize: ";

/** The prefix `setup` read from the settings. */
let prefix = DEFAULT_PREFIX;

/** Reads the settings and registers the model; the default cleanup releases it. */
export const lifecycle = defineLifecycle({
  setup(settings) {
    const unknown = Object.keys(settings).filter((key) => key !== "model" && key !== "prefix");
    if (unknown.length > 0) {
      throw new ModelhostError(
        "invalid-requirement",
        `unknown setting \`${unknown[0]}\`; js-summarizer takes \`model\` and \`prefix\``,
      );
    }
    if (settings.prefix !== undefined && typeof settings.prefix !== "string") {
      throw new ModelhostError("invalid-requirement", "the setting `prefix` must be a string");
    }
    registerModel(
      MODEL_ID,
      ModelRequirement.fromSettings(settings.model === undefined ? DEFAULT_MODEL : settings.model),
    );
    prefix = settings.prefix ?? DEFAULT_PREFIX;
  },
});

/** One generated line per line of stdin. */
export const run = defineRun(() => {
  for (const line of readLines()) {
    const output = generateText(MODEL_ID, prefix + line);
    writeLine(output.text.replaceAll("\n", " "));
  }
});
