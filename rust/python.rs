//! The only module that knows Python: thin pyo3 wrappers around the plain-Rust kernels.
//!
//! Rules for every wrapper (see style.md): numpy inputs are borrowed read-only and must be
//! contiguous (never silently copied); outputs are moved into numpy from a `Vec` (one
//! allocation); work on large inputs runs detached from the interpreter; every `AudioError`
//! becomes a `ValueError`. Sections are grouped by core module.

use pyo3::exceptions::{PyMemoryError, PyOverflowError, PyValueError};
use pyo3::prelude::*;

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
        match obj.extract::<i128>() {
            Ok(value) => Ok(Self(value)),
            // Beyond +-2**127: what matters is only which side.
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
            i128::MIN => "an integer below -2**127".to_owned(),
            i128::MAX => "an integer above 2**127".to_owned(),
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

// ---- pcm ----

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard, PoisonError};

use numpy::{
    Element, PyArray1, PyArrayDescrMethods, PyArrayMethods,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::buffer::PyBuffer;
use pyo3::types::{PyBytes, PyString};

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

const FLOAT_INPUT: &str = "a 1-D float32 or float64 array";

/// Converts float samples to PCM16.
///
/// `samples` is a 1-D contiguous float32 or float64 array, nominally in [-1, 1]. NaN becomes
/// 0, values outside are clipped, the rest is scaled by 32767 and rounded half to even in the
/// input's own precision (what `np.rint(np.clip(x, -1, 1) * 32767)` gives). The input is
/// borrowed without a copy; the result is one new int16 array.
///
/// >>> import numpy as np
/// >>> float_to_pcm16(np.array([0.0, 0.5, -1.0, 2.0, np.nan], dtype=np.float32))
/// array([     0,  16384, -32767,  32767,      0], dtype=int16)
#[pyfunction(name = "float_to_pcm16")]
fn float_to_pcm16_py<'py>(
    py: Python<'py>,
    samples: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<i16>>> {
    let Ok(array) = samples.cast::<PyUntypedArray>() else {
        return Err(PyValueError::new_err(format!(
            "expected {FLOAT_INPUT}, got an object of type {}",
            samples.get_type().name().map_or_else(|_| "?".to_owned(), |name| name.to_string())
        )));
    };
    let dtype = array.dtype();
    let output = zeros_array::<i16>(py, array.len())?;
    // SAFETY: the array was just created and is referenced nowhere else; it is contiguous.
    let out = unsafe { output.as_slice_mut() }?;
    if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
        let input = get_array::<f32>(samples, FLOAT_INPUT)?;
        with_slice(&input, |input| crate::pcm::f32_to_pcm16_into(input, out))??;
    } else if dtype.is_equiv_to(&numpy::dtype::<f64>(py)) {
        let input = get_array::<f64>(samples, FLOAT_INPUT)?;
        with_slice(&input, |input| crate::pcm::f64_to_pcm16_into(input, out))??;
    } else {
        check_vector(array, FLOAT_INPUT)?;
        return Err(PyValueError::new_err(format!(
            "expected {FLOAT_INPUT}, got an array of dtype {dtype}"
        )));
    }
    Ok(output)
}

/// Converts PCM16 to float32 samples in [-1, 1): each sample divided by 32768 (exact).
///
/// `samples` is a 1-D contiguous int16 array or bytes-like little-endian PCM16 (an odd byte
/// count raises `ValueError`). The input is borrowed; the result is one new float32 array.
///
/// >>> import numpy as np
/// >>> pcm16_to_float(np.array([0, 16384, -32768], dtype=np.int16))
/// array([ 0. ,  0.5, -1. ], dtype=float32)
/// >>> pcm16_to_float(b"\x00\x80")
/// array([-1.], dtype=float32)
#[pyfunction(name = "pcm16_to_float")]
fn pcm16_to_float_py<'py>(
    py: Python<'py>,
    samples: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let input = get_pcm16(samples)?;
    let output = zeros_array::<f32>(py, input.len())?;
    // SAFETY: the array was just created and is referenced nowhere else; it is contiguous.
    let out = unsafe { output.as_slice_mut() }?;
    input.with_samples(py, |input| crate::pcm::pcm16_to_f32_into(input, out))??;
    Ok(output)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The kernels never panic while holding the lock, so a poisoned lock still holds
    // consistent state.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}


// ---- codec ----

