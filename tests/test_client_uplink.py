"""The uplink's buffers (realtalk._uplink): the thread hand-off and the outage buffer."""

from __future__ import annotations

import os
import select
import sys
import threading

import pytest

import numpy as np

from realtalk._uplink import (
    HANDOFF_FULL,
    HANDOFF_NOT_TAKEN,
    HANDOFF_QUEUED,
    HANDOFF_TOO_LARGE,
    FrameHandoff,
    OutageBuffer,
)


def _take_all(handoff: FrameHandoff) -> list[tuple[np.ndarray, int, int]]:
    taken = []
    while (front := handoff.front()) is not None:
        taken.append(front)
        assert handoff.pop()
    return taken


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_the_hand_off_keeps_frames_layouts_and_rates_and_refuses_when_full() -> None:
    handoff = FrameHandoff(3, 4096)
    opened_in = threading.Thread(target=handoff.open, args=(24000,))
    opened_in.start()
    opened_in.join()  # another thread is the consumer: pushes from this one are taken
    mono = np.arange(-5, 5, dtype=np.int16)
    stereo = np.linspace(-1, 1, 16, dtype=np.float32).reshape(8, 2)
    assert handoff.push(mono) == HANDOFF_QUEUED
    assert handoff.push(stereo, 48000) == HANDOFF_QUEUED
    assert handoff.push(mono[::-1].copy()) == HANDOFF_QUEUED
    assert handoff.push(mono) == HANDOFF_FULL, "three frames at most"
    assert len(handoff) == 3
    (first, ch1, rate1), (second, ch2, rate2), (third, _, _) = _take_all(handoff)
    np.testing.assert_array_equal(first, mono)
    assert (ch1, rate1, first.dtype) == (0, 24000, np.int16)
    np.testing.assert_array_equal(second.reshape(-1, ch2), stereo)
    assert (ch2, rate2, second.dtype) == (2, 48000, np.float32)
    np.testing.assert_array_equal(third, mono[::-1])
    assert handoff.front() is None and not handoff.pop()


def test_the_hand_off_takes_only_what_it_can_copy_as_is() -> None:
    handoff = FrameHandoff(8, 64)
    samples = np.zeros(4, dtype=np.float32)
    assert handoff.push(samples) == HANDOFF_NOT_TAKEN, "not open yet"
    worker = threading.Thread(target=handoff.open)  # no default rate
    worker.start()
    worker.join()
    assert handoff.push(samples) == HANDOFF_NOT_TAKEN, "no rate given, none by default"
    assert handoff.push(samples, 16000) == HANDOFF_QUEUED
    for other in (np.zeros(4), np.zeros(4, dtype=">f4"), np.zeros((2, 2, 2), np.float32),
                  np.zeros(8, np.float32)[::2], [0.0, 0.1], b"\x00\x00", "text"):
        assert handoff.push(other, 16000) == HANDOFF_NOT_TAKEN, other
    assert handoff.push(np.zeros(16, np.float32), 16000) == HANDOFF_FULL, "16 bytes left"
    assert handoff.push(np.zeros(17, np.float32), 16000) == HANDOFF_TOO_LARGE
    assert handoff.push(samples, 0) == HANDOFF_NOT_TAKEN
    handoff.close()
    assert handoff.push(samples, 16000) == HANDOFF_NOT_TAKEN
    assert len(handoff) == 1, "closing keeps what was queued"
    with pytest.raises(ValueError, match="max_frames"):
        FrameHandoff(0, 64)
    with pytest.raises(ValueError, match="arena_bytes"):
        FrameHandoff(1, -1)
    with pytest.raises(ValueError, match="arena_bytes"):
        FrameHandoff(1, 2**70)


def test_the_consumers_own_pushes_are_not_taken() -> None:
    handoff = FrameHandoff(4, 64)
    handoff.open(24000)  # this thread consumes: its frames take the client's direct path
    assert handoff.push(np.zeros(4, np.int16)) == HANDOFF_NOT_TAKEN
    errors: list[BaseException] = []

    def reopen() -> None:
        try:
            handoff.open()
        except ValueError as exc:
            errors.append(exc)

    worker = threading.Thread(target=reopen)
    worker.start()
    worker.join()
    assert len(errors) == 1 and "another thread" in str(errors[0])


def test_the_hand_off_wakes_its_consumer_once_per_look() -> None:
    handoff = FrameHandoff(16, 4096)
    fd = handoff.wake_fd
    assert isinstance(fd, int)
    frame = np.ones(4, np.int16)

    def push(count: int) -> None:
        for _ in range(count):
            assert handoff.push(frame) == HANDOFF_QUEUED

    worker = threading.Thread(target=handoff.open, args=(8000,))
    worker.start()
    worker.join()
    assert not _readable(fd)
    push(3)
    assert _readable(fd), "the first frame woke the consumer"
    handoff.woken()
    assert not _readable(fd), "woken() takes the wake-up"
    assert len(_take_all(handoff)) == 3
    push(1)
    assert _readable(fd), "the next push after a look wakes it again"
    # One 8-byte count of 1 (an eventfd's counter, or one write to a pipe): one wake-up since
    # the look, none left over from the three frames before it.
    assert int.from_bytes(os.read(fd, 64), sys.byteorder) == 1
    assert not _readable(fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="eventfd is Linux's")
def test_the_hand_offs_wake_up_is_an_eventfd_on_linux() -> None:
    # Not a socket: a unix socket's write costs a just-woken device thread about 3x an
    # eventfd's (benches/README.md, "A device thread never waits for the loop").
    handoff = FrameHandoff(4, 64)
    assert os.readlink(f"/proc/self/fd/{handoff.wake_fd}") == "anon_inode:[eventfd]"


def test_the_hand_off_from_many_threads_keeps_each_threads_order_and_its_bound() -> None:
    handoff = FrameHandoff(500, 1 << 20)
    handoff.open(16000)
    refused = [0] * 4

    def producer(thread: int) -> None:
        for n in range(200):
            if handoff.push(np.array([thread, n], dtype=np.int16)) == HANDOFF_FULL:
                refused[thread] += 1

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [tuple(int(x) for x in samples) for samples, _, _ in _take_all(handoff)]
    assert len(taken) == 500 and sum(refused) == 300
    for thread in range(4):
        mine = [n for t, n in taken if t == thread]
        assert mine == sorted(mine) == list(range(len(mine)))


def test_the_outage_buffer_drops_the_oldest_beyond_its_limit() -> None:
    outage = OutageBuffer()
    assert outage.append(b"a", 20.0, limit_ms=50) == 0.0
    assert outage.append(b"b", 20.0, limit_ms=50) == 0.0
    assert outage.append(b"c", 20.0, limit_ms=50) == 20.0  # "a" went
    assert len(outage) == 2 and outage.total_ms == 40.0
    assert outage.peek() == b"b"
    outage.pop()
    assert outage.peek() == b"c" and outage.total_ms == 20.0
    # A message longer than the limit does not fit either: all of it goes.
    assert outage.append(b"long", 100.0, limit_ms=50) == 120.0
    assert len(outage) == 0 and outage.total_ms == 0.0
