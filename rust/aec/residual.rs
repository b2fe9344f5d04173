//! The residual echo suppressor: what the linear filter leaves (its misadjustment, the
//! loudspeaker's nonlinearity, the tail past the filter) is removed per frequency bin.
//!
//! The error and the echo estimate are analysed on the same 2N window (sqrt-Hann, hop N, so
//! analysis times synthesis windows sum to one). The residual echo in a bin is `leak * |Y|^2`
//! (see `dtd`), held with a decay so a reverberant tail is covered; the gain is the spectral
//! subtraction `1 - OVERSUBTRACTION * residual / |E|^2`. Overlap-add synthesis delays the
//! output by one frame (N samples).
//!
//! A residual echo far below the echo is still speech to a voice activity detector when it
//! stands above the background, and a VAD on the output (the local one, the server's) would
//! make the agent interrupt itself. So the suppressor also tracks the background per bin
//! (the minimum of the smoothed error power, rising slowly) and, in a frame where the error
//! is no more than the expected residual plus that background (far-end single talk: no
//! near-end speech), outputs comfort noise at the background's level and spectrum instead of
//! the error. Wherever a gain cuts a bin below the background, comfort noise fills it back
//! up, so the output's background stays stationary (no holes a VAD would hear as onsets).

use super::fft::{Bin, Fft};

/// How much the residual estimate is inflated: the leak is an average over the bins.
const OVERSUBTRACTION: f32 = 2.0;
/// Per-frame decay of the held residual estimate for the gains (about -30 dB per 100 ms at
/// 10 ms frames).
const TAIL_DECAY: f32 = 0.5;
/// Decay per 10 ms of the residual estimate the far-end-only decision uses (about -45 dB per
/// second: a room's reverberant tail, which the gains' faster hold would let through when
/// the far end pauses).
const REVERB_DECAY_PER_10_MS: f32 = 0.9;
/// A frame carries near-end speech when its error power exceeds `NEAR_END_RATIO` times the
/// expected residual echo plus background, or `NEAR_END_SOME_RATIO` times that while the
/// error keeps at least `NEAR_END_MIC_SHARE` of the microphone's power (the filter removed
/// little: something else than echo is there). Far-end single talk stays well below both.
const NEAR_END_RATIO: f32 = 5.0;
const NEAR_END_SOME_RATIO: f32 = 2.0;
const NEAR_END_MIC_SHARE: f32 = 0.25;
/// Near-end speech must last this long before it is let through (a lone frame of residual
/// over the estimate is not a talker), and is then let through this long after the last
/// frame that showed it (the soft ends of words stay).
const NEAR_END_CONFIRM_MS: u32 = 40;
const NEAR_END_HOLD_MS: u32 = 400;
/// The far-end-only decision applies when the expected residual echo is at least this share
/// of the background: without echo, the per-bin gains alone decide.
const ECHO_PRESENT_SHARE: f32 = 0.05;
/// Smoothing per frame of each bin's error power for the background tracker.
const NOISE_SMOOTHING: f32 = 0.3;
/// The background is the minimum of the smoothed error power over the last `NOISE_WINDOWS`
/// windows of `NOISE_WINDOW_MS` (about 1.6 s: longer than a syllable, shorter than a change
/// of room), so it falls at once and rises within that time.
const NOISE_WINDOWS: usize = 4;
const NOISE_WINDOW_MS: u32 = 400;
/// The minimum of a smoothed periodogram underestimates the mean background power (measured
/// on the evaluation set's pink noise: the comfort noise then lands within about 1 dB of it).
const NOISE_BIAS: f32 = 4.0;
/// Smoothing per 10 ms of the background estimate, so the comfort noise's level does not
/// jump when a window rotates (a step in a stationary background is an onset to a VAD).
const BACKGROUND_RATE_PER_10_MS: f32 = 0.05;
/// Smoothing per frame of each bin's leak statistics (about 200 ms at 10 ms frames).
const BIN_RATE: f32 = 0.05;

