//! Acoustic echo cancellation: removes from the microphone what the loudspeaker played.
//!
//! `EchoCanceller::process(mic, reference, out)` takes one frame of the microphone and the
//! frame of the far-end signal played at the same time (the reference), and writes the
//! microphone with the echo removed. Three stages:
//! - `mdf`: a partitioned-block frequency-domain adaptive filter models the room's echo path
//!   (up to `filter_ms` long) and subtracts its echo estimate (FFTs in `fft`, the partitions'
//!   multiply-accumulates SIMD-dispatched in `kernels`);
//! - `dtd`: the learning rate follows the estimated residual echo share, so near-end speech
//!   (double talk) does not make the filter diverge;
//! - `residual`: a per-bin suppressor removes what the linear model misses (one frame of
//!   latency; `suppress: false` turns it off for zero latency), and in far-end single talk
//!   replaces the frame with comfort noise at the background's level, so a VAD listening to
//!   the output does not take the agent's residual echo for the user.
//!
//! Device latency: the echo of a reference sample reaches the microphone after the device's
//! output-to-input latency plus the acoustic path. The filter covers `filter_ms` from the
//! (delayed) reference, so `delay_ms` should be the device latency, or a bit less, known from
//! the audio API (e.g. `PortAudio`'s output plus input latency); the rest of the path must fit in
//! `filter_ms`. With `delay_ms = 0` the filter covers up to `filter_ms` of latency itself.
//!
//! Real-time safe: every buffer is allocated at construction (sizes bounded by the
//! configuration's limits, under 2 MB), `process` allocates nothing, and the same input gives
//! the same output on every run at a given SIMD level (the levels agree bit for bit).

mod delay;
mod dtd;
mod fft;
mod kernels;
mod mdf;
mod residual;
#[cfg(test)]
mod tests;

use crate::vad::Sample;
use crate::AudioError;

/// The lowest and highest accepted sample rates.
pub const MIN_SAMPLE_RATE: u32 = 8000;
pub const MAX_SAMPLE_RATE: u32 = 48000;
/// Frame durations the canceller accepts, in milliseconds.
pub const FRAME_DURATIONS_MS: [u32; 3] = [10, 20, 30];
/// Bounds of the echo tail length and of the reference delay, in milliseconds.
pub const MAX_FILTER_MS: u32 = 1000;
pub const MAX_DELAY_MS: u32 = 1000;
pub use delay::MAX_ESTIMATED_DELAY_MS;

/// A reference frame below this mean power (about -80 dBFS) counts as silence: no learning.
const SILENT_REFERENCE_POWER: f32 = 1e-8;
/// A frame whose error is louder than the microphone (plus a floor of about -50 dBFS) passes
/// the microphone through; an error `DIVERGED_RATIO` times louder over about 100 ms
/// (`DIVERGED_SMOOTHING` per frame) means the filter diverged, and it starts over.
const DIVERGED_RATIO: f32 = 4.0;
const DIVERGED_FLOOR: f32 = 1e-5;
const DIVERGED_SMOOTHING: f32 = 0.1;

/// A sample type the canceller writes: float32 as is, int16 rounded and saturated.
pub trait OutputSample: Sample + Default {
    fn from_f32(x: f32) -> Self;
}

impl OutputSample for f32 {
    fn from_f32(x: f32) -> Self {
        x
    }
}

impl OutputSample for i16 {
    fn from_f32(x: f32) -> Self {
        // Float-to-int `as` saturates (and maps NaN to 0, though none reaches here).
        (x * 32768.0).round() as i16
    }
}

/// The canceller's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoConfig {
    pub sample_rate: u32,
    pub frame_ms: u32,
    /// The echo tail the filter models, after `delay_ms`.
    pub filter_ms: u32,
    /// How long the reference is held back before the filter sees it (device latency).
    pub delay_ms: u32,
    /// Whether the residual echo suppressor runs (it adds one frame of latency).
    pub suppress: bool,
}

impl EchoConfig {
    pub fn new(sample_rate: u32) -> Self {
        Self { sample_rate, frame_ms: 10, filter_ms: 250, delay_ms: 0, suppress: true }
    }

