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

mod design;
mod engine;
mod kernels;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::{memory, AudioError};
use design::{cached_filter, Phase, PhaseTable, PolyphaseFilter};
use engine::LaneTaps;
use kernels::Kernel;

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

/// Coefficients are padded to a multiple of the widest SIMD block.
const BLOCK: usize = 16;
/// Outputs computed together when they share a phase.
const SHARED: usize = 8;

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
            .and_then(|()| {
                memory::reserve(&mut self.scratch_in, input.len(), "the resampler's input")
            });
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
        memory::reserve(
            history,
            frames.saturating_add(headroom),
            "the resampler's history",
        )?;
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
