//! The canceller's properties on synthetic rooms: an exponentially decaying random impulse
//! response (a diffuse reverberant tail after a direct path), deterministic noise sources.

use super::*;
use crate::simd;
use crate::test_noise::Noise;

/// A room: `direct_ms` of delay, then a tail decaying by 60 dB in `rt60_s`, `len_ms` long.
fn room(rate: u32, direct_ms: f32, rt60_s: f32, len_ms: f32, seed: u64) -> Vec<f32> {
    let mut noise = Noise(seed);
    let len = (rate as f32 * len_ms / 1000.0) as usize;
    let direct = (rate as f32 * direct_ms / 1000.0) as usize;
    let decay = (-6.9 / (rt60_s * rate as f32)).exp();
    let mut ir = vec![0.0; len];
    ir[direct] = 0.5;
    let mut gain = 0.2;
    for tap in ir.iter_mut().skip(direct + 1) {
        *tap += gain * noise.gaussian();
        gain *= decay;
    }
    ir
}

fn convolve(x: &[f32], h: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for (i, &xi) in x.iter().enumerate() {
        if xi == 0.0 {
            continue;
        }
        for (j, &hj) in h.iter().enumerate().take(x.len() - i) {
            y[i + j] += xi * hj;
        }
    }
    y
}

/// Speech-like far-end: harmonics of a gliding pitch under moving formants, syllable bursts,
/// over a little noise (speech is what the canceller meets; white noise would be too easy).
fn talker(rate: u32, seconds: f32, pitch: f32, seed: u64) -> Vec<f32> {
    let mut noise = Noise(seed);
    let len = (rate as f32 * seconds) as usize;
    let mut phase = 0.0f32;
    (0..len)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let f0 = pitch * (1.0 + 0.15 * (2.0 * std::f32::consts::PI * 0.7 * t).sin());
            phase += f0 / rate as f32;
            let formant = 600.0 + 400.0 * (2.0 * std::f32::consts::PI * 1.3 * t).sin();
            let voiced: f32 = (1..20)
                .map(|h| {
                    let f = f0 * h as f32;
                    if f > rate as f32 / 2.0 {
                        return 0.0;
                    }
                    (-((f - formant) / 700.0).powi(2)).exp()
                        * (2.0 * std::f32::consts::PI * phase * h as f32).sin()
                })
                .sum();
            let envelope = (std::f32::consts::PI * 4.0 * t).sin().abs().powf(0.5);
            0.15 * envelope * voiced + 0.01 * noise.gaussian()
        })
        .collect()
}

