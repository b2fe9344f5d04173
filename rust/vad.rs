//! Streaming voice activity detection with the Realtime API's `server_vad` semantics.
//!
//! Two layers:
//! - a frame detector: the input is averaged down to an 8 kHz analysis signal (so every input
//!   rate sees the same 0-4 kHz speech band), pre-emphasised (no DC, no hum-heavy low end),
//!   and each frame's short-lag autocorrelation gives a smoothed spectrum in a few speech
//!   bands. Each band's log energy is compared with that band's adaptive noise floor; the mean
//!   band SNR decides the frame, with an onset confirmation, hysteresis and a hangover that
//!   grows with the length of the speech run. Per-band floors make coloured noise (pink, hum,
//!   babble) cost only the bands it occupies.
//! - the turn state machine: `speech_started` once the detector says speech, dated back to the
//!   start of the confirming run minus `prefix_padding_ms`; `speech_stopped` after
//!   `silence_duration_ms` of non-speech, dated at the last speech frame's end plus that
//!   silence. Both count milliseconds from the first sample ever given, like the server.
//!
//! Nothing allocates per frame: the detector keeps one fixed-size frame buffer, and input
//! chunks of any size stream through it, so any chunking of a stream gives the same decisions.

use crate::AudioError;

/// Input rates the detector accepts.
pub const SAMPLE_RATES: [u32; 4] = [8000, 16000, 24000, 48000];
/// Frame durations the detector accepts, in milliseconds.
pub const FRAME_DURATIONS_MS: [u32; 3] = [10, 20, 30];

const ANALYSIS_RATE: u32 = 8000;
/// Autocorrelation lags 0..LAGS-1 of the analysis signal: about 1 kHz of spectral resolution.
const LAGS: usize = 9;
const HISTORY: usize = LAGS - 1;
const MAX_FRAME_LEN: usize = (ANALYSIS_RATE as usize / 1000) * 30;
/// Centres of the analysis bands, in Hz: the formant region where voiced speech lives.
const BAND_CENTRES_HZ: [f64; BANDS] = [500.0, 1100.0, 1700.0, 2400.0, 3200.0];
const BANDS: usize = 5;
/// Shortest analysis window, in ms.
const MIN_WINDOW_MS: u32 = 20;
/// Energy per band (per analysis sample) below which everything counts as silence, so digital
/// silence or faint dither cannot make a whisper look like a loud SNR.
const ABSOLUTE_FLOOR: f32 = 1e-9;

/// Mean band power SNR (dB) a frame needs at `threshold` 0, 0.5 (the tuned default) and 1,
/// linear in between: the lower half fine-tunes sensitivity, the upper half asks for speech
/// well above the noise.
const SNR_DB_AT_THRESHOLD_0: f32 = 0.5;
const SNR_DB_AT_THRESHOLD_HALF: f32 = 2.0;
const SNR_DB_AT_THRESHOLD_1: f32 = 20.0;
/// Once speaking, a frame keeps the speech going at this many dB less.
const HYSTERESIS_DB: f32 = 3.0;
const MIN_THRESHOLD_OFF_DB: f32 = 1.5;
/// Consecutive speech-like frames (in ms) that confirm an onset.
const ONSET_MS: u32 = 20;
/// Hangover after a speech run: short runs (clicks) get little, real words get more.
const HANGOVER_SHORT_MS: u32 = 80;
const HANGOVER_LONG_MS: u32 = 150;
const LONG_RUN_MS: u32 = 150;
/// Noise floor tracking, per band, in power: falls fast toward quieter frames,
/// rises only in non-speech frames, and is never below the minimum of the last couple of
/// seconds, so that a step up in the noise is absorbed even while it reads as speech.
/// Rates per 10 ms: non-speech frames pull the floor toward their energy (an unbiased mean of
/// the noise power); a frame well below the floor (a drop in the noise) pulls it fast; speech
/// frames let it creep up slowly, so that a louder steady noise cannot hold speech forever.
const FLOOR_FOLLOW: f32 = 0.05;
const FLOOR_FALL: f32 = 0.2;
const FLOOR_DROP: f32 = 0.5;
const FLOOR_CREEP_DB_PER_S: f32 = 1.0;
const WARMUP_MS: u32 = 100;
const MIN_WINDOW_SLOTS: usize = 8;
const MIN_SLOT_MS: u32 = 250;

/// A sample type the detector reads: float32 in [-1, 1] or int16 PCM.
pub trait Sample: Copy {
    fn to_f32(self) -> f32;
    fn check(samples: &[Self]) -> Result<(), AudioError>;
}

