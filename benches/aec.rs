//! Rust time of the echo canceller per 10 ms frame (250 ms filter, suppressor on), at 16 and
//! 48 kHz, float32 and int16. Run: `cargo bench --no-default-features --bench aec`.
//!
//! Timed in CPU time of the benchmarking thread (`CLOCK_THREAD_CPUTIME_ID`), so that other
//! work on a shared machine does not count as ours. The canceller is warmed up on a second of
//! echo first, so the figures are its steady state.

use std::hint::black_box;

use _audio::aec::{EchoCanceller, EchoConfig};

mod common;
use common::cpu_time;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A speech-like far end and its echo through a short decaying room.
fn signals(rate: u32, seconds: u32) -> (Vec<f32>, Vec<f32>) {
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02
    };
    let far: Vec<f32> = (0..rate * seconds)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let voiced = if t.fract() < 0.6 { 0.1 } else { 0.0 };
            let tone = (1..12)
                .map(|h| (2.0 * std::f32::consts::PI * 130.0 * h as f32 * t).sin() / h as f32)
                .sum::<f32>();
            noise() + voiced * tone
        })
        .collect();
    let taps: Vec<f32> = (0..rate as usize / 20).map(|i| noise() * (-(i as f32) / (rate as f32 / 100.0)).exp()).collect();
    let mic = (0..far.len())
        .map(|i| taps.iter().enumerate().take(i + 1).map(|(j, h)| h * far[i - j]).sum())
        .collect();
    (far, mic)
}

fn per_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("aec per 10 ms frame");
    group.throughput(Throughput::Elements(1));
    for rate in [16000u32, 48000] {
        let (far, mic) = signals(rate, 2);
        let far16: Vec<i16> = far.iter().map(|x| (x * 32767.0) as i16).collect();
        let mic16: Vec<i16> = mic.iter().map(|x| (x * 32767.0) as i16).collect();
        let frame = (rate / 100) as usize;
        let warm = |aec: &mut EchoCanceller| {
            let mut out = vec![0.0f32; frame];
            for (m, r) in mic.chunks_exact(frame).zip(far.chunks_exact(frame)).take(100) {
                aec.process(m, r, &mut out).unwrap();
            }
        };
        let mut aec = EchoCanceller::new(EchoConfig::new(rate)).unwrap();
        warm(&mut aec);
        let mut out = vec![0.0f32; frame];
        let mut position = 0;
        group.bench_function(format!("f32 {rate} Hz"), |b| {
            b.iter_custom(|iterations| {
                cpu_time(iterations, || {
                    if position + frame > far.len() {
                        position = 0;
                    }
                    let span = position..position + frame;
                    position += frame;
                    aec.process(black_box(&mic[span.clone()]), black_box(&far[span]), &mut out).unwrap();
                    black_box(&out);
                })
            });
        });
        let mut aec = EchoCanceller::new(EchoConfig::new(rate)).unwrap();
        warm(&mut aec);
        let mut out16 = vec![0i16; frame];
        let mut position = 0;
        group.bench_function(format!("i16 {rate} Hz"), |b| {
            b.iter_custom(|iterations| {
                cpu_time(iterations, || {
                    if position + frame > far16.len() {
                        position = 0;
                    }
                    let span = position..position + frame;
                    position += frame;
                    aec.process(black_box(&mic16[span.clone()]), black_box(&far16[span]), &mut out16).unwrap();
                    black_box(&out16);
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, per_frame);
criterion_main!(benches);
