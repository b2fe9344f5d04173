//! Fixed-capacity sample queues: a plain PCM16 ring buffer and the speaker-side playback
//! buffer, which remembers which conversation item each queued sample belongs to so that a
//! barge-in can report exactly how much of the assistant's answer was heard.
//!
//! Neither structure ever reallocates after construction, so pulling from an audio callback
//! costs a lock and two `memcpy`s at most. Both are plain (single-owner) Rust values; the
//! bindings put each behind a mutex.

use std::collections::VecDeque;

use crate::{memory, AudioError};

/// The most samples a buffer may hold, or a pull may ask for: 2**31 PCM16 samples (4 GiB,
/// 12.4 hours at 48 kHz). Any larger size is a mistake (a rate taken for a duration, bytes for
/// samples) and is refused with a message rather than left to the allocator.
pub const MAX_SAMPLES: usize = 1 << 31;

/// Refuses a sample count above `MAX_SAMPLES`; `what` names it in the message.
fn check_samples(what: &str, count: u64) -> Result<usize, AudioError> {
    usize::try_from(count).ok().filter(|&count| count <= MAX_SAMPLES).ok_or_else(|| {
        AudioError::invalid(format!(
            "{what} is {count} samples, more than the {MAX_SAMPLES} a buffer may hold"
        ))
    })
}

/// A first-in first-out queue of at most `capacity` PCM16 samples.
///
/// `write` accepts as many samples as fit and says how many; accepted samples are never
/// dropped or overwritten until read or cleared.
#[derive(Debug, Clone)]
pub struct RingBuffer {
    storage: Box<[i16]>,
    /// Index of the oldest sample.
    head: usize,
    len: usize,
}

impl RingBuffer {
    /// A buffer of `capacity` samples, 1 to `MAX_SAMPLES`; the memory is asked for fallibly.
    pub fn new(capacity: usize) -> Result<Self, AudioError> {
        if capacity == 0 {
            return Err(AudioError::invalid(
                "ring buffer capacity must be at least 1 sample",
            ));
        }
        let capacity = check_samples("ring buffer capacity", capacity as u64)?;
        Ok(Self {
            storage: memory::zeroed_slice(capacity, "the ring buffer's samples")?,
            head: 0,
            len: 0,
        })
    }

    pub fn capacity(&self) -> usize {
        self.storage.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left, in samples.
    pub fn free(&self) -> usize {
        self.capacity() - self.len
    }

    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// Appends as many leading samples of `samples` as fit; returns that count.
    pub fn write(&mut self, samples: &[i16]) -> usize {
        let accepted = samples.len().min(self.free());
        let capacity = self.capacity();
        let tail = (self.head + self.len) % capacity;
        let first = accepted.min(capacity - tail);
        self.storage[tail..tail + first].copy_from_slice(&samples[..first]);
        self.storage[..accepted - first].copy_from_slice(&samples[first..accepted]);
        self.len += accepted;
        accepted
    }

    /// Copies up to `output.len()` of the oldest samples into `output` without consuming
    /// them; returns how many were copied.
    pub fn peek_into(&self, output: &mut [i16]) -> usize {
        let count = output.len().min(self.len);
        let first = count.min(self.capacity() - self.head);
        output[..first].copy_from_slice(&self.storage[self.head..self.head + first]);
        output[first..count].copy_from_slice(&self.storage[..count - first]);
        count
    }

    /// Moves up to `output.len()` of the oldest samples into `output`; returns how many.
    pub fn read_into(&mut self, output: &mut [i16]) -> usize {
        let count = self.peek_into(output);
        self.consume(count);
        count
    }

    /// Drops up to `count` of the oldest samples; returns how many were dropped.
    pub fn consume(&mut self, count: usize) -> usize {
        let count = count.min(self.len);
        self.head = (self.head + count) % self.capacity();
        self.len -= count;
        if self.len == 0 {
            self.head = 0;
        }
        count
    }

    /// The oldest `min(n, len)` samples, removed from the buffer.
    pub fn read(&mut self, n: usize) -> Result<Vec<i16>, AudioError> {
        let mut output = memory::zeroed_slice(n.min(self.len), "the samples read")?.into_vec();
        self.read_into(&mut output);
        Ok(output)
    }

    /// The oldest `min(n, len)` samples, left in the buffer.
    pub fn peek(&self, n: usize) -> Result<Vec<i16>, AudioError> {
        let mut output = memory::zeroed_slice(n.min(self.len), "the samples peeked")?.into_vec();
        self.peek_into(&mut output);
        Ok(output)
    }
}

/// Which part of the conversation a run of queued samples belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentPart {
    pub item_id: String,
    pub content_index: u32,
}

