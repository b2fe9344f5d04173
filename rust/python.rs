//! The only module that knows Python: thin pyo3 wrappers around the plain-Rust kernels.
//!
//! Rules for every wrapper (see style.md): numpy inputs are borrowed read-only and must be
//! contiguous (never silently copied); outputs are moved into numpy from a `Vec` (one
//! allocation); work on large inputs runs detached from the interpreter; every `AudioError`
//! becomes a `ValueError`. Sections are grouped by core module.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::AudioError;

impl From<AudioError> for PyErr {
    fn from(err: AudioError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

// ---- pcm ----


// ---- codec ----


// ---- ring ----


// ---- resample ----


// ---- vad ----


// ---- frame ----


#[pymodule(gil_used = false)]
mod _audio {
    use pyo3::prelude::*;

    // ---- pcm exports ----

    // ---- codec exports ----

    // ---- ring exports ----

    // ---- resample exports ----

    // ---- vad exports ----

    // ---- frame exports ----

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add(
            "build_profile",
            if cfg!(debug_assertions) { "debug" } else { "release" },
        )?;
        Ok(())
    }
}
