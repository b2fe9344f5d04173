//! Streaming voice activity detection with the Realtime API's `server_vad` semantics.
//!
//! Two layers:
//! - a frame detector: the input is averaged down to an 8 kHz analysis signal (so every input
//!   rate sees the same 0-4 kHz speech band), pre-emphasised (no DC, a lighter low end), and
//!   each frame's short-lag autocorrelation gives a smoothed spectrum in ten speech bands.
//!   Each band's energy is compared with that band's adaptive noise floor; the mean excess SNR
//!   over the bands decides the frame, with an onset confirmation, hysteresis and a hangover
//!   set by the length of the speech run and by the noise. A slow path, the same excess
//!   averaged over 150 ms, finds talkers a few dB under the noise once the stream is noisy.
//!   Per-band floors make coloured noise (pink, hum) cost only the bands it occupies.
//! - the turn state machine: `speech_started` once the detector says speech, dated back to the
//!   start of the confirming run minus `prefix_padding_ms`; `speech_stopped` after
//!   `silence_duration_ms` without speech heard (the detector's hangover frames count as
//!   silence here: that silence bridges pauses already), dated at the last heard frame's end
//!   plus that silence. Both count milliseconds from the first sample ever given, like the
//!   server.
//!
//! Nothing allocates per frame: the detector keeps one fixed-size frame buffer, and input
//! chunks of any size stream through it, so any chunking of a stream gives the same decisions.

use crate::{simd, AudioError};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::__m256;

/// Input rates the detector accepts.
pub const SAMPLE_RATES: [u32; 4] = [8000, 16000, 24000, 48000];
/// Frame durations the detector accepts, in milliseconds.
pub const FRAME_DURATIONS_MS: [u32; 3] = [10, 20, 30];

const ANALYSIS_RATE: u32 = 8000;
/// Autocorrelation lags 0..LAGS-1 of the analysis signal: about 500 Hz of spectral resolution.
const LAGS: usize = 17;
/// First-order pre-emphasis: removes DC and tames the strong low end of pink noise and hum,
/// whose leakage would otherwise swamp the lowest bands.
const PRE_EMPHASIS: f32 = 0.9;
const HISTORY: usize = LAGS - 1;
const MAX_FRAME_LEN: usize = (ANALYSIS_RATE as usize / 1000) * 30;
/// Centres of the analysis bands, in Hz: the formant region where voiced speech lives.
const BAND_CENTRES_HZ: [f64; BANDS] = [
    250.0, 500.0, 750.0, 1000.0, 1300.0, 1600.0, 2000.0, 2400.0, 2900.0, 3400.0,
];
const BANDS: usize = 10;
/// Shortest analysis window, in ms.
const MIN_WINDOW_MS: u32 = 20;
/// Energy per band (per analysis sample) below which everything counts as silence, so digital
/// silence or faint dither cannot make a whisper look like a loud SNR.
const ABSOLUTE_FLOOR: f32 = 1e-7;

/// Mean band power SNR (dB) a frame needs at `threshold` 0, 0.5 (the tuned default) and 1,
/// linear in between: the lower half fine-tunes sensitivity, the upper half asks for speech
/// well above the noise.
const SNR_DB_AT_THRESHOLD_0: f32 = 0.5;
const SNR_DB_AT_THRESHOLD_HALF: f32 = 2.2;
const SNR_DB_AT_THRESHOLD_1: f32 = 20.0;
/// Once speaking, a frame keeps the speech going at this many dB less.
const HYSTERESIS_DB: f32 = 3.0;
/// Each band counts only by how far it exceeds its floor (`energy / floor - 1`, at least 0), so
/// the many bands a formant does not reach add no noise to the decision.
const EXCESS_KNEE: f32 = 1.0;
const MIN_THRESHOLD_OFF_DB: f32 = 1.2;
/// Consecutive speech-like frames (in ms) that confirm an onset.
const ONSET_MS: u32 = 20;
/// Hangover after a speech run shorter than `LONG_RUN_MS`: on the labelled set such short runs
/// are mostly the loudest syllable of a word in noise, so they are held longest. A click still
/// has to last `ONSET_MS` to count at all.
const HANGOVER_SHORT_MS: u32 = 200;
const LONG_RUN_MS: u32 = 90;
/// After a word-length run the hangover depends on how far speech stands above the noise: in
/// clean audio the detector sees every syllable and needs little; near 0 dB the weak
/// consonants between vowels are lost in the noise and a longer hangover bridges them.
const HANGOVER_CLEAN_MS: f32 = 40.0;
const HANGOVER_NOISY_MS: f32 = 160.0;
const CLEAN_SNR_DB: f32 = 22.0;
const NOISY_SNR_DB: f32 = 8.0;
/// Smoothing of the speech SNR estimate, per speech frame (about a second of speech); the
/// estimate starts at `CLEAN_SNR_DB`.
const SPEECH_SNR_SMOOTHING: f32 = 0.011;
/// Noise floor tracking, per band, in power; it is never below the minimum of the last two
/// seconds, so that a step up in the noise is absorbed even while it reads as speech.
/// Rates per 10 ms: non-speech frames pull the floor toward their energy (an unbiased mean of
/// the noise power); a frame well below the floor (a drop in the noise) pulls it fast; speech
/// frames let it creep up slowly, so that a louder steady noise cannot hold speech forever.
const FLOOR_FOLLOW: f32 = 0.05;
const FLOOR_FALL: f32 = 0.2;
const FLOOR_DROP: f32 = 0.5;
const FLOOR_CREEP_DB_PER_S: f32 = 1.0;
const WARMUP_MS: u32 = 100;
/// The slow path: a quiet talker a few dB under the noise raises each band only a little, too
/// little for one frame to show, but steadily. The mean band excess over the last
/// `SLOW_WINDOW_MS` (each band's `energy / floor - 1`, capped at `SLOW_CAP` so that the loud
/// frames of a word just ended cannot hold it up) has a small variance on steady noise, so a
/// low threshold on it finds such talkers. Its threshold is the frame threshold in dB times
/// `SLOW_THRESHOLD_SCALE`. It runs only once the speech seen so far stands less than
/// `SLOW_SPEECH_SNR_DB` above the noise: in cleaner audio every word shows frame by frame, and
/// the window would only prolong each word by a few frames.
const SLOW_WINDOW_MS: u32 = 150;
const SLOW_SPEECH_SNR_DB: f32 = 7.5;
const SLOW_WINDOW_MAX: usize = 32;
const SLOW_CAP: f32 = 1.3;
const SLOW_THRESHOLD_SCALE: f32 = 0.3125;
const MIN_WINDOW_SLOTS: usize = 8;
const MIN_SLOT_MS: u32 = 250;

/// A sample type the detector reads: float32 in [-1, 1] or int16 PCM.
pub trait Sample: Copy + lanes::Lanes {
    fn to_f32(self) -> f32;
    fn check(samples: &[Self]) -> Result<(), AudioError>;
}