/// What `interrupt` reports: the part that was playing and how much of it was heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub item_id: String,
    pub content_index: u32,
    /// Samples of this part that were pulled (played) before the interruption.
    pub played_samples: u64,
    /// `played_samples` in whole milliseconds at the buffer's sample rate (rounded down, so
    /// it never claims audio that was not heard).
    pub audio_end_ms: u64,
}

#[derive(Debug)]
struct Segment {
    part: ContentPart,
    /// Samples of this segment still queued.
    queued: usize,
}

/// How many finished parts `played` still remembers.
const PLAYED_HISTORY: usize = 64;

fn count_played(played: &mut VecDeque<(ContentPart, u64)>, part: &ContentPart, samples: u64) {
    if let Some((_, count)) = played.iter_mut().rev().find(|(p, _)| p == part) {
        *count += samples;
        return;
    }
    if played.len() == PLAYED_HISTORY {
        played.pop_front();
    }
    played.push_back((part.clone(), samples));
}

/// The speaker side of a conversation: audio deltas are pushed as they arrive and the audio
/// device pulls fixed-size blocks.
#[derive(Debug)]
pub struct PlaybackBuffer {
    sample_rate: u32,
    samples: RingBuffer,
    /// Queued runs of samples in play order, one per consecutive (item, content part).
    segments: VecDeque<Segment>,
    /// The part being heard: the one at the head of the queue, or the last one that played
    /// when the queue ran dry. `None` after `interrupt`/`clear` until the next push.
    current: Option<ContentPart>,
    /// Samples played per part, newest last, bounded by `PLAYED_HISTORY`.
    played: VecDeque<(ContentPart, u64)>,
    underruns: u64,
    /// True once a pull came up short, until the next push: a dry spell counts only once.
    dry: bool,
    /// Set by `pause` (barge-in): pulls yield silence and nothing counts as played.
    paused: bool,
    /// Samples handed out by pulls since construction, silence included (the speaker clock).
    pulled: u64,
    /// What the pulls handed out, for the echo canceller and the recorder (see the tap block).
    tap: Option<PlaybackTap>,
}

