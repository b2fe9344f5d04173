//! The streaming engine: input history, the exact output clock, and the two ways outputs are
//! computed (phase by phase through the dot-product kernels, or output-parallel lanes).

use std::sync::Arc;

use super::design::{PhaseTable, PolyphaseFilter};
use super::kernels::PhaseTarget;
use super::Resampler;

/// Mono streams whose reduced ratio has `up` and `down` both at most `MAX_LANE_RATIO` (2:1, 1:2,
/// 3:1, 1:3, 3:2, 2:3, 1:1) compute outputs output-parallel: SIMD lanes hold consecutive outputs
/// of one phase, each tap is broadcast, and the input is split into `down` phase streams so
/// every load has unit stride. Each output is one fused multiply-add chain over its taps in
/// order, whichever lane or block it lands in, so chunking never changes a result.
#[derive(Debug, Clone, Copy)]
pub(super) struct LaneTaps {
    /// Taps `first..end` of every row; the columns outside are zero in all rows and skipped.
    pub(super) first: usize,
    pub(super) end: usize,
}

pub(super) const MAX_LANE_RATIO: u64 = 3;
/// Outputs per lane block: the block's input span and its phase streams stay in L2.
pub(super) const LANE_BLOCK: usize = 6_144;
/// Streams and sums are padded by a whole vector so the last, partial vector reads zeros.
pub(super) const LANE_PAD: usize = 16;

impl LaneTaps {
    pub(super) fn plan(
        filter: &PolyphaseFilter,
        up: u64,
        down: u64,
        channels: usize,
    ) -> Option<Self> {
        if channels != 1
            || up > MAX_LANE_RATIO
            || down > MAX_LANE_RATIO
            || !matches!(filter.table, PhaseTable::Exact)
        {
            return None;
        }
        let rows = (0..up as usize).map(|phase| filter.row(phase));
        let nonzero = |row: &[f32]| {
            let first = row.iter().position(|&c| c != 0.0)?;
            let last = row.iter().rposition(|&c| c != 0.0)?;
            Some((first, last + 1))
        };
        let (first, end) = rows
            .filter_map(nonzero)
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
            .unwrap_or((0, 0));
        Some(Self { first, end })
    }
}

impl Resampler {
    pub(super) fn append(&mut self, input: &[f32], frames: usize) {
        if self.channels == 1 {
            self.history[0].extend_from_slice(input);
        } else {
            for (channel, history) in self.history.iter_mut().enumerate() {
                history.extend(input.iter().skip(channel).step_by(self.channels));
            }
        }
        self.frames_in += frames as u64;
    }

    pub(super) fn append_i16(&mut self, input: &[i16], frames: usize) {
        let mut staged = std::mem::take(&mut self.scratch_in);
        staged.clear();
        staged.extend(input.iter().map(|&x| f32::from(x) * (1.0 / 32768.0)));
        self.append(&staged, frames);
        self.scratch_in = staged;
    }

    /// Drops history that no future output reads.
    pub(super) fn discard_consumed(&mut self) {
        let first_needed = self.window_start(self.next_quotient);
        let drop = (first_needed - self.history_start).max(0) as usize;
        if drop > 0 {
            for channel in &mut self.history {
                channel.drain(..drop.min(channel.len()));
            }
            self.history_start += drop as i64;
        }
    }

    /// `(k * down / up, k * down % up)`: where output `k` falls in the input.
    pub(super) fn clock(&self, k: u64) -> (u64, u64) {
        if let Some(position) = k.checked_mul(self.down) {
            return (position / self.up, position % self.up);
        }
        let position = u128::from(k) * u128::from(self.down);
        let up = u128::from(self.up);
        ((position / up) as u64, (position % up) as u64)
    }

    pub(super) fn window_start(&self, quotient: u64) -> i64 {
        quotient as i64 - (self.filter.behind + self.filter.lead_pad) as i64 + 1
    }

