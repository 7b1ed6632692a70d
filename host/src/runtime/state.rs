//! `ModuleState`: what each module's store carries: its identity, the shared model manager, and
//! its WASI and WASI HTTP contexts.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::manager::ModelManager;
use crate::registry::ModuleId;

/// The data of one module's store.
pub struct ModuleState {
    pub(super) module: ModuleId,
    pub(super) manager: Arc<ModelManager>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(super) table: ResourceTable,
}

impl ModuleState {
    pub(super) fn new(module: ModuleId, manager: Arc<ModelManager>, wasi: WasiCtx) -> Self {
        Self {
            module,
            manager,
            wasi,
            http: WasiHttpCtx::new(),
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

impl WasiHttpView for ModuleState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}
