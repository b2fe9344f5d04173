//! Double-talk handling: how fast the filter may learn from this frame.
//!
//! Rather than a detector that freezes adaptation on a yes/no decision, the step size follows
//! the estimated share of residual echo in the error (after Valin, "On adjusting the learning
//! rate in frequency domain echo cancellation with double-talk", 2007): the optimal NLMS step
//! is about `residual echo power / error power`. The residual echo is `leak * |Y|^2`, where the
//! leak (how much of the echo estimate is still left in the error) comes from the covariance
//! of the error's and the estimate's power spectra over the bins. Near-end speech is
//! uncorrelated with the echo estimate, so it adds to the error power (the step shrinks: the
//! filter barely moves in double talk) without inflating the leak. Until the filter has seen
//! enough far-end signal to have an estimate at all, a fixed step gets it started.

/// Step size before the filter has adapted.
const START_STEP: f32 = 0.9;
/// The largest step once adapted.
const MAX_STEP: f32 = 0.9;
/// How much far-end activity (in frames with a reference) the start-up phase lasts.
const START_FRAMES: u32 = 50;
/// Smoothing of the leak's covariances per frame, scaled down when the error dwarfs the echo.
const LEAK_RATE: f32 = 0.05;

pub struct StepControl {
    /// Smoothed covariance of |E|^2 and |Y|^2 over the bins, and variance of |Y|^2.
    cov_ey: f32,
    var_y: f32,
    leak: f32,
    active_frames: u32,
}

impl StepControl {
    pub fn new() -> Self {
        Self { cov_ey: 0.0, var_y: 0.0, leak: 1.0, active_frames: 0 }
    }

    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The share of the echo estimate's power still in the error (0..1).
    pub fn leak(&self) -> f32 {
        self.leak
    }

    /// Learns from this frame's error and echo-estimate power spectra.
    pub fn observe(&mut self, error_power: &[f32], echo_power: &[f32]) {
        let bins = error_power.len().max(1) as f32;
        let (sum_e, sum_y) = (error_power.iter().sum::<f32>(), echo_power.iter().sum::<f32>());
        if sum_y <= f32::MIN_POSITIVE {
            return;
        }
        let (mean_e, mean_y) = (sum_e / bins, sum_y / bins);
        let (mut cov, mut var) = (0.0f32, 0.0f32);
        for (&e, &y) in error_power.iter().zip(echo_power) {
            cov += (e - mean_e) * (y - mean_y);
            var += (y - mean_y) * (y - mean_y);
        }
        // Near-end signal makes the covariance noisy: learn slower when the error is mostly
        // something else than echo.
        let rate = LEAK_RATE * (sum_y / sum_e.max(f32::MIN_POSITIVE)).min(1.0);
        self.cov_ey += rate * (cov - self.cov_ey);
        self.var_y += rate * (var - self.var_y);
        if self.var_y > f32::MIN_POSITIVE {
            self.leak = (self.cov_ey / self.var_y).clamp(1e-4, 1.0);
        }
    }

    /// The step for this frame, given the powers of the error, the echo estimate and the
    /// reference (sums over the frame's samples).
    pub fn step(&mut self, error: f32, echo: f32, reference_active: bool) -> f32 {
        if !reference_active {
            return 0.0;
        }
        if self.active_frames < START_FRAMES {
            self.active_frames += 1;
            return START_STEP;
        }
        (self.leak * echo / error.max(f32::MIN_POSITIVE)).min(MAX_STEP)
    }
}
