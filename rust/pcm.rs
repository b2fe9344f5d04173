//! Float <-> PCM16 sample conversion.
//!
//! `float -> PCM16`: NaN becomes 0, the value is clipped to [-1, 1], scaled by 32767 and rounded
//! half to even, exactly as `np.rint(np.clip(np.nan_to_num(x), -1, 1) * 32767)` does in the
//! input's own precision. `PCM16 -> float` divides by 32768 (exact in f32).
//!
//! The wheel is built for the baseline x86-64 CPU (SSE2), so the hot loops are compiled several
//! times with `#[target_feature]` and the best one is picked at run time (`simd`). Rounding uses the
//! CPU's current rounding mode (round-to-nearest-even unless someone changed MXCSR), the same
//! mode numpy's `rint` obeys.

use crate::{simd, AudioError};

const SCALE: f32 = 32767.0;
const INV_SCALE_TO_FLOAT: f32 = 1.0 / 32768.0;

fn check_lengths(input: usize, output: usize) -> Result<(), AudioError> {
    if input == output {
        Ok(())
    } else {
        Err(AudioError::invalid(format!(
            "output holds {output} samples but the input has {input}"
        )))
    }
}

// Always inlined so the loops around it are compiled with their caller's target features.
#[allow(clippy::inline_always)]
#[inline(always)]
fn f32_sample_to_pcm16(x: f32) -> i16 {
    // `max`/`min` return the other operand for NaN, so NaN would clip to -1: zero it first.
    let x = if x.is_nan() { 0.0 } else { x };
    (x.clamp(-1.0, 1.0) * SCALE).round_ties_even() as i16
}

#[allow(clippy::inline_always)]
#[inline(always)]
fn f64_sample_to_pcm16(x: f64) -> i16 {
    let x = if x.is_nan() { 0.0 } else { x };
    (x.clamp(-1.0, 1.0) * f64::from(SCALE)).round_ties_even() as i16
}

/// Converts float32 samples to PCM16 into `output` (same length as `input`).
pub fn f32_to_pcm16_into(input: &[f32], output: &mut [i16]) -> Result<(), AudioError> {
    check_lengths(input.len(), output.len())?;
    convert_f32(input, output);
    Ok(())
}

/// Converts `min(input.len(), output.len())` samples with the best kernel for this CPU.
fn convert_f32(input: &[f32], output: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::enabled(AVX512) {
            // SAFETY: the CPU supports the features the function was compiled for.
            unsafe { x86::f32_to_pcm16_avx512(input, output) };
            return;
        }
        if simd::enabled(&[simd::Feature::Avx2]) {
            // SAFETY: as above.
            unsafe { x86::f32_to_pcm16_avx2(input, output) };
            return;
        }
        if simd::enabled(&[simd::Feature::Sse2]) {
            // SAFETY: as above.
            unsafe { x86::f32_to_pcm16_sse2(input, output) };
            return;
        }
    }
    for (out, &x) in output.iter_mut().zip(input) {
        *out = f32_sample_to_pcm16(x);
    }
}

/// Converts float64 samples to PCM16 into `output` (same length as `input`); the scaling and
/// rounding happen in f64, like numpy on a float64 array.
pub fn f64_to_pcm16_into(input: &[f64], output: &mut [i16]) -> Result<(), AudioError> {
    check_lengths(input.len(), output.len())?;
    convert_f64(input, output);
    Ok(())
}

fn convert_f64(input: &[f64], output: &mut [i16]) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::enabled(&[simd::Feature::Avx2]) {
            // SAFETY: the CPU supports the features the function was compiled for.
            unsafe { x86::f64_to_pcm16_avx2(input, output) };
            return;
        }
        if simd::enabled(&[simd::Feature::Sse2]) {
            // SAFETY: as above.
            unsafe { x86::f64_to_pcm16_sse2(input, output) };
            return;
        }
    }
    for (out, &x) in output.iter_mut().zip(input) {
        *out = f64_sample_to_pcm16(x);
    }
}

/// Converts PCM16 samples to float32 (divided by 32768) into `output` (same length).
pub fn pcm16_to_f32_into(input: &[i16], output: &mut [f32]) -> Result<(), AudioError> {
    check_lengths(input.len(), output.len())?;
    convert_pcm16(input, output);
    Ok(())
}

