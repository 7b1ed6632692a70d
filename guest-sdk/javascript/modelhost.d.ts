// Type declarations of `@modelhost/guest`, written by hand after `wit/types.wit` and
// `wit/model-manager.wit`: settings objects are snake_case (the settings JSON), results are the
// WIT records as componentize-js hands them out (camelCase).

/** The kind of work a model does. */
export type ModelType = "embedding" | "text2text" | "text-generation" | "classification";

/** Where a module would like its model to run: "auto", "cpu", "cuda" or "cuda:N". */
export type Device = "auto" | "cpu" | "cuda" | `cuda:${number}`;

/** How exactly a model's arithmetic follows the reference implementation. */
export type Precision = "exact" | "fast";

/** Why generation ended. */
export type FinishReason = "end-of-sequence" | "length" | "stop";

/** Every WIT error code. */
export type ErrorCode =
  | "invalid-requirement"
  | "model-not-found"
  | "invalid-model-files"
  | "unsupported-architecture"
  | "dimension-mismatch"
  | "wrong-model-type"
  | "not-registered"
  | "conflict"
  | "invalid-input"
  | "unsupported"
  | "device-unavailable"
  | "load-failed"
  | "inference-failed"
  | "overloaded"
  | "timeout"
  | "internal"
  | "unauthorized"
  | "gated"
  | "network-unreachable"
  | "disk-full"
  | "corrupt-download"
  | "limit-exceeded"
  | "not-allowed"
  | "out-of-memory";

/** Every WIT error code, in the contract's order. */
export const ERROR_CODES: readonly ErrorCode[];

/** The model types, as settings write them. */
export const MODEL_TYPES: readonly ModelType[];

/** A failed call or a module's own failure, with a stable code to branch on. */
export class ModelhostError extends Error {
  /** Throws a TypeError when `code` is not a WIT error code. */
  constructor(code: ErrorCode, message: string, details?: string | null);
  /** The WIT error code, e.g. "model-not-found". */
  readonly code: ErrorCode;
  /** Extra context, such as the underlying cause, or null. */
  readonly details: string | null;
  /** `code: message (details)`. */
  toString(): string;
}

/** A model requirement in the settings format: `model_type` and `name` are required. */
export interface ModelRequirementSettings {
  model_type: ModelType | "text_generation";
  name: string;
  revision?: string | null;
  device?: Device;
  dimension?: number | null;
  batch_size?: number | null;
  cache_embeddings?: boolean;
  max_input_length?: number | null;
  max_output_length?: number | null;
  temperature?: number | null;
  top_k?: number | null;
  top_p?: number | null;
  repetition_penalty?: number | null;
  streaming?: boolean;
  num_labels?: number | null;
  threshold?: number | null;
  preload_workers?: number;
  weights_file?: string | null;
  precision?: Precision;
}

/**
 * Everything a module asks of one model, with the specification's defaults; null means "the
 * host's or the model's default". The host checks the values when the requirement is registered.
 */
export class ModelRequirement {
  /** A requirement of `model_type` for `name`, every other field at its default. */
  constructor(model_type: ModelType, name: string);
  /**
   * Reads a requirement from settings. Unknown fields, missing required fields and values of the
   * wrong type throw a ModelhostError "invalid-requirement" that names the field.
   */
  static fromSettings(settings: unknown): ModelRequirement;
  /** An embedding model `name` producing vectors of `dimension`. */
  static embedding(name: string, dimension?: number | null): ModelRequirement;

  /** What the model is used for. */
  model_type: ModelType;
  /** Hugging Face repository id, e.g. "sentence-transformers/all-MiniLM-L6-v2". */
  name: string;
  /** Branch, tag or commit (default "main"). */
  revision: string | null;
  /** Preferred device (default "auto"). */
  device: Device;
  /** Embedding: the expected vector size, checked at registration. */
  dimension: number | null;
  /** Texts per forward pass (default: the host's). */
  batch_size: number | null;
  /** Embedding: whether the host's cache may be used (default true). */
  cache_embeddings: boolean;
  /** Longest input in tokens; longer inputs are truncated. */
  max_input_length: number | null;
  /** Generation: most tokens generated per call. */
  max_output_length: number | null;
  /** Generation: sampling temperature; 0 is greedy. */
  temperature: number | null;
  /** Generation: sample only from the k most likely tokens. */
  top_k: number | null;
  /** Generation: nucleus sampling threshold, in (0, 1]. */
  top_p: number | null;
  /** Generation: penalty on tokens already in the context (> 1 discourages repeats). */
  repetition_penalty: number | null;
  /** Generation: whether the module streams (default false). */
  streaming: boolean;
  /** Classification: the expected number of labels. */
  num_labels: number | null;
  /** Classification: the lowest score a label needs to be reported. */
  threshold: number | null;
  /** Workers that load the model at registration (default 0: on first use). */
  preload_workers: number;
  /** The weights file to use when the repository holds several. */
  weights_file: string | null;
  /** "exact" (default) or "fast". */
  precision: Precision;
}

