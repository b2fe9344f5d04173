//! The one place that builds a Python `str` outside the limited API: an ASCII `str` whose
//! characters are written in place, so a large base64 text is encoded once, straight into the
//! object Python gets, instead of into a buffer that `PyUnicode_FromStringAndSize` would copy
//! and re-validate (the limited API's only way, which costs more than the encoding).
//!
//! Why this is sound in an abi3 wheel (built against the 3.11 limited API, loaded by any
//! Python from 3.11 on):
//! - `PyUnicode_New(size, maxchar)` is not in the limited API, but the interpreter has exported
//!   it with this signature since 3.3 (it is how it makes its own strings), so the symbol
//!   resolves on every interpreter an abi3 wheel can load into.
//! - With `maxchar` 127 it returns a fresh compact ASCII str: one byte per character, stored
//!   right after the object header and nowhere else yet, with no hash computed. Nothing but us
//!   holds a reference, so writing its characters before handing it out is what the
//!   interpreter's own constructors do.
//! - For a compact ASCII str the limited API's `PyUnicode_AsUTF8AndSize` returns a pointer to
//!   those very characters (ASCII is UTF-8, so no separate UTF-8 copy is kept). That layout is
//!   an implementation detail, so it is not assumed: [`writes_in_place`] checks it once per
//!   process with a probe compared through Python's own `==` (which reads the characters, not
//!   the UTF-8 view), and any interpreter where it fails gets the copying path instead.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::detach_if_large;
use crate::memory;

unsafe extern "C" {
    // Exported with this signature since Python 3.3 (see the module comment).
    fn PyUnicode_New(size: pyo3::ffi::Py_ssize_t, maxchar: pyo3::ffi::Py_UCS4)
        -> *mut pyo3::ffi::PyObject;
}

/// A new ASCII `str` of `len` characters, each written by `fill`: in place where the
/// interpreter allows it (see the module comment), otherwise through a buffer that is then
/// copied. Large fills run with the GIL released.
///
/// # Safety
/// `fill` gets a pointer to `len` bytes of possibly uninitialised memory and must write every
/// one of them, with ASCII characters only, without reading them first.
pub(super) unsafe fn ascii_str_filled_by(
    py: Python<'_>,
    len: usize,
    fill: impl FnOnce(*mut u8) + Send,
) -> PyResult<Bound<'_, PyString>> {
    if writes_in_place(py) {
        // SAFETY: the caller's promise about `fill`; the layout was checked by the probe.
        return unsafe { written_in_place(py, len, fill) };
    }
    let mut text: Vec<u8> = memory::with_capacity(len, "the ASCII text")?;
    let data = SendPtr(text.as_mut_ptr());
    detach_if_large(py, len, || {
        let data = data;
        fill(data.0);
    });
    // SAFETY: `fill` initialised all `len` bytes (the capacity is at least `len`), and ASCII is
    // UTF-8.
    unsafe {
        text.set_len(len);
        Ok(PyString::new(py, std::str::from_utf8_unchecked(&text)))
    }
}

/// Writes the characters of a fresh compact ASCII str through its UTF-8 view.
///
/// # Safety
/// As for [`ascii_str_filled_by`], and the interpreter must pass [`writes_in_place`].
unsafe fn written_in_place(
    py: Python<'_>,
    len: usize,
    fill: impl FnOnce(*mut u8) + Send,
) -> PyResult<Bound<'_, PyString>> {
    let size = pyo3::ffi::Py_ssize_t::try_from(len)
        .map_err(|_| PyValueError::new_err("output too large for a str"))?;
    // SAFETY: a fresh compact ASCII str (max char 127) that nothing else references yet; its
    // UTF-8 view is its character data (checked by `writes_in_place`), `size` bytes long.
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

/// Whether writing through the UTF-8 view of a fresh ASCII str fills the str itself on this
/// interpreter (checked once per process).
///
/// The probe is compared with Python's `==` against a str made the limited-API way: `==` reads
/// the characters, so a separate UTF-8 buffer (written, while the characters stayed unset)
/// fails the check instead of passing it.
fn writes_in_place(py: Python<'_>) -> bool {
    static WRITES_IN_PLACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WRITES_IN_PLACE.get_or_init(|| {
        // SAFETY: writes the 2 characters asked for, both ASCII.
        let probe = unsafe {
            written_in_place(py, 2, |data| {
                data.write(b'o');
                data.add(1).write(b'k');
            })
        };
        let expected = PyString::new(py, "ok");
        probe.is_ok_and(|probe| PyAnyMethods::eq(probe.as_any(), expected).unwrap_or(false))
    })
}