impl Sample for f32 {
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    fn check(samples: &[Self]) -> Result<(), AudioError> {
        if samples.iter().all(|x| x.is_finite()) {
            Ok(())
        } else {
            Err(AudioError::invalid("samples must be finite (found NaN or infinity)"))
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

/// The per-frame speech detector (no turn logic).
#[derive(Debug, Clone)]
struct FrameDetector {
    /// Input samples averaged into one analysis sample.
    decimation: usize,
    decimation_scale: f32,
    partial_sum: f32,
    partial_count: usize,
    previous_analysis_sample: f32,
    frame_len: usize,
    /// Pre-emphasised analysis samples: `HISTORY` from the previous frame, then this frame.
    buffer: [f32; HISTORY + MAX_FRAME_LEN],
    filled: usize,
    band_weights: [[f32; LAGS]; BANDS],
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
    hangover_long: u32,
    long_run_frames: u32,
    speech_run: u32,
    candidate_run: u32,
    hangover_left: u32,
    in_speech: bool,
}

impl FrameDetector {
    fn new(config: &VadConfig) -> Self {
        let decimation = (config.sample_rate / ANALYSIS_RATE) as usize;
        let frames = |ms: u32| ms.div_ceil(config.frame_ms);
        let mut band_weights = [[0.0f32; LAGS]; BANDS];
        for (weights, centre) in band_weights.iter_mut().zip(BAND_CENTRES_HZ) {
            for (lag, weight) in weights.iter_mut().enumerate() {
                // Bartlett lag window: its transform is non-negative, so band energies are too.
                let window = 1.0 - lag as f64 / LAGS as f64;
                let phase = 2.0 * std::f64::consts::PI * centre * lag as f64 / f64::from(ANALYSIS_RATE);
                let symmetric = if lag == 0 { 1.0 } else { 2.0 };
                *weight = (window * symmetric * phase.cos()) as f32;
            }
        }
        let threshold_db = if config.threshold <= 0.5 {
            SNR_DB_AT_THRESHOLD_0 + (SNR_DB_AT_THRESHOLD_HALF - SNR_DB_AT_THRESHOLD_0) * 2.0 * config.threshold
        } else {
            SNR_DB_AT_THRESHOLD_HALF
                + (SNR_DB_AT_THRESHOLD_1 - SNR_DB_AT_THRESHOLD_HALF) * 2.0 * (config.threshold - 0.5)
        };
        let power_ratio = |db: f32| 10f32.powf(db / 10.0);
        let per_frame = |rate: f32| 1.0 - (1.0 - rate).powf(config.frame_ms as f32 / 10.0);
        Self {
            decimation,
            decimation_scale: 1.0 / decimation as f32,
            partial_sum: 0.0,
            partial_count: 0,
            previous_analysis_sample: 0.0,
            frame_len: (ANALYSIS_RATE / 1000 * config.frame_ms) as usize,
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
            hangover_long: frames(HANGOVER_LONG_MS),
            long_run_frames: frames(LONG_RUN_MS),
            speech_run: 0,
            candidate_run: 0,
            hangover_left: 0,
            in_speech: false,
        }
    }

    fn reset(&mut self) {
        self.partial_sum = 0.0;
        self.partial_count = 0;
        self.previous_analysis_sample = 0.0;
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
        self.in_speech = false;
    }

    /// Feeds samples; calls `on_frame(decision, confirmed_run_frames)` for each completed frame.
    /// `confirmed_run_frames` is how many frames back (this one included) the speech began when
    /// this frame is the one that confirmed an onset, else 0.
    #[inline]
    fn feed<S: Sample>(&mut self, samples: &[S], mut on_frame: impl FnMut(bool, u32)) {
        let mut rest = samples;
        // Finish a pending analysis sample left by the previous chunk.
        while self.partial_count != 0 && !rest.is_empty() {
            self.partial_sum += rest[0].to_f32();
            self.partial_count += 1;
            rest = &rest[1..];
            if self.partial_count == self.decimation {
                let sum = self.partial_sum;
                self.partial_sum = 0.0;
                self.partial_count = 0;
                if let Some(frame) = self.push_analysis_sample(sum) {
                    on_frame(frame.0, frame.1);
                }
            }
        }
        let mut groups = rest.chunks_exact(self.decimation);
        loop {
            // Fill the frame from whole groups in a tight loop, then analyse it.
            let room = self.frame_len - self.filled;
            let mut pushed = 0;
            for group in groups.by_ref().take(room) {
                let mut sum = 0.0f32;
                for &x in group {
                    sum += x.to_f32();
                }
                let x = sum * self.decimation_scale;
                self.buffer[HISTORY + self.filled + pushed] = x - self.previous_analysis_sample;
                self.previous_analysis_sample = x;
                pushed += 1;
            }
            self.filled += pushed;
            if self.filled < self.frame_len {
                break;
            }
            let (speech, run) = self.analyse_frame();
            on_frame(speech, run);
        }
        for &x in groups.remainder() {
            self.partial_sum += x.to_f32();
            self.partial_count += 1;
        }
    }

    #[inline]
    fn push_analysis_sample(&mut self, sum: f32) -> Option<(bool, u32)> {
        let x = sum * self.decimation_scale;
        self.buffer[HISTORY + self.filled] = x - self.previous_analysis_sample;
        self.previous_analysis_sample = x;
        self.filled += 1;
        (self.filled == self.frame_len).then(|| self.analyse_frame())
    }

    fn analyse_frame(&mut self) -> (bool, u32) {
        let n = self.frame_len;
        let frame_lags = autocorrelation(&self.buffer[..HISTORY + n], n);
        self.buffer.copy_within(n..n + HISTORY, 0);
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
        for (band_energy, weights) in energy.iter_mut().zip(&self.band_weights) {
            let band: f32 = weights.iter().zip(&lags).map(|(w, r)| w * r).sum();
            *band_energy = band.max(0.0) * scale + ABSOLUTE_FLOOR;
        }

        if self.frames_seen == 0 {
            self.floor = energy;
        }
        self.frames_seen += 1;
        let warming_up = self.frames_seen <= self.warmup_frames;

        // Mean posterior SNR over the bands, in power: one band far above its floor (a
        // formant) weighs as much as several bands a little above theirs.
        let mut snr_sum = 0.0f32;
        for (band_energy, floor) in energy.iter().zip(&self.floor) {
            snr_sum += band_energy / floor;
        }
        let snr = snr_sum * (1.0 / BANDS as f32);
        let needed = if self.in_speech { self.threshold_off } else { self.threshold_on };
        let speech_like = !warming_up && snr > needed;

        let mut confirmed_run = 0;
        if speech_like {
            self.candidate_run += 1;
            if self.in_speech {
                self.speech_run += 1;
                self.hangover_left = if self.speech_run >= self.long_run_frames {
                    self.hangover_long
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
        (self.in_speech, confirmed_run)
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
            } else if energy < FLOOR_DROP * *floor {
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
            let window_full = self.frames_seen >= u64::from(self.frames_per_slot) * MIN_WINDOW_SLOTS as u64;
            if window_full {
                for band in 0..BANDS {
                    let minimum = self.slot_minimum.iter().map(|s| s[band]).fold(f32::INFINITY, f32::min);
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

/// `r[k] = sum over the frame of x[n] * x[n - k]`, reaching `HISTORY` samples into the
/// previous frame. Eight independent accumulators let the compiler vectorise the sums while
/// keeping the result independent of how the input was chunked.
#[inline]
fn autocorrelation(buffer: &[f32], n: usize) -> [f32; LAGS] {
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
        *out = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
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
        let Self { detector, frames_done, speaking, last_speech_end_ms, silence_ms, .. } = self;
        detector.feed(samples, |speech, confirmed_run| {
            let frame_start = *frames_done * frame_ms;
            *frames_done += 1;
            let frame_end = frame_start + frame_ms;
            let mut event = None;
            if speech {
                if !*speaking {
                    *speaking = true;
                    let onset = frame_end - u64::from(confirmed_run.max(1)) * frame_ms;
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
            on_frame(speech, event);
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

    /// A deterministic xorshift noise source (no dependency needed for tests).
    struct Noise(u64);
    impl Noise {
        fn uniform(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

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
        VadConfig { sample_rate: rate, ..VadConfig::default() }
    }

    #[test]
    fn detects_a_burst_with_server_timing() {
        for rate in SAMPLE_RATES {
            let audio = signal(rate, 4.0, &[(1.0, 2.0)], 0.001);
            let mut vad = Vad::new(config(rate)).unwrap();
            let events = vad.process(&audio).unwrap();
            assert_eq!(events.len(), 2, "{rate}: {events:?}");
            let VadEvent::SpeechStarted { audio_start_ms } = events[0] else { panic!() };
            let VadEvent::SpeechStopped { audio_end_ms } = events[1] else { panic!() };
            // Onset at 1000 ms minus 300 ms of padding; end at 2000 ms (+ hangover) + 500 ms.
            assert!((690..=730).contains(&audio_start_ms), "{rate}: {audio_start_ms}");
            assert!((2500..=2800).contains(&audio_end_ms), "{rate}: {audio_end_ms}");
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
        let pcm: Vec<i16> = audio.iter().map(|x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16).collect();
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

    #[test]
    fn rejects_bad_configuration_and_samples() {
        assert!(Vad::new(VadConfig { sample_rate: 44100, ..VadConfig::default() }).is_err());
        assert!(Vad::new(VadConfig { frame_ms: 15, ..VadConfig::default() }).is_err());
        assert!(Vad::new(VadConfig { threshold: 1.5, ..VadConfig::default() }).is_err());
        assert!(Vad::new(VadConfig { threshold: f32::NAN, ..VadConfig::default() }).is_err());
        let mut vad = Vad::new(VadConfig::default()).unwrap();
        assert!(vad.process(&[0.0, f32::NAN]).is_err());
        assert_eq!(vad.processed_ms(), 0);
    }
}