    fn validate(&self) -> Result<(), AudioError> {
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&self.sample_rate) {
            return Err(AudioError::invalid(format!(
                "sample_rate must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, got {}",
                self.sample_rate
            )));
        }
        if !FRAME_DURATIONS_MS.contains(&self.frame_ms) {
            return Err(AudioError::invalid(format!(
                "frame_ms must be 10, 20 or 30, got {}",
                self.frame_ms
            )));
        }
        if !(self.sample_rate * self.frame_ms).is_multiple_of(1000) {
            return Err(AudioError::invalid(format!(
                "a {} ms frame at {} Hz is not a whole number of samples",
                self.frame_ms, self.sample_rate
            )));
        }
        if !(self.frame_ms..=MAX_FILTER_MS).contains(&self.filter_ms) {
            return Err(AudioError::invalid(format!(
                "filter_ms must be between frame_ms ({}) and {MAX_FILTER_MS}, got {}",
                self.frame_ms, self.filter_ms
            )));
        }
        if self.delay_ms > MAX_DELAY_MS {
            return Err(AudioError::invalid(format!(
                "delay_ms must be between 0 and {MAX_DELAY_MS}, got {}",
                self.delay_ms
            )));
        }
        Ok(())
    }

    /// Samples per frame.
    pub fn frame_samples(&self) -> usize {
        (self.sample_rate * self.frame_ms / 1000) as usize
    }

    fn delay_samples(&self) -> usize {
        (u64::from(self.sample_rate) * u64::from(self.delay_ms) / 1000) as usize
    }

    fn partitions(&self) -> usize {
        self.filter_ms.div_ceil(self.frame_ms) as usize
    }
}

/// A fixed delay line for the reference: `delay` samples late.
struct DelayLine {
    buffer: Vec<f32>,
    delay: usize,
    position: usize,
}

impl DelayLine {
    fn new(delay: usize, frame: usize) -> Self {
        Self { buffer: vec![0.0; delay + frame], delay, position: 0 }
    }

    /// Pushes `input` and writes the samples `delay` earlier to `out` (both one frame).
    fn shift<S: Sample>(&mut self, input: &[S], out: &mut [f32]) {
        let len = self.buffer.len();
        for (i, &x) in input.iter().enumerate() {
            self.buffer[(self.position + i) % len] = x.to_f32();
        }
        for (i, out) in out.iter_mut().enumerate() {
            *out = self.buffer[(self.position + len - self.delay + i) % len];
        }
        self.position = (self.position + input.len()) % len;
    }

    fn reset(&mut self) {
        self.buffer.fill(0.0);
        self.position = 0;
    }
}

/// The streaming echo canceller (see the module documentation).
pub struct EchoCanceller {
    config: EchoConfig,
    fft: fft::Fft,
    filter: mdf::Mdf,
    steps: dtd::StepControl,
    suppressor: residual::Suppressor,
    delay_estimator: delay::DelayEstimator,
    delay: DelayLine,
    mic: Vec<f32>,
    reference: Vec<f32>,
    error: Vec<f32>,
    output: Vec<f32>,
    frames: u64,
    divergences: u64,
    smoothed_error: f32,
    smoothed_mic: f32,
}

impl EchoCanceller {
    pub fn new(config: EchoConfig) -> Result<Self, AudioError> {
        config.validate()?;
        let n = config.frame_samples();
        Ok(Self {
            fft: fft::Fft::new(2 * n),
            filter: mdf::Mdf::new(n, config.partitions()),
            steps: dtd::StepControl::new(),
            suppressor: residual::Suppressor::new(n, config.frame_ms),
            delay_estimator: delay::DelayEstimator::new(n, config.frame_ms),
            delay: DelayLine::new(config.delay_samples(), n),
            mic: vec![0.0; n],
            reference: vec![0.0; n],
            error: vec![0.0; n],
            output: vec![0.0; n],
            frames: 0,
            divergences: 0,
            smoothed_error: 0.0,
            smoothed_mic: 0.0,
            config,
        })
    }

    pub fn config(&self) -> &EchoConfig {
        &self.config
    }

    pub fn frame_samples(&self) -> usize {
        self.config.frame_samples()
    }

    /// How many samples the output lags the microphone (one frame with the suppressor on).
    pub fn latency_samples(&self) -> usize {
        if self.config.suppress { self.frame_samples() } else { 0 }
    }

    /// Frames processed since construction or `reset`.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// How many times the filter was found diverged and restarted.
    pub fn divergences(&self) -> u64 {
        self.divergences
    }

    /// Whether the last frame was judged far-end single talk (the agent talking alone), so its
    /// output is comfort noise at the background's level (always false without the suppressor).
    pub fn far_end_only(&self) -> bool {
        self.config.suppress && self.suppressor.echo_only()
    }

