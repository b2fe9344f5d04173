//! Dot-product kernels (AVX-512, AVX2+FMA, scalar) behind the one run-time dispatch of
//! `crate::simd`.

use super::engine::LANE_PAD;
use super::{BLOCK, SHARED};
use crate::simd;

// ---- dot-product kernels ----
//
// Each kernel computes four independent dot products of `taps` (a multiple of 16) floats. Per
// output the operation order is fixed, whichever of the four slots it lands in, so grouping never
// changes a result. The wheel targets the baseline x86-64, so the AVX kernels are selected at run
// time; FMA is only used inside them (without the target feature, `mul_add` is a libm call).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The widest kernel `simd` allows (the CPU's, capped by `REALTALK_SIMD`), chosen when a
    /// resampler is made.
    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use simd::Feature::{Avx2, Avx512F, Fma};
            if simd::enabled(&[Avx512F, Avx2, Fma]) {
                return Self::Avx512;
            }
            if simd::enabled(&[Avx2, Fma]) {
                return Self::Avx2;
            }
        }
        Self::Scalar
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => "avx512",
        }
    }

    /// # Safety
    /// Each pointer must be valid for `taps` reads; `taps` must be a multiple of 16.
    pub(super) unsafe fn dot4(
        self,
        x: [*const f32; 4],
        c: [*const f32; 4],
        taps: usize,
    ) -> [f32; 4] {
        // SAFETY: forwarded contract; the SIMD variants are only chosen when detected.
        unsafe {
            match self {
                Self::Scalar => dot4_scalar(x, c, taps),
                #[cfg(target_arch = "x86_64")]
                Self::Avx2 => x86::dot4_avx2(x, c, taps),
                #[cfg(target_arch = "x86_64")]
                Self::Avx512 => x86::dot4_avx512(x, c, taps),
            }
        }
    }
}

/// Where a phase group writes: output `i` of row `r` goes to `out + i * step + r * second_row`.
pub(super) struct PhaseTarget {
    pub(super) out: *mut f32,
    pub(super) step: usize,
    pub(super) second_row: usize,
}

impl Kernel {
    /// Runs `count` outputs of one phase (or a pair of phases sharing windows): output `i`
    /// reads the window at `span + i * stride`.
    ///
    /// # Safety
    /// Every window, the first `phases` rows, and every target write must be in bounds.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn run_phase(
        self,
        span: *const f32,
        stride: usize,
        count: usize,
        rows: [*const f32; 2],
        phases: usize,
        taps: usize,
        target: &PhaseTarget,
    ) {
        // SAFETY: forwarded contract; SIMD variants are only chosen when detected.
        let full = unsafe {
            match (self, phases) {
                #[cfg(target_arch = "x86_64")]
                (Self::Avx512, 1) => {
                    x86::run_full_groups_avx512::<1>(span, stride, count, [rows[0]], taps, target)
                }
                #[cfg(target_arch = "x86_64")]
                (Self::Avx512, _) => {
                    x86::run_full_groups_avx512::<2>(span, stride, count, rows, taps, target)
                }
                #[cfg(target_arch = "x86_64")]
                (Self::Avx2, 1) => {
                    x86::run_full_groups_avx2::<1>(span, stride, count, [rows[0]], taps, target)
                }
                #[cfg(target_arch = "x86_64")]
                (Self::Avx2, _) => {
                    x86::run_full_groups_avx2::<2>(span, stride, count, rows, taps, target)
                }
                _ => 0,
            }
        };
        // The remainder (and everything on the scalar kernel) goes through `dot_grid`, whose
        // per-output arithmetic is the same.
        let mut i = full;
        while i < count {
            let n = (count - i).min(SHARED);
            // SAFETY: windows i..i+n are inside the span (clamped duplicates for unused slots).
            let windows: [*const f32; SHARED] =
                std::array::from_fn(|slot| unsafe { span.add((i + slot.min(n - 1)) * stride) });
            // SAFETY: forwarded contract.
            let sums = unsafe { self.dot_grid(n, &windows, rows, phases, taps) };
            for (row, row_sums) in sums.iter().take(phases).enumerate() {
                for (slot, &sum) in row_sums.iter().take(n).enumerate() {
                    // SAFETY: the caller guarantees every target write is in bounds.
                    unsafe {
                        *target
                            .out
                            .add((i + slot) * target.step + row * target.second_row) = sum;
                    }
                }
            }
            i += n;
        }
    }
}

