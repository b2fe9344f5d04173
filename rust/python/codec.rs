//! Bindings of `crate::codec`: base64 (to and from `str`) and G.711.

use numpy::{PyArray1, PyArrayMethods, PyUntypedArray};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use super::ascii_str::ascii_str_filled_by;
use super::{
    detach_if_large, get_array, get_buffer, get_pcm16, new_array, pcm16_as_le_bytes, zeros_array,
    Borrowed, Pcm16,
};

const BYTES_INPUT: &str = "a bytes-like object or a 1-D contiguous numpy array";
const BASE64_INPUT: &str = "base64 text as str or bytes-like";

/// Encodes bytes as base64 and returns it as an ASCII `str`.
fn base64_to_str<'py>(py: Python<'py>, input: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = crate::codec::b64_encoded_len(input.len());
    // SAFETY: `b64_encode_raw` writes exactly `len` base64 (ASCII) bytes and reads none.
    unsafe { ascii_str_filled_by(py, len, |data| crate::codec::b64_encode_raw(input, data)) }
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
pub(super) fn b64encode_py<'py>(py: Python<'py>, buffer: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
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
pub(super) fn b64decode_py<'py>(py: Python<'py>, text: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
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
pub(super) fn pcm16_to_base64_py<'py>(
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
pub(super) fn pcm16_from_base64_py<'py>(
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
        pub(super) fn $encode<'py>(
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
        pub(super) fn $decode<'py>(
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
