//! Streaming polyphase resampler with exact rational ratios.
//!
//! The ratio `out_rate / in_rate` is reduced to `up / down`; output sample `k` sits at input time
//! `k * down / up`, which is tracked as an integer quotient and remainder, so hours of audio never
//! drift. Every output is one dot product of a window of input history with the coefficients of
//! its phase (the remainder), always in the same order with the same kernel: the result does not
//! depend on how the input was chunked. Outputs are aligned with the input (output `k` is the
//! band-limited value at time `k / out_rate`): a stream lags by [`Resampler::delay`] output
//! samples, and `process` + `flush` of a whole signal is the delay-compensated one-shot result.
//!
//! Filters are Kaiser-windowed sincs designed at construction (and cached per rate pair and
//! quality): the stop band starts at the lower Nyquist frequency, so nothing that would alias or
//! image gets through, and each preset trades its pass band and attenuation against delay. Where
//! the linear-phase sinc would lag more than the preset promises (a narrow transition below a low
//! Nyquist frequency, as with 8 kHz), the filter is its minimum-phase counterpart instead (same
//! magnitude, found through the cepstrum): the lag is then its group delay at low frequencies, and
//! the group delay grows towards the pass-band edge (about 1.2 ms more at 3.4 kHz for 8 kHz).
//! Ratios whose reduced numerator would need a table over `MAX_TABLE_LEN` coefficients (44,100 ->
//! 44,101, say) interpolate linearly between up to 8,192 finer rows instead; the clock stays exact.
//!
//! Speed: outputs `k` and `k + up` share a phase, so whenever a call has every phase at least
//! twice, outputs run phase by phase, eight windows against one coefficient row (two rows when
//! neighbouring phases also share windows, as in upsampling), in cache-sized blocks. The dot
//! products dispatch at run time to AVX-512 or AVX2+FMA; each output's operation order is the
//! same in every code path, which is what keeps chunked and one-shot output identical.
//!
//! Mono streams at the voice ratios (2:1, 1:2, 3:1, 1:3, 3:2, 2:3) skip the per-output dot
//! product altogether: SIMD lanes hold consecutive outputs of one phase, taps are broadcast and
//! the input is split into phase streams so every load has unit stride (see [`LaneTaps`]). No
//! horizontal sums remain, and every output, in any lane or block, is the same fused chain.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::{memory, simd, AudioError};

/// Lowest and highest sample rates accepted, in Hz.
pub const MIN_RATE: u32 = 8_000;
pub const MAX_RATE: u32 = 192_000;
/// Interleaved channels accepted per stream.
pub const MAX_CHANNELS: usize = 64;

/// Filter presets. See [`Quality::design`] for what each one promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// >= 80 dB, about 1 ms of delay: for voice activity work and monitoring.
    Low,
    /// >= 100 dB, flat within 0.01 dB to 0.85 x the lower Nyquist: transparent for 16-bit audio.
    High,
    /// >= 130 dB with a wider pass band, for archival-grade conversion.
    Max,
}