/** Generation options in the settings format; every field may be left out. */
export interface GenerationOptionsSettings {
  max_output_length?: number | null;
  temperature?: number | null;
  top_k?: number | null;
  top_p?: number | null;
  repetition_penalty?: number | null;
  seed?: number | bigint | null;
  stop?: string[];
}

/** Per-call overrides of the requirement's generation settings (null: the requirement's). */
export class GenerationOptions {
  /** Options that override nothing. */
  constructor();
  /**
   * Reads options from settings. Unknown fields and values of the wrong type throw a
   * ModelhostError "invalid-requirement" that names the field.
   */
  static fromSettings(settings: unknown): GenerationOptions;

  /** Most tokens to generate. */
  max_output_length: number | null;
  /** Sampling temperature; 0 is greedy. */
  temperature: number | null;
  /** Sample only from the k most likely tokens. */
  top_k: number | null;
  /** Nucleus sampling threshold, in (0, 1]. */
  top_p: number | null;
  /** Penalty on tokens already in the context. */
  repetition_penalty: number | null;
  /** Seed for sampling: the same seed gives the same text. */
  seed: number | bigint | null;
  /** Generation stops after any of these strings (left out of the text). */
  stop: string[];
}

/** One message of a chat. */
export interface ChatMessage {
  /** "system", "user" or "assistant". */
  role: string;
  /** The message text. */
  content: string;
}

/** The result of `registerModel`. */
export interface Registration {
  modelId: string;
  /** True when this call created the id; false when it added a reference. */
  newRegistration: boolean;
  modelType: ModelType;
  modelName: string;
  /** The resolved revision: the commit the model's files come from. */
  revision: string;
  /** Embedding models: the vector size. */
  dimension: number | undefined;
  /** References the calling module now holds on this id. */
  referenceCount: number;
  /** References all modules together now hold on this id. */
  totalReferenceCount: number;
}

/** The result of `releaseModel`. */
export interface Release {
  modelId: string;
  /** References the calling module still holds on this id. */
  referenceCount: number;
  /** References all modules together still hold; at 0 the id is gone. */
  totalReferenceCount: number;
}

/** The result of `generateEmbeddings`. */
export interface Embeddings {
  /** One vector per input text, in input order. */
  embeddings: Float32Array[];
  modelId: string;
  dimension: number;
  /** True when every vector came from the embedding cache. */
  cached: boolean;
  processingTimeMs: number;
  workerId: string | undefined;
  /** Tokens the model read for all texts (after truncation). */
  inputTokens: number;
}

/** One label and its score. */
export interface LabelScore {
  label: string;
  score: number;
}

/** The labels of one input text. */
export interface Classification {
  /** The best label, when its score reaches the requirement's threshold. */
  label: string | undefined;
  /** The best label's score. */
  score: number;
  /** Every label with its score, highest first. */
  scores: LabelScore[];
}

/** The result of `classify`. */
export interface Classifications {
  /** One entry per input text, in input order. */
  results: Classification[];
  modelId: string;
  processingTimeMs: number;
  workerId: string | undefined;
}

/** The result of `generateText` and `chat`. */
export interface Generation {
  /** The generated text, without the prompt. */
  text: string;
  modelId: string;
  /** Tokens of the prompt (after the chat template, for chats). */
  promptTokens: number;
  tokensGenerated: number;
  finishReason: FinishReason;
  processingTimeMs: number;
}

/** The token counts of a finished stream. */
export interface StreamUsage {
  /** Tokens of the prompt (after the chat template, for chats). */
  promptTokens: number;
  tokensGenerated: number;
}

/** One registered model id. */
export interface ModelStatus {
  modelId: string;
  modelType: ModelType;
  modelName: string;
  /** The resolved revision (commit). */
  revision: string;
  /** References all modules together hold. */
  referenceCount: number;
  /** Whether the weights are in memory now. */
  loaded: boolean;
  /** Seconds since the Unix epoch of the last request (or the registration). */
  lastAccessed: number;
  /** What serves the model: "worker_pool". */
  source: string;
  /** The devices of the workers holding the weights, e.g. "cpu". */
  device: string;
  workers: string[];
  /** Set when no worker matched the requested device. */
  placementNote: string | undefined;
}

