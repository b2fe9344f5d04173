//! The only module that knows Python: thin pyo3 wrappers around the plain-Rust kernels, one
//! file per core module (`pcm`, `codec`, `ring`, `resample`, `vad`, `frame`, `aec`); this one holds
//! what they share (argument checks, borrowing inputs, allocating outputs) and the module.
//!
//! Rules for every wrapper (see style.md): numpy inputs are borrowed read-only and must be
//! contiguous (never silently copied); outputs are moved into numpy from a `Vec` (one
//! allocation); work on large inputs runs detached from the interpreter; every `AudioError`
//! becomes a `ValueError` (or a `MemoryError` for a refused allocation).

mod aec;
mod ascii_str;
mod codec;
mod frame;
mod handoff;
mod pcm;
mod resample;
mod ring;
mod vad;

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard, PoisonError};

use numpy::{
    Element, PyArray1, PyArrayDescrMethods, PyArrayMethods,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyMemoryError, PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::AudioError;

impl From<AudioError> for PyErr {
    fn from(err: AudioError) -> PyErr {
        match err {
            AudioError::Invalid(message) => PyValueError::new_err(message),
            AudioError::OutOfMemory(message) => PyMemoryError::new_err(message),
        }
    }
}

/// A Python `int` argument of any size (a size, a rate, a duration), checked against its
/// range by `within` so that negative and huge values alike get one `ValueError` naming the
/// argument and its range (pyo3's own conversion to `usize`/`u32` raises `OverflowError`,
/// whose message names neither).
#[derive(Clone, Copy, Debug)]
pub struct Int(i128);

impl<'a, 'py> FromPyObject<'a, 'py> for Int {
    type Error = PyErr;

    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        // As an i64 (one C call; under the limited API pyo3 builds an i128 from Python-level
        // shifts, too slow for `pull(n)` in an audio callback): every range here fits.
        match obj.extract::<i64>() {
            Ok(value) => Ok(Self(i128::from(value))),
            // Beyond the 64-bit range: what matters is only which side.
            Err(err) if err.is_instance_of::<PyOverflowError>(obj.py()) => {
                Ok(Self(if obj.lt(0)? { i128::MIN } else { i128::MAX }))
            }
            Err(err) => Err(err),
        }
    }
}

impl Int {
    /// The value if it lies in `min..=max`, else a `ValueError` such as "capacity must be an
    /// integer from 1 to 2147483648 samples, got -1".
    fn within<T: TryFrom<i128>>(self, name: &str, min: T, max: T, unit: &str) -> PyResult<T>
    where
        i128: From<T>,
    {
        let (low, high) = (i128::from(min), i128::from(max));
        if (low..=high).contains(&self.0) {
            if let Ok(value) = T::try_from(self.0) {
                return Ok(value);
            }
        }
        let got = match self.0 {
            i128::MIN => "an integer below -2**63".to_owned(),
            i128::MAX => "an integer of 2**63 or more".to_owned(),
            value => value.to_string(),
        };
        Err(PyValueError::new_err(format!(
            "{name} must be an integer from {low} to {high}{unit}, got {got}"
        )))
    }

    /// A sample count from `min` to `ring::MAX_SAMPLES`.
    fn samples(self, name: &str, min: usize) -> PyResult<usize> {
        let max = crate::ring::MAX_SAMPLES as u64;
        Ok(self.within(name, min as u64, max, " samples")? as usize)
    }

    /// A count that only bounds how much is returned (`read(n)`): any non-negative integer,
    /// larger ones clamped.
    fn limit(self, name: &str) -> PyResult<usize> {
        if self.0 >= 0 {
            return Ok(usize::try_from(self.0).unwrap_or(usize::MAX));
        }
        self.within(name, 0, u64::MAX, "").map(|_| 0)
    }
}

/// A sample rate the resampler supports, in Hz.
fn resampler_rate(name: &str, value: Int) -> PyResult<u32> {
    value.within(name, crate::resample::MIN_RATE, crate::resample::MAX_RATE, " Hz")
}

/// A channel count from 1 to `max`.
fn channel_count(value: Int, max: usize) -> PyResult<usize> {
    Ok(value.within("channels", 1, max as u64, "")? as usize)
}