fn convert_pcm16(input: &[i16], output: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::enabled(AVX512) {
            // SAFETY: the CPU supports the features the function was compiled for.
            unsafe { x86::pcm16_to_f32_avx512(input, output) };
            return;
        }
        if simd::enabled(&[simd::Feature::Avx2]) {
            // SAFETY: as above.
            unsafe { x86::pcm16_to_f32_avx2(input, output) };
            return;
        }
        if simd::enabled(&[simd::Feature::Sse2]) {
            // SAFETY: as above.
            unsafe { x86::pcm16_to_f32_sse2(input, output) };
            return;
        }
    }
    pcm16_to_f32_portable(input, output);
}

/// What the AVX-512 kernels are compiled for.
#[cfg(target_arch = "x86_64")]
const AVX512: &[simd::Feature] = &[simd::Feature::Avx512F, simd::Feature::Avx512Bw, simd::Feature::Avx512Vl];

#[allow(clippy::inline_always)]
#[inline(always)]
fn pcm16_to_f32_portable(input: &[i16], output: &mut [f32]) {
    // Multiplying by 2^-15 is exact, so this vectorises without changing a single bit.
    for (out, &x) in output.iter_mut().zip(input) {
        *out = f32::from(x) * INV_SCALE_TO_FLOAT;
    }
}

/// Converts float32 samples to a new PCM16 vector.
pub fn f32_to_pcm16(input: &[f32]) -> Vec<i16> {
    let mut output = vec![0; input.len()];
    convert_f32(input, &mut output);
    output
}

/// Converts float64 samples to a new PCM16 vector.
pub fn f64_to_pcm16(input: &[f64]) -> Vec<i16> {
    let mut output = vec![0; input.len()];
    convert_f64(input, &mut output);
    output
}