pub struct Suppressor {
    frame: usize,
    window: Vec<f32>,
    /// The previous and current frames of the error and of the echo estimate (2N each).
    error: Vec<f32>,
    echo: Vec<f32>,
    windowed: Vec<f32>,
    error_spectrum: Vec<Bin>,
    echo_spectrum: Vec<Bin>,
    error_power: Vec<f32>,
    echo_power: Vec<f32>,
    residual: Vec<f32>,
    /// The residual held with a room's decay (`REVERB_DECAY`), for the far-end-only decision.
    reverberant: Vec<f32>,
    /// Per bin, smoothed over time: the means of |E|^2 and |Y|^2, their covariance and the
    /// variance of |Y|^2 (see `suppress`).
    mean_error: Vec<f32>,
    mean_echo: Vec<f32>,
    covariance: Vec<f32>,
    variance: Vec<f32>,
    /// Per bin: the smoothed error power, its minimum in the current window and in each of
    /// the last `NOISE_WINDOWS` windows (window-major), and the background (the least).
    smoothed: Vec<f32>,
    window_minimum: Vec<f32>,
    minima: Vec<f32>,
    background: Vec<f32>,
    /// Frames per background window, frames into the current one, and the next slot in
    /// `minima`.
    window_frames: u32,
    window_position: u32,
    window_slot: usize,
    /// Frames analysed: the first one seeds the smoothed powers.
    started: bool,
    /// Whether the last frame was judged far-end single talk (replaced by comfort noise).
    echo_only: bool,
    /// Frames of near-end evidence in a row, frames left to let the near end through, and
    /// the two durations in frames (`NEAR_END_CONFIRM_MS`, `NEAR_END_HOLD_MS`).
    near_end_run: u32,
    near_end_hold: u32,
    confirm_frames: u32,
    hold_frames: u32,
    /// `REVERB_DECAY_PER_10_MS` and `BACKGROUND_RATE_PER_10_MS` per frame.
    reverb_decay: f32,
    background_rate: f32,
    comfort: Noise,
    /// The second half of the last synthesis frame, waiting for the next one.
    overlap: Vec<f32>,
}

/// The comfort noise's random phases: a deterministic xorshift source picks one of
/// `PHASES` unit phasors (a table, so no sine or cosine per bin; no allocation per frame, the
/// same output on every run).
struct Noise {
    state: u64,
    phasors: Vec<Bin>,
}

const NOISE_SEED: u64 = 0x9E37_79B9_7F4A_7C15;
const PHASES: usize = 256;

impl Noise {
    fn new() -> Self {
        let phasors = (0..PHASES)
            .map(|k| Bin::from_polar(1.0, std::f32::consts::TAU * k as f32 / PHASES as f32))
            .collect();
        Self { state: NOISE_SEED, phasors }
    }

    fn reset(&mut self) {
        self.state = NOISE_SEED;
    }

    /// A uniformly random unit phasor.
    fn phasor(&mut self) -> Bin {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.phasors[(self.state >> 56) as usize % PHASES]
    }
}

impl Suppressor {
    /// A suppressor for frames of `frame` samples, `frame_ms` long.
    pub fn new(frame: usize, frame_ms: u32) -> Self {
        let len = 2 * frame;
        let window = (0..len)
            .map(|i| (std::f64::consts::PI * i as f64 / len as f64).sin() as f32)
            .collect();
        Self {
            frame,
            window,
            error: vec![0.0; len],
            echo: vec![0.0; len],
            windowed: vec![0.0; len],
            error_spectrum: vec![Bin::default(); frame + 1],
            echo_spectrum: vec![Bin::default(); frame + 1],
            error_power: vec![0.0; frame + 1],
            echo_power: vec![0.0; frame + 1],
            residual: vec![0.0; frame + 1],
            reverberant: vec![0.0; frame + 1],
            mean_error: vec![0.0; frame + 1],
            mean_echo: vec![0.0; frame + 1],
            covariance: vec![0.0; frame + 1],
            variance: vec![0.0; frame + 1],
            smoothed: vec![0.0; frame + 1],
            window_minimum: vec![f32::MAX; frame + 1],
            minima: vec![f32::MAX; NOISE_WINDOWS * (frame + 1)],
            background: vec![0.0; frame + 1],
            window_frames: (NOISE_WINDOW_MS / frame_ms).max(1),
            window_position: 0,
            window_slot: 0,
            started: false,
            echo_only: false,
            near_end_run: 0,
            near_end_hold: 0,
            confirm_frames: NEAR_END_CONFIRM_MS.div_ceil(frame_ms),
            hold_frames: NEAR_END_HOLD_MS.div_ceil(frame_ms),
            reverb_decay: REVERB_DECAY_PER_10_MS.powf(frame_ms as f32 / 10.0),
            background_rate: 1.0 - (1.0 - BACKGROUND_RATE_PER_10_MS).powf(frame_ms as f32 / 10.0),
            comfort: Noise::new(),
            overlap: vec![0.0; frame],
        }
    }