/// Inputs at least this many elements long are processed with the interpreter detached;
/// below it the hand-off costs more than the kernel (a 20 ms frame is ~1000 elements).
const DETACH_THRESHOLD: usize = 1 << 15;

fn detach_if_large<T: Send>(py: Python<'_>, len: usize, work: impl FnOnce() -> T + Send) -> T {
    if len >= DETACH_THRESHOLD {
        py.detach(work)
    } else {
        work()
    }
}

/// A borrowed input buffer: a numpy array, `bytes`, or another bytes-like object.
enum Borrowed<'py> {
    Array(Bound<'py, PyUntypedArray>),
    Bytes(Bound<'py, PyBytes>),
    Buffer(PyBuffer<u8>),
}

impl Borrowed<'_> {
    /// The raw bytes, valid while `self` lives. As with any extension that releases the
    /// interpreter (zlib, hashlib), Python code in another thread could still write into a
    /// mutable buffer while a large input is processed detached; that only makes the output
    /// unspecified, since nothing here depends on the bytes for memory safety.
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Array(array) => {
                let len = array.len() * array.dtype().itemsize();
                if len == 0 {
                    return &[];
                }
                // SAFETY: the caller checked the array is contiguous; its data spans `len`
                // bytes and outlives the borrow of `self`.
                unsafe { std::slice::from_raw_parts((*array.as_array_ptr()).data.cast(), len) }
            }
            Self::Bytes(bytes) => bytes.as_bytes(),
            Self::Buffer(buffer) => {
                if buffer.len_bytes() == 0 {
                    return &[];
                }
                // SAFETY: `get_buffer` checked the buffer is C-contiguous; the exporter keeps
                // it alive while `buffer` holds its view.
                unsafe {
                    std::slice::from_raw_parts(buffer.buf_ptr().cast(), buffer.len_bytes())
                }
            }
        }
    }
}

fn describe_dtype(array: &Bound<'_, PyUntypedArray>) -> String {
    array.dtype().to_string()
}

/// Checks that `array` is 1-D and contiguous; `what` names the expected input in messages.
fn check_vector(array: &Bound<'_, PyUntypedArray>, what: &str) -> PyResult<()> {
    if array.ndim() != 1 {
        return Err(PyValueError::new_err(format!(
            "expected {what}, got a {}-D array of shape ({})",
            array.ndim(),
            array.shape().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        )));
    }
    if !array.is_contiguous() {
        return Err(PyValueError::new_err(format!(
            "expected {what}, got a non-contiguous array (pass np.ascontiguousarray(x))"
        )));
    }
    Ok(())
}

/// Borrows a bytes-like object, or a numpy array of any dtype as its raw bytes.
fn get_buffer<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Borrowed<'py>> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(Borrowed::Bytes(bytes.clone()));
    }
    if let Ok(array) = obj.cast::<PyUntypedArray>() {
        check_vector(array, what)?;
        if array.dtype().has_object() {
            // Its bytes are the addresses of Python objects: encoding them would leak
            // pointers and decode to nothing meaningful.
            return Err(PyValueError::new_err(format!(
                "expected {what}, got an array of Python objects (dtype {}); its bytes are \
                 pointers, not data",
                describe_dtype(array)
            )));
        }
        return Ok(Borrowed::Array(array.clone()));
    }
    let buffer = PyBuffer::<u8>::get(obj).map_err(|_| {
        PyValueError::new_err(format!(
            "expected {what}, got an object of type {}",
            obj.get_type().name().map_or_else(|_| "?".to_owned(), |name| name.to_string())
        ))
    })?;
    if !buffer.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "expected {what}, got a non-contiguous buffer"
        )));
    }
    Ok(Borrowed::Buffer(buffer))
}

