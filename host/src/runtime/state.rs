//! `ModuleState`: what each module's store carries: its identity, the shared model manager, and
//! its WASI context.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::manager::ModelManager;
use crate::registry::ModuleId;

/// The data of one module's store.
pub struct ModuleState {
    pub(super) module: ModuleId,
    pub(super) manager: Arc<ModelManager>,
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
}

impl ModuleState {
    pub(super) fn new(module: ModuleId, manager: Arc<ModelManager>, wasi: WasiCtx) -> Self {
        Self {
            module,
            manager,
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for ModuleState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
