use std::fmt;

/// Every way the core refuses its input. Kernels return it instead of panicking; the bindings
/// turn `Invalid` into a Python `ValueError` and `OutOfMemory` into a `MemoryError`, each
/// carrying the same message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioError {
    /// The input is malformed; the message says what and where.
    Invalid(String),
    /// An allocation the input asked for could not be made; the message says how big and what
    /// for. (Never an abort: see `memory`.)
    OutOfMemory(String),
}

impl AudioError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// A refused allocation of `bytes` bytes for `what` (`None`: more than the address space).
    pub fn out_of_memory(what: &str, bytes: Option<usize>) -> Self {
        Self::OutOfMemory(match bytes {
            Some(bytes) => format!("cannot allocate {bytes} bytes for {what}"),
            None => format!("cannot allocate {what}: its size overflows the address space"),
        })
    }
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(message) | Self::OutOfMemory(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for AudioError {}
