//! Filter design: Kaiser-windowed sinc prototypes, their minimum-phase counterparts (through
//! the cepstrum and a radix-2 FFT), the polyphase tables, and the per-rate-pair cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::{Quality, BLOCK};

/// Largest coefficient table (in f32s) stored with one row per exact phase. Ratios whose reduced
/// numerator would need more fall back to a finer-than-needed table interpolated per output.
pub(super) const MAX_TABLE_LEN: usize = 1 << 21;
/// Longest minimum-phase prototype (taps on its design grid): its FFTs are
/// `CEPSTRUM_OVERSAMPLING` times longer, so this bounds the one-off design at 2^17 points
/// (192 kHz -> 8 kHz needs 4,400 taps; all designs take under 20 ms).
pub(super) const MAX_MINIMUM_PHASE_LEN: usize = 1 << 13;
/// Finest grid (phases per input sample) a minimum-phase prototype is designed on; ratios with
/// more phases interpolate it.
pub(super) const MINIMUM_PHASE_GRID: usize = 8;
/// Taps and stop band of the interpolator from that grid to the polyphase resolution. The
/// prototype occupies at most 1/16 of the grid's bandwidth, so 16 taps pass it flat and put its
/// images 140 dB down.
pub(super) const GRID_INTERPOLATION_TAPS: usize = 16;
pub(super) const GRID_INTERPOLATION_DB: f64 = 140.0;
/// FFT length per prototype tap in the cepstral design. Shorter FFTs alias the cepstrum, which
/// cost the stop band 1-7 dB at 8 kHz <-> 24/44.1 kHz (4x and 8x, measured with numpy).
pub(super) const CEPSTRUM_OVERSAMPLING: usize = 16;
/// Extra design attenuation of a minimum-phase prototype: the cepstral step and its truncation
/// cost about 0.5 dB of stop band, and a longer prototype hardly adds delay.
pub(super) const MINIMUM_PHASE_MARGIN_DB: f64 = 4.0;

/// How the coefficients of a phase are obtained.
#[derive(Debug)]
pub(super) enum PhaseTable {
    /// One row per phase `r` in `0..up`.
    Exact,
    /// `rows` + 1 rows at fractional offsets `i / rows`; phase `r` interpolates linearly.
    Interpolated { rows: u64 },
}

/// Where the energy of the impulse response sits in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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
pub(super) struct PolyphaseFilter {
    pub(super) taps: usize,
    pub(super) ahead: usize,
    pub(super) behind: usize,
    pub(super) lead_pad: usize,
    pub(super) phase: Phase,
    pub(super) table: PhaseTable,
    /// Rows start at `first` so that every row is 64-byte aligned (no split loads).
    pub(super) coefs: Vec<f32>,
    pub(super) first: usize,
}

pub(super) fn bessel_i0(x: f64) -> f64 {
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

pub(super) fn kaiser_beta(attenuation: f64) -> f64 {
    if attenuation > 50.0 {
        0.1102 * (attenuation - 8.7)
    } else {
        0.5842 * (attenuation - 21.0).powf(0.4) + 0.07886 * (attenuation - 21.0)
    }
}

/// A Kaiser-windowed sinc `half_width` input samples either side of its centre.
pub(super) struct KaiserSinc {
    pub(super) half_width: usize,
    pub(super) beta: f64,
    pub(super) i0_beta: f64,
    /// Cycles per input sample.
    pub(super) cutoff: f64,
}

impl KaiserSinc {
    pub(super) fn new(attenuation: f64, transition: f64, lower_nyquist: f64, fs_in: f64) -> Self {
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
    pub(super) fn at(&self, t: f64) -> f64 {
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
    pub(super) fn design(in_rate: u32, out_rate: u32, up: u64, quality: Quality) -> Self {
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
    pub(super) fn minimum_phase(sinc: &KaiserSinc, up: u64, min_ahead: usize) -> Option<Self> {
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

    pub(super) fn table_for(up: u64, used: usize) -> PhaseTable {
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
    pub(super) fn from_response(
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

    pub(super) fn row(&self, index: usize) -> &[f32] {
        let start = self.first + index * self.taps;
        &self.coefs[start..start + self.taps]
    }
}

/// `samples` (taken every `1 / from` input samples, band-limited far below that rate) at every
/// `1 / to` input samples, by Kaiser-windowed sinc interpolation.
pub(super) fn regrid(samples: &[f64], from: usize, to: usize) -> Vec<f64> {
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
pub(super) fn minimum_phase_response(prototype: &[f64]) -> Vec<f64> {
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
pub(super) struct Fft {
    /// `(cos, sin)` of `2 pi k / size` for `k` in `0..size / 2`.
    pub(super) twiddles: Vec<(f64, f64)>,
}

impl Fft {
    pub(super) fn new(size: usize) -> Self {
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
    pub(super) fn run(&self, re: &mut [f64], im: &mut [f64], inverse: bool) {
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

pub(super) type FilterKey = (u32, u32, Quality);

pub(super) fn cached_filter(
    in_rate: u32,
    out_rate: u32,
    up: u64,
    quality: Quality,
) -> Arc<PolyphaseFilter> {
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
