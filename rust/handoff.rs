//! A bounded FIFO of audio frames from any thread to one consumer, in a preallocated arena.
//!
//! An audio device's callback thread must never wait for the event loop, nor allocate per
//! frame: `push` copies the frame's bytes into a byte ring allocated (and touched) once, and
//! records its length and layout in a fixed table of frame slots. The queue is bounded twice:
//! by frames (the table) and by bytes (the arena); when either is full `push` refuses at once.
//! It also tracks whether the consumer has a wake-up pending, so a producer wakes it only on
//! the edge (the first frame after the consumer last looked), never once per frame.
//!
//! No locking here: the binding holds the queue behind a mutex.

use crate::memory::zeroed_slice;
use crate::AudioError;

/// What a frame's bytes are, for the consumer to rebuild it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// The sample type: 4-byte float or 2-byte int.
    pub float: bool,
    /// 0 for a 1-D frame, else the channel count of a `(frames, channels)` frame.
    pub channels: u32,
    /// The frame's sample rate, carried to the consumer.
    pub rate: u32,
}

/// The outcome of a [`HandoffQueue::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; `wake` is true when the consumer has no wake-up pending and must be woken.
    Queued { wake: bool },
    /// No room (frames or bytes): nothing was queued.
    Full,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    len: usize,
    layout: FrameLayout,
}

/// See the module documentation.
pub struct HandoffQueue {
    arena: Box<[u8]>,
    /// Where the oldest frame's bytes start, and how many arena bytes are in use.
    read: usize,
    used: usize,
    slots: Box<[Slot]>,
    first: usize,
    count: usize,
    wake_pending: bool,
}

const PAGE: usize = 4096;

