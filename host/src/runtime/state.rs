//! `ModuleState`: what each module's store carries: its identity, the shared model manager, its
//! WASI and WASI HTTP contexts, and its sandbox: memory and table limits, and the guest CPU time
//! of the current export call (counted in epoch ticks).

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::limits::ModuleLimits;
use crate::manager::ModelManager;
use crate::registry::ModuleId;

/// How often the engine's epoch advances: the granularity of the CPU limit, and how often a
/// running guest yields to other tasks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The data of one module's store.
pub struct ModuleState {
    pub(super) module: ModuleId,
    pub(super) manager: Arc<ModelManager>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: OutgoingHttp,
    pub(super) table: ResourceTable,
    store_limits: StoreLimits,
    cpu_ticks: u64,
    cpu_limit: Option<Duration>,
}

impl ModuleState {
    fn new(
        module: ModuleId,
        manager: Arc<ModelManager>,
        wasi: WasiCtx,
        limits: &ModuleLimits,
    ) -> Self {
        Self {
            module,
            manager,
            wasi,
            http: WasiHttpCtx::new(),
            http_hooks: OutgoingHttp {
                allowed: limits.allow_outgoing_http,
            },
            table: ResourceTable::new(),
            store_limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .table_elements(limits.table_elements)
                .build(),
            cpu_ticks: 0,
            cpu_limit: limits.cpu_time_per_call,
        }
    }

    /// Starts counting guest CPU time for a new export call.
    pub(super) fn begin_call(&mut self) {
        self.cpu_ticks = 0;
    }

    /// One epoch tick passed while the guest ran: trap past the CPU budget, else yield.
    fn on_tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        self.cpu_ticks += 1;
        let budget = |limit: Duration| (limit.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        match self.cpu_limit {
            Some(limit) if self.cpu_ticks > budget(limit) => Err(wasmtime::Error::msg(format!(
                "module {} ran for more than {:.1} s of CPU in one call \
                     (limits.cpu_seconds_per_call)",
                self.module,
                limit.as_secs_f64()
            ))),
            _ => Ok(UpdateDeadline::Yield(1)),
        }
    }
}

/// A store for a module instance: its state, memory and table limits, and the CPU deadline.
pub(super) fn sandboxed_store(
    engine: &Engine,
    module: ModuleId,
    manager: Arc<ModelManager>,
    wasi: WasiCtx,
) -> Store<ModuleState> {
    let limits = manager.limits(&module);
    let state = ModuleState::new(module, manager, wasi, &limits);
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.store_limits);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut context| context.data_mut().on_tick());
    store
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
            hooks: &mut self.http_hooks,
        }
    }
}

/// Outgoing HTTP requests: refused (no scheme is supported) unless the module's limits allow
/// them.
struct OutgoingHttp {
    allowed: bool,
}

impl WasiHttpHooks for OutgoingHttp {
    fn is_supported_scheme(&mut self, scheme: &hyper::http::uri::Scheme) -> bool {
        self.allowed
            && (*scheme == hyper::http::uri::Scheme::HTTP
                || *scheme == hyper::http::uri::Scheme::HTTPS)
    }

    fn default_scheme(&mut self) -> Option<hyper::http::uri::Scheme> {
        self.allowed.then_some(hyper::http::uri::Scheme::HTTPS)
    }
}