/// Vector loads of samples as float32, scaled exactly like `Sample::to_f32`, for the
/// decimation kernels (sealed: only f32 and i16 implement it).
mod lanes {
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::{__m256, __m512};

    pub trait Lanes: Copy {
        /// Eight samples from `ptr`.
        ///
        /// # Safety
        /// AVX2 is available and `ptr` points to eight readable samples.
        #[cfg(target_arch = "x86_64")]
        unsafe fn load8(ptr: *const Self) -> __m256;
        /// Sixteen samples from `ptr`.
        ///
        /// # Safety
        /// AVX-512F is available and `ptr` points to sixteen readable samples.
        #[cfg(target_arch = "x86_64")]
        unsafe fn load16(ptr: *const Self) -> __m512;
    }

    #[cfg(target_arch = "x86_64")]
    impl Lanes for f32 {
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn load8(ptr: *const Self) -> __m256 {
            // SAFETY: the caller guarantees eight readable floats.
            unsafe { std::arch::x86_64::_mm256_loadu_ps(ptr) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load16(ptr: *const Self) -> __m512 {
            // SAFETY: the caller guarantees sixteen readable floats.
            unsafe { std::arch::x86_64::_mm512_loadu_ps(ptr) }
        }
    }

    #[cfg(target_arch = "x86_64")]
    impl Lanes for i16 {
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn load8(ptr: *const Self) -> __m256 {
            use std::arch::x86_64::{
                _mm256_cvtepi16_epi32, _mm256_cvtepi32_ps, _mm256_mul_ps, _mm256_set1_ps,
                _mm_loadu_si128,
            };
            // SAFETY: the caller guarantees eight readable int16 (16 bytes).
            let pcm = unsafe { _mm_loadu_si128(ptr.cast()) };
            _mm256_mul_ps(
                _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(pcm)),
                _mm256_set1_ps(1.0 / 32768.0),
            )
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load16(ptr: *const Self) -> __m512 {
            use std::arch::x86_64::{
                _mm256_loadu_si256, _mm512_cvtepi16_epi32, _mm512_cvtepi32_ps, _mm512_mul_ps,
                _mm512_set1_ps,
            };
            // SAFETY: the caller guarantees sixteen readable int16 (32 bytes).
            let pcm = unsafe { _mm256_loadu_si256(ptr.cast()) };
            _mm512_mul_ps(
                _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(pcm)),
                _mm512_set1_ps(1.0 / 32768.0),
            )
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    impl Lanes for f32 {}
    #[cfg(not(target_arch = "x86_64"))]
    impl Lanes for i16 {}
}

impl Sample for f32 {
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    fn check(samples: &[Self]) -> Result<(), AudioError> {
        // x * 0 is 0 for finite x and NaN otherwise; eight lanes let this vectorise.
        let mut lanes = [0.0f32; 8];
        let mut chunks = samples.chunks_exact(8);
        for chunk in &mut chunks {
            for (lane, &x) in lanes.iter_mut().zip(chunk) {
                *lane += x * 0.0;
            }
        }
        let finite = lanes
            .iter()
            .chain(chunks.remainder())
            .all(|x| x.is_finite());
        if finite {
            Ok(())
        } else {
            Err(AudioError::invalid(
                "samples must be finite (found NaN or infinity)",
            ))
        }
    }
}

impl Sample for i16 {
    #[inline]
    fn to_f32(self) -> f32 {
        // A power-of-two scale is exact, so int16 and its float32 image decide identically.
        f32::from(self) * (1.0 / 32768.0)
    }
    fn check(_: &[Self]) -> Result<(), AudioError> {
        Ok(())
    }
}

/// The `server_vad` knobs plus the stream's format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    pub sample_rate: u32,
    /// 0..1; higher needs louder speech (relative to the noise) to count.
    pub threshold: f32,
    /// Audio before the detected onset included in `audio_start_ms`.
    pub prefix_padding_ms: u32,
    /// Non-speech needed to end a turn; included in `audio_end_ms`.
    pub silence_duration_ms: u32,
    pub frame_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            sample_rate: 24000,
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
            frame_ms: 10,
        }
    }
}

/// A turn boundary, in milliseconds of audio counted from the first sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    SpeechStarted { audio_start_ms: u64 },
    SpeechStopped { audio_end_ms: u64 },
}

/// What the detector says about one frame.
#[derive(Debug, Clone, Copy)]
struct FrameVerdict {
    /// The frame's decision, hangover included (what `classify` returns).
    speech: bool,
    /// Speech heard in this very frame, not held by the hangover: the turn machine counts
    /// `silence_duration_ms` from the last such frame, since that silence already bridges the
    /// pauses the hangover is there for.
    heard: bool,
    /// When this frame confirmed an onset, how many frames back (this one included) the
    /// speech began; else 0.
    confirmed_run: u32,
}

/// The per-frame speech detector (no turn logic).
#[derive(Debug, Clone)]
struct FrameDetector {
    /// Input samples averaged into one analysis sample.
    decimation: usize,
    decimation_scale: f32,
    partial_sum: f32,
    partial_count: usize,
    /// Analysis samples (input averaged down to 8 kHz): the previous frame's last, then this frame's.
    raw: [f32; 1 + MAX_FRAME_LEN],
    frame_len: usize,
    frame_ms: u32,
    /// Pre-emphasised analysis samples: `HISTORY` zeros, then this frame. The zeros make the lag
    /// sums the frame's own (biased) autocorrelation, which is positive definite: with a
    /// non-negative lag window every band energy is then non-negative, even next to a strong
    /// tone, so weak bands cannot fake a jump.
    buffer: [f32; HISTORY + MAX_FRAME_LEN],
    filled: usize,
    /// `band_weights[lag][band]`: lags outermost, so each band accumulates independently.
    band_weights: [[f32; BANDS]; LAGS],
    two_frame_window: bool,
    previous_lags: [f32; LAGS],
    floor: [f32; BANDS],
    frames_seen: u64,
    warmup_frames: u64,
    slot_minimum: [[f32; BANDS]; MIN_WINDOW_SLOTS],
    slot_frames: u32,
    frames_per_slot: u32,
    slot_index: usize,
    threshold_on: f32,
    threshold_off: f32,
    floor_follow: f32,
    floor_fall: f32,
    floor_creep: f32,
    onset_frames: u32,
    hangover_short: u32,
    /// Speech frames' mean band SNR, smoothed, in dB.
    speech_snr_db: f32,
    long_run_frames: u32,
    speech_run: u32,
    candidate_run: u32,
    hangover_left: u32,
    in_speech: bool,
    /// The last frames' capped mean band excess (a ring of `slow_len` entries).
    slow_ring: [f32; SLOW_WINDOW_MAX],
    slow_len: usize,
    slow_next: usize,
    slow_threshold: f32,
}