impl Quality {
    pub fn parse(name: &str) -> Result<Self, AudioError> {
        match name {
            "low" => Ok(Self::Low),
            "high" => Ok(Self::High),
            "max" => Ok(Self::Max),
            other => Err(AudioError::invalid(format!(
                "quality must be \"low\", \"high\" or \"max\", got {other:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::High => "high",
            Self::Max => "max",
        }
    }

    /// Stop-band attenuation (dB) and transition width (Hz) for a given lower Nyquist frequency.
    fn design(self, lower_nyquist: f64) -> (f64, f64) {
        match self {
            // The design attenuations carry a few dB of margin over the promised figures: the
            // Kaiser length estimate is approximate and coefficients are rounded to f32.
            Self::Low => {
                let attenuation = 88.0;
                // Wide enough for 0.95 ms of delay (1 ms after rounding up to whole taps), but
                // never so wide that the pass band ends below half the Nyquist frequency.
                let for_one_ms =
                    (attenuation - 7.95) / (2.285 * 2.0 * std::f64::consts::PI * 0.0019);
                (
                    attenuation,
                    for_one_ms.max(0.2 * lower_nyquist).min(0.5 * lower_nyquist),
                )
            }
            Self::High => (101.0, 0.15 * lower_nyquist),
            Self::Max => (145.0, 0.12 * lower_nyquist),
        }
    }

    /// The longest streaming lag the preset promises, in milliseconds ("max" promises none).
    fn delay_bar_ms(self) -> Option<u64> {
        match self {
            Self::Low => Some(1),
            Self::High => Some(3),
            Self::Max => None,
        }
    }
}

/// Largest coefficient table (in f32s) stored with one row per exact phase. Ratios whose reduced
/// numerator would need more fall back to a finer-than-needed table interpolated per output.
const MAX_TABLE_LEN: usize = 1 << 21;
/// Coefficients are padded to a multiple of the widest SIMD block.
const BLOCK: usize = 16;
/// Outputs computed together when they share a phase.
const SHARED: usize = 8;
/// Longest minimum-phase prototype (taps on its design grid): its FFTs are
/// `CEPSTRUM_OVERSAMPLING` times longer, so this bounds the one-off design at 2^17 points
/// (192 kHz -> 8 kHz needs 4,400 taps; all designs take under 20 ms).
const MAX_MINIMUM_PHASE_LEN: usize = 1 << 13;
/// Finest grid (phases per input sample) a minimum-phase prototype is designed on; ratios with
/// more phases interpolate it.
const MINIMUM_PHASE_GRID: usize = 8;
/// Taps and stop band of the interpolator from that grid to the polyphase resolution. The
/// prototype occupies at most 1/16 of the grid's bandwidth, so 16 taps pass it flat and put its
/// images 140 dB down.
const GRID_INTERPOLATION_TAPS: usize = 16;
const GRID_INTERPOLATION_DB: f64 = 140.0;
/// FFT length per prototype tap in the cepstral design. Shorter FFTs alias the cepstrum, which
/// cost the stop band 1-7 dB at 8 kHz <-> 24/44.1 kHz (4x and 8x, measured with numpy).
const CEPSTRUM_OVERSAMPLING: usize = 16;
/// Extra design attenuation of a minimum-phase prototype: the cepstral step and its truncation
/// cost about 0.5 dB of stop band, and a longer prototype hardly adds delay.
const MINIMUM_PHASE_MARGIN_DB: f64 = 4.0;

/// How the coefficients of a phase are obtained.
#[derive(Debug)]
enum PhaseTable {
    /// One row per phase `r` in `0..up`.
    Exact,
    /// `rows` + 1 rows at fractional offsets `i / rows`; phase `r` interpolates linearly.
    Interpolated { rows: u64 },
}

/// Where the energy of the impulse response sits in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Symmetric about the output instant: no phase distortion, a lag of half the filter.
    Linear,
    /// The same magnitude response with its energy up front: a fraction of the lag, for a group
    /// delay that grows towards the pass-band edge.
    Minimum,
}

/// A low-pass prototype split into polyphase rows, each `taps` long, reversed for a forward dot
/// product with the input window and zero-padded at the front (where past input always exists,
/// so the padding never makes an output wait). The window of an output at input time `q + r/up`
/// holds inputs `q - behind + 1 ..= q + ahead`: a stream lags its input by `ahead` samples.
#[derive(Debug)]
struct PolyphaseFilter {
    taps: usize,
    ahead: usize,
    behind: usize,
    lead_pad: usize,
    phase: Phase,
    table: PhaseTable,
    /// Rows start at `first` so that every row is 64-byte aligned (no split loads).
    coefs: Vec<f32>,
    first: usize,
}

fn bessel_i0(x: f64) -> f64 {
    let quarter_x2 = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut k = 1.0;
    while term > sum * 1e-17 {
        term *= quarter_x2 / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

fn kaiser_beta(attenuation: f64) -> f64 {
    if attenuation > 50.0 {
        0.1102 * (attenuation - 8.7)
    } else {
        0.5842 * (attenuation - 21.0).powf(0.4) + 0.07886 * (attenuation - 21.0)
    }
}

/// A Kaiser-windowed sinc `half_width` input samples either side of its centre.
struct KaiserSinc {
    half_width: usize,
    beta: f64,
    i0_beta: f64,
    /// Cycles per input sample.
    cutoff: f64,
}

impl KaiserSinc {
    fn new(attenuation: f64, transition: f64, lower_nyquist: f64, fs_in: f64) -> Self {
        let beta = kaiser_beta(attenuation);
        // Kaiser's length estimate, in input samples.
        let length =
            (attenuation - 7.95) / (2.285 * 2.0 * std::f64::consts::PI * transition / fs_in);
        Self {
            half_width: (length / 2.0).ceil() as usize,
            beta,
            i0_beta: bessel_i0(beta),
            cutoff: (lower_nyquist - transition / 2.0) / fs_in,
        }
    }

    /// The response `t` input samples after the centre (unit gain at DC per phase).
    fn at(&self, t: f64) -> f64 {
        let w = self.half_width as f64;
        if t.abs() >= w {
            return 0.0;
        }
        let ratio = t / w;
        let window = bessel_i0(self.beta * (1.0 - ratio * ratio).sqrt()) / self.i0_beta;
        let x = 2.0 * self.cutoff * t;
        let sinc = if x == 0.0 {
            1.0
        } else {
            (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
        };
        2.0 * self.cutoff * sinc * window
    }
}

impl PolyphaseFilter {
    /// Linear phase where its lag meets the preset's delay bar; otherwise the minimum-phase
    /// filter of the same magnitude specification. With the presets as they are, that is "high"
    /// with a side below 14.4 kHz (8, 11.025, 12 kHz: a linear phase would lag 3.6-5.5 ms) and
    /// "low" with a side below about 11.5 kHz (1.1-1.5 ms): those lag 0.17-0.41 ms instead.
    fn design(in_rate: u32, out_rate: u32, up: u64, quality: Quality) -> Self {
        let fs_in = f64::from(in_rate);
        let lower_nyquist = f64::from(in_rate.min(out_rate)) / 2.0;
        let (attenuation, transition) = quality.design(lower_nyquist);
        // At least 2 output samples of lag keep a stream from running ahead of the flushed total.
        let min_ahead = (2.0 * fs_in / f64::from(out_rate)).ceil().max(2.0) as usize;
        let mut sinc = KaiserSinc::new(attenuation, transition, lower_nyquist, fs_in);
        sinc.half_width = sinc.half_width.max(min_ahead);
        let misses_bar = quality
            .delay_bar_ms()
            .is_some_and(|bar_ms| sinc.half_width as u64 * 1000 > bar_ms * u64::from(in_rate));
        if misses_bar {
            let long = KaiserSinc::new(
                attenuation + MINIMUM_PHASE_MARGIN_DB,
                transition,
                lower_nyquist,
                fs_in,
            );
            if let Some(filter) = Self::minimum_phase(&long, up, min_ahead) {
                return filter;
            }
        }
        let half_width = sinc.half_width;
        let table = Self::table_for(up, 2 * half_width);
        let denominator = match table {
            PhaseTable::Exact => up as f64,
            PhaseTable::Interpolated { rows } => rows as f64,
        };
        Self::from_response(
            up,
            half_width,
            half_width,
            Phase::Linear,
            table,
            |before, row| sinc.at(before as f64 + row as f64 / denominator),
        )
    }

    /// The minimum-phase version of `sinc` sampled every `1 / up` input samples, shifted so
    /// that its group delay at low frequencies (rounded to whole input samples) is the lag.
    fn minimum_phase(sinc: &KaiserSinc, up: u64, min_ahead: usize) -> Option<Self> {
        // Its window is at most a tap longer than the linear one's: ratios whose table would
        // have to be interpolated keep linear phase (and are not worth designing for).
        if !matches!(
            Self::table_for(up, 2 * sinc.half_width + 1),
            PhaseTable::Exact
        ) {
            return None;
        }
        let up = up as usize;
        // Designed on a grid of `1 / grid` input samples: `up` itself when small, else a grid
        // at least 16 times the lower Nyquist frequency, interpolated to `1 / up` afterwards
        // (441 phases would need a prototype of 40,000 taps and a second of FFTs).
        let oversampling = 16.0 * sinc.cutoff.max(1.0 / 16.0);
        let grid = if up <= MINIMUM_PHASE_GRID {
            up
        } else {
            (oversampling.ceil() as usize)
                .next_power_of_two()
                .min(MINIMUM_PHASE_GRID)
        };
        let centre = sinc.half_width * grid - 1;
        let len = 2 * centre + 1;
        if len > MAX_MINIMUM_PHASE_LEN {
            return None;
        }
        let prototype: Vec<f64> = (0..len)
            .map(|m| sinc.at((m as f64 - centre as f64) / grid as f64))
            .collect();
        let coarse = minimum_phase_response(&prototype);
        let response = if grid == up {
            coarse
        } else {
            regrid(&coarse, grid, up)
        };
        let len = response.len();
        // The group delay at DC of an FIR h is sum(m h[m]) / sum(h[m]).
        let (moment, gain) = response
            .iter()
            .enumerate()
            .fold((0.0, 0.0), |(moment, gain), (m, &h)| {
                (moment + m as f64 * h, gain + h)
            });
        let ahead = ((moment / gain / up as f64).round() as usize).max(min_ahead);
        let behind = len.div_ceil(up).saturating_sub(ahead).max(1);
        let table = Self::table_for(up as u64, ahead + behind);
        if !matches!(table, PhaseTable::Exact) {
            return None;
        }
        Some(Self::from_response(
            up as u64,
            ahead,
            behind,
            Phase::Minimum,
            table,
            |before, row| {
                // `before` + row / up input samples before the output instant is prototype
                // tap (before + ahead) * up + row.
                let tap = (before + ahead as i64) * up as i64 + row as i64;
                usize::try_from(tap)
                    .ok()
                    .and_then(|tap| response.get(tap))
                    .copied()
                    .unwrap_or(0.0)
            },
        ))
    }

    fn table_for(up: u64, used: usize) -> PhaseTable {
        let taps = used.div_ceil(BLOCK) * BLOCK;
        if (up as usize).saturating_mul(taps) <= MAX_TABLE_LEN {
            PhaseTable::Exact
        } else {
            let mut rows: u64 = 8192;
            while rows > 256 && (rows as usize + 1) * taps > MAX_TABLE_LEN {
                rows /= 2;
            }
            PhaseTable::Interpolated { rows }
        }
    }

    /// Lays out the rows: `response(before, row)` is the coefficient for the input `before`
    /// whole samples (plus the row's fraction) before the output instant.
    fn from_response(
        up: u64,
        ahead: usize,
        behind: usize,
        phase: Phase,
        table: PhaseTable,
        response: impl Fn(i64, usize) -> f64,
    ) -> Self {
        let used = ahead + behind;
        let taps = used.div_ceil(BLOCK) * BLOCK;
        let lead_pad = taps - used;
        let row_count = match table {
            PhaseTable::Exact => up as usize,
            PhaseTable::Interpolated { rows } => rows as usize + 1,
        };
        let mut coefs = vec![0.0f32; row_count * taps + BLOCK];
        let first = coefs.as_ptr().align_offset(64).min(BLOCK);
        for (row, chunk) in coefs[first..]
            .chunks_exact_mut(taps)
            .take(row_count)
            .enumerate()
        {
            for (t, c) in chunk[lead_pad..].iter_mut().enumerate() {
                // Window position t holds input q - behind + 1 + t: (behind - 1 - t) whole
                // samples (plus the row's fraction) before the output instant.
                *c = response(behind as i64 - 1 - t as i64, row) as f32;
            }
        }
        Self {
            taps,
            ahead,
            behind,
            lead_pad,
            phase,
            table,
            coefs,
            first,
        }
    }

    fn row(&self, index: usize) -> &[f32] {
        let start = self.first + index * self.taps;
        &self.coefs[start..start + self.taps]
    }
}

/// `samples` (taken every `1 / from` input samples, band-limited far below that rate) at every
/// `1 / to` input samples, by Kaiser-windowed sinc interpolation.
fn regrid(samples: &[f64], from: usize, to: usize) -> Vec<f64> {
    let reach = GRID_INTERPOLATION_TAPS / 2;
    let beta = kaiser_beta(GRID_INTERPOLATION_DB);
    let i0_beta = bessel_i0(beta);
    let kernel = |distance: f64| {
        let ratio = distance / reach as f64;
        if ratio.abs() >= 1.0 {
            return 0.0;
        }
        let x = std::f64::consts::PI * distance;
        let sinc = if x == 0.0 { 1.0 } else { x.sin() / x };
        sinc * bessel_i0(beta * (1.0 - ratio * ratio).sqrt()) / i0_beta
    };
    // Output m sits (m * from % to) / to past input m * from / to: one weight row per residue.
    let weights: Vec<[f64; GRID_INTERPOLATION_TAPS]> = (0..to)
        .map(|residue| {
            std::array::from_fn(|k| {
                kernel(residue as f64 / to as f64 + (reach - 1) as f64 - k as f64)
            })
        })
        .collect();
    let len = (samples.len() - 1) * to / from + 1;
    (0..len)
        .map(|m| {
            let (nearest, residue) = ((m * from) / to, (m * from) % to);
            weights[residue]
                .iter()
                .enumerate()
                .filter_map(|(k, weight)| {
                    let j = (nearest + k + 1).checked_sub(reach)?;
                    samples.get(j).map(|sample| sample * weight)
                })
                .sum()
        })
        .collect()
}

/// The minimum-phase filter with the magnitude response of `prototype` (and its length), by the
/// homomorphic method: the causal part of the real cepstrum of log |H|, doubled, exponentiated.
fn minimum_phase_response(prototype: &[f64]) -> Vec<f64> {
    let size = (prototype.len() * CEPSTRUM_OVERSAMPLING).next_power_of_two();
    let fft = Fft::new(size);
    let mut re = vec![0.0; size];
    let mut im = vec![0.0; size];
    re[..prototype.len()].copy_from_slice(prototype);
    fft.run(&mut re, &mut im, false);
    let peak = re
        .iter()
        .zip(&im)
        .map(|(r, i)| r.hypot(*i))
        .fold(0.0, f64::max);
    // The stop band's zeros sit on the unit circle: a floor 200 dB down keeps the log finite
    // without touching anything the filter promises.
    let floor = peak * 1e-10;
    for (r, i) in re.iter_mut().zip(im.iter_mut()) {
        *r = r.hypot(*i).max(floor).ln();
        *i = 0.0;
    }
    fft.run(&mut re, &mut im, true);
    let scale = 1.0 / size as f64;
    let half = size / 2;
    // log |H| is real and even, so its cepstrum is too: fold the negative quefrencies onto the
    // positive ones.
    re[0] *= scale;
    for value in &mut re[1..half] {
        *value *= 2.0 * scale;
    }
    re[half] *= scale;
    re[half + 1..].fill(0.0);
    im.fill(0.0);
    fft.run(&mut re, &mut im, false);
    for (r, i) in re.iter_mut().zip(im.iter_mut()) {
        let magnitude = r.exp();
        (*r, *i) = (magnitude * i.cos(), magnitude * i.sin());
    }
    fft.run(&mut re, &mut im, true);
    re.truncate(prototype.len());
    for value in &mut re {
        *value *= scale;
    }
    re
}

/// An iterative radix-2 complex FFT, used once per filter design.
struct Fft {
    /// `(cos, sin)` of `2 pi k / size` for `k` in `0..size / 2`.
    twiddles: Vec<(f64, f64)>,
}

impl Fft {
    fn new(size: usize) -> Self {
        assert!(size.is_power_of_two(), "FFT size must be a power of two");
        let step = 2.0 * std::f64::consts::PI / size as f64;
        Self {
            twiddles: (0..size / 2)
                .map(|k| {
                    let angle = step * k as f64;
                    (angle.cos(), angle.sin())
                })
                .collect(),
        }
    }

    /// In place, unscaled: `X[k] = sum x[n] e^(-+2 pi i k n / size)` (+ when `inverse`).
    fn run(&self, re: &mut [f64], im: &mut [f64], inverse: bool) {
        let size = re.len();
        assert!(size == 2 * self.twiddles.len() && im.len() == size);
        let bits = size.trailing_zeros();
        for i in 0..size {
            let j = i.reverse_bits() >> (usize::BITS - bits);
            if j > i {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let direction = if inverse { 1.0 } else { -1.0 };
        let mut len = 2;
        while len <= size {
            let half = len / 2;
            let stride = size / len;
            for start in (0..size).step_by(len) {
                for k in 0..half {
                    let (w_re, twiddle_sin) = self.twiddles[k * stride];
                    let w_im = direction * twiddle_sin;
                    let (a, b) = (start + k, start + k + half);
                    let t_re = re[b] * w_re - im[b] * w_im;
                    let t_im = re[b] * w_im + im[b] * w_re;
                    (re[b], im[b]) = (re[a] - t_re, im[a] - t_im);
                    (re[a], im[a]) = (re[a] + t_re, im[a] + t_im);
                }
            }
            len *= 2;
        }
    }
}

type FilterKey = (u32, u32, Quality);

fn cached_filter(in_rate: u32, out_rate: u32, up: u64, quality: Quality) -> Arc<PolyphaseFilter> {
    static CACHE: OnceLock<Mutex<HashMap<FilterKey, Arc<PolyphaseFilter>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (in_rate, out_rate, quality);
    if let Some(found) = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return Arc::clone(found);
    }
    // Designed outside the lock: a large table takes milliseconds.
    let filter = Arc::new(PolyphaseFilter::design(in_rate, out_rate, up, quality));
    let mut guard = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if guard.len() >= 64 {
        guard.clear();
    }
    Arc::clone(guard.entry(key).or_insert(filter))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `round(n * up / down)` with ties to even, like Python's `round`.
fn rounded_ratio(n: u64, up: u64, down: u64) -> u64 {
    let product = u128::from(n) * u128::from(up);
    let quotient = product / u128::from(down);
    let twice_rest = 2 * (product % u128::from(down));
    let round_up =
        twice_rest > u128::from(down) || (twice_rest == u128::from(down) && quotient % 2 == 1);
    (quotient + u128::from(round_up)) as u64
}

fn check_rate(name: &str, rate: u32) -> Result<(), AudioError> {
    if (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(AudioError::invalid(format!(
            "{name} must be an integer from {MIN_RATE} to {MAX_RATE} Hz, got {rate}"
        )))
    }
}

/// A streaming resampler for interleaved `f32` or `i16` frames.
#[derive(Debug)]
pub struct Resampler {
    in_rate: u32,
    out_rate: u32,
    channels: usize,
    quality: Quality,
    up: u64,
    down: u64,
    filter: Arc<PolyphaseFilter>,
    kernel: Kernel,
    /// Planar input history, one run per channel, starting at input index `history_start`.
    history: Vec<Vec<f32>>,
    history_start: i64,
    frames_in: u64,
    next_out: u64,
    /// `next_out * down == next_quotient * up + next_phase`.
    next_quotient: u64,
    next_phase: u64,
    /// Four interpolated coefficient rows (interpolated tables only).
    scratch_coefs: Vec<f32>,
    /// f32 staging for the i16 paths.
    scratch_in: Vec<f32>,
    scratch_out: Vec<f32>,
    /// Set when the output-parallel kernels run this stream (see [`LaneTaps`]).
    lanes: Option<LaneTaps>,
    /// One phase's input split into `down` aligned streams, and the sums of a block's phases.
    lane_streams: Vec<f32>,
    lane_sums: Vec<f32>,
}

/// Mono streams whose reduced ratio has `up` and `down` both at most `MAX_LANE_RATIO` (2:1, 1:2,
/// 3:1, 1:3, 3:2, 2:3, 1:1) compute outputs output-parallel: SIMD lanes hold consecutive outputs
/// of one phase, each tap is broadcast, and the input is split into `down` phase streams so
/// every load has unit stride. Each output is one fused multiply-add chain over its taps in
/// order, whichever lane or block it lands in, so chunking never changes a result.
#[derive(Debug, Clone, Copy)]
struct LaneTaps {
    /// Taps `first..end` of every row; the columns outside are zero in all rows and skipped.
    first: usize,
    end: usize,
}

const MAX_LANE_RATIO: u64 = 3;
/// Outputs per lane block: the block's input span and its phase streams stay in L2.
const LANE_BLOCK: usize = 6_144;
/// Streams and sums are padded by a whole vector so the last, partial vector reads zeros.
const LANE_PAD: usize = 16;

impl LaneTaps {
    fn plan(filter: &PolyphaseFilter, up: u64, down: u64, channels: usize) -> Option<Self> {
        if channels != 1
            || up > MAX_LANE_RATIO
            || down > MAX_LANE_RATIO
            || !matches!(filter.table, PhaseTable::Exact)
        {
            return None;
        }
        let rows = (0..up as usize).map(|phase| filter.row(phase));
        let nonzero = |row: &[f32]| {
            let first = row.iter().position(|&c| c != 0.0)?;
            let last = row.iter().rposition(|&c| c != 0.0)?;
            Some((first, last + 1))
        };
        let (first, end) = rows
            .filter_map(nonzero)
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
            .unwrap_or((0, 0));
        Some(Self { first, end })
    }
}

impl Resampler {
    pub fn new(
        in_rate: u32,
        out_rate: u32,
        channels: usize,
        quality: Quality,
    ) -> Result<Self, AudioError> {
        check_rate("in_rate", in_rate)?;
        check_rate("out_rate", out_rate)?;
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(AudioError::invalid(format!(
                "channels must be from 1 to {MAX_CHANNELS}, got {channels}"
            )));
        }
        let divisor = gcd(u64::from(in_rate), u64::from(out_rate));
        let up = u64::from(out_rate) / divisor;
        let down = u64::from(in_rate) / divisor;
        let filter = cached_filter(in_rate, out_rate, up, quality);
        let scratch_len = match filter.table {
            PhaseTable::Exact => 0,
            PhaseTable::Interpolated { .. } => 4 * filter.taps,
        };
        let mut resampler = Self {
            in_rate,
            out_rate,
            channels,
            quality,
            up,
            down,
            filter,
            kernel: Kernel::detect(),
            history: vec![Vec::new(); channels],
            history_start: 0,
            frames_in: 0,
            next_out: 0,
            next_quotient: 0,
            next_phase: 0,
            scratch_coefs: vec![0.0; scratch_len],
            scratch_in: Vec::new(),
            scratch_out: Vec::new(),
            lanes: None,
            lane_streams: Vec::new(),
            lane_sums: Vec::new(),
        };
        resampler.lanes = LaneTaps::plan(&resampler.filter, up, down, channels);
        resampler.reset();
        Ok(resampler)
    }

    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn quality(&self) -> Quality {
        self.quality
    }

    /// How far a stream lags behind its input, in output samples: output `k` is available once
    /// the input has reached `k + delay` output periods.
    pub fn delay(&self) -> f64 {
        self.filter.ahead as f64 * self.up as f64 / self.down as f64
    }

    /// Whether the filter is linear phase (every frequency delayed alike) rather than the
    /// minimum-phase filter used where linear phase would miss the preset's delay bar.
    pub fn linear_phase(&self) -> bool {
        self.filter.phase == Phase::Linear
    }

    /// The same lag in seconds.
    pub fn delay_seconds(&self) -> f64 {
        self.filter.ahead as f64 / f64::from(self.in_rate)
    }

    /// Taps per output sample (per channel): the cost of one output.
    pub fn taps(&self) -> usize {
        self.filter.taps
    }

    /// Which SIMD kernel runs the dot products ("avx512", "avx2" or "scalar").
    pub fn kernel_name(&self) -> &'static str {
        self.kernel.name()
    }

    /// Forgets all input: the next sample starts a new stream.
    pub fn reset(&mut self) {
        let lead = self.filter.behind - 1 + self.filter.lead_pad;
        for channel in &mut self.history {
            channel.clear();
            channel.resize(lead, 0.0);
        }
        self.history_start = -(lead as i64);
        self.frames_in = 0;
        self.next_out = 0;
        self.next_quotient = 0;
        self.next_phase = 0;
    }

    /// Frames (per channel) that `process` will return for `frames` more input frames.
    pub fn output_len_for(&self, frames: usize) -> usize {
        let total = self.frames_in + frames as u64;
        let ahead = self.filter.ahead as u64;
        let available = if total > ahead {
            ((total - ahead) * self.up).div_ceil(self.down)
        } else {
            0
        };
        available.saturating_sub(self.next_out) as usize
    }

    /// Frames (per channel) that `flush` will return now.
    pub fn flush_len(&self) -> usize {
        rounded_ratio(self.frames_in, self.up, self.down).saturating_sub(self.next_out) as usize
    }

    fn check_shape(&self, samples: usize) -> Result<usize, AudioError> {
        if samples.is_multiple_of(self.channels) {
            Ok(samples / self.channels)
        } else {
            Err(AudioError::invalid(format!(
                "{samples} samples do not make whole frames of {} channels",
                self.channels
            )))
        }
    }

    /// Makes room, fallibly, for `frames` more input frames and the output they complete: the
    /// output can be 24 times the input, so a large chunk must fail as an error, not an abort.
    /// Returns how many output samples that is.
    fn reserve_for<T>(&mut self, frames: usize, out: &mut Vec<T>) -> Result<usize, AudioError> {
        let outputs = self.output_len_for(frames).saturating_mul(self.channels);
        memory::reserve(out, outputs, "the resampled output")?;
        for history in &mut self.history {
            memory::reserve(history, frames, "the resampler's history")?;
        }
        Ok(outputs)
    }

    /// Resamples interleaved frames, appending every output that is complete to `out`.
    pub fn process_into(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        let frames = self.check_shape(input.len())?;
        self.reserve_for(frames, out)?;
        self.append(input, frames);
        let until = self.next_out + self.output_len_for(0) as u64;
        self.emit(until, out);
        self.discard_consumed();
        Ok(())
    }

    /// `process_into` for PCM16: scaled by 1/32768 in, rounded and saturated out.
    pub fn process_i16_into(
        &mut self,
        input: &[i16],
        out: &mut Vec<i16>,
    ) -> Result<(), AudioError> {
        let frames = self.check_shape(input.len())?;
        let mut staged = std::mem::take(&mut self.scratch_out);
        staged.clear();
        let reserved = self
            .reserve_for(frames, &mut staged)
            .and_then(|outputs| memory::reserve(out, outputs, "the resampled output"))
            .and_then(|()| memory::reserve(&mut self.scratch_in, input.len(), "the resampler's input"));
        if let Err(error) = reserved {
            self.scratch_out = staged;
            return Err(error);
        }
        self.append_i16(input, frames);
        let until = self.next_out + self.output_len_for(0) as u64;
        self.emit(until, &mut staged);
        self.discard_consumed();
        f32_to_i16_extend(&staged, out);
        self.scratch_out = staged;
        Ok(())
    }

    /// Emits the tail of the stream (as if the input continued with silence) so the total output
    /// is `round(frames_in * out_rate / in_rate)` frames, then resets for a new stream.
    pub fn flush_into(&mut self, out: &mut Vec<f32>) {
        let total = rounded_ratio(self.frames_in, self.up, self.down);
        if total > self.next_out {
            let last_quotient = u128::from(total - 1) * u128::from(self.down) / u128::from(self.up);
            let needed_end = last_quotient as i64 + self.filter.ahead as i64 + 1;
            let have_end = self.history_start + self.history[0].len() as i64;
            if needed_end > have_end {
                let zeros = (needed_end - have_end) as usize;
                for channel in &mut self.history {
                    channel.resize(channel.len() + zeros, 0.0);
                }
            }
            self.emit(total, out);
        }
        self.reset();
    }

    pub fn flush_i16_into(&mut self, out: &mut Vec<i16>) {
        let mut staged = std::mem::take(&mut self.scratch_out);
        staged.clear();
        self.flush_into(&mut staged);
        f32_to_i16_extend(&staged, out);
        self.scratch_out = staged;
    }

    fn append(&mut self, input: &[f32], frames: usize) {
        if self.channels == 1 {
            self.history[0].extend_from_slice(input);
        } else {
            for (channel, history) in self.history.iter_mut().enumerate() {
                history.extend(input.iter().skip(channel).step_by(self.channels));
            }
        }
        self.frames_in += frames as u64;
    }

    fn append_i16(&mut self, input: &[i16], frames: usize) {
        let mut staged = std::mem::take(&mut self.scratch_in);
        staged.clear();
        staged.extend(input.iter().map(|&x| f32::from(x) * (1.0 / 32768.0)));
        self.append(&staged, frames);
        self.scratch_in = staged;
    }

    /// Drops history that no future output reads.
    fn discard_consumed(&mut self) {
        let first_needed = self.window_start(self.next_quotient);
        let drop = (first_needed - self.history_start).max(0) as usize;
        if drop > 0 {
            for channel in &mut self.history {
                channel.drain(..drop.min(channel.len()));
            }
            self.history_start += drop as i64;
        }
    }

    /// `(k * down / up, k * down % up)`: where output `k` falls in the input.
    fn clock(&self, k: u64) -> (u64, u64) {
        if let Some(position) = k.checked_mul(self.down) {
            return (position / self.up, position % self.up);
        }
        let position = u128::from(k) * u128::from(self.down);
        let up = u128::from(self.up);
        ((position / up) as u64, (position % up) as u64)
    }

    fn window_start(&self, quotient: u64) -> i64 {
        quotient as i64 - (self.filter.behind + self.filter.lead_pad) as i64 + 1
    }

    /// Runs the leading outputs of `out` (`count` frames) phase by phase while every phase
    /// recurs at least twice; returns how many it did and leaves the clock after them.
    fn emit_phase_blocks(
        &mut self,
        out: &mut [f32],
        count: usize,
        filter: &PolyphaseFilter,
    ) -> usize {
        let channels = self.channels;
        let taps = filter.taps;
        let mut done = 0;
        // Outputs `k` and `k + up` share a phase (their windows are `down` inputs apart): when
        // every phase recurs in this call, outputs run phase by phase, up to SHARED at a time,
        // loading each coefficient once per group. Per output the arithmetic is unchanged.
        let up = self.up as usize;
        // Long runs go in blocks whose input span stays in cache (a phase-major sweep of a
        // whole 10 s signal would re-read it from memory once per phase).
        let block_len = (16 * up).max(2048);
        while matches!(filter.table, PhaseTable::Exact) && count - done >= 2 * up {
            let block = (count - done).min(block_len);
            let base = self.next_out + done as u64;
            let block_out = &mut out[done * channels..(done + block) * channels];
            let stride = self.down as usize;
            let mut j = 0;
            while j < up {
                let (quotient, phase) = self.clock(base + j as u64);
                let first = (self.window_start(quotient) - self.history_start) as usize;
                let per_phase = (block - j).div_ceil(up);
                // When the ratio upsamples, neighbouring phases often start at the same input
                // (and so share every window): a pair then loads each window once.
                let partner = (j + 1 < up)
                    .then(|| self.clock(base + j as u64 + 1))
                    .filter(|&(next_quotient, _)| next_quotient == quotient)
                    .filter(|_| (block - j - 1).div_ceil(up) == per_phase);
                let rows = [
                    filter.row(phase as usize).as_ptr(),
                    filter
                        .row(partner.map_or(phase, |(_, p)| p) as usize)
                        .as_ptr(),
                ];
                let phases_here = 1 + usize::from(partner.is_some());
                let last_output =
                    (j + phases_here - 1 + (per_phase - 1) * up) * channels + channels;
                assert!(
                    last_output <= block_out.len(),
                    "phase group overruns its output"
                );
                for (channel, history) in self.history.iter().enumerate() {
                    // One bounds check covers every window of the phase.
                    let span = &history[first..first + (per_phase - 1) * stride + taps];
                    let target = PhaseTarget {
                        out: block_out[j * channels + channel..].as_mut_ptr(),
                        step: up * channels,
                        second_row: channels,
                    };
                    // SAFETY: the span holds every window, the rows hold `taps` floats, and
                    // every write lands below `last_output` (checked above).
                    unsafe {
                        self.kernel.run_phase(
                            span.as_ptr(),
                            stride,
                            per_phase,
                            rows,
                            phases_here,
                            taps,
                            &target,
                        );
                    }
                }
                j += phases_here;
            }
            done += block;
            (self.next_quotient, self.next_phase) = self.clock(self.next_out + done as u64);
        }
        done
    }

    /// Computes the `count` outputs from `next_out` on (mono) with the output-parallel kernels,
    /// block by block; leaves the clock to the caller.
    fn emit_lanes(
        &mut self,
        out: &mut [f32],
        count: usize,
        filter: &PolyphaseFilter,
        lanes: LaneTaps,
    ) {
        let up = self.up as usize;
        let down = self.down as usize;
        let taps = lanes.end.saturating_sub(lanes.first);
        let mut done = 0;
        while done < count {
            let block = (count - done).min(LANE_BLOCK);
            let base = self.next_out + done as u64;
            let sums_len = block.div_ceil(up).div_ceil(LANE_PAD) * LANE_PAD;
            // Every sum is written by the kernel before it is read: no need to clear.
            if self.lane_sums.len() < sums_len * up {
                self.lane_sums.resize(sums_len * up, 0.0);
            }
            // Phase `j` of the block computes outputs j, j + up, ... Its input goes into `down`
            // streams, 64-byte aligned: stream `d` holds the inputs read by taps d, d + down,
            // ... of its first output, so tap `t` of output `m` reads stream `t % down` at
            // `t / down + m`, consecutive across lanes.
            let stream_len =
                (taps.div_ceil(down) + sums_len).div_ceil(LANE_PAD) * LANE_PAD + LANE_PAD;
            if self.lane_streams.len() < stream_len * down + LANE_PAD {
                self.lane_streams.resize(stream_len * down + LANE_PAD, 0.0);
            }
            let aligned = self.lane_streams.as_ptr().align_offset(64).min(LANE_PAD);
            for j in 0..up.min(block) {
                let (quotient, phase) = self.clock(base + j as u64);
                let start = (self.window_start(quotient) + lanes.first as i64 - self.history_start)
                    as usize;
                let history = &self.history[0];
                let span = &history[start..history.len().min(start + down * stream_len)];
                let streams = &mut self.lane_streams[aligned..aligned + stream_len * down];
                match down {
                    1 => {
                        streams[..span.len()].copy_from_slice(span);
                        streams[span.len()..].fill(0.0);
                    }
                    2 => split_phases::<2>(span, streams, stream_len),
                    _ => split_phases::<3>(span, streams, stream_len),
                }
                let padded = (block - j).div_ceil(up).div_ceil(LANE_PAD) * LANE_PAD;
                // Every lane of every vector, the padding lanes of the last one included, reads
                // inside its stream (the AVX-512 kernel one vector past the last tap).
                assert!(
                    taps.div_ceil(down) + padded + LANE_PAD <= stream_len,
                    "lane block overruns its input streams"
                );
                let row = &filter.row(phase as usize)[lanes.first..lanes.first + taps];
                let sums = &mut self.lane_sums[j * sums_len..j * sums_len + padded];
                // SAFETY: checked above; the streams start 64-byte aligned and hold
                // `down * stream_len` floats; `sums` holds `padded` floats.
                unsafe {
                    self.kernel.run_lanes(
                        down,
                        streams.as_ptr(),
                        stream_len,
                        padded,
                        row,
                        sums.as_mut_ptr(),
                    );
                }
            }
            let block_out = &mut out[done..done + block];
            match up {
                1 => block_out.copy_from_slice(&self.lane_sums[..block]),
                2 => interleave_phases::<2>(&self.lane_sums, sums_len, block_out),
                _ => interleave_phases::<3>(&self.lane_sums, sums_len, block_out),
            }
            done += block;
        }
    }

    /// Computes outputs `next_out..until` (all of whose windows are in the history).
    fn emit(&mut self, until: u64, out: &mut Vec<f32>) {
        if until <= self.next_out {
            return;
        }
        let count = (until - self.next_out) as usize;
        let channels = self.channels;
        let base = out.len();
        out.resize(base + count * channels, 0.0);
        let out = &mut out[base..];
        let filter = Arc::clone(&self.filter);
        if let Some(lanes) = self.lanes {
            self.emit_lanes(out, count, &filter, lanes);
            self.next_out = until;
            (self.next_quotient, self.next_phase) = self.clock(until);
            return;
        }
        let taps = filter.taps;
        let mut done = self.emit_phase_blocks(out, count, &filter);
        while done < count {
            let group = (count - done).min(4);
            let mut offsets = [0usize; 4];
            let mut phases = [0u64; 4];
            for slot in 0..group {
                offsets[slot] =
                    (self.window_start(self.next_quotient) - self.history_start) as usize;
                phases[slot] = self.next_phase;
                self.next_phase += self.down;
                self.next_quotient += self.next_phase / self.up;
                self.next_phase %= self.up;
            }
            let mut rows: [*const f32; 4] = [std::ptr::null(); 4];
            for slot in 0..group {
                rows[slot] = match filter.table {
                    PhaseTable::Exact => filter.row(phases[slot] as usize).as_ptr(),
                    PhaseTable::Interpolated { rows } => {
                        let position = phases[slot] * rows;
                        let index = (position / self.up) as usize;
                        let fraction = (position % self.up) as f32 / self.up as f32;
                        let scratch = &mut self.scratch_coefs[slot * taps..(slot + 1) * taps];
                        let (a, b) = (filter.row(index), filter.row(index + 1));
                        for ((c, &lo), &hi) in scratch.iter_mut().zip(a).zip(b) {
                            *c = lo + fraction * (hi - lo);
                        }
                        scratch.as_ptr()
                    }
                };
            }
            // Unused lanes repeat the first output; their results are dropped.
            for slot in group..4 {
                offsets[slot] = offsets[0];
                rows[slot] = rows[0];
            }
            for (channel, history) in self.history.iter().enumerate() {
                let windows = offsets.map(|offset| {
                    debug_assert!(offset + taps <= history.len());
                    history[offset..offset + taps].as_ptr()
                });
                // SAFETY: every window and row holds `taps` floats (checked above for windows:
                // `emit` is only called for outputs whose windows lie inside the history).
                let sums = unsafe { self.kernel.dot4(windows, rows, taps) };
                for (slot, &sum) in sums.iter().take(group).enumerate() {
                    out[(done + slot) * channels + channel] = sum;
                }
            }
            done += group;
        }
        self.next_out = until;
    }
}

/// Splits `span` into `D` phase streams of `stream_len` floats each: stream `d` gets
/// `span[d]`, `span[d + D]`, ..., then zeros.
fn split_phases<const D: usize>(span: &[f32], streams: &mut [f32], stream_len: usize) {
    let mut runs = streams.chunks_exact_mut(stream_len);
    let mut phases: [&mut [f32]; D] = std::array::from_fn(|_| runs.next().unwrap_or_default());
    let groups = span.chunks_exact(D);
    let tail = groups.remainder();
    let whole = span.len() / D;
    for (i, group) in groups.enumerate() {
        for (phase, &x) in phases.iter_mut().zip(group) {
            phase[i] = x;
        }
    }
    for (d, phase) in phases.iter_mut().enumerate() {
        let written = whole + usize::from(d < tail.len());
        if d < tail.len() {
            phase[whole] = tail[d];
        }
        phase[written..].fill(0.0);
    }
}

/// Interleaves `U` runs of sums (`stride` apart) into `out`: `out[m * U + j]` is sum `m` of run
/// `j`.
fn interleave_phases<const U: usize>(sums: &[f32], stride: usize, out: &mut [f32]) {
    let phases: [&[f32]; U] = std::array::from_fn(|j| &sums[j * stride..(j + 1) * stride]);
    let whole = out.len() / U;
    let mut groups = out.chunks_exact_mut(U);
    for (m, group) in (&mut groups).enumerate() {
        for (slot, phase) in group.iter_mut().zip(&phases) {
            *slot = phase[m];
        }
    }
    for (slot, phase) in groups.into_remainder().iter_mut().zip(&phases) {
        *slot = phase[whole];
    }
}

/// Appends `samples` scaled to PCM16, rounded to nearest (ties to even) and saturated.
pub fn f32_to_i16_extend(samples: &[f32], out: &mut Vec<i16>) {
    // Adding and removing 1.5 * 2^23 rounds to an integer in the f32 unit itself: no libm call
    // on the baseline target, and it vectorises.
    const MAGIC: f32 = 12_582_912.0;
    out.extend(samples.iter().map(|&x| {
        let scaled = (x * 32768.0).clamp(-32768.0, 32767.0);
        ((scaled + MAGIC) - MAGIC) as i16
    }));
}

/// One-shot, delay-compensated resampling of interleaved frames:
/// `round(frames * out_rate / in_rate)` frames out, aligned with the input.
pub fn resample(
    input: &[f32],
    in_rate: u32,
    out_rate: u32,
    channels: usize,
    quality: Quality,
) -> Result<Vec<f32>, AudioError> {
    let mut resampler = Resampler::new(in_rate, out_rate, channels, quality)?;
    let frames = resampler.check_shape(input.len())?;
    let total = usize::try_from(rounded_ratio(frames as u64, resampler.up, resampler.down))
        .ok()
        .and_then(|total| total.checked_mul(channels));
    let mut out = memory::with_capacity(total.unwrap_or(usize::MAX), "the resampled output")?;
    // Room for the whole signal plus the flush's silence: no regrowth copies of a long input.
    let headroom = 2 * resampler.filter.taps + resampler.down as usize;
    for history in &mut resampler.history {
        memory::reserve(history, frames.saturating_add(headroom), "the resampler's history")?;
    }
    resampler.process_into(input, &mut out)?;
    resampler.flush_into(&mut out);
    Ok(out)
}

/// `resample` for PCM16.
pub fn resample_i16(
    input: &[i16],
    in_rate: u32,
    out_rate: u32,
    channels: usize,
    quality: Quality,
) -> Result<Vec<i16>, AudioError> {
    let mut resampler = Resampler::new(in_rate, out_rate, channels, quality)?;
    let mut out = Vec::new();
    resampler.process_i16_into(input, &mut out)?;
    resampler.flush_i16_into(&mut out);
    Ok(out)
}

// ---- dot-product kernels ----
//
// Each kernel computes four independent dot products of `taps` (a multiple of 16) floats. Per
// output the operation order is fixed, whichever of the four slots it lands in, so grouping never
// changes a result. The wheel targets the baseline x86-64, so the AVX kernels are selected at run
// time; FMA is only used inside them (without the target feature, `mul_add` is a libm call).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The widest kernel `simd` allows (the CPU's, capped by `REALTALK_SIMD`), chosen when a
    /// resampler is made.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use simd::Feature::{Avx2, Avx512F, Fma};
            if simd::enabled(&[Avx512F, Avx2, Fma]) {
                return Self::Avx512;
            }
            if simd::enabled(&[Avx2, Fma]) {
                return Self::Avx2;
            }
        }
        Self::Scalar
    }

    fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => "avx512",
        }
    }

