//! The partitions' complex multiply-accumulates, the canceller's inner loops: the echo
//! estimate `acc += w * x` and the gradient step `w += conj(x) * g`, over every bin of every
//! partition each frame.
//!
//! The AVX path computes each product exactly as the portable one does (a multiply per term,
//! then one subtraction and one addition: no FMA, whose single rounding would differ), so the
//! two agree bit for bit and the tests can compare them with `==`.

use super::fft::Bin;
use crate::simd::{self, Feature};

/// `a * b` in the order both paths use: `(ar*br - ai*bi, ai*br + ar*bi)`.
#[inline]
fn product(ar: f32, ai: f32, br: f32, bi: f32) -> (f32, f32) {
    (ar * br - ai * bi, ai * br + ar * bi)
}

/// `acc[i] += w[i] * x[i]`.
pub fn multiply_accumulate(acc: &mut [Bin], w: &[Bin], x: &[Bin]) {
    let len = acc.len().min(w.len()).min(x.len());
    #[cfg(target_arch = "x86_64")]
    if simd::enabled(&[Feature::Avx]) {
        // SAFETY: AVX is available (checked above); all three slices hold `len` bins.
        let done = unsafe { avx::multiply_accumulate::<false>(acc, w, x, len) };
        portable::<false>(&mut acc[done..len], &w[done..len], &x[done..len]);
        return;
    }
    portable::<false>(&mut acc[..len], &w[..len], &x[..len]);
}

/// `w[i] += conj(x[i]) * g[i]`.
pub fn conjugate_accumulate(w: &mut [Bin], x: &[Bin], g: &[Bin]) {
    let len = w.len().min(x.len()).min(g.len());
    #[cfg(target_arch = "x86_64")]
    if simd::enabled(&[Feature::Avx]) {
        // SAFETY: as above.
        let done = unsafe { avx::multiply_accumulate::<true>(w, x, g, len) };
        portable::<true>(&mut w[done..len], &x[done..len], &g[done..len]);
        return;
    }
    portable::<true>(&mut w[..len], &x[..len], &g[..len]);
}

/// `acc += a * b`, or `acc += conj(a) * b` when `CONJUGATE`.
fn portable<const CONJUGATE: bool>(acc: &mut [Bin], a: &[Bin], b: &[Bin]) {
    for ((acc, a), b) in acc.iter_mut().zip(a).zip(b) {
        let ai = if CONJUGATE { -a.im } else { a.im };
        let (re, im) = product(a.re, ai, b.re, b.im);
        acc.re += re;
        acc.im += im;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use super::Bin;
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_addsub_ps, _mm256_loadu_ps, _mm256_movehdup_ps, _mm256_moveldup_ps,
        _mm256_mul_ps, _mm256_permute_ps, _mm256_set_ps, _mm256_storeu_ps, _mm256_xor_ps,
    };

    /// Four bins per step; returns how many bins it did (a multiple of four).
    ///
    /// # Safety
    /// AVX is available and `acc`, `a`, `b` hold at least `len` bins.
    #[target_feature(enable = "avx")]
    pub unsafe fn multiply_accumulate<const CONJUGATE: bool>(
        acc: &mut [Bin],
        a: &[Bin],
        b: &[Bin],
        len: usize,
    ) -> usize {
        let done = len / 4 * 4;
        // Flips the sign of the imaginary lanes: conj(a).
        let conjugate = _mm256_set_ps(-0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0);
        let acc = acc.as_mut_ptr().cast::<f32>();
        let a = a.as_ptr().cast::<f32>();
        let b = b.as_ptr().cast::<f32>();
        let mut i = 0;
        while i < done * 2 {
            // SAFETY: `i + 8 <= 2 * done <= 2 * len` floats of each slice are readable (a bin
            // is two packed floats, `Complex` being `repr(C)`).
            unsafe {
                let mut av = _mm256_loadu_ps(a.add(i));
                if CONJUGATE {
                    av = _mm256_xor_ps(av, conjugate);
                }
                let bv = _mm256_loadu_ps(b.add(i));
                // (ar*br, ai*br) and (ai*bi, ar*bi); addsub gives (ar*br - ai*bi, ai*br + ar*bi).
                let real_parts = _mm256_mul_ps(av, _mm256_moveldup_ps(bv));
                let swapped = _mm256_permute_ps::<0b1011_0001>(av);
                let imag_parts = _mm256_mul_ps(swapped, _mm256_movehdup_ps(bv));
                let product = _mm256_addsub_ps(real_parts, imag_parts);
                let sum = _mm256_add_ps(_mm256_loadu_ps(acc.add(i)), product);
                _mm256_storeu_ps(acc.add(i), sum);
            }
            i += 8;
        }
        done
    }
}
