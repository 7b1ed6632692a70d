//! Host bindings generated from the WIT package in `wit/`. Only `runtime` uses these types.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "framework-module",
    imports: { default: async | trappable },
    exports: { default: async },
    trappable_error_type: {
        "modelhost:models/types.error" => crate::types::error::HostError,
    },
    with: {
        "modelhost:models/types.text-stream": crate::engine::workers::GenerationStream,
    },
});
