//! `ModuleInstance`: one running module and its lifecycle: `initialize`, `wasi:cli/run`,
//! `cleanup`, each under its wall-clock deadline ([`ExportDeadlines`], from `[runtime]`). A trap
//! or a passed deadline stops the instance; whatever way it ends (cleanup, trap, deadline, exit or
//! drop), every model reference it still holds is released.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder};

use super::error::RuntimeError;
use super::settings::{RuntimeSettings, optional_seconds};
use super::state::{ModuleState, sandboxed_store};
use crate::manager::ModelManager;
use crate::manager::limits::ModuleLimits;
use crate::types::ModuleId;
use crate::wit_host::FrameworkModule;
use crate::wit_host::guest_error;

/// Most bytes kept of a captured output stream.
const CAPTURE_LIMIT: usize = 64 << 20;

/// Where a module's standard streams go.
#[derive(Debug, Clone, Default)]
pub enum Stdio {
    /// The host process's own stdin, stdout and stderr.
    #[default]
    Inherit,
    /// `stdin` is read from memory; stdout and stderr are captured (see
    /// [`ModuleInstance::stdout`]).
    Capture {
        /// Bytes the module reads from stdin.
        stdin: Vec<u8>,
    },
}

/// How to start a module instance.
#[derive(Debug, Clone, Default)]
pub struct ModuleOptions {
    /// A name for logs and the status; the image's name when `None`.
    pub name: Option<String>,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Host folders made visible to the module, as (host path, guest path), read-write.
    pub dirs: Vec<(PathBuf, String)>,
    /// Standard streams.
    pub stdio: Stdio,
    /// What the module may use; they apply to every instance with the module's identity.
    pub limits: ModuleLimits,
}

/// Wall-clock deadlines of a module's export calls (`[runtime]`); `None` is no limit. Unlike
/// the CPU limit they count time spent blocked in host calls and in `poll`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ExportDeadlines {
    /// `initialize`.
    pub initialize: Option<Duration>,
    /// `wasi:cli/run`.
    pub run: Option<Duration>,
    /// `cleanup`.
    pub cleanup: Option<Duration>,
}

impl ExportDeadlines {
    /// The deadlines `[runtime]` sets.
    pub fn from_settings(settings: &RuntimeSettings) -> Self {
        Self {
            initialize: optional_seconds(settings.initialize_timeout_seconds),
            run: optional_seconds(settings.run_timeout_seconds),
            cleanup: optional_seconds(settings.cleanup_timeout_seconds),
        }
    }
}

/// A module instance with its own store.
pub struct ModuleInstance {
    id: ModuleId,
    deadlines: ExportDeadlines,
    store: Store<ModuleState>,
    lifecycle: Option<FrameworkModule>,
    command: Option<Command>,
    captured: Option<(MemoryOutputPipe, MemoryOutputPipe)>,
    manager: Arc<ModelManager>,
    stopped: bool,
}

impl ModuleInstance {
    pub(super) async fn start(
        engine: &Engine,
        pre: &InstancePre<ModuleState>,
        manager: Arc<ModelManager>,
        id: ModuleId,
        options: ModuleOptions,
        deadlines: ExportDeadlines,
    ) -> Result<Self, RuntimeError> {
        let instantiate_failed = |source| RuntimeError::Instantiate {
            module: id.clone(),
            source,
        };
        let (wasi, captured) = wasi_context(&options).map_err(instantiate_failed)?;
        manager.set_limits(&id, options.limits);
        let mut store = sandboxed_store(engine, id.clone(), manager.clone(), wasi);
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(instantiate_failed)?;
        let lifecycle = FrameworkModule::new(&mut store, &instance).ok();
        let command = Command::new(&mut store, &instance).ok();
        tracing::debug!(module = %id, lifecycle = lifecycle.is_some(), run = command.is_some(), "module instantiated");
        Ok(Self {
            id,
            deadlines,
            store,
            lifecycle,
            command,
            captured,
            manager,
            stopped: false,
        })
    }

    /// The module's identity in logs and the status.
    pub fn id(&self) -> &ModuleId {
        &self.id
    }

    /// Calls the module's `initialize` export with `settings`. A module without the `lifecycle`
    /// export accepts only empty settings.
    pub async fn initialize(&mut self, settings: &str) -> Result<(), RuntimeError> {
        self.ensure_running()?;
        let Some(lifecycle) = &self.lifecycle else {
            return if settings.is_empty() {
                Ok(())
            } else {
                Err(self.missing("modelhost:models/lifecycle (needed for settings)"))
            };
        };
        self.store.data_mut().begin_call();
        let limit = self.deadlines.initialize;
        let call = lifecycle
            .modelhost_models_lifecycle()
            .call_initialize(&mut self.store, settings);
        let result = within(limit, call)
            .await
            .map_err(|limit| self.deadline_passed("initialize", limit))?;
        match self.check_trap("initialize", result)? {
            Ok(()) => Ok(()),
            Err(error) => Err(RuntimeError::Initialize {
                module: self.id.clone(),
                error: guest_error(error),
            }),
        }
    }

