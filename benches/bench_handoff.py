"""Time ``append_input_audio`` spends in a sound card's thread while the event loop is busy.

Issue 16, finding 5: an audio callback must never wait for the event loop. A device thread
appends 10 ms microphone frames (48 kHz float32, resampled and encoded to the session's pcm16
by the Rust core in that thread) every millisecond, and every 300 ms the event loop is stalled
for 100 ms by a blocking call. Every call is timed (``perf_counter_ns``) in the device thread;
the calls made wholly inside a stall are the ones the bar is about (p99.9 <= 50 us), the rest
are shown too. The client talks to the simulator in the same loop (so the stall stops it too).

    .venv/bin/python benches/bench_handoff.py [asyncio|trio] [seconds]

Before the fix (``anyio.from_thread.run_sync``) a call made during a stall waited for the loop:
up to the stall's 100 ms. Since session 6 the device thread's call is one push into a Rust queue
(``realtalk._audio.FrameHandoff``) that wakes the loop through a socket. ``cpu`` rows are the thread's own CPU time in the call (the wall time
minus preemption by other processes); ``gc_*`` are the interpreter's collections meanwhile (a
collection holds the GIL, in whichever thread triggered it, and outside any stall that is the
longest wait an append can meet).
"""

from __future__ import annotations

import gc
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


async def measure(seconds: float) -> dict[str, object]:
    frame = (0.3 * np.sin(2 * np.pi * 440 * np.arange(DEVICE_RATE * FRAME_MS // 1000)
                          / DEVICE_RATE)).astype(np.float32)
    stalls: list[tuple[int, int]] = []
    calls: list[tuple[int, int, int]] = []
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
            while not stop.is_set():
                started = time.perf_counter_ns()
                cpu = time.thread_time_ns()
                try:
                    client.append_input_audio(frame)
                except InputBackpressure:
                    refused += 1
                cpu = time.thread_time_ns() - cpu
                calls.append((started, time.perf_counter_ns(), cpu))
                time.sleep(PERIOD_S)

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
    inside_calls = [(start, end, cpu) for start, end, cpu in calls
                    if any(b <= start and end <= e for b, e in stalls)]
    inside = [end - start for start, end, _ in inside_calls]
    inside_cpu = [cpu for _, _, cpu in inside_calls]
    every = [end - start for start, end, _ in calls]
    return {"calls": len(every), "inside_stalls": len(inside), "stalls": len(stalls),
            "refused": refused, "metrics_refused": metrics_refused,
            "stalled_p50_us": percentile(inside, 50), "stalled_p99_us": percentile(inside, 99),
            "stalled_p999_us": percentile(inside, 99.9),
            "stalled_max_us": max(inside, default=0) / 1000.0,
            "stalled_cpu_p99_us": percentile(inside_cpu, 99),
            "stalled_cpu_p999_us": percentile(inside_cpu, 99.9),
            "stalled_cpu_max_us": max(inside_cpu, default=0) / 1000.0,
            "all_p50_us": percentile(every, 50), "all_p999_us": percentile(every, 99.9),
            "all_max_us": max(every, default=0) / 1000.0,
            "gc_pauses_over_1ms": sum(1 for pause in gc_pauses if pause > 1e6),
            "gc_longest_ms": max(gc_pauses, default=0) / 1e6}


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    result = anyio.run(measure, seconds, backend=backend)
    print(f"backend={backend} seconds={seconds:g} frame={FRAME_MS} ms at {DEVICE_RATE} Hz, "
          f"one per {PERIOD_S * 1000:g} ms; loop stalled {STALL_S * 1000:g} ms every "
          f"{STALL_EVERY_S * 1000:g} ms")
    for key, value in result.items():
        print(f"  {key:>16}: {value:.1f}" if isinstance(value, float) else
              f"  {key:>16}: {value}")


if __name__ == "__main__":
    main()
