// Checks of call arguments before they reach the host: the generated bindings coerce values of the
// wrong type silently (a number id becomes "1", -1 becomes 4294967295), so they are refused here as
// `invalid-input`.

import { ModelhostError } from "./errors.js";

/**
 * `value`, when it is a string.
 * @param {unknown} value
 * @param {string} name the argument's name in messages
 * @returns {string}
 */
export function stringArgument(value, name) {
  if (typeof value !== "string") {
    throw new ModelhostError("invalid-input", `\`${name}\` must be a string, not ${typeof value}`);
  }
  return value;
}

/**
 * `value`, when it is an array of strings.
 * @param {unknown} value
 * @param {string} name the argument's name in messages
 * @returns {string[]}
 */
export function stringsArgument(value, name) {
  if (!Array.isArray(value)) {
    throw new ModelhostError(
      "invalid-input",
      `\`${name}\` must be an array of strings, not ${typeof value}`,
    );
  }
  const at = value.findIndex((item) => typeof item !== "string");
  if (at >= 0) {
    throw new ModelhostError(
      "invalid-input",
      `\`${name}[${at}]\` must be a string, not ${typeof value[at]}`,
    );
  }
  return value;
}

/**
 * `value` as WIT chat messages, when it is an array of `{role, content}` with string values.
 * @param {unknown} value
 * @returns {{ role: string, content: string }[]}
 */
export function messagesArgument(value) {
  if (!Array.isArray(value)) {
    throw new ModelhostError(
      "invalid-input",
      "`messages` must be an array of {role, content} objects",
    );
  }
  return value.map((message, i) => ({
    role: stringArgument(message?.role, `messages[${i}].role`),
    content: stringArgument(message?.content, `messages[${i}].content`),
  }));
}
