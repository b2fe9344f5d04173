//! Bindings of `crate::resample`: the streaming `Resampler` and one-shot `resample`.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{channel_count, resampler_rate, Int};
use crate::resample::{self, Quality};
use crate::{memory, AudioError};

/// Inputs longer than this many samples are resampled with the interpreter released.
const DETACH_SAMPLES: usize = 1 << 15;


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
    let Ok(untyped) = samples.cast::<PyUntypedArray>() else {
        return Err(PyValueError::new_err(format!(
            "samples must be a float32 or int16 numpy array, got {}",
            samples.get_type()
        )));
    };
    let two_d = match untyped.shape() {
        [_] if channels == 1 => false,
        [_, columns] if *columns == channels => true,
        shape => {
            return Err(PyValueError::new_err(format!(
                "samples must have shape (frames,{}) for {channels} channel(s), got {shape:?}",
                if channels == 1 { " or (frames, 1)" } else { "" }
            )))
        }
    };
    // Fortran-ordered 2-D arrays are contiguous too, but not frame-interleaved.
    if !untyped.is_c_contiguous() {
        return Err(PyValueError::new_err(
            "samples must be a C-contiguous array (use numpy.ascontiguousarray)",
        ));
    }
    let borrow_error = |error: numpy::BorrowError| PyValueError::new_err(error.to_string());
    let borrowed = if let Ok(array) = samples.cast::<PyArrayDyn<f32>>() {
        Samples::F32(array.try_readonly().map_err(borrow_error)?)
    } else if let Ok(array) = samples.cast::<PyArrayDyn<i16>>() {
        Samples::I16(array.try_readonly().map_err(borrow_error)?)
    } else {
        return Err(PyValueError::new_err(format!(
            "samples must be float32 or int16, got dtype {}",
            untyped.dtype()
        )));
    };
    Ok((borrowed, two_d))
}

fn not_contiguous(_: numpy::AsSliceError) -> PyErr {
    PyValueError::new_err("samples must be a C-contiguous array (use numpy.ascontiguousarray)")
}

fn shaped<T: numpy::Element>(
    py: Python<'_>,
    data: Vec<T>,
    channels: usize,
    two_d: bool,
) -> PyResult<Bound<'_, PyAny>> {
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
    /// The dtype and dimensionality of the last chunk (`LAST_*` bits): `flush` mirrors it.
    last_input: AtomicU8,
}

const LAST_I16: u8 = 1;
const LAST_2D: u8 = 2;

/// Room for everything `process` emits for `samples` more input samples, asked for
/// fallibly: the output can be 24 times the input (8 to 192 kHz).
fn output_vec<T>(resampler: &resample::Resampler, samples: usize) -> Result<Vec<T>, AudioError> {
    let channels = resampler.channels();
    let len = resampler.output_len_for(samples / channels).checked_mul(channels);
    memory::with_capacity(len.unwrap_or(usize::MAX), "the resampled output")
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
    #[pyo3(
        signature = (in_rate, out_rate, *, channels = Int(1), quality = "high"),
        text_signature = "(in_rate, out_rate, *, channels=1, quality=\"high\")"
    )]
    fn new(in_rate: Int, out_rate: Int, channels: Int, quality: &str) -> PyResult<Self> {
        let in_rate = resampler_rate("in_rate", in_rate)?;
        let out_rate = resampler_rate("out_rate", out_rate)?;
        let channels = channel_count(channels, resample::MAX_CHANNELS)?;
        let inner =
            resample::Resampler::new(in_rate, out_rate, channels, Quality::parse(quality)?)?;
        let delay = inner.delay();
        Ok(Self {
            inner: Mutex::new(inner),
            channels,
            delay,
            last_input: AtomicU8::new(0),
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
        let is_i16 = matches!(borrowed, Samples::I16(_));
        self.last_input.store(
            u8::from(is_i16) * LAST_I16 + u8::from(two_d) * LAST_2D,
            Ordering::Relaxed,
        );
        let mut guard = self.lock();
        let resampler = &mut *guard;
        match borrowed {
            Samples::F32(array) => {
                let input = array.as_slice().map_err(not_contiguous)?;
                let mut out = output_vec(resampler, input.len())?;
                if input.len() > DETACH_SAMPLES {
                    py.detach(|| resampler.process_into(input, &mut out))?;
                } else {
                    resampler.process_into(input, &mut out)?;
                }
                shaped(py, out, self.channels, two_d)
            }
            Samples::I16(array) => {
                let input = array.as_slice().map_err(not_contiguous)?;
                let mut out = output_vec(resampler, input.len())?;
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
    /// `round(frames_in * out_rate / in_rate)` frames, then rewinds for a new stream. Same dtype
    /// and dimensionality as the last chunk processed unless `dtype` (float32 or int16) says
    /// otherwise.
    #[pyo3(signature = (dtype = None))]
    fn flush<'py>(
        &self,
        py: Python<'py>,
        dtype: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let last = self.last_input.load(Ordering::Relaxed);
        let as_i16 = match dtype {
            None => last & LAST_I16 != 0,
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
        let two_d = self.channels > 1 || last & LAST_2D != 0;
        let len = resampler.flush_len() * self.channels;
        if as_i16 {
            let mut out = memory::with_capacity(len, "the resampled tail")?;
            resampler.flush_i16_into(&mut out);
            shaped(py, out, self.channels, two_d)
        } else {
            let mut out = memory::with_capacity(len, "the resampled tail")?;
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

/// One-shot, delay-compensated resampling: `round(frames * out_rate / in_rate)` frames,
/// aligned with the input, same dtype and shape convention as the input (2-D input keeps its
/// channel count). Equal to `process()` + `flush()` of a fresh `Resampler`.
#[pyfunction(name = "resample")]
#[pyo3(signature = (samples, in_rate, out_rate, *, quality = "high"))]
pub fn resample_py<'py>(
    py: Python<'py>,
    samples: &Bound<'py, PyAny>,
    in_rate: Int,
    out_rate: Int,
    quality: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let in_rate = resampler_rate("in_rate", in_rate)?;
    let out_rate = resampler_rate("out_rate", out_rate)?;
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