impl FrameDetector {
    fn new(config: &VadConfig) -> Self {
        let decimation = (config.sample_rate / ANALYSIS_RATE) as usize;
        let frames = |ms: u32| ms.div_ceil(config.frame_ms);
        let mut band_weights = [[0.0f32; BANDS]; LAGS];
        for (band, centre) in BAND_CENTRES_HZ.into_iter().enumerate() {
            for (lag, weights) in band_weights.iter_mut().enumerate() {
                let weight = &mut weights[band];
                // Parzen lag window (see `lag_window`).
                let window = lag_window(lag as f64 / LAGS as f64);
                let phase =
                    2.0 * std::f64::consts::PI * centre * lag as f64 / f64::from(ANALYSIS_RATE);
                let symmetric = if lag == 0 { 1.0 } else { 2.0 };
                *weight = (window * symmetric * phase.cos()) as f32;
            }
        }
        let threshold_db = if config.threshold <= 0.5 {
            SNR_DB_AT_THRESHOLD_0
                + (SNR_DB_AT_THRESHOLD_HALF - SNR_DB_AT_THRESHOLD_0) * 2.0 * config.threshold
        } else {
            SNR_DB_AT_THRESHOLD_HALF
                + (SNR_DB_AT_THRESHOLD_1 - SNR_DB_AT_THRESHOLD_HALF)
                    * 2.0
                    * (config.threshold - 0.5)
        };
        let power_ratio = |db: f32| 10f32.powf(db / 10.0);
        let per_frame = |rate: f32| 1.0 - (1.0 - rate).powf(config.frame_ms as f32 / 10.0);
        Self {
            decimation,
            decimation_scale: 1.0 / decimation as f32,
            partial_sum: 0.0,
            partial_count: 0,
            raw: [0.0; 1 + MAX_FRAME_LEN],
            frame_len: (ANALYSIS_RATE / 1000 * config.frame_ms) as usize,
            frame_ms: config.frame_ms,
            buffer: [0.0; HISTORY + MAX_FRAME_LEN],
            filled: 0,
            band_weights,
            two_frame_window: config.frame_ms < MIN_WINDOW_MS,
            previous_lags: [0.0; LAGS],
            floor: [0.0; BANDS],
            frames_seen: 0,
            warmup_frames: u64::from(frames(WARMUP_MS)),
            slot_minimum: [[f32::INFINITY; BANDS]; MIN_WINDOW_SLOTS],
            slot_frames: 0,
            frames_per_slot: frames(MIN_SLOT_MS),
            slot_index: 0,
            threshold_on: power_ratio(threshold_db),
            threshold_off: power_ratio((threshold_db - HYSTERESIS_DB).max(MIN_THRESHOLD_OFF_DB)),
            floor_follow: per_frame(FLOOR_FOLLOW),
            floor_fall: per_frame(FLOOR_FALL),
            floor_creep: power_ratio(FLOOR_CREEP_DB_PER_S * config.frame_ms as f32 / 1000.0),
            onset_frames: frames(ONSET_MS).max(1),
            hangover_short: frames(HANGOVER_SHORT_MS),
            speech_snr_db: CLEAN_SNR_DB,
            long_run_frames: frames(LONG_RUN_MS),
            speech_run: 0,
            candidate_run: 0,
            hangover_left: 0,
            in_speech: false,
            slow_ring: [0.0; SLOW_WINDOW_MAX],
            slow_len: (frames(SLOW_WINDOW_MS) as usize).clamp(1, SLOW_WINDOW_MAX),
            slow_next: 0,
            slow_threshold: power_ratio(threshold_db * SLOW_THRESHOLD_SCALE) - 1.0,
        }
    }

    fn reset(&mut self) {
        self.partial_sum = 0.0;
        self.partial_count = 0;
        self.raw = [0.0; 1 + MAX_FRAME_LEN];
        self.buffer = [0.0; HISTORY + MAX_FRAME_LEN];
        self.filled = 0;
        self.floor = [0.0; BANDS];
        self.previous_lags = [0.0; LAGS];
        self.frames_seen = 0;
        self.slot_minimum = [[f32::INFINITY; BANDS]; MIN_WINDOW_SLOTS];
        self.slot_frames = 0;
        self.slot_index = 0;
        self.speech_run = 0;
        self.candidate_run = 0;
        self.hangover_left = 0;
        self.speech_snr_db = CLEAN_SNR_DB;
        self.in_speech = false;
        self.slow_ring = [0.0; SLOW_WINDOW_MAX];
        self.slow_next = 0;
    }

    /// Feeds samples; calls `on_frame` with the verdict on each completed frame.
    #[inline]
    fn feed<S: Sample>(&mut self, samples: &[S], mut on_frame: impl FnMut(FrameVerdict)) {
        let mut rest = samples;
        // Finish a pending analysis sample left by the previous chunk.
        while self.partial_count != 0 && !rest.is_empty() {
            self.partial_sum += rest[0].to_f32();
            self.partial_count += 1;
            rest = &rest[1..];
            if self.partial_count == self.decimation {
                self.raw[1 + self.filled] = self.partial_sum * self.decimation_scale;
                self.partial_sum = 0.0;
                self.partial_count = 0;
                self.filled += 1;
                if self.filled == self.frame_len {
                    on_frame(self.analyse_frame());
                }
            }
        }
        loop {
            // Whole groups straight into the frame, then analyse it.
            let whole = (rest.len() / self.decimation).min(self.frame_len - self.filled);
            let out = &mut self.raw[1 + self.filled..1 + self.filled + whole];
            let (head, tail) = rest.split_at(whole * self.decimation);
            match self.decimation {
                1 => decimate::<S, 1>(head, out, self.decimation_scale),
                2 => decimate::<S, 2>(head, out, self.decimation_scale),
                3 => decimate::<S, 3>(head, out, self.decimation_scale),
                _ => decimate::<S, 6>(head, out, self.decimation_scale),
            }
            rest = tail;
            self.filled += whole;
            if self.filled < self.frame_len {
                break;
            }
            on_frame(self.analyse_frame());
        }
        for &x in rest {
            self.partial_sum += x.to_f32();
            self.partial_count += 1;
        }
    }

