//! Rust time of the voice activity detector per 10 ms frame, at each input rate and sample type.
//! Run: `cargo bench --no-default-features --bench vad`.
//!
//! Timed in CPU time of the benchmarking thread (`CLOCK_THREAD_CPUTIME_ID`), so that other
//! work on a shared machine does not count as ours.

use std::hint::black_box;

use _audio::vad::{Vad, VadConfig};

mod common;
use common::cpu_time;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Speech-like test audio: harmonics under two formants, in white noise, with pauses.
fn audio(rate: u32, seconds: u32) -> Vec<f32> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    (0..rate * seconds)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.01;
            let t = i as f32 / rate as f32;
            let voiced = if t.fract() < 0.6 { 0.1 } else { 0.0 };
            let tone = (1..12)
                .map(|h| {
                    let f = 130.0 * h as f32;
                    (-((f - 700.0) / 500.0).powi(2)).exp()
                        * (2.0 * std::f32::consts::PI * f * t).sin()
                })
                .sum::<f32>();
            noise + voiced * tone
        })
        .collect()
}

fn per_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("vad per 10 ms frame");
    group.throughput(Throughput::Elements(1));
    for rate in [8000u32, 16000, 24000, 48000] {
        let signal = audio(rate, 10);
        let pcm: Vec<i16> = signal.iter().map(|x| (x * 32767.0) as i16).collect();
        let frame = (rate / 100) as usize;
        let config = VadConfig {
            sample_rate: rate,
            ..VadConfig::default()
        };
        let mut vad = Vad::new(config).unwrap();
        let mut position = 0;
        group.bench_function(format!("f32 {rate} Hz"), |b| {
            b.iter_custom(|iterations| {
                cpu_time(iterations, || {
                    if position + frame > signal.len() {
                        position = 0;
                    }
                    let chunk = &signal[position..position + frame];
                    position += frame;
                    let mut events = 0;
                    vad.process_with(black_box(chunk), |_| events += 1).unwrap();
                    black_box(events);
                })
            });
        });
        let mut vad = Vad::new(config).unwrap();
        let mut position = 0;
        group.bench_function(format!("i16 {rate} Hz"), |b| {
            b.iter_custom(|iterations| {
                cpu_time(iterations, || {
                    if position + frame > pcm.len() {
                        position = 0;
                    }
                    let chunk = &pcm[position..position + frame];
                    position += frame;
                    let mut events = 0;
                    vad.process_with(black_box(chunk), |_| events += 1).unwrap();
                    black_box(events);
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, per_frame);
criterion_main!(benches);
