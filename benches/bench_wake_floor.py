"""The floor under ``bench_handoff.py``: what any call costs right after a thread wakes.

A sound card's callback thread sleeps between periods, and the first work it does after waking
runs on cold caches (and, on a VM, after the vCPU was idle). This times, in one process and one
run, calls made right after a 1 ms sleep (as in ``bench_handoff.py``'s device thread), taking
turns so every row meets the same conditions, and the push back to back:

- ``FrameHandoff.push`` split into its phases by variants, each adding one to the one before:
  on a closed queue (the interpreter's call into the extension, argument extraction, one
  atomic load), of a float64 frame it does not take (plus the rate and thread checks and the
  numpy type and layout checks), of an empty float32 frame (plus the lock and the slot
  bookkeeping), of a 10 ms 48 kHz float32 frame with a wake-up already pending (plus the copy
  of 1.9 KB into the arena), and the same frame on the empty-to-non-empty edge (plus the
  wake-up write to ``wake_fd``), as ``RealtimeClient.append_input_audio`` makes it;
- the wake-up's system call alone, ``os.write`` to an eventfd (what the push uses on Linux)
  and to a unix socket (what it used before session 7);
- ``time.thread_time_ns()``, which ``bench_handoff.py`` called twice inside its timed span
  until session 7 (a real system call: the thread's CPU clock has no vDSO path);
- ``len(frame)``, about the cheapest call there is, and ``frame.copy()``, numpy copying the
  same 1.9 KB: the least any hand-off must do.

    .venv/bin/python benches/bench_wake_floor.py [calls_per_row]
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from realtalk._audio import FrameHandoff

RATE = 48000


def row(name: str, spent: np.ndarray) -> str:
    p50, p99, p999 = np.percentile(spent, [50, 99, 99.9])
    return (f"{name:40s} p50 {p50:6.2f}  p99 {p99:6.2f}  p99.9 {p999:6.2f}  "
            f"max {spent.max():7.1f} us  ({len(spent)} calls)")


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    frame = np.zeros(RATE // 100, dtype=np.float32)
    not_taken, empty = np.zeros(RATE // 100), np.zeros(0, dtype=np.float32)
    closed = FrameHandoff(8, 1 << 16)
    # The consumer drains `pending` now and then without looking (`woken`), so its wake-up
    # stays pending; it looks at `edge` every 0.5 ms, so nearly every push there wakes it.
    pending, edge = FrameHandoff(512, 4 << 20), FrameHandoff(512, 4 << 20)
    pending.open(RATE)
    edge.open(RATE)
    eventfd = os.eventfd(0, os.EFD_NONBLOCK) if hasattr(os, "eventfd") else None
    sock_write, sock_read = socket.socketpair()
    sock_write.setblocking(False)
    sock_read.setblocking(False)
    one = (1).to_bytes(8, sys.byteorder)
    turns: dict[str, Callable[[], object]] = {
        "push, closed queue (entry)": lambda: closed.push(frame),
        "push, float64 not taken (+ checks)": lambda: pending.push(not_taken),
        "push, empty frame (+ lock, slot)": lambda: pending.push(empty),
        "push, wake-up pending (+ copy 1.9 KB)": lambda: pending.push(frame),
        "push, on the edge (+ wake-up write)": lambda: edge.push(frame),
        "os.write to a unix socket (before)": lambda: os.write(sock_write.fileno(), one),
        "time.thread_time_ns() (a system call)": time.thread_time_ns,
        "len(frame)": lambda: len(frame),
        "frame.copy()": frame.copy,
    }
    if eventfd is not None:
        turns["os.write to an eventfd"] = lambda: os.write(eventfd, one)
    spent = {name: np.empty(calls) for name in turns}
    rows: list[str] = []

    def device_thread() -> None:
        back_to_back = np.empty(10 * calls)
        for i in range(len(back_to_back)):
            start = time.perf_counter_ns()
            pending.push(frame)
            back_to_back[i] = (time.perf_counter_ns() - start) / 1000
        rows.append(row("push, back to back (wake-up pending)", back_to_back))
        for i in range(calls):
            for name, call in turns.items():
                time.sleep(1e-3)
                start = time.perf_counter_ns()
                call()
                spent[name][i] = (time.perf_counter_ns() - start) / 1000

    device = threading.Thread(target=device_thread)
    device.start()
    looks = 0
    while device.is_alive():
        time.sleep(0.0005)
        looks += 1
        edge.woken()
        while edge.front() is not None:
            edge.pop()
        if looks % 100 == 0:
            while pending.front() is not None:
                pending.pop()
        for fd in (sock_read.fileno(), eventfd):
            try:
                if fd is not None:
                    os.read(fd, 4096)
            except BlockingIOError:
                pass
    rows.append("each after a 1 ms sleep, in turns:")
    rows.extend(row(f"  {name}", values) for name, values in spent.items())
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