const BYTES_INPUT: &str = "a bytes-like object or a 1-D contiguous numpy array";
const BASE64_INPUT: &str = "base64 text as str or bytes-like";

unsafe extern "C" {
    // Not in the limited API, but exported with this signature by every CPython since 3.3.
    // The limited API's only ways to build a str copy and re-validate the text, which costs
    // more than encoding it; `ascii_str_is_writable` checks at run time that writing in place
    // works before it is used.
    fn PyUnicode_New(size: pyo3::ffi::Py_ssize_t, maxchar: pyo3::ffi::Py_UCS4)
        -> *mut pyo3::ffi::PyObject;
}

/// A new ASCII `str` of `len` characters, written once by `fill` (which must write only ASCII
/// and every byte; it may see uninitialised memory, so it must not read it).
///
/// # Safety
/// `fill` must write all `len` bytes with ASCII characters through the pointer it gets.
unsafe fn new_ascii_str(
    py: Python<'_>,
    len: usize,
    fill: impl FnOnce(*mut u8) + Send,
) -> PyResult<Bound<'_, PyString>> {
    let size = pyo3::ffi::Py_ssize_t::try_from(len)
        .map_err(|_| PyValueError::new_err("output too large for a str"))?;
    // SAFETY: a fresh compact ASCII str (max char 127); nothing else references it yet. For
    // such strings CPython's UTF-8 view is the character data itself (checked once by
    // `ascii_str_is_writable`), so writing through it fills the str.
    unsafe {
        let text = Bound::from_owned_ptr_or_err(py, PyUnicode_New(size, 127))?;
        let mut utf8_len: pyo3::ffi::Py_ssize_t = 0;
        let data = pyo3::ffi::PyUnicode_AsUTF8AndSize(text.as_ptr(), &raw mut utf8_len);
        if data.is_null() {
            return Err(PyErr::fetch(py));
        }
        debug_assert_eq!(utf8_len, size);
        let data = SendPtr(data.cast_mut().cast::<u8>());
        detach_if_large(py, len, || {
            let data = data;
            fill(data.0);
        });
        Ok(text.cast_into_unchecked())
    }
}

/// A raw pointer that may cross into a detached closure (the pointee outlives it).
struct SendPtr(*mut u8);
// SAFETY: only used to hand a buffer to a closure that runs while the caller waits.
unsafe impl Send for SendPtr {}

/// Whether `new_ascii_str` can write a str in place on this interpreter (checked once).
fn ascii_str_is_writable(py: Python<'_>) -> bool {
    static WRITABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WRITABLE.get_or_init(|| {
        // SAFETY: writes the 2 characters asked for.
        let probe = unsafe {
            new_ascii_str(py, 2, |data| {
                data.write(b'o');
                data.add(1).write(b'k');
            })
        };
        probe.is_ok_and(|text| text.to_str().is_ok_and(|text| text == "ok"))
    })
}

/// Encodes bytes as base64 and returns it as an ASCII `str`.
fn base64_to_str<'py>(py: Python<'py>, input: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = crate::codec::b64_encoded_len(input.len());
    if ascii_str_is_writable(py) {
        // SAFETY: `b64_encode_raw` writes exactly `len` base64 (ASCII) bytes.
        return unsafe {
            new_ascii_str(py, len, |data| crate::codec::b64_encode_raw(input, data))
        };
    }
    let mut text = Vec::with_capacity(len);
    detach_if_large(py, input.len(), || crate::codec::b64_encode_append(input, &mut text));
    // SAFETY: base64 output is ASCII, hence UTF-8.
    Ok(PyString::new(py, unsafe { std::str::from_utf8_unchecked(&text) }))
}

/// Borrows base64 text: an ASCII `str` (read in place) or bytes-like.
enum Base64Text<'py> {
    Str(Bound<'py, PyString>),
    Raw(Borrowed<'py>),
}

fn get_base64_text<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Base64Text<'py>> {
    if let Ok(text) = obj.cast::<PyString>() {
        return Ok(Base64Text::Str(text.clone()));
    }
    Ok(Base64Text::Raw(get_buffer(obj, BASE64_INPUT)?))
}

impl Base64Text<'_> {
    fn bytes(&self) -> PyResult<&[u8]> {
        match self {
            // For the first non-ASCII character, its UTF-8 byte offset equals its offset in
            // the str, so decode errors report str offsets.
            Self::Str(text) => Ok(text.to_str()?.as_bytes()),
            Self::Raw(raw) => Ok(raw.bytes()),
        }
    }
}

