use std::fmt;

/// Every way the core refuses its input. Kernels return it instead of panicking; the bindings
/// turn it into a Python `ValueError` carrying the same message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioError {
    /// The input is malformed; the message says what and where.
    Invalid(String),
}

impl AudioError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for AudioError {}