    pub fn reset(&mut self) {
        self.error.fill(0.0);
        self.echo.fill(0.0);
        self.residual.fill(0.0);
        self.reverberant.fill(0.0);
        self.mean_error.fill(0.0);
        self.mean_echo.fill(0.0);
        self.covariance.fill(0.0);
        self.variance.fill(0.0);
        self.smoothed.fill(0.0);
        self.window_minimum.fill(f32::MAX);
        self.minima.fill(f32::MAX);
        self.background.fill(0.0);
        self.window_position = 0;
        self.window_slot = 0;
        self.started = false;
        self.echo_only = false;
        self.near_end_hold = 0;
        self.near_end_run = 0;
        self.comfort.reset();
        self.overlap.fill(0.0);
        self.error_power.fill(0.0);
        self.echo_power.fill(0.0);
    }

    /// Whether the last frame was judged far-end single talk and replaced by comfort noise.
    pub fn echo_only(&self) -> bool {
        self.echo_only
    }

    /// Power spectra of the last two frames of error and echo estimate (for `dtd` too).
    pub fn analyse(&mut self, fft: &mut Fft, error: &[f32], echo: &[f32]) {
        let n = self.frame;
        for (history, frame) in [(&mut self.error, error), (&mut self.echo, echo)] {
            history.copy_within(n.., 0);
            history[n..].copy_from_slice(frame);
        }
        for (x, (w, e)) in self.windowed.iter_mut().zip(self.window.iter().zip(&self.error)) {
            *x = w * e;
        }
        fft.forward(&self.windowed, &mut self.error_spectrum);
        for (x, (w, y)) in self.windowed.iter_mut().zip(self.window.iter().zip(&self.echo)) {
            *x = w * y;
        }
        fft.forward(&self.windowed, &mut self.echo_spectrum);
        for (power, bin) in self.error_power.iter_mut().zip(&self.error_spectrum) {
            *power = bin.norm_sqr();
        }
        for (power, bin) in self.echo_power.iter_mut().zip(&self.echo_spectrum) {
            *power = bin.norm_sqr();
        }
    }

    pub fn error_power(&self) -> &[f32] {
        &self.error_power
    }

    pub fn echo_power(&self) -> &[f32] {
        &self.echo_power
    }

