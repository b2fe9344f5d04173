//! Bindings of `crate::frame`: `Uplink`, `Downlink` and the two results of a decoded delta.

use std::sync::{Mutex, MutexGuard, PoisonError};

use numpy::{Element, PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyString};

use super::{channel_count, resampler_rate, Int};
use crate::frame::{self, Protocol, Scan, WireFormat};
use crate::resample::Quality;
use crate::AudioError;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The kernels return errors instead of panicking, so a poisoned lock still holds a
    // consistent state; it must not turn into a crash.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}


/// A frame: float32 or int16, 1-D (mono) or (frames, channels), C-contiguous.
enum Frame<'py> {
    F32(Bound<'py, PyArrayDyn<f32>>),
    I16(Bound<'py, PyArrayDyn<i16>>),
}

fn check_frame<'py>(samples: &Bound<'py, PyAny>, channels: usize) -> PyResult<Frame<'py>> {
    let frame = if let Ok(array) = samples.cast::<PyArrayDyn<f32>>() {
        Frame::F32(array.clone())
    } else if let Ok(array) = samples.cast::<PyArrayDyn<i16>>() {
        Frame::I16(array.clone())
    } else {
        let described = samples
            .getattr("dtype")
            .map_or_else(|_| samples.get_type().to_string(), |dtype| format!("dtype {dtype}"));
        return Err(PyValueError::new_err(format!(
            "samples must be a float32 or int16 numpy array, got {described}"
        )));
    };
    let array = match &frame {
        Frame::F32(array) => array.as_untyped(),
        Frame::I16(array) => array.as_untyped(),
    };
    if !array.is_c_contiguous() {
        // A Fortran-ordered 2-D array is contiguous too, but its channels are not interleaved.
        return Err(not_contiguous());
    }
    match array.shape() {
        [_] if channels == 1 => Ok(frame),
        [_, columns] if *columns == channels => Ok(frame),
        shape => Err(PyValueError::new_err(format!(
            "samples must have shape (frames, {channels}){} for {channels} channel(s), got {shape:?}",
            if channels == 1 { " or (frames,)" } else { "" }
        ))),
    }
}

/// The samples of a checked frame. Frames are read while attached to the interpreter for
/// the whole call (nothing here detaches), which keeps Python code, the only thing
/// rust-numpy's borrow tracking guards against, from touching them; the tracking would
/// cost a fifth of the call on a 20 ms frame (as for the pcm functions' small inputs).
fn frame_slice<'a, T: numpy::Element>(array: &'a Bound<'_, PyArrayDyn<T>>) -> PyResult<&'a [T]> {
    // SAFETY: checked C-contiguous in `check_frame`; attached and not detaching (above).
    unsafe { array.as_slice() }.map_err(|_| not_contiguous())
}

fn not_contiguous() -> PyErr {
    PyValueError::new_err("samples must be a C-contiguous array (use numpy.ascontiguousarray)")
}

/// A microphone frame to the JSON text of an `input_audio_buffer.append` event.
#[pyclass(module = "realtalk._audio", frozen, name = "Uplink")]
pub struct Uplink {
    inner: Mutex<frame::Uplink>,
    channels: usize,
}

impl Uplink {
    /// Writes the staged frame's event into a new `bytes`, in place.
    fn event<'py>(
        py: Python<'py>,
        uplink: &frame::Uplink,
        event_id: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut written = Ok(());
        let event = PyBytes::new_with(py, uplink.event_len(event_id), |out| {
            written = uplink.write_event(event_id, out);
            Ok(())
        })?;
        written?;
        Ok(event)
    }
}