/// Base64-encodes `buffer` (standard alphabet, padded) to a `str`.
///
/// Byte-identical to `base64.b64encode(buffer).decode()`. `buffer` is any C-contiguous
/// bytes-like object, or a 1-D contiguous numpy array (its raw bytes).
///
/// >>> b64encode(b"foob")
/// 'Zm9vYg=='
#[pyfunction(name = "b64encode")]
fn b64encode_py<'py>(py: Python<'py>, buffer: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    let input = get_buffer(buffer, BYTES_INPUT)?;
    base64_to_str(py, input.bytes())
}

/// Decodes base64 `text` (`str` or bytes-like) to `bytes`.
///
/// Strict: standard alphabet, whole 4-character groups, at most two `=` ending the text. On
/// such input the result equals `base64.b64decode(text, validate=True)`. Anything else
/// (whitespace, URL-safe characters, missing or misplaced padding) raises `ValueError` naming
/// the offset of the first bad character; nothing is silently skipped.
///
/// >>> b64decode("Zm9vYg==")
/// b'foob'
/// >>> b64decode("Zm9v!mFy")
/// Traceback (most recent call last):
///     ...
/// ValueError: invalid base64: character '!' at offset 4
#[pyfunction(name = "b64decode")]
fn b64decode_py<'py>(py: Python<'py>, text: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let text = get_base64_text(text)?;
    let text = text.bytes()?;
    let len = crate::codec::b64_decoded_len(text)?;
    PyBytes::new_with(py, len, |output| {
        detach_if_large(py, text.len(), || crate::codec::b64_decode_into(text, output))?;
        Ok(())
    })
}

/// Base64 of PCM16 audio (little-endian), as the Realtime API's audio fields carry it.
///
/// `samples` is a 1-D contiguous int16 array or bytes-like PCM16 (even length).
///
/// >>> import numpy as np
/// >>> pcm16_to_base64(np.array([1, -2], dtype=np.int16))
/// 'AQD+/w=='
#[pyfunction(name = "pcm16_to_base64")]
fn pcm16_to_base64_py<'py>(
    py: Python<'py>,
    samples: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyString>> {
    match get_pcm16(samples)? {
        Pcm16::Raw(raw) => base64_to_str(py, raw.bytes()),
        // SAFETY: checked contiguous; attached while reading (see `with_slice`).
        Pcm16::Array(array) => base64_to_str(py, &pcm16_as_le_bytes(unsafe { array.as_slice() }?)),
    }
}

/// Decodes base64 of little-endian PCM16 (`str` or bytes-like) to a new int16 array.
///
/// Same strict rules as `b64decode`; a decoded odd byte count raises `ValueError`.
///
/// >>> pcm16_from_base64("AQD+/w==")
/// array([ 1, -2], dtype=int16)
#[pyfunction(name = "pcm16_from_base64")]
fn pcm16_from_base64_py<'py>(
    py: Python<'py>,
    text: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<i16>>> {
    let text = get_base64_text(text)?;
    let text = text.bytes()?;
    let len = crate::codec::b64_decoded_len(text)?;
    if len % 2 != 0 {
        // A bad character is the more useful report, if there is one.
        crate::codec::b64_decode(text)?;
        return Err(PyValueError::new_err(format!(
            "PCM16 data must have an even number of bytes, the base64 text decodes to {len}"
        )));
    }
    let output = zeros_array::<i16>(py, len / 2)?;
    // SAFETY: the array was just created and is referenced nowhere else; it is contiguous.
    let samples = unsafe { output.as_slice_mut() }?;
    detach_if_large(py, text.len(), || {
        // SAFETY: the i16 buffer viewed as bytes; every byte pattern is a valid i16.
        let bytes = unsafe { std::slice::from_raw_parts_mut(samples.as_mut_ptr().cast(), len) };
        crate::codec::b64_decode_into(text, bytes)
    })?;
    if cfg!(target_endian = "big") {
        for sample in samples.iter_mut() {
            *sample = i16::from_le(*sample);
        }
    }
    Ok(output)
}

