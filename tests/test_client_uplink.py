"""The uplink's buffers (realtalk._uplink): the thread hand-off and the outage buffer."""

from __future__ import annotations

import threading

import pytest

from realtalk._uplink import FrameHandoff, HandoffFull, OutageBuffer


def test_the_hand_off_refuses_when_full_and_wakes_once_per_drain() -> None:
    handoff: FrameHandoff[int] = FrameHandoff(3)
    assert [handoff.put(n) for n in range(3)] == [True, False, False]
    with pytest.raises(HandoffFull):
        handoff.put(3)
    assert len(handoff) == 3
    handoff.woken()
    assert [handoff.pop(), handoff.peek()] == [0, 1]
    assert handoff.put(4) is True  # the loop said it is draining: wake it again
    assert [handoff.pop(), handoff.pop(), handoff.pop()] == [1, 2, 4]
    with pytest.raises(ValueError):
        FrameHandoff(0)


def test_the_hand_off_from_many_threads_keeps_each_threads_order_and_its_bound() -> None:
    handoff: FrameHandoff[tuple[int, int]] = FrameHandoff(500)
    refused = [0] * 4

    def producer(thread: int) -> None:
        for n in range(200):
            try:
                handoff.put((thread, n))
            except HandoffFull:
                refused[thread] += 1

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [handoff.pop() for _ in range(len(handoff))]
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