    fn analyse_frame(&mut self) -> FrameVerdict {
        let n = self.frame_len;
        // Pre-emphasis from the raw analysis samples (raw[0] ends the previous frame).
        for ((out, &x), &previous) in self.buffer[HISTORY..HISTORY + n]
            .iter_mut()
            .zip(&self.raw[1..=n])
            .zip(&self.raw[..n])
        {
            *out = x - PRE_EMPHASIS * previous;
        }
        self.raw[0] = self.raw[n];
        let frame_lags = autocorrelation(&self.buffer[..HISTORY + n], n);
        self.filled = 0;
        // Short frames are analysed over a window of two frames: twice the degrees of freedom
        // in each band's energy, so steady noise varies less from frame to frame.
        let (lags, window_len) = if self.two_frame_window {
            let mut lags = frame_lags;
            for (sum, previous) in lags.iter_mut().zip(&self.previous_lags) {
                *sum += previous;
            }
            self.previous_lags = frame_lags;
            (lags, 2 * n)
        } else {
            (frame_lags, n)
        };

        let scale = 1.0 / window_len as f32;
        let mut energy = [0.0f32; BANDS];
        for (lag, weights) in lags.iter().zip(&self.band_weights) {
            for (band, weight) in energy.iter_mut().zip(weights) {
                *band += weight * lag;
            }
        }
        for band in &mut energy {
            *band = band.max(0.0) * scale + ABSOLUTE_FLOOR;
        }

        if self.frames_seen == 0 {
            self.floor = energy;
        }
        self.frames_seen += 1;
        let warming_up = self.frames_seen <= self.warmup_frames;

        // Mean posterior SNR over the bands, in power: one band far above its floor (a
        // formant) weighs as much as several bands a little above theirs.
        let mut excess_per_band = [0.0f32; BANDS];
        for ((excess, band_energy), floor) in
            excess_per_band.iter_mut().zip(&energy).zip(&self.floor)
        {
            *excess = (band_energy / floor - EXCESS_KNEE).max(0.0);
        }
        let snr_sum: f32 = excess_per_band.iter().sum();
        let excess = snr_sum * (1.0 / BANDS as f32);
        let snr = excess + EXCESS_KNEE;
        let needed = if self.in_speech {
            self.threshold_off
        } else {
            self.threshold_on
        };
        // The slow path (see `SLOW_WINDOW_MS`): the capped excess of this frame joins the ring.
        let capped: f32 = energy
            .iter()
            .zip(&self.floor)
            .map(|(band_energy, floor)| (band_energy / floor - 1.0).min(SLOW_CAP))
            .sum::<f32>()
            * (1.0 / BANDS as f32);
        self.slow_ring[self.slow_next] = capped;
        self.slow_next = (self.slow_next + 1) % self.slow_len;
        let slow = self.slow_ring[..self.slow_len].iter().sum::<f32>() / self.slow_len as f32;
        let slow_like = self.speech_snr_db < SLOW_SPEECH_SNR_DB && slow > self.slow_threshold;
        let speech_like = !warming_up && (snr > needed || slow_like);

        let mut confirmed_run = 0;
        if speech_like {
            self.candidate_run += 1;
            if self.in_speech {
                self.speech_run += 1;
                self.speech_snr_db +=
                    SPEECH_SNR_SMOOTHING * (10.0 * snr.log10() - self.speech_snr_db);
                self.hangover_left = if self.speech_run >= self.long_run_frames {
                    self.long_hangover()
                } else {
                    self.hangover_short
                };
            } else if self.candidate_run >= self.onset_frames {
                self.in_speech = true;
                self.speech_run = self.candidate_run;
                self.hangover_left = self.hangover_short;
                confirmed_run = self.candidate_run;
            }
        } else {
            self.candidate_run = 0;
            if self.in_speech {
                if self.hangover_left == 0 {
                    self.in_speech = false;
                    self.speech_run = 0;
                } else {
                    self.hangover_left -= 1;
                }
            }
        }

        self.track_floor(&energy, speech_like);
        FrameVerdict {
            speech: self.in_speech,
            heard: self.in_speech && speech_like,
            confirmed_run,
        }
    }

    fn long_hangover(&self) -> u32 {
        let noisiness =
            ((CLEAN_SNR_DB - self.speech_snr_db) / (CLEAN_SNR_DB - NOISY_SNR_DB)).clamp(0.0, 1.0);
        let ms = HANGOVER_CLEAN_MS + (HANGOVER_NOISY_MS - HANGOVER_CLEAN_MS) * noisiness;
        (ms / self.frame_ms as f32).ceil() as u32
    }

    fn track_floor(&mut self, energy: &[f32; BANDS], speech_like: bool) {
        let warming_up = self.frames_seen <= self.warmup_frames;
        let slot = &mut self.slot_minimum[self.slot_index];
        for band in 0..BANDS {
            let energy = energy[band];
            slot[band] = slot[band].min(energy);
            let floor = &mut self.floor[band];
            if warming_up {
                *floor += 0.5 * (energy - *floor);
            } else if energy < FLOOR_DROP * *floor && !speech_like {
                *floor += self.floor_fall * (energy - *floor);
            } else if !speech_like {
                *floor += self.floor_follow * (energy - *floor);
            } else {
                *floor *= self.floor_creep;
            }
        }
        self.slot_frames += 1;
        if self.slot_frames == self.frames_per_slot {
            self.slot_frames = 0;
            // The window is full once every slot has seen frames: then its minimum bounds the
            // floor from below.
            let window_full =
                self.frames_seen >= u64::from(self.frames_per_slot) * MIN_WINDOW_SLOTS as u64;
            if window_full {
                for band in 0..BANDS {
                    let minimum = self
                        .slot_minimum
                        .iter()
                        .map(|s| s[band])
                        .fold(f32::INFINITY, f32::min);
                    if minimum > self.floor[band] {
                        self.floor[band] = minimum;
                    }
                }
            }
            self.slot_index = (self.slot_index + 1) % MIN_WINDOW_SLOTS;
            self.slot_minimum[self.slot_index] = [f32::INFINITY; BANDS];
        }
    }
}

/// Parzen lag window at `u` = lag / LAGS in [0, 1): its transform is non-negative (so band
/// energies are too) and its side lobes fall as 1/f^4, so the strong low end of pink noise or
/// hum barely leaks into the speech bands.
fn lag_window(u: f64) -> f64 {
    if u <= 0.5 {
        1.0 - 6.0 * u * u + 6.0 * u * u * u
    } else {
        2.0 * (1.0 - u).powi(3)
    }
}

/// Averages each group of `M` input samples into one analysis sample, summing each group in
/// order (`0 + x0 + x1 + ...`) exactly as the streaming path does when a group straddles two
/// chunks; the vector kernels sum the same way, one group per lane, so all agree bit for bit.
#[inline]
fn decimate<S: Sample, const M: usize>(input: &[S], out: &mut [f32], scale: f32) {
    let input = &input[..out.len() * M];
    #[allow(unused_mut)]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        if simd::enabled(&[simd::Feature::Avx512F]) {
            // SAFETY: AVX-512F is available; the kernel reads only `input[..done * M]`.
            done = unsafe { decimate_avx512::<S, M>(input, out, scale) };
        } else if simd::enabled(&[simd::Feature::Avx2]) {
            // SAFETY: AVX2 is available; the kernel reads only `input[..done * M]`.
            done = unsafe { decimate_avx2::<S, M>(input, out, scale) };
        }
    }
    decimate_portable::<S, M>(&input[done * M..], &mut out[done..], scale);
}

fn decimate_portable<S: Sample, const M: usize>(input: &[S], out: &mut [f32], scale: f32) {
    for (analysis, group) in out.iter_mut().zip(input.chunks_exact(M)) {
        let mut sum = 0.0f32;
        for &x in group {
            sum += x.to_f32();
        }
        *analysis = sum * scale;
    }
}

