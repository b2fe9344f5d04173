use crate::simd;

use super::design::{Fft, MAX_TABLE_LEN};
use super::*;

fn noise(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn bits(samples: &[f32]) -> Vec<u32> {
    samples.iter().map(|x| x.to_bits()).collect()
}

/// Streams `input` in chunks cycling through `sizes` (frames), then flushes.
fn streamed(resampler: &mut Resampler, input: &[f32], sizes: &[usize]) -> Vec<f32> {
    let channels = resampler.channels();
    let mut out = Vec::new();
    let mut start = 0;
    for &size in sizes.iter().cycle() {
        if start >= input.len() {
            break;
        }
        let end = (start + size * channels).min(input.len());
        let expected = resampler.output_len_for((end - start) / channels);
        let before = out.len();
        resampler
            .process_into(&input[start..end], &mut out)
            .unwrap();
        assert_eq!(out.len() - before, expected * channels, "output_len_for");
        start = end;
    }
    let expected = resampler.flush_len();
    let before = out.len();
    resampler.flush_into(&mut out);
    assert_eq!(out.len() - before, expected * channels, "flush_len");
    out
}

#[test]
fn rejects_bad_rates_channels_quality_and_shapes() {
    for (in_rate, out_rate) in [
        (7_999, 24_000),
        (24_000, 192_001),
        (0, 24_000),
        (24_000, u32::MAX),
    ] {
        assert!(Resampler::new(in_rate, out_rate, 1, Quality::High).is_err());
    }
    assert!(Resampler::new(48_000, 24_000, 0, Quality::High).is_err());
    assert!(Resampler::new(48_000, 24_000, MAX_CHANNELS + 1, Quality::High).is_err());
    assert!(Quality::parse("medium").is_err());
    assert_eq!(Quality::parse("max"), Ok(Quality::Max));
    let mut stereo = Resampler::new(48_000, 24_000, 2, Quality::High).unwrap();
    let mut out = Vec::new();
    assert!(stereo.process_into(&[0.0; 3], &mut out).is_err());
    assert!(stereo.process_i16_into(&[0; 5], &mut Vec::new()).is_err());
    assert!(out.is_empty());
    assert!(resample(&[0.0; 3], 48_000, 24_000, 2, Quality::Low).is_err());
}

#[test]
fn streaming_equals_one_shot_bit_for_bit_for_any_chunking() {
    let chunkings: [&[usize]; 5] = [
        &[1],
        &[0, 1, 0, 2],
        &[7, 0, 160, 3],
        &[441, 1, 882],
        &[100_000],
    ];
    for (in_rate, out_rate, channels) in [
        (48_000, 24_000, 1),
        (44_100, 24_000, 1),
        (16_000, 24_000, 2),
        (24_000, 48_000, 1),
        (24_000, 8_000, 1),
        (22_050, 48_000, 3),
        (44_100, 44_101, 1),
        (16_000, 48_000, 1),
        (48_000, 16_000, 1),
        (24_000, 16_000, 1),
        (16_000, 24_000, 1),
        (24_000, 24_000, 1),
    ] {
        for quality in [Quality::Low, Quality::High] {
            let input = noise(channels * in_rate as usize / 40, in_rate);
            let whole = resample(&input, in_rate, out_rate, channels, quality).unwrap();
            assert_eq!(
                whole.len(),
                channels
                    * rounded_ratio(
                        (input.len() / channels) as u64,
                        u64::from(out_rate),
                        u64::from(in_rate)
                    ) as usize
            );
            let mut resampler = Resampler::new(in_rate, out_rate, channels, quality).unwrap();
            for sizes in chunkings {
                // flush rewinds, so one resampler serves every chunking in turn.
                let chunked = streamed(&mut resampler, &input, sizes);
                assert_eq!(
                    bits(&chunked),
                    bits(&whole),
                    "{in_rate}->{out_rate} {quality:?} {sizes:?}"
                );
            }
        }
    }
}

/// Resamplers made at every level this CPU has (`simd`) against the portable kernel. The
/// vector kernels fuse multiply-adds, so they promise closeness, not the same bits: within
/// 1e-6 on floats and one step on PCM16, for the dot-product and the lane paths, mono and
/// stereo.
#[test]
fn every_kernel_gives_nearly_the_same_output() {
    let input = noise(4_800, 9);
    let stereo: Vec<f32> = input.iter().flat_map(|&x| [x, -0.5 * x]).collect();
    let pcm: Vec<i16> = input.iter().map(|&x| (x * 30_000.0) as i16).collect();
    for (in_rate, out_rate) in [
        (44_100, 24_000),
        (48_000, 24_000),
        (8_000, 24_000),
        (24_000, 16_000),
    ] {
        for quality in [Quality::Low, Quality::High] {
            let run = || {
                let kernel = Kernel::detect();
                let mono = resample(&input, in_rate, out_rate, 1, quality).unwrap();
                let two = resample(&stereo, in_rate, out_rate, 2, quality).unwrap();
                let ints = resample_i16(&pcm, in_rate, out_rate, 1, quality).unwrap();
                (kernel, mono, two, ints)
            };
            let (scalar_kernel, mono, two, ints) = simd::with_cap(simd::Level::Scalar, run);
            assert_eq!(scalar_kernel, Kernel::Scalar);
            for level in simd::levels() {
                let (kernel, got_mono, got_two, got_ints) = simd::with_cap(level, run);
                let what = format!(
                    "{in_rate}->{out_rate} {quality:?} at {} ({kernel:?})",
                    level.name()
                );
                for (want, got) in [(&mono, &got_mono), (&two, &got_two)] {
                    assert_eq!(want.len(), got.len(), "{what}");
                    for (a, b) in want.iter().zip(got) {
                        assert!((a - b).abs() < 1e-6, "{what}: {a} vs {b}");
                    }
                }
                assert_eq!(ints.len(), got_ints.len(), "{what}");
                for (a, b) in ints.iter().zip(&got_ints) {
                    assert!(
                        (i32::from(*a) - i32::from(*b)).abs() <= 1,
                        "{what}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

/// The kernels `simd` lets this machine run, one per level, scalar first.
fn available_kernels() -> Vec<Kernel> {
    let mut kernels: Vec<Kernel> = simd::levels()
        .map(|level| simd::with_cap(level, Kernel::detect))
        .collect();
    kernels.dedup();
    kernels
}

const LANE_PAIRS: [(u32, u32); 8] = [
    (48_000, 24_000),
    (24_000, 48_000),
    (24_000, 8_000),
    (8_000, 24_000),
    (16_000, 48_000),
    (48_000, 16_000),
    (24_000, 16_000),
    (16_000, 24_000),
];

#[test]
fn voice_ratios_run_output_parallel_and_agree_with_the_dot_product_path() {
    for (in_rate, out_rate) in [(44_100, 24_000), (48_000, 44_100)] {
        assert!(Resampler::new(in_rate, out_rate, 1, Quality::High)
            .unwrap()
            .lanes
            .is_none());
    }
    assert!(Resampler::new(48_000, 24_000, 2, Quality::High)
        .unwrap()
        .lanes
        .is_none());
    let input = noise(4_000, 11);
    for (in_rate, out_rate) in LANE_PAIRS {
        for quality in [Quality::Low, Quality::High, Quality::Max] {
            let mut lanes = Resampler::new(in_rate, out_rate, 1, quality).unwrap();
            assert!(lanes.lanes.is_some(), "{in_rate}->{out_rate}");
            let mut reference = Resampler::new(in_rate, out_rate, 1, quality).unwrap();
            // The reduction kernels (one dot product per output) are the oracle here.
            reference.lanes = None;
            let expected = streamed(&mut reference, &input, &[4_000]);
            let got = streamed(&mut lanes, &input, &[4_000]);
            assert_eq!(got.len(), expected.len());
            let worst = got
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-6, "{in_rate}->{out_rate} {quality:?}: {worst}");
        }
    }
}

#[test]
fn every_lane_kernel_is_chunking_invariant_and_the_fused_ones_agree_bit_for_bit() {
    let input = noise(3_000, 13);
    for (in_rate, out_rate) in LANE_PAIRS {
        let mut fused: Option<Vec<u32>> = None;
        for kernel in available_kernels() {
            let mut resampler = Resampler::new(in_rate, out_rate, 1, Quality::High).unwrap();
            resampler.kernel = kernel;
            let whole = bits(&streamed(&mut resampler, &input, &[3_000]));
            for sizes in [&[1usize][..], &[0, 17, 1, 160], &[479, 2]] {
                let chunked = bits(&streamed(&mut resampler, &input, sizes));
                assert!(
                    chunked == whole,
                    "{kernel:?} {in_rate}->{out_rate} {sizes:?}"
                );
            }
            if kernel != Kernel::Scalar {
                // AVX2 and AVX-512 run the same fused chain per output, 8 or 16 lanes wide.
                assert!(fused.get_or_insert_with(|| whole.clone()) == &whole);
            }
        }
    }
}

#[test]
fn fft_matches_a_direct_dft() {
    let size = 64;
    let (x_re, x_im) = (noise(size, 11), noise(size, 12));
    let mut re: Vec<f64> = x_re.iter().map(|&v| f64::from(v)).collect();
    let mut im: Vec<f64> = x_im.iter().map(|&v| f64::from(v)).collect();
    let fft = Fft::new(size);
    fft.run(&mut re, &mut im, false);
    for k in 0..size {
        let (mut sum_re, mut sum_im) = (0.0, 0.0);
        for n in 0..size {
            let angle = -2.0 * std::f64::consts::PI * (k * n) as f64 / size as f64;
            let (x, y) = (f64::from(x_re[n]), f64::from(x_im[n]));
            sum_re += x * angle.cos() - y * angle.sin();
            sum_im += x * angle.sin() + y * angle.cos();
        }
        assert!((re[k] - sum_re).abs() < 1e-12 && (im[k] - sum_im).abs() < 1e-12);
    }
    fft.run(&mut re, &mut im, true);
    for n in 0..size {
        assert!((re[n] / size as f64 - f64::from(x_re[n])).abs() < 1e-15);
        assert!((im[n] / size as f64 - f64::from(x_im[n])).abs() < 1e-15);
    }
}

/// The filter as one impulse response at `up` times the input rate, from its rows: the
/// coefficient for `before + row / up` input samples before the output instant.
fn impulse_response(resampler: &Resampler) -> Vec<f64> {
    let filter = &resampler.filter;
    let up = resampler.up as usize;
    let used = filter.ahead + filter.behind;
    let mut response = vec![0.0; used * up];
    for row in 0..up {
        for (t, &c) in filter.row(row)[filter.lead_pad..].iter().enumerate() {
            // Position t is (behind - 1 - t) + row / up before the output instant, that is
            // (used - 1 - t) * up + row taps after the earliest input the window reads.
            response[(used - 1 - t) * up + row] = f64::from(c);
        }
    }
    response
}

/// |H(f)| / |H(0)| in dB at `frequency` Hz, by direct summation.
fn gain_db(response: &[f64], rate: f64, frequency: f64) -> f64 {
    let at = |f: f64| {
        let angle = -2.0 * std::f64::consts::PI * f / rate;
        let (step_re, step_im) = (angle.cos(), angle.sin());
        let (mut re, mut im) = (0.0, 0.0);
        let (mut z_re, mut z_im) = (1.0, 0.0);
        for &h in response {
            re += h * z_re;
            im += h * z_im;
            (z_re, z_im) = (
                z_re * step_re - z_im * step_im,
                z_re * step_im + z_im * step_re,
            );
        }
        f64::hypot(re, im)
    };
    20.0 * (at(frequency) / at(0.0)).log10()
}

#[test]
fn minimum_phase_only_where_linear_phase_misses_the_delay_bar() {
    for (in_rate, out_rate, quality, minimum) in [
        (8_000, 24_000, Quality::High, true),
        (24_000, 8_000, Quality::High, true),
        (8_000, 16_000, Quality::Low, true),
        (48_000, 8_000, Quality::Low, true),
        (16_000, 24_000, Quality::High, false),
        (24_000, 16_000, Quality::Low, false),
        (8_000, 24_000, Quality::Max, false),
        (44_100, 24_000, Quality::High, false),
    ] {
        let resampler = Resampler::new(in_rate, out_rate, 1, quality).unwrap();
        let bar = quality
            .delay_bar_ms()
            .map_or(f64::INFINITY, |ms| ms as f64 / 1000.0);
        assert_eq!(
            resampler.linear_phase(),
            !minimum,
            "{in_rate}->{out_rate} {quality:?}"
        );
        if quality != Quality::Max {
            assert!(resampler.delay_seconds() <= bar, "{in_rate}->{out_rate}");
        }
    }
}

#[test]
fn minimum_phase_filters_keep_the_magnitude_promises() {
    for (in_rate, out_rate, quality) in [
        (8_000u32, 24_000u32, Quality::High),
        (24_000, 8_000, Quality::High),
        (8_000, 16_000, Quality::Low),
        // 441 phases: designed on a coarser grid and interpolated.
        (8_000, 44_100, Quality::High),
        (44_100, 8_000, Quality::High),
        (11_025, 24_000, Quality::Low),
    ] {
        let resampler = Resampler::new(in_rate, out_rate, 1, quality).unwrap();
        assert!(!resampler.linear_phase());
        let response = impulse_response(&resampler);
        let rate = f64::from(in_rate) * resampler.up as f64;
        let lower_nyquist = f64::from(in_rate.min(out_rate)) / 2.0;
        let (floor, pass_band_end) = match quality {
            Quality::Low => (-80.0, 0.5 * lower_nyquist),
            _ => (-100.0, 0.85 * lower_nyquist),
        };
        for i in 0..=200 {
            let frequency = pass_band_end * f64::from(i) / 200.0;
            let gain = gain_db(&response, rate, frequency);
            // "low" promises no flatness; its pass band still has to pass.
            let limit = if quality == Quality::Low { 0.1 } else { 0.01 };
            assert!(
                gain.abs() <= limit,
                "{in_rate}->{out_rate} {frequency} Hz: {gain}"
            );
        }
        // Densely from the stop-band edge (where the response is highest) to 3 x, then
        // coarsely up to the Nyquist frequency of the prototype.
        let near = (0..800).map(|i| lower_nyquist * (1.0 + f64::from(i) / 400.0));
        let far = (0..=1_000).map(|i| {
            3.0 * lower_nyquist + (rate / 2.0 - 3.0 * lower_nyquist) * f64::from(i) / 1_000.0
        });
        for frequency in near.chain(far) {
            let gain = gain_db(&response, rate, frequency);
            assert!(
                gain <= floor,
                "{in_rate}->{out_rate} {frequency} Hz: {gain}"
            );
        }
        // Minimum phase puts the energy up front: half of it arrives within twice the lag,
        // where a linear-phase filter of this length has it only at its middle.
        let total: f64 = response.iter().map(|h| h * h).sum();
        let used = resampler.filter.ahead + resampler.filter.behind;
        let early: f64 = response[..2 * resampler.filter.ahead * resampler.up as usize]
            .iter()
            .map(|h| h * h)
            .sum();
        assert!(
            early / total > 0.5,
            "{in_rate}->{out_rate}: {}",
            early / total
        );
        assert!(2 * resampler.filter.ahead < used / 2);
    }
}

#[test]
fn totals_round_half_to_even_like_python() {
    assert_eq!(rounded_ratio(1, 1, 2), 0); // 0.5 -> 0
    assert_eq!(rounded_ratio(3, 1, 2), 2); // 1.5 -> 2
    assert_eq!(rounded_ratio(5, 1, 2), 2); // 2.5 -> 2
    assert_eq!(rounded_ratio(147, 80, 147), 80);
    // An hour of 44.1 kHz at 24 kHz; the ratio is exact, so the count is too.
    assert_eq!(rounded_ratio(44_100 * 3_600, 80, 147), 24_000 * 3_600);
    for frames in [0usize, 1, 2, 3, 50, 441, 1_000] {
        let out = resample(&noise(frames, 3), 44_100, 24_000, 1, Quality::Low).unwrap();
        assert_eq!(
            out.len(),
            (frames as f64 * 24_000.0 / 44_100.0).round_ties_even() as usize
        );
    }
}

#[test]
fn phase_accounting_stays_exact_after_an_hour_of_chunks() {
    // Drive the integer clock directly (the dot products are tested above): an hour of
    // 20 ms chunks, comparing the emitted count with the closed form after every chunk.
    let mut resampler = Resampler::new(44_100, 24_000, 1, Quality::Low).unwrap();
    let chunk = 882u64;
    let ahead = resampler.filter.ahead as u64;
    let mut emitted = 0u64;
    for index in 1..=3_600 * 50u64 {
        let count = resampler.output_len_for(chunk as usize) as u64;
        resampler.frames_in += chunk;
        let until = resampler.next_out + count;
        // Advance exactly as `emit` does, one output at a time.
        while resampler.next_out < until {
            resampler.next_phase += resampler.down;
            resampler.next_quotient += resampler.next_phase / resampler.up;
            resampler.next_phase %= resampler.up;
            resampler.next_out += 1;
        }
        emitted += count;
        let frames = index * chunk;
        assert_eq!(
            resampler.next_out * 147,
            resampler.next_quotient * 80 + resampler.next_phase
        );
        assert_eq!(emitted, ((frames - ahead) * 80).div_ceil(147));
    }
    assert_eq!(resampler.flush_len() as u64 + emitted, 3_600 * 24_000);
}

#[test]
fn passes_a_tone_in_phase_with_the_ideal_output() {
    for (in_rate, out_rate) in [
        (44_100u32, 24_000u32),
        (16_000, 24_000),
        (44_100, 44_101),
        (191_999, 192_000),
    ] {
        let frequency = 997.0;
        let tone = |rate: u32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    (0.5 * (2.0 * std::f64::consts::PI * frequency * i as f64 / f64::from(rate))
                        .sin()) as f32
                })
                .collect()
        };
        let input = tone(in_rate, in_rate as usize / 10);
        let out = resample(&input, in_rate, out_rate, 1, Quality::High).unwrap();
        let ideal = tone(out_rate, out.len());
        let margin = out.len() / 5;
        let worst = out[margin..out.len() - margin]
            .iter()
            .zip(&ideal[margin..])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{in_rate}->{out_rate}: {worst}");
    }
}

#[test]
fn large_ratios_use_an_interpolated_table_of_bounded_size() {
    let resampler = Resampler::new(191_999, 192_000, 1, Quality::Max).unwrap();
    assert!(matches!(
        resampler.filter.table,
        PhaseTable::Interpolated { .. }
    ));
    assert!(resampler.filter.coefs.len() <= MAX_TABLE_LEN + BLOCK);
    let common = Resampler::new(44_100, 24_000, 1, Quality::Max).unwrap();
    assert!(matches!(common.filter.table, PhaseTable::Exact));
}

#[test]
fn pcm16_saturates_instead_of_wrapping() {
    // A full-scale square wave overshoots (Gibbs) once band-limited.
    let square: Vec<i16> = (0..4_800)
        .map(|i| {
            if (i / 40) % 2 == 0 {
                i16::MAX
            } else {
                i16::MIN
            }
        })
        .collect();
    let as_f32: Vec<f32> = square.iter().map(|&x| f32::from(x) / 32768.0).collect();
    let floats = resample(&as_f32, 48_000, 44_100, 1, Quality::High).unwrap();
    let ints = resample_i16(&square, 48_000, 44_100, 1, Quality::High).unwrap();
    assert!(floats.iter().any(|&x| x * 32768.0 > 32767.5));
    assert!(floats.iter().any(|&x| x * 32768.0 < -32768.5));
    for (&f, &i) in floats.iter().zip(&ints) {
        let expected = (f64::from(f) * 32768.0)
            .round_ties_even()
            .clamp(-32768.0, 32767.0);
        assert_eq!(i64::from(i), expected as i64);
    }
}

#[test]
fn reset_and_flush_start_a_new_stream() {
    let input = noise(2_000, 5);
    let mut resampler = Resampler::new(48_000, 16_000, 1, Quality::Max).unwrap();
    let first = streamed(&mut resampler, &input, &[300]);
    let mut out = Vec::new();
    resampler.process_into(&noise(999, 6), &mut out).unwrap();
    resampler.reset();
    assert_eq!(
        bits(&streamed(&mut resampler, &input, &[300])),
        bits(&first)
    );
    assert!((resampler.delay() - resampler.delay_seconds() * 16_000.0).abs() < 1e-9);
}