    /// # Safety
    /// Each pointer must be valid for `taps` reads; `taps` must be a multiple of 16.
    unsafe fn dot4(self, x: [*const f32; 4], c: [*const f32; 4], taps: usize) -> [f32; 4] {
        // SAFETY: forwarded contract; the SIMD variants are only chosen when detected.
        unsafe {
            match self {
                Self::Scalar => dot4_scalar(x, c, taps),
                #[cfg(target_arch = "x86_64")]
                Self::Avx2 => x86::dot4_avx2(x, c, taps),
                #[cfg(target_arch = "x86_64")]
                Self::Avx512 => x86::dot4_avx512(x, c, taps),
            }
        }
    }
}

/// Where a phase group writes: output `i` of row `r` goes to `out + i * step + r * second_row`.
struct PhaseTarget {
    out: *mut f32,
    step: usize,
    second_row: usize,
}

impl Kernel {
    /// Runs `count` outputs of one phase (or a pair of phases sharing windows): output `i`
    /// reads the window at `span + i * stride`.
    ///
    /// # Safety
    /// Every window, the first `phases` rows, and every target write must be in bounds.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run_phase(
        self,
        span: *const f32,
        stride: usize,
        count: usize,
        rows: [*const f32; 2],
        phases: usize,
        taps: usize,
        target: &PhaseTarget,
    ) {
        // SAFETY: forwarded contract; SIMD variants are only chosen when detected.
        let full = unsafe {
            match (self, phases) {
                #[cfg(target_arch = "x86_64")]
                (Self::Avx512, 1) => {
                    x86::run_full_groups_avx512::<1>(span, stride, count, [rows[0]], taps, target)
                }
                #[cfg(target_arch = "x86_64")]
                (Self::Avx512, _) => {
                    x86::run_full_groups_avx512::<2>(span, stride, count, rows, taps, target)
                }
                #[cfg(target_arch = "x86_64")]
                (Self::Avx2, 1) => {
                    x86::run_full_groups_avx2::<1>(span, stride, count, [rows[0]], taps, target)
                }
                #[cfg(target_arch = "x86_64")]
                (Self::Avx2, _) => {
                    x86::run_full_groups_avx2::<2>(span, stride, count, rows, taps, target)
                }
                _ => 0,
            }
        };
        // The remainder (and everything on the scalar kernel) goes through `dot_grid`, whose
        // per-output arithmetic is the same.
        let mut i = full;
        while i < count {
            let n = (count - i).min(SHARED);
            // SAFETY: windows i..i+n are inside the span (clamped duplicates for unused slots).
            let windows: [*const f32; SHARED] =
                std::array::from_fn(|slot| unsafe { span.add((i + slot.min(n - 1)) * stride) });
            // SAFETY: forwarded contract.
            let sums = unsafe { self.dot_grid(n, &windows, rows, phases, taps) };
            for (row, row_sums) in sums.iter().take(phases).enumerate() {
                for (slot, &sum) in row_sums.iter().take(n).enumerate() {
                    // SAFETY: the caller guarantees every target write is in bounds.
                    unsafe {
                        *target
                            .out
                            .add((i + slot) * target.step + row * target.second_row) = sum;
                    }
                }
            }
            i += n;
        }
    }
}

