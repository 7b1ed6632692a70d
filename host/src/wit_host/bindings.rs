//! Host bindings generated from the WIT package in `wit/`. Only `wit_host` uses these types
//! (and `runtime`, for the world's exports).

// Generated code: its documentation is the WIT's.
#![allow(missing_docs)]

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
