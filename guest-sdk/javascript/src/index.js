// `@modelhost/guest`: write modelhost modules in JavaScript. Register the Hugging Face models a
// module needs, run inference on them, release them; every failure is a `ModelhostError` with a
// stable code. Command modules also import `@modelhost/guest/command`.

export { ERROR_CODES, ModelhostError } from "./errors.js";
export { chat, generateText, streamChat, streamText } from "./generation.js";
export { defineLifecycle, parseSettings } from "./lifecycle.js";
export {
  classify,
  embed,
  generateEmbeddings,
  listModels,
  registerModel,
  releaseAll,
  releaseModel,
  serviceStatus,
} from "./models.js";
export { GenerationOptions } from "./options.js";
export { MODEL_TYPES, ModelRequirement } from "./requirement.js";
export { TextStream } from "./stream.js";