/// Runs a canceller over whole frames of `mic` and `reference`; the output is realigned with
/// the microphone (its latency removed, the last frame's tail padded with zeros).
fn run(canceller: &mut EchoCanceller, mic: &[f32], reference: &[f32]) -> Vec<f32> {
    let n = canceller.frame_samples();
    let mut out = vec![0.0; mic.len()];
    for ((m, r), o) in mic.chunks_exact(n).zip(reference.chunks_exact(n)).zip(out.chunks_exact_mut(n)) {
        canceller.process(m, r, o).unwrap();
    }
    out.drain(..canceller.latency_samples());
    out.resize(mic.len(), 0.0);
    out
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

fn db(ratio: f64) -> f64 {
    10.0 * ratio.log10()
}

/// ERLE over `range` (in samples): microphone power over output power.
fn erle(mic: &[f32], out: &[f32], range: std::ops::Range<usize>) -> f64 {
    db(energy(&mic[range.clone()]) / energy(&out[range]).max(1e-20))
}

fn canceller(rate: u32, suppress: bool) -> EchoCanceller {
    EchoCanceller::new(EchoConfig { suppress, ..EchoConfig::new(rate) }).unwrap()
}

#[test]
fn cancels_the_echo_of_a_synthetic_room() {
    for rate in [16000, 48000] {
        let reference = talker(rate, 8.0, 130.0, 1);
        let ir = room(rate, 8.0, 0.3, 200.0, 2);
        let mut mic = convolve(&reference, &ir);
        let mut noise = Noise(3);
        for x in &mut mic {
            *x += 1e-4 * noise.gaussian();
        }
        let last_2s = mic.len() - 2 * rate as usize..mic.len() - rate as usize / 10;
        let linear = run(&mut canceller(rate, false), &mic, &reference);
        let full = run(&mut canceller(rate, true), &mic, &reference);
        let (linear_erle, full_erle) = (erle(&mic, &linear, last_2s.clone()), erle(&mic, &full, last_2s));
        println!("{rate} Hz: ERLE linear {linear_erle:.1} dB, with suppression {full_erle:.1} dB");
        assert!(linear_erle > 16.0, "{rate} Hz: linear ERLE {linear_erle:.1} dB");
        assert!(full_erle > linear_erle + 1.0, "{rate} Hz: ERLE with suppression {full_erle:.1} dB");
        assert!(full_erle > 19.0, "{rate} Hz: ERLE with suppression {full_erle:.1} dB");
    }
}

#[test]
fn silence_in_gives_silence_out_and_no_divergence() {
    let mut aec = canceller(16000, true);
    let zeros = vec![0.0f32; 160];
    let mut out = vec![1.0f32; 160];
    for _ in 0..500 {
        aec.process(&zeros, &zeros, &mut out).unwrap();
        assert!(out.iter().all(|&x| x == 0.0));
    }
    assert!(aec.filter.weights_finite());
    // Near-end alone (silent reference): passed through, one frame late.
    let near = talker(16000, 3.0, 210.0, 4);
    let out = run(&mut aec, &near, &vec![0.0; near.len()]);
    // (The last frame's output is still inside the canceller.)
    let whole = ..near.len() - 160;
    let error: Vec<f32> = near[whole].iter().zip(&out[whole]).map(|(a, b)| a - b).collect();
    assert!(db(energy(&near[whole]) / energy(&error)) > 60.0);
    assert_eq!(aec.divergences(), 0);
}

#[test]
fn a_pure_tone_does_not_make_it_diverge() {
    let rate = 16000;
    let reference: Vec<f32> = (0..rate as usize * 20)
        .map(|i| 0.3 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin())
        .collect();
    let ir = room(rate, 5.0, 0.4, 200.0, 5);
    let mic = convolve(&reference, &ir);
    let mut aec = canceller(rate, false);
    let out = run(&mut aec, &mic, &reference);
    assert!(aec.filter.weights_finite());
    assert_eq!(aec.divergences(), 0);
    let len = mic.len();
    // Every second after the first cancels, and the last ones as well as any.
    for second in 1..19 {
        let range = second * rate as usize..(second + 1) * rate as usize;
        let gain = erle(&mic, &out, range);
        assert!(gain > 10.0, "second {second}: {gain:.1} dB");
    }
    // Then a broadband reference through the same room: the tone-trained filter adapts on.
    let speech = talker(rate, 6.0, 120.0, 6);
    let mic2 = convolve(&speech, &ir);
    let out2 = run(&mut aec, &mic2, &speech);
    assert!(aec.filter.weights_finite());
    assert!(erle(&mic2, &out2, mic2.len() - 2 * rate as usize..mic2.len() - 200) > 15.0);
    assert!(len > 0);
}

#[test]
fn near_end_passes_once_the_reference_stops() {
    let rate = 16000;
    let ir = room(rate, 6.0, 0.3, 200.0, 7);
    let mut reference = talker(rate, 6.0, 130.0, 8);
    reference[4 * rate as usize..].fill(0.0);
    let echo = convolve(&reference, &ir);
    let mut near = talker(rate, 6.0, 220.0, 9);
    near[..4 * rate as usize].fill(0.0);
    let mic: Vec<f32> = echo.iter().zip(&near).map(|(a, b)| a + b).collect();
    let out = run(&mut canceller(rate, true), &mic, &reference);
    // From 300 ms after the reference stopped (the room's tail has died away), the output
    // is the near-end speech.
    let after = 4 * rate as usize + 3 * rate as usize / 10..mic.len() - 200;
    let error: Vec<f32> = near[after.clone()].iter().zip(&out[after.clone()]).map(|(a, b)| a - b).collect();
    let snr = db(energy(&near[after]) / energy(&error));
    assert!(snr > 20.0, "near-end SNR after the reference stopped: {snr:.1} dB");
}

#[test]
fn reset_forgets_everything() {
    let rate = 16000;
    let reference = talker(rate, 2.0, 130.0, 10);
    let mic = convolve(&reference, &room(rate, 5.0, 0.3, 150.0, 11));
    let mut fresh = canceller(rate, true);
    let first = run(&mut fresh, &mic, &reference);
    let again = run(&mut fresh, &mic, &reference);
    assert_ne!(first, again, "a warm canceller behaves differently");
    fresh.reset();
    assert_eq!(run(&mut fresh, &mic, &reference), first);
    assert_eq!(fresh.frames(), (mic.len() / 160) as u64);
}

/// The loudspeaker's clock runs `ppm` fast relative to the microphone's: the reference the
/// canceller is given is on the mic clock, the sound that reaches the mic is resampled.
fn drifted(signal: &[f32], ppm: f64) -> Vec<f32> {
    let ratio = 1.0 + ppm * 1e-6;
    (0..signal.len())
        .map(|i| {
            let time = i as f64 * ratio;
            let index = time.floor() as usize;
            let frac = (time - time.floor()) as f32;
            match (signal.get(index), signal.get(index + 1)) {
                (Some(&before), Some(&after)) => before + frac * (after - before),
                _ => 0.0,
            }
        })
        .collect()
}

#[test]
fn follows_a_clock_drift_of_100_ppm() {
    let rate = 16000;
    let reference = talker(rate, 20.0, 130.0, 12);
    let ir = room(rate, 10.0, 0.3, 150.0, 13);
    let seconds = [5, 10, 15, 18];
    let gains = |ppm: f64| {
        let mic = convolve(&drifted(&reference, ppm), &ir);
        let out = run(&mut canceller(rate, true), &mic, &reference);
        seconds.map(|second| erle(&mic, &out, second * rate as usize..(second + 1) * rate as usize))
    };
    let locked = gains(0.0);
    for ppm in [-100.0, 100.0] {
        // By 18 s the echo has slid by 1.8 ms (29 samples) against the reference: the
        // filter follows, at a cost (10 to 17 dB against locked clocks on this signal, which
        // reach 32-35 dB with the far-end-only comfort noise: the slow speech-driven
        // convergence chases a moving target).
        for ((second, gain), locked) in seconds.iter().zip(gains(ppm)).zip(locked) {
            assert!(gain > 14.0 && gain > locked - 18.0, "{ppm} ppm, second {second}: ERLE {gain:.1} dB (locked clocks {locked:.1} dB)");
        }
    }
}

#[test]
fn double_talk_keeps_the_near_end_and_the_filter() {
    let rate = 16000;
    let ir = room(rate, 8.0, 0.3, 200.0, 14);
    let reference = talker(rate, 10.0, 130.0, 15);
    let echo = convolve(&reference, &ir);
    let mut near = talker(rate, 10.0, 230.0, 16);
    near[..5 * rate as usize].fill(0.0);
    let mic: Vec<f32> = echo.iter().zip(&near).map(|(a, b)| a + b).collect();
    let mut aec = canceller(rate, false);
    let out = run(&mut aec, &mic, &reference);
    assert_eq!(aec.divergences(), 0);
    // The linear output is near + residual echo: its error against the near end is the
    // residual, which stays well below the echo through the double talk.
    let talk = 6 * rate as usize..mic.len() - 200;
    let residual: Vec<f32> = out[talk.clone()].iter().zip(&near[talk.clone()]).map(|(o, s)| o - s).collect();
    let kept = db(energy(&echo[talk]) / energy(&residual));
    assert!(kept > 15.0, "echo reduction during double talk: {kept:.1} dB");
}

#[test]
fn int16_and_float32_agree() {
    let rate = 16000;
    let reference = talker(rate, 2.0, 130.0, 17);
    let mic = convolve(&reference, &room(rate, 5.0, 0.3, 150.0, 18));
    let to_pcm = |x: &[f32]| x.iter().map(|&v| (v * 32768.0).round() as i16).collect::<Vec<_>>();
    let (mic16, ref16) = (to_pcm(&mic), to_pcm(&reference));
    let (mut a, mut b) = (canceller(rate, true), canceller(rate, true));
    let mut out16 = vec![0i16; 160];
    let mut out32 = vec![0f32; 160];
    let mic16_as_f32: Vec<f32> = mic16.iter().map(|&v| f32::from(v) / 32768.0).collect();
    let ref16_as_f32: Vec<f32> = ref16.iter().map(|&v| f32::from(v) / 32768.0).collect();
    for i in 0..mic.len() / 160 {
        let frame = i * 160..(i + 1) * 160;
        a.process(&mic16[frame.clone()], &ref16[frame.clone()], &mut out16).unwrap();
        b.process(&mic16_as_f32[frame.clone()], &ref16_as_f32[frame], &mut out32).unwrap();
        for (&x, &y) in out16.iter().zip(&out32) {
            assert_eq!(x, i16::from_f32(y));
        }
    }
}

#[test]
fn every_simd_level_matches_the_scalar_path() {
    let rate = 48000;
    let reference = talker(rate, 1.0, 130.0, 19);
    let mic = convolve(&reference, &room(rate, 5.0, 0.3, 100.0, 20));
    simd::assert_every_level_matches_scalar("echo canceller", || {
        run(&mut canceller(rate, true), &mic, &reference)
    });
    // The kernels alone, on lengths that leave remainders.
    let mut noise = Noise(21);
    for len in [1, 3, 4, 7, 161, 481] {
        let bins = |noise: &mut Noise| (0..len).map(|_| Bin::new(noise.gaussian(), noise.gaussian())).collect::<Vec<_>>();
        let (acc, a, b) = (bins(&mut noise), bins(&mut noise), bins(&mut noise));
        simd::assert_every_level_matches_scalar("multiply_accumulate", || {
            let mut acc = acc.clone();
            kernels::multiply_accumulate(&mut acc, &a, &b);
            acc
        });
        simd::assert_every_level_matches_scalar("conjugate_accumulate", || {
            let mut acc = acc.clone();
            kernels::conjugate_accumulate(&mut acc, &a, &b);
            acc
        });
        let mut acc2 = acc.clone();
        kernels::conjugate_accumulate(&mut acc2, &a, &b);
        for i in 0..len {
            let expected = acc[i] + a[i].conj() * b[i];
            assert!((acc2[i] - expected).norm() < 1e-5);
        }
    }
}

use fft::Bin;

#[test]
fn rejects_bad_configuration_and_frames() {
    let bad = |config: EchoConfig| EchoCanceller::new(config).err().unwrap().to_string();
    assert!(bad(EchoConfig::new(7999)).contains("sample_rate"));
    assert!(bad(EchoConfig::new(96000)).contains("sample_rate"));
    assert!(bad(EchoConfig { frame_ms: 15, ..EchoConfig::new(16000) }).contains("frame_ms"));
    assert!(bad(EchoConfig::new(11025)).contains("whole number"));
    assert!(bad(EchoConfig { filter_ms: 5, ..EchoConfig::new(16000) }).contains("filter_ms"));
    assert!(bad(EchoConfig { filter_ms: 1001, ..EchoConfig::new(16000) }).contains("filter_ms"));
    assert!(bad(EchoConfig { delay_ms: 1001, ..EchoConfig::new(16000) }).contains("delay_ms"));
    assert!(EchoCanceller::new(EchoConfig::new(44100)).is_ok());
    let mut aec = canceller(16000, true);
    let mut out = vec![0.0f32; 160];
    let error = aec.process(&[0.0f32; 159], &[0.0f32; 160], &mut out).unwrap_err();
    assert!(error.to_string().contains("mic must be one frame of 160 samples"), "{error}");
    assert!(aec.process(&[0.0f32; 160], &[0i16; 320], &mut out).is_err());
    let mut nan = [0.0f32; 160];
    nan[7] = f32::NAN;
    assert!(aec.process(&nan, &[0.0f32; 160], &mut out).unwrap_err().to_string().contains("finite"));
    assert!(aec.process(&[0.0f32; 160], &nan, &mut out).is_err());
    nan[7] = f32::INFINITY;
    assert!(aec.process(&[0.0f32; 160], &nan, &mut out).is_err());
    assert_eq!(aec.frames(), 0, "refused frames are not processed");
}

/// Counts this thread's allocations, to show `process` makes none.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    pub struct Counting;

    // SAFETY: forwards to the system allocator; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: the caller's contract is the system allocator's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    pub fn allocations() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }
}