/// Dot products of the first `n` (1..=SHARED) windows with the first `phases` (1 or 2)
/// coefficient rows, as `[row][window]`; per output the same operations, in the same order, as
/// `dot4`.
impl Kernel {
    /// # Safety
    /// The first `n` window pointers and the first `phases` rows must be valid for `taps` reads;
    /// `taps` must be a multiple of 16.
    pub(super) unsafe fn dot_grid(
        self,
        n: usize,
        x: &[*const f32; SHARED],
        c: [*const f32; 2],
        phases: usize,
        taps: usize,
    ) -> [[f32; SHARED]; 2] {
        let mut sums = [[0.0f32; SHARED]; 2];
        macro_rules! run {
            ($n:literal, $p:literal) => {{
                let windows: [*const f32; $n] = std::array::from_fn(|slot| x[slot]);
                let rows: [*const f32; $p] = std::array::from_fn(|row| c[row]);
                // SAFETY: forwarded contract; SIMD variants are only chosen when detected.
                let found: [[f32; $n]; $p] = unsafe {
                    match self {
                        Self::Scalar => dot_grid_scalar(windows, rows, taps),
                        #[cfg(target_arch = "x86_64")]
                        Self::Avx2 => x86::dot_grid_avx2(windows, rows, taps),
                        #[cfg(target_arch = "x86_64")]
                        Self::Avx512 => x86::dot_grid_avx512(windows, rows, taps),
                    }
                };
                for (row, row_sums) in found.iter().enumerate() {
                    sums[row][..$n].copy_from_slice(row_sums);
                }
            }};
        }
        match (n, phases) {
            (1, 1) => run!(1, 1),
            (2, 1) => run!(2, 1),
            (3, 1) => run!(3, 1),
            (4, 1) => run!(4, 1),
            (5, 1) => run!(5, 1),
            (6, 1) => run!(6, 1),
            (7, 1) => run!(7, 1),
            (_, 1) => run!(8, 1),
            (1, _) => run!(1, 2),
            (2, _) => run!(2, 2),
            (3, _) => run!(3, 2),
            (4, _) => run!(4, 2),
            (5, _) => run!(5, 2),
            (6, _) => run!(6, 2),
            (7, _) => run!(7, 2),
            _ => run!(8, 2),
        }
        sums
    }
}

impl Kernel {
    /// Output-parallel dot products of one phase: `sums[m]` (for `m < padded`, a multiple of
    /// 16) is the chain `((x_0 c_0 + 0) + x_1 c_1) + ...` over the taps in `row`, where tap `t`
    /// reads `streams[(t % down) * stream_len + t / down + m]`. The SIMD kernels fuse each step
    /// (identical bits on AVX2 and AVX-512); the scalar one rounds the product first.
    ///
    /// # Safety
    /// `down` is 1, 2 or 3; `streams` is 64-byte aligned, `stream_len` a multiple of 16, and
    /// every read above, and up to 16 floats past the last tap's, lies in the
    /// `down * stream_len` floats at `streams`; `sums` is valid for `padded` writes.
    pub(super) unsafe fn run_lanes(
        self,
        down: usize,
        streams: *const f32,
        stream_len: usize,
        padded: usize,
        row: &[f32],
        sums: *mut f32,
    ) {
        let source = LaneSource {
            streams,
            stream_len,
        };
        macro_rules! by_down {
            ($kernel:ident) => {
                match down {
                    1 => $kernel::<1>(&source, padded, row, sums),
                    2 => $kernel::<2>(&source, padded, row, sums),
                    _ => $kernel::<3>(&source, padded, row, sums),
                }
            };
        }
        // SAFETY: forwarded contract; SIMD variants are only chosen when detected.
        unsafe {
            match self {
                Self::Scalar => by_down!(lanes_scalar),
                #[cfg(target_arch = "x86_64")]
                Self::Avx2 => {
                    use x86::lanes_avx2;
                    by_down!(lanes_avx2);
                }
                #[cfg(target_arch = "x86_64")]
                Self::Avx512 => {
                    use x86::lanes_avx512;
                    by_down!(lanes_avx512);
                }
            }
        }
    }
}

