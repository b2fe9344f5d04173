//! Bindings of `crate::handoff`: the queue a device thread hands microphone frames through.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;

use numpy::npyffi::NPY_TYPES;
use numpy::{PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{lock, zeros_array, Int};
use crate::handoff::{FrameLayout, HandoffQueue, Pushed};

/// `push` outcomes (the module exports them as `HANDOFF_*` constants).
const NOT_TAKEN: u8 = 0;
const QUEUED: u8 = 1;
const QUEUED_WAKE: u8 = 2;
const FULL: u8 = 3;
const TOO_LARGE: u8 = 4;

/// A bounded FIFO of audio frames from any thread to the event loop's thread, in Rust.
///
/// `push(samples, rate=None)` is the whole of a device callback's work: one call that takes a
/// C-contiguous native float32 or int16 numpy array (1-D, or 2-D ``(frames, channels)``),
/// copies its bytes into an arena allocated once, and returns at once: ``HANDOFF_QUEUED``, or
/// ``HANDOFF_FULL`` (nothing queued; frames or bytes at capacity), ``HANDOFF_TOO_LARGE`` (the
/// frame alone is larger than the arena), or ``HANDOFF_NOT_TAKEN`` when the frame is not for
/// this path (another type or layout, the consumer's own thread, the queue not open, or no
/// rate given while ``open`` set none): the caller then takes its general path. No Python
/// object is made. On the empty-to-non-empty edge it signals ``wake_fd`` (an eventfd on Linux,
/// a pipe elsewhere), so the consumer's event loop wakes without any Python call in the
/// producer; off unix there is no such descriptor and it returns ``HANDOFF_QUEUED_WAKE``: the
/// caller wakes the consumer itself.
///
/// The consumer (the thread that called ``open``) calls ``woken()`` before it looks (the next
/// push wakes it again), then ``front()`` for ``(samples, channels, rate)`` of the oldest frame
/// (a new 1-D array; ``channels`` 0 for a 1-D frame) and ``pop()`` once it has taken it.
#[pyclass(name = "FrameHandoff", module = "realtalk._audio", frozen)]
pub struct PyFrameHandoff {
    queue: Mutex<HandoffQueue>,
    open: AtomicBool,
    /// The rate of a frame pushed without one (0: such pushes are not taken).
    default_rate: std::sync::atomic::AtomicU32,
    consumer: OnceLock<ThreadId>,
    #[cfg(unix)]
    waker: WakeFd,
}

#[pymethods]
impl PyFrameHandoff {
    #[new]
    fn new(max_frames: Int, arena_bytes: Int) -> PyResult<Self> {
        let max_frames = max_frames.within("max_frames", 1u64, 1 << 24, "frames")?;
        let arena_bytes = arena_bytes.within("arena_bytes", 1u64, 1 << 31, "bytes")?;
        Ok(Self {
            // Both fit a usize on every target (at most 2**31).
            queue: Mutex::new(HandoffQueue::new(max_frames as usize, arena_bytes as usize)?),
            open: AtomicBool::new(false),
            default_rate: std::sync::atomic::AtomicU32::new(0),
            consumer: OnceLock::new(),
            #[cfg(unix)]
            waker: WakeFd::new().map_err(|err| {
                PyValueError::new_err(format!("cannot make the wake-up descriptor: {err}"))
            })?,
        })
    }

    /// Starts taking frames; the calling thread becomes the consumer. `default_rate` is the
    /// rate of frames pushed without one (None: those go to the caller's general path).
    #[pyo3(signature = (default_rate=None))]
    fn open(&self, default_rate: Option<Int>) -> PyResult<()> {
        let rate = match default_rate {
            Some(rate) => rate.within("default_rate", 1u32, 1 << 24, "Hz")?,
            None => 0,
        };
        let here = std::thread::current().id();
        if *self.consumer.get_or_init(|| here) != here {
            return Err(PyValueError::new_err("the hand-off was opened by another thread"));
        }
        self.default_rate.store(rate, Ordering::Relaxed);
        self.open.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops taking frames (pushes return ``HANDOFF_NOT_TAKEN``); what is queued stays.
    fn close(&self) {
        self.open.store(false, Ordering::Release);
    }

    #[pyo3(signature = (samples, rate=None))]
    fn push(&self, samples: &Bound<'_, PyAny>, rate: Option<Int>) -> u8 {
        if !self.open.load(Ordering::Acquire) {
            return NOT_TAKEN;
        }
        let rate = match rate {
            None => self.default_rate.load(Ordering::Relaxed),
            Some(rate) => rate.within("rate", 1u32, 1 << 24, "Hz").unwrap_or(0),
        };
        if rate == 0 || self.consumer.get() == Some(&std::thread::current().id()) {
            return NOT_TAKEN;
        }
        let Ok(array) = samples.cast::<PyUntypedArray>() else { return NOT_TAKEN };
        let Some((bytes, layout)) = frame_bytes(array, rate) else { return NOT_TAKEN };
        let pushed = {
            let mut queue = lock(&self.queue);
            if bytes.len() > queue.arena_bytes() {
                return TOO_LARGE;
            }
            queue.push(bytes, layout)
        };
        match pushed {
            Pushed::Full => FULL,
            Pushed::Queued { wake: false } => QUEUED,
            Pushed::Queued { wake: true } => self.wake(),
        }
    }

    /// Call before looking at the queue (consumer): the next push wakes the consumer again.
    fn woken(&self) {
        #[cfg(unix)]
        self.waker.drain();
        lock(&self.queue).woken();
    }

    /// The oldest frame as ``(samples, channels, rate)``, or None when the queue is empty.
    fn front<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyAny>, u32, u32)>> {
        // The array is made with the queue unlocked: making it may run Python code (a garbage
        // collection) that lets a producer thread take the interpreter, and that producer
        // must not then wait for the lock while holding the interpreter. Only the consumer
        // pops, so the front frame stays the same meanwhile.
        let Some((layout, len)) = lock(&self.queue).front().map(|(l, h, t)| (l, h.len() + t.len()))
        else {
            return Ok(None);
        };
        let array = if layout.float {
            let array = zeros_array::<f32>(py, len / 4)?;
            // SAFETY: new, contiguous, referenced nowhere else.
            self.copy_front(bytes_of_f32(unsafe { array.as_slice_mut() }?));
            array.into_any()
        } else {
            let array = zeros_array::<i16>(py, len / 2)?;
            // SAFETY: as above.
            self.copy_front(bytes_of_i16(unsafe { array.as_slice_mut() }?));
            array.into_any()
        };
        Ok(Some((array, layout.channels, layout.rate)))
    }

    /// Drops the oldest frame (consumer); False if the queue was empty.
    fn pop(&self) -> bool {
        lock(&self.queue).pop()
    }

    fn __len__(&self) -> usize {
        lock(&self.queue).len()
    }

    /// The most frames the queue holds.
    #[getter]
    fn max_frames(&self) -> usize {
        lock(&self.queue).max_frames()
    }

    /// The most bytes the queue holds: also the largest frame it takes.
    #[getter]
    fn arena_bytes(&self) -> usize {
        lock(&self.queue).arena_bytes()
    }

    /// The file descriptor that becomes readable when frames arrive (None where there is
    /// none: then pushes that need a wake-up return ``HANDOFF_QUEUED_WAKE``).
    #[getter]
    #[allow(clippy::unnecessary_wraps)] // None off unix
    fn wake_fd(&self) -> Option<c_int> {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            Some(self.waker.read.as_raw_fd())
        }
        #[cfg(not(unix))]
        None
    }
}

