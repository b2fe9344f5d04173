//! The linear echo path model: a multidelay block frequency-domain adaptive filter (MDF, the
//! partitioned-block FDAF family; Soo and Pang 1990, as used in speexdsp's design).
//!
//! The filter of `K * N` taps is cut into K partitions of N taps. Each frame of N reference
//! samples, with the frame before it, is transformed once (2N-point FFT, overlap-save) and
//! kept for K frames; the echo estimate is `sum_k W_k X_{t-k}` back in time, its last N
//! samples. The update is a per-bin normalised LMS across the partitions,
//! `W_k += mu s_k conj(X_{t-k}) E / (P + delta)`, with `P` the reference power over the
//! partitions weighted by the shares `s_k` (proportionate NLMS, see `proportions`), so its
//! speed does not depend on the far-end level or colour. The gradient
//! constraint (the taps past N must stay zero for overlap-save to be a linear convolution)
//! costs two FFTs per partition, so it is applied to one partition per frame in turn (the
//! alternately-constrained MDF): every partition is constrained every K frames.

use super::fft::{Bin, Fft};
use super::kernels;

pub struct Mdf {
    frame: usize,
    partitions: usize,
    bins: usize,
    /// The previous and current reference frames (2N).
    reference: Vec<f32>,
    /// K reference spectra, newest at `newest`, each `bins` long.
    spectra: Vec<Bin>,
    newest: usize,
    weights: Vec<Bin>,
    /// Reference power per bin over the K spectra held, weighted by `shares`.
    power: Vec<f32>,
    /// Each partition's share of the step (see `proportions`).
    shares: Vec<f32>,
    scaled_step: Vec<Bin>,
    echo_spectrum: Vec<Bin>,
    step_spectrum: Vec<Bin>,
    time: Vec<f32>,
    /// The echo estimate for the current frame (N).
    echo: Vec<f32>,
    next_constrained: usize,
}

impl Mdf {
    pub fn new(frame: usize, partitions: usize) -> Self {
        let bins = frame + 1;
        Self {
            frame,
            partitions,
            bins,
            reference: vec![0.0; 2 * frame],
            spectra: vec![Bin::default(); partitions * bins],
            newest: 0,
            weights: vec![Bin::default(); partitions * bins],
            power: vec![0.0; bins],
            shares: vec![0.0; partitions],
            scaled_step: vec![Bin::default(); bins],
            echo_spectrum: vec![Bin::default(); bins],
            step_spectrum: vec![Bin::default(); bins],
            time: vec![0.0; 2 * frame],
            echo: vec![0.0; frame],
            next_constrained: 0,
        }
    }

    /// Forgets the reference and the echo path.
    pub fn reset(&mut self) {
        self.reference.fill(0.0);
        self.spectra.fill(Bin::default());
        self.power.fill(0.0);
        self.newest = 0;
        self.next_constrained = 0;
        self.clear_weights();
    }

    /// Forgets the echo path only (after a divergence), and this frame's estimate with it.
    pub fn clear_weights(&mut self) {
        self.weights.fill(Bin::default());
        self.echo.fill(0.0);
    }

    pub fn echo(&self) -> &[f32] {
        &self.echo
    }

    /// Takes the next reference frame and estimates its echo (see [`Self::echo`]).
    pub fn estimate(&mut self, fft: &mut Fft, reference: &[f32]) {
        let (n, bins) = (self.frame, self.bins);
        self.reference.copy_within(n.., 0);
        self.reference[n..].copy_from_slice(reference);
        // The oldest spectrum makes room for the newest; the power sum follows.
        self.newest = (self.newest + 1) % self.partitions;
        let slot = self.newest * bins..(self.newest + 1) * bins;
        fft.forward(&self.reference, &mut self.spectra[slot]);
        self.echo_spectrum.fill(Bin::default());
        for k in 0..self.partitions {
            let x = self.spectrum(k);
            kernels::multiply_accumulate(
                &mut self.echo_spectrum,
                &self.weights[k * bins..(k + 1) * bins],
                &self.spectra[x * bins..(x + 1) * bins],
            );
        }
        fft.inverse(&self.echo_spectrum, &mut self.time);
        self.echo.copy_from_slice(&self.time[n..]);
    }

    /// One adaptation step on this frame's error (`mic - echo`, N samples) at step size `mu`.
    pub fn adapt(&mut self, fft: &mut Fft, error: &[f32], mu: f32) {
        let (n, bins) = (self.frame, self.bins);
        if mu <= 0.0 {
            return;
        }
        self.time[..n].fill(0.0);
        self.time[n..].copy_from_slice(error);
        fft.forward(&self.time, &mut self.step_spectrum);
        self.proportions();
        // The normaliser: the reference power over the partitions, weighted like the steps.
        self.power.fill(0.0);
        for k in 0..self.partitions {
            let (x, share) = (self.spectrum(k), self.shares[k]);
            for (power, bin) in self.power.iter_mut().zip(&self.spectra[x * bins..(x + 1) * bins]) {
                *power += share * bin.norm_sqr();
            }
        }
        // delta keeps bins the reference barely reaches (a pure tone's neighbours, silence)
        // from taking huge steps: a floor near -70 dBFS plus 1% of the mean power.
        let mean_power = self.power.iter().sum::<f32>() / bins as f32;
        let delta = 1e-7 * (2 * n) as f32 + 0.01 * mean_power;
        for (step, &power) in self.step_spectrum.iter_mut().zip(&self.power) {
            *step *= mu / (power + delta);
        }
        for k in 0..self.partitions {
            let (x, share) = (self.spectrum(k), self.shares[k]);
            for (scaled, &step) in self.scaled_step.iter_mut().zip(&self.step_spectrum) {
                *scaled = step * share;
            }
            kernels::conjugate_accumulate(
                &mut self.weights[k * bins..(k + 1) * bins],
                &self.spectra[x * bins..(x + 1) * bins],
                &self.scaled_step,
            );
        }
        self.constrain(fft, self.next_constrained);
        self.next_constrained = (self.next_constrained + 1) % self.partitions;
    }

    /// The index of the spectrum k frames old.
    fn spectrum(&self, k: usize) -> usize {
        (self.newest + self.partitions - k) % self.partitions
    }

    /// Zeroes partition k's taps past N.
    fn constrain(&mut self, fft: &mut Fft, k: usize) {
        let (n, bins) = (self.frame, self.bins);
        let weights = &mut self.weights[k * bins..(k + 1) * bins];
        fft.inverse(weights, &mut self.time);
        self.time[n..].fill(0.0);
        fft.forward(&self.time, weights);
    }

    /// Each partition's share of the step, in proportion to its weights' norm plus a tenth
    /// of the largest (proportionate NLMS, as speexdsp does): a room's response is loud early
    /// and decays, and the loud partitions learn that much faster. Shares sum to one; while
    /// the filter is empty they are equal, which is plain NLMS.
    fn proportions(&mut self) {
        let bins = self.bins;
        for (share, weights) in self.shares.iter_mut().zip(self.weights.chunks_exact(bins)) {
            *share = weights.iter().map(Bin::norm_sqr).sum::<f32>().sqrt();
        }
        let largest = self.shares.iter().copied().fold(0.0f32, f32::max);
        let floor = 0.1 * largest + 1e-12;
        let total: f32 = self.shares.iter().map(|s| s + floor).sum();
        for share in &mut self.shares {
            *share = (*share + floor) / total;
        }
    }

    /// True when every weight is finite (tests).
    #[cfg(test)]
    pub fn weights_finite(&self) -> bool {
        self.weights.iter().all(|w| w.re.is_finite() && w.im.is_finite())
    }
}