/// Converts PCM16 samples to a new float32 vector.
pub fn pcm16_to_f32(input: &[i16]) -> Vec<f32> {
    let mut output = vec![0.0; input.len()];
    convert_pcm16(input, &mut output);
    output
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::wildcard_imports)] // the intrinsics, by the dozen
mod x86 {
    use super::{
        f32_sample_to_pcm16, f64_sample_to_pcm16, pcm16_to_f32_portable, INV_SCALE_TO_FLOAT, SCALE,
    };
    use std::arch::x86_64::*;

    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn f32_to_pcm16_sse2(input: &[f32], output: &mut [i16]) {
        let n = input.len().min(output.len());
        let blocks = n / 8;
        let lo = _mm_set1_ps(-1.0);
        let hi = _mm_set1_ps(1.0);
        let scale = _mm_set1_ps(SCALE);
        let convert = |v: __m128| {
            // cmpeq(v, v) is false only for NaN: AND-ing with it turns NaN into +0.
            let v = _mm_and_ps(v, _mm_cmpeq_ps(v, v));
            let v = _mm_min_ps(_mm_max_ps(v, lo), hi);
            _mm_cvtps_epi32(_mm_mul_ps(v, scale))
        };
        for block in 0..blocks {
            let at = block * 8;
            // SAFETY: `at + 8 <= n` for every block; unaligned loads and stores.
            unsafe {
                let a = convert(_mm_loadu_ps(input.as_ptr().add(at)));
                let b = convert(_mm_loadu_ps(input.as_ptr().add(at + 4)));
                _mm_storeu_si128(output.as_mut_ptr().add(at).cast(), _mm_packs_epi32(a, b));
            }
        }
        for at in blocks * 8..n {
            output[at] = f32_sample_to_pcm16(input[at]);
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn f32_to_pcm16_avx2(input: &[f32], output: &mut [i16]) {
        let n = input.len().min(output.len());
        let blocks = n / 16;
        let lo = _mm256_set1_ps(-1.0);
        let hi = _mm256_set1_ps(1.0);
        let scale = _mm256_set1_ps(SCALE);
        let convert = |v: __m256| {
            let v = _mm256_and_ps(v, _mm256_cmp_ps::<_CMP_EQ_OQ>(v, v));
            let v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
            _mm256_cvtps_epi32(_mm256_mul_ps(v, scale))
        };
        for block in 0..blocks {
            let at = block * 16;
            // SAFETY: `at + 16 <= n` for every block; unaligned loads and stores.
            unsafe {
                let a = convert(_mm256_loadu_ps(input.as_ptr().add(at)));
                let b = convert(_mm256_loadu_ps(input.as_ptr().add(at + 8)));
                // packs works per 128-bit lane: a0 b0 a1 b1 -> reorder quadwords to a0 a1 b0 b1.
                let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(a, b));
                _mm256_storeu_si256(output.as_mut_ptr().add(at).cast(), packed);
            }
        }
        for at in blocks * 16..n {
            output[at] = f32_sample_to_pcm16(input[at]);
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn f32_to_pcm16_avx512(input: &[f32], output: &mut [i16]) {
        let n = input.len().min(output.len());
        let lo = _mm512_set1_ps(-1.0);
        let hi = _mm512_set1_ps(1.0);
        let scale = _mm512_set1_ps(SCALE);
        let convert = |v: __m512| {
            let not_nan = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(v, v);
            let v = _mm512_maskz_mov_ps(not_nan, v);
            let v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v, scale)))
        };
        let mut at = 0;
        while at + 16 <= n {
            // SAFETY: `at + 16 <= n`; unaligned loads and stores.
            unsafe {
                let v = convert(_mm512_loadu_ps(input.as_ptr().add(at)));
                _mm256_storeu_si256(output.as_mut_ptr().add(at).cast(), v);
            }
            at += 16;
        }
        if at < n {
            // The tail goes through masked loads and stores instead of a scalar loop.
            let mask: u16 = (1u32 << (n - at)).wrapping_sub(1) as u16;
            // SAFETY: the masks cover only the `n - at` elements that exist.
            unsafe {
                let v = convert(_mm512_maskz_loadu_ps(mask, input.as_ptr().add(at)));
                _mm256_mask_storeu_epi16(output.as_mut_ptr().add(at), mask, v);
            }
        }
    }

    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn f64_to_pcm16_sse2(input: &[f64], output: &mut [i16]) {
        let n = input.len().min(output.len());
        let blocks = n / 4;
        let lo = _mm_set1_pd(-1.0);
        let hi = _mm_set1_pd(1.0);
        let scale = _mm_set1_pd(f64::from(SCALE));
        let convert = |v: __m128d| {
            let v = _mm_and_pd(v, _mm_cmpeq_pd(v, v));
            let v = _mm_min_pd(_mm_max_pd(v, lo), hi);
            // Two i32 in the low half, zeros above.
            _mm_cvtpd_epi32(_mm_mul_pd(v, scale))
        };
        for block in 0..blocks {
            let at = block * 4;
            // SAFETY: `at + 4 <= n` for every block; unaligned loads and an 8-byte store.
            unsafe {
                let a = convert(_mm_loadu_pd(input.as_ptr().add(at)));
                let b = convert(_mm_loadu_pd(input.as_ptr().add(at + 2)));
                let packed = _mm_packs_epi32(_mm_unpacklo_epi64(a, b), _mm_setzero_si128());
                _mm_storel_epi64(output.as_mut_ptr().add(at).cast(), packed);
            }
        }
        for at in blocks * 4..n {
            output[at] = f64_sample_to_pcm16(input[at]);
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn f64_to_pcm16_avx2(input: &[f64], output: &mut [i16]) {
        let n = input.len().min(output.len());
        let blocks = n / 8;
        let lo = _mm256_set1_pd(-1.0);
        let hi = _mm256_set1_pd(1.0);
        let scale = _mm256_set1_pd(f64::from(SCALE));
        let convert = |v: __m256d| {
            let v = _mm256_and_pd(v, _mm256_cmp_pd::<_CMP_EQ_OQ>(v, v));
            let v = _mm256_min_pd(_mm256_max_pd(v, lo), hi);
            _mm256_cvtpd_epi32(_mm256_mul_pd(v, scale))
        };
        for block in 0..blocks {
            let at = block * 8;
            // SAFETY: `at + 8 <= n` for every block; unaligned loads and stores.
            unsafe {
                let a = convert(_mm256_loadu_pd(input.as_ptr().add(at)));
                let b = convert(_mm256_loadu_pd(input.as_ptr().add(at + 4)));
                _mm_storeu_si128(output.as_mut_ptr().add(at).cast(), _mm_packs_epi32(a, b));
            }
        }
        for at in blocks * 8..n {
            output[at] = f64_sample_to_pcm16(input[at]);
        }
    }

    // The compiler does not vectorise the plain loop (int16 -> f32 widening), hence these.

    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn pcm16_to_f32_sse2(input: &[i16], output: &mut [f32]) {
        let n = input.len().min(output.len());
        let scale = _mm_set1_ps(INV_SCALE_TO_FLOAT);
        let mut at = 0;
        while at + 8 <= n {
            // SAFETY: `at + 8 <= n`; unaligned loads and stores.
            unsafe {
                let samples = _mm_loadu_si128(input.as_ptr().add(at).cast());
                // Each i16 into the top half of an i32, then an arithmetic shift sign-extends.
                let low = _mm_srai_epi32::<16>(_mm_unpacklo_epi16(samples, samples));
                let high = _mm_srai_epi32::<16>(_mm_unpackhi_epi16(samples, samples));
                let out = output.as_mut_ptr().add(at);
                _mm_storeu_ps(out, _mm_mul_ps(_mm_cvtepi32_ps(low), scale));
                _mm_storeu_ps(out.add(4), _mm_mul_ps(_mm_cvtepi32_ps(high), scale));
            }
            at += 8;
        }
        pcm16_to_f32_portable(&input[at..n], &mut output[at..n]);
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pcm16_to_f32_avx2(input: &[i16], output: &mut [f32]) {
        let n = input.len().min(output.len());
        let scale = _mm256_set1_ps(INV_SCALE_TO_FLOAT);
        let mut at = 0;
        while at + 8 <= n {
            // SAFETY: `at + 8 <= n`; unaligned loads and stores.
            unsafe {
                let samples = _mm256_cvtepi16_epi32(_mm_loadu_si128(input.as_ptr().add(at).cast()));
                let floats = _mm256_mul_ps(_mm256_cvtepi32_ps(samples), scale);
                _mm256_storeu_ps(output.as_mut_ptr().add(at), floats);
            }
            at += 8;
        }
        pcm16_to_f32_portable(&input[at..n], &mut output[at..n]);
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn pcm16_to_f32_avx512(input: &[i16], output: &mut [f32]) {
        let n = input.len().min(output.len());
        let scale = _mm512_set1_ps(INV_SCALE_TO_FLOAT);
        let convert = |samples: __m256i| {
            _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(samples)), scale)
        };
        let mut at = 0;
        while at + 16 <= n {
            // SAFETY: `at + 16 <= n`; unaligned loads and stores.
            unsafe {
                let samples = _mm256_loadu_si256(input.as_ptr().add(at).cast());
                _mm512_storeu_ps(output.as_mut_ptr().add(at), convert(samples));
            }
            at += 16;
        }
        if at < n {
            let mask: u16 = (1u32 << (n - at)).wrapping_sub(1) as u16;
            // SAFETY: the masks cover only the `n - at` elements that exist.
            unsafe {
                let samples = _mm256_maskz_loadu_epi16(mask, input.as_ptr().add(at));
                _mm512_mask_storeu_ps(output.as_mut_ptr().add(at), mask, convert(samples));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_f32(x: f32) -> i16 {
        if x.is_nan() {
            return 0;
        }
        let clipped = x.clamp(-1.0, 1.0);
        (clipped * 32767.0).round_ties_even() as i16
    }

    fn awkward_f32() -> Vec<f32> {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            1.5,
            -1.5,
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
            1e-30,
            0.5 / 32767.0,
            1.5 / 32767.0,
            2.5 / 32767.0,
            -0.5 / 32767.0,
            -2.5 / 32767.0,
            32766.5 / 32767.0,
        ];
        // Every half-integer step of the scaled range hits the ties-to-even rule.
        for k in -300..300 {
            values.push((k as f32 + 0.5) / 32767.0);
            values.push(k as f32 / 100.0);
        }
        values
    }

    #[test]
    fn f32_matches_scalar_reference_at_every_length() {
        let values = awkward_f32();
        for len in [0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 100, values.len()] {
            let input = &values[..len];
            let got = f32_to_pcm16(input);
            let want: Vec<i16> = input.iter().map(|&x| reference_f32(x)).collect();
            assert_eq!(got, want, "length {len}");
        }
    }

    #[test]
    fn f32_every_dispatch_level_agrees() {
        let values = awkward_f32();
        let want: Vec<i16> = values.iter().map(|&x| reference_f32(x)).collect();
        for level in simd::levels() {
            for len in [0, 1, 7, 8, 15, 16, 17, 31, 33, 63, 65, values.len()] {
                let got = simd::with_cap(level, || f32_to_pcm16(&values[..len]));
                assert_eq!(got, want[..len], "{} path, length {len}", level.name());
            }
        }
        simd::assert_every_level_matches_scalar("f32_to_pcm16", || f32_to_pcm16(&noise_f32(4099, 1)));
    }

    /// Pseudo-random samples, a third of them outside [-1, 1].
    fn noise_f32(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 3.0 - 1.5
            })
            .collect()
    }

    #[test]
    fn f64_matches_scalar_reference_on_every_dispatch_level() {
        let mut values: Vec<f64> = awkward_f32().into_iter().map(f64::from).collect();
        values.extend([0.5 / 32767.0, 1.0 - 1e-12, f64::NAN, f64::INFINITY, -7.0]);
        let want: Vec<i16> = values.iter().map(|&x| f64_sample_to_pcm16(x)).collect();
        for level in simd::levels() {
            for len in [0, 1, 3, 4, 5, 9, values.len()] {
                let got = simd::with_cap(level, || f64_to_pcm16(&values[..len]));
                assert_eq!(got, want[..len], "{} path, length {len}", level.name());
            }
        }
        let noise: Vec<f64> = noise_f32(4099, 2).into_iter().map(|x| f64::from(x) * 1.0001).collect();
        simd::assert_every_level_matches_scalar("f64_to_pcm16", || f64_to_pcm16(&noise));
        // Spot checks that do not depend on the helper under test.
        assert_eq!(
            f64_to_pcm16(&[0.5 / 32767.0, 1.5 / 32767.0, -1.0, 2.0, f64::NAN]),
            [0, 2, -32767, 32767, 0]
        );
    }

    #[test]
    #[allow(clippy::float_cmp)] // exactness is the point
    fn pcm16_to_f32_is_exact_division() {
        let input: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let got = pcm16_to_f32(&input);
        for (&x, &y) in input.iter().zip(&got) {
            assert_eq!(y, f32::from(x) / 32768.0);
        }
    }

    #[test]
    #[allow(clippy::float_cmp)] // exactness is the point
    fn pcm16_to_f32_every_dispatch_level_at_every_tail_length() {
        let input: Vec<i16> = (0..100).map(|k| (k * 661 - 32768) as i16).collect();
        for len in 0..input.len() {
            let want: Vec<f32> = input[..len]
                .iter()
                .map(|&x| f32::from(x) / 32768.0)
                .collect();
            for level in simd::levels() {
                let got = simd::with_cap(level, || pcm16_to_f32(&input[..len]));
                assert_eq!(got, want, "{} path, length {len}", level.name());
            }
        }
        let every: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        simd::assert_every_level_matches_scalar("pcm16_to_f32", || pcm16_to_f32(&every));
    }

    #[test]
    fn round_trip_of_every_pcm16_value_is_within_one_step() {
        let input: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let back = f32_to_pcm16(&pcm16_to_f32(&input));
        for (&x, &y) in input.iter().zip(&back) {
            assert!((i32::from(x) - i32::from(y)).abs() <= 1, "{x} -> {y}");
        }
    }

    #[test]
    fn mismatched_output_length_is_an_error() {
        let mut out = [0i16; 2];
        assert!(f32_to_pcm16_into(&[0.0; 3], &mut out).is_err());
        assert!(f64_to_pcm16_into(&[0.0; 3], &mut out).is_err());
        let mut out = [0f32; 2];
        assert!(pcm16_to_f32_into(&[0; 3], &mut out).is_err());
    }
}
