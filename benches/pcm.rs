//! Float <-> PCM16 kernels at the frame sizes a voice session uses (24 kHz).

use std::hint::black_box;
use std::time::Duration;

use _audio::pcm::{f32_to_pcm16_into, f64_to_pcm16_into, pcm16_to_f32_into};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// 20 ms, 100 ms, 1 s and 10 s of 24 kHz audio.
const SIZES: [(usize, &str); 4] = [(480, "20ms"), (2400, "100ms"), (24_000, "1s"), (240_000, "10s")];

fn signal(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.001).sin() * 1.1).collect()
}

fn bench_pcm(c: &mut Criterion) {
    let mut group = c.benchmark_group("pcm");
    for (n, label) in SIZES {
        let input = signal(n);
        let input64: Vec<f64> = input.iter().map(|&x| f64::from(x)).collect();
        let pcm: Vec<i16> = (0..n).map(|i| (i * 7) as i16).collect();
        let mut out16 = vec![0i16; n];
        let mut out32 = vec![0f32; n];
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("f32_to_pcm16", label), |b| {
            b.iter(|| f32_to_pcm16_into(black_box(&input), black_box(&mut out16)));
        });
        group.bench_function(BenchmarkId::new("f64_to_pcm16", label), |b| {
            b.iter(|| f64_to_pcm16_into(black_box(&input64), black_box(&mut out16)));
        });
        group.bench_function(BenchmarkId::new("pcm16_to_f32", label), |b| {
            b.iter(|| pcm16_to_f32_into(black_box(&pcm), black_box(&mut out32)));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = bench_pcm
}
criterion_main!(benches);
