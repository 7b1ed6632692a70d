//! The [`Module`] trait: a module's `lifecycle` export in idiomatic Rust.

use crate::Error;
use crate::bindings::exports::modelhost::models::lifecycle::Guest;
use crate::bindings::modelhost::models::types as wit;

/// What a module does when the host sets it up and tears it down. Implement it on a unit struct
/// and name that struct in [`export_module!`](crate::export_module).
pub trait Module {
    /// Called once with the module's settings (JSON, or empty). Register models here.
    fn initialize(settings: &str) -> Result<(), Error>;

    /// Called once before the module is dropped. The default releases every model registered
    /// through this crate; the host would release them anyway, but a module that cleans up after
    /// itself keeps its logs honest.
    fn cleanup() {
        crate::release_all();
    }
}

impl<T: Module> Guest for T {
    fn initialize(settings: String) -> Result<(), wit::Error> {
        T::initialize(&settings).map_err(Into::into)
    }

    fn cleanup() {
        T::cleanup()
    }
}

/// Exports `$module` (a type implementing [`Module`]) as the component's `lifecycle`.
#[macro_export]
macro_rules! export_module {
    ($module:ident) => {
        $crate::bindings::export_bindings!($module with_types_in $crate::bindings);
    };
}
