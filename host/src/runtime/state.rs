//! `ModuleState`: what each module's store carries: its `model-manager` context (identity and the
//! shared manager), its WASI and WASI HTTP contexts, and its sandbox: store-wide limits on memory
//! (all linear memories together), tables, instances and host resources, and the guest CPU time
//! of the current export call (counted in epoch ticks).

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::manager::ModelManager;
use crate::manager::limits::ModuleLimits;
use crate::types::ModuleId;
use crate::wit_host::{ModelManagerCtx, ModelManagerView};

/// Most core instances in one store (a Python or JavaScript component has a few dozen).
pub const MAX_INSTANCES: usize = 1_000;
/// Most linear memories in one store.
pub const MAX_MEMORIES: usize = 100;
/// Most tables in one store.
pub const MAX_TABLES: usize = 1_000;
/// Most host resources (streams, HTTP fields, text streams, ...) one store holds at once.
pub const MAX_RESOURCES: usize = 4_096;
/// Most bytes of one set of HTTP header fields a guest builds.
pub const MAX_FIELD_BYTES: usize = 64 << 10;

/// How often the engine's epoch advances: the granularity of the CPU limit, and how often a
/// running guest yields to other tasks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The data of one module's store.
pub struct ModuleState {
    models: ModelManagerCtx,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_hooks: OutgoingHttp,
    table: ResourceTable,
    limiter: StoreLimiter,
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
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(MAX_FIELD_BYTES);
        Self {
            models: ModelManagerCtx::new(module, manager),
            wasi,
            http,
            http_hooks: OutgoingHttp {
                allowed: limits.allow_outgoing_http,
            },
            table,
            limiter: StoreLimiter {
                memory_limit: limits.memory_bytes,
                table_limit: limits.table_elements,
                memory_bytes: 0,
                table_elements: 0,
            },
            cpu_ticks: 0,
            cpu_limit: limits.cpu_time_per_call,
        }
    }

    /// The `model-manager` imports' view of this store.
    pub(super) fn model_manager(&mut self) -> ModelManagerView<'_> {
        ModelManagerView::new(&self.models, &mut self.table)
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
                self.models.module(),
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
    store.limiter(|state| &mut state.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut context| context.data_mut().on_tick());
    store
}

/// Limits that hold for the whole store, not one memory or table at a time: the bytes of every
/// linear memory together, the elements of every table together, and the number of instances,
/// memories and tables.
struct StoreLimiter {
    memory_limit: usize,
    table_limit: usize,
    memory_bytes: usize,
    table_elements: usize,
}

/// The store total after one memory or table of it grows from `current` to `desired`, if it stays
/// within `limit`.
fn grown(total: usize, current: usize, desired: usize, limit: usize) -> Option<usize> {
    let total = total.saturating_sub(current).checked_add(desired)?;
    (total <= limit).then_some(total)
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = grown(self.memory_bytes, current, desired, self.memory_limit);
        if let Some(total) = total {
            self.memory_bytes = total;
        }
        Ok(total.is_some())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = grown(self.table_elements, current, desired, self.table_limit);
        if let Some(total) = total {
            self.table_elements = total;
        }
        Ok(total.is_some())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_count_against_one_store_wide_limit() {
        let mut limiter = StoreLimiter {
            memory_limit: 100,
            table_limit: 10,
            memory_bytes: 0,
            table_elements: 0,
        };
        // Two memories of 60 bytes: the second does not fit, though each alone would.
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(!limiter.memory_growing(0, 60, None).unwrap());
        // Growing the first one within the total does.
        assert!(limiter.memory_growing(60, 100, None).unwrap());
        assert!(!limiter.memory_growing(100, usize::MAX, None).unwrap());
        assert!(limiter.table_growing(0, 6, None).unwrap());
        assert!(!limiter.table_growing(0, 6, None).unwrap());
        assert_eq!((limiter.memory_bytes, limiter.table_elements), (100, 6));
    }
}