impl PyFrameHandoff {
    /// Copies the front frame's bytes into `out` (its length), under the lock, no Python.
    fn copy_front(&self, out: &mut [u8]) {
        if let Some((_, head, tail)) = lock(&self.queue).front() {
            if head.len() + tail.len() == out.len() {
                out[..head.len()].copy_from_slice(head);
                out[head.len()..].copy_from_slice(tail);
            }
        }
    }

    fn wake(&self) -> u8 {
        #[cfg(unix)]
        {
            self.waker.signal();
            QUEUED
        }
        #[cfg(not(unix))]
        QUEUED_WAKE
    }
}

/// The consumer's wake-up: a non-blocking file descriptor that becomes readable when a
/// producer signals. On Linux an eventfd (a counter in the kernel), elsewhere a pipe. Not a
/// socket: a write to a unix socket made by a thread that just woke costs 3-4x an eventfd's
/// at p50 (14-18 vs 4-5 us on the project's VM; `benches/README.md`, the hand-off section).
#[cfg(unix)]
struct WakeFd {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

#[cfg(unix)]
impl WakeFd {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn new() -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new descriptor this process owns and nothing else holds.
        let read = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let write = read.try_clone()?;
        Ok(Self { read, write })
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn new() -> std::io::Result<Self> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let mut fds = [0 as c_int; 2];
        // SAFETY: `fds` has room for the two descriptors `pipe` writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: two new descriptors this process owns and nothing else holds.
        let (read, write) = unsafe {
            (std::os::fd::OwnedFd::from_raw_fd(fds[0]), std::os::fd::OwnedFd::from_raw_fd(fds[1]))
        };
        for fd in [read.as_raw_fd(), write.as_raw_fd()] {
            // SAFETY: `fd` is open; fcntl only sets its flags.
            let ok = unsafe {
                libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK)
                    == 0
                    && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
            };
            if !ok {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Self { read, write })
    }