    /// Runs the leading outputs of `out` (`count` frames) phase by phase while every phase
    /// recurs at least twice; returns how many it did and leaves the clock after them.
    pub(super) fn emit_phase_blocks(
        &mut self,
        out: &mut [f32],
        count: usize,
        filter: &PolyphaseFilter,
    ) -> usize {
        let channels = self.channels;
        let taps = filter.taps;
        let mut done = 0;
        // Outputs `k` and `k + up` share a phase (their windows are `down` inputs apart): when
        // every phase recurs in this call, outputs run phase by phase, up to SHARED at a time,
        // loading each coefficient once per group. Per output the arithmetic is unchanged.
        let up = self.up as usize;
        // Long runs go in blocks whose input span stays in cache (a phase-major sweep of a
        // whole 10 s signal would re-read it from memory once per phase).
        let block_len = (16 * up).max(2048);
        while matches!(filter.table, PhaseTable::Exact) && count - done >= 2 * up {
            let block = (count - done).min(block_len);
            let base = self.next_out + done as u64;
            let block_out = &mut out[done * channels..(done + block) * channels];
            let stride = self.down as usize;
            let mut j = 0;
            while j < up {
                let (quotient, phase) = self.clock(base + j as u64);
                let first = (self.window_start(quotient) - self.history_start) as usize;
                let per_phase = (block - j).div_ceil(up);
                // When the ratio upsamples, neighbouring phases often start at the same input
                // (and so share every window): a pair then loads each window once.
                let partner = (j + 1 < up)
                    .then(|| self.clock(base + j as u64 + 1))
                    .filter(|&(next_quotient, _)| next_quotient == quotient)
                    .filter(|_| (block - j - 1).div_ceil(up) == per_phase);
                let rows = [
                    filter.row(phase as usize).as_ptr(),
                    filter
                        .row(partner.map_or(phase, |(_, p)| p) as usize)
                        .as_ptr(),
                ];
                let phases_here = 1 + usize::from(partner.is_some());
                let last_output =
                    (j + phases_here - 1 + (per_phase - 1) * up) * channels + channels;
                assert!(
                    last_output <= block_out.len(),
                    "phase group overruns its output"
                );
                for (channel, history) in self.history.iter().enumerate() {
                    // One bounds check covers every window of the phase.
                    let span = &history[first..first + (per_phase - 1) * stride + taps];
                    let target = PhaseTarget {
                        out: block_out[j * channels + channel..].as_mut_ptr(),
                        step: up * channels,
                        second_row: channels,
                    };
                    // SAFETY: the span holds every window, the rows hold `taps` floats, and
                    // every write lands below `last_output` (checked above).
                    unsafe {
                        self.kernel.run_phase(
                            span.as_ptr(),
                            stride,
                            per_phase,
                            rows,
                            phases_here,
                            taps,
                            &target,
                        );
                    }
                }
                j += phases_here;
            }
            done += block;
            (self.next_quotient, self.next_phase) = self.clock(self.next_out + done as u64);
        }
        done
    }

    /// Computes the `count` outputs from `next_out` on (mono) with the output-parallel kernels,
    /// block by block; leaves the clock to the caller.
    pub(super) fn emit_lanes(
        &mut self,
        out: &mut [f32],
        count: usize,
        filter: &PolyphaseFilter,
        lanes: LaneTaps,
    ) {
        let up = self.up as usize;
        let down = self.down as usize;
        let taps = lanes.end.saturating_sub(lanes.first);
        let mut done = 0;
        while done < count {
            let block = (count - done).min(LANE_BLOCK);
            let base = self.next_out + done as u64;
            let sums_len = block.div_ceil(up).div_ceil(LANE_PAD) * LANE_PAD;
            // Every sum is written by the kernel before it is read: no need to clear.
            if self.lane_sums.len() < sums_len * up {
                self.lane_sums.resize(sums_len * up, 0.0);
            }
            // Phase `j` of the block computes outputs j, j + up, ... Its input goes into `down`
            // streams, 64-byte aligned: stream `d` holds the inputs read by taps d, d + down,
            // ... of its first output, so tap `t` of output `m` reads stream `t % down` at
            // `t / down + m`, consecutive across lanes.
            let stream_len =
                (taps.div_ceil(down) + sums_len).div_ceil(LANE_PAD) * LANE_PAD + LANE_PAD;
            if self.lane_streams.len() < stream_len * down + LANE_PAD {
                self.lane_streams.resize(stream_len * down + LANE_PAD, 0.0);
            }
            let aligned = self.lane_streams.as_ptr().align_offset(64).min(LANE_PAD);
            for j in 0..up.min(block) {
                let (quotient, phase) = self.clock(base + j as u64);
                let start = (self.window_start(quotient) + lanes.first as i64 - self.history_start)
                    as usize;
                let history = &self.history[0];
                let span = &history[start..history.len().min(start + down * stream_len)];
                let streams = &mut self.lane_streams[aligned..aligned + stream_len * down];
                match down {
                    1 => {
                        streams[..span.len()].copy_from_slice(span);
                        streams[span.len()..].fill(0.0);
                    }
                    2 => split_phases::<2>(span, streams, stream_len),
                    _ => split_phases::<3>(span, streams, stream_len),
                }
                let padded = (block - j).div_ceil(up).div_ceil(LANE_PAD) * LANE_PAD;
                // Every lane of every vector, the padding lanes of the last one included, reads
                // inside its stream (the AVX-512 kernel one vector past the last tap).
                assert!(
                    taps.div_ceil(down) + padded + LANE_PAD <= stream_len,
                    "lane block overruns its input streams"
                );
                let row = &filter.row(phase as usize)[lanes.first..lanes.first + taps];
                let sums = &mut self.lane_sums[j * sums_len..j * sums_len + padded];
                // SAFETY: checked above; the streams start 64-byte aligned and hold
                // `down * stream_len` floats; `sums` holds `padded` floats.
                unsafe {
                    self.kernel.run_lanes(
                        down,
                        streams.as_ptr(),
                        stream_len,
                        padded,
                        row,
                        sums.as_mut_ptr(),
                    );
                }
            }
            let block_out = &mut out[done..done + block];
            match up {
                1 => block_out.copy_from_slice(&self.lane_sums[..block]),
                2 => interleave_phases::<2>(&self.lane_sums, sums_len, block_out),
                _ => interleave_phases::<3>(&self.lane_sums, sums_len, block_out),
            }
            done += block;
        }
    }