/// Dot products of the first `n` (1..=SHARED) windows with the first `phases` (1 or 2)
/// coefficient rows, as `[row][window]`; per output the same operations, in the same order, as
/// `dot4`.
impl Kernel {
    /// # Safety
    /// The first `n` window pointers and the first `phases` rows must be valid for `taps` reads;
    /// `taps` must be a multiple of 16.
    unsafe fn dot_grid(
        self,
        n: usize,
        x: &[*const f32; SHARED],
        c: [*const f32; 2],
        phases: usize,
        taps: usize,
    ) -> [[f32; SHARED]; 2] {
        let mut sums = [[0.0f32; SHARED]; 2];
        macro_rules! run {
            ($n:literal, $p:literal) => {{
                let windows: [*const f32; $n] = std::array::from_fn(|slot| x[slot]);
                let rows: [*const f32; $p] = std::array::from_fn(|row| c[row]);
                // SAFETY: forwarded contract; SIMD variants are only chosen when detected.
                let found: [[f32; $n]; $p] = unsafe {
                    match self {
                        Self::Scalar => dot_grid_scalar(windows, rows, taps),
                        #[cfg(target_arch = "x86_64")]
                        Self::Avx2 => x86::dot_grid_avx2(windows, rows, taps),
                        #[cfg(target_arch = "x86_64")]
                        Self::Avx512 => x86::dot_grid_avx512(windows, rows, taps),
                    }
                };
                for (row, row_sums) in found.iter().enumerate() {
                    sums[row][..$n].copy_from_slice(row_sums);
                }
            }};
        }
        match (n, phases) {
            (1, 1) => run!(1, 1),
            (2, 1) => run!(2, 1),
            (3, 1) => run!(3, 1),
            (4, 1) => run!(4, 1),
            (5, 1) => run!(5, 1),
            (6, 1) => run!(6, 1),
            (7, 1) => run!(7, 1),
            (_, 1) => run!(8, 1),
            (1, _) => run!(1, 2),
            (2, _) => run!(2, 2),
            (3, _) => run!(3, 2),
            (4, _) => run!(4, 2),
            (5, _) => run!(5, 2),
            (6, _) => run!(6, 2),
            (7, _) => run!(7, 2),
            _ => run!(8, 2),
        }
        sums
    }
}

