//! Bindings of `crate::aec`: the streaming `EchoCanceller`.

use std::sync::{Mutex, MutexGuard, PoisonError};

use numpy::npyffi::NPY_TYPES;
use numpy::{PyArray1, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{zeros_array, Int};
use crate::aec as core;

const SAMPLES: &str = "a 1-D contiguous numpy array of float32 or int16";

/// One frame borrowed from numpy: its samples are read while attached to the interpreter
/// (a frame is a few hundred samples, less work than detaching).
enum Frame<'py> {
    F32(Bound<'py, PyArray1<f32>>),
    I16(Bound<'py, PyArray1<i16>>),
}

fn frame<'py>(samples: &Bound<'py, PyAny>, name: &str) -> PyResult<Frame<'py>> {
    let wrong = || PyValueError::new_err(format!("{name} must be {SAMPLES}"));
    let array = samples.cast::<PyUntypedArray>().map_err(|_| wrong())?;
    if array.ndim() != 1 || !array.is_contiguous() {
        return Err(wrong());
    }
    let dtype = array.dtype();
    let native = dtype.is_native_byteorder() != Some(false);
    if native && dtype.num() == NPY_TYPES::NPY_FLOAT as std::ffi::c_int {
        // SAFETY: a 1-D array of native float32, checked above.
        return Ok(Frame::F32(unsafe { array.cast_unchecked::<PyArray1<f32>>() }.clone()));
    }
    if native && dtype.num() == NPY_TYPES::NPY_SHORT as std::ffi::c_int {
        // SAFETY: a 1-D array of native int16, checked above.
        return Ok(Frame::I16(unsafe { array.cast_unchecked::<PyArray1<i16>>() }.clone()));
    }
    Err(wrong())
}

fn cancel<'py, M, R>(
    canceller: &mut core::EchoCanceller,
    mic: &Bound<'py, PyArray1<M>>,
    reference: &Bound<'py, PyArray1<R>>,
) -> PyResult<Bound<'py, PyArray1<M>>>
where
    M: core::OutputSample + numpy::Element,
    R: crate::vad::Sample + numpy::Element,
{
    let out = zeros_array::<M>(mic.py(), canceller.frame_samples())?;
    // SAFETY: attached to the interpreter for the whole call, so no Python code can write the
    // inputs meanwhile; both were checked contiguous, and `out` is new and referenced nowhere
    // else. (`mic` and `out` cannot alias: `out` was just allocated.)
    unsafe {
        canceller.process(mic.as_slice()?, reference.as_slice()?, out.as_slice_mut()?)?;
    }
    Ok(out)
}

/// Acoustic echo canceller: removes from the microphone what the loudspeaker played.
#[pyclass(module = "realtalk._audio", name = "EchoCanceller", frozen)]
pub struct EchoCanceller {
    inner: Mutex<core::EchoCanceller>,
}

impl EchoCanceller {
    fn lock(&self) -> MutexGuard<'_, core::EchoCanceller> {
        // The core never panics, so a poisoned lock still holds a consistent canceller.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl EchoCanceller {
    #[new]
    #[pyo3(
        signature = (sample_rate, *, frame_ms = Int(10), filter_ms = Int(250), delay_ms = Int(0), suppress = true),
        text_signature = "(sample_rate, *, frame_ms=10, filter_ms=250, delay_ms=0, suppress=True)"
    )]
    fn new(sample_rate: Int, frame_ms: Int, filter_ms: Int, delay_ms: Int, suppress: bool) -> PyResult<Self> {
        let config = core::EchoConfig {
            sample_rate: sample_rate.within("sample_rate", 0, u32::MAX, " Hz")?,
            frame_ms: frame_ms.within("frame_ms", 0, u32::MAX, " ms")?,
            filter_ms: filter_ms.within("filter_ms", 0, u32::MAX, " ms")?,
            delay_ms: delay_ms.within("delay_ms", 0, u32::MAX, " ms")?,
            suppress,
        };
        Ok(Self { inner: Mutex::new(core::EchoCanceller::new(config)?) })
    }

    /// Cancels one frame: `mic` and `reference` (what the loudspeaker played, float32 or
    /// int16) are `frame_samples` long; returns the cleaned microphone frame, same dtype as
    /// `mic`, `latency_samples` late.
    fn process<'py>(
        &self,
        mic: &Bound<'py, PyAny>,
        reference: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (mic, reference) = (frame(mic, "mic")?, frame(reference, "reference")?);
        let mut canceller = self.lock();
        let canceller = &mut *canceller;
        Ok(match (&mic, &reference) {
            (Frame::F32(m), Frame::F32(r)) => cancel(canceller, m, r)?.into_any(),
            (Frame::F32(m), Frame::I16(r)) => cancel(canceller, m, r)?.into_any(),
            (Frame::I16(m), Frame::F32(r)) => cancel(canceller, m, r)?.into_any(),
            (Frame::I16(m), Frame::I16(r)) => cancel(canceller, m, r)?.into_any(),
        })
    }

    /// Start over: the echo path is learnt again.
    fn reset(&self) {
        self.lock().reset();
    }

    #[getter]
    fn sample_rate(&self) -> u32 {
        self.lock().config().sample_rate
    }

    #[getter]
    fn frame_ms(&self) -> u32 {
        self.lock().config().frame_ms
    }

    #[getter]
    fn filter_ms(&self) -> u32 {
        self.lock().config().filter_ms
    }

    #[getter]
    fn delay_ms(&self) -> u32 {
        self.lock().config().delay_ms
    }

    #[getter]
    fn suppress(&self) -> bool {
        self.lock().config().suppress
    }

    /// Samples per frame (`sample_rate * frame_ms / 1000`).
    #[getter]
    fn frame_samples(&self) -> usize {
        self.lock().frame_samples()
    }

    /// How many samples the output lags the microphone (one frame with `suppress`, else 0).
    #[getter]
    fn latency_samples(&self) -> usize {
        self.lock().latency_samples()
    }

    /// Frames processed since construction or `reset`.
    #[getter]
    fn frames(&self) -> u64 {
        self.lock().frames()
    }

    /// How many times the filter was found diverged and restarted.
    #[getter]
    fn divergences(&self) -> u64 {
        self.lock().divergences()
    }

    /// Whether the last frame was judged far-end single talk (the far end talking alone): its
    /// output is then comfort noise at the background's level. Always false with `suppress=False`.
    #[getter]
    fn far_end_only(&self) -> bool {
        self.lock().far_end_only()
    }

    /// The measured delay between the reference (as given, before `delay_ms`) and its echo in
    /// the microphone, in milliseconds (0 to 250), or None until about a second of far-end
    /// signal has given a clear estimate.
    #[getter]
    fn estimated_delay_ms(&self) -> Option<u32> {
        self.lock().estimated_delay_ms()
    }

    fn __repr__(&self) -> String {
        let canceller = self.lock();
        let c = canceller.config();
        format!(
            "EchoCanceller({}, frame_ms={}, filter_ms={}, delay_ms={}, suppress={})",
            c.sample_rate,
            c.frame_ms,
            c.filter_ms,
            c.delay_ms,
            if c.suppress { "True" } else { "False" }
        )
    }
}
