//! The fused frame paths on the pure core, per 20 ms frame:
//! `cargo bench --no-default-features --bench frame`.

use std::hint::black_box;

use _audio::codec::b64_encode;
use _audio::frame::{scan_audio_delta, Downlink, Protocol, Scan, Uplink, WireFormat};
use _audio::resample::Quality;
use _audio::ring::PlaybackBuffer;
use criterion::{criterion_group, criterion_main, Criterion};

fn mic_frame() -> Vec<f32> {
    (0..960).map(|i| (i as f32 * 0.0576).sin() * 0.3).collect()
}

fn delta_message() -> String {
    let pcm: Vec<u8> = (0..480i32).flat_map(|i| (((i * 7919) % 6000 - 3000) as i16).to_le_bytes()).collect();
    format!(
        r#"{{"type":"response.output_audio.delta","event_id":"event_CCXGRxsAimPAs8kS2Wc7Z","response_id":"resp_CCXHw0UJld10EzIUXQCNh","item_id":"item_CCXHwGjjDUfOXbiySlK7i","output_index":0,"content_index":0,"delta":"{}","obfuscation":"aLxx0jTEciOGe"}}"#,
        b64_encode(&pcm)
    )
}

fn frame_paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    let frame = mic_frame();
    let message = delta_message();

    group.bench_function("scan a 20 ms GA delta", |b| {
        b.iter(|| {
            let scan = scan_audio_delta(black_box(message.as_bytes()), "response.output_audio.delta", true);
            assert!(matches!(scan, Scan::Delta(_)));
        });
    });

    // At the wire rate (no resampler): what the fused paths themselves cost.
    let mut uplink = Uplink::new(24_000, WireFormat::Pcm16, 1, Quality::High).unwrap();
    let mut event = Vec::with_capacity(2048);
    group.bench_function("uplink 24k f32 -> pcm16 event (no resampling)", |b| {
        b.iter(|| {
            event.clear();
            uplink.encode_f32(black_box(&frame[..480]), None, &mut event).unwrap();
        });
    });
    let mut downlink = Downlink::new(24_000, WireFormat::Pcm16, Protocol::Ga, Quality::High).unwrap();
    let mut samples = vec![0.0f32; 480];
    group.bench_function("downlink delta -> 24k f32 (no resampling)", |b| {
        b.iter(|| {
            let Scan::Delta(found) = downlink.scan(black_box(message.as_bytes()), true) else {
                panic!("not a delta")
            };
            downlink.decode_f32_into(found.delta, &mut samples).unwrap();
        });
    });

    for quality in [Quality::High, Quality::Low] {
        let mut uplink = Uplink::new(48_000, WireFormat::Pcm16, 1, quality).unwrap();
        let mut event = Vec::with_capacity(2048);
        group.bench_function(format!("uplink 48k f32 -> pcm16 event ({})", quality.name()), |b| {
            b.iter(|| {
                event.clear();
                uplink.encode_f32(black_box(&frame), None, &mut event).unwrap();
            });
        });

        let mut downlink = Downlink::new(48_000, WireFormat::Pcm16, Protocol::Ga, quality).unwrap();
        let mut samples = vec![0.0f32; 960];
        group.bench_function(format!("downlink delta -> 48k f32 ({})", quality.name()), |b| {
            b.iter(|| {
                let Scan::Delta(found) = downlink.scan(black_box(message.as_bytes()), true) else {
                    panic!("not a delta")
                };
                let len = downlink.output_len(found.delta).unwrap();
                downlink.decode_f32_into(found.delta, &mut samples[..len]).unwrap();
            });
        });

        let mut playback = PlaybackBuffer::new(48_000, 1_000).unwrap();
        let mut pulled = vec![0i16; 960];
        group.bench_function(format!("downlink delta -> 48k playback ({})", quality.name()), |b| {
            b.iter(|| {
                let Scan::Delta(found) = downlink.scan(black_box(message.as_bytes()), true) else {
                    panic!("not a delta")
                };
                downlink.decode_into_playback(&found.item_id, found.content_index, found.delta, &mut playback).unwrap();
                playback.pull_into(&mut pulled);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, frame_paths);
criterion_main!(benches);