    /// Computes outputs `next_out..until` (all of whose windows are in the history).
    pub(super) fn emit(&mut self, until: u64, out: &mut Vec<f32>) {
        if until <= self.next_out {
            return;
        }
        let count = (until - self.next_out) as usize;
        let channels = self.channels;
        let base = out.len();
        out.resize(base + count * channels, 0.0);
        let out = &mut out[base..];
        let filter = Arc::clone(&self.filter);
        if let Some(lanes) = self.lanes {
            self.emit_lanes(out, count, &filter, lanes);
            self.next_out = until;
            (self.next_quotient, self.next_phase) = self.clock(until);
            return;
        }
        let taps = filter.taps;
        let mut done = self.emit_phase_blocks(out, count, &filter);
        while done < count {
            let group = (count - done).min(4);
            let mut offsets = [0usize; 4];
            let mut phases = [0u64; 4];
            for slot in 0..group {
                offsets[slot] =
                    (self.window_start(self.next_quotient) - self.history_start) as usize;
                phases[slot] = self.next_phase;
                self.next_phase += self.down;
                self.next_quotient += self.next_phase / self.up;
                self.next_phase %= self.up;
            }
            let mut rows: [*const f32; 4] = [std::ptr::null(); 4];
            for slot in 0..group {
                rows[slot] = match filter.table {
                    PhaseTable::Exact => filter.row(phases[slot] as usize).as_ptr(),
                    PhaseTable::Interpolated { rows } => {
                        let position = phases[slot] * rows;
                        let index = (position / self.up) as usize;
                        let fraction = (position % self.up) as f32 / self.up as f32;
                        let scratch = &mut self.scratch_coefs[slot * taps..(slot + 1) * taps];
                        let (a, b) = (filter.row(index), filter.row(index + 1));
                        for ((c, &lo), &hi) in scratch.iter_mut().zip(a).zip(b) {
                            *c = lo + fraction * (hi - lo);
                        }
                        scratch.as_ptr()
                    }
                };
            }
            // Unused lanes repeat the first output; their results are dropped.
            for slot in group..4 {
                offsets[slot] = offsets[0];
                rows[slot] = rows[0];
            }
            for (channel, history) in self.history.iter().enumerate() {
                let windows = offsets.map(|offset| {
                    debug_assert!(offset + taps <= history.len());
                    history[offset..offset + taps].as_ptr()
                });
                // SAFETY: every window and row holds `taps` floats (checked above for windows:
                // `emit` is only called for outputs whose windows lie inside the history).
                let sums = unsafe { self.kernel.dot4(windows, rows, taps) };
                for (slot, &sum) in sums.iter().take(group).enumerate() {
                    out[(done + slot) * channels + channel] = sum;
                }
            }
            done += group;
        }
        self.next_out = until;
    }
}

/// Splits `span` into `D` phase streams of `stream_len` floats each: stream `d` gets
/// `span[d]`, `span[d + D]`, ..., then zeros.
pub(super) fn split_phases<const D: usize>(span: &[f32], streams: &mut [f32], stream_len: usize) {
    let mut runs = streams.chunks_exact_mut(stream_len);
    let mut phases: [&mut [f32]; D] = std::array::from_fn(|_| runs.next().unwrap_or_default());
    let groups = span.chunks_exact(D);
    let tail = groups.remainder();
    let whole = span.len() / D;
    for (i, group) in groups.enumerate() {
        for (phase, &x) in phases.iter_mut().zip(group) {
            phase[i] = x;
        }
    }
    for (d, phase) in phases.iter_mut().enumerate() {
        let written = whole + usize::from(d < tail.len());
        if d < tail.len() {
            phase[whole] = tail[d];
        }
        phase[written..].fill(0.0);
    }
}

/// Interleaves `U` runs of sums (`stride` apart) into `out`: `out[m * U + j]` is sum `m` of run
/// `j`.
pub(super) fn interleave_phases<const U: usize>(sums: &[f32], stride: usize, out: &mut [f32]) {
    let phases: [&[f32]; U] = std::array::from_fn(|j| &sums[j * stride..(j + 1) * stride]);
    let whole = out.len() / U;
    let mut groups = out.chunks_exact_mut(U);
    for (m, group) in (&mut groups).enumerate() {
        for (slot, phase) in group.iter_mut().zip(&phases) {
            *slot = phase[m];
        }
    }
    for (slot, phase) in groups.into_remainder().iter_mut().zip(&phases) {
        *slot = phase[whole];
    }
}
