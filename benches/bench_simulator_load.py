"""Load benchmark for the simulator (a benchmark, not a test).

N concurrent sessions each stream 20 ms pcm16 frames at real-time pace for S seconds over
loopback: speech bursts and pauses, so the simulator's server_vad detects turns, commits them
and streams audio replies back. The simulator runs alone in its own process (one process: the
figure asked for is what one simulator process sustains); the clients run in this process.

Accounting: every audio byte the clients append must be counted by the simulator, and every
audio byte the simulator sends must arrive at the clients; any `error` event or lost connection
fails the run. "Sustained in real time" means: every session kept its 20 ms send schedule
(worst lag under 100 ms) and the simulator answered each turn promptly (p99 lag between the
frame that completes a turn and its `speech_stopped` under 100 ms).

    python benches/bench_simulator_load.py --sessions 200 --seconds 30
    python benches/bench_simulator_load.py --sweep 50,100,150,200,250 --seconds 30
    pytest benches/bench_simulator_load.py --benchmark-only      # a short 20-session run
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
import numpy as np
from load import LoadClient, masked_text_frame, real_time_ticks

RATE = 24000
FRAME_MS = 20
FRAME_BYTES = RATE * 2 * FRAME_MS // 1000
PHASES = 8


def speech_pattern(seconds: float, phase: int) -> bytes:
    """Alternating voiced bursts (1.2-2.0 s) and pauses (1.5-2.5 s), pcm16 at 24 kHz."""
    rng = np.random.default_rng(phase)
    chunks = [np.zeros(int(RATE * (0.2 + 0.4 * phase / PHASES)))]
    total = len(chunks[0])
    while total < seconds * RATE:
        burst = int(RATE * rng.uniform(1.2, 2.0))
        t = np.arange(burst) / RATE
        f0 = rng.uniform(110, 190)
        voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 7)) / 2.45
        voiced *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2
        pause = np.zeros(int(RATE * rng.uniform(1.5, 2.5)))
        chunks += [0.3 * voiced, pause]
        total += burst + len(pause)
    pcm = np.concatenate(chunks)[: int(seconds * RATE)]
    return np.round(pcm * 32767).astype("<i2").tobytes()


def frames_for(pcm: bytes) -> list[bytes]:
    encoder = msgspec.json.Encoder()
    return [
        encoder.encode(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(pcm[i : i + FRAME_BYTES]).decode(),
            }
        )
        for i in range(0, len(pcm), FRAME_BYTES)
    ]


# ---- the simulator process ----------------------------------------------------------------


def serve_main() -> None:
    from realtalk.simulator import Simulator, buzz

    async def main() -> None:
        async with Simulator(port=0, compression=None, keepalive_s=None, synthesizer=buzz) as sim:
            print(json.dumps({"port": sim.port}), flush=True)
            while True:
                line = await anyio.to_thread.run_sync(sys.stdin.readline)
                if not line or line.strip() == "quit":
                    return
                times = os.times()
                stats = sim.stats
                print(
                    json.dumps(
                        {
                            "cpu_s": times.user + times.system,
                            "input_audio_bytes": stats.input_audio_bytes,
                            "output_audio_bytes": stats.output_audio_bytes,
                            "sessions": stats.sessions,
                            "responses": stats.responses,
                            "errors": stats.errors,
                            "events_sent": stats.events_sent,
                            "events_received": stats.events_received,
                        }
                    ),
                    flush=True,
                )

    profile = os.environ.get("BENCH_SIMULATOR_PROFILE")
    if profile:  # where the simulator's time goes: BENCH_SIMULATOR_PROFILE=out.prof
        import cProfile

        cProfile.runctx("anyio.run(main)", globals(), locals(), profile)
    else:
        anyio.run(main)


class SimulatorProcess:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # Its own session, as a separately started server would be (with Linux's autogroup
            # scheduling that also gives it its own share of the CPU, not a part of ours).
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self.port = json.loads(self.process.stdout.readline())["port"]

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        stats: dict[str, Any] = json.loads(self.process.stdout.readline())
        return stats

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.flush()
        self.process.wait(timeout=30)
        self.process.stdin.close()
        if self.process.stdout is not None:
            self.process.stdout.close()


# ---- the clients ------------------------------------------------------------------------


@dataclass
class SessionResult:
    received_audio: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    turn_lags: list[float] = field(default_factory=list)
    responses_open: int = 0
    last_event_at: float = 0.0


SLOTS = 4  # sessions are spread over 4 sub-ticks of the 20 ms frame period


class RawClient(LoadClient, asyncio.BufferedProtocol):
    """One simulated session's client. Reads go into one preallocated buffer (a plain asyncio
    protocol gets a fresh 256 KiB ``bytes`` per read). A send waits while the socket's buffer
    is over its high-water mark, as a stream client's would: a simulator that falls behind
    shows up as send lag."""

    READ_SIZE = 64 * 1024

    def __init__(self, url: str, result: SessionResult, slot_sent_at: list[float]) -> None:
        super().__init__(url, "sk-bench")
        self.result = result
        self.slot_sent_at = slot_sent_at
        self.writable = asyncio.Event()
        self.writable.set()
        self.read_buffer = memoryview(bytearray(self.READ_SIZE))

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.read_buffer[:nbytes]))

    def on_event(self, event: dict[str, Any]) -> None:
        result = self.result
        kind = event["type"]
        result.last_event_at = time.monotonic()
        if kind == "response.output_audio.delta":
            delta = event["delta"]
            result.received_audio += len(delta) * 3 // 4 - delta[-2:].count("=")
        elif kind == "input_audio_buffer.speech_stopped":
            # The detector has decided by the sample just before audio_end_ms: the client
            # frame holding that sample completed the turn.
            sent_at = self.slot_sent_at
            index = min(len(sent_at) - 1, int((event["audio_end_ms"] - 1) // FRAME_MS))
            result.turn_lags.append(time.monotonic() - sent_at[index])
        elif kind == "response.created":
            result.responses_open += 1
        elif kind == "response.done":
            result.responses_open -= 1
        elif kind == "error":
            result.errors.append(event)


async def run_load(sessions: int, seconds: float) -> dict[str, Any]:
    patterns = [
        [masked_text_frame(f) for f in frames_for(speech_pattern(seconds, phase))]
        for phase in range(PHASES)
    ]
    frame_count = len(patterns[0])
    server = SimulatorProcess()
    results = [SessionResult() for _ in range(sessions)]
    sent_at = [[0.0] * frame_count for _ in range(SLOTS)]
    tick_lags: list[float] = []  # how late each tick of the load generator was
    try:
        url = f"ws://127.0.0.1:{server.port}/v1/realtime?model=gpt-realtime"
        before = server.stats()
        clients = [
            await RawClient.connect(url, results[index], sent_at[index % SLOTS])
            for index in range(sessions)
        ]
        cpu0 = os.times()
        wall0 = time.monotonic()
        async for tick in real_time_ticks(frame_count * SLOTS, FRAME_MS / 1000 / SLOTS, tick_lags):
            frame, slot = divmod(tick, SLOTS)
            # Stamped before the writes: a reply may arrive before the slot is done.
            sent_at[slot][frame] = time.monotonic()
            for index in range(slot, sessions, SLOTS):
                client = clients[index]
                if not client.writable.is_set():
                    await client.writable.wait()
                client.send(patterns[index % PHASES][frame])
        wall = time.monotonic() - wall0
        # Let the last turns' responses finish.
        with anyio.move_on_after(60):
            # Done when every response has finished and nothing arrived for 1 s.
            while any(r.responses_open for r in results) or (
                time.monotonic() - max(r.last_event_at for r in results) < 1.0
            ):
                await anyio.sleep(0.05)
        await anyio.sleep(0.2)
        cpu1 = os.times()
        for client in clients:
            client.close()
        await anyio.sleep(0.5)
        after = server.stats()
    finally:
        server.stop()
    lags = sorted(lag for r in results for lag in r.turn_lags)
    sent = sessions * frame_count * FRAME_BYTES
    received = sum(r.received_audio for r in results)
    cpu = after["cpu_s"] - before["cpu_s"]
    report = {
        "sessions": sessions,
        "seconds": seconds,
        "streaming_wall_s": round(wall, 2),
        "failures": [c.failure for c in clients if c.failure],
        "error_events": sum(len(r.errors) for r in results),
        "audio_in_sent": sent,
        "audio_in_counted_by_simulator": after["input_audio_bytes"] - before["input_audio_bytes"],
        "audio_out_sent_by_simulator": after["output_audio_bytes"] - before["output_audio_bytes"],
        "audio_out_received": received,
        "turns": len(lags),
        "responses": after["responses"] - before["responses"],
        "max_send_lag_ms": round(1000 * max(tick_lags, default=0.0), 1),
        "turn_lag_p50_ms": round(1000 * lags[len(lags) // 2], 1) if lags else None,
        "turn_lag_p99_ms": round(1000 * lags[int(len(lags) * 0.99)], 1) if lags else None,
        "simulator_cpu_s": round(cpu, 2),
        "cpu_ms_per_session_second": round(1000 * cpu / (sessions * seconds), 3),
        "client_cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 2),
    }
    report["accounted"] = (
        report["audio_in_sent"] == report["audio_in_counted_by_simulator"]
        and report["audio_out_sent_by_simulator"] == report["audio_out_received"]
    )
    report["real_time"] = (
        report["accounted"]
        and not report["failures"]
        and report["error_events"] == 0
        and report["max_send_lag_ms"] < 100
        and (report["turn_lag_p99_ms"] or 0) < 100
    )
    return report


def test_simulator_load_20_sessions(benchmark: Any) -> None:
    """A short smoke-sized run under pytest-benchmark; the sweep is the CLI's job."""
    report = benchmark.pedantic(lambda: anyio.run(run_load, 20, 5.0), rounds=1, iterations=1)
    benchmark.extra_info.update(report)
    assert report["accounted"] and not report["failures"] and report["error_events"] == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sweep", help="comma-separated session counts, run in turn")
    args = parser.parse_args()
    if args.serve:
        serve_main()
        return
    counts = [int(n) for n in args.sweep.split(",")] if args.sweep else [args.sessions]
    for count in counts:
        print(json.dumps(anyio.run(run_load, count, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