/// Checks that `obj` is a 1-D contiguous numpy array of `T`, with a clear error otherwise.
fn get_array<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<Bound<'py, PyArray1<T>>> {
    let Ok(array) = obj.cast::<PyUntypedArray>() else {
        return Err(PyValueError::new_err(format!(
            "expected {what}, got an object of type {}",
            obj.get_type().name().map_or_else(|_| "?".to_owned(), |name| name.to_string())
        )));
    };
    check_vector(array, what)?;
    if !array.dtype().is_equiv_to(&numpy::dtype::<T>(obj.py())) {
        return Err(PyValueError::new_err(format!(
            "expected {what}, got an array of dtype {}",
            describe_dtype(array)
        )));
    }
    // SAFETY: dimensionality and dtype were checked just above.
    Ok(unsafe { array.cast_unchecked::<PyArray1<T>>() }.clone())
}

/// Runs `work` on the contents of a checked array.
///
/// Small inputs are read while attached to the interpreter, which already keeps Python code
/// (the only thing rust-numpy's borrow tracking guards against) from touching the array; the
/// tracking would cost more than the kernel on a 20 ms frame. Large inputs take the tracked
/// read-only borrow and run detached.
fn with_slice<T: Element + Sync, R: Send>(
    array: &Bound<'_, PyArray1<T>>,
    work: impl FnOnce(&[T]) -> R + Send,
) -> PyResult<R> {
    let py = array.py();
    if array.len() < DETACH_THRESHOLD {
        // SAFETY: checked contiguous; attached for the whole call (see above).
        let slice = unsafe { array.as_slice() }?;
        return Ok(work(slice));
    }
    let borrowed = array.try_readonly().map_err(|err| PyValueError::new_err(err.to_string()))?;
    let slice = borrowed.as_slice()?;
    Ok(py.detach(|| work(slice)))
}

/// A new zeroed 1-D array of `len` elements, or numpy's `MemoryError` if it cannot be had
/// (`PyArray1::zeros` panics instead, which surfaces as a `PanicException`).
fn zeros_array<T: Element>(py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyArray1<T>>> {
    let mut dims = array_dims(len)?;
    // SAFETY: a 1-D request with a valid dtype reference (which numpy steals); a null result
    // carries numpy's exception, turned into an error by `from_owned_ptr_or_err`.
    unsafe {
        let array = numpy::PY_ARRAY_API.PyArray_Zeros(
            py,
            1,
            dims.as_mut_ptr(),
            numpy::dtype::<T>(py).into_dtype_ptr(),
            0,
        );
        Ok(Bound::from_owned_ptr_or_err(py, array)?.cast_into_unchecked())
    }
}

fn array_dims(len: usize) -> PyResult<[numpy::npyffi::npy_intp; 1]> {
    Ok([numpy::npyffi::npy_intp::try_from(len)
        .map_err(|_| PyMemoryError::new_err(format!("cannot allocate an array of {len} elements")))?])
}

/// A new 1-D array of `len` elements left uninitialised, or numpy's `MemoryError` (where
/// `PyArray1::new` would panic). The cheapest allocation numpy offers: no zeroing, and unlike
/// `PyArray_Zeros` it does not detach from the interpreter around the allocation.
///
/// # Safety
/// The caller must write every element before anything reads it.
unsafe fn uninit_array<T: Element>(py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyArray1<T>>> {
    let mut dims = array_dims(len)?;
    // SAFETY: a 1-D C-ordered request with a valid dtype reference (which numpy steals) and
    // numpy's own array type; a null result carries numpy's exception.
    unsafe {
        let array = numpy::PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            numpy::npyffi::get_type_object(py, numpy::npyffi::NpyTypes::PyArray_Type),
            numpy::dtype::<T>(py).into_dtype_ptr(),
            1,
            dims.as_mut_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        Ok(Bound::from_owned_ptr_or_err(py, array)?.cast_into_unchecked())
    }
}

/// A new 1-D array of `len` elements filled by `fill` (numpy's own allocation, zeroed first so
/// the kernel never sees uninitialised memory).
fn new_array<T: Element + Send>(
    py: Python<'_>,
    len: usize,
    fill: impl FnOnce(&mut [T]) + Send,
) -> PyResult<Bound<'_, PyArray1<T>>> {
    let array = zeros_array::<T>(py, len)?;
    // SAFETY: the array was just created and is referenced nowhere else; it is contiguous.
    let slice = unsafe { array.as_slice_mut() }?;
    detach_if_large(py, len, || fill(slice));
    Ok(array)
}

/// PCM16 input: an int16 array, or little-endian bytes-like data.
enum Pcm16<'py> {
    Array(Bound<'py, PyArray1<i16>>),
    Raw(Borrowed<'py>),
}

const PCM16_INPUT: &str = "a 1-D int16 array or bytes-like PCM16";

fn get_pcm16<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Pcm16<'py>> {
    if obj.cast::<PyUntypedArray>().is_ok() {
        return Ok(Pcm16::Array(get_array::<i16>(obj, PCM16_INPUT)?));
    }
    let raw = get_buffer(obj, PCM16_INPUT)?;
    let len = raw.bytes().len();
    if len % 2 != 0 {
        return Err(PyValueError::new_err(format!(
            "PCM16 data must have an even number of bytes, got {len}"
        )));
    }
    Ok(Pcm16::Raw(raw))
}

impl Pcm16<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Array(array) => array.len(),
            Self::Raw(raw) => raw.bytes().len() / 2,
        }
    }

    /// Runs `work` on the samples (see `with_slice`); bytes are reinterpreted in place when
    /// aligned, copied otherwise.
    fn with_samples<R: Send>(
        &self,
        py: Python<'_>,
        work: impl FnOnce(&[i16]) -> R + Send,
    ) -> PyResult<R> {
        match self {
            Self::Array(array) => with_slice(array, work),
            Self::Raw(raw) => {
                let samples = pcm16_from_le_bytes(raw.bytes());
                Ok(detach_if_large(py, samples.len(), || work(&samples)))
            }
        }
    }
}

