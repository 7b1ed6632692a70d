//! [`Command`] and [`export_command!`](crate::export_command): a module that `modelhost run`
//! starts, in one trait. Its settings are parsed and its models registered at `initialize`; the
//! state that comes out is handed to `run`; `cleanup` releases what is left.

use serde::de::DeserializeOwned;

use crate::Error;

/// A module started by `modelhost run`: `initialize` turns the settings into the module's state
/// (registering models on the way), `run` does the work with it.
///
/// The [crate documentation](crate) shows a whole module.
pub trait Command: Sized + Send + Sync + 'static {
    /// The module's settings, read from the JSON the host passes (empty settings read as `{}`,
    /// so a `#[serde(default)]` type gets its defaults). Unreadable settings fail the module's
    /// start with `invalid-requirement`.
    type Settings: DeserializeOwned;

    /// Called once, before [`run`](Command::run): registers the models and returns the state
    /// `run` works with. An error aborts the module's start and reaches the host as is.
    fn initialize(settings: Self::Settings) -> Result<Self, Error>;

    /// The module's work. An error is printed to stderr, prefixed with the module's name, and
    /// the module exits with status 1.
    fn run(&self) -> Result<(), Box<dyn std::error::Error>>;

    /// Called once after a `run` that succeeded. (A failed `run` exits the module, and the host
    /// then releases every reference the module still holds.) The default releases every model
    /// registered through this crate.
    fn cleanup(&self) {
        crate::release_all();
    }
}

/// Exports `$command` (a type implementing [`Command`]) as the component's `lifecycle` and its
/// `wasi:cli/run` entry point. It defines the crate's `fn main`, so the crate is a binary with no
/// `main` of its own.
#[macro_export]
macro_rules! export_command {
    ($command:ty) => {
        static __MODELHOST_COMMAND: ::std::sync::OnceLock<$command> = ::std::sync::OnceLock::new();

        struct __ModelhostCommand;

        impl $crate::Module for __ModelhostCommand {
            fn initialize(settings: &str) -> ::core::result::Result<(), $crate::Error> {
                // The host initializes an instance once; a second call keeps the first state.
                if __MODELHOST_COMMAND.get().is_none() {
                    let settings = $crate::parse_settings(settings)?;
                    let state = <$command as $crate::Command>::initialize(settings)?;
                    let _ = __MODELHOST_COMMAND.set(state);
                }
                ::core::result::Result::Ok(())
            }

            fn cleanup() {
                match __MODELHOST_COMMAND.get() {
                    ::core::option::Option::Some(state) => $crate::Command::cleanup(state),
                    ::core::option::Option::None => $crate::release_all(),
                }
            }
        }

        $crate::export_module!(__ModelhostCommand);

        fn main() {
            $crate::run_command(::core::env!("CARGO_PKG_NAME"), __MODELHOST_COMMAND.get());
        }
    };
}

/// The body of the `fn main` that [`export_command!`](crate::export_command) defines: runs the
/// initialized state, or explains how to start the module when there is none.
#[doc(hidden)]
pub fn run_command<C: Command>(name: &str, state: Option<&C>) {
    let Some(state) = state else {
        eprintln!("{name}: not initialized; start it with `modelhost run`");
        std::process::exit(2);
    };
    if let Err(error) = state.run() {
        eprintln!("{name}: {error}");
        std::process::exit(1);
    }
}