/// Indices of column `k` (sample `k` of each group) when `LANES` groups of `M` samples are
/// laid out one after the other.
#[cfg(target_arch = "x86_64")]
#[inline]
fn column_indices<const LANES: usize, const M: usize>(k: usize) -> [i32; LANES] {
    std::array::from_fn(|group| (M * group + k) as i32)
}

/// Bit `j` set when sample `k` of group `j` lies in vector `source` (of `width` floats).
#[cfg(target_arch = "x86_64")]
#[inline]
fn lanes_from<const LANES: usize, const M: usize>(k: usize, source: usize, width: usize) -> u32 {
    (0..LANES).fold(0, |mask, group| {
        if (M * group + k) / width == source {
            mask | 1 << group
        } else {
            mask
        }
    })
}

/// Sixteen groups per step: the `M` input vectors are read once, column `k` is gathered from
/// them with two-source permutes (32 floats each), and the columns are summed in order.
/// Returns how many analysis samples it wrote (a multiple of 16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn decimate_avx512<S: Sample, const M: usize>(
    input: &[S],
    out: &mut [f32],
    scale: f32,
) -> usize {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_loadu_si512, _mm512_mask_mov_ps, _mm512_mul_ps,
        _mm512_permutex2var_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };
    let steps = out.len() / 16;
    debug_assert!(input.len() >= out.len() * M);
    let scale = _mm512_set1_ps(scale);
    for step in 0..steps {
        let mut rows = [_mm512_setzero_ps(); M];
        for (r, row) in rows.iter_mut().enumerate() {
            // SAFETY: (step + 1) * 16 * M <= out.len() * M <= input.len().
            *row = unsafe { S::load16(input.as_ptr().add((step * M + r) * 16)) };
        }
        let mut sum = _mm512_setzero_ps();
        for k in 0..M {
            let column = if M == 1 {
                rows[0]
            } else {
                let indices = column_indices::<16, M>(k);
                // SAFETY: `indices` holds sixteen i32.
                let indices = unsafe { _mm512_loadu_si512(indices.as_ptr().cast()) };
                // The permute reads the low five bits of each index: one pair of rows at a time.
                let mut column = _mm512_permutex2var_ps(rows[0], indices, rows[1]);
                for pair in 1..M.div_ceil(2) {
                    let second = rows[(2 * pair + 1).min(M - 1)];
                    let picked = _mm512_permutex2var_ps(rows[2 * pair], indices, second);
                    let mask = lanes_from::<16, M>(k, pair, 32) as u16;
                    column = _mm512_mask_mov_ps(column, mask, picked);
                }
                column
            };
            sum = _mm512_add_ps(sum, column);
        }
        // SAFETY: step * 16 + 16 <= out.len().
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(step * 16), _mm512_mul_ps(sum, scale)) };
    }
    steps * 16
}

/// Eight groups per step; column `k` is gathered with one-source permutes and blends.
/// Returns how many analysis samples it wrote (a multiple of 8).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn decimate_avx2<S: Sample, const M: usize>(
    input: &[S],
    out: &mut [f32],
    scale: f32,
) -> usize {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_blendv_ps, _mm256_castsi256_ps, _mm256_loadu_si256, _mm256_mul_ps,
        _mm256_permutevar8x32_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let steps = out.len() / 8;
    debug_assert!(input.len() >= out.len() * M);
    let scale = _mm256_set1_ps(scale);
    for step in 0..steps {
        let mut rows = [_mm256_setzero_ps(); M];
        for (r, row) in rows.iter_mut().enumerate() {
            // SAFETY: (step + 1) * 8 * M <= out.len() * M <= input.len().
            *row = unsafe { S::load8(input.as_ptr().add((step * M + r) * 8)) };
        }
        let mut sum = _mm256_setzero_ps();
        for k in 0..M {
            let column = if M == 1 {
                rows[0]
            } else {
                let indices = column_indices::<8, M>(k);
                // SAFETY: `indices` holds eight i32.
                let indices = unsafe { _mm256_loadu_si256(indices.as_ptr().cast()) };
                let mut column = _mm256_setzero_ps();
                for (r, &row) in rows.iter().enumerate() {
                    let mask = lanes_from::<8, M>(k, r, 8);
                    if mask == 0 {
                        continue;
                    }
                    let selector: [i32; 8] =
                        std::array::from_fn(|lane| if mask >> lane & 1 == 1 { -1 } else { 0 });
                    // SAFETY: `selector` holds eight i32.
                    let selector = _mm256_castsi256_ps(unsafe {
                        _mm256_loadu_si256(selector.as_ptr().cast())
                    });
                    // The permute reads the low three bits of each index.
                    let picked = _mm256_permutevar8x32_ps(row, indices);
                    column = _mm256_blendv_ps(column, picked, selector);
                }
                column
            };
            sum = _mm256_add_ps(sum, column);
        }
        // SAFETY: step * 8 + 8 <= out.len().
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(step * 8), _mm256_mul_ps(sum, scale)) };
    }
    steps * 8
}

/// `r[k] = sum over the frame of x[n] * x[n - k]`, reading `HISTORY` samples before it (zeros
/// in the detector). Every build sums in eight lanes (`lane j` takes samples `j, j + 8, ...`)
/// and reduces them in the same order, without FMA, so the SSE2, AVX and portable versions
/// agree bit for bit and the result does not depend on how the input was chunked.
#[inline]
fn autocorrelation(buffer: &[f32], n: usize) -> [f32; LAGS] {
    assert!(n.is_multiple_of(8) && buffer.len() >= HISTORY + n);
    #[cfg(target_arch = "x86_64")]
    {
        use simd::Feature::{Avx, Avx512F, Avx512Vl, Sse2};
        if simd::enabled(&[Avx, Avx512F, Avx512Vl]) {
            // SAFETY: the features are available and the assert bounds every load.
            return unsafe { autocorrelation_avx512(buffer, n) };
        }
        if simd::enabled(&[Avx]) {
            // SAFETY: AVX is available (checked above) and the assert bounds every load.
            return unsafe { autocorrelation_avx(buffer, n) };
        }
        if simd::enabled(&[Sse2]) {
            // SAFETY: SSE2 is available; the assert bounds every load.
            return unsafe { autocorrelation_sse2(buffer, n) };
        }
    }
    autocorrelation_portable(buffer, n)
}