fn pcm16_from_le_bytes(bytes: &[u8]) -> Cow<'_, [i16]> {
    if cfg!(target_endian = "little") {
        // SAFETY: any bit pattern is a valid i16; `align_to` only yields the aligned middle.
        let (head, samples, tail) = unsafe { bytes.align_to::<i16>() };
        if head.is_empty() && tail.is_empty() {
            return Cow::Borrowed(samples);
        }
    }
    Cow::Owned(bytes.chunks_exact(2).map(|pair| i16::from_le_bytes([pair[0], pair[1]])).collect())
}

fn pcm16_as_le_bytes(samples: &[i16]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: u8 has no alignment or validity requirement; the length is exact.
        Cow::Borrowed(unsafe {
            std::slice::from_raw_parts(samples.as_ptr().cast(), std::mem::size_of_val(samples))
        })
    } else {
        Cow::Owned(samples.iter().flat_map(|s| s.to_le_bytes()).collect())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The kernels never panic while holding the lock, so a poisoned lock still holds
    // consistent state.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[pymodule(gil_used = false)]
mod _audio {
    use pyo3::prelude::*;

    // ---- pcm exports ----
    #[pymodule_export]
    use super::pcm::{float_to_pcm16_py, pcm16_to_float_py};

    // ---- codec exports ----
    #[pymodule_export]
    use super::codec::{
        alaw_decode_py, alaw_encode_py, b64decode_py, b64encode_py, pcm16_from_base64_py,
        pcm16_to_base64_py, ulaw_decode_py, ulaw_encode_py,
    };

    // ---- ring exports ----
    #[pymodule_export]
    use super::ring::{PyPlaybackBuffer, PyRingBuffer};

    // ---- resample exports ----
    #[pymodule_export]
    use super::resample::{resample_py, Resampler};

    // ---- vad exports ----
    #[pymodule_export]
    use super::vad::{Vad, VadEvent};

    // ---- frame exports ----
    #[pymodule_export]
    use super::frame::{AudioDelta, Downlink, QueuedDelta, Uplink};

    // ---- handoff exports ----
    #[pymodule_export]
    use super::handoff::PyFrameHandoff;
    // ---- aec exports ----
    #[pymodule_export]
    use super::aec::EchoCanceller;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add(
            "build_profile",
            if cfg!(debug_assertions) { "debug" } else { "release" },
        )?;
        // The SIMD level the kernels run at: the CPU's best, capped by REALTALK_SIMD.
        m.add("simd", crate::simd::cap_name())?;
        super::handoff::add_constants(m)?;
        Ok(())
    }
}
