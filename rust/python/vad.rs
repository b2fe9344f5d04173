//! Bindings of `crate::vad`: the streaming `Vad` and its events.

use std::sync::{Mutex, MutexGuard, PoisonError};

use numpy::npyffi::NPY_TYPES;
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::Int;
use crate::vad as core;

/// Above this many samples the work runs detached from the interpreter.
const DETACH_SAMPLES: usize = 16_384;

/// A turn boundary found by `Vad.process`.
#[pyclass(module = "realtalk._audio", name = "VadEvent", frozen, eq, hash, skip_from_py_object)]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VadEvent {
    #[pyo3(get, name = "type")]
    kind: &'static str,
    #[pyo3(get)]
    audio_start_ms: Option<u64>,
    #[pyo3(get)]
    audio_end_ms: Option<u64>,
}

impl From<core::VadEvent> for VadEvent {
    fn from(event: core::VadEvent) -> Self {
        match event {
            core::VadEvent::SpeechStarted { audio_start_ms } => Self {
                kind: "speech_started",
                audio_start_ms: Some(audio_start_ms),
                audio_end_ms: None,
            },
            core::VadEvent::SpeechStopped { audio_end_ms } => Self {
                kind: "speech_stopped",
                audio_start_ms: None,
                audio_end_ms: Some(audio_end_ms),
            },
        }
    }
}

#[pymethods]
impl VadEvent {
    fn __repr__(&self) -> String {
        match (self.audio_start_ms, self.audio_end_ms) {
            (Some(ms), _) => format!("VadEvent(type='{}', audio_start_ms={ms})", self.kind),
            (_, Some(ms)) => format!("VadEvent(type='{}', audio_end_ms={ms})", self.kind),
            _ => format!("VadEvent(type='{}')", self.kind),
        }
    }
}

enum Samples<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    I16(PyReadonlyArray1<'py, i16>),
}

fn borrow_samples<'py>(samples: &Bound<'py, PyAny>) -> PyResult<Samples<'py>> {
    let wrong_type =
        || PyValueError::new_err("samples must be a 1-D numpy array of float32 or int16");
    let busy = |_| PyValueError::new_err("samples are being written elsewhere");
    // One dtype comparison, then an unchecked cast: a failed typed cast builds a costly
    // error, which would tax every int16 frame.
    let array = samples.cast::<PyUntypedArray>().map_err(|_| wrong_type())?;
    if array.ndim() != 1 {
        return Err(wrong_type());
    }
    let dtype = array.dtype();
    // Type numbers and byte order are plain fields: no numpy API call per frame.
    let native = dtype.is_native_byteorder() != Some(false);
    let float32 = NPY_TYPES::NPY_FLOAT as std::ffi::c_int;
    let int16 = NPY_TYPES::NPY_SHORT as std::ffi::c_int;
    if native && dtype.num() == float32 {
        // SAFETY: a 1-D array of native float32, checked above.
        let array = unsafe { array.cast_unchecked::<PyArray1<f32>>() };
        return Ok(Samples::F32(array.try_readonly().map_err(busy)?));
    }
    if native && dtype.num() == int16 {
        // SAFETY: a 1-D array of native int16, checked above.
        let array = unsafe { array.cast_unchecked::<PyArray1<i16>>() };
        return Ok(Samples::I16(array.try_readonly().map_err(busy)?));
    }
    Err(wrong_type())
}

fn contiguous<'a, T: numpy::Element>(array: &'a PyReadonlyArray1<'_, T>) -> PyResult<&'a [T]> {
    array
        .as_slice()
        .map_err(|_| PyValueError::new_err("samples must be a contiguous array"))
}

fn events<S: core::Sample + Sync>(
    py: Python<'_>,
    vad: &mut core::Vad,
    samples: &[S],
) -> Result<Vec<core::VadEvent>, crate::AudioError> {
    if samples.len() > DETACH_SAMPLES {
        py.detach(|| vad.process(samples))
    } else {
        vad.process(samples)
    }
}

fn decisions<S: core::Sample + Sync>(
    py: Python<'_>,
    vad: &mut core::Vad,
    samples: &[S],
) -> Result<Vec<bool>, crate::AudioError> {
    if samples.len() > DETACH_SAMPLES {
        py.detach(|| vad.classify(samples))
    } else {
        vad.classify(samples)
    }
}