    /// Makes `read` readable. Never blocks: a full pipe (or counter) already holds a wake-up,
    /// which is all it takes, so the result is not needed.
    fn signal(&self) {
        use std::os::fd::AsRawFd;
        let one = 1u64.to_ne_bytes(); // an eventfd takes exactly 8 bytes; a pipe any
        // SAFETY: `one` is 8 readable bytes; the descriptor is open while `self` is.
        let _ = unsafe { libc::write(self.write.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Reads until `read` is no longer readable (an eventfd in one read, a pipe in a few).
    fn drain(&self) {
        use std::os::fd::AsRawFd;
        let mut sink = [0u8; 64];
        // SAFETY: `sink` is 64 writable bytes; the descriptor is open while `self` is.
        let fd = self.read.as_raw_fd();
        while unsafe { libc::read(fd, sink.as_mut_ptr().cast(), sink.len()) } > 0 {}
    }
}

/// The frame's bytes and layout if it is a C-contiguous native float32/int16 array of one or
/// two dimensions; None otherwise.
fn frame_bytes<'a>(array: &'a Bound<'_, PyUntypedArray>, rate: u32) -> Option<(&'a [u8], FrameLayout)> {
    let (ndim, contiguous) = (array.ndim(), array.is_c_contiguous());
    if !(ndim == 1 || ndim == 2) || !contiguous {
        return None;
    }
    let dtype = array.dtype();
    let float = match dtype.num() {
        num if num == NPY_TYPES::NPY_FLOAT as c_int => true,
        num if num == NPY_TYPES::NPY_SHORT as c_int => false,
        _ => return None,
    };
    if dtype.is_native_byteorder() == Some(false) {
        return None;
    }
    let shape = array.shape();
    let channels = if ndim == 2 { u32::try_from(shape[1]).ok().filter(|&c| c > 0)? } else { 0 };
    let samples = shape.iter().product::<usize>();
    let len = samples * if float { 4 } else { 2 };
    // SAFETY: a C-contiguous array of `samples` items of that size, alive and attached for as
    // long as the borrow of `array`; the queue copies the bytes before returning.
    let data = unsafe { (*array.as_array_ptr()).data.cast::<u8>() };
    let bytes = if len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(data, len) } };
    Some((bytes, FrameLayout { float, channels, rate }))
}

fn bytes_of_f32(samples: &mut [f32]) -> &mut [u8] {
    // SAFETY: f32 has no invalid bit patterns and u8 has alignment 1.
    unsafe { std::slice::from_raw_parts_mut(samples.as_mut_ptr().cast::<u8>(), samples.len() * 4) }
}

fn bytes_of_i16(samples: &mut [i16]) -> &mut [u8] {
    // SAFETY: as above.
    unsafe { std::slice::from_raw_parts_mut(samples.as_mut_ptr().cast::<u8>(), samples.len() * 2) }
}

/// The `push` outcomes as module constants.
pub fn add_constants(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("HANDOFF_NOT_TAKEN", NOT_TAKEN)?;
    module.add("HANDOFF_QUEUED", QUEUED)?;
    module.add("HANDOFF_QUEUED_WAKE", QUEUED_WAKE)?;
    module.add("HANDOFF_FULL", FULL)?;
    module.add("HANDOFF_TOO_LARGE", TOO_LARGE)?;
    Ok(())
}
