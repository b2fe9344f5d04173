"""The floor under ``bench_handoff.py``: what any call costs right after a thread wakes.

A sound card's callback thread sleeps between periods, and the first work it does after waking
runs on cold caches (and, on a VM, after the vCPU was idle). This times, in one process and one
run, each call made right after a 1 ms sleep (as in ``bench_handoff.py``'s device thread) and
the same calls back to back:

- ``FrameHandoff.push`` of a 10 ms 48 kHz float32 frame (the device thread's whole path in
  ``RealtimeClient.append_input_audio``), the queue drained by its consumer thread;
- ``len(frame)``, about the cheapest call there is;
- ``frame.copy()``, numpy copying the same 1.9 KB: the least any hand-off must do.

If ``push`` after a sleep costs what ``frame.copy()`` does, the hand-off's tail is the thread's
wake-up, not the queue.

    .venv/bin/python benches/bench_wake_floor.py [calls_after_sleep]
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from realtalk._audio import FrameHandoff


def timed(call: Callable[[], object], calls: int, sleep_s: float) -> np.ndarray:
    """Wall microseconds of each call, a ``sleep_s`` sleep before each when it is not 0."""
    spent = np.empty(calls)
    for i in range(calls):
        if sleep_s:
            time.sleep(sleep_s)
        start = time.perf_counter_ns()
        call()
        spent[i] = (time.perf_counter_ns() - start) / 1000
    return spent


def row(name: str, spent: np.ndarray) -> str:
    p50, p99, p999 = np.percentile(spent, [50, 99, 99.9])
    return (f"{name:34s} p50 {p50:6.2f}  p99 {p99:6.2f}  p99.9 {p999:6.2f}  "
            f"max {spent.max():7.1f} us  ({len(spent)} calls)")


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    frame = np.zeros(480, dtype=np.float32)
    queue = FrameHandoff(8192, 64 << 20)
    queue.open(48000)  # this thread is the consumer
    rows: list[str] = []

    def device_thread() -> None:
        rows.append(row("push, back to back", timed(lambda: queue.push(frame), 10 * calls, 0)))
        rows.append(row("push, after a 1 ms sleep", timed(lambda: queue.push(frame), calls, 1e-3)))
        rows.append(row("len(frame), after a 1 ms sleep", timed(lambda: len(frame), calls, 1e-3)))
        rows.append(row("frame.copy(), after a 1 ms sleep", timed(frame.copy, calls, 1e-3)))

    device = threading.Thread(target=device_thread)
    device.start()
    while device.is_alive():
        queue.woken()
        while queue.front() is not None:
            queue.pop()
        time.sleep(0.0005)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
