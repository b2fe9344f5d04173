//! Bindings of `crate::ring`: the ring and playback buffers.

use std::sync::Mutex;

use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{describe_dtype, get_pcm16, lock, zeros_array, Int};

/// PCM16 to float, as `pcm16_to_float` scales it (exact in f32).
const PCM16_TO_FLOAT: f32 = 1.0 / 32768.0;

/// A fixed-capacity FIFO of int16 samples, safe to share between threads.
///
/// `write` accepts as many samples as fit and returns that count: the buffer never grows and
/// never drops or overwrites what it accepted. `read(n)` removes and returns up to `n` of the
/// oldest samples, `peek(n)` returns them without removing; `len()`, `free` and `capacity`
/// count samples. Inputs are int16 arrays or bytes-like PCM16; outputs are new arrays.
///
/// >>> import numpy as np
/// >>> ring = RingBuffer(4)
/// >>> ring.write(np.array([1, 2, 3], dtype=np.int16)), ring.write(b"\x04\x00\x05\x00")
/// (3, 1)
/// >>> ring.read(2), len(ring), ring.free
/// (array([1, 2], dtype=int16), 2, 2)
#[pyclass(name = "RingBuffer", module = "realtalk._audio", frozen)]
pub struct PyRingBuffer {
    inner: Mutex<crate::ring::RingBuffer>,
}

#[pymethods]
impl PyRingBuffer {
    #[new]
    fn new(capacity: Int) -> PyResult<Self> {
        let capacity = capacity.samples("capacity", 1)?;
        Ok(Self { inner: Mutex::new(crate::ring::RingBuffer::new(capacity)?) })
    }

    /// Appends as many samples as fit; returns how many were accepted.
    fn write(&self, samples: &Bound<'_, PyAny>) -> PyResult<usize> {
        let input = get_pcm16(samples)?;
        input.with_samples(samples.py(), |input| lock(&self.inner).write(input))
    }

    /// Removes and returns up to `n` of the oldest samples.
    fn read<'py>(&self, py: Python<'py>, n: Int) -> PyResult<Bound<'py, PyArray1<i16>>> {
        let n = n.limit("n")?;
        let mut ring = lock(&self.inner);
        let output = zeros_array::<i16>(py, n.min(ring.len()))?;
        // SAFETY: the array was just created and is referenced nowhere else; it is contiguous.
        ring.read_into(unsafe { output.as_slice_mut() }?);
        Ok(output)
    }

    /// Returns up to `n` of the oldest samples without removing them.
    fn peek<'py>(&self, py: Python<'py>, n: Int) -> PyResult<Bound<'py, PyArray1<i16>>> {
        let n = n.limit("n")?;
        let ring = lock(&self.inner);
        let output = zeros_array::<i16>(py, n.min(ring.len()))?;
        // SAFETY: as in `read`.
        ring.peek_into(unsafe { output.as_slice_mut() }?);
        Ok(output)
    }

    /// Drops every queued sample (the capacity stays).
    fn clear(&self) {
        lock(&self.inner).clear();
    }

    #[getter]
    fn capacity(&self) -> usize {
        lock(&self.inner).capacity()
    }

    /// Room left, in samples.
    #[getter]
    fn free(&self) -> usize {
        lock(&self.inner).free()
    }

    fn __len__(&self) -> usize {
        lock(&self.inner).len()
    }

    fn __repr__(&self) -> String {
        let ring = lock(&self.inner);
        format!("RingBuffer(capacity={}, len={})", ring.capacity(), ring.len())
    }
}

/// The speaker side of a conversation: the event loop pushes audio deltas as they arrive and
/// the audio device callback pulls fixed-size blocks (from its own thread; every method
/// takes an internal lock).
///
/// `push(item_id, content_index, samples)` queues samples of one content part and returns
/// how many fit in `capacity_ms` of audio. `pull(n)` (or `pull_into(out)`) always yields `n`
/// samples, zero-filled past what is queued; each dry spell after audio was pushed counts one
/// `underruns`. `played(item_id)` is how many samples of the item were pulled so far.
/// `interrupt()` drops everything queued and returns `(item_id, content_index,
/// audio_end_ms)` for the part being heard (`audio_end_ms` = samples played of it, in whole
/// milliseconds at this buffer's sample rate, rounded down: what
/// `conversation.item.truncate` needs), or None if nothing was pushed since the last
/// interrupt/clear. `current` names that part; `queued` counts samples not yet pulled.
/// `pause()` holds playback where it is (pulls yield silence, `played` stops) until
/// `resume()`; `interrupt()` while paused reports the pause position, and the pause outlives
/// `interrupt()`/`clear()` (only `resume()` ends it). `enable_tap(capacity_ms)` keeps what
/// the pulls hand out on the speaker clock `pulled_samples`, for `read_tap(start, n)` (the
/// echo canceller's reference and the recorder's output channel).
///
/// >>> import numpy as np
/// >>> speaker = PlaybackBuffer(24000, capacity_ms=1000)
/// >>> speaker.push("item_1", 0, np.ones(4800, dtype=np.int16))  # 200 ms
/// 4800
/// >>> block = speaker.pull(2400)  # the device played 100 ms
/// >>> speaker.current, speaker.queued, speaker.played("item_1")
/// (('item_1', 0), 2400, 2400)
/// >>> speaker.interrupt()  # the user barged in
/// ('item_1', 0, 100)
/// >>> speaker.queued, speaker.interrupt()
/// (0, None)
#[pyclass(name = "PlaybackBuffer", module = "realtalk._audio", frozen)]
pub struct PyPlaybackBuffer {
    /// Shared with `Downlink.decode_into`, which queues decoded deltas under the same lock.
    pub(super) inner: Mutex<crate::ring::PlaybackBuffer>,
}

