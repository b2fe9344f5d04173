//! The one run-time SIMD dispatch: which instruction sets the kernels may use.
//!
//! The wheel targets baseline x86-64 (and other architectures with no vector kernels at all),
//! so every kernel keeps a portable version and picks a vector one at run time. They all ask
//! here, through [`enabled`], rather than detecting CPU features themselves, so that one
//! setting steers them all:
//!
//! - `REALTALK_SIMD=scalar|sse2|avx2|avx512` caps the level. It is read once: when the
//!   extension module loads (which reports the outcome as `realtalk._audio.simd`, see
//!   [`cap_name`]), or at the first kernel call in a pure-Rust program. `scalar` runs the
//!   portable code every kernel has, the very code a non-x86 build runs: CI on x86 tests the
//!   fallbacks that ARM wheels ship. An unknown value caps nothing.
//! - Tests force a level on their own thread with [`with_cap`], to compare each kernel's
//!   portable path with its vector paths on one machine.
//!
//! The answer is a bit mask computed once, so a kernel call pays one atomic load for it.

use std::sync::atomic::{AtomicU32, Ordering};

/// Instruction-set tiers, each including the ones below it; the cap is one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Portable Rust only (what non-x86 builds run).
    Scalar,
    /// SSE2, the x86-64 baseline.
    Sse2,
    /// AVX, AVX2 and FMA.
    Avx2,
    /// The AVX-512 families (F, BW, VL, VBMI), each as the CPU has it.
    Avx512,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Scalar, Level::Sse2, Level::Avx2, Level::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Sse2 => "sse2",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.name() == text.trim().to_ascii_lowercase())
    }
}

/// The CPU features the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Sse2,
    Avx,
    Avx2,
    Fma,
    Avx512F,
    Avx512Bw,
    Avx512Vl,
    Avx512Vbmi,
}

impl Feature {
    const ALL: [Feature; 8] = [
        Feature::Sse2,
        Feature::Avx,
        Feature::Avx2,
        Feature::Fma,
        Feature::Avx512F,
        Feature::Avx512Bw,
        Feature::Avx512Vl,
        Feature::Avx512Vbmi,
    ];

    const fn bit(self) -> u32 {
        1 << self as u32
    }