    /// Calls the module's `wasi:cli/run` export and returns its exit status: 0 for success, 1 for
    /// a plain failure, or the code the module passed to `exit`.
    pub async fn run(&mut self) -> Result<i32, RuntimeError> {
        self.ensure_running()?;
        let Some(command) = &self.command else {
            return Err(self.missing("wasi:cli/run"));
        };
        self.store.data_mut().begin_call();
        let limit = self.deadlines.run;
        let call = command.wasi_cli_run().call_run(&mut self.store);
        let result = within(limit, call)
            .await
            .map_err(|limit| self.deadline_passed("run", limit))?;
        match result {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(error) => match error.downcast_ref::<I32Exit>() {
                Some(exit) => {
                    let code = exit.0;
                    self.stop();
                    Ok(code)
                }
                None => Err(self.trapped("run", error)),
            },
        }
    }

    /// Calls the module's `cleanup` export (if it has one), then releases every reference it still
    /// holds. The instance cannot be called afterwards.
    pub async fn cleanup(&mut self) -> Result<(), RuntimeError> {
        if self.stopped {
            return Ok(());
        }
        if let Some(lifecycle) = &self.lifecycle {
            self.store.data_mut().begin_call();
            let limit = self.deadlines.cleanup;
            let call = lifecycle
                .modelhost_models_lifecycle()
                .call_cleanup(&mut self.store);
            let result = within(limit, call)
                .await
                .map_err(|limit| self.deadline_passed("cleanup", limit))?;
            self.check_trap("cleanup", result)?;
        }
        self.stop();
        Ok(())
    }

    /// What the module wrote to stdout, when started with [`Stdio::Capture`].
    pub fn stdout(&self) -> Option<Vec<u8>> {
        self.captured
            .as_ref()
            .map(|(out, _)| out.contents().to_vec())
    }

    /// What the module wrote to stderr, when started with [`Stdio::Capture`].
    pub fn stderr(&self) -> Option<Vec<u8>> {
        self.captured
            .as_ref()
            .map(|(_, err)| err.contents().to_vec())
    }

    fn ensure_running(&self) -> Result<(), RuntimeError> {
        if self.stopped {
            Err(RuntimeError::Stopped {
                module: self.id.clone(),
            })
        } else {
            Ok(())
        }
    }

    fn check_trap<T>(
        &mut self,
        export: &'static str,
        result: wasmtime::Result<T>,
    ) -> Result<T, RuntimeError> {
        result.map_err(|error| self.trapped(export, error))
    }

    fn trapped(&mut self, export: &'static str, source: wasmtime::Error) -> RuntimeError {
        tracing::warn!(module = %self.id, export, error = ?source, "module trapped");
        self.stop();
        RuntimeError::Trap {
            module: self.id.clone(),
            export,
            source,
        }
    }

    /// The call to `export` ran past its deadline `limit` (its future is dropped by now): the
    /// instance stops, as after a trap.
    fn deadline_passed(&mut self, export: &'static str, limit: Duration) -> RuntimeError {
        let setting = match export {
            "initialize" => "runtime.initialize_timeout_seconds",
            "cleanup" => "runtime.cleanup_timeout_seconds",
            _ => "runtime.run_timeout_seconds",
        };
        tracing::warn!(module = %self.id, export, seconds = limit.as_secs_f64(), setting,
            "module ran past its deadline; stopping it");
        self.stop();
        RuntimeError::Deadline {
            module: self.id.clone(),
            export,
            seconds: limit.as_secs_f64(),
            setting,
        }
    }

    fn missing(&self, export: &'static str) -> RuntimeError {
        RuntimeError::MissingExport {
            module: self.id.clone(),
            export,
        }
    }

    /// Marks the instance unusable and releases its references.
    fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.manager.release_module(&self.id);
        }
    }
}

impl Drop for ModuleInstance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `call` to completion, or `Err(limit)` once `limit` has passed (the call is dropped).
async fn within<T>(limit: Option<Duration>, call: impl Future<Output = T>) -> Result<T, Duration> {
    match limit {
        None => Ok(call.await),
        Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| limit),
    }
}

type Captured = Option<(MemoryOutputPipe, MemoryOutputPipe)>;

fn wasi_context(options: &ModuleOptions) -> wasmtime::Result<(WasiCtx, Captured)> {
    let mut builder = WasiCtxBuilder::new();
    let program = options.name.clone().unwrap_or_else(|| "module".into());
    builder.arg(program).args(&options.args).envs(&options.env);
    for (host, guest) in &options.dirs {
        builder
            .preopened_dir(host, guest, FsPerms::ReadWrite)
            .map_err(|e| wasmtime::Error::msg(format!("cannot open {}: {e}", host.display())))?;
    }
    let captured = match &options.stdio {
        Stdio::Inherit => {
            builder.inherit_stdio();
            None
        }
        Stdio::Capture { stdin } => {
            let (out, err) = (
                MemoryOutputPipe::new(CAPTURE_LIMIT),
                MemoryOutputPipe::new(CAPTURE_LIMIT),
            );
            builder
                .stdin(MemoryInputPipe::new(stdin.clone()))
                .stdout(out.clone())
                .stderr(err.clone());
            Some((out, err))
        }
    };
    Ok((builder.build(), captured))
}
