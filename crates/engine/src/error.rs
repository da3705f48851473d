//! One error type for every component, carrying what failed, where, and whether retrying can
//! help, so the reason that pauses a task tells the operator what to do.

use std::fmt;

/// Broad class of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is invalid.
    Config,
    /// An external system could not be reached.
    Connect,
    /// Input could not be decoded.
    Decode,
    /// The external system refused or failed a write.
    Write,
    /// The external system failed a read.
    Read,
    /// The state store failed.
    State,
    /// A broken invariant inside milvus-cdc.
    Internal,
}

impl ErrorKind {
    /// The `kind` label of `milvus_cdc_component_errors_total`: the only labels that metric has.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Connect => "connect",
            ErrorKind::Decode => "decode",
            ErrorKind::Write => "write",
            ErrorKind::Read => "read",
            ErrorKind::State => "state",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Config => "invalid configuration",
            ErrorKind::Connect => "cannot connect",
            ErrorKind::Decode => "cannot decode",
            ErrorKind::Write => "write failed",
            ErrorKind::Read => "read failed",
            ErrorKind::State => "state store failed",
            ErrorKind::Internal => "internal error",
        })
    }
}

/// A failure of a pipeline component.
#[derive(Debug, Clone)]
pub struct EngineError {
    /// The component (e.g. `source`, `sink target_milvus`).
    pub component: String,
    /// Class of failure.
    pub kind: ErrorKind,
    /// What happened, with the object concerned (collection, channel, offset...).
    pub message: String,
    /// True when retrying the same operation later may succeed.
    pub retriable: bool,
}

impl EngineError {
    /// A new error.
    pub fn new(component: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            component: component.into(),
            kind,
            message: message.into(),
            retriable: false,
        }
    }

    /// Mark the error retriable.
    pub fn retriable(mut self) -> Self {
        self.retriable = true;
        self
    }

    /// Shorthand for a configuration error.
    pub fn config(component: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(component, ErrorKind::Config, message)
    }

    /// Shorthand for an internal error.
    pub fn internal(component: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(component, ErrorKind::Internal, message)
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.component, self.kind, self.message)
    }
}

impl std::error::Error for EngineError {}

impl From<cdc_state::StateError> for EngineError {
    fn from(e: cdc_state::StateError) -> Self {
        EngineError::new("state", ErrorKind::State, e.to_string())
    }
}
