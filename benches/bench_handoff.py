"""Time ``append_input_audio`` spends in a sound card's thread while the event loop is busy.

Issue 16, finding 5: an audio callback must never wait for the event loop. A device thread
appends 10 ms microphone frames (48 kHz float32) and every 300 ms the event loop is stalled for
100 ms by a blocking call. The calls made wholly inside a stall are the ones the bar is about
(p99.9 <= 50 us), the rest are shown too. The client talks to the simulator in the same loop (so
the stall stops it too).

    .venv/bin/python benches/bench_handoff.py [asyncio|trio] [seconds]

Before the fix (``anyio.from_thread.run_sync``) a call made during a stall waited for the loop:
up to the stall's 100 ms. Since session 6 the device thread's call is one push into a Rust queue
(``realtalk._audio.FrameHandoff``) that wakes the loop through a file descriptor.

Method. The device thread sleeps 1 ms before every timed call and takes turns: an append, then
``len(frame)``, an append, then numpy's ``frame.copy()`` (so an append every 2 ms). ``len`` and
``copy`` are the floor, timed in the same run, after the same sleep, in the same stalls: what
any call, and the least any hand-off (a copy of the frame), costs on a thread that just woke.
Only the call is inside the timed span (two ``perf_counter_ns`` stamps, a vDSO read); the
thread's CPU time (``time.thread_time_ns``, a real system call) is sampled just outside them,
so the ``cpu`` rows are the call's own CPU time plus the two stamps. The ``stall_first`` rows
are the first append of each stall, the one that signals the loop's wake-up descriptor.
``gc_*`` are the interpreter's collections (a collection holds the GIL in whichever thread
triggered it; outside any stall that is the longest wait an append can meet).

Until session 7 both ``thread_time_ns`` samples were inside the timed span and the device
thread appended every 1 ms with no floor calls; that method read p50 / p99 / p99.9 7.8 / 32.0 /
75.4 us (asyncio) and 7.0 / 30.1 / 47.6 us (trio) on 2026-12-07 14:37 UTC (load 2.2, shared
machine), where two cold ``thread_time_ns`` calls alone cost p99.9 about 30 us each
(``benches/README.md``, "A device thread never waits for the loop", has both side by side).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time

import anyio
import numpy as np

from realtalk.client import InputBackpressure, RealtimeClient
from realtalk.simulator import Simulator

DEVICE_RATE = 48000
FRAME_MS = 10
PERIOD_S = 0.001
STALL_S = 0.100
STALL_EVERY_S = 0.300
SESSION = {"output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}


def percentile(values: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) / 1000.0 if values \
        else float("nan")


APPEND, LEN, COPY = "append", "len", "copy"
# What the device thread times after each sleep, in turn: appends, and the floor between them.
TURNS = (APPEND, LEN, APPEND, COPY)


async def measure(seconds: float) -> dict[str, object]:
    frame = (0.3 * np.sin(2 * np.pi * 440 * np.arange(DEVICE_RATE * FRAME_MS // 1000)
                          / DEVICE_RATE)).astype(np.float32)
    stalls: list[tuple[int, int]] = []
    calls: list[tuple[str, int, int, int]] = []  # (what, started, ended, thread CPU ns)
    refused = 0
    stop = threading.Event()
    gc_pauses: list[int] = []
    gc_started = [0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter_ns()
        else:
            gc_pauses.append(time.perf_counter_ns() - gc_started[0])

    gc.callbacks.append(on_gc)
    async with Simulator() as sim, RealtimeClient(sim.url, api_key="sk-bench", session=SESSION,
                                                  input_rate=DEVICE_RATE,
                                                  uplink_queue_frames=512) as client:

        def device() -> None:
            nonlocal refused
            append = client.append_input_audio
            floors = {LEN: len, COPY: np.ndarray.copy}
            clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
            turn = 0
            while not stop.is_set():
                what = TURNS[turn % len(TURNS)]
                turn += 1
                floor = floors.get(what)
                time.sleep(PERIOD_S)
                cpu = cpu_clock()
                if floor is None:
                    started = clock()
                    try:
                        append(frame)
                    except InputBackpressure:
                        refused += 1
                    ended = clock()
                else:
                    started = clock()
                    floor(frame)
                    ended = clock()
                calls.append((what, started, ended, cpu_clock() - cpu))

        thread = threading.Thread(target=device, daemon=True)
        thread.start()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            await anyio.sleep(STALL_EVERY_S - STALL_S)
            began = time.perf_counter_ns()
            time.sleep(STALL_S)  # the loop is busy: a blocking call in a handler
            stalls.append((began, time.perf_counter_ns()))
        stop.set()
        while thread.is_alive():
            await anyio.sleep(0.01)
        await client.commit_input_audio()
        metrics_refused = client.metrics.input_frames_refused
    gc.callbacks.remove(on_gc)

    def in_stall(started: int, ended: int) -> bool:
        return any(b <= started and ended <= e for b, e in stalls)

    def walls(what: str, stalled: bool) -> list[int]:
        return [end - start for kind, start, end, _ in calls
                if kind == what and (not stalled or in_stall(start, end))]

    inside = walls(APPEND, stalled=True)
    inside_cpu = [cpu for kind, start, end, cpu in calls
                  if kind == APPEND and in_stall(start, end)]
    every = walls(APPEND, stalled=False)
    # The first append of each stall is the one that wakes the loop (the loop drained, and
    # looked, just before it stalled); the others find a wake-up pending.
    first_in_stall: dict[int, int] = {}
    for kind, start, end, _ in calls:  # in the order they were made
        for began, ended in stalls:
            if kind == APPEND and began <= start and end <= ended:
                first_in_stall.setdefault(began, end - start)
    edge_walls = list(first_in_stall.values())
    result: dict[str, object] = {
        "calls": len(every), "inside_stalls": len(inside), "stalls": len(stalls),
        "refused": refused, "metrics_refused": metrics_refused,
        "stalled_p50_us": percentile(inside, 50), "stalled_p99_us": percentile(inside, 99),
        "stalled_p999_us": percentile(inside, 99.9),
        "stalled_max_us": max(inside, default=0) / 1000.0,
        "stalled_cpu_p99_us": percentile(inside_cpu, 99),
        "stalled_cpu_p999_us": percentile(inside_cpu, 99.9),
        "stalled_cpu_max_us": max(inside_cpu, default=0) / 1000.0,
        "stall_first_p50_us": percentile(edge_walls, 50),
        "stall_first_max_us": max(edge_walls, default=0) / 1000.0}
    for what in (LEN, COPY):  # the floor, in the same stalls
        spent = walls(what, stalled=True)
        result[f"floor_{what}_calls"] = len(spent)
        for name, q in (("p50", 50), ("p99", 99), ("p999", 99.9)):
            result[f"floor_{what}_{name}_us"] = percentile(spent, q)
        result[f"floor_{what}_max_us"] = max(spent, default=0) / 1000.0
    result.update({
        "all_p50_us": percentile(every, 50), "all_p999_us": percentile(every, 99.9),
        "all_max_us": max(every, default=0) / 1000.0,
        "gc_pauses_over_1ms": sum(1 for pause in gc_pauses if pause > 1e6),
        "gc_longest_ms": max(gc_pauses, default=0) / 1e6})
    return result


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    result = anyio.run(measure, seconds, backend=backend)
    print(f"backend={backend} seconds={seconds:g} frame={FRAME_MS} ms at {DEVICE_RATE} Hz; "
          f"a {PERIOD_S * 1000:g} ms sleep before each timed call ({' '.join(TURNS)}); "
          f"load average {os.getloadavg()[0]:.2f}; loop stalled {STALL_S * 1000:g} ms every "
          f"{STALL_EVERY_S * 1000:g} ms")
    for key, value in result.items():
        print(f"  {key:>19}: {value:.1f}" if isinstance(value, float) else
              f"  {key:>19}: {value}")


if __name__ == "__main__":
    main()
