// Text generation: whole texts, chats through the model's chat template, and streams that hand
// the text out as it is produced.

import * as host from "modelhost:models/model-manager@0.1.0";

import { messagesArgument, stringArgument } from "./arguments.js";
import { callHost } from "./errors.js";
import { optionsToWit } from "./options.js";
import { TextStream } from "./stream.js";

/**
 * Continues `prompt` with the generation model (text2text or text-generation) registered as
 * `modelId`.
 * @param {string} modelId
 * @param {string} prompt
 * @param {import("./options.js").GenerationOptions | object} [options] overrides of the
 *   requirement's generation settings, as `GenerationOptions` or a settings object
 */
export function generateText(modelId, prompt, options) {
  const [id, text, wit] = textArguments(modelId, prompt, options);
  return callHost(() => host.generateText(id, text, wit));
}

/**
 * Like `generateText`, handing the text out as it is produced.
 * @param {string} modelId
 * @param {string} prompt
 * @param {import("./options.js").GenerationOptions | object} [options]
 * @returns {TextStream}
 */
export function streamText(modelId, prompt, options) {
  const [id, text, wit] = textArguments(modelId, prompt, options);
  return new TextStream(callHost(() => host.streamText(id, text, wit)));
}

/**
 * The assistant's reply to `messages` (`{role, content}`, roles "system", "user", "assistant")
 * from the text-generation model registered as `modelId`, through its own chat template.
 * @param {string} modelId
 * @param {{ role: string, content: string }[]} messages
 * @param {import("./options.js").GenerationOptions | object} [options]
 */
export function chat(modelId, messages, options) {
  const [id, wits, wit] = chatArguments(modelId, messages, options);
  return callHost(() => host.chat(id, wits, wit));
}

/**
 * Like `chat`, handing the reply out as it is produced.
 * @param {string} modelId
 * @param {{ role: string, content: string }[]} messages
 * @param {import("./options.js").GenerationOptions | object} [options]
 * @returns {TextStream}
 */
export function streamChat(modelId, messages, options) {
  const [id, wits, wit] = chatArguments(modelId, messages, options);
  return new TextStream(callHost(() => host.streamChat(id, wits, wit)));
}

/** @returns {[string, string, ReturnType<typeof optionsToWit>]} */
function textArguments(modelId, prompt, options) {
  return [
    stringArgument(modelId, "modelId"),
    stringArgument(prompt, "prompt"),
    optionsToWit(options),
  ];
}

/** @returns {[string, { role: string, content: string }[], ReturnType<typeof optionsToWit>]} */
function chatArguments(modelId, messages, options) {
  return [stringArgument(modelId, "modelId"), messagesArgument(messages), optionsToWit(options)];
}