/// Where the output-parallel kernels read: see `Kernel::run_lanes`.
pub(super) struct LaneSource {
    pub(super) streams: *const f32,
    pub(super) stream_len: usize,
}

impl LaneSource {
    /// Where tap `tap` of output `m` is read, for `down == D`.
    ///
    /// # Safety
    /// The result must stay inside the streams (the caller's contract).
    #[inline]
    pub(super) unsafe fn tap<const D: usize>(&self, tap: usize, m: usize) -> *const f32 {
        // SAFETY: forwarded contract.
        unsafe { self.streams.add((tap % D) * self.stream_len + tap / D + m) }
    }
}

/// # Safety
/// See `Kernel::run_lanes`.
pub(super) unsafe fn lanes_scalar<const D: usize>(
    source: &LaneSource,
    padded: usize,
    row: &[f32],
    sums: *mut f32,
) {
    for m in (0..padded).step_by(LANE_PAD) {
        let mut acc = [0.0f32; LANE_PAD];
        for (tap, &c) in row.iter().enumerate() {
            // SAFETY: lanes m..m + LANE_PAD of every tap lie inside the streams.
            let x = unsafe { std::slice::from_raw_parts(source.tap::<D>(tap, m), LANE_PAD) };
            for (a, &xi) in acc.iter_mut().zip(x) {
                *a += xi * c;
            }
        }
        // SAFETY: `sums` holds `padded` floats.
        unsafe { std::ptr::copy_nonoverlapping(acc.as_ptr(), sums.add(m), LANE_PAD) };
    }
}

pub(super) unsafe fn dot_grid_scalar<const N: usize, const P: usize>(
    x: [*const f32; N],
    c: [*const f32; P],
    taps: usize,
) -> [[f32; N]; P] {
    // SAFETY: forwarded contract.
    std::array::from_fn(|row| {
        std::array::from_fn(|slot| unsafe { dot1_scalar(x[slot], c[row], taps) })
    })
}

pub(super) unsafe fn dot4_scalar(x: [*const f32; 4], c: [*const f32; 4], taps: usize) -> [f32; 4] {
    // SAFETY: forwarded contract.
    std::array::from_fn(|slot| unsafe { dot1_scalar(x[slot], c[slot], taps) })
}

