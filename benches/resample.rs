//! Criterion benches of the pure resampling core: one 20 ms chunk per iteration, as the frame
//! path drives it, and a 10 s one-shot conversion.
use std::hint::black_box;

use _audio::resample::{resample, Quality, Resampler};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const PAIRS: [(u32, u32); 4] = [
    (48_000, 24_000),
    (44_100, 24_000),
    (16_000, 24_000),
    (24_000, 48_000),
];

fn noise(len: usize) -> Vec<f32> {
    // A fixed LCG: reproducible without a rand dependency.
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn stream_20ms(c: &mut Criterion) {
    stream_chunks(c, "resample 20 ms chunk", &[Quality::Low, Quality::High, Quality::Max], &PAIRS);
}

/// One 20 ms mono chunk per call through a streaming resampler, per preset and pair.
fn stream_chunks(c: &mut Criterion, name: &str, qualities: &[Quality], pairs: &[(u32, u32)]) {
    let mut group = c.benchmark_group(name);
    for &quality in qualities {
        for &(in_rate, out_rate) in pairs {
            let chunk = noise(in_rate as usize / 50);
            let mut resampler = Resampler::new(in_rate, out_rate, 1, quality).expect("valid rates");
            let mut out = Vec::with_capacity(out_rate as usize / 25);
            group.throughput(Throughput::Elements(chunk.len() as u64));
            let id = format!("{}/{in_rate}->{out_rate}", quality.name());
            group.bench_function(BenchmarkId::from_parameter(id), |b| {
                b.iter(|| {
                    out.clear();
                    resampler
                        .process_into(black_box(&chunk), &mut out)
                        .expect("mono chunk");
                    black_box(out.len())
                });
            });
        }
    }
    group.finish();
}

fn one_shot_10s(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample one-shot 10 s");
    group.sample_size(20);
    for (in_rate, out_rate) in PAIRS {
        let signal = noise(in_rate as usize * 10);
        group.throughput(Throughput::Elements(signal.len() as u64));
        group.bench_function(
            BenchmarkId::from_parameter(format!("high/{in_rate}->{out_rate}")),
            |b| {
                b.iter(|| {
                    resample(black_box(&signal), in_rate, out_rate, 1, Quality::High)
                        .expect("valid")
                });
            },
        );
    }
    group.finish();
}

/// The 8 kHz pairs, where "low" and "high" use minimum-phase filters (linear phase would lag
/// more than the preset promises).
fn stream_20ms_8k(c: &mut Criterion) {
    let pairs = [(8_000, 24_000), (24_000, 8_000)];
    stream_chunks(c, "resample 20 ms chunk 8 kHz", &[Quality::Low, Quality::High], &pairs);
}

criterion_group!(benches, stream_20ms, one_shot_10s, stream_20ms_8k);
criterion_main!(benches);
