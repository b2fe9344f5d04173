//! Delay estimation: how late the reference's echo reaches the microphone, so a device's
//! output-to-input latency needs no tuning.
//!
//! Both signals are reduced to 1 ms envelopes (the RMS of each millisecond), which a
//! loudspeaker's nonlinearity, the room's colouring and a phase-shifting device leave alike;
//! their slow trend is removed (a one-pole high-pass over about 100 ms), and for every lag
//! from 0 to `MAX_ESTIMATED_DELAY_MS` the product of the microphone's envelope with the
//! reference's envelope that much earlier is accumulated with a leak of about 2 s. The lag
//! with the largest correlation is the delay, once the reference has been active long enough
//! and the peak stands out of the other lags. Constant work per millisecond (one
//! multiply-add per lag), nothing allocated after construction.

/// The longest delay searched, in milliseconds.
pub const MAX_ESTIMATED_DELAY_MS: usize = 250;
/// Envelope trend removal per millisecond (about 100 ms).
const TREND_RATE: f32 = 0.01;
/// Correlation memory per millisecond (about 2 s).
const CORRELATION_LEAK: f32 = 1.0 - 1.0 / 2000.0;
/// A reference millisecond below this RMS (about -70 dBFS) is silence.
const SILENT_RMS: f32 = 3e-4;
/// The reference must have been active this long before an estimate is given.
const MIN_ACTIVE_MS: u32 = 1000;
/// The peak must exceed the lags' mean absolute correlation by this factor.
const MIN_PEAK_RATIO: f32 = 3.0;

pub struct DelayEstimator {
    /// Per frame, the boundaries of its 1 ms blocks (`frame_ms + 1` sample offsets).
    bounds: Vec<usize>,
    /// The last `MAX_ESTIMATED_DELAY_MS + 1` detrended reference envelope values (a ring).
    history: Vec<f32>,
    position: usize,
    correlation: Vec<f32>,
    mic_trend: f32,
    reference_trend: f32,
    active_ms: u32,
}

impl DelayEstimator {
    /// For frames of `frame` samples lasting `frame_ms`.
    pub fn new(frame: usize, frame_ms: u32) -> Self {
        let blocks = frame_ms as usize;
        Self {
            bounds: (0..=blocks).map(|b| b * frame / blocks).collect(),
            history: vec![0.0; MAX_ESTIMATED_DELAY_MS + 1],
            position: 0,
            correlation: vec![0.0; MAX_ESTIMATED_DELAY_MS + 1],
            mic_trend: 0.0,
            reference_trend: 0.0,
            active_ms: 0,
        }
    }

    pub fn reset(&mut self) {
        self.history.fill(0.0);
        self.position = 0;
        self.correlation.fill(0.0);
        self.mic_trend = 0.0;
        self.reference_trend = 0.0;
        self.active_ms = 0;
    }

    /// Takes one frame of the microphone and of the reference (as given, before any delay).
    pub fn observe(&mut self, mic: &[f32], reference: &[f32]) {
        let lags = self.history.len();
        for b in 0..self.bounds.len() - 1 {
            let block = self.bounds[b]..self.bounds[b + 1];
            let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt();
            let (m, r) = (rms(&mic[block.clone()]), rms(&reference[block]));
            if r > SILENT_RMS {
                self.active_ms = self.active_ms.saturating_add(1);
            }
            self.mic_trend += TREND_RATE * (m - self.mic_trend);
            self.reference_trend += TREND_RATE * (r - self.reference_trend);
            let (m, r) = (m - self.mic_trend, r - self.reference_trend);
            self.position = (self.position + 1) % lags;
            self.history[self.position] = r;
            // Lag k pairs with the value k places back in the ring: lags 0..=position walk
            // back from `position` to 0, the rest from the end of the ring down.
            let (recent, older) = self.history.split_at(self.position + 1);
            let (near_lags, far_lags) = self.correlation.split_at_mut(self.position + 1);
            for (c, &earlier) in near_lags.iter_mut().zip(recent.iter().rev()) {
                *c = CORRELATION_LEAK * *c + m * earlier;
            }
            for (c, &earlier) in far_lags.iter_mut().zip(older.iter().rev()) {
                *c = CORRELATION_LEAK * *c + m * earlier;
            }
        }
    }

    /// The estimated delay in milliseconds, or `None` until the estimate is trustworthy.
    pub fn delay_ms(&self) -> Option<u32> {
        if self.active_ms < MIN_ACTIVE_MS {
            return None;
        }
        let (mut best, mut peak, mut total) = (0usize, f32::MIN, 0.0f32);
        for (lag, &c) in self.correlation.iter().enumerate() {
            total += c.abs();
            if c > peak {
                (best, peak) = (lag, c);
            }
        }
        let mean = total / self.correlation.len() as f32;
        (peak > 0.0 && peak > MIN_PEAK_RATIO * mean).then_some(best as u32)
    }
}
