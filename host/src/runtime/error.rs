//! `RuntimeError`: failures of the WebAssembly runtime itself (compiling, linking, instantiating,
//! traps) and errors a module reports from its own exports.

use std::path::PathBuf;

use crate::types::ModuleId;
use crate::wit_host::GuestError;

/// A failure of the runtime or of a module.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(#[source] wasmtime::Error),
    /// The file is not a loadable component.
    #[error("cannot compile {}: {source:#}; modules must be WebAssembly components (build Rust modules with --target wasm32-wasip2)", path.display())]
    Compile {
        /// The module file.
        path: PathBuf,
        /// The cause.
        source: wasmtime::Error,
    },
    /// The module imports something the host does not provide.
    #[error("cannot link {}: {source:#}", path.display())]
    Link {
        /// The module file.
        path: PathBuf,
        /// The cause.
        source: wasmtime::Error,
    },
    /// Instantiation failed.
    #[error("cannot instantiate module {module}: {source:#}")]
    Instantiate {
        /// The module.
        module: ModuleId,
        /// The cause.
        source: wasmtime::Error,
    },
    /// The module lacks an export the call needs.
    #[error("module {module} does not export {export}")]
    MissingExport {
        /// The module.
        module: ModuleId,
        /// The missing export.
        export: &'static str,
    },
    /// `initialize` returned an error.
    #[error("module {module} failed to initialize: {error}")]
    Initialize {
        /// The module.
        module: ModuleId,
        /// What it reported.
        error: GuestError,
    },
    /// The module trapped; its references were released and the instance is unusable. The
    /// message is the trap's root cause only; `{:?}` of `source` has the wasm backtrace.
    #[error("module {module} trapped in {export}: {}", .source.root_cause())]
    Trap {
        /// The module.
        module: ModuleId,
        /// The export that was running.
        export: &'static str,
        /// The trap.
        source: wasmtime::Error,
    },
    /// An export call (or an HTTP request) ran past its wall-clock deadline: the instance was
    /// stopped and its references released, as after a trap.
    #[error(
        "module {module} did not finish {export} within {seconds} s ({setting}); it was stopped"
    )]
    Deadline {
        /// The module.
        module: ModuleId,
        /// The export that was running.
        export: &'static str,
        /// The deadline, in seconds.
        seconds: f64,
        /// The configuration key that sets it.
        setting: &'static str,
    },
    /// An HTTP handler ended without a response.
    #[error("module {module} did not answer the HTTP request: {reason}")]
    HttpHandler {
        /// The module.
        module: ModuleId,
        /// What happened.
        reason: String,
    },
    /// The instance trapped or exited before and cannot be called again.
    #[error("module {module} has stopped and cannot be called again")]
    Stopped {
        /// The module.
        module: ModuleId,
    },
}