#[pymethods]
impl Uplink {
    #[new]
    #[pyo3(
        signature = (in_rate, *, format = "pcm16", channels = Int(1), quality = "high"),
        text_signature = "(in_rate, *, format=\"pcm16\", channels=1, quality=\"high\")"
    )]
    fn new(in_rate: Int, format: &str, channels: Int, quality: &str) -> PyResult<Self> {
        let in_rate = resampler_rate("in_rate", in_rate)?;
        let channels = channel_count(channels, frame::MAX_CHANNELS)?;
        let uplink = frame::Uplink::new(in_rate, WireFormat::parse(format)?, channels, Quality::parse(quality)?)?;
        Ok(Self { inner: Mutex::new(uplink), channels })
    }

    /// The complete `input_audio_buffer.append` event for one frame, as UTF-8 JSON
    /// `bytes` written in place (no intermediate copies).
    #[pyo3(signature = (samples, *, event_id = None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        samples: &Bound<'py, PyAny>,
        event_id: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let frame = check_frame(samples, self.channels)?;
        let mut uplink = lock(&self.inner);
        match &frame {
            Frame::F32(array) => uplink.stage_f32(frame_slice(array)?)?,
            Frame::I16(array) => uplink.stage_i16(frame_slice(array)?)?,
        };
        Self::event(py, &uplink, event_id)
    }

    /// The event for the tail the resampler still holds; the next frame starts a new
    /// stream.
    #[pyo3(signature = (*, event_id = None))]
    fn flush<'py>(&self, py: Python<'py>, event_id: Option<&str>) -> PyResult<Bound<'py, PyBytes>> {
        let mut uplink = lock(&self.inner);
        uplink.stage_flush()?;
        Self::event(py, &uplink, event_id)
    }

    /// Forgets the resampler's history and zeroes the audio clock.
    fn reset(&self) {
        lock(&self.inner).reset();
    }

    #[getter]
    fn appended_samples(&self) -> u64 {
        lock(&self.inner).appended_samples()
    }

    #[getter]
    fn appended_ms(&self) -> f64 {
        let uplink = lock(&self.inner);
        uplink.appended_samples() as f64 * 1000.0 / f64::from(uplink.format().wire_rate())
    }

    #[getter]
    fn in_rate(&self) -> u32 {
        lock(&self.inner).in_rate()
    }

    #[getter]
    fn wire_rate(&self) -> u32 {
        lock(&self.inner).format().wire_rate()
    }

    #[getter]
    fn format(&self) -> &'static str {
        lock(&self.inner).format().name()
    }

    #[getter]
    fn channels(&self) -> usize {
        self.channels
    }

    #[getter]
    fn delay(&self) -> f64 {
        lock(&self.inner).delay()
    }

    fn __repr__(&self) -> String {
        let uplink = lock(&self.inner);
        format!(
            "Uplink({}, format={:?}, channels={}, appended_samples={})",
            uplink.in_rate(),
            uplink.format().name(),
            uplink.channels(),
            uplink.appended_samples()
        )
    }
}

/// One audio delta decoded to samples at the downlink's rate.
#[pyclass(module = "realtalk._audio", frozen, name = "AudioDelta", get_all, freelist = 16)]
pub struct AudioDelta {
    response_id: Py<PyString>,
    item_id: Py<PyString>,
    output_index: i64,
    content_index: i64,
    samples: Py<PyAny>,
}

#[pymethods]
impl AudioDelta {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "AudioDelta(response_id={}, item_id={}, output_index={}, content_index={}, samples=<{} samples>)",
            self.response_id.bind(py).repr()?,
            self.item_id.bind(py).repr()?,
            self.output_index,
            self.content_index,
            self.samples.bind(py).len()?
        ))
    }
}

/// One audio delta decoded straight into a `PlaybackBuffer`.
#[pyclass(module = "realtalk._audio", frozen, name = "QueuedDelta", get_all, freelist = 16)]
pub struct QueuedDelta {
    response_id: Py<PyString>,
    item_id: Py<PyString>,
    output_index: i64,
    content_index: i64,
    /// Samples the delta decoded to, at the buffer's rate.
    decoded: usize,
    /// How many of them fit in the buffer (the rest was not queued).
    queued: usize,
}

#[pymethods]
impl QueuedDelta {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "QueuedDelta(response_id={}, item_id={}, output_index={}, content_index={}, decoded={}, queued={})",
            self.response_id.bind(py).repr()?,
            self.item_id.bind(py).repr()?,
            self.output_index,
            self.content_index,
            self.decoded,
            self.queued
        ))
    }
}

/// The last id seen, kept as a Python string: deltas of one item repeat their ids, so
/// most deltas build no new string.
#[derive(Default)]
struct IdCache(Option<(String, Py<PyString>)>);

impl IdCache {
    fn get(&mut self, py: Python<'_>, id: &str) -> Py<PyString> {
        match &self.0 {
            Some((text, object)) if text == id => object.clone_ref(py),
            _ => {
                let object = PyString::new(py, id).unbind();
                self.0 = Some((id.to_owned(), object.clone_ref(py)));
                object
            }
        }
    }
}

struct DownlinkState {
    kernel: frame::Downlink,
    response_ids: IdCache,
    item_ids: IdCache,
}

/// The fields of a delta, with Python strings for the ids.
struct Fields {
    response_id: Py<PyString>,
    item_id: Py<PyString>,
    output_index: i64,
    content_index: i64,
}

