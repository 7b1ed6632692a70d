// Module resolution hooks: each host interface the SDK imports is served by a fake module here.

const FAKES = {
  "modelhost:models/model-manager@0.1.0": "./model-manager.js",
  "wasi:cli/stdin@0.2.12": "./stdio.js",
  "wasi:cli/stdout@0.2.12": "./stdio.js",
  "wasi:cli/stderr@0.2.12": "./stdio.js",
};

/** Node's `resolve` hook: host interfaces to their fakes, everything else as usual. */
export async function resolve(specifier, context, nextResolve) {
  const fake = FAKES[specifier];
  if (fake) return { url: new URL(fake, import.meta.url).href, shortCircuit: true };
  return nextResolve(specifier, context);
}
