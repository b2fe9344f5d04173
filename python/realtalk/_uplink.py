"""The uplink's two buffers: frames handed over by other threads, and audio held over an outage.

The hand-off is how an audio device's callback thread gives frames to the event loop without
ever waiting for it: a Rust queue (``realtalk._audio.FrameHandoff``) that copies each frame
into an arena allocated once, refuses at once when full, and wakes the loop on the
empty-to-non-empty edge by writing to a socket the loop watches; a push is one call that makes
no Python object (issue 16, finding 5: p99.9 <= 50 us in the caller's thread).
``new_frame_handoff`` sizes it. ``OutageBuffer`` keeps the encoded audio appended while no
connection is up, bounded by its duration (the oldest goes first), for the next connection to
send. Neither does I/O.
"""

from __future__ import annotations

from collections import deque

from realtalk._audio import (
    HANDOFF_FULL,
    HANDOFF_NOT_TAKEN,
    HANDOFF_QUEUED,
    HANDOFF_QUEUED_WAKE,
    HANDOFF_TOO_LARGE,
    FrameHandoff,
)

__all__ = ["HANDOFF_FULL", "HANDOFF_NOT_TAKEN", "HANDOFF_QUEUED", "HANDOFF_QUEUED_WAKE",
           "HANDOFF_TOO_LARGE", "FrameHandoff", "OutageBuffer", "new_frame_handoff"]

# The arena holds this much audio per frame slot (20 ms of stereo float32: a device's frame is
# 10 ms or less), and never less than MIN_ARENA_FRAMES slots' worth, so a small queue still
# takes a long frame.
ARENA_MS_PER_FRAME = 20
MIN_ARENA_FRAMES = 64


def new_frame_handoff(max_frames: int, input_rate: int) -> FrameHandoff:
    """A hand-off for ``max_frames`` frames (at least one) at about ``input_rate`` Hz."""
    max_frames = max(1, max_frames)
    bytes_per_frame = max(1, input_rate * ARENA_MS_PER_FRAME // 1000) * 2 * 4
    return FrameHandoff(max_frames, max(max_frames, MIN_ARENA_FRAMES) * bytes_per_frame)


class OutageBuffer:
    """Encoded audio messages with their duration, at most ``limit_ms`` of them in all."""

    def __init__(self) -> None:
        self._messages: deque[tuple[bytes, float]] = deque()
        self.total_ms = 0.0

    def __len__(self) -> int:
        return len(self._messages)

    def append(self, message: bytes, duration_ms: float, limit_ms: float) -> float:
        """Keep ``message``; returns the ms of the oldest audio dropped to stay in the limit."""
        self._messages.append((message, duration_ms))
        self.total_ms += duration_ms
        dropped = 0.0
        while self.total_ms > limit_ms and self._messages:
            _, oldest = self._messages.popleft()
            self.total_ms -= oldest
            dropped += oldest
        return dropped

    def peek(self) -> bytes:
        return self._messages[0][0]

    def pop(self) -> None:
        _, duration_ms = self._messages.popleft()
        self.total_ms -= duration_ms