    /// The tier a cap must reach for the feature to be used.
    fn level(self) -> Level {
        match self {
            Self::Sse2 => Level::Sse2,
            Self::Avx | Self::Avx2 | Self::Fma => Level::Avx2,
            Self::Avx512F | Self::Avx512Bw | Self::Avx512Vl | Self::Avx512Vbmi => Level::Avx512,
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn detected(self) -> bool {
        match self {
            Self::Sse2 => is_x86_feature_detected!("sse2"),
            Self::Avx => is_x86_feature_detected!("avx"),
            Self::Avx2 => is_x86_feature_detected!("avx2"),
            Self::Fma => is_x86_feature_detected!("fma"),
            Self::Avx512F => is_x86_feature_detected!("avx512f"),
            Self::Avx512Bw => is_x86_feature_detected!("avx512bw"),
            Self::Avx512Vl => is_x86_feature_detected!("avx512vl"),
            Self::Avx512Vbmi => is_x86_feature_detected!("avx512vbmi"),
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detected(self) -> bool {
        false
    }
}

/// The features of every tier up to `level`.
fn allowed_by(level: Level) -> u32 {
    Feature::ALL.into_iter().filter(|f| f.level() <= level).map(Feature::bit).fold(0, |a, b| a | b)
}

/// Bit 31 marks the mask as computed (no feature uses it).
const COMPUTED: u32 = 1 << 31;
static USABLE: AtomicU32 = AtomicU32::new(0);

/// The cap `REALTALK_SIMD` asks for, if it names a level.
fn env_cap() -> Option<Level> {
    std::env::var("REALTALK_SIMD").ok().as_deref().and_then(Level::parse)
}

/// Features detected on this CPU and allowed by the environment's cap.
#[allow(clippy::inline_always)]
#[inline(always)]
fn usable() -> u32 {
    let mask = USABLE.load(Ordering::Relaxed);
    if mask & COMPUTED != 0 {
        return mask;
    }
    compute_usable()
}

/// The first call's work, kept out of the kernels' inlined fast path.
#[cold]
#[inline(never)]
fn compute_usable() -> u32 {
    let detected = Feature::ALL
        .into_iter()
        .filter(|f| f.detected())
        .map(Feature::bit)
        .fold(0, |a, b| a | b);
    // Racing first calls compute the same value.
    let mask = (detected & allowed_by(env_cap().unwrap_or(Level::Avx512))) | COMPUTED;
    USABLE.store(mask, Ordering::Relaxed);
    mask
}

#[cfg(test)]
thread_local! {
    static FORCED: std::cell::Cell<Option<Level>> = const { std::cell::Cell::new(None) };
}

/// Whether a kernel may use every one of `features`: the CPU has them and the cap allows them.
///
/// Always inlined, so that the constant list at each call folds into a constant mask and the
/// check is one load, one mask and one branch (some kernels ask per JSON string or per frame).
#[allow(clippy::inline_always)]
#[inline(always)]
pub fn enabled(features: &[Feature]) -> bool {
    let wanted = features.iter().fold(0, |mask, f| mask | f.bit());
    #[allow(unused_mut)]
    let mut mask = usable();
    #[cfg(test)]
    if let Some(level) = FORCED.with(std::cell::Cell::get) {
        mask &= allowed_by(level);
    }
    mask & wanted == wanted
}

/// The highest level whose features this CPU has in part or whole, after the caps: what
/// "every level" means for a test on this machine.
pub fn best_level() -> Level {
    let mask = usable();
    #[cfg(test)]
    let mask = FORCED.with(std::cell::Cell::get).map_or(mask, |level| mask & allowed_by(level));
    Level::ALL
        .into_iter()
        .rev()
        .find(|&level| level == Level::Scalar || mask & allowed_by(level) & !allowed_by(prev(level)) != 0)
        .unwrap_or(Level::Scalar)
}

fn prev(level: Level) -> Level {
    match level {
        Level::Scalar | Level::Sse2 => Level::Scalar,
        Level::Avx2 => Level::Sse2,
        Level::Avx512 => Level::Avx2,
    }
}

/// The name of [`best_level`] (what `realtalk._audio.simd` reports).
pub fn cap_name() -> &'static str {
    best_level().name()
}

/// Every level from scalar up to what this CPU runs: the levels a kernel test compares.
pub fn levels() -> impl Iterator<Item = Level> {
    let best = best_level();
    Level::ALL.into_iter().filter(move |&level| level <= best)
}

/// Runs `work` with the kernels on this thread capped at `level` (tests only).
#[cfg(test)]
pub fn with_cap<R>(level: Level, work: impl FnOnce() -> R) -> R {
    struct Restore(Option<Level>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|forced| forced.set(self.0));
        }
    }
    let _restore = Restore(FORCED.with(|forced| forced.replace(Some(level))));
    work()
}

/// Runs `run` capped at every level this CPU has and checks each result equals the portable
/// one (tests only): the scalar fallback of a kernel against its vector paths.
///
/// # Panics
/// When a level's result differs, naming `what` and the level.
#[cfg(test)]
pub fn assert_every_level_matches_scalar<T: PartialEq + std::fmt::Debug>(what: &str, run: impl Fn() -> T) {
    let scalar = with_cap(Level::Scalar, &run);
    for level in levels().filter(|&level| level > Level::Scalar) {
        let got = with_cap(level, &run);
        assert!(got == scalar, "{what}: the {} path differs from the scalar one", level.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_name() {
        for level in Level::ALL {
            assert_eq!(Level::parse(level.name()), Some(level));
        }
        assert_eq!(Level::parse(" AVX2 "), Some(Level::Avx2));
        assert_eq!(Level::parse("neon"), None);
    }

    #[test]
    fn a_cap_turns_features_off_on_this_thread_only() {
        with_cap(Level::Scalar, || {
            for feature in Feature::ALL {
                assert!(!enabled(&[feature]), "{feature:?} under the scalar cap");
            }
            assert_eq!(best_level(), Level::Scalar);
            std::thread::spawn(|| {
                // Another thread keeps the process-wide setting.
                #[cfg(target_arch = "x86_64")]
                assert_eq!(enabled(&[Feature::Sse2]), Feature::Sse2.detected());
            })
            .join()
            .unwrap();
        });
        with_cap(Level::Avx2, || {
            assert!(!enabled(&[Feature::Avx512F]));
            assert!(best_level() <= Level::Avx2);
            #[cfg(target_arch = "x86_64")]
            assert_eq!(enabled(&[Feature::Avx2, Feature::Fma]), Feature::Avx2.detected() && Feature::Fma.detected());
        });
        #[cfg(target_arch = "x86_64")]
        assert_eq!(enabled(&[Feature::Sse2]), env_cap().is_none_or(|cap| cap >= Level::Sse2));
    }

    #[test]
    fn levels_run_from_scalar_to_the_best() {
        let levels: Vec<Level> = levels().collect();
        assert_eq!(levels.first(), Some(&Level::Scalar));
        assert_eq!(levels.last(), Some(&best_level()));
        assert!(levels.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
