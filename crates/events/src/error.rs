//! The error of row conversion and encoding, turned into an [`EngineError`] by the sink that
//! hit it (so the sink's name is the component).

use std::fmt;

use cdc_engine::{EngineError, ErrorKind};

/// Why a change could not be turned into row events or encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    /// [`ErrorKind::Decode`] for unusable input, [`ErrorKind::Internal`] for a schema/value
    /// mismatch inside milvus-cdc.
    pub kind: ErrorKind,
    /// What failed, naming the collection, field, channel and offset.
    pub message: String,
}

impl EventError {
    /// Unusable input.
    pub fn decode(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Decode,
            message: message.into(),
        }
    }

    /// A broken invariant.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }

    /// The same error with `context` appended (e.g. where the change was read).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{} ({context})", self.message);
        self
    }

    /// As an engine error of `component`.
    pub fn into_engine(self, component: &str) -> EngineError {
        EngineError::new(component, self.kind, self.message)
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for EventError {}