/// The Python layer's full parse of a message the scanner left alone
/// (`realtalk._audio_delta.parse_audio_delta`, which knows what a delta's fields must be):
/// `None` if it is not an audio delta of `protocol`, its fields and audio text otherwise.
fn full_parse<'py>(
    message: &Bound<'py, PyAny>,
    protocol: Protocol,
) -> PyResult<Option<(Fields, Bound<'py, PyString>)>> {
    static PARSE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = message.py();
    let parse = PARSE.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("realtalk._audio_delta")?.getattr("parse_audio_delta")?.unbind())
    })?;
    let parsed = parse.bind(py).call1((message, protocol.audio_delta_type()))?;
    if parsed.is_none() {
        return Ok(None);
    }
    let (response_id, item_id, output_index, content_index, delta): (
        Bound<'py, PyString>,
        Bound<'py, PyString>,
        i64,
        i64,
        Bound<'py, PyString>,
    ) = parsed.extract()?;
    let fields = Fields {
        response_id: response_id.unbind(),
        item_id: item_id.unbind(),
        output_index,
        content_index,
    };
    Ok(Some((fields, delta)))
}

fn audio_text<'a>(delta: &'a Bound<'_, PyString>) -> PyResult<&'a [u8]> {
    delta
        .to_str()
        .map(str::as_bytes)
        .map_err(|_| PyValueError::new_err("audio delta is not valid base64 text"))
}

/// Audio delta events to samples at the speaker's rate.
#[pyclass(module = "realtalk._audio", frozen, name = "Downlink")]
pub struct Downlink {
    inner: Mutex<DownlinkState>,
    int16: bool,
}

/// A new array of exactly `len` samples filled in place by `fill`: the only allocation of
/// the samples. (Not `PyArray1::zeros`: numpy's zeroed allocation detaches from the
/// interpreter around `calloc`, which costs more than the fill.)
fn filled_array<T: Element + Copy>(
    py: Python<'_>,
    len: usize,
    fill: impl FnOnce(&mut [T]) -> Result<(), AudioError>,
) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: a fresh contiguous array of `len` elements, referenced nowhere else; it is
    // zeroed before any slice of it exists, so the kernel never sees uninitialised memory
    // (all-zero bytes are a valid float32 and int16).
    let array = unsafe { super::uninit_array::<T>(py, len)? };
    let samples = unsafe {
        std::ptr::write_bytes(array.data(), 0, len);
        std::slice::from_raw_parts_mut(array.data(), len)
    };
    fill(samples)?;
    Ok(array.into_any())
}

impl Downlink {
    /// Scans (or fully parses) `message` and runs `decode` on the delta's fields and
    /// audio text; `None` for any message that is not an audio delta.
    fn with_delta<T>(
        &self,
        message: &Bound<'_, PyAny>,
        decode: impl FnOnce(&mut frame::Downlink, &Fields, &[u8]) -> PyResult<T>,
    ) -> PyResult<Option<(Fields, T)>> {
        let py = message.py();
        let (bytes, known_utf8) = if let Ok(text) = message.cast::<PyString>() {
            // A str holding lone surrogates has no UTF-8 form: the full parse handles it.
            (text.to_str().ok().map(str::as_bytes), true)
        } else if let Ok(bytes) = message.cast::<PyBytes>() {
            (Some(bytes.as_bytes()), false)
        } else {
            return Err(PyTypeError::new_err(format!(
                "message must be str or bytes, got {}",
                message.get_type()
            )));
        };
        let mut state = lock(&self.inner);
        let state = &mut *state;
        let scan = bytes.map_or(Scan::Fallback, |bytes| state.kernel.scan(bytes, known_utf8));
        match scan {
            Scan::Other => Ok(None),
            Scan::Delta(found) => {
                let fields = Fields {
                    response_id: state.response_ids.get(py, &found.response_id),
                    item_id: state.item_ids.get(py, &found.item_id),
                    output_index: found.output_index,
                    content_index: found.content_index,
                };
                let decoded = decode(&mut state.kernel, &fields, found.delta)?;
                Ok(Some((fields, decoded)))
            }
            Scan::Fallback => {
                let Some((fields, audio)) = full_parse(message, state.kernel.protocol())? else {
                    return Ok(None);
                };
                let decoded = decode(&mut state.kernel, &fields, audio_text(&audio)?)?;
                Ok(Some((fields, decoded)))
            }
        }
    }
}