impl Kernel {
    /// Output-parallel dot products of one phase: `sums[m]` (for `m < padded`, a multiple of
    /// 16) is the chain `((x_0 c_0 + 0) + x_1 c_1) + ...` over the taps in `row`, where tap `t`
    /// reads `streams[(t % down) * stream_len + t / down + m]`. The SIMD kernels fuse each step
    /// (identical bits on AVX2 and AVX-512); the scalar one rounds the product first.
    ///
    /// # Safety
    /// `down` is 1, 2 or 3; `streams` is 64-byte aligned, `stream_len` a multiple of 16, and
    /// every read above, and up to 16 floats past the last tap's, lies in the
    /// `down * stream_len` floats at `streams`; `sums` is valid for `padded` writes.
    unsafe fn run_lanes(
        self,
        down: usize,
        streams: *const f32,
        stream_len: usize,
        padded: usize,
        row: &[f32],
        sums: *mut f32,
    ) {
        let source = LaneSource {
            streams,
            stream_len,
        };
        macro_rules! by_down {
            ($kernel:ident) => {
                match down {
                    1 => $kernel::<1>(&source, padded, row, sums),
                    2 => $kernel::<2>(&source, padded, row, sums),
                    _ => $kernel::<3>(&source, padded, row, sums),
                }
            };
        }
        // SAFETY: forwarded contract; SIMD variants are only chosen when detected.
        unsafe {
            match self {
                Self::Scalar => by_down!(lanes_scalar),
                #[cfg(target_arch = "x86_64")]
                Self::Avx2 => {
                    use x86::lanes_avx2;
                    by_down!(lanes_avx2);
                }
                #[cfg(target_arch = "x86_64")]
                Self::Avx512 => {
                    use x86::lanes_avx512;
                    by_down!(lanes_avx512);
                }
            }
        }
    }
}

/// Where the output-parallel kernels read: see `Kernel::run_lanes`.
struct LaneSource {
    streams: *const f32,
    stream_len: usize,
}

impl LaneSource {
    /// Where tap `tap` of output `m` is read, for `down == D`.
    ///
    /// # Safety
    /// The result must stay inside the streams (the caller's contract).
    #[inline]
    unsafe fn tap<const D: usize>(&self, tap: usize, m: usize) -> *const f32 {
        // SAFETY: forwarded contract.
        unsafe { self.streams.add((tap % D) * self.stream_len + tap / D + m) }
    }
}

/// # Safety
/// See `Kernel::run_lanes`.
unsafe fn lanes_scalar<const D: usize>(
    source: &LaneSource,
    padded: usize,
    row: &[f32],
    sums: *mut f32,
) {
    for m in (0..padded).step_by(LANE_PAD) {
        let mut acc = [0.0f32; LANE_PAD];
        for (tap, &c) in row.iter().enumerate() {
            // SAFETY: lanes m..m + LANE_PAD of every tap lie inside the streams.
            let x = unsafe { std::slice::from_raw_parts(source.tap::<D>(tap, m), LANE_PAD) };
            for (a, &xi) in acc.iter_mut().zip(x) {
                *a += xi * c;
            }
        }
        // SAFETY: `sums` holds `padded` floats.
        unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), sums.add(m), LANE_PAD) };
    }
}

unsafe fn dot_grid_scalar<const N: usize, const P: usize>(
    x: [*const f32; N],
    c: [*const f32; P],
    taps: usize,
) -> [[f32; N]; P] {
    // SAFETY: forwarded contract.
    std::array::from_fn(|row| {
        std::array::from_fn(|slot| unsafe { dot1_scalar(x[slot], c[row], taps) })
    })
}

unsafe fn dot4_scalar(x: [*const f32; 4], c: [*const f32; 4], taps: usize) -> [f32; 4] {
    // SAFETY: forwarded contract.
    std::array::from_fn(|slot| unsafe { dot1_scalar(x[slot], c[slot], taps) })
}