fn codes_input<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Borrowed<'py>> {
    const WHAT: &str = "a 1-D uint8 array or bytes-like G.711 codes";
    if obj.cast::<PyUntypedArray>().is_ok() {
        let array = get_array::<u8>(obj, WHAT)?;
        return Ok(Borrowed::Array(array.as_untyped().clone()));
    }
    get_buffer(obj, WHAT)
}

macro_rules! g711_pyfunctions {
    ($encode:ident, $encode_name:literal, $encode_kernel:path,
     $decode:ident, $decode_name:literal, $decode_kernel:path, $law:literal,
     $audioop_encode:literal, $audioop_decode:literal, $encode_example:literal, $decode_example:literal) => {
        #[doc = concat!("Encodes PCM16 to G.711 ", $law, " codes, bit-exact with `audioop.", $audioop_encode, "`.\n\n",
            "`pcm16` is a 1-D contiguous int16 array or bytes-like PCM16 (even length); the result\n",
            "is a new uint8 array, one code per sample.\n\n",
            ">>> import numpy as np\n",
            ">>> ", $encode_name, "(np.array([0, 1000, -1000], dtype=np.int16))\n",
            $encode_example)]
        #[pyfunction(name = $encode_name)]
        fn $encode<'py>(
            py: Python<'py>,
            pcm16: &Bound<'py, PyAny>,
        ) -> PyResult<Bound<'py, PyArray1<u8>>> {
            let input = get_pcm16(pcm16)?;
            let output = zeros_array::<u8>(py, input.len())?;
            // SAFETY: the array was just created and is referenced nowhere else.
            let out = unsafe { output.as_slice_mut() }?;
            input.with_samples(py, |input| $encode_kernel(input, out))??;
            Ok(output)
        }

        #[doc = concat!("Decodes G.711 ", $law, " codes to PCM16, bit-exact with `audioop.", $audioop_decode, "`.\n\n",
            "`codes` is a 1-D contiguous uint8 array or bytes-like; the result is a new int16 array.\n\n",
            ">>> ", $decode_name, "(bytes([0x00, 0x80]))\n",
            $decode_example)]
        #[pyfunction(name = $decode_name)]
        fn $decode<'py>(
            py: Python<'py>,
            codes: &Bound<'py, PyAny>,
        ) -> PyResult<Bound<'py, PyArray1<i16>>> {
            let input = codes_input(codes)?;
            let input = input.bytes();
            let mut decoded = Ok(());
            let output = new_array(py, input.len(), |out| decoded = $decode_kernel(input, out))?;
            decoded?;
            Ok(output)
        }
    };
}

g711_pyfunctions!(
    ulaw_encode_py, "ulaw_encode", crate::codec::ulaw_encode_into,
    ulaw_decode_py, "ulaw_decode", crate::codec::ulaw_decode_into, "mu-law",
    "lin2ulaw(pcm16, 2)", "ulaw2lin(codes, 2)",
    "array([255, 206,  78], dtype=uint8)", "array([-32124,  32124], dtype=int16)"
);
g711_pyfunctions!(
    alaw_encode_py, "alaw_encode", crate::codec::alaw_encode_into,
    alaw_decode_py, "alaw_decode", crate::codec::alaw_decode_into, "A-law",
    "lin2alaw(pcm16, 2)", "alaw2lin(codes, 2)",
    "array([213, 250, 122], dtype=uint8)", "array([-5504,  5504], dtype=int16)"
);


