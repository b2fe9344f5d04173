//! The canceller's one transform size: real FFTs of two frames (2N samples), planned once.
//!
//! `realfft` (over `rustfft`) takes any length, so 10 ms frames at 44.1 or 48 kHz (441, 480
//! samples) need no padding to a power of two, and with caller-held scratch it never
//! allocates after planning. The forward transform is unnormalised, the inverse divides by 2N,
//! so `inverse(forward(x)) == x`.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

pub type Bin = Complex<f32>;

pub struct Fft {
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    /// realfft overwrites its inputs: they are copied here first.
    time: Vec<f32>,
    spectrum: Vec<Bin>,
    scratch: Vec<Bin>,
    scale: f32,
}

impl Fft {
    /// Transforms of `len` real samples (`len / 2 + 1` bins).
    pub fn new(len: usize) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(len);
        let inverse = planner.plan_fft_inverse(len);
        let scratch_len = forward.get_scratch_len().max(inverse.get_scratch_len());
        Self {
            time: vec![0.0; len],
            spectrum: vec![Bin::default(); len / 2 + 1],
            scratch: vec![Bin::default(); scratch_len],
            scale: 1.0 / len as f32,
            forward,
            inverse,
        }
    }

    /// The spectrum of `input` (`len` samples) into `output` (`bins` values).
    pub fn forward(&mut self, input: &[f32], output: &mut [Bin]) {
        self.time.copy_from_slice(input);
        let done = self.forward.process_with_scratch(&mut self.time, output, &mut self.scratch);
        // Lengths are fixed at construction, so the transform cannot refuse them.
        debug_assert!(done.is_ok());
    }

    /// The signal (`len` samples, scaled by 1/len) whose spectrum is `input`.
    pub fn inverse(&mut self, input: &[Bin], output: &mut [f32]) {
        self.spectrum.copy_from_slice(input);
        // A real signal's DC and Nyquist bins are real; rounding may leave a trace otherwise.
        let last = self.spectrum.len() - 1;
        self.spectrum[0].im = 0.0;
        self.spectrum[last].im = 0.0;
        let done = self.inverse.process_with_scratch(&mut self.spectrum, output, &mut self.scratch);
        debug_assert!(done.is_ok());
        for x in output.iter_mut() {
            *x *= self.scale;
        }
    }
}
