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

mod resample_bindings {
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use numpy::ndarray::Array2;
    use numpy::{IntoPyArray, PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;

    use crate::resample::{self, Quality};
    use crate::AudioError;

    /// Inputs longer than this many samples are resampled with the interpreter released.
    const DETACH_SAMPLES: usize = 1 << 15;

    fn rate(name: &str, value: i64) -> Result<u32, AudioError> {
        u32::try_from(value)
            .ok()
            .filter(|rate| (resample::MIN_RATE..=resample::MAX_RATE).contains(rate))
            .ok_or_else(|| {
                AudioError::invalid(format!(
                    "{name} must be an integer from {} to {} Hz, got {value}",
                    resample::MIN_RATE,
                    resample::MAX_RATE
                ))
            })
    }

    /// A borrowed, checked input: its samples and the shape the output must mirror.
    enum Samples<'py> {
        F32(numpy::PyReadonlyArrayDyn<'py, f32>),
        I16(numpy::PyReadonlyArrayDyn<'py, i16>),
    }

    /// Borrows a float32 or int16 array of `channels` columns (1-D allowed for mono).
    fn borrow_samples<'py>(
        samples: &Bound<'py, PyAny>,
        channels: usize,
    ) -> PyResult<(Samples<'py>, bool)> {
        let (borrowed, shape): (Samples<'py>, Vec<usize>) =
            if let Ok(array) = samples.cast::<PyArrayDyn<f32>>() {
                (
                    Samples::F32(
                        array
                            .try_readonly()
                            .map_err(|e| PyValueError::new_err(e.to_string()))?,
                    ),
                    array.shape().to_vec(),
                )
            } else if let Ok(array) = samples.cast::<PyArrayDyn<i16>>() {
                (
                    Samples::I16(
                        array
                            .try_readonly()
                            .map_err(|e| PyValueError::new_err(e.to_string()))?,
                    ),
                    array.shape().to_vec(),
                )
            } else {
                let described = samples.getattr("dtype").map_or_else(
                    |_| samples.get_type().to_string(),
                    |dtype| format!("dtype {dtype}"),
                );
                return Err(PyValueError::new_err(format!(
                    "samples must be a float32 or int16 numpy array, got {described}"
                )));
            };
        let two_d = match shape.as_slice() {
            [_] if channels == 1 => false,
            [_, columns] if *columns == channels => true,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "samples must have shape (frames,{}) for {channels} channel(s), got {shape:?}",
                    if channels == 1 { " or (frames, 1)" } else { "" }
                )))
            }
        };
        Ok((borrowed, two_d))
    }

    fn not_contiguous(_: numpy::AsSliceError) -> PyErr {
        PyValueError::new_err("samples must be a C-contiguous array (use numpy.ascontiguousarray)")
    }

    fn shaped<'py, T: numpy::Element>(
        py: Python<'py>,
        data: Vec<T>,
        channels: usize,
        two_d: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        if two_d {
            let frames = data.len() / channels;
            // The kernels emit whole frames, so the shape always fits.
            let matrix = Array2::from_shape_vec((frames, channels), data)
                .map_err(|error| PyValueError::new_err(error.to_string()))?;
            Ok(matrix.into_pyarray(py).into_any())
        } else {
            Ok(PyArray1::from_vec(py, data).into_any())
        }
    }

    /// Streaming resampler: float32 or int16 frames in, the same dtype out, any chunking.
    #[pyclass(module = "realtalk._audio", frozen, name = "Resampler")]
    pub struct Resampler {
        inner: Mutex<resample::Resampler>,
        channels: usize,
        delay: f64,
    }

    impl Resampler {
        fn lock(&self) -> MutexGuard<'_, resample::Resampler> {
            // A panic cannot happen while the lock is held (the kernels return errors instead),
            // but a poisoned lock must not turn into a crash either.
            self.inner.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    #[pymethods]
    impl Resampler {
        #[new]
        #[pyo3(signature = (in_rate, out_rate, *, channels = 1, quality = "high"))]
        fn new(in_rate: i64, out_rate: i64, channels: i64, quality: &str) -> PyResult<Self> {
            let in_rate = rate("in_rate", in_rate)?;
            let out_rate = rate("out_rate", out_rate)?;
            let channels = usize::try_from(channels)
                .ok()
                .filter(|c| (1..=resample::MAX_CHANNELS).contains(c))
                .ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "channels must be from 1 to {}, got {channels}",
                        resample::MAX_CHANNELS
                    ))
                })?;
            let inner =
                resample::Resampler::new(in_rate, out_rate, channels, Quality::parse(quality)?)?;
            let delay = inner.delay();
            Ok(Self {
                inner: Mutex::new(inner),
                channels,
                delay,
            })
        }

        /// Resamples one chunk; returns every output frame that is complete (same dtype and
        /// dimensionality as the input). The output is a fresh array; the input is not copied.
        fn process<'py>(
            &self,
            py: Python<'py>,
            samples: &Bound<'py, PyAny>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let (borrowed, two_d) = borrow_samples(samples, self.channels)?;
            let mut guard = self.lock();
            let resampler = &mut *guard;
            match borrowed {
                Samples::F32(array) => {
                    let input = array.as_slice().map_err(not_contiguous)?;
                    let mut out = Vec::with_capacity(
                        resampler.output_len_for(input.len() / self.channels) * self.channels,
                    );
                    if input.len() > DETACH_SAMPLES {
                        py.detach(|| resampler.process_into(input, &mut out))?;
                    } else {
                        resampler.process_into(input, &mut out)?;
                    }
                    shaped(py, out, self.channels, two_d)
                }
                Samples::I16(array) => {
                    let input = array.as_slice().map_err(not_contiguous)?;
                    let mut out = Vec::with_capacity(
                        resampler.output_len_for(input.len() / self.channels) * self.channels,
                    );
                    if input.len() > DETACH_SAMPLES {
                        py.detach(|| resampler.process_i16_into(input, &mut out))?;
                    } else {
                        resampler.process_i16_into(input, &mut out)?;
                    }
                    shaped(py, out, self.channels, two_d)
                }
            }
        }

        /// Returns the tail (the input continued with silence) so the stream's total output is
        /// round(frames_in * out_rate / in_rate) frames, then rewinds for a new stream. 1-D
        /// float32 for mono, 2-D (frames, channels) float32 otherwise; `dtype=numpy.int16` (or
        /// "int16") gives PCM16.
        #[pyo3(signature = (dtype = None))]
        fn flush<'py>(
            &self,
            py: Python<'py>,
            dtype: Option<&Bound<'py, PyAny>>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let as_i16 = match dtype {
                None => false,
                Some(dtype) => {
                    let name = numpy::PyArrayDescr::new(py, dtype)?.str()?.to_string();
                    match name.as_str() {
                        "float32" => false,
                        "int16" => true,
                        other => {
                            return Err(PyValueError::new_err(format!(
                                "dtype must be float32 or int16, got {other}"
                            )))
                        }
                    }
                }
            };
            let mut resampler = self.lock();
            let two_d = self.channels > 1;
            if as_i16 {
                let mut out = Vec::with_capacity(resampler.flush_len() * self.channels);
                resampler.flush_i16_into(&mut out);
                shaped(py, out, self.channels, two_d)
            } else {
                let mut out = Vec::with_capacity(resampler.flush_len() * self.channels);
                resampler.flush_into(&mut out);
                shaped(py, out, self.channels, two_d)
            }
        }

        /// Forgets all input so the next chunk starts a new stream.
        fn reset(&self) {
            self.lock().reset();
        }

        /// How far the stream lags its input, in output samples.
        #[getter]
        fn delay(&self) -> f64 {
            self.delay
        }

        #[getter]
        fn in_rate(&self) -> u32 {
            self.lock().in_rate()
        }

        #[getter]
        fn out_rate(&self) -> u32 {
            self.lock().out_rate()
        }

        #[getter]
        fn channels(&self) -> usize {
            self.channels
        }

        #[getter]
        fn quality(&self) -> &'static str {
            self.lock().quality().name()
        }

        fn __repr__(&self) -> String {
            let resampler = self.lock();
            format!(
                "Resampler({}, {}, channels={}, quality={:?})",
                resampler.in_rate(),
                resampler.out_rate(),
                self.channels,
                resampler.quality().name()
            )
        }
    }

    /// One-shot, delay-compensated resampling: round(frames * out_rate / in_rate) frames,
    /// aligned with the input, same dtype and shape convention as the input (2-D input keeps its
    /// channel count). Equal to process() + flush() of a fresh Resampler.
    #[pyfunction(name = "resample")]
    #[pyo3(signature = (samples, in_rate, out_rate, *, quality = "high"))]
    pub fn resample_py<'py>(
        py: Python<'py>,
        samples: &Bound<'py, PyAny>,
        in_rate: i64,
        out_rate: i64,
        quality: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let in_rate = rate("in_rate", in_rate)?;
        let out_rate = rate("out_rate", out_rate)?;
        let quality = Quality::parse(quality)?;
        let ndim = samples
            .cast::<numpy::PyUntypedArray>()
            .map(|a| a.shape().to_vec())
            .unwrap_or_default();
        let channels = match ndim.as_slice() {
            [_, columns] if (1..=resample::MAX_CHANNELS).contains(columns) => *columns,
            _ => 1,
        };
        let (borrowed, two_d) = borrow_samples(samples, channels)?;
        match borrowed {
            Samples::F32(array) => {
                let input = array.as_slice().map_err(not_contiguous)?;
                let out = if input.len() > DETACH_SAMPLES {
                    py.detach(|| resample::resample(input, in_rate, out_rate, channels, quality))?
                } else {
                    resample::resample(input, in_rate, out_rate, channels, quality)?
                };
                shaped(py, out, channels, two_d)
            }
            Samples::I16(array) => {
                let input = array.as_slice().map_err(not_contiguous)?;
                let out = if input.len() > DETACH_SAMPLES {
                    py.detach(|| {
                        resample::resample_i16(input, in_rate, out_rate, channels, quality)
                    })?
                } else {
                    resample::resample_i16(input, in_rate, out_rate, channels, quality)?
                };
                shaped(py, out, channels, two_d)
            }
        }
    }
}

pub use resample_bindings::{resample_py, Resampler};

// ---- vad ----


// ---- frame ----


#[pymodule(gil_used = false)]
mod _audio {
    use pyo3::prelude::*;

    // ---- pcm exports ----

    // ---- codec exports ----

    // ---- ring exports ----

    // ---- resample exports ----
    #[pymodule_export]
    use super::{resample_py, Resampler};

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