/// Streaming voice activity detector with the Realtime API's `server_vad` semantics.
#[pyclass(module = "realtalk._audio", name = "Vad", frozen)]
pub struct Vad {
    inner: Mutex<core::Vad>,
}

impl Vad {
    fn lock(&self) -> MutexGuard<'_, core::Vad> {
        // The core never panics, so a poisoned lock still holds a consistent detector.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn non_negative(name: &str, value: Int, unit: &str) -> PyResult<u32> {
    value.within(name, 0, u32::MAX, unit)
}

#[pymethods]
impl Vad {
    #[new]
    #[pyo3(
        signature = (sample_rate = Int(24000), *, threshold = 0.5, prefix_padding_ms = Int(300), silence_duration_ms = Int(500), frame_ms = Int(10)),
        text_signature = "(sample_rate=24000, *, threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500, frame_ms=10)"
    )]
    fn new(
        sample_rate: Int,
        threshold: f64,
        prefix_padding_ms: Int,
        silence_duration_ms: Int,
        frame_ms: Int,
    ) -> PyResult<Self> {
        let config = core::VadConfig {
            sample_rate: non_negative("sample_rate", sample_rate, " Hz")?,
            threshold: threshold as f32,
            prefix_padding_ms: non_negative("prefix_padding_ms", prefix_padding_ms, " ms")?,
            silence_duration_ms: non_negative("silence_duration_ms", silence_duration_ms, " ms")?,
            frame_ms: non_negative("frame_ms", frame_ms, " ms")?,
        };
        Ok(Self { inner: Mutex::new(core::Vad::new(config)?) })
    }

    /// Feeds a chunk (float32 or int16, any length); returns the turn events it completes.
    fn process(&self, py: Python<'_>, samples: &Bound<'_, PyAny>) -> PyResult<Vec<VadEvent>> {
        let samples = borrow_samples(samples)?;
        let mut vad = self.lock();
        let found = match &samples {
            Samples::F32(array) => events(py, &mut vad, contiguous(array)?)?,
            Samples::I16(array) => events(py, &mut vad, contiguous(array)?)?,
        };
        Ok(found.into_iter().map(VadEvent::from).collect())
    }

    /// Feeds a chunk; returns one speech decision per frame it completes (new array).
    fn classify<'py>(
        &self,
        py: Python<'py>,
        samples: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let samples = borrow_samples(samples)?;
        let mut vad = self.lock();
        let found = match &samples {
            Samples::F32(array) => decisions(py, &mut vad, contiguous(array)?)?,
            Samples::I16(array) => decisions(py, &mut vad, contiguous(array)?)?,
        };
        Ok(PyArray1::from_vec(py, found))
    }

    /// Start a new stream: the clock restarts at 0 and the noise floor is learnt again.
    fn reset(&self) {
        self.lock().reset();
    }

    #[getter]
    fn speaking(&self) -> bool {
        self.lock().speaking()
    }

    #[getter]
    fn sample_rate(&self) -> u32 {
        self.lock().config().sample_rate
    }

    #[getter]
    fn threshold(&self) -> f64 {
        f64::from(self.lock().config().threshold)
    }

    #[getter]
    fn prefix_padding_ms(&self) -> u32 {
        self.lock().config().prefix_padding_ms
    }

    #[getter]
    fn silence_duration_ms(&self) -> u32 {
        self.lock().config().silence_duration_ms
    }

    #[getter]
    fn frame_ms(&self) -> u32 {
        self.lock().config().frame_ms
    }

    /// Milliseconds of audio analysed so far (whole frames since the first sample or reset).
    #[getter]
    fn processed_ms(&self) -> u64 {
        self.lock().processed_ms()
    }

    fn __repr__(&self) -> String {
        let vad = self.lock();
        let c = vad.config();
        format!(
            "Vad(sample_rate={}, threshold={}, prefix_padding_ms={}, silence_duration_ms={}, frame_ms={})",
            c.sample_rate, c.threshold, c.prefix_padding_ms, c.silence_duration_ms, c.frame_ms
        )
    }
}
