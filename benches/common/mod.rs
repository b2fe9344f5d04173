//! What the criterion benches share: timing in the benchmarking thread's own CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), so that other work on a shared machine does not count as ours.
//! Used as `mod common;` (a folder, so cargo does not take it for a bench of its own).

use std::time::Duration;

/// The calling thread's CPU time so far.
pub fn thread_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec for the call to fill.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Runs `step` `iterations` times and returns the thread CPU time it took.
pub fn cpu_time(iterations: u64, mut step: impl FnMut()) -> Duration {
    let start = thread_time();
    for _ in 0..iterations {
        step();
    }
    thread_time().saturating_sub(start)
}
