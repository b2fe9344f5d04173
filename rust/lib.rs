//! realtalk's audio core: plain Rust kernels for voice streaming.
//!
//! Every module here works on slices and returns `Result<_, AudioError>`; none of them
//! knows Python. The pyo3 bindings live in `python/` (one file per core module), behind the
//! default `python` feature, so `cargo test --no-default-features` and the criterion benches
//! need no libpython. Kernels choose their SIMD code through `simd`; caller-sized buffers are
//! allocated through `memory`.

pub mod error;
pub mod memory;
pub mod simd;
// ---- pcm ----
pub mod pcm;

// ---- codec ----
pub mod codec;

// ---- ring ----
pub mod ring;

// ---- resample ----
pub mod resample;

// ---- vad ----
pub mod vad;

// ---- frame ----
pub mod frame;

// ---- handoff ----
pub mod handoff;
// ---- aec ----
pub mod aec;

#[cfg(test)]
mod test_noise;

pub use error::AudioError;

#[cfg(feature = "python")]
mod python;
