//! A deterministic noise source for the core's tests (no dependency needed): one xorshift
//! generator shared by the VAD's and the echo canceller's synthetic signals.

/// A deterministic xorshift source of uniform and roughly Gaussian noise, seeded by its field.
pub struct Noise(pub u64);

impl Noise {
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    /// Roughly Gaussian (a sum of four uniforms), unit variance.
    pub fn gaussian(&mut self) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() * 0.866
    }
}
