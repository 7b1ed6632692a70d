//! The rules `[[modules]]` entries must follow together: ids present, without spaces and unique;
//! routes well formed, distinct, and not hiding the paths the public listener answers itself.

use super::ConfigError;
use crate::serve::ModuleSettings;
use crate::serve::settings::{ADMIN_PATHS, route_matches};

/// The key of `module`'s limits in messages: `modules[<id>].limits`.
pub(super) fn limits_key(module: &ModuleSettings) -> String {
    format!("modules[{}].limits", module.id)
}

/// Checks the entries in order; the first rule broken is the error.
pub(super) fn check(modules: &[ModuleSettings]) -> Result<(), ConfigError> {
    let invalid = |problem| Err(ConfigError::Module(problem));
    for (i, module) in modules.iter().enumerate() {
        if module.id.is_empty() || module.id.contains(char::is_whitespace) {
            return invalid(format!("module #{} needs an `id` without spaces", i + 1));
        }
        if modules[..i].iter().any(|m| m.id == module.id) {
            return invalid(format!("module id '{}' is used twice", module.id));
        }
        let Some(route) = &module.route else { continue };
        if !route.starts_with('/') || route.len() > 1 && route.ends_with('/') {
            return invalid(format!(
                "module '{}': route '{route}' must start with '/' and not end with one",
                module.id
            ));
        }
        if let Some(admin) = ADMIN_PATHS.iter().find(|p| route_matches(route, p)) {
            return invalid(format!(
                "module '{}': route '{route}' would hide the admin path {admin}; pick a prefix \
                 such as /{}",
                module.id, module.id
            ));
        }
        if let Some(other) = modules[..i]
            .iter()
            .find(|m| m.route.as_deref() == Some(route))
        {
            return invalid(format!(
                "modules '{}' and '{}' both use route '{route}'",
                other.id, module.id
            ));
        }
    }
    Ok(())
}