    /// The measured delay between the reference (as given to `process`, before `delay_ms`) and
    /// its echo in the microphone, in milliseconds (0 to `MAX_ESTIMATED_DELAY_MS`), or `None`
    /// until about a second of far-end signal has given a clear estimate. Read-only: a good
    /// `delay_ms` is this value less a few milliseconds.
    pub fn estimated_delay_ms(&self) -> Option<u32> {
        self.delay_estimator.delay_ms()
    }

    /// Back to the state of a new canceller: the echo path is learnt again.
    pub fn reset(&mut self) {
        self.filter.reset();
        self.steps.reset();
        self.suppressor.reset();
        self.delay_estimator.reset();
        self.delay.reset();
        self.frames = 0;
        self.divergences = 0;
        self.smoothed_error = 0.0;
        self.smoothed_mic = 0.0;
    }

    /// Cancels one frame: `mic` and `reference` are `frame_samples()` long each, and `out`
    /// (the same type as `mic`) receives the cleaned microphone.
    pub fn process<M: OutputSample, R: Sample>(
        &mut self,
        mic: &[M],
        reference: &[R],
        out: &mut [M],
    ) -> Result<(), AudioError> {
        let n = self.frame_samples();
        for (name, len) in [("mic", mic.len()), ("reference", reference.len()), ("out", out.len())] {
            if len != n {
                return Err(AudioError::invalid(format!(
                    "{name} must be one frame of {n} samples ({} ms at {} Hz), got {len}",
                    self.config.frame_ms, self.config.sample_rate
                )));
            }
        }
        M::check(mic)?;
        R::check(reference)?;
        for (dst, &x) in self.mic.iter_mut().zip(mic) {
            *dst = x.to_f32();
        }
        // The estimator sees the reference as given (before `delay_ms`): its estimate is the
        // whole latency. `error` is scratch until `cancel` writes it.
        for (dst, &x) in self.error.iter_mut().zip(reference) {
            *dst = x.to_f32();
        }
        self.delay_estimator.observe(&self.mic, &self.error);
        self.delay.shift(reference, &mut self.reference);
        self.cancel();
        for (dst, &x) in out.iter_mut().zip(&self.output) {
            *dst = M::from_f32(x);
        }
        self.frames += 1;
        Ok(())
    }

    /// The float32 pipeline on `self.mic` and `self.reference`, into `self.output`.
    fn cancel(&mut self) {
        let n = self.frame_samples();
        self.filter.estimate(&mut self.fft, &self.reference);
        let echo = self.filter.echo();
        let mut error_energy = 0.0f32;
        let mut mic_energy = 0.0f32;
        let mut echo_energy = 0.0f32;
        for ((e, &d), &y) in self.error.iter_mut().zip(&self.mic).zip(echo) {
            *e = d - y;
            error_energy += *e * *e;
            mic_energy += d * d;
            echo_energy += y * y;
        }
        let reference_energy = self.reference.iter().map(|x| x * x).sum::<f32>();
        let floor = SILENT_REFERENCE_POWER * n as f32;
        // Smoothed over about 100 ms: a room's decaying tail can leave the error above the
        // microphone for a few frames without anything being wrong.
        self.smoothed_error += DIVERGED_SMOOTHING * (error_energy - self.smoothed_error);
        self.smoothed_mic += DIVERGED_SMOOTHING * (mic_energy - self.smoothed_mic);
        let floor_energy = DIVERGED_FLOOR * n as f32;
        let diverged = !error_energy.is_finite()
            || self.smoothed_error > DIVERGED_RATIO * self.smoothed_mic + floor_energy;
        if diverged {
            self.filter.clear_weights();
            self.steps.reset();
            self.smoothed_error = self.smoothed_mic;
            self.divergences += 1;
        }
        if diverged || error_energy > mic_energy + floor_energy {
            // The estimate adds more than it removes: pass the microphone through instead.
            self.error.copy_from_slice(&self.mic);
            error_energy = mic_energy;
            echo_energy = 0.0;
        }
        let echo = self.filter.echo();
        self.suppressor.analyse(&mut self.fft, &self.error, echo);
        self.steps.observe(self.suppressor.error_power(), self.suppressor.echo_power());
        let mu = self.steps.step(error_energy, echo_energy, reference_energy > floor);
        self.filter.adapt(&mut self.fft, &self.error, mu);
        if self.config.suppress {
            self.suppressor.suppress(&mut self.fft, self.steps.leak(), mic_energy, error_energy, &mut self.output);
        } else {
            self.output.copy_from_slice(&self.error);
        }
    }
}