/// # Safety
/// Both pointers must be valid for `taps` (a multiple of 16) reads.
pub(super) unsafe fn dot1_scalar(x: *const f32, c: *const f32, taps: usize) -> f32 {
    // SAFETY: the caller guarantees `taps` readable floats behind each pointer.
    let (xs, cs) = unsafe {
        (
            std::slice::from_raw_parts(x, taps),
            std::slice::from_raw_parts(c, taps),
        )
    };
    // Sixteen separate lanes let the compiler vectorise without reassociating.
    let mut lanes = [0.0f32; BLOCK];
    for (xb, cb) in xs.chunks_exact(BLOCK).zip(cs.chunks_exact(BLOCK)) {
        for lane in 0..BLOCK {
            lanes[lane] += xb[lane] * cb[lane];
        }
    }
    let mut width = BLOCK / 2;
    while width > 0 {
        for lane in 0..width {
            lanes[lane] += lanes[lane + width];
        }
        width /= 2;
    }
    lanes[0]
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{LaneSource, PhaseTarget, SHARED};
    use std::arch::x86_64::{
        __m256, __m512, _mm256_add_ps, _mm256_castpd_ps, _mm256_castps256_ps128,
        _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_hadd_ps, _mm256_loadu_ps,
        _mm256_permute2f128_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
        _mm256_unpackhi_ps, _mm256_unpacklo_ps, _mm512_alignr_epi32, _mm512_castps512_ps256,
        _mm512_castps_pd, _mm512_castps_si512, _mm512_castsi512_ps, _mm512_extractf64x4_pd,
        _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_setzero_si512,
        _mm512_storeu_ps, _mm_add_ps, _mm_storeu_ps,
    };

    /// Vectors of outputs in flight per block: enough independent FMA chains to cover the
    /// latency of two FMA ports.
    const LANE_VECTORS: usize = 8;

    /// Generates an output-parallel kernel (see `Kernel::run_lanes`) for one vector width.
    macro_rules! lanes_kernel {
        ($name:ident, $block:ident, $features:literal, $width:literal, $vector:ty,
         $zero:ident, $splat:ident, $load:ident, $fma:ident, $store:ident) => {
            /// # Safety
            /// The CPU must have the target features; see `Kernel::run_lanes`.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name<const D: usize>(
                source: &LaneSource,
                padded: usize,
                row: &[f32],
                sums: *mut f32,
            ) {
                // The vectors go in nearly equal blocks of at most LANE_VECTORS: a lone
                // leftover vector would be one FMA chain, bound by latency.
                let mut left = padded / $width;
                let mut blocks = left.div_ceil(LANE_VECTORS);
                let mut m = 0;
                while left > 0 {
                    let take = left.div_ceil(blocks);
                    // SAFETY: forwarded contract (`padded` is a multiple of the width).
                    unsafe {
                        match take {
                            1 => $block::<D, 1>(source, m, row, sums),
                            2 => $block::<D, 2>(source, m, row, sums),
                            3 => $block::<D, 3>(source, m, row, sums),
                            4 => $block::<D, 4>(source, m, row, sums),
                            5 => $block::<D, 5>(source, m, row, sums),
                            6 => $block::<D, 6>(source, m, row, sums),
                            7 => $block::<D, 7>(source, m, row, sums),
                            _ => $block::<D, LANE_VECTORS>(source, m, row, sums),
                        }
                    }
                    m += take * $width;
                    left -= take;
                    blocks -= 1;
                }
            }

            /// Outputs `m..m + B * width`: taps go `D` at a time, one pointer per phase
            /// stream, each advancing one float per group.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn $block<const D: usize, const B: usize>(
                source: &LaneSource,
                m: usize,
                row: &[f32],
                sums: *mut f32,
            ) {
                let mut acc: [$vector; B] = [$zero(); B];
                // SAFETY (whole body): every read is a lane of a tap of an output below
                // `padded`, inside the streams by the caller's contract; the stores land in
                // `sums[..padded]`.
                let mut at: [*const f32; D] =
                    std::array::from_fn(|d| unsafe { source.tap::<D>(d, m) });
                let groups = row.len() / D;
                for group in 0..groups {
                    for d in 0..D {
                        let c = $splat(unsafe { *row.get_unchecked(group * D + d) });
                        for (b, sum) in acc.iter_mut().enumerate() {
                            *sum = $fma(unsafe { $load(at[d].add($width * b)) }, c, *sum);
                        }
                        at[d] = unsafe { at[d].add(1) };
                    }
                }
                for d in 0..row.len() - groups * D {
                    let c = $splat(row[groups * D + d]);
                    for (b, sum) in acc.iter_mut().enumerate() {
                        *sum = $fma(unsafe { $load(at[d].add($width * b)) }, c, *sum);
                    }
                }
                for (b, sum) in acc.iter().enumerate() {
                    unsafe { $store(sums.add(m + $width * b), *sum) };
                }
            }
        };
    }

    /// The AVX-512 output-parallel kernel (see `Kernel::run_lanes`). Sixteen taps of a stream
    /// read sixteen consecutive unaligned vectors; they are built from aligned loads with
    /// `valignd` instead, so no load straddles a cache line.
    ///
    /// # Safety
    /// AVX-512F, AVX2 and FMA must be available; see `Kernel::run_lanes`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn lanes_avx512<const D: usize>(
        source: &LaneSource,
        padded: usize,
        row: &[f32],
        sums: *mut f32,
    ) {
        // (B + 1) aligned vectors per stream stay live beside B sums: fewer vectors per block
        // when the input comes in three streams, so nothing spills.
        let most = if D == 3 { 6 } else { LANE_VECTORS };
        let mut left = padded / 16;
        let mut blocks = left.div_ceil(most);
        let mut m = 0;
        while left > 0 {
            let take = left.div_ceil(blocks);
            // SAFETY: forwarded contract (`padded` is a multiple of 16).
            unsafe {
                match take {
                    1 => aligned_block_avx512::<D, 1>(source, m, row, sums),
                    2 => aligned_block_avx512::<D, 2>(source, m, row, sums),
                    3 => aligned_block_avx512::<D, 3>(source, m, row, sums),
                    4 => aligned_block_avx512::<D, 4>(source, m, row, sums),
                    5 => aligned_block_avx512::<D, 5>(source, m, row, sums),
                    6 => aligned_block_avx512::<D, 6>(source, m, row, sums),
                    7 => aligned_block_avx512::<D, 7>(source, m, row, sums),
                    _ => aligned_block_avx512::<D, LANE_VECTORS>(source, m, row, sums),
                }
            }
            m += take * 16;
            left -= take;
            blocks -= 1;
        }
    }

    /// Outputs `m..m + 16 * B` of `lanes_avx512`, taps in order: whole runs of 16 groups of
    /// `D` taps from aligned vectors, then the rest from unaligned loads.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn aligned_block_avx512<const D: usize, const B: usize>(
        source: &LaneSource,
        m: usize,
        row: &[f32],
        sums: *mut f32,
    ) {
        let mut acc = [_mm512_setzero_ps(); B];
        let full_groups = row.len() / D;
        let runs = full_groups / 16;
        // SAFETY (whole body): every read is a lane of a tap of an output below `padded`, or
        // of the aligned vector after it, inside the streams by the caller's contract; the
        // stores land in `sums[..padded]`.
        let stream: [*const f32; D] =
            std::array::from_fn(|d| unsafe { source.streams.add(d * source.stream_len + m) });
        for run in 0..runs {
            let mut aligned = [[_mm512_setzero_si512(); LANE_VECTORS + 1]; D];
            for (d, vectors) in aligned.iter_mut().enumerate() {
                for (b, vector) in vectors.iter_mut().enumerate().take(B + 1) {
                    *vector = _mm512_castps_si512(unsafe {
                        _mm512_loadu_ps(stream[d].add(16 * (run + b)))
                    });
                }
            }
            let taps = &row[run * 16 * D..(run + 1) * 16 * D];
            macro_rules! shifted {
                ($($s:literal)*) => {$(
                    for (d, vectors) in aligned.iter().enumerate() {
                        let c = _mm512_set1_ps(taps[$s * D + d]);
                        for (b, sum) in acc.iter_mut().enumerate() {
                            let x = _mm512_alignr_epi32::<$s>(vectors[b + 1], vectors[b]);
                            *sum = _mm512_fmadd_ps(_mm512_castsi512_ps(x), c, *sum);
                        }
                    }
                )*};
            }
            shifted!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        }
        let mut at: [*const f32; D] = std::array::from_fn(|d| unsafe { stream[d].add(16 * runs) });
        for group in 16 * runs..full_groups {
            for d in 0..D {
                let c = _mm512_set1_ps(row[group * D + d]);
                for (b, sum) in acc.iter_mut().enumerate() {
                    *sum = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(at[d].add(16 * b)) }, c, *sum);
                }
                at[d] = unsafe { at[d].add(1) };
            }
        }
        for d in 0..row.len() - full_groups * D {
            let c = _mm512_set1_ps(row[full_groups * D + d]);
            for (b, sum) in acc.iter_mut().enumerate() {
                *sum = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(at[d].add(16 * b)) }, c, *sum);
            }
        }
        for (b, sum) in acc.iter().enumerate() {
            unsafe { _mm512_storeu_ps(sums.add(m + 16 * b), *sum) };
        }
    }

    lanes_kernel!(
        lanes_avx2,
        lane_block_avx2,
        "avx2,fma",
        8,
        __m256,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        _mm256_storeu_ps
    );

    /// Sums each of four 8-lane vectors: `[sum(a), sum(b), sum(c), sum(d)]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce4(a: __m256, b: __m256, c: __m256, d: __m256) -> [f32; 4] {
        let ab = _mm256_hadd_ps(a, b);
        let cd = _mm256_hadd_ps(c, d);
        let abcd = _mm256_hadd_ps(ab, cd);
        let folded = _mm_add_ps(
            _mm256_castps256_ps128(abcd),
            _mm256_extractf128_ps::<1>(abcd),
        );
        let mut sums = [0.0f32; 4];
        // SAFETY: `sums` has room for four floats.
        unsafe { _mm_storeu_ps(sums.as_mut_ptr(), folded) };
        sums
    }

    /// # Safety
    /// AVX2 and FMA must be available; each pointer valid for `taps` (a multiple of 16) reads.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot4_avx2(
        x: [*const f32; 4],
        c: [*const f32; 4],
        taps: usize,
    ) -> [f32; 4] {
        let mut lo = [_mm256_setzero_ps(); 4];
        let mut hi = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i < taps {
            for slot in 0..4 {
                // SAFETY: i + 16 <= taps, within the caller's guarantee.
                unsafe {
                    lo[slot] = _mm256_fmadd_ps(
                        _mm256_loadu_ps(x[slot].add(i)),
                        _mm256_loadu_ps(c[slot].add(i)),
                        lo[slot],
                    );
                    hi[slot] = _mm256_fmadd_ps(
                        _mm256_loadu_ps(x[slot].add(i + 8)),
                        _mm256_loadu_ps(c[slot].add(i + 8)),
                        hi[slot],
                    );
                }
            }
            i += 16;
        }
        reduce4(
            _mm256_add_ps(lo[0], hi[0]),
            _mm256_add_ps(lo[1], hi[1]),
            _mm256_add_ps(lo[2], hi[2]),
            _mm256_add_ps(lo[3], hi[3]),
        )
    }

    /// Adds the two halves of a 16-lane vector.
    #[inline]
    #[target_feature(enable = "avx512f,avx2")]
    fn fold(v: __m512) -> __m256 {
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        _mm256_add_ps(_mm512_castps512_ps256(v), high)
    }

    /// Reduces up to SHARED 8-lane vectors four at a time, exactly as `reduce4` does.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce_all<const N: usize>(v: [__m256; N]) -> [f32; N] {
        let mut sums = [0.0f32; N];
        let mut start = 0;
        while start < N {
            let pick = |i: usize| {
                if start + i < N {
                    v[start + i]
                } else {
                    _mm256_setzero_ps()
                }
            };
            let four = reduce4(pick(0), pick(1), pick(2), pick(3));
            let take = (N - start).min(4);
            sums[start..start + take].copy_from_slice(&four[..take]);
            start += 4;
        }
        sums
    }

    /// Writes the outputs of a `[row][slot]` grid into a phase target.
    #[inline]
    unsafe fn store_grid<const N: usize, const P: usize>(
        sums: &[[f32; N]; P],
        first: usize,
        target: &PhaseTarget,
    ) {
        for (row, row_sums) in sums.iter().enumerate() {
            for (slot, &sum) in row_sums.iter().enumerate() {
                // SAFETY: the caller guarantees every target write is in bounds.
                unsafe {
                    *target
                        .out
                        .add((first + slot) * target.step + row * target.second_row) = sum;
                }
            }
        }
    }

    /// Runs every full group of SHARED outputs of a phase; returns how many outputs it did.
    ///
    /// # Safety
    /// AVX-512F, AVX2 and FMA must be available; see `Kernel::run_phase`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn run_full_groups_avx512<const P: usize>(
        span: *const f32,
        stride: usize,
        count: usize,
        rows: [*const f32; P],
        taps: usize,
        target: &PhaseTarget,
    ) -> usize {
        // Mono 2:1 (one row, consecutive outputs) and 1:2 (two rows interleaved) targets take
        // whole vectors: the sums stay in registers instead of going out one float at a time.
        let packed =
            (P == 1 && target.step == 1) || (P == 2 && target.step == 2 && target.second_row == 1);
        let mut i = 0;
        while i + SHARED <= count {
            // SAFETY: windows i..i+SHARED are inside the span; the caller covers the writes.
            unsafe {
                let windows: [*const f32; SHARED] =
                    std::array::from_fn(|slot| span.add((i + slot) * stride));
                if packed {
                    let sums = dot8_rows_avx512::<P>(windows, rows, taps);
                    let out = target.out.add(i * target.step);
                    if P == 1 {
                        _mm256_storeu_ps(out, sums[0]);
                    } else {
                        let low = _mm256_unpacklo_ps(sums[0], sums[P - 1]);
                        let high = _mm256_unpackhi_ps(sums[0], sums[P - 1]);
                        _mm256_storeu_ps(out, _mm256_permute2f128_ps::<0x20>(low, high));
                        _mm256_storeu_ps(out.add(8), _mm256_permute2f128_ps::<0x31>(low, high));
                    }
                } else {
                    let sums = dot_grid_avx512::<SHARED, P>(windows, rows, taps);
                    store_grid(&sums, i, target);
                }
            }
            i += SHARED;
        }
        i
    }

    /// `dot_grid_avx512` for eight windows, each row's eight sums returned as one vector. The
    /// reduction adds the same pairs in the same order as `reduce4` (so every output is bit for
    /// bit what the other paths give), eight outputs at a time.
    ///
    /// # Safety
    /// AVX-512F, AVX2 and FMA must be available; each pointer valid for `taps` (a multiple of
    /// 16) reads.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn dot8_rows_avx512<const P: usize>(
        x: [*const f32; SHARED],
        c: [*const f32; P],
        taps: usize,
    ) -> [__m256; P] {
        let mut acc = [[_mm512_setzero_ps(); SHARED]; P];
        let mut i = 0;
        while i < taps {
            // SAFETY: i + 16 <= taps, within the caller's guarantee.
            unsafe {
                let coefs: [__m512; P] = std::array::from_fn(|row| _mm512_loadu_ps(c[row].add(i)));
                for slot in 0..SHARED {
                    let window = _mm512_loadu_ps(x[slot].add(i));
                    for row in 0..P {
                        acc[row][slot] = _mm512_fmadd_ps(window, coefs[row], acc[row][slot]);
                    }
                }
            }
            i += 16;
        }
        std::array::from_fn(|row| {
            let f: [__m256; SHARED] = std::array::from_fn(|slot| fold(acc[row][slot]));
            let abcd = _mm256_hadd_ps(_mm256_hadd_ps(f[0], f[1]), _mm256_hadd_ps(f[2], f[3]));
            let efgh = _mm256_hadd_ps(_mm256_hadd_ps(f[4], f[5]), _mm256_hadd_ps(f[6], f[7]));
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(abcd, efgh),
                _mm256_permute2f128_ps::<0x31>(abcd, efgh),
            )
        })
    }

    /// `run_full_groups_avx512` on AVX2.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; see `Kernel::run_phase`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_full_groups_avx2<const P: usize>(
        span: *const f32,
        stride: usize,
        count: usize,
        rows: [*const f32; P],
        taps: usize,
        target: &PhaseTarget,
    ) -> usize {
        let mut i = 0;
        while i + SHARED <= count {
            // SAFETY: windows i..i+SHARED are inside the span; the caller covers the writes.
            unsafe {
                let windows: [*const f32; SHARED] =
                    std::array::from_fn(|slot| span.add((i + slot) * stride));
                let sums = dot_grid_avx2::<SHARED, P>(windows, rows, taps);
                store_grid(&sums, i, target);
            }
            i += SHARED;
        }
        i
    }

    /// `dot4_avx2` for N windows times P coefficient rows (each loaded once per block).
    ///
    /// # Safety
    /// AVX2 and FMA must be available; each pointer valid for `taps` (a multiple of 16) reads.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_grid_avx2<const N: usize, const P: usize>(
        x: [*const f32; N],
        c: [*const f32; P],
        taps: usize,
    ) -> [[f32; N]; P] {
        let mut lo = [[_mm256_setzero_ps(); N]; P];
        let mut hi = [[_mm256_setzero_ps(); N]; P];
        let mut i = 0;
        while i < taps {
            // SAFETY: i + 16 <= taps, within the caller's guarantee.
            unsafe {
                let c_lo: [__m256; P] = std::array::from_fn(|row| _mm256_loadu_ps(c[row].add(i)));
                let c_hi: [__m256; P] =
                    std::array::from_fn(|row| _mm256_loadu_ps(c[row].add(i + 8)));
                for slot in 0..N {
                    let (x_lo, x_hi) = (
                        _mm256_loadu_ps(x[slot].add(i)),
                        _mm256_loadu_ps(x[slot].add(i + 8)),
                    );
                    for row in 0..P {
                        lo[row][slot] = _mm256_fmadd_ps(x_lo, c_lo[row], lo[row][slot]);
                        hi[row][slot] = _mm256_fmadd_ps(x_hi, c_hi[row], hi[row][slot]);
                    }
                }
            }
            i += 16;
        }
        let mut sums = [[0.0f32; N]; P];
        for row in 0..P {
            let mut folded = [_mm256_setzero_ps(); N];
            for slot in 0..N {
                folded[slot] = _mm256_add_ps(lo[row][slot], hi[row][slot]);
            }
            sums[row] = reduce_all(folded);
        }
        sums
    }

    /// `dot4_avx512` for N windows times P coefficient rows (each loaded once per block).
    ///
    /// # Safety
    /// AVX-512F, AVX2 and FMA must be available; each pointer valid for `taps` (a multiple of
    /// 16) reads.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn dot_grid_avx512<const N: usize, const P: usize>(
        x: [*const f32; N],
        c: [*const f32; P],
        taps: usize,
    ) -> [[f32; N]; P] {
        let mut acc = [[_mm512_setzero_ps(); N]; P];
        let mut i = 0;
        while i < taps {
            // SAFETY: i + 16 <= taps, within the caller's guarantee.
            unsafe {
                let coefs: [__m512; P] = std::array::from_fn(|row| _mm512_loadu_ps(c[row].add(i)));
                for slot in 0..N {
                    let window = _mm512_loadu_ps(x[slot].add(i));
                    for row in 0..P {
                        acc[row][slot] = _mm512_fmadd_ps(window, coefs[row], acc[row][slot]);
                    }
                }
            }
            i += 16;
        }
        let mut sums = [[0.0f32; N]; P];
        for row in 0..P {
            let mut folded = [_mm256_setzero_ps(); N];
            for slot in 0..N {
                folded[slot] = fold(acc[row][slot]);
            }
            sums[row] = reduce_all(folded);
        }
        sums
    }

    /// # Safety
    /// AVX-512F, AVX2 and FMA must be available; each pointer valid for `taps` (a multiple of
    /// 16) reads.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn dot4_avx512(
        x: [*const f32; 4],
        c: [*const f32; 4],
        taps: usize,
    ) -> [f32; 4] {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i < taps {
            for slot in 0..4 {
                // SAFETY: i + 16 <= taps, within the caller's guarantee.
                unsafe {
                    acc[slot] = _mm512_fmadd_ps(
                        _mm512_loadu_ps(x[slot].add(i)),
                        _mm512_loadu_ps(c[slot].add(i)),
                        acc[slot],
                    );
                }
            }
            i += 16;
        }
        reduce4(fold(acc[0]), fold(acc[1]), fold(acc[2]), fold(acc[3]))
    }
}
