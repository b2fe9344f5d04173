"""The uplink's two buffers: frames handed over by other threads, and audio held over an outage.

``FrameHandoff`` is how an audio device's callback thread gives frames to the event loop without
ever waiting for it: ``put`` takes a lock held only for a few list operations (never across the
loop's work) and says whether the loop needs waking; when the queue is full it refuses at once.
``OutageBuffer`` keeps the encoded audio appended while no connection is up, bounded by its
duration (the oldest goes first), for the next connection to send. Neither does I/O.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

__all__ = ["FrameHandoff", "HandoffFull", "OutageBuffer"]

T = TypeVar("T")


class HandoffFull(Exception):
    """The hand-off queue is at capacity: the item was not queued."""


class FrameHandoff(Generic[T]):
    """A bounded FIFO from any thread to the event loop's thread. ``lock`` also guards what
    the caller counts alongside it (refusals), so counts from both threads add up."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the hand-off needs room for at least one frame, got {capacity}")
        self.capacity = capacity
        self.lock = threading.Lock()
        self._items: deque[T] = deque()
        self._wake_pending = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> bool:
        """Queue ``item`` (any thread). True when the loop must be woken for it (no wake-up is
        pending yet). Raises :class:`HandoffFull` instead of waiting."""
        with self.lock:
            if len(self._items) >= self.capacity:
                raise HandoffFull
            self._items.append(item)
            wake = not self._wake_pending
            self._wake_pending = True
        return wake

    def woken(self) -> None:
        """The loop is draining (loop thread): the next ``put`` wakes it again."""
        with self.lock:
            self._wake_pending = False

    def peek(self) -> T:
        return self._items[0]

    def pop(self) -> T:
        return self._items.popleft()


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