#[pymethods]
impl Downlink {
    #[new]
    #[pyo3(signature = (out_rate, *, format = "pcm16", protocol = "ga", dtype = None, quality = "high"))]
    fn new(
        py: Python<'_>,
        out_rate: Int,
        format: &str,
        protocol: &str,
        dtype: Option<&Bound<'_, PyAny>>,
        quality: &str,
    ) -> PyResult<Self> {
        let out_rate = resampler_rate("out_rate", out_rate)?;
        let int16 = match dtype {
            None => false,
            Some(dtype) => {
                let dtype = numpy::PyArrayDescr::new(py, dtype)?;
                if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
                    false
                } else if dtype.is_equiv_to(&numpy::dtype::<i16>(py)) {
                    true
                } else {
                    return Err(PyValueError::new_err(format!(
                        "dtype must be float32 or int16, got {dtype}"
                    )));
                }
            }
        };
        let kernel = frame::Downlink::new(
            out_rate,
            WireFormat::parse(format)?,
            Protocol::parse(protocol)?,
            Quality::parse(quality)?,
        )?;
        let state = DownlinkState { kernel, response_ids: IdCache::default(), item_ids: IdCache::default() };
        Ok(Self { inner: Mutex::new(state), int16 })
    }

    /// The audio delta in `message` (str or bytes) decoded to samples at `out_rate`, or
    /// `None` if the message is not an audio delta of this protocol. Malformed deltas
    /// raise `ValueError`. The samples are a fresh array; the message is not copied.
    fn decode(&self, message: &Bound<'_, PyAny>) -> PyResult<Option<AudioDelta>> {
        let py = message.py();
        let int16 = self.int16;
        let decoded = self.with_delta(message, |kernel, _, audio| {
            let len = kernel.output_len(audio)?;
            if int16 {
                filled_array(py, len, |out| kernel.decode_i16_into(audio, out))
            } else {
                filled_array(py, len, |out| kernel.decode_f32_into(audio, out))
            }
        })?;
        Ok(decoded.map(|(fields, samples)| AudioDelta {
            response_id: fields.response_id,
            item_id: fields.item_id,
            output_index: fields.output_index,
            content_index: fields.content_index,
            samples: samples.unbind(),
        }))
    }

    /// Decodes the audio delta in `message` straight into `playback` (int16 at
    /// `out_rate`), tagged with its item and content part; `None` for other messages.
    fn decode_into(
        &self,
        message: &Bound<'_, PyAny>,
        playback: &Bound<'_, super::ring::PyPlaybackBuffer>,
    ) -> PyResult<Option<QueuedDelta>> {
        let py = message.py();
        let playback = playback.get();
        let decoded = self.with_delta(message, |kernel, fields, audio| {
            let item_id = fields.item_id.bind(py).to_str()?;
            let mut buffer = lock(&playback.inner);
            Ok(kernel.decode_into_playback(item_id, fields.content_index, audio, &mut buffer)?)
        })?;
        Ok(decoded.map(|(fields, (decoded, queued))| QueuedDelta {
            response_id: fields.response_id,
            item_id: fields.item_id,
            output_index: fields.output_index,
            content_index: fields.content_index,
            decoded,
            queued,
        }))
    }

    /// The tail the resampler still holds (as if the wire went on with silence); the next
    /// delta starts a new stream.
    fn flush<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        let mut state = lock(&self.inner);
        if self.int16 {
            let mut out = Vec::new();
            state.kernel.flush_i16(&mut out);
            PyArray1::from_vec(py, out).into_any()
        } else {
            let mut out = Vec::new();
            state.kernel.flush_f32(&mut out);
            PyArray1::from_vec(py, out).into_any()
        }
    }

    /// Forgets the resampler's history (after a barge-in, say).
    fn reset(&self) {
        lock(&self.inner).kernel.reset();
    }

    #[getter]
    fn out_rate(&self) -> u32 {
        lock(&self.inner).kernel.out_rate()
    }

    #[getter]
    fn wire_rate(&self) -> u32 {
        lock(&self.inner).kernel.format().wire_rate()
    }

    #[getter]
    fn format(&self) -> &'static str {
        lock(&self.inner).kernel.format().name()
    }

    #[getter]
    fn protocol(&self) -> &'static str {
        lock(&self.inner).kernel.protocol().name()
    }

    #[getter]
    fn dtype<'py>(&self, py: Python<'py>) -> Bound<'py, numpy::PyArrayDescr> {
        if self.int16 {
            numpy::dtype::<i16>(py)
        } else {
            numpy::dtype::<f32>(py)
        }
    }

    #[getter]
    fn delay(&self) -> f64 {
        lock(&self.inner).kernel.delay()
    }

    fn __repr__(&self) -> String {
        let state = lock(&self.inner);
        format!(
            "Downlink({}, format={:?}, protocol={:?}, dtype={})",
            state.kernel.out_rate(),
            state.kernel.format().name(),
            state.kernel.protocol().name(),
            if self.int16 { "int16" } else { "float32" }
        )
    }
}
