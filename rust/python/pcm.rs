//! Bindings of `crate::pcm`: float <-> PCM16 conversion.

use numpy::{PyArray1, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{check_vector, get_array, get_pcm16, with_slice, zeros_array};

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
pub(super) fn float_to_pcm16_py<'py>(
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
pub(super) fn pcm16_to_float_py<'py>(
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
