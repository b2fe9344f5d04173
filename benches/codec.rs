//! base64 and G.711 kernels at the frame sizes a voice session uses (24 kHz PCM16).

use std::hint::black_box;
use std::time::Duration;

use _audio::codec::{
    alaw_decode_into, alaw_encode_into, b64_decode_into, b64_encode_into, b64_encoded_len,
    ulaw_decode_into, ulaw_encode_into,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// 20 ms, 100 ms, 1 s and 10 s of 24 kHz audio, in samples.
const SIZES: [(usize, &str); 4] = [(480, "20ms"), (2400, "100ms"), (24_000, "1s"), (240_000, "10s")];

fn bench_base64(c: &mut Criterion) {
    let mut group = c.benchmark_group("base64");
    for (samples, label) in SIZES {
        let raw: Vec<u8> = (0..2 * samples).map(|i| (i * 31 + i / 7) as u8).collect();
        let mut text = vec![0u8; b64_encoded_len(raw.len())];
        b64_encode_into(&raw, &mut text).unwrap();
        let mut decoded = vec![0u8; raw.len()];
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(BenchmarkId::new("encode", label), |b| {
            b.iter(|| b64_encode_into(black_box(&raw), black_box(&mut text)));
        });
        group.bench_function(BenchmarkId::new("decode", label), |b| {
            b.iter(|| b64_decode_into(black_box(&text), black_box(&mut decoded)));
        });
    }
    group.finish();
}

fn bench_g711(c: &mut Criterion) {
    let mut group = c.benchmark_group("g711");
    for (n, label) in SIZES {
        let pcm: Vec<i16> = (0..n).map(|i| ((i as f32 * 0.01).sin() * 20000.0) as i16).collect();
        let mut codes = vec![0u8; n];
        let mut out = vec![0i16; n];
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("ulaw_encode", label), |b| {
            b.iter(|| ulaw_encode_into(black_box(&pcm), black_box(&mut codes)));
        });
        group.bench_function(BenchmarkId::new("alaw_encode", label), |b| {
            b.iter(|| alaw_encode_into(black_box(&pcm), black_box(&mut codes)));
        });
        group.bench_function(BenchmarkId::new("ulaw_decode", label), |b| {
            b.iter(|| ulaw_decode_into(black_box(&codes), black_box(&mut out)));
        });
        group.bench_function(BenchmarkId::new("alaw_decode", label), |b| {
            b.iter(|| alaw_decode_into(black_box(&codes), black_box(&mut out)));
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
    targets = bench_base64, bench_g711
}
criterion_main!(benches);
