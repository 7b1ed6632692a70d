//! The module-side error type and the settings parser that produces it.

use std::fmt;

use serde::de::DeserializeOwned;

use crate::ErrorCode;
use crate::bindings::modelhost::models::types as wit;

/// A failed call or a module's own failure: a stable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong and what to do about it.
    pub message: String,
    /// Extra context.
    pub details: Option<String>,
}

impl Error {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }
}

impl Error {
    /// The code as spelled in the WIT (`model-not-found`, ...), for logs and wire formats.
    pub fn code_name(&self) -> &'static str {
        match self.code {
            ErrorCode::InvalidRequirement => "invalid-requirement",
            ErrorCode::ModelNotFound => "model-not-found",
            ErrorCode::InvalidModelFiles => "invalid-model-files",
            ErrorCode::UnsupportedArchitecture => "unsupported-architecture",
            ErrorCode::DimensionMismatch => "dimension-mismatch",
            ErrorCode::WrongModelType => "wrong-model-type",
            ErrorCode::NotRegistered => "not-registered",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InvalidInput => "invalid-input",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::DeviceUnavailable => "device-unavailable",
            ErrorCode::LoadFailed => "load-failed",
            ErrorCode::InferenceFailed => "inference-failed",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Gated => "gated",
            ErrorCode::NetworkUnreachable => "network-unreachable",
            ErrorCode::DiskFull => "disk-full",
            ErrorCode::CorruptDownload => "corrupt-download",
            ErrorCode::LimitExceeded => "limit-exceeded",
            ErrorCode::NotAllowed => "not-allowed",
            ErrorCode::OutOfMemory => "out-of-memory",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code_name(), self.message)?;
        if let Some(details) = &self.details {
            write!(f, " ({details})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        Self {
            code: e.code,
            message: e.message,
            details: e.details,
        }
    }
}

impl From<Error> for wit::Error {
    fn from(e: Error) -> Self {
        Self {
            code: e.code,
            message: e.message,
            details: e.details,
        }
    }
}

/// Parses a module's JSON settings. Empty settings are read as `{}`, so a settings type with
/// `#[serde(default)]` gets its defaults and one with required fields says which is missing.
/// Malformed settings are an `invalid-requirement` error that quotes the parser.
pub fn parse_settings<T: DeserializeOwned>(settings: &str) -> Result<T, Error> {
    let settings = if settings.trim().is_empty() {
        "{}"
    } else {
        settings
    };
    serde_json::from_str(settings).map_err(|e| {
        Error::new(
            ErrorCode::InvalidRequirement,
            format!("the module settings are not valid: {e}"),
        )
    })
}