#[inline]
fn reduce_lanes(acc: [f32; 8]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

fn autocorrelation_portable(buffer: &[f32], n: usize) -> [f32; LAGS] {
    let current = &buffer[HISTORY..HISTORY + n];
    let mut lags = [0.0f32; LAGS];
    for (lag, out) in lags.iter_mut().enumerate() {
        let delayed = &buffer[HISTORY - lag..HISTORY - lag + n];
        let mut acc = [0.0f32; 8];
        for (a, b) in current.chunks_exact(8).zip(delayed.chunks_exact(8)) {
            for j in 0..8 {
                acc[j] += a[j] * b[j];
            }
        }
        *out = reduce_lanes(acc);
    }
    lags
}

/// All lags at once, one accumulator each, so the sums run side by side instead of waiting on
/// one another's additions: nine lags then eight (sixteen registers), or all seventeen when
/// AVX-512VL gives thirty-two.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn autocorrelation_avx(buffer: &[f32], n: usize) -> [f32; LAGS] {
    let mut lags = [0.0f32; LAGS];
    // SAFETY: the caller asserted n % 8 == 0 and HISTORY + n <= buffer.len().
    unsafe {
        lag_sums_avx::<0, 9>(buffer, n, &mut lags);
        lag_sums_avx::<9, 8>(buffer, n, &mut lags);
    }
    lags
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,avx512f,avx512vl")]
unsafe fn autocorrelation_avx512(buffer: &[f32], n: usize) -> [f32; LAGS] {
    let mut lags = [0.0f32; LAGS];
    // SAFETY: the caller asserted n % 8 == 0 and HISTORY + n <= buffer.len().
    unsafe { lag_sums_avx::<0, LAGS>(buffer, n, &mut lags) };
    lags
}

/// Lags `FIRST..FIRST + COUNT`, each summed in eight lanes and reduced like the portable build.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx")]
unsafe fn lag_sums_avx<const FIRST: usize, const COUNT: usize>(
    buffer: &[f32],
    n: usize,
    lags: &mut [f32; LAGS],
) {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let base = buffer.as_ptr();
    let mut sums = [_mm256_setzero_ps(); COUNT];
    let mut i = 0;
    while i < n {
        // SAFETY: i + 8 <= n, HISTORY + n <= buffer.len() and FIRST + COUNT <= LAGS = HISTORY + 1.
        unsafe {
            let current = _mm256_loadu_ps(base.add(HISTORY + i));
            for (offset, sum) in sums.iter_mut().enumerate() {
                let delayed = _mm256_loadu_ps(base.add(HISTORY - FIRST - offset + i));
                *sum = _mm256_add_ps(*sum, _mm256_mul_ps(current, delayed));
            }
        }
        i += 8;
    }
    let whole = COUNT / 8 * 8;
    for (block, eight) in sums[..whole].chunks_exact(8).enumerate() {
        let eight: &[__m256; 8] = eight.try_into().expect("eight sums");
        // SAFETY: FIRST + whole <= LAGS, so eight floats fit from FIRST + 8 * block.
        unsafe {
            _mm256_storeu_ps(
                lags.as_mut_ptr().add(FIRST + 8 * block),
                reduce_eight(eight),
            );
        }
    }
    for (offset, sum) in sums.iter().enumerate().skip(whole) {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds eight floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *sum) };
        lags[FIRST + offset] = reduce_lanes(lanes);
    }
}

/// `reduce_lanes` of eight sums at once, adding the same pairs in the same order: the 128-bit
/// halves give `a[j] + a[j + 4]`, then two rounds of horizontal adds pair those up.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx")]
fn reduce_eight(sums: &[__m256; 8]) -> __m256 {
    use std::arch::x86_64::{_mm256_add_ps, _mm256_hadd_ps, _mm256_permute2f128_ps};
    let halves = |k: usize| {
        let low = _mm256_permute2f128_ps::<0x20>(sums[k], sums[k + 4]);
        let high = _mm256_permute2f128_ps::<0x31>(sums[k], sums[k + 4]);
        _mm256_add_ps(low, high)
    };
    let first = _mm256_hadd_ps(halves(0), halves(1));
    let second = _mm256_hadd_ps(halves(2), halves(3));
    _mm256_hadd_ps(first, second)
}

#[cfg(target_arch = "x86_64")]
unsafe fn autocorrelation_sse2(buffer: &[f32], n: usize) -> [f32; LAGS] {
    use std::arch::x86_64::{_mm_add_ps, _mm_loadu_ps, _mm_mul_ps, _mm_setzero_ps, _mm_storeu_ps};
    let base = buffer.as_ptr();
    let mut lags = [0.0f32; LAGS];
    for (lag, out) in lags.iter_mut().enumerate() {
        // SAFETY: SSE2 is part of x86_64.
        let (mut low, mut high) = unsafe { (_mm_setzero_ps(), _mm_setzero_ps()) };
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n and HISTORY + n <= buffer.len() (asserted by the caller).
            unsafe {
                let a = base.add(HISTORY + i);
                let b = base.add(HISTORY - lag + i);
                low = _mm_add_ps(low, _mm_mul_ps(_mm_loadu_ps(a), _mm_loadu_ps(b)));
                high = _mm_add_ps(
                    high,
                    _mm_mul_ps(_mm_loadu_ps(a.add(4)), _mm_loadu_ps(b.add(4))),
                );
            }
            i += 8;
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds eight floats.
        unsafe {
            _mm_storeu_ps(lanes.as_mut_ptr(), low);
            _mm_storeu_ps(lanes.as_mut_ptr().add(4), high);
        }
        *out = reduce_lanes(lanes);
    }
    lags
}

/// A streaming voice activity detector with `server_vad` turn semantics.
#[derive(Debug, Clone)]
pub struct Vad {
    config: VadConfig,
    detector: FrameDetector,
    frames_done: u64,
    speaking: bool,
    last_speech_end_ms: u64,
    silence_ms: u64,
}

impl Vad {
    pub fn new(config: VadConfig) -> Result<Self, AudioError> {
        if !SAMPLE_RATES.contains(&config.sample_rate) {
            return Err(AudioError::invalid(format!(
                "sample_rate must be one of 8000, 16000, 24000 or 48000, got {}",
                config.sample_rate
            )));
        }
        if !FRAME_DURATIONS_MS.contains(&config.frame_ms) {
            return Err(AudioError::invalid(format!(
                "frame_ms must be 10, 20 or 30, got {}",
                config.frame_ms
            )));
        }
        if !(0.0..=1.0).contains(&config.threshold) {
            return Err(AudioError::invalid(format!(
                "threshold must be between 0 and 1, got {}",
                config.threshold
            )));
        }
        Ok(Self {
            detector: FrameDetector::new(&config),
            config,
            frames_done: 0,
            speaking: false,
            last_speech_end_ms: 0,
            silence_ms: 0,
        })
    }

    pub fn config(&self) -> &VadConfig {
        &self.config
    }

    /// Samples per frame at the input rate.
    pub fn frame_samples(&self) -> usize {
        (self.config.sample_rate / 1000 * self.config.frame_ms) as usize
    }

    /// True between `speech_started` and `speech_stopped`.
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// Milliseconds of audio fully analysed so far (whole frames).
    pub fn processed_ms(&self) -> u64 {
        self.frames_done * u64::from(self.config.frame_ms)
    }