impl PlaybackBuffer {
    pub fn new(sample_rate: u32, capacity_ms: u32) -> Result<Self, AudioError> {
        if sample_rate == 0 {
            return Err(AudioError::invalid("sample_rate must be positive"));
        }
        // Cannot overflow: both factors are below 2**32.
        let capacity = u64::from(sample_rate) * u64::from(capacity_ms) / 1000;
        if capacity == 0 {
            return Err(AudioError::invalid(format!(
                "capacity_ms={capacity_ms} holds no sample at {sample_rate} Hz"
            )));
        }
        let capacity = check_samples(
            &format!("capacity_ms={capacity_ms} at {sample_rate} Hz"),
            capacity,
        )?;
        Ok(Self {
            sample_rate,
            samples: RingBuffer::new(capacity)?,
            segments: VecDeque::new(),
            current: None,
            played: VecDeque::with_capacity(PLAYED_HISTORY),
            underruns: 0,
            dry: true,
            paused: false,
            pulled: 0,
            tap: None,
        })
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Capacity in samples.
    pub fn capacity(&self) -> usize {
        self.samples.capacity()
    }

    /// Samples queued and not yet pulled.
    pub fn queued(&self) -> usize {
        self.samples.len()
    }

    pub fn free(&self) -> usize {
        self.samples.free()
    }

    /// How many times playback ran dry: each run of short pulls after audio was pushed
    /// counts once (the natural end of a response included).
    pub fn underruns(&self) -> u64 {
        self.underruns
    }

    /// The part currently being heard, if any (see `interrupt`).
    pub fn current(&self) -> Option<&ContentPart> {
        self.current.as_ref()
    }

    /// Queues samples of one content part; returns how many fit (the rest is not queued).
    pub fn push(&mut self, item_id: &str, content_index: u32, samples: &[i16]) -> usize {
        let accepted = self.samples.write(samples);
        if accepted == 0 {
            return 0;
        }
        self.dry = false;
        match self.segments.back_mut() {
            Some(last)
                if last.part.item_id == item_id && last.part.content_index == content_index =>
            {
                last.queued += accepted;
            }
            _ => {
                let part = ContentPart {
                    item_id: item_id.to_owned(),
                    content_index,
                };
                self.segments.push_back(Segment {
                    part,
                    queued: accepted,
                });
            }
        }
        if self.segments.len() == 1 {
            // Nothing else queued: this part is the next one heard, whatever played before.
            self.current = Some(self.segments[0].part.clone());
        }
        accepted
    }

    /// Fills `output` with the next samples, zero-filling what is missing; returns how many
    /// real samples were delivered. Allocates nothing once a part has started playing (this
    /// runs in the audio callback).
    pub fn pull_into(&mut self, output: &mut [i16]) -> usize {
        let delivered = self.pull_queued_into(output);
        self.tap_record(output);
        delivered
    }

    fn pull_queued_into(&mut self, output: &mut [i16]) -> usize {
        if self.paused {
            output.fill(0);
            return 0;
        }
        let delivered = self.samples.read_into(output);
        output[delivered..].fill(0);
        let mut left = delivered;
        while left > 0 {
            let Some(segment) = self.segments.front_mut() else {
                break;
            };
            let taken = left.min(segment.queued);
            segment.queued -= taken;
            left -= taken;
            count_played(&mut self.played, &segment.part, taken as u64);
            if segment.queued == 0 {
                if let Some(finished) = self.segments.pop_front() {
                    self.current = Some(finished.part);
                }
            }
        }
        // The part at the head of the queue is the one being heard from now on.
        if let Some(next) = self.segments.front() {
            if self.current.as_ref() != Some(&next.part) {
                self.current = Some(next.part.clone());
            }
        }
        if delivered < output.len() {
            if !self.dry {
                self.underruns += 1;
            }
            self.dry = true;
        }
        delivered
    }

    /// Fills an interleaved block of `output.len() / channels` frames: each next sample is
    /// converted by `convert` and written to every channel of its frame, and frames past what
    /// is queued get `convert(0)`. Returns how many real frames were delivered. The samples
    /// pass through a small buffer on the stack, so this allocates nothing either; the
    /// bookkeeping (played, current, underruns) is that of one `pull_into` of that many
    /// samples.
    pub fn pull_frames_into<T: Copy>(
        &mut self,
        output: &mut [T],
        channels: usize,
        convert: impl Fn(i16) -> T,
    ) -> usize {
        const CHUNK: usize = 256;
        let channels = channels.max(1);
        let mut scratch = [0i16; CHUNK];
        let mut delivered = 0;
        let mut dry = false;
        for block in output.chunks_mut(CHUNK * channels) {
            let frames = block.len() / channels;
            let got = if dry { 0 } else { self.pull_into(&mut scratch[..frames]) };
            // Once a pull comes up short the queue is empty: pulling again would only count
            // the same dry spell twice.
            dry = got < frames;
            delivered += got;
            if got < frames {
                scratch[got..frames].fill(0);
            }
            for (frame, &sample) in block.chunks_exact_mut(channels).zip(&scratch[..frames]) {
                frame.fill(convert(sample));
            }
        }
        delivered
    }

    /// The next `n` samples (at most `MAX_SAMPLES`), zero-filled past what is queued.
    pub fn pull(&mut self, n: usize) -> Result<Vec<i16>, AudioError> {
        let n = check_samples("the pull", n as u64)?;
        let mut output = memory::zeroed_slice(n, "the samples pulled")?.into_vec();
        self.pull_into(&mut output);
        Ok(output)
    }

    /// Samples of `item_id` (all its content parts) played so far; 0 for unknown items.
    pub fn played(&self, item_id: &str) -> u64 {
        self.played
            .iter()
            .filter(|(part, _)| part.item_id == item_id)
            .map(|(_, n)| n)
            .sum()
    }

    fn played_of(&self, part: &ContentPart) -> u64 {
        self.played
            .iter()
            .rev()
            .find(|(p, _)| p == part)
            .map_or(0, |(_, n)| *n)
    }

    /// Drops everything queued and reports the part being heard with how much of it played,
    /// or `None` if nothing was pushed since the last `interrupt`/`clear`.
    pub fn interrupt(&mut self) -> Option<Interruption> {
        let part = self.current.take()?;
        self.drop_queue();
        let played_samples = self.played_of(&part);
        let audio_end_ms = played_samples * 1000 / u64::from(self.sample_rate);
        Some(Interruption {
            item_id: part.item_id,
            content_index: part.content_index,
            played_samples,
            audio_end_ms,
        })
    }

    /// Drops everything queued and forgets the current part (the played counts remain).
    pub fn clear(&mut self) {
        self.current = None;
        self.drop_queue();
    }

    fn drop_queue(&mut self) {
        self.samples.clear();
        self.segments.clear();
        self.dry = true;
    }
}

// ---- pause and resume (barge-in, issue 22) ----
//
// While a barge-in is being decided (a cough or the user's turn?) the speaker holds its place:
// pulls yield silence, the queue and the played counts stay as they are, pushes still queue.
// A paused pull is neither playback nor a dry spell, so `underruns` does not move either.

impl PlaybackBuffer {
    /// Holds playback where it is until `resume`.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Plays on from where `pause` held it.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }
}

// ---- end of pause and resume ----

// ---- playback tap (echo cancellation and recording, issue 19) ----
//
// Opt-in: once `enable_tap` is called every pull also copies what it handed the sound card
// (the silence it filled in included, so the speaker clock never slips) into a bounded ring
// stamped with the speaker clock, `pulled`. A consumer asks for "the samples of speaker clock
// [k, k + n)" with its own cursor: the echo canceller (aligned with the microphone's clock)
// and the session recorder. What was not played yet, was played before the tap existed, or
// was overwritten since is read as zeros and counted, so a slow consumer learns it lost audio.

/// The samples the pulls handed out: the last `storage.len()` of them, the newest ending at
/// the speaker clock `PlaybackBuffer::pulled`.
#[derive(Debug)]
struct PlaybackTap {
    storage: Box<[i16]>,
    /// The speaker clock when the tap was enabled: nothing before it was kept.
    since: u64,
}

/// What a tap read could not fill (those samples read as zeros).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapGaps {
    /// Samples at or past the speaker clock: not played yet.
    pub unplayed: usize,
    /// Samples played before the tap was enabled or overwritten since (the reader lagged
    /// more than the tap's capacity).
    pub lost: usize,
}