/// # Safety
/// Both pointers must be valid for `taps` (a multiple of 16) reads.
unsafe fn dot1_scalar(x: *const f32, c: *const f32, taps: usize) -> f32 {
    // SAFETY: the caller guarantees `taps` readable floats behind each pointer.
    let (xs, cs) = unsafe {
        (
            std::slice::from_raw_parts(x, taps),
            std::slice::from_raw_parts(c, taps),
        )
    };
    // Sixteen separate lanes let the compiler vectorise without reassociating.
    let mut lanes = [0.0f32; BLOCK];
    for (xb, cb) in xs.chunks_exact(BLOCK).zip(cs.chunks_exact(BLOCK)) {
        for lane in 0..BLOCK {
            lanes[lane] += xb[lane] * cb[lane];
        }
    }
    let mut width = BLOCK / 2;
    while width > 0 {
        for lane in 0..width {
            lanes[lane] += lanes[lane + width];
        }
        width /= 2;
    }
    lanes[0]
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{LaneSource, PhaseTarget, SHARED};
    use std::arch::x86_64::{
        __m256, __m512, _mm256_add_ps, _mm256_castpd_ps, _mm256_castps256_ps128,
        _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_hadd_ps, _mm256_loadu_ps,
        _mm256_permute2f128_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
        _mm256_unpackhi_ps, _mm256_unpacklo_ps, _mm512_alignr_epi32, _mm512_castps512_ps256,
        _mm512_castps_pd, _mm512_castps_si512, _mm512_castsi512_ps, _mm512_extractf64x4_pd,
        _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_setzero_si512,
        _mm512_storeu_ps, _mm_add_ps, _mm_storeu_ps,
    };

    /// Vectors of outputs in flight per block: enough independent FMA chains to cover the
    /// latency of two FMA ports.
    const LANE_VECTORS: usize = 8;

    /// Generates an output-parallel kernel (see `Kernel::run_lanes`) for one vector width.
    macro_rules! lanes_kernel {
        ($name:ident, $block:ident, $features:literal, $width:literal, $vector:ty,
         $zero:ident, $splat:ident, $load:ident, $fma:ident, $store:ident) => {
            /// # Safety
            /// The CPU must have the target features; see `Kernel::run_lanes`.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name<const D: usize>(
                source: &LaneSource,
                padded: usize,
                row: &[f32],
                sums: *mut f32,
            ) {
                // The vectors go in nearly equal blocks of at most LANE_VECTORS: a lone
                // leftover vector would be one FMA chain, bound by latency.
                let mut left = padded / $width;
                let mut blocks = left.div_ceil(LANE_VECTORS);
                let mut m = 0;
                while left > 0 {
                    let take = left.div_ceil(blocks);
                    // SAFETY: forwarded contract (`padded` is a multiple of the width).
                    unsafe {
                        match take {
                            1 => $block::<D, 1>(source, m, row, sums),
                            2 => $block::<D, 2>(source, m, row, sums),
                            3 => $block::<D, 3>(source, m, row, sums),
                            4 => $block::<D, 4>(source, m, row, sums),
                            5 => $block::<D, 5>(source, m, row, sums),
                            6 => $block::<D, 6>(source, m, row, sums),
                            7 => $block::<D, 7>(source, m, row, sums),
                            _ => $block::<D, LANE_VECTORS>(source, m, row, sums),
                        }
                    }
                    m += take * $width;
                    left -= take;
                    blocks -= 1;
                }
            }

            /// Outputs `m..m + B * width`: taps go `D` at a time, one pointer per phase
            /// stream, each advancing one float per group.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn $block<const D: usize, const B: usize>(
                source: &LaneSource,
                m: usize,
                row: &[f32],
                sums: *mut f32,
            ) {
                let mut acc: [$vector; B] = [$zero(); B];
                // SAFETY (whole body): every read is a lane of a tap of an output below
                // `padded`, inside the streams by the caller's contract; the stores land in
                // `sums[..padded]`.
                let mut at: [*const f32; D] =
                    std::array::from_fn(|d| unsafe { source.tap::<D>(d, m) });
                let groups = row.len() / D;
                for group in 0..groups {
                    for d in 0..D {
                        let c = $splat(unsafe { *row.get_unchecked(group * D + d) });
                        for (b, sum) in acc.iter_mut().enumerate() {
                            *sum = $fma(unsafe { $load(at[d].add($width * b)) }, c, *sum);
                        }
                        at[d] = unsafe { at[d].add(1) };
                    }
                }
                for d in 0..row.len() - groups * D {
                    let c = $splat(row[groups * D + d]);
                    for (b, sum) in acc.iter_mut().enumerate() {
                        *sum = $fma(unsafe { $load(at[d].add($width * b)) }, c, *sum);
                    }
                }
                for (b, sum) in acc.iter().enumerate() {
                    unsafe { $store(sums.add(m + $width * b), *sum) };
                }
            }
        };
    }

    /// The AVX-512 output-parallel kernel (see `Kernel::run_lanes`). Sixteen taps of a stream
    /// read sixteen consecutive unaligned vectors; they are built from aligned loads with
    /// `valignd` instead, so no load straddles a cache line.
    ///
    /// # Safety
    /// AVX-512F, AVX2 and FMA must be available; see `Kernel::run_lanes`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn lanes_avx512<const D: usize>(
        source: &LaneSource,
        padded: usize,
        row: &[f32],
        sums: *mut f32,
    ) {
        // (B + 1) aligned vectors per stream stay live beside B sums: fewer vectors per block
        // when the input comes in three streams, so nothing spills.
        let most = if D == 3 { 6 } else { LANE_VECTORS };
        let mut left = padded / 16;
        let mut blocks = left.div_ceil(most);
        let mut m = 0;
        while left > 0 {
            let take = left.div_ceil(blocks);
            // SAFETY: forwarded contract (`padded` is a multiple of 16).
            unsafe {
                match take {
                    1 => aligned_block_avx512::<D, 1>(source, m, row, sums),
                    2 => aligned_block_avx512::<D, 2>(source, m, row, sums),
                    3 => aligned_block_avx512::<D, 3>(source, m, row, sums),
                    4 => aligned_block_avx512::<D, 4>(source, m, row, sums),
                    5 => aligned_block_avx512::<D, 5>(source, m, row, sums),
                    6 => aligned_block_avx512::<D, 6>(source, m, row, sums),
                    7 => aligned_block_avx512::<D, 7>(source, m, row, sums),
                    _ => aligned_block_avx512::<D, LANE_VECTORS>(source, m, row, sums),
                }
            }
            m += take * 16;
            left -= take;
            blocks -= 1;
        }
    }

    /// Outputs `m..m + 16 * B` of `lanes_avx512`, taps in order: whole runs of 16 groups of
    /// `D` taps from aligned vectors, then the rest from unaligned loads.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn aligned_block_avx512<const D: usize, const B: usize>(
        source: &LaneSource,
        m: usize,
        row: &[f32],
        sums: *mut f32,
    ) {
        let mut acc = [_mm512_setzero_ps(); B];
        let full_groups = row.len() / D;
        let runs = full_groups / 16;
        // SAFETY (whole body): every read is a lane of a tap of an output below `padded`, or
        // of the aligned vector after it, inside the streams by the caller's contract; the
        // stores land in `sums[..padded]`.
        let stream: [*const f32; D] =
            std::array::from_fn(|d| unsafe { source.streams.add(d * source.stream_len + m) });
        for run in 0..runs {
            let mut aligned = [[_mm512_setzero_si512(); LANE_VECTORS + 1]; D];
            for (d, vectors) in aligned.iter_mut().enumerate() {
                for (b, vector) in vectors.iter_mut().enumerate().take(B + 1) {
                    *vector = _mm512_castps_si512(unsafe {
                        _mm512_loadu_ps(stream[d].add(16 * (run + b)))
                    });
                }
            }
            let taps = &row[run * 16 * D..(run + 1) * 16 * D];
            macro_rules! shifted {
                ($($s:literal)*) => {$(
                    for (d, vectors) in aligned.iter().enumerate() {
                        let c = _mm512_set1_ps(taps[$s * D + d]);
                        for (b, sum) in acc.iter_mut().enumerate() {
                            let x = _mm512_alignr_epi32::<$s>(vectors[b + 1], vectors[b]);
                            *sum = _mm512_fmadd_ps(_mm512_castsi512_ps(x), c, *sum);
                        }
                    }
                )*};
            }
            shifted!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        }
        let mut at: [*const f32; D] = std::array::from_fn(|d| unsafe { stream[d].add(16 * runs) });
        for group in 16 * runs..full_groups {
            for d in 0..D {
                let c = _mm512_set1_ps(row[group * D + d]);
                for (b, sum) in acc.iter_mut().enumerate() {
                    *sum = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(at[d].add(16 * b)) }, c, *sum);
                }
                at[d] = unsafe { at[d].add(1) };
            }
        }
        for d in 0..row.len() - full_groups * D {
            let c = _mm512_set1_ps(row[full_groups * D + d]);
            for (b, sum) in acc.iter_mut().enumerate() {
                *sum = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(at[d].add(16 * b)) }, c, *sum);
            }
        }
        for (b, sum) in acc.iter().enumerate() {
            unsafe { _mm512_storeu_ps(sums.add(m + 16 * b), *sum) };
        }
    }

    lanes_kernel!(
        lanes_avx2,
        lane_block_avx2,
        "avx2,fma",
        8,
        __m256,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps
    );

    /// Sums each of four 8-lane vectors: `[sum(a), sum(b), sum(c), sum(d)]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce4(a: __m256, b: __m256, c: __m256, d: __m256) -> [f32; 4] {
        let ab = _mm256_hadd_ps(a, b);
        let cd = _mm256_hadd_ps(c, d);
        let abcd = _mm256_hadd_ps(ab, cd);
        let folded = _mm_add_ps(
            _mm256_castps256_ps128(abcd),
            _mm256_extractf128_ps::<1>(abcd),
        );
        let mut sums = [0.0f32; 4];
        // SAFETY: `sums` has room for four floats.
        unsafe { _mm_storeu_ps(sums.as_mut_ptr(), folded) };
        sums
    }

    /// # Safety
    /// AVX2 and FMA must be available; each pointer valid for `taps` (a multiple of 16) reads.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot4_avx2(
        x: [*const f32; 4],
        c: [*const f32; 4],
        taps: usize,
    ) -> [f32; 4] {
        let mut lo = [_mm256_setzero_ps(); 4];
        let mut hi = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < taps {
            for slot in 0..4 {
                // SAFETY: i + 16 <= taps, within the caller's guarantee.
                unsafe {
                    lo[slot] = _mm256_fmadd_ps(
                        _mm256_loadu_ps(x[slot].add(i)),
                        _mm256_loadu_ps(c[slot].add(i)),
                        lo[slot],
                    );
                    hi[slot] = _mm256_fmadd_ps(
                        _mm256_loadu_ps(x[slot].add(i + 8)),
                        _mm256_loadu_ps(c[slot].add(i + 8)),
                        hi[slot],
                    );
                }
            }
            i += 16;
        }
        reduce4(
            _mm256_add_ps(lo[0], hi[0]),
            _mm256_add_ps(lo[1], hi[1]),
            _mm256_add_ps(lo[2], hi[2]),
            _mm256_add_ps(lo[3], hi[3]),
        )
    }

    /// Adds the two halves of a 16-lane vector.
    #[inline]
    #[target_feature(enable = "avx512f,avx2")]
    fn fold(v: __m512) -> __m256 {
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        _mm256_add_ps(_mm512_castps512_ps256(v), high)
    }

    /// Reduces up to SHARED 8-lane vectors four at a time, exactly as `reduce4` does.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce_all<const N: usize>(v: [__m256; N]) -> [f32; N] {
        let mut sums = [0.0f32; N];
        let mut start = 0;
        while start < N {
            let pick = |i: usize| {
                if start + i < N {
                    v[start + i]
                } else {
                    _mm256_setzero_ps()
                }
            };
            let four = reduce4(pick(0), pick(1), pick(2), pick(3));
            let take = (N - start).min(4);
            sums[start..start + take].copy_from_slice(&four[..take]);
            start += 4;
        }
        sums
    }

    /// Writes the outputs of a `[row][slot]` grid into a phase target.
    #[inline]
    unsafe fn store_grid<const N: usize, const P: usize>(
        sums: &[[f32; N]; P],
        first: usize,
        target: &PhaseTarget,
    ) {
        for (row, row_sums) in sums.iter().enumerate() {
            for (slot, &sum) in row_sums.iter().enumerate() {
                // SAFETY: the caller guarantees every target write is in bounds.
                unsafe {
                    *target
                        .out
                        .add((first + slot) * target.step + row * target.second_row) = sum;
                }
            }
        }
    }

    /// Runs every full group of SHARED outputs of a phase; returns how many outputs it did.
    ///
    /// # Safety
    /// AVX-512F, AVX2 and FMA must be available; see `Kernel::run_phase`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn run_full_groups_avx512<const P: usize>(
        span: *const f32,
        stride: usize,
        count: usize,
        rows: [*const f32; P],
        taps: usize,
        target: &PhaseTarget,
    ) -> usize {
        // Mono 2:1 (one row, consecutive outputs) and 1:2 (two rows interleaved) targets take
        // whole vectors: the sums stay in registers instead of going out one float at a time.
        let packed =
            (P == 1 && target.step == 1) || (P == 2 && target.step == 2 && target.second_row == 1);
        let mut i = 0;
        while i + SHARED <= count {
            // SAFETY: windows i..i+SHARED are inside the span; the caller covers the writes.
            unsafe {
                let windows: [*const f32; SHARED] =
                    std::array::from_fn(|slot| span.add((i + slot) * stride));
                if packed {
                    let sums = dot8_rows_avx512::<P>(windows, rows, taps);
                    let out = target.out.add(i * target.step);
                    if P == 1 {
                        _mm256_storeu_ps(out, sums[0]);
                    } else {
                        let low = _mm256_unpacklo_ps(sums[0], sums[P - 1]);
                        let high = _mm256_unpackhi_ps(sums[0], sums[P - 1]);
                        _mm256_storeu_ps(out, _mm256_permute2f128_ps::<0x20>(low, high));
                        _mm256_storeu_ps(out.add(8), _mm256_permute2f128_ps::<0x31>(low, high));
                    }
                } else {
                    let sums = dot_grid_avx512::<SHARED, P>(windows, rows, taps);
                    store_grid(&sums, i, target);
                }
            }
            i += SHARED;
        }
        i
    }

    /// `dot_grid_avx512` for eight windows, each row's eight sums returned as one vector. The
    /// reduction adds the same pairs in the same order as `reduce4` (so every output is bit for
    /// bit what the other paths give), eight outputs at a time.
    ///
    /// # Safety
    /// AVX-512F, AVX2 and FMA must be available; each pointer valid for `taps` (a multiple of
    /// 16) reads.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn dot8_rows_avx512<const P: usize>(
        x: [*const f32; SHARED],
        c: [*const f32; P],
        taps: usize,
    ) -> [__m256; P] {
        let mut acc = [[_mm512_setzero_ps(); SHARED]; P];
        let mut i = 0;
        while i < taps {
            // SAFETY: i + 16 <= taps, within the caller's guarantee.
            unsafe {
                let coefs: [__m512; P] = std::array::from_fn(|row| _mm512_loadu_ps(c[row].add(i)));
                for slot in 0..SHARED {
                    let window = _mm512_loadu_ps(x[slot].add(i));
                    for row in 0..P {
                        acc[row][slot] = _mm512_fmadd_ps(window, coefs[row], acc[row][slot]);
                    }
                }
            }
            i += 16;
        }
        std::array::from_fn(|row| {
            let f: [__m256; SHARED] = std::array::from_fn(|slot| fold(acc[row][slot]));
            let abcd = _mm256_hadd_ps(_mm256_hadd_ps(f[0], f[1]), _mm256_hadd_ps(f[2], f[3]));
            let efgh = _mm256_hadd_ps(_mm256_hadd_ps(f[4], f[5]), _mm256_hadd_ps(f[6], f[7]));
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(abcd, efgh),
                _mm256_permute2f128_ps::<0x31>(abcd, efgh),
            )
        })
    }

    /// `run_full_groups_avx512` on AVX2.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; see `Kernel::run_phase`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_full_groups_avx2<const P: usize>(
        span: *const f32,
        stride: usize,
        count: usize,
        rows: [*const f32; P],
        taps: usize,
        target: &PhaseTarget,
    ) -> usize {
        let mut i = 0;
        while i + SHARED <= count {
            // SAFETY: windows i..i+SHARED are inside the span; the caller covers the writes.
            unsafe {
                let windows: [*const f32; SHARED] =
                    std::array::from_fn(|slot| span.add((i + slot) * stride));
                let sums = dot_grid_avx2::<SHARED, P>(windows, rows, taps);
                store_grid(&sums, i, target);
            }
            i += SHARED;
        }
        i
    }

    /// `dot4_avx2` for N windows times P coefficient rows (each loaded once per block).
    ///
    /// # Safety
    /// AVX2 and FMA must be available; each pointer valid for `taps` (a multiple of 16) reads.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_grid_avx2<const N: usize, const P: usize>(
        x: [*const f32; N],
        c: [*const f32; P],
        taps: usize,
    ) -> [[f32; N]; P] {
        let mut lo = [[_mm256_setzero_ps(); N]; P];
        let mut hi = [[_mm256_setzero_ps(); N]; P];
        let mut i = 0;
        while i < taps {
            // SAFETY: i + 16 <= taps, within the caller's guarantee.
            unsafe {
                let c_lo: [__m256; P] = std::array::from_fn(|row| _mm256_loadu_ps(c[row].add(i)));
                let c_hi: [__m256; P] =
                    std::array::from_fn(|row| _mm256_loadu_ps(c[row].add(i + 8)));
                for slot in 0..N {
                    let (x_lo, x_hi) = (
                        _mm256_loadu_ps(x[slot].add(i)),
                        _mm256_loadu_ps(x[slot].add(i + 8)),
                    );
                    for row in 0..P {
                        lo[row][slot] = _mm256_fmadd_ps(x_lo, c_lo[row], lo[row][slot]);
                        hi[row][slot] = _mm256_fmadd_ps(x_hi, c_hi[row], hi[row][slot]);
                    }
                }
            }
            i += 16;
        }
        let mut sums = [[0.0f32; N]; P];
        for row in 0..P {
            let mut folded = [_mm256_setzero_ps(); N];
            for slot in 0..N {
                folded[slot] = _mm256_add_ps(lo[row][slot], hi[row][slot]);
            }
            sums[row] = reduce_all(folded);
        }
        sums
    }

    /// `dot4_avx512` for N windows times P coefficient rows (each loaded once per block).
    ///
    /// # Safety
    /// AVX-512F, AVX2 and FMA must be available; each pointer valid for `taps` (a multiple of
    /// 16) reads.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn dot_grid_avx512<const N: usize, const P: usize>(
        x: [*const f32; N],
        c: [*const f32; P],
        taps: usize,
    ) -> [[f32; N]; P] {
        let mut acc = [[_mm512_setzero_ps(); N]; P];
        let mut i = 0;
        while i < taps {
            // SAFETY: i + 16 <= taps, within the caller's guarantee.
            unsafe {
                let coefs: [__m512; P] = std::array::from_fn(|row| _mm512_loadu_ps(c[row].add(i)));
                for slot in 0..N {
                    let window = _mm512_loadu_ps(x[slot].add(i));
                    for row in 0..P {
                        acc[row][slot] = _mm512_fmadd_ps(window, coefs[row], acc[row][slot]);
                    }
                }
            }
            i += 16;
        }
        let mut sums = [[0.0f32; N]; P];
        for row in 0..P {
            let mut folded = [_mm256_setzero_ps(); N];
            for slot in 0..N {
                folded[slot] = fold(acc[row][slot]);
            }
            sums[row] = reduce_all(folded);
        }
        sums
    }

    /// # Safety
    /// AVX-512F, AVX2 and FMA must be available; each pointer valid for `taps` (a multiple of
    /// 16) reads.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn dot4_avx512(
        x: [*const f32; 4],
        c: [*const f32; 4],
        taps: usize,
    ) -> [f32; 4] {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i < taps {
            for slot in 0..4 {
                // SAFETY: i + 16 <= taps, within the caller's guarantee.
                unsafe {
                    acc[slot] = _mm512_fmadd_ps(
                        _mm512_loadu_ps(x[slot].add(i)),
                        _mm512_loadu_ps(c[slot].add(i)),
                        acc[slot],
                    );
                }
            }
            i += 16;
        }
        reduce4(fold(acc[0]), fold(acc[1]), fold(acc[2]), fold(acc[3]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    fn bits(samples: &[f32]) -> Vec<u32> {
        samples.iter().map(|x| x.to_bits()).collect()
    }

    /// Streams `input` in chunks cycling through `sizes` (frames), then flushes.
    fn streamed(resampler: &mut Resampler, input: &[f32], sizes: &[usize]) -> Vec<f32> {
        let channels = resampler.channels();
        let mut out = Vec::new();
        let mut start = 0;
        for &size in sizes.iter().cycle() {
            if start >= input.len() {
                break;
            }
            let end = (start + size * channels).min(input.len());
            let expected = resampler.output_len_for((end - start) / channels);
            let before = out.len();
            resampler
                .process_into(&input[start..end], &mut out)
                .unwrap();
            assert_eq!(out.len() - before, expected * channels, "output_len_for");
            start = end;
        }
        let expected = resampler.flush_len();
        let before = out.len();
        resampler.flush_into(&mut out);
        assert_eq!(out.len() - before, expected * channels, "flush_len");
        out
    }

    #[test]
    fn rejects_bad_rates_channels_quality_and_shapes() {
        for (in_rate, out_rate) in [
            (7_999, 24_000),
            (24_000, 192_001),
            (0, 24_000),
            (24_000, u32::MAX),
        ] {
            assert!(Resampler::new(in_rate, out_rate, 1, Quality::High).is_err());
        }
        assert!(Resampler::new(48_000, 24_000, 0, Quality::High).is_err());
        assert!(Resampler::new(48_000, 24_000, MAX_CHANNELS + 1, Quality::High).is_err());
        assert!(Quality::parse("medium").is_err());
        assert_eq!(Quality::parse("max"), Ok(Quality::Max));
        let mut stereo = Resampler::new(48_000, 24_000, 2, Quality::High).unwrap();
        let mut out = Vec::new();
        assert!(stereo.process_into(&[0.0; 3], &mut out).is_err());
        assert!(stereo.process_i16_into(&[0; 5], &mut Vec::new()).is_err());
        assert!(out.is_empty());
        assert!(resample(&[0.0; 3], 48_000, 24_000, 2, Quality::Low).is_err());
    }

    #[test]
    fn streaming_equals_one_shot_bit_for_bit_for_any_chunking() {
        let chunkings: [&[usize]; 5] = [
            &[1],
            &[0, 1, 0, 2],
            &[7, 0, 160, 3],
            &[441, 1, 882],
            &[100_000],
        ];
        for (in_rate, out_rate, channels) in [
            (48_000, 24_000, 1),
            (44_100, 24_000, 1),
            (16_000, 24_000, 2),
            (24_000, 48_000, 1),
            (24_000, 8_000, 1),
            (22_050, 48_000, 3),
            (44_100, 44_101, 1),
            (16_000, 48_000, 1),
            (48_000, 16_000, 1),
            (24_000, 16_000, 1),
            (16_000, 24_000, 1),
            (24_000, 24_000, 1),
        ] {
            for quality in [Quality::Low, Quality::High] {
                let input = noise(channels * in_rate as usize / 40, in_rate);
                let whole = resample(&input, in_rate, out_rate, channels, quality).unwrap();
                assert_eq!(
                    whole.len(),
                    channels
                        * rounded_ratio(
                            (input.len() / channels) as u64,
                            u64::from(out_rate),
                            u64::from(in_rate)
                        ) as usize
                );
                let mut resampler = Resampler::new(in_rate, out_rate, channels, quality).unwrap();
                for sizes in chunkings {
                    // flush rewinds, so one resampler serves every chunking in turn.
                    let chunked = streamed(&mut resampler, &input, sizes);
                    assert_eq!(
                        bits(&chunked),
                        bits(&whole),
                        "{in_rate}->{out_rate} {quality:?} {sizes:?}"
                    );
                }
            }
        }
    }

    /// Resamplers made at every level this CPU has (`simd`) against the portable kernel. The
    /// vector kernels fuse multiply-adds, so they promise closeness, not the same bits: within
    /// 1e-6 on floats and one step on PCM16, for the dot-product and the lane paths, mono and
    /// stereo.
    #[test]
    fn every_kernel_gives_nearly_the_same_output() {
        let input = noise(4_800, 9);
        let stereo: Vec<f32> = input.iter().flat_map(|&x| [x, -0.5 * x]).collect();
        let pcm: Vec<i16> = input.iter().map(|&x| (x * 30_000.0) as i16).collect();
        for (in_rate, out_rate) in [(44_100, 24_000), (48_000, 24_000), (8_000, 24_000), (24_000, 16_000)] {
            for quality in [Quality::Low, Quality::High] {
                let run = || {
                    let kernel = Kernel::detect();
                    let mono = resample(&input, in_rate, out_rate, 1, quality).unwrap();
                    let two = resample(&stereo, in_rate, out_rate, 2, quality).unwrap();
                    let ints = resample_i16(&pcm, in_rate, out_rate, 1, quality).unwrap();
                    (kernel, mono, two, ints)
                };
                let (scalar_kernel, mono, two, ints) = simd::with_cap(simd::Level::Scalar, run);
                assert_eq!(scalar_kernel, Kernel::Scalar);
                for level in simd::levels() {
                    let (kernel, got_mono, got_two, got_ints) = simd::with_cap(level, run);
                    let what = format!("{in_rate}->{out_rate} {quality:?} at {} ({kernel:?})", level.name());
                    for (want, got) in [(&mono, &got_mono), (&two, &got_two)] {
                        assert_eq!(want.len(), got.len(), "{what}");
                        for (a, b) in want.iter().zip(got) {
                            assert!((a - b).abs() < 1e-6, "{what}: {a} vs {b}");
                        }
                    }
                    assert_eq!(ints.len(), got_ints.len(), "{what}");
                    for (a, b) in ints.iter().zip(&got_ints) {
                        assert!((i32::from(*a) - i32::from(*b)).abs() <= 1, "{what}: {a} vs {b}");
                    }
                }
            }
        }
    }

    /// The kernels `simd` lets this machine run, one per level, scalar first.
    fn available_kernels() -> Vec<Kernel> {
        let mut kernels: Vec<Kernel> = simd::levels().map(|level| simd::with_cap(level, Kernel::detect)).collect();
        kernels.dedup();
        kernels
    }

    const LANE_PAIRS: [(u32, u32); 8] = [
        (48_000, 24_000),
        (24_000, 48_000),
        (24_000, 8_000),
        (8_000, 24_000),
        (16_000, 48_000),
        (48_000, 16_000),
        (24_000, 16_000),
        (16_000, 24_000),
    ];

    #[test]
    fn voice_ratios_run_output_parallel_and_agree_with_the_dot_product_path() {
        for (in_rate, out_rate) in [(44_100, 24_000), (48_000, 44_100)] {
            assert!(Resampler::new(in_rate, out_rate, 1, Quality::High)
                .unwrap()
                .lanes
                .is_none());
        }
        assert!(Resampler::new(48_000, 24_000, 2, Quality::High)
            .unwrap()
            .lanes
            .is_none());
        let input = noise(4_000, 11);
        for (in_rate, out_rate) in LANE_PAIRS {
            for quality in [Quality::Low, Quality::High, Quality::Max] {
                let mut lanes = Resampler::new(in_rate, out_rate, 1, quality).unwrap();
                assert!(lanes.lanes.is_some(), "{in_rate}->{out_rate}");
                let mut reference = Resampler::new(in_rate, out_rate, 1, quality).unwrap();
                // The reduction kernels (one dot product per output) are the oracle here.
                reference.lanes = None;
                let expected = streamed(&mut reference, &input, &[4_000]);
                let got = streamed(&mut lanes, &input, &[4_000]);
                assert_eq!(got.len(), expected.len());
                let worst = got
                    .iter()
                    .zip(&expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst < 1e-6, "{in_rate}->{out_rate} {quality:?}: {worst}");
            }
        }
    }

    #[test]
    fn every_lane_kernel_is_chunking_invariant_and_the_fused_ones_agree_bit_for_bit() {
        let input = noise(3_000, 13);
        for (in_rate, out_rate) in LANE_PAIRS {
            let mut fused: Option<Vec<u32>> = None;
            for kernel in available_kernels() {
                let mut resampler = Resampler::new(in_rate, out_rate, 1, Quality::High).unwrap();
                resampler.kernel = kernel;
                let whole = bits(&streamed(&mut resampler, &input, &[3_000]));
                for sizes in [&[1usize][..], &[0, 17, 1, 160], &[479, 2]] {
                    let chunked = bits(&streamed(&mut resampler, &input, sizes));
                    assert!(
                        chunked == whole,
                        "{kernel:?} {in_rate}->{out_rate} {sizes:?}"
                    );
                }
                if kernel != Kernel::Scalar {
                    // AVX2 and AVX-512 run the same fused chain per output, 8 or 16 lanes wide.
                    assert!(fused.get_or_insert_with(|| whole.clone()) == &whole);
                }
            }
        }
    }

    #[test]
    fn fft_matches_a_direct_dft() {
        let size = 64;
        let (x_re, x_im) = (noise(size, 11), noise(size, 12));
        let mut re: Vec<f64> = x_re.iter().map(|&v| f64::from(v)).collect();
        let mut im: Vec<f64> = x_im.iter().map(|&v| f64::from(v)).collect();
        let fft = Fft::new(size);
        fft.run(&mut re, &mut im, false);
        for k in 0..size {
            let (mut sum_re, mut sum_im) = (0.0, 0.0);
            for n in 0..size {
                let angle = -2.0 * std::f64::consts::PI * (k * n) as f64 / size as f64;
                let (x, y) = (f64::from(x_re[n]), f64::from(x_im[n]));
                sum_re += x * angle.cos() - y * angle.sin();
                sum_im += x * angle.sin() + y * angle.cos();
            }
            assert!((re[k] - sum_re).abs() < 1e-12 && (im[k] - sum_im).abs() < 1e-12);
        }
        fft.run(&mut re, &mut im, true);
        for n in 0..size {
            assert!((re[n] / size as f64 - f64::from(x_re[n])).abs() < 1e-15);
            assert!((im[n] / size as f64 - f64::from(x_im[n])).abs() < 1e-15);
        }
    }

    /// The filter as one impulse response at `up` times the input rate, from its rows: the
    /// coefficient for `before + row / up` input samples before the output instant.
    fn impulse_response(resampler: &Resampler) -> Vec<f64> {
        let filter = &resampler.filter;
        let up = resampler.up as usize;
        let used = filter.ahead + filter.behind;
        let mut response = vec![0.0; used * up];
        for row in 0..up {
            for (t, &c) in filter.row(row)[filter.lead_pad..].iter().enumerate() {
                // Position t is (behind - 1 - t) + row / up before the output instant, that is
                // (used - 1 - t) * up + row taps after the earliest input the window reads.
                response[(used - 1 - t) * up + row] = f64::from(c);
            }
        }
        response
    }

    /// |H(f)| / |H(0)| in dB at `frequency` Hz, by direct summation.
    fn gain_db(response: &[f64], rate: f64, frequency: f64) -> f64 {
        let at = |f: f64| {
            let angle = -2.0 * std::f64::consts::PI * f / rate;
            let (step_re, step_im) = (angle.cos(), angle.sin());
            let (mut re, mut im) = (0.0, 0.0);
            let (mut z_re, mut z_im) = (1.0, 0.0);
            for &h in response {
                re += h * z_re;
                im += h * z_im;
                (z_re, z_im) = (
                    z_re * step_re - z_im * step_im,
                    z_re * step_im + z_im * step_re,
                );
            }
            f64::hypot(re, im)
        };
        20.0 * (at(frequency) / at(0.0)).log10()
    }

    #[test]
    fn minimum_phase_only_where_linear_phase_misses_the_delay_bar() {
        for (in_rate, out_rate, quality, minimum) in [
            (8_000, 24_000, Quality::High, true),
            (24_000, 8_000, Quality::High, true),
            (8_000, 16_000, Quality::Low, true),
            (48_000, 8_000, Quality::Low, true),
            (16_000, 24_000, Quality::High, false),
            (24_000, 16_000, Quality::Low, false),
            (8_000, 24_000, Quality::Max, false),
            (44_100, 24_000, Quality::High, false),
        ] {
            let resampler = Resampler::new(in_rate, out_rate, 1, quality).unwrap();
            let bar = quality
                .delay_bar_ms()
                .map_or(f64::INFINITY, |ms| ms as f64 / 1000.0);
            assert_eq!(
                resampler.linear_phase(),
                !minimum,
                "{in_rate}->{out_rate} {quality:?}"
            );
            if quality != Quality::Max {
                assert!(resampler.delay_seconds() <= bar, "{in_rate}->{out_rate}");
            }
        }
    }

    #[test]
    fn minimum_phase_filters_keep_the_magnitude_promises() {
        for (in_rate, out_rate, quality) in [
            (8_000u32, 24_000u32, Quality::High),
            (24_000, 8_000, Quality::High),
            (8_000, 16_000, Quality::Low),
            // 441 phases: designed on a coarser grid and interpolated.
            (8_000, 44_100, Quality::High),
            (44_100, 8_000, Quality::High),
            (11_025, 24_000, Quality::Low),
        ] {
            let resampler = Resampler::new(in_rate, out_rate, 1, quality).unwrap();
            assert!(!resampler.linear_phase());
            let response = impulse_response(&resampler);
            let rate = f64::from(in_rate) * resampler.up as f64;
            let lower_nyquist = f64::from(in_rate.min(out_rate)) / 2.0;
            let (floor, pass_band_end) = match quality {
                Quality::Low => (-80.0, 0.5 * lower_nyquist),
                _ => (-100.0, 0.85 * lower_nyquist),
            };
            for i in 0..=200 {
                let frequency = pass_band_end * f64::from(i) / 200.0;
                let gain = gain_db(&response, rate, frequency);
                // "low" promises no flatness; its pass band still has to pass.
                let limit = if quality == Quality::Low { 0.1 } else { 0.01 };
                assert!(
                    gain.abs() <= limit,
                    "{in_rate}->{out_rate} {frequency} Hz: {gain}"
                );
            }
            // Densely from the stop-band edge (where the response is highest) to 3 x, then
            // coarsely up to the Nyquist frequency of the prototype.
            let near = (0..800).map(|i| lower_nyquist * (1.0 + f64::from(i) / 400.0));
            let far = (0..=1_000).map(|i| {
                3.0 * lower_nyquist + (rate / 2.0 - 3.0 * lower_nyquist) * f64::from(i) / 1_000.0
            });
            for frequency in near.chain(far) {
                let gain = gain_db(&response, rate, frequency);
                assert!(
                    gain <= floor,
                    "{in_rate}->{out_rate} {frequency} Hz: {gain}"
                );
            }
            // Minimum phase puts the energy up front: half of it arrives within twice the lag,
            // where a linear-phase filter of this length has it only at its middle.
            let total: f64 = response.iter().map(|h| h * h).sum();
            let used = resampler.filter.ahead + resampler.filter.behind;
            let early: f64 = response[..2 * resampler.filter.ahead * resampler.up as usize]
                .iter()
                .map(|h| h * h)
                .sum();
            assert!(
                early / total > 0.5,
                "{in_rate}->{out_rate}: {}",
                early / total
            );
            assert!(2 * resampler.filter.ahead < used / 2);
        }
    }

    #[test]
    fn totals_round_half_to_even_like_python() {
        assert_eq!(rounded_ratio(1, 1, 2), 0); // 0.5 -> 0
        assert_eq!(rounded_ratio(3, 1, 2), 2); // 1.5 -> 2
        assert_eq!(rounded_ratio(5, 1, 2), 2); // 2.5 -> 2
        assert_eq!(rounded_ratio(147, 80, 147), 80);
        // An hour of 44.1 kHz at 24 kHz; the ratio is exact, so the count is too.
        assert_eq!(rounded_ratio(44_100 * 3_600, 80, 147), 24_000 * 3_600);
        for frames in [0usize, 1, 2, 3, 50, 441, 1_000] {
            let out = resample(&noise(frames, 3), 44_100, 24_000, 1, Quality::Low).unwrap();
            assert_eq!(
                out.len(),
                (frames as f64 * 24_000.0 / 44_100.0).round_ties_even() as usize
            );
        }
    }

    #[test]
    fn phase_accounting_stays_exact_after_an_hour_of_chunks() {
        // Drive the integer clock directly (the dot products are tested above): an hour of
        // 20 ms chunks, comparing the emitted count with the closed form after every chunk.
        let mut resampler = Resampler::new(44_100, 24_000, 1, Quality::Low).unwrap();
        let chunk = 882u64;
        let ahead = resampler.filter.ahead as u64;
        let mut emitted = 0u64;
        for index in 1..=3_600 * 50u64 {
            let count = resampler.output_len_for(chunk as usize) as u64;
            resampler.frames_in += chunk;
            let until = resampler.next_out + count;
            // Advance exactly as `emit` does, one output at a time.
            while resampler.next_out < until {
                resampler.next_phase += resampler.down;
                resampler.next_quotient += resampler.next_phase / resampler.up;
                resampler.next_phase %= resampler.up;
                resampler.next_out += 1;
            }
            emitted += count;
            let frames = index * chunk;
            assert_eq!(
                resampler.next_out * 147,
                resampler.next_quotient * 80 + resampler.next_phase
            );
            assert_eq!(emitted, ((frames - ahead) * 80).div_ceil(147));
        }
        assert_eq!(resampler.flush_len() as u64 + emitted, 3_600 * 24_000);
    }

    #[test]
    fn passes_a_tone_in_phase_with_the_ideal_output() {
        for (in_rate, out_rate) in [
            (44_100u32, 24_000u32),
            (16_000, 24_000),
            (44_100, 44_101),
            (191_999, 192_000),
        ] {
            let frequency = 997.0;
            let tone = |rate: u32, n: usize| -> Vec<f32> {
                (0..n)
                    .map(|i| {
                        (0.5 * (2.0 * std::f64::consts::PI * frequency * i as f64
                            / f64::from(rate))
                        .sin()) as f32
                    })
                    .collect()
            };
            let input = tone(in_rate, in_rate as usize / 10);
            let out = resample(&input, in_rate, out_rate, 1, Quality::High).unwrap();
            let ideal = tone(out_rate, out.len());
            let margin = out.len() / 5;
            let worst = out[margin..out.len() - margin]
                .iter()
                .zip(&ideal[margin..])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{in_rate}->{out_rate}: {worst}");
        }
    }

    #[test]
    fn large_ratios_use_an_interpolated_table_of_bounded_size() {
        let resampler = Resampler::new(191_999, 192_000, 1, Quality::Max).unwrap();
        assert!(matches!(
            resampler.filter.table,
            PhaseTable::Interpolated { .. }
        ));
        assert!(resampler.filter.coefs.len() <= MAX_TABLE_LEN + BLOCK);
        let common = Resampler::new(44_100, 24_000, 1, Quality::Max).unwrap();
        assert!(matches!(common.filter.table, PhaseTable::Exact));
    }

    #[test]
    fn pcm16_saturates_instead_of_wrapping() {
        // A full-scale square wave overshoots (Gibbs) once band-limited.
        let square: Vec<i16> = (0..4_800)
            .map(|i| {
                if (i / 40) % 2 == 0 {
                    i16::MAX
                } else {
                    i16::MIN
                }
            })
            .collect();
        let as_f32: Vec<f32> = square.iter().map(|&x| f32::from(x) / 32768.0).collect();
        let floats = resample(&as_f32, 48_000, 44_100, 1, Quality::High).unwrap();
        let ints = resample_i16(&square, 48_000, 44_100, 1, Quality::High).unwrap();
        assert!(floats.iter().any(|&x| x * 32768.0 > 32767.5));
        assert!(floats.iter().any(|&x| x * 32768.0 < -32768.5));
        for (&f, &i) in floats.iter().zip(&ints) {
            let expected = (f64::from(f) * 32768.0)
                .round_ties_even()
                .clamp(-32768.0, 32767.0);
            assert_eq!(i64::from(i), expected as i64);
        }
    }

    #[test]
    fn reset_and_flush_start_a_new_stream() {
        let input = noise(2_000, 5);
        let mut resampler = Resampler::new(48_000, 16_000, 1, Quality::Max).unwrap();
        let first = streamed(&mut resampler, &input, &[300]);
        let mut out = Vec::new();
        resampler.process_into(&noise(999, 6), &mut out).unwrap();
        resampler.reset();
        assert_eq!(
            bits(&streamed(&mut resampler, &input, &[300])),
            bits(&first)
        );
        assert!((resampler.delay() - resampler.delay_seconds() * 16_000.0).abs() < 1e-9);
    }
}