impl HandoffQueue {
    /// Room for `max_frames` frames holding `arena_bytes` bytes in all.
    pub fn new(max_frames: usize, arena_bytes: usize) -> Result<Self, AudioError> {
        if max_frames == 0 || arena_bytes == 0 {
            return Err(AudioError::invalid(format!(
                "the hand-off needs room for at least one frame and one byte, got {max_frames} \
                 frames and {arena_bytes} bytes"
            )));
        }
        let mut arena = zeroed_slice::<u8>(arena_bytes, "the hand-off arena")?;
        // Touch every page now, so the device thread never takes a page fault in `push`.
        for index in (0..arena.len()).step_by(PAGE) {
            // SAFETY: `index` is in bounds; a volatile write is not elided.
            unsafe { std::ptr::write_volatile(arena.as_mut_ptr().add(index), 0) };
        }
        let empty = Slot { len: 0, layout: FrameLayout { float: true, channels: 0, rate: 0 } };
        let mut slots = crate::memory::with_capacity(max_frames, "the hand-off's frame slots")?;
        slots.resize(max_frames, empty);
        Ok(Self {
            arena,
            read: 0,
            used: 0,
            slots: slots.into_boxed_slice(),
            first: 0,
            count: 0,
            wake_pending: false,
        })
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The most frames the queue holds.
    pub fn max_frames(&self) -> usize {
        self.slots.len()
    }

    /// The most bytes the queue holds (also the largest frame it can take).
    pub fn arena_bytes(&self) -> usize {
        self.arena.len()
    }

    /// Copies `bytes` in as one frame, or refuses when there is no room. No allocation.
    pub fn push(&mut self, bytes: &[u8], layout: FrameLayout) -> Pushed {
        let capacity = self.arena.len();
        if self.count == self.slots.len() || bytes.len() > capacity - self.used {
            return Pushed::Full;
        }
        let write = (self.read + self.used) % capacity;
        let head = bytes.len().min(capacity - write);
        self.arena[write..write + head].copy_from_slice(&bytes[..head]);
        self.arena[..bytes.len() - head].copy_from_slice(&bytes[head..]);
        self.used += bytes.len();
        let slot = (self.first + self.count) % self.slots.len();
        self.slots[slot] = Slot { len: bytes.len(), layout };
        self.count += 1;
        let wake = !self.wake_pending;
        self.wake_pending = true;
        Pushed::Queued { wake }
    }

    /// The oldest frame's layout and bytes (two pieces when they wrap around the arena's end).
    pub fn front(&self) -> Option<(FrameLayout, &[u8], &[u8])> {
        if self.count == 0 {
            return None;
        }
        let slot = self.slots[self.first];
        let head = slot.len.min(self.arena.len() - self.read);
        Some((
            slot.layout,
            &self.arena[self.read..self.read + head],
            &self.arena[..slot.len - head],
        ))
    }

    /// Drops the oldest frame; false if there is none.
    pub fn pop(&mut self) -> bool {
        if self.count == 0 {
            return false;
        }
        let len = self.slots[self.first].len;
        self.read = (self.read + len) % self.arena.len();
        self.used -= len;
        self.first = (self.first + 1) % self.slots.len();
        self.count -= 1;
        if self.count == 0 {
            self.read = 0; // the next frames start contiguous
        }
        true
    }

    /// The consumer is about to look at the queue: the next `push` wakes it again.
    pub fn woken(&mut self) {
        self.wake_pending = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MONO: FrameLayout = FrameLayout { float: false, channels: 0, rate: 24000 };

    fn take(queue: &mut HandoffQueue) -> Option<(FrameLayout, Vec<u8>)> {
        let (layout, head, tail) = queue.front()?;
        let bytes = [head, tail].concat();
        assert!(queue.pop());
        Some((layout, bytes))
    }

    #[test]
    fn frames_come_out_in_order_with_their_layout() {
        let mut queue = HandoffQueue::new(4, 64).unwrap();
        let stereo = FrameLayout { float: true, channels: 2, rate: 48000 };
        assert_eq!(queue.push(&[1, 2, 3], MONO), Pushed::Queued { wake: true });
        assert_eq!(queue.push(&[4, 5], stereo), Pushed::Queued { wake: false });
        assert_eq!(queue.len(), 2);
        assert_eq!(take(&mut queue), Some((MONO, vec![1, 2, 3])));
        assert_eq!(take(&mut queue), Some((stereo, vec![4, 5])));
        assert_eq!(take(&mut queue), None);
        assert!(!queue.pop());
    }

    #[test]
    fn it_refuses_beyond_its_frames_or_bytes_and_keeps_what_it_had() {
        let mut queue = HandoffQueue::new(2, 8).unwrap();
        assert_eq!(queue.push(&[1; 9], MONO), Pushed::Full, "larger than the arena");
        assert_eq!(queue.push(&[1; 5], MONO), Pushed::Queued { wake: true });
        assert_eq!(queue.push(&[2; 4], MONO), Pushed::Full, "3 bytes left");
        assert_eq!(queue.push(&[2; 3], MONO), Pushed::Queued { wake: false });
        assert_eq!(queue.push(&[3; 0], MONO), Pushed::Full, "two frames at most");
        assert_eq!(take(&mut queue).unwrap().1, vec![1; 5]);
        assert_eq!(take(&mut queue).unwrap().1, vec![2; 3]);
    }

    #[test]
    fn a_frame_wrapping_around_the_arena_comes_out_whole() {
        let mut queue = HandoffQueue::new(8, 10).unwrap();
        queue.push(&[0; 6], MONO);
        queue.push(&[1; 2], MONO);
        take(&mut queue);
        // 2 bytes in use at 6..8: the next 6 bytes go to 8..10 and 0..4.
        assert_eq!(queue.push(&[7, 8, 9, 10, 11, 12], MONO), Pushed::Queued { wake: false });
        assert_eq!(take(&mut queue).unwrap().1, vec![1; 2]);
        let (_, head, tail) = queue.front().unwrap();
        assert_eq!((head.len(), tail.len()), (2, 4), "split across the end");
        assert_eq!(take(&mut queue).unwrap().1, vec![7, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn the_consumer_is_woken_once_per_look() {
        let mut queue = HandoffQueue::new(8, 64).unwrap();
        assert_eq!(queue.push(&[1], MONO), Pushed::Queued { wake: true });
        assert_eq!(queue.push(&[2], MONO), Pushed::Queued { wake: false });
        queue.woken();
        assert_eq!(queue.push(&[3], MONO), Pushed::Queued { wake: true });
        assert_eq!(queue.push(&[4], MONO), Pushed::Queued { wake: false });
    }

    #[test]
    fn a_long_run_matches_a_model_fifo() {
        // Pushes and pops of varied sizes against a VecDeque: same frames, same order.
        let mut queue = HandoffQueue::new(5, 37).unwrap();
        let mut model = std::collections::VecDeque::new();
        let mut seed = 12345u32;
        for step in 0..20_000u32 {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            if seed >> 31 == 0 {
                let len = (seed >> 8) as usize % 17;
                let frame: Vec<u8> = (0..len).map(|i| (step as usize + i) as u8).collect();
                let room = model.len() < 5
                    && model.iter().map(Vec::len).sum::<usize>() + len <= 37;
                let pushed = queue.push(&frame, MONO);
                assert_eq!(matches!(pushed, Pushed::Queued { .. }), room, "step {step}");
                if room {
                    model.push_back(frame);
                }
            } else {
                assert_eq!(take(&mut queue).map(|(_, bytes)| bytes), model.pop_front());
            }
            assert_eq!(queue.len(), model.len());
        }
    }

    #[test]
    fn absurd_sizes_are_errors() {
        assert!(matches!(HandoffQueue::new(0, 8), Err(AudioError::Invalid(_))));
        assert!(matches!(HandoffQueue::new(8, 0), Err(AudioError::Invalid(_))));
        assert!(matches!(HandoffQueue::new(1, 1 << 62), Err(AudioError::OutOfMemory(_))));
        assert!(matches!(HandoffQueue::new(1 << 62, 8), Err(AudioError::OutOfMemory(_))));
    }
}