    /// Writes the suppressed error, one frame late, to `out` (N samples).
    ///
    /// The broadband `leak` is dominated by the loud bins, where the filter has converged
    /// best; each bin's own leak (the regression of its error power's fluctuations on its
    /// echo estimate's, over time) catches the bins it has not. Near-end speech does not
    /// fluctuate with the echo estimate, so it barely moves either.
    pub fn suppress(&mut self, fft: &mut Fft, leak: f32, mic_energy: f32, error_energy: f32, out: &mut [f32]) {
        let n = self.frame;
        let bins = self.error_power.len();
        let (mut error_sum, mut residual_sum, mut background_sum) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..bins {
            let (error, echo) = (self.error_power[i], self.echo_power[i]);
            self.mean_error[i] += BIN_RATE * (error - self.mean_error[i]);
            self.mean_echo[i] += BIN_RATE * (echo - self.mean_echo[i]);
            let (de, dy) = (error - self.mean_error[i], echo - self.mean_echo[i]);
            self.covariance[i] += BIN_RATE * (de * dy - self.covariance[i]);
            self.variance[i] += BIN_RATE * (dy * dy - self.variance[i]);
            let variance = self.variance[i];
            let bin_leak =
                if variance > f32::MIN_POSITIVE { (self.covariance[i] / variance).clamp(0.0, 1.0) } else { 0.0 };
            let residual = leak.max(bin_leak) * echo;
            self.residual[i] = residual.max(TAIL_DECAY * self.residual[i]);
            self.reverberant[i] = residual.max(self.reverb_decay * self.reverberant[i]);
            if self.started {
                self.smoothed[i] += NOISE_SMOOTHING * (error - self.smoothed[i]);
            } else {
                self.smoothed[i] = error;
            }
            self.window_minimum[i] = self.window_minimum[i].min(self.smoothed[i]);
            let past = self.minima[i..].iter().step_by(bins).fold(f32::MAX, |a, &b| a.min(b));
            let minimum = NOISE_BIAS * self.window_minimum[i].min(past);
            // Smoothed so the comfort noise's level does not jump when a window rotates: a
            // step in a stationary background is what a VAD hears as an onset.
            self.background[i] = if self.started {
                self.background[i] + self.background_rate * (minimum - self.background[i])
            } else {
                minimum
            };
            error_sum += error;
            residual_sum += OVERSUBTRACTION * self.reverberant[i];
            background_sum += self.background[i];
        }
        self.started = true;
        self.window_position += 1;
        if self.window_position == self.window_frames {
            let slot = self.window_slot * bins;
            self.minima[slot..slot + bins].copy_from_slice(&self.window_minimum);
            self.window_minimum.fill(f32::MAX);
            self.window_slot = (self.window_slot + 1) % NOISE_WINDOWS;
            self.window_position = 0;
        }
        let expected = residual_sum + background_sum;
        let echo_present = residual_sum > ECHO_PRESENT_SHARE * background_sum;
        // Far-end single talk or not: see `NEAR_END_RATIO`. Without echo the error is the
        // microphone, so "the filter removed little" says nothing: only the strong evidence
        // counts (a word's onset arriving before the filter's estimate of it would pass).
        let near_end = error_sum > NEAR_END_RATIO * expected
            || (echo_present
                && error_energy > NEAR_END_MIC_SHARE * mic_energy
                && error_sum > NEAR_END_SOME_RATIO * expected);
        self.near_end_run = if near_end { self.near_end_run.saturating_add(1) } else { 0 };
        if self.near_end_run >= self.confirm_frames {
            self.near_end_hold = self.hold_frames;
        } else if self.near_end_hold > 0 {
            self.near_end_hold -= 1;
        }
        // Once far-end single talk, it stays so until near-end speech is confirmed: a lone
        // frame of residual over the estimate (an onset the filter has not learned) is not a
        // talker, and letting it through is what a VAD hears as one.
        self.echo_only = echo_present
            && self.near_end_hold == 0
            && (self.echo_only || error_sum < NEAR_END_SOME_RATIO * expected);
        for i in 0..bins {
            let error = self.error_power[i];
            let gain = if self.echo_only {
                0.0
            } else if error > 0.0 {
                (1.0 - OVERSUBTRACTION * self.residual[i] / error).max(0.0)
            } else {
                1.0
            };
            // The comfort noise: the whole background in a far-end-only frame (a steady level,
            // whatever this frame's noise did), else the background the gain took out (never
            // more than the bin held: silence stays silence, a bin the gain keeps gets none).
            // Random phases from frame to frame do not add up coherently in the overlap-add
            // (the windows' squares sum to 1/2 on average, not 1): twice the power restores
            // the level.
            let background = if self.echo_only {
                self.background[i]
            } else {
                (1.0 - gain * gain) * self.background[i].min(error)
            };
            let fill = (2.0 * background).sqrt();
            self.error_spectrum[i] = self.error_spectrum[i] * gain + self.comfort.phasor() * fill;
        }
        fft.inverse(&self.error_spectrum, &mut self.windowed);
        for ((out, overlap), (head, w)) in out
            .iter_mut()
            .zip(&self.overlap)
            .zip(self.windowed[..n].iter().zip(&self.window[..n]))
        {
            *out = overlap + head * w;
        }
        for ((overlap, tail), w) in self.overlap.iter_mut().zip(&self.windowed[n..]).zip(&self.window[n..]) {
            *overlap = tail * w;
        }
    }
}