impl PlaybackBuffer {
    /// Keeps the last `capacity` samples the pulls hand out, from now on (1 to
    /// `MAX_SAMPLES`). A tap already enabled is only ever grown, keeping what it holds: two
    /// consumers each ask for what they need.
    pub fn enable_tap(&mut self, capacity: usize) -> Result<(), AudioError> {
        if capacity == 0 {
            return Err(AudioError::invalid("the playback tap needs at least 1 sample"));
        }
        let capacity = check_samples("the playback tap", capacity as u64)?;
        let held = self.tap.as_ref().map_or(0, |tap| tap.storage.len());
        if capacity <= held {
            return Ok(());
        }
        let mut storage = memory::zeroed_slice(capacity, "the playback tap's samples")?;
        let since = match self.tap.take() {
            Some(old) => {
                // Clock k lives at k % capacity in either ring: copy what the old one holds.
                let oldest = old.since.max(self.pulled.saturating_sub(held as u64));
                for clock in oldest..self.pulled {
                    storage[(clock % capacity as u64) as usize] =
                        old.storage[(clock % held as u64) as usize];
                }
                oldest
            }
            None => self.pulled,
        };
        self.tap = Some(PlaybackTap { storage, since });
        Ok(())
    }

    /// True once `enable_tap` was called.
    pub fn tapped(&self) -> bool {
        self.tap.is_some()
    }