#[test]
fn process_allocates_nothing() {
    for rate in [8000, 16000, 44100, 48000] {
        let reference = talker(rate, 1.0, 130.0, 22);
        let mic = convolve(&reference, &room(rate, 5.0, 0.3, 50.0, 23));
        let mut aec = EchoCanceller::new(EchoConfig { delay_ms: 20, ..EchoConfig::new(rate) }).unwrap();
        let n = aec.frame_samples();
        let mut out = vec![0.0f32; n];
        let mut out16 = vec![0i16; n];
        let pcm = vec![100i16; n];
        let before = counting::allocations();
        for (m, r) in mic.chunks_exact(n).zip(reference.chunks_exact(n)) {
            aec.process(m, r, &mut out).unwrap();
            aec.process(&pcm, r, &mut out16).unwrap();
        }
        aec.reset();
        assert_eq!(counting::allocations() - before, 0, "{rate} Hz");
    }
}


#[test]
fn pauses_in_the_far_end_do_not_restart_the_filter() {
    // Talk in sentences: digital silence between them, the room's tail dying out in the mic
    // while the echo estimate (with its small misadjustment) still rings. The error may then
    // exceed the microphone for a frame or two; that is no divergence.
    let rate = 16000;
    let mut reference = talker(rate, 12.0, 130.0, 24);
    for (i, x) in reference.iter_mut().enumerate() {
        if (i % (3 * rate as usize / 2)) >= rate as usize {
            *x = 0.0;
        }
    }
    let mic = convolve(&reference, &room(rate, 6.0, 0.4, 240.0, 25));
    let mut aec = canceller(rate, false);
    let out = run(&mut aec, &mic, &reference);
    assert_eq!(aec.divergences(), 0);
    let last = 9 * rate as usize..10 * rate as usize;
    let gain = erle(&mic, &out, last);
    assert!(gain > 12.0, "ERLE {gain:.1} dB");
}
