//! Ring and playback buffers: the per-frame cost of queueing and pulling audio.

use std::hint::black_box;
use std::time::Duration;

use _audio::ring::{PlaybackBuffer, RingBuffer};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn bench_ring(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring");
    for (n, label) in [(480usize, "20ms"), (24_000, "1s")] {
        let frame: Vec<i16> = (0..n).map(|i| i as i16).collect();
        let mut out = vec![0i16; n];
        group.throughput(Throughput::Elements(n as u64));
        // Capacity not a multiple of the frame, so writes and reads wrap around.
        let mut ring = RingBuffer::new(3 * n + 7).unwrap();
        group.bench_function(BenchmarkId::new("write_read", label), |b| {
            b.iter(|| {
                ring.write(black_box(&frame));
                ring.read_into(black_box(&mut out))
            });
        });
        let mut playback = PlaybackBuffer::new(24_000, 1000).unwrap();
        group.bench_function(BenchmarkId::new("playback_push_pull", label), |b| {
            b.iter(|| {
                playback.push(black_box("item_abc"), 0, black_box(&frame));
                playback.pull_into(black_box(&mut out))
            });
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
    targets = bench_ring
}
criterion_main!(benches);