    /// The speaker clock: samples handed out by pulls since construction, the silence of
    /// dry and paused pulls included.
    pub fn pulled_samples(&self) -> u64 {
        self.pulled
    }

    /// Samples the tap keeps (0 when not enabled).
    pub fn tap_capacity(&self) -> usize {
        self.tap.as_ref().map_or(0, |tap| tap.storage.len())
    }

    fn tap_record(&mut self, output: &[i16]) {
        let start = self.pulled;
        self.pulled += output.len() as u64;
        let Some(tap) = self.tap.as_mut() else {
            return;
        };
        let capacity = tap.storage.len();
        // Only the newest `capacity` samples of a long pull can be kept.
        let skip = output.len().saturating_sub(capacity);
        let kept = &output[skip..];
        let at = ((start + skip as u64) % capacity as u64) as usize;
        let first = kept.len().min(capacity - at);
        tap.storage[at..at + first].copy_from_slice(&kept[..first]);
        tap.storage[..kept.len() - first].copy_from_slice(&kept[first..]);
    }

    /// Fills `output` with the samples of speaker clock `[start, start + output.len())`,
    /// zeros where the tap has none (see `TapGaps`); allocates nothing. Refuses a range
    /// past 2**64 or longer than `MAX_SAMPLES`.
    pub fn read_tap(&self, start: u64, output: &mut [i16]) -> Result<TapGaps, AudioError> {
        let len = check_samples("the tap read", output.len() as u64)? as u64;
        let end = start.checked_add(len).ok_or_else(|| {
            AudioError::invalid(format!("a tap read from {start} of {len} samples passes 2**64"))
        })?;
        output.fill(0);
        let Some(tap) = self.tap.as_ref() else {
            let unplayed = end.saturating_sub(start.max(self.pulled));
            return Ok(TapGaps { unplayed: unplayed as usize, lost: (len - unplayed) as usize });
        };
        let capacity = tap.storage.len() as u64;
        let oldest = tap.since.max(self.pulled.saturating_sub(capacity));
        let from = start.max(oldest);
        let to = end.min(self.pulled);
        let gaps = TapGaps {
            unplayed: end.saturating_sub(start.max(self.pulled)) as usize,
            lost: end.min(oldest).saturating_sub(start) as usize,
        };
        let mut clock = from;
        while clock < to {
            let at = (clock % capacity) as usize;
            let run = ((to - clock) as usize).min(tap.storage.len() - at);
            let offset = (clock - start) as usize;
            output[offset..offset + run].copy_from_slice(&tap.storage[at..at + run]);
            clock += run as u64;
        }
        Ok(gaps)
    }
}