    /// Back to the state of a new stream: the clock restarts at 0 and the noise floor is
    /// learnt again.
    pub fn reset(&mut self) {
        self.detector.reset();
        self.frames_done = 0;
        self.speaking = false;
        self.last_speech_end_ms = 0;
        self.silence_ms = 0;
    }

    /// The non-allocating core: for each completed frame, calls `on_frame(decision, event)`.
    pub fn feed<S: Sample>(
        &mut self,
        samples: &[S],
        mut on_frame: impl FnMut(bool, Option<VadEvent>),
    ) -> Result<(), AudioError> {
        S::check(samples)?;
        let frame_ms = u64::from(self.config.frame_ms);
        let padding = u64::from(self.config.prefix_padding_ms);
        let silence_needed = u64::from(self.config.silence_duration_ms);
        let Self {
            detector,
            frames_done,
            speaking,
            last_speech_end_ms,
            silence_ms,
            ..
        } = self;
        detector.feed(samples, |verdict| {
            let frame_start = *frames_done * frame_ms;
            *frames_done += 1;
            let frame_end = frame_start + frame_ms;
            let mut event = None;
            if verdict.heard {
                if !*speaking {
                    *speaking = true;
                    let onset = frame_end - u64::from(verdict.confirmed_run.max(1)) * frame_ms;
                    event = Some(VadEvent::SpeechStarted {
                        audio_start_ms: onset.saturating_sub(padding),
                    });
                }
                *last_speech_end_ms = frame_end;
                *silence_ms = 0;
            } else if *speaking {
                *silence_ms += frame_ms;
                if *silence_ms >= silence_needed {
                    *speaking = false;
                    event = Some(VadEvent::SpeechStopped {
                        audio_end_ms: *last_speech_end_ms + silence_needed,
                    });
                }
            }
            on_frame(verdict.speech, event);
        });
        Ok(())
    }

    /// Feeds a chunk and calls `on_event` for each turn boundary it completes.
    pub fn process_with<S: Sample>(
        &mut self,
        samples: &[S],
        mut on_event: impl FnMut(VadEvent),
    ) -> Result<(), AudioError> {
        self.feed(samples, |_, event| {
            if let Some(event) = event {
                on_event(event);
            }
        })
    }

    /// Feeds a chunk and returns the turn boundaries it completes.
    pub fn process<S: Sample>(&mut self, samples: &[S]) -> Result<Vec<VadEvent>, AudioError> {
        let mut events = Vec::new();
        self.process_with(samples, |event| events.push(event))?;
        Ok(events)
    }

    /// Feeds a chunk and appends one decision per completed frame to `decisions`.
    pub fn classify_into<S: Sample>(
        &mut self,
        samples: &[S],
        decisions: &mut Vec<bool>,
    ) -> Result<(), AudioError> {
        decisions.reserve(samples.len() / self.frame_samples() + 1);
        self.feed(samples, |speech, _| decisions.push(speech))
    }

    /// Feeds a chunk and returns one decision per completed frame.
    pub fn classify<S: Sample>(&mut self, samples: &[S]) -> Result<Vec<bool>, AudioError> {
        let mut decisions = Vec::new();
        self.classify_into(samples, &mut decisions)?;
        Ok(decisions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_noise::Noise;

    /// Noise with bursts of a harmonic, formant-like "vowel" between `bursts` (start, end) in s.
    fn signal(rate: u32, seconds: f32, bursts: &[(f32, f32)], noise_level: f32) -> Vec<f32> {
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        let n = (seconds * rate as f32) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let mut x = noise_level * noise.uniform();
                if bursts.iter().any(|&(a, b)| t >= a && t < b) {
                    for h in 1..20 {
                        let f = 140.0 * h as f32;
                        let formant = (-((f - 700.0) / 400.0).powi(2)).exp()
                            + 0.5 * (-((f - 1800.0) / 500.0).powi(2)).exp();
                        x += 0.2 * formant * (2.0 * std::f32::consts::PI * f * t).sin();
                    }
                }
                x
            })
            .collect()
    }

    fn config(rate: u32) -> VadConfig {
        VadConfig {
            sample_rate: rate,
            ..VadConfig::default()
        }
    }

    #[test]
    fn detects_a_burst_with_server_timing() {
        for rate in SAMPLE_RATES {
            let audio = signal(rate, 4.0, &[(1.0, 2.0)], 0.001);
            let mut vad = Vad::new(config(rate)).unwrap();
            let events = vad.process(&audio).unwrap();
            assert_eq!(events.len(), 2, "{rate}: {events:?}");
            let VadEvent::SpeechStarted { audio_start_ms } = events[0] else {
                panic!()
            };
            let VadEvent::SpeechStopped { audio_end_ms } = events[1] else {
                panic!()
            };
            // Onset at 1000 ms minus 300 ms of padding; end at 2000 ms (+ hangover) + 500 ms.
            assert!(
                (690..=730).contains(&audio_start_ms),
                "{rate}: {audio_start_ms}"
            );
            assert!(
                (2500..=2800).contains(&audio_end_ms),
                "{rate}: {audio_end_ms}"
            );
            assert!(!vad.speaking());
        }
    }

    #[test]
    fn any_chunking_gives_the_same_events_and_decisions() {
        let audio = signal(24000, 3.0, &[(0.7, 1.5), (2.0, 2.4)], 0.01);
        let mut whole = Vad::new(VadConfig::default()).unwrap();
        let expected = whole.classify(&audio).unwrap();
        let mut noise = Noise(7);
        let mut chunked = Vad::new(VadConfig::default()).unwrap();
        let mut decisions = Vec::new();
        let mut rest = &audio[..];
        while !rest.is_empty() {
            let size = ((noise.uniform() + 1.0) * 700.0) as usize % rest.len().max(1) + 1;
            let (head, tail) = rest.split_at(size.min(rest.len()));
            chunked.classify_into(head, &mut decisions).unwrap();
            rest = tail;
        }
        assert_eq!(decisions, expected);
        assert_eq!(expected.len(), 300);
    }