/** One worker of the pool. */
export interface WorkerStatus {
  workerId: string;
  device: string;
  busy: number;
  loadedModels: number;
}

/** The result of `serviceStatus`. */
export interface ServiceStatus {
  initialized: boolean;
  workerPool: {
    enabled: boolean;
    numWorkers: number;
    activeWorkers: number;
    pendingTasks: number;
    workers: WorkerStatus[];
    notes: string[];
  };
  embeddingCache: { enabled: boolean; cachedCount: bigint; hitRate: number };
  loadedModels: ModelStatus[];
  totalLoadedModels: number;
  loadedWeights: number;
  moduleReferences: { moduleId: string; modelId: string; referenceCount: number }[];
}

/**
 * Generated text as it is produced: iterate it with `for...of` or `for await...of`. Leaving the
 * loop early, or disposing the stream, stops the generation.
 */
export class TextStream implements IterableIterator<string>, AsyncIterable<string> {
  private constructor();
  /** Why generation ended; undefined until it has. */
  readonly finishReason: FinishReason | undefined;
  /** The prompt's and the generated token counts; undefined until generation has ended. */
  readonly usage: StreamUsage | undefined;
  /** The next piece (waiting for it), or done once generation has ended. */
  next(): IteratorResult<string, undefined>;
  /** Stops the generation. */
  return(): IteratorResult<string, undefined>;
  [Symbol.iterator](): this;
  [Symbol.asyncIterator](): AsyncIterator<string, undefined>;
  /** Stops the generation and drops the host's stream. */
  [Symbol.dispose](): void;
}

/** Registers `modelId` (or adds a reference); the model's files are verified now. */
export function registerModel(
  modelId: string,
  requirement: ModelRequirement | ModelRequirementSettings,
): Registration;
/** Drops one reference to `modelId`. */
export function releaseModel(modelId: string): Release;
/** Releases every reference registered through this SDK and not yet released. */
export function releaseAll(): void;
/** Embeds `texts`; vectors come back in input order. */
export function generateEmbeddings(modelId: string, texts: string[]): Embeddings;
/** The vector of one text. */
export function embed(modelId: string, text: string): Float32Array;
/** Scores the labels of each text. */
export function classify(modelId: string, texts: string[]): Classifications;
/** Continues `prompt` with a text2text or text-generation model. */
export function generateText(
  modelId: string,
  prompt: string,
  options?: GenerationOptions | GenerationOptionsSettings,
): Generation;
/** Like `generateText`, handing the text out as it is produced. */
export function streamText(
  modelId: string,
  prompt: string,
  options?: GenerationOptions | GenerationOptionsSettings,
): TextStream;
/** The assistant's reply to `messages`, through the model's chat template. */
export function chat(
  modelId: string,
  messages: ChatMessage[],
  options?: GenerationOptions | GenerationOptionsSettings,
): Generation;
/** Like `chat`, handing the reply out as it is produced. */
export function streamChat(
  modelId: string,
  messages: ChatMessage[],
  options?: GenerationOptions | GenerationOptionsSettings,
): TextStream;
/** The model ids this module holds, with their status, sorted by id. */
export function listModels(): ModelStatus[];
/** The host's workers, cache, registered models and references. */
export function serviceStatus(): ServiceStatus;

/** Parses settings JSON (`{}` when empty); malformed JSON or a non-object: invalid-requirement. */
export function parseSettings(text: string): Record<string, unknown>;

/** The hooks of `defineLifecycle`. */
export interface LifecycleHooks {
  /** Gets the parsed settings and registers models; a thrown ModelhostError is the host's error. */
  setup(settings: Record<string, any>): void | Promise<void>;
  /** Runs before the module is dropped; the default releases every registration. */
  cleanup?(): void | Promise<void>;
}

/** The WIT result an export hands back. */
export type WitResult<E> = { tag: "ok"; val: undefined } | { tag: "err"; val: E };

/** The WIT error record the host sees. */
export interface ErrorRecord {
  code: ErrorCode;
  message: string;
  details: string | undefined;
}

/** The `lifecycle` export: `export const lifecycle = defineLifecycle({ setup(settings) {} })`. */
export function defineLifecycle(hooks: LifecycleHooks): {
  initialize(settings: string): Promise<WitResult<ErrorRecord>>;
  cleanup(): Promise<void>;
};
