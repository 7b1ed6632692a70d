//! The WIT `model-manager` interface served to modules: the generated bindings, the conversions
//! between WIT and domain types (with the one map from [`HostError`](crate::types::HostError)
//! to WIT error codes), and the import implementations, which call the [`ModelManager`] with the
//! caller's identity.
//!
//! Like wasmtime's `wasi-nn`, the interface is linked by [`add_to_linker`] into any embedder's
//! linker: the embedder keeps a [`ModelManagerCtx`] in its store data and lends it, with its
//! resource table, as a [`ModelManagerView`]. This is the only layer that sees WIT-generated
//! types; everything below it works on the domain types of [`crate::types`].

mod bindings;
mod convert;
mod host_impl;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

use crate::manager::ModelManager;
use crate::types::ModuleId;

pub use bindings::FrameworkModule;
pub use convert::{
    GuestError, MAX_GUEST_MESSAGE_BYTES, error_code_name, guest_error, wit_error, wit_error_code,
};

/// What the `model-manager` imports need of one module's store: who the caller is (assigned by
/// the host, never by the module) and the manager it talks to.
pub struct ModelManagerCtx {
    module: ModuleId,
    manager: Arc<ModelManager>,
}

impl ModelManagerCtx {
    /// The context of module `module`, served by `manager`.
    pub fn new(module: ModuleId, manager: Arc<ModelManager>) -> Self {
        Self { module, manager }
    }

    /// The module's identity.
    pub fn module(&self) -> &ModuleId {
        &self.module
    }

    /// The manager the module talks to.
    pub fn manager(&self) -> &Arc<ModelManager> {
        &self.manager
    }
}

/// A store's [`ModelManagerCtx`] and resource table (where text streams live), borrowed for one
/// import call.
pub struct ModelManagerView<'a> {
    ctx: &'a ModelManagerCtx,
    table: &'a mut ResourceTable,
}

impl<'a> ModelManagerView<'a> {
    /// A view of `ctx` and `table`.
    pub fn new(ctx: &'a ModelManagerCtx, table: &'a mut ResourceTable) -> Self {
        Self { ctx, table }
    }
}

/// Names [`ModelManagerView`] as the data the generated `add_to_linker` hands each import.
struct HasModelManager;

impl HasData for HasModelManager {
    type Data<'a> = ModelManagerView<'a>;
}

/// Adds the `modelhost:models` imports (`types` and `model-manager`) to `linker`; `view` lends
/// each call the calling store's context and resource table.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> ModelManagerView<'_>,
) -> wasmtime::Result<()> {
    FrameworkModule::add_to_linker::<T, HasModelManager>(linker, view)
}
