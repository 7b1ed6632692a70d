// Loaded with `node --import`: resolves the host's interfaces (`modelhost:models/...`,
// `wasi:cli/...`) to the fakes in this folder, so the SDK's modules run under Node.

import { register } from "node:module";

register("./hooks.js", import.meta.url);
