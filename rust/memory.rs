//! Fallible allocation for every buffer whose size the caller decides.
//!
//! Rust's infallible allocations (`vec![0; n]`, `Vec::with_capacity`, `resize`, `reserve`)
//! abort the whole process when the allocator refuses, and panic on a size that overflows
//! `isize`: inside a Python extension either ends the interpreter (SIGABRT) or surfaces as a
//! `PanicException`. Every allocation sized by an argument or by an input's length times a
//! ratio goes through here instead and becomes `AudioError::OutOfMemory` (a `MemoryError`).

use std::alloc::Layout;

use crate::AudioError;

/// Element types whose all-zero bit pattern is a valid value (so zeroed memory is a valid
/// slice of them).
///
/// # Safety
/// Implement only for types for which all-zero bytes are a valid value.
pub unsafe trait Zeroable: Copy {}

// SAFETY: zero is a valid value of each of these plain numbers.
unsafe impl Zeroable for u8 {}
// SAFETY: as above.
unsafe impl Zeroable for i16 {}
// SAFETY: as above.
unsafe impl Zeroable for f32 {}

/// A boxed slice of `len` zeros. Large ones come from `calloc`-style zeroed pages, so memory
/// is committed only as it is written, exactly like `vec![0; len]`, but a refusal is an error.
pub fn zeroed_slice<T: Zeroable>(len: usize, what: &str) -> Result<Box<[T]>, AudioError> {
    let Ok(layout) = Layout::array::<T>(len) else {
        return Err(AudioError::out_of_memory(what, None));
    };
    if layout.size() == 0 {
        return Ok(Box::from(Vec::new()));
    }
    // SAFETY: the layout has a non-zero size (checked above).
    let data = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if data.is_null() {
        return Err(AudioError::out_of_memory(what, Some(layout.size())));
    }
    // SAFETY: `data` was allocated by the global allocator with `Layout::array::<T>(len)` (the
    // layout `Box<[T]>` frees with), is zeroed, and all-zero bytes are a valid `T`.
    Ok(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)) })
}

/// Makes room for `additional` more elements in `vec` (like `Vec::reserve`).
pub fn reserve<T>(vec: &mut Vec<T>, additional: usize, what: &str) -> Result<(), AudioError> {
    vec.try_reserve(additional).map_err(|_| refused::<T>(vec.len(), additional, what))
}

/// A new vector with room for `capacity` elements (like `Vec::with_capacity`).
pub fn with_capacity<T>(capacity: usize, what: &str) -> Result<Vec<T>, AudioError> {
    let mut vec = Vec::new();
    vec.try_reserve_exact(capacity).map_err(|_| refused::<T>(0, capacity, what))?;
    Ok(vec)
}

/// `vec.resize(len, value)`, refusing rather than aborting when the room cannot be had.
pub fn resize<T: Clone>(vec: &mut Vec<T>, len: usize, value: T, what: &str) -> Result<(), AudioError> {
    if len > vec.len() {
        reserve(vec, len - vec.len(), what)?;
    }
    vec.resize(len, value);
    Ok(())
}

fn refused<T>(len: usize, additional: usize, what: &str) -> AudioError {
    let bytes = len
        .checked_add(additional)
        .and_then(|total| total.checked_mul(std::mem::size_of::<T>()))
        .filter(|&bytes| isize::try_from(bytes).is_ok());
    AudioError::out_of_memory(what, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_slice_is_zeroed_and_sized() {
        let zeros = zeroed_slice::<i16>(1000, "test").unwrap();
        assert_eq!(zeros.len(), 1000);
        assert!(zeros.iter().all(|&x| x == 0));
        assert!(zeroed_slice::<f32>(0, "test").unwrap().is_empty());
    }

    #[test]
    fn absurd_sizes_are_errors_not_aborts() {
        // More than the address space: refused before asking the allocator.
        let error = zeroed_slice::<i16>(usize::MAX / 2 + 1, "a ring").unwrap_err();
        assert!(matches!(error, AudioError::OutOfMemory(_)), "{error:?}");
        assert!(matches!(with_capacity::<f32>(usize::MAX, "x"), Err(AudioError::OutOfMemory(_))));
        let mut vec = vec![0u8; 4];
        assert!(matches!(reserve(&mut vec, usize::MAX, "x"), Err(AudioError::OutOfMemory(_))));
        assert!(matches!(resize(&mut vec, usize::MAX, 0, "x"), Err(AudioError::OutOfMemory(_))));
        assert_eq!(vec.len(), 4, "a refused resize leaves the vector as it was");
    }

    #[test]
    fn the_allocators_refusal_is_an_error() {
        // 2**62 bytes fit `isize` but no machine has them: the allocator itself says no.
        let error = zeroed_slice::<u8>(1 << 62, "a huge buffer").unwrap_err();
        assert_eq!(
            error,
            AudioError::OutOfMemory(format!("cannot allocate {} bytes for a huge buffer", 1u64 << 62))
        );
    }

    #[test]
    fn resize_shrinks_and_grows_like_vec() {
        let mut vec = vec![1, 2, 3];
        resize(&mut vec, 5, 9, "x").unwrap();
        assert_eq!(vec, [1, 2, 3, 9, 9]);
        resize(&mut vec, 2, 0, "x").unwrap();
        assert_eq!(vec, [1, 2]);
    }
}