// ---- ring ----

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
    inner: Mutex<crate::ring::PlaybackBuffer>,
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

    /// Fills a writable int16 array in place; returns how many real samples it got.
    fn pull_into(&self, out: &Bound<'_, PyAny>) -> PyResult<usize> {
        const WHAT: &str = "a writable 1-D contiguous int16 array";
        let Ok(array) = out.cast::<PyUntypedArray>() else {
            return Err(PyValueError::new_err(format!("expected {WHAT}")));
        };
        check_vector(array, WHAT)?;
        if !array.dtype().is_equiv_to(&numpy::dtype::<i16>(out.py())) {
            return Err(PyValueError::new_err(format!(
                "expected {WHAT}, got an array of dtype {}",
                describe_dtype(array)
            )));
        }
        // SAFETY: dimensionality and dtype were checked just above.
        let typed = unsafe { array.cast_unchecked::<PyArray1<i16>>() };
        let mut writable =
            typed.try_readwrite().map_err(|err| PyValueError::new_err(format!("{WHAT}: {err}")))?;
        Ok(lock(&self.inner).pull_into(writable.as_slice_mut()?))
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


// ---- resample ----

mod resample_bindings {
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
}

pub use resample_bindings::{resample_py, Resampler};

// ---- vad ----

mod vad_bindings {
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
}

// ---- frame ----

mod frame_bindings {
    //! `Uplink`, `Downlink` and the two results of a decoded delta.

    use std::sync::{Mutex, MutexGuard, PoisonError};

    use numpy::{Element, PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
    use pyo3::exceptions::{PyRecursionError, PyTypeError, PyValueError};
    use pyo3::prelude::*;
    use pyo3::sync::PyOnceLock;
    use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyString};

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

    /// What `json.loads` makes of a message the scanner left alone: `None` if it is not an
    /// audio delta of `protocol`, its fields and audio text otherwise.
    fn full_parse<'py>(
        message: &Bound<'py, PyAny>,
        protocol: Protocol,
    ) -> PyResult<Option<(Fields, Bound<'py, PyString>)>> {
        static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let py = message.py();
        let loads = LOADS.get_or_try_init(py, || -> PyResult<_> {
            Ok(py.import("json")?.getattr("loads")?.unbind())
        })?;
        let event = loads.bind(py).call1((message,)).map_err(|err| {
            if err.is_instance_of::<PyRecursionError>(py) {
                PyValueError::new_err("message is nested too deeply to parse")
            } else {
                err
            }
        })?;
        let Ok(event) = event.cast::<PyDict>() else { return Ok(None) };
        let Some(event_type) = event.get_item("type")? else { return Ok(None) };
        let is_delta = event_type
            .cast::<PyString>()
            .is_ok_and(|name| name.to_str().is_ok_and(|name| name == protocol.audio_delta_type()));
        if !is_delta {
            return Ok(None);
        }
        let field = |name: &str| -> PyResult<Bound<'py, PyAny>> {
            event.get_item(name)?.ok_or_else(|| {
                PyValueError::new_err(format!("{} event has no {name:?}", protocol.audio_delta_type()))
            })
        };
        let text = |name: &str| -> PyResult<Bound<'py, PyString>> {
            field(name)?.cast_into::<PyString>().map_err(|_| {
                PyValueError::new_err(format!("{} field {name:?} must be a string", protocol.audio_delta_type()))
            })
        };
        let index = |name: &str| -> PyResult<i64> {
            let value = field(name)?;
            if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
                return Err(PyValueError::new_err(format!(
                    "{} field {name:?} must be an integer",
                    protocol.audio_delta_type()
                )));
            }
            value.extract().map_err(|_| {
                PyValueError::new_err(format!("{} field {name:?} is out of range", protocol.audio_delta_type()))
            })
        };
        let fields = Fields {
            response_id: text("response_id")?.unbind(),
            item_id: text("item_id")?.unbind(),
            output_index: index("output_index")?,
            content_index: index("content_index")?,
        };
        Ok(Some((fields, text("delta")?)))
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
            playback: &Bound<'_, super::PyPlaybackBuffer>,
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
}


#[pymodule(gil_used = false)]
mod _audio {
    use pyo3::prelude::*;

    // ---- pcm exports ----
    #[pymodule_export]
    use super::{float_to_pcm16_py, pcm16_to_float_py};

    // ---- codec exports ----
    #[pymodule_export]
    use super::{
        alaw_decode_py, alaw_encode_py, b64decode_py, b64encode_py, pcm16_from_base64_py,
        pcm16_to_base64_py, ulaw_decode_py, ulaw_encode_py,
    };

    // ---- ring exports ----
    #[pymodule_export]
    use super::{PyPlaybackBuffer, PyRingBuffer};

    // ---- resample exports ----
    #[pymodule_export]
    use super::{resample_py, Resampler};

    // ---- vad exports ----
    #[pymodule_export]
    use super::vad_bindings::{Vad, VadEvent};

    // ---- frame exports ----
    #[pymodule_export]
    use super::frame_bindings::{AudioDelta, Downlink, QueuedDelta, Uplink};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add(
            "build_profile",
            if cfg!(debug_assertions) { "debug" } else { "release" },
        )?;
        // The SIMD level the kernels run at: the CPU's best, capped by REALTALK_SIMD.
        m.add("simd", crate::simd::cap_name())?;
        Ok(())
    }
}