#[pymethods]
impl PyPlaybackBuffer {
    #[new]
    #[pyo3(signature = (sample_rate, capacity_ms = Int(60_000)), text_signature = "(sample_rate, capacity_ms=60000)")]
    fn new(sample_rate: Int, capacity_ms: Int) -> PyResult<Self> {
        let sample_rate = sample_rate.within("sample_rate", 1, u32::MAX, " Hz")?;
        let capacity_ms = capacity_ms.within("capacity_ms", 0, u32::MAX, " ms")?;
        Ok(Self { inner: Mutex::new(crate::ring::PlaybackBuffer::new(sample_rate, capacity_ms)?) })
    }

    /// Queues samples of one content part; returns how many fit.
    fn push(&self, item_id: &str, content_index: u32, samples: &Bound<'_, PyAny>) -> PyResult<usize> {
        let input = get_pcm16(samples)?;
        input.with_samples(samples.py(), |input| lock(&self.inner).push(item_id, content_index, input))
    }

    /// The next `n` samples, zero-filled past what is queued.
    fn pull<'py>(&self, py: Python<'py>, n: Int) -> PyResult<Bound<'py, PyArray1<i16>>> {
        let output = zeros_array::<i16>(py, n.samples("n", 0)?)?;
        // SAFETY: the array was just created and is referenced nowhere else; it is contiguous.
        lock(&self.inner).pull_into(unsafe { output.as_slice_mut() }?);
        Ok(output)
    }

    /// Fills the device's output block in place; returns how many real frames it got.
    ///
    /// `out` is int16 or float32 (sounddevice's default, samples / 32768), 1-D (mono) or 2-D
    /// (frames x channels, every channel gets the same sample), C-contiguous and writable:
    /// pass the callback's whole `outdata`, not a column of it.
    fn pull_into(&self, out: &Bound<'_, PyAny>) -> PyResult<usize> {
        const WHAT: &str =
            "a writable C-contiguous int16 or float32 array, 1-D or (frames, channels)";
        let Ok(array) = out.cast::<PyUntypedArray>() else {
            return Err(PyValueError::new_err(format!(
                "expected {WHAT}, got {}",
                out.get_type().name()?
            )));
        };
        let channels = match array.shape() {
            [_] => 1,
            [_, channels] if *channels > 0 => *channels,
            [_, _] => return Err(PyValueError::new_err("the output block has no channels")),
            shape => {
                return Err(PyValueError::new_err(format!(
                    "expected {WHAT}, got a {}-D array",
                    shape.len()
                )))
            }
        };
        if !array.is_c_contiguous() {
            // A column such as `outdata[:, 0]` is a strided view; a contiguous copy of it would
            // be filled instead of the device's buffer, and the device would play silence.
            return Err(PyValueError::new_err(
                "pull_into needs the device's buffer itself, C-contiguous; got a strided view \
                 (such as outdata[:, 0]). Pass the whole block, pull_into(outdata): every \
                 channel is filled",
            ));
        }
        let py = out.py();
        if array.dtype().is_equiv_to(&numpy::dtype::<i16>(py)) {
            // SAFETY: the dtype was checked just above.
            let typed = unsafe { array.cast_unchecked::<PyArrayDyn<i16>>() };
            let mut writable = typed
                .try_readwrite()
                .map_err(|err| PyValueError::new_err(format!("expected {WHAT}: {err}")))?;
            return Ok(lock(&self.inner).pull_frames_into(writable.as_slice_mut()?, channels, |s| s));
        }
        if array.dtype().is_equiv_to(&numpy::dtype::<f32>(py)) {
            // SAFETY: the dtype was checked just above.
            let typed = unsafe { array.cast_unchecked::<PyArrayDyn<f32>>() };
            let mut writable = typed
                .try_readwrite()
                .map_err(|err| PyValueError::new_err(format!("expected {WHAT}: {err}")))?;
            return Ok(lock(&self.inner).pull_frames_into(
                writable.as_slice_mut()?,
                channels,
                |s| f32::from(s) * PCM16_TO_FLOAT,
            ));
        }
        Err(PyValueError::new_err(format!(
            "expected {WHAT}, got an array of dtype {}",
            describe_dtype(array)
        )))
    }

    /// Samples of `item_id` played so far (all its content parts); 0 if unknown.
    fn played(&self, item_id: &str) -> u64 {
        lock(&self.inner).played(item_id)
    }

    /// Drops the queue; returns `(item_id, content_index, audio_end_ms)` of the part being
    /// heard, or None.
    fn interrupt(&self) -> Option<(String, u32, u64)> {
        lock(&self.inner)
            .interrupt()
            .map(|heard| (heard.item_id, heard.content_index, heard.audio_end_ms))
    }

    /// Drops the queue and forgets the current part.
    fn clear(&self) {
        lock(&self.inner).clear();
    }

    /// `(item_id, content_index)` of the part being heard, or None.
    #[getter]
    fn current(&self) -> Option<(String, u32)> {
        lock(&self.inner).current().map(|part| (part.item_id.clone(), part.content_index))
    }

    #[getter]
    fn sample_rate(&self) -> u32 {
        lock(&self.inner).sample_rate()
    }

    #[getter]
    fn capacity(&self) -> usize {
        lock(&self.inner).capacity()
    }

    #[getter]
    fn queued(&self) -> usize {
        lock(&self.inner).queued()
    }

    #[getter]
    fn free(&self) -> usize {
        lock(&self.inner).free()
    }

    #[getter]
    fn underruns(&self) -> u64 {
        lock(&self.inner).underruns()
    }

    // ---- pause and resume (barge-in, issue 22) ----

    /// Holds playback where it is: pulls yield silence and `played` stops until `resume`
    /// (pushes still queue).
    fn pause(&self) {
        lock(&self.inner).pause();
    }

    /// Plays on from where `pause` held it.
    fn resume(&self) {
        lock(&self.inner).resume();
    }

    /// True between `pause` and `resume`.
    #[getter]
    fn paused(&self) -> bool {
        lock(&self.inner).is_paused()
    }

    // ---- end of pause and resume ----

    // ---- playback tap (echo cancellation and recording, issue 19) ----

    /// Keeps what the pulls hand the sound card from now on (the silence they fill in too),
    /// the last `capacity_ms` of it, for `read_tap`. Calling it again only ever grows the tap.
    fn enable_tap(&self, capacity_ms: Int) -> PyResult<()> {
        let capacity_ms = capacity_ms.within("capacity_ms", 1, u32::MAX, " ms")?;
        let mut buffer = lock(&self.inner);
        let samples = u64::from(buffer.sample_rate()) * u64::from(capacity_ms) / 1000;
        let samples = usize::try_from(samples.max(1)).unwrap_or(usize::MAX);
        Ok(buffer.enable_tap(samples)?)
    }

    /// `(samples, unplayed, lost)`: the int16 samples of speaker clock `[start, start + n)`,
    /// zeros where the tap has none: `unplayed` of them are not played yet, `lost` were played
    /// before the tap was enabled or overwritten since.
    fn read_tap<'py>(&self, py: Python<'py>, start: Int, n: Int) -> PyResult<(Bound<'py, PyArray1<i16>>, usize, usize)> {
        let start = start.within("start", 0, u64::MAX, " samples")?;
        let output = zeros_array::<i16>(py, n.samples("n", 0)?)?;
        // SAFETY: the array was just created and is referenced nowhere else; it is contiguous.
        let gaps = lock(&self.inner).read_tap(start, unsafe { output.as_slice_mut() }?)?;
        Ok((output, gaps.unplayed, gaps.lost))
    }

    /// The speaker clock: samples the pulls handed out since this buffer was made, the
    /// silence of dry and paused pulls included.
    #[getter]
    fn pulled_samples(&self) -> u64 {
        lock(&self.inner).pulled_samples()
    }

    /// Samples the tap keeps (0 until `enable_tap`).
    #[getter]
    fn tap_capacity(&self) -> usize {
        lock(&self.inner).tap_capacity()
    }

    // ---- end of playback tap ----

    fn __repr__(&self) -> String {
        let buffer = lock(&self.inner);
        format!(
            "PlaybackBuffer(sample_rate={}, capacity={}, queued={}, underruns={})",
            buffer.sample_rate(),
            buffer.capacity(),
            buffer.queued(),
            buffer.underruns()
        )
    }
}