    #[test]
    fn int16_and_float32_agree() {
        let audio = signal(16000, 3.0, &[(1.0, 2.0)], 0.01);
        let pcm: Vec<i16> = audio
            .iter()
            .map(|x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            .collect();
        let image: Vec<f32> = pcm.iter().map(|&x| f32::from(x) / 32768.0).collect();
        let mut a = Vad::new(config(16000)).unwrap();
        let mut b = Vad::new(config(16000)).unwrap();
        assert_eq!(a.classify(&pcm).unwrap(), b.classify(&image).unwrap());
    }

    #[test]
    fn stationary_noise_and_silence_never_start_speech() {
        for level in [0.0, 1e-4, 0.003, 0.1] {
            let audio = signal(24000, 20.0, &[], level);
            let mut vad = Vad::new(VadConfig::default()).unwrap();
            assert_eq!(vad.process(&audio).unwrap(), vec![], "level {level}");
        }
    }

    #[test]
    fn reset_restarts_the_clock() {
        let audio = signal(8000, 3.0, &[(1.0, 2.0)], 0.001);
        let mut vad = Vad::new(config(8000)).unwrap();
        let first = vad.process(&audio).unwrap();
        vad.reset();
        assert_eq!(vad.processed_ms(), 0);
        assert_eq!(vad.process(&audio).unwrap(), first);
    }

    /// The whole detector at every level this CPU has against the portable code (`simd`):
    /// the same decisions and events, for float and PCM16 input, at every rate and frame size.
    #[test]
    fn every_simd_level_matches_the_scalar_path() {
        for rate in SAMPLE_RATES {
            let audio = signal(rate, 3.0, &[(0.5, 1.4), (2.0, 2.6)], 0.01);
            let pcm: Vec<i16> = audio.iter().map(|&x| (x * 20_000.0) as i16).collect();
            for frame_ms in FRAME_DURATIONS_MS {
                let config = VadConfig { sample_rate: rate, frame_ms, ..VadConfig::default() };
                simd::assert_every_level_matches_scalar(&format!("vad at {rate} Hz, {frame_ms} ms"), || {
                    let mut vad = Vad::new(config).unwrap();
                    let decisions = vad.classify(&audio).unwrap();
                    vad.reset();
                    (decisions, vad.process(&pcm).unwrap())
                });
            }
        }
    }

    #[test]
    fn every_autocorrelation_build_agrees_bit_for_bit() {
        let mut noise = Noise(3);
        let buffer: Vec<f32> = (0..HISTORY + MAX_FRAME_LEN)
            .map(|_| noise.uniform())
            .collect();
        for n in [80, 160, 240] {
            let bits = |lags: [f32; LAGS]| lags.map(f32::to_bits);
            let portable = autocorrelation_portable(&buffer, n);
            assert_eq!(bits(autocorrelation(&buffer, n)), bits(portable));
            simd::assert_every_level_matches_scalar("autocorrelation", || bits(autocorrelation(&buffer, n)));
            assert_eq!(simd::with_cap(simd::Level::Scalar, || bits(autocorrelation(&buffer, n))), bits(portable));
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is part of x86_64; AVX is checked before use.
            unsafe {
                assert_eq!(bits(autocorrelation_sse2(&buffer, n)), bits(portable));
                if simd::enabled(&[simd::Feature::Avx]) {
                    assert_eq!(bits(autocorrelation_avx(&buffer, n)), bits(portable));
                }
                if simd::enabled(&[simd::Feature::Avx, simd::Feature::Avx512F, simd::Feature::Avx512Vl]) {
                    assert_eq!(bits(autocorrelation_avx512(&buffer, n)), bits(portable));
                }
            }
            // And the lag sums are the textbook ones (to rounding).
            for (lag, &value) in portable.iter().enumerate() {
                let exact: f64 = (0..n)
                    .map(|i| f64::from(buffer[HISTORY + i]) * f64::from(buffer[HISTORY + i - lag]))
                    .sum();
                assert!(
                    (f64::from(value) - exact).abs() < 1e-4,
                    "lag {lag}: {value} vs {exact}"
                );
            }
        }
    }

    /// Every decimation kernel gives the scalar group sums bit for bit, for both sample types,
    /// every decimation factor and lengths that leave a scalar tail.
    #[test]
    fn every_decimation_build_agrees_bit_for_bit() {
        fn check<S: Sample + std::fmt::Debug, const M: usize>(input: &[S]) {
            let scale = 1.0 / M as f32;
            for outputs in [0, 1, 7, 8, 15, 16, 17, 40, 80, 83] {
                let input = &input[..outputs * M];
                let mut portable = vec![0.0f32; outputs];
                decimate_portable::<S, M>(input, &mut portable, scale);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                // The scalar path is the textbook mean (to rounding).
                for (group, &value) in input.chunks_exact(M).zip(&portable) {
                    let exact = group.iter().map(|x| f64::from(x.to_f32())).sum::<f64>() / M as f64;
                    assert!(
                        (f64::from(value) - exact).abs() <= 1e-6,
                        "{value} vs {exact}"
                    );
                }
                for level in simd::levels() {
                    let mut dispatched = vec![f32::NAN; outputs];
                    simd::with_cap(level, || decimate::<S, M>(input, &mut dispatched, scale));
                    assert_eq!(bits(&dispatched), bits(&portable), "M={M} n={outputs} {}", level.name());
                }
                #[cfg(target_arch = "x86_64")]
                {
                    let tail = |kernel: unsafe fn(&[S], &mut [f32], f32) -> usize| {
                        let mut out = vec![f32::NAN; outputs];
                        // SAFETY: the caller checked the CPU features.
                        let done = unsafe { kernel(input, &mut out, scale) };
                        assert!(done <= outputs && outputs - done < 16);
                        assert_eq!(bits(&out[..done]), bits(&portable[..done]), "M={M}");
                        assert!(out[done..].iter().all(|x| x.is_nan()), "wrote past {done}");
                    };
                    if simd::enabled(&[simd::Feature::Avx2]) {
                        tail(decimate_avx2::<S, M>);
                    }
                    if simd::enabled(&[simd::Feature::Avx512F]) {
                        tail(decimate_avx512::<S, M>);
                    }
                }
            }
        }
        let mut noise = Noise(11);
        let len = 83 * 6;
        // Signed zeros and full-scale values included: the sums must match to the sign of zero.
        let floats: Vec<f32> = (0..len)
            .map(|i| match i % 37 {
                0 => -0.0,
                1 => 1.0,
                2 => -1.0,
                _ => noise.uniform() * if i % 5 == 0 { 1e-4 } else { 1.0 },
            })
            .collect();
        let ints: Vec<i16> = (0..len)
            .map(|i| match i % 29 {
                0 => i16::MIN,
                1 => i16::MAX,
                _ => (noise.uniform() * 32767.0) as i16,
            })
            .collect();
        check::<f32, 1>(&floats);
        check::<f32, 2>(&floats);
        check::<f32, 3>(&floats);
        check::<f32, 6>(&floats);
        check::<i16, 1>(&ints);
        check::<i16, 2>(&ints);
        check::<i16, 3>(&ints);
        check::<i16, 6>(&ints);
    }

    #[test]
    fn rejects_bad_configuration_and_samples() {
        assert!(Vad::new(VadConfig {
            sample_rate: 44100,
            ..VadConfig::default()
        })
        .is_err());
        assert!(Vad::new(VadConfig {
            frame_ms: 15,
            ..VadConfig::default()
        })
        .is_err());
        assert!(Vad::new(VadConfig {
            threshold: 1.5,
            ..VadConfig::default()
        })
        .is_err());
        assert!(Vad::new(VadConfig {
            threshold: f32::NAN,
            ..VadConfig::default()
        })
        .is_err());
        let mut vad = Vad::new(VadConfig::default()).unwrap();
        assert!(vad.process(&[0.0, f32::NAN]).is_err());
        assert_eq!(vad.processed_ms(), 0);
    }
}
