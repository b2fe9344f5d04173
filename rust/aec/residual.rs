//! The residual echo suppressor: what the linear filter leaves (its misadjustment, the
//! loudspeaker's nonlinearity, the tail past the filter) is removed per frequency bin.
//!
//! The error and the echo estimate are analysed on the same 2N window (sqrt-Hann, hop N, so
//! analysis times synthesis windows sum to one). The residual echo in a bin is `leak * |Y|^2`
//! (see `dtd`), held with a decay so a reverberant tail is covered; the gain is the spectral
//! subtraction `1 - OVERSUBTRACTION * residual / |E|^2`, floored at `FLOOR`. Overlap-add
//! synthesis delays the output by one frame (N samples).

use super::fft::{Bin, Fft};

/// The deepest cut per bin (-40 dB): more makes near-end speech in double talk choppy.
const FLOOR: f32 = 0.01;
/// How much the residual estimate is inflated: the leak is an average over the bins.
const OVERSUBTRACTION: f32 = 2.0;
/// Per-frame decay of the held residual estimate (about -30 dB per 100 ms at 10 ms frames).
const TAIL_DECAY: f32 = 0.5;
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
    /// Per bin, smoothed over time: the means of |E|^2 and |Y|^2, their covariance and the
    /// variance of |Y|^2 (see `suppress`).
    mean_error: Vec<f32>,
    mean_echo: Vec<f32>,
    covariance: Vec<f32>,
    variance: Vec<f32>,
    /// The second half of the last synthesis frame, waiting for the next one.
    overlap: Vec<f32>,
}

impl Suppressor {
    pub fn new(frame: usize) -> Self {
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
            mean_error: vec![0.0; frame + 1],
            mean_echo: vec![0.0; frame + 1],
            covariance: vec![0.0; frame + 1],
            variance: vec![0.0; frame + 1],
            overlap: vec![0.0; frame],
        }
    }

    pub fn reset(&mut self) {
        self.error.fill(0.0);
        self.echo.fill(0.0);
        self.residual.fill(0.0);
        self.mean_error.fill(0.0);
        self.mean_echo.fill(0.0);
        self.covariance.fill(0.0);
        self.variance.fill(0.0);
        self.overlap.fill(0.0);
        self.error_power.fill(0.0);
        self.echo_power.fill(0.0);
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
    pub fn suppress(&mut self, fft: &mut Fft, leak: f32, out: &mut [f32]) {
        let n = self.frame;
        for i in 0..self.error_power.len() {
            let (error, echo) = (self.error_power[i], self.echo_power[i]);
            self.mean_error[i] += BIN_RATE * (error - self.mean_error[i]);
            self.mean_echo[i] += BIN_RATE * (echo - self.mean_echo[i]);
            let (de, dy) = (error - self.mean_error[i], echo - self.mean_echo[i]);
            self.covariance[i] += BIN_RATE * (de * dy - self.covariance[i]);
            self.variance[i] += BIN_RATE * (dy * dy - self.variance[i]);
        }
        for (((((bin, residual), &echo), &error), &covariance), &variance) in self
            .error_spectrum
            .iter_mut()
            .zip(self.residual.iter_mut())
            .zip(&self.echo_power)
            .zip(&self.error_power)
            .zip(&self.covariance)
            .zip(&self.variance)
        {
            let bin_leak = if variance > f32::MIN_POSITIVE { (covariance / variance).clamp(0.0, 1.0) } else { 0.0 };
            *residual = (leak.max(bin_leak) * echo).max(TAIL_DECAY * *residual);
            let gain = if error > 0.0 {
                (1.0 - OVERSUBTRACTION * *residual / error).max(FLOOR)
            } else {
                1.0
            };
            *bin *= gain;
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