// ---- end of playback tap ----

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_refused_not_aborted() {
        let refused = |result: Result<RingBuffer, AudioError>| match result {
            Err(AudioError::Invalid(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(refused(RingBuffer::new(MAX_SAMPLES + 1)).contains("more than the 2147483648"));
        refused(RingBuffer::new(1 << 40));
        refused(RingBuffer::new(usize::MAX));
        // A rate taken for a duration: 10**9 Hz for the default minute.
        let error = PlaybackBuffer::new(1_000_000_000, 60_000).unwrap_err();
        assert!(error.to_string().contains("capacity_ms=60000 at 1000000000 Hz"), "{error}");
        assert!(PlaybackBuffer::new(u32::MAX, u32::MAX).is_err());
        let mut buffer = PlaybackBuffer::new(24_000, 1000).unwrap();
        assert!(matches!(buffer.pull(1 << 40), Err(AudioError::Invalid(_))));
        assert!(matches!(buffer.pull(usize::MAX), Err(AudioError::Invalid(_))));
        // Reads and peeks never allocate more than what is queued, however much is asked.
        let mut ring = RingBuffer::new(4).unwrap();
        ring.write(&[1, 2, 3]);
        assert_eq!(ring.peek(usize::MAX).unwrap(), [1, 2, 3]);
        assert_eq!(ring.read(usize::MAX).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn ring_matches_a_deque_model_through_wraparound() {
        let mut ring = RingBuffer::new(7).unwrap();
        let mut model: VecDeque<i16> = VecDeque::new();
        let mut next = 0i16;
        // A fixed schedule of writes and reads that wraps the storage many times.
        for step in 0..200usize {
            let write_len = (step * 5) % 9;
            let chunk: Vec<i16> = (0..write_len)
                .map(|k| next.wrapping_add(k as i16))
                .collect();
            let accepted = ring.write(&chunk);
            assert_eq!(accepted, write_len.min(7 - model.len()));
            model.extend(&chunk[..accepted]);
            next = next.wrapping_add(accepted as i16);
            assert_eq!(
                ring.peek(3).unwrap(),
                model.iter().take(3).copied().collect::<Vec<_>>()
            );
            let read_len = (step * 3) % 8;
            let got = ring.read(read_len).unwrap();
            let want: Vec<i16> = (0..read_len.min(model.len()))
                .map(|_| model.pop_front().unwrap())
                .collect();
            assert_eq!(got, want);
            assert_eq!(ring.len(), model.len());
            assert_eq!(ring.free(), 7 - model.len());
        }
        ring.clear();
        assert!(ring.is_empty());
        assert!(RingBuffer::new(0).is_err());
    }

    fn ramp(start: i16, n: usize) -> Vec<i16> {
        (0..n).map(|k| start + k as i16).collect()
    }

    #[test]
    fn playback_tracks_items_and_reports_what_was_heard() {
        let mut buffer = PlaybackBuffer::new(24_000, 1000).unwrap();
        assert_eq!(buffer.capacity(), 24_000);
        assert_eq!(buffer.interrupt(), None);
        assert_eq!(buffer.push("a", 0, &ramp(1, 480)), 480);
        assert_eq!(buffer.push("a", 0, &ramp(481, 480)), 480);
        assert_eq!(buffer.push("b", 0, &ramp(961, 240)), 240);
        assert_eq!(buffer.queued(), 1200);
        assert_eq!(buffer.pull(700).unwrap(), ramp(1, 700));
        assert_eq!(buffer.played("a"), 700);
        assert_eq!(buffer.current().unwrap().item_id, "a");
        // A pull that crosses from "a" into "b".
        assert_eq!(buffer.pull(300).unwrap(), ramp(701, 300));
        assert_eq!(buffer.played("a"), 960);
        assert_eq!(buffer.played("b"), 40);
        assert_eq!(buffer.current().unwrap().item_id, "b");
        let heard = buffer.interrupt().unwrap();
        assert_eq!(heard.item_id, "b");
        assert_eq!(heard.played_samples, 40);
        assert_eq!(heard.audio_end_ms, 1); // 40 samples at 24 kHz = 1.67 ms, rounded down
        assert_eq!(buffer.queued(), 0);
        assert_eq!(buffer.interrupt(), None);
        assert_eq!(buffer.pull(4).unwrap(), [0; 4]);
    }

    #[test]
    fn underruns_count_dry_spells_once() {
        let mut buffer = PlaybackBuffer::new(16_000, 100).unwrap();
        assert_eq!(buffer.pull(10).unwrap(), [0; 10]);
        assert_eq!(
            buffer.underruns(),
            0,
            "idle before any audio is not an underrun"
        );
        buffer.push("a", 0, &[5; 15]);
        assert_eq!(buffer.pull(10).unwrap(), [5; 10]);
        let mut out = [9i16; 10];
        assert_eq!(buffer.pull_into(&mut out), 5);
        assert_eq!(out, [5, 5, 5, 5, 5, 0, 0, 0, 0, 0]);
        assert_eq!(buffer.underruns(), 1);
        buffer.pull(10).unwrap();
        assert_eq!(buffer.underruns(), 1, "one dry spell");
        buffer.push("a", 0, &[1; 3]);
        buffer.pull(10).unwrap();
        assert_eq!(buffer.underruns(), 2);
        // The item finished playing but was never interrupted: it is still the current one.
        let heard = buffer.interrupt().unwrap();
        assert_eq!(
            (
                heard.item_id.as_str(),
                heard.played_samples,
                heard.audio_end_ms
            ),
            ("a", 18, 1)
        );
    }

    #[test]
    fn push_beyond_capacity_keeps_what_fits() {
        let mut buffer = PlaybackBuffer::new(1000, 10).unwrap();
        assert_eq!(buffer.push("a", 1, &[7; 25]), 10);
        assert_eq!(buffer.push("a", 1, &[7; 25]), 0);
        assert_eq!(buffer.pull(12).unwrap(), [7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0, 0]);
        let heard = buffer.interrupt().unwrap();
        assert_eq!(
            (
                heard.content_index,
                heard.played_samples,
                heard.audio_end_ms
            ),
            (1, 10, 10)
        );
        assert!(PlaybackBuffer::new(0, 10).is_err());
        assert!(PlaybackBuffer::new(100, 1).is_err());
    }

    #[test]
    fn pause_holds_the_position_and_resume_plays_on_with_nothing_lost() {
        let mut buffer = PlaybackBuffer::new(1000, 100).unwrap();
        buffer.push("a", 0, &ramp(1, 30));
        assert_eq!(buffer.pull(10).unwrap(), ramp(1, 10));
        buffer.pause();
        assert!(buffer.is_paused());
        let mut out = [9i16; 8];
        assert_eq!(buffer.pull_into(&mut out), 0);
        assert_eq!(out, [0; 8]);
        let mut frames = [9i16; 6];
        assert_eq!(buffer.pull_frames_into(&mut frames, 2, |s| s), 0);
        assert_eq!(frames, [0; 6]);
        buffer.push("a", 0, &ramp(31, 5));
        assert_eq!((buffer.played("a"), buffer.queued(), buffer.underruns()), (10, 25, 0));
        buffer.resume();
        assert!(!buffer.is_paused());
        assert_eq!(buffer.pull(25).unwrap(), ramp(11, 25));
        assert_eq!(buffer.played("a"), 35);
        // An interruption while paused reports the pause position.
        buffer.push("b", 0, &ramp(1, 20));
        buffer.pull(4).unwrap();
        buffer.pause();
        buffer.pull(10).unwrap();
        let heard = buffer.interrupt().unwrap();
        assert_eq!((heard.item_id.as_str(), heard.played_samples), ("b", 4));
    }

    // ---- playback tap ----

    /// Reads speaker clock [start, start + n) from the tap.
    fn tap(buffer: &PlaybackBuffer, start: u64, n: usize) -> (Vec<i16>, TapGaps) {
        let mut out = vec![-1i16; n];
        let gaps = buffer.read_tap(start, &mut out).unwrap();
        (out, gaps)
    }

    #[test]
    fn the_tap_keeps_what_each_pull_handed_out_on_the_speaker_clock() {
        let mut buffer = PlaybackBuffer::new(1000, 100).unwrap();
        assert!(!buffer.tapped());
        buffer.pull(3).unwrap(); // before the tap: played, not kept
        buffer.enable_tap(8).unwrap();
        assert_eq!((buffer.tap_capacity(), buffer.pulled_samples()), (8, 3));
        buffer.push("a", 0, &ramp(1, 4));
        buffer.pull(6).unwrap(); // 4 real samples, 2 of silence: clock 3..9
        let (samples, gaps) = tap(&buffer, 0, 11);
        assert_eq!(samples, [0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0]);
        assert_eq!(gaps, TapGaps { unplayed: 2, lost: 3 });
        // Paused pulls are silence on the clock too, and interleaved pulls count once per frame.
        buffer.push("a", 0, &ramp(5, 3));
        buffer.pause();
        buffer.pull(1).unwrap();
        buffer.resume();
        let mut frames = [0i16; 6];
        buffer.pull_frames_into(&mut frames, 2, |s| s);
        assert_eq!(buffer.pulled_samples(), 13);
        assert_eq!(tap(&buffer, 9, 4), (vec![0, 5, 6, 7], TapGaps::default()));
    }

    #[test]
    fn the_tap_wraps_and_counts_what_a_slow_reader_lost() {
        let mut buffer = PlaybackBuffer::new(1000, 1000).unwrap();
        buffer.enable_tap(7).unwrap();
        let mut model: Vec<i16> = Vec::new();
        let mut next = 1i16;
        // Pulls of many sizes (some longer than the tap) wrap the ring many times; after each,
        // every window of the clock reads as the model says.
        for step in 0..60usize {
            let n = (step * 5) % 11;
            buffer.push("a", 0, &ramp(next, n));
            next += n as i16;
            let pull = (step * 3) % 10;
            let pulled = buffer.pull(pull).unwrap();
            model.extend(&pulled);
            let clock = model.len() as u64;
            assert_eq!(buffer.pulled_samples(), clock);
            for start in clock.saturating_sub(12)..=clock + 2 {
                let (samples, gaps) = tap(&buffer, start, 5);
                let oldest = clock.saturating_sub(7);
                for (k, &sample) in samples.iter().enumerate() {
                    let at = start + k as u64;
                    let want = if at >= oldest && at < clock { model[at as usize] } else { 0 };
                    assert_eq!(sample, want, "step {step}, clock {at}");
                }
                let lost = (start..start + 5).filter(|&at| at < oldest).count();
                let unplayed = (start..start + 5).filter(|&at| at >= clock).count();
                assert_eq!(gaps, TapGaps { unplayed, lost }, "step {step}, from {start}");
            }
        }
    }

    #[test]
    fn the_tap_grows_keeping_what_it_holds_and_never_shrinks() {
        let mut buffer = PlaybackBuffer::new(1000, 1000).unwrap();
        buffer.enable_tap(4).unwrap();
        buffer.push("a", 0, &ramp(1, 10));
        buffer.pull(10).unwrap();
        buffer.enable_tap(6).unwrap();
        assert_eq!(tap(&buffer, 4, 6), (vec![0, 0, 7, 8, 9, 10], TapGaps { unplayed: 0, lost: 2 }));
        buffer.enable_tap(2).unwrap();
        assert_eq!(buffer.tap_capacity(), 6);
        buffer.push("a", 0, &ramp(11, 3));
        buffer.pull(3).unwrap();
        assert_eq!(tap(&buffer, 7, 6).0, [8, 9, 10, 11, 12, 13]);
    }

    #[test]
    fn bad_tap_sizes_are_refused_not_panicking() {
        let mut buffer = PlaybackBuffer::new(1000, 100).unwrap();
        assert!(matches!(buffer.enable_tap(0), Err(AudioError::Invalid(_))));
        assert!(matches!(buffer.enable_tap(MAX_SAMPLES + 1), Err(AudioError::Invalid(_))));
        assert!(matches!(buffer.enable_tap(usize::MAX), Err(AudioError::Invalid(_))));
        // Without a tap every sample is a gap; a range past 2**64 is refused.
        assert_eq!(tap(&buffer, 0, 3), (vec![0; 3], TapGaps { unplayed: 3, lost: 0 }));
        buffer.pull(2).unwrap();
        assert_eq!(tap(&buffer, 0, 3).1, TapGaps { unplayed: 1, lost: 2 });
        buffer.enable_tap(4).unwrap();
        let mut out = [0i16; 2];
        assert!(matches!(buffer.read_tap(u64::MAX, &mut out), Err(AudioError::Invalid(_))));
        assert_eq!(buffer.read_tap(u64::MAX - 2, &mut out).unwrap().unplayed, 2);
        assert_eq!(buffer.read_tap(5, &mut []).unwrap(), TapGaps::default());
    }
}
