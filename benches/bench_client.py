"""Python CPU per 20 ms of full-duplex audio through a Realtime session, side by side.

One frame is: a 20 ms microphone frame (48 kHz float32) appended to the session, the server's
20 ms audio delta (24 kHz pcm16) received, decoded and resampled into playback at 48 kHz, and
20 ms pulled by the "device". The server runs in another process and answers every append with
one delta, so the client's process CPU time covers only the client side.

- ``realtalk``: ``RealtimeClient.append_input_audio`` + its reader + ``client.playback.pull``.
- ``usual``: the way people write it: the ``openai`` package's realtime connection, numpy,
  soxr streams, ``base64`` and ``json`` (inside the SDK), a deque of float32 chunks as playback.

Frames go at real-time pace (the device clock), so an idle event loop costs nothing and the
figure is what a live session pays. Run as pytest-benchmark (CPU time, one round = FRAMES
frames)::

    .venv/bin/python -m pytest benches/bench_client.py -p no:cacheprovider --benchmark-only \
        --benchmark-timer=time.process_time --benchmark-columns=median,iqr

or standalone for the per-frame table: ``.venv/bin/python benches/bench_client.py``.
``.venv/bin/python benches/bench_client.py soak 60`` runs an hour of simulated conversation at
fast pace and prints the client's resident memory at the first turn and at its peak.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import resource
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

IN_RATE = 48000
DEVICE_RATE = 48000
FRAME_MS = 20
FRAMES = 250
WARMUP = 25

SESSION_CREATED = json.dumps({
    "type": "session.created", "event_id": "event_000000000000000000000",
    "session": {"type": "realtime", "object": "realtime.session", "id": "sess_bench",
                "model": "gpt-realtime", "output_modalities": ["audio"],
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                    "turn_detection": None},
                          "output": {"format": {"type": "audio/pcm", "rate": 24000},
                                     "voice": "alloy"}},
                "expires_at": 0},
})
ITEM_ADDED = json.dumps({
    "type": "conversation.item.added", "event_id": "event_000000000000000000001",
    "previous_item_id": None,
    "item": {"id": "item_bench", "type": "message", "status": "in_progress",
             "role": "assistant", "content": []},
})
_TONE = (8000 * np.sin(2 * np.pi * 440 * np.arange(480) / 24000)).astype("<i2")
DELTA = json.dumps({
    "type": "response.output_audio.delta", "event_id": "event_C9G5RJeJ2gF77mV7f2B1j",
    "response_id": "resp_bench", "item_id": "item_bench", "output_index": 0,
    "content_index": 0, "delta": base64.b64encode(_TONE.tobytes()).decode(),
    "obfuscation": "abcdef",
})


def _serve(port_out: Any) -> None:
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        await ws.send(SESSION_CREATED)
        await ws.send(ITEM_ADDED)
        async for message in ws:
            head = message[:64] if isinstance(message, str) else message[:64].decode()
            if "input_audio_buffer.append" in head:
                await ws.send(DELTA)
            elif '"session.update"' in head:
                await ws.send(SESSION_CREATED.replace("session.created", "session.updated"))

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            port_out.send(server.sockets[0].getsockname()[1])
            await asyncio.Future()

    asyncio.run(main())


class EchoServer:
    def __enter__(self) -> EchoServer:
        receive, send = multiprocessing.Pipe(duplex=False)
        self.process = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(send,), daemon=True)
        self.process.start()
        self.port = receive.recv()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.process.terminate()
        self.process.join(5)


def mic_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    n = IN_RATE * FRAME_MS // 1000
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for _ in range(8)]


def cpu_times() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def tick(start: float, index: int) -> None:
    """Sleep until frame ``index``'s slot: the device clock runs at real time."""
    delay = start + index * FRAME_MS / 1000 - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


async def run_realtalk(port: int, frames: int, paced: bool) -> tuple[float, float]:
    """(user, system) CPU seconds for ``frames`` duplex frames through RealtimeClient: at
    real-time pace (``paced``), or back to back (each frame waits for its answer)."""
    from realtalk.client import RealtimeClient

    mic = mic_frames()
    pull = DEVICE_RATE * FRAME_MS // 1000
    async with RealtimeClient(f"ws://127.0.0.1:{port}/v1/realtime", api_key="sk-bench",
                              input_rate=IN_RATE, playback_rate=DEVICE_RATE,
                              session={"audio": {"input": {"turn_detection": None}}},
                              max_conversation_audio_s=10) as client:
        answered = asyncio.Event()
        if not paced:
            client.on("conversation.updated", lambda event: answered.set())
        playback = client.playback
        while "item_bench" not in client.conversation:
            await asyncio.sleep(0.001)
        item = client.conversation.get("item_bench")
        assert item is not None
        clock = time.perf_counter()
        started = (0.0, 0.0)
        for index in range(frames + WARMUP):
            if index == WARMUP:
                started = cpu_times()
            if paced:
                await tick(clock, index)
            answered.clear()
            client.append_input_audio(mic[index % len(mic)])
            if not paced:
                await answered.wait()
            playback.pull(pull)
        if paced:
            await tick(clock, frames + WARMUP)
        now = cpu_times()
        cpu = (now[0] - started[0], now[1] - started[1])
        # Every frame was answered and decoded (nothing was skipped to look fast).
        assert item.audio_samples_received >= (frames + WARMUP - 2) * pull
        return cpu


async def run_usual(port: int, frames: int, paced: bool) -> tuple[float, float]:
    """The same frames the usual way: the openai package's connection, numpy, soxr, base64
    and json (inside the SDK), a deque of float32 chunks as playback."""
    import soxr
    from openai import AsyncOpenAI

    mic = mic_frames()
    pull = DEVICE_RATE * FRAME_MS // 1000
    up = soxr.ResampleStream(IN_RATE, 24000, 1, dtype="float32")
    down = soxr.ResampleStream(24000, DEVICE_RATE, 1, dtype="float32")
    playback: deque[np.ndarray] = deque()
    state = {"queued": 0, "received": 0}
    answered = asyncio.Event()
    openai_client = AsyncOpenAI(api_key="sk-bench",
                                websocket_base_url=f"ws://127.0.0.1:{port}/v1")

    async def receive(conn: Any) -> None:
        async for event in conn:
            if event.type == "response.output_audio.delta":
                samples = np.frombuffer(base64.b64decode(event.delta), dtype=np.int16)
                out = down.resample_chunk(samples.astype(np.float32) / 32768.0)
                playback.append(out)
                state["queued"] += len(out)
                state["received"] += len(samples)
                answered.set()

    def device_pull(n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        filled = 0
        while filled < n and playback:
            head = playback[0]
            take = min(n - filled, len(head))
            out[filled:filled + take] = head[:take]
            filled += take
            if take == len(head):
                playback.popleft()
            else:
                playback[0] = head[take:]
        state["queued"] -= filled
        return out

    async with openai_client.realtime.connect(model="gpt-realtime") as conn:
        await conn.recv()  # session.created
        receiver = asyncio.create_task(receive(conn))
        clock = time.perf_counter()
        started = (0.0, 0.0)
        for index in range(frames + WARMUP):
            if index == WARMUP:
                started = cpu_times()
            if paced:
                await tick(clock, index)
            answered.clear()
            resampled = up.resample_chunk(mic[index % len(mic)])
            pcm = (np.clip(resampled, -1.0, 1.0) * 32767).astype(np.int16)
            await conn.send({"type": "input_audio_buffer.append",
                             "audio": base64.b64encode(pcm.tobytes()).decode()})
            if not paced:
                await answered.wait()
            device_pull(pull)
        if paced:
            await tick(clock, frames + WARMUP)
        now = cpu_times()
        cpu = (now[0] - started[0], now[1] - started[1])
        receiver.cancel()
        assert state["received"] >= (frames + WARMUP - 2) * 480
        return cpu


async def run_clock(port: int, frames: int, paced: bool) -> tuple[float, float]:
    """The device clock alone: the tick loop both ways run, with no audio and no connection.
    What it costs is the event loop waking from idle every 20 ms, paid alike by both."""
    clock = time.perf_counter()
    started = (0.0, 0.0)
    for index in range(frames + WARMUP):
        if index == WARMUP:
            started = cpu_times()
        await tick(clock, index)
    await tick(clock, frames + WARMUP)
    now = cpu_times()
    return now[0] - started[0], now[1] - started[1]


RUNNERS: dict[str, Callable[[int, int, bool], Any]] = {"realtalk": run_realtalk, "usual": run_usual}


@pytest.fixture(scope="module")
def echo_server() -> Any:
    with EchoServer() as server:
        yield server


@pytest.mark.parametrize("paced", [True, False], ids=["real-time", "back-to-back"])
@pytest.mark.parametrize("way", ["usual", "realtalk"])
def test_duplex_20ms_frames(benchmark: Any, echo_server: EchoServer, way: str,
                            paced: bool) -> None:
    mode = "real-time pace" if paced else "back to back"
    benchmark.group = f"client duplex, {mode}: {FRAMES} x 20 ms (48 kHz mic/speaker, 24 kHz wire)"
    results: list[tuple[float, float]] = []

    def run() -> None:
        results.append(asyncio.run(RUNNERS[way](echo_server.port, FRAMES, paced)))

    benchmark.pedantic(run, rounds=3, iterations=1)
    user = sorted(r[0] for r in results)[len(results) // 2]
    system = sorted(r[1] for r in results)[len(results) // 2]
    benchmark.extra_info["user_cpu_us_per_frame"] = user / FRAMES * 1e6
    benchmark.extra_info["system_cpu_us_per_frame"] = system / FRAMES * 1e6


# ---- soak: a long session at fast pace, client memory measured ----

SOAK_TURN_AUDIO_S = 5.0


def _soak_responder(ctx: Any) -> Any:
    from realtalk.simulator.responder import Audio

    n = int(24000 * SOAK_TURN_AUDIO_S)
    samples = (6000 * np.sin(2 * np.pi * 330 * np.arange(n) / 24000)).astype(np.int16)
    return Audio(samples, "a five second answer")


def _serve_simulator(port_out: Any) -> None:
    import anyio

    from realtalk.simulator import Simulator, buzz

    async def main() -> None:
        async with Simulator(responder=_soak_responder, pace="fast", synthesizer=buzz) as simulator:
            port_out.send(simulator.port)
            await anyio.sleep_forever()

    anyio.run(main)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


async def soak(minutes: float) -> dict[str, float]:
    """Simulated minutes of assistant speech (5 s per turn, with user audio appended each
    turn), pulled by a device at 48 kHz; returns the client's RSS at the first turn and its
    peak after. The simulator runs in another process so only the client is measured."""
    from realtalk.client import RealtimeClient

    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_simulator, args=(send,), daemon=True)
    process.start()
    port = receive.recv()
    turns = int(minutes * 60 / SOAK_TURN_AUDIO_S)
    mic = mic_frames()
    try:
        async with RealtimeClient(f"ws://127.0.0.1:{port}/v1/realtime", api_key="sk-soak",
                                  input_rate=IN_RATE, playback_rate=DEVICE_RATE,
                                  session={"audio": {"input": {"turn_detection": None}}},
                                  max_conversation_audio_s=60) as client:
            first = peak = 0.0
            for turn in range(turns):
                for frame in range(10):
                    client.append_input_audio(mic[frame % len(mic)])
                await client.commit_input_audio()
                await client.create_response()
                await client.wait_for_response_done(60)
                while client.playback.queued:
                    client.playback.pull(DEVICE_RATE)
                if turn == 0:
                    first = rss_mb()
                peak = max(peak, rss_mb())
            return {"turns": turns, "rss_first_turn_mb": first, "rss_peak_mb": peak,
                    "conversation_audio_mb": client.conversation.audio_samples_held * 2 / 2**20,
                    "audio_dropped_s": client.conversation.audio_samples_dropped / DEVICE_RATE,
                    "items": len(client.conversation)}
    finally:
        process.terminate()
        process.join(5)


def main() -> None:
    import sys

    if sys.argv[1:2] == ["soak"]:
        minutes = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
        started = time.perf_counter()
        result = asyncio.run(soak(minutes))
        print(f"soak: {minutes:g} simulated minutes in {time.perf_counter() - started:.0f} s: "
              + ", ".join(f"{k}={v:.1f}" for k, v in result.items()))
        return
    rounds = 5
    with EchoServer() as server:
        for paced in (True, False):
            mode = "real-time pace" if paced else "back to back"
            ways = {"usual": run_usual, "realtalk": run_realtalk}
            if paced:
                ways["clock"] = run_clock
            runs: dict[str, list[float]] = {way: [] for way in ways}
            for _ in range(rounds):  # alternating, so that drift of the host hits all alike
                for way, runner in ways.items():
                    user, system = asyncio.run(runner(server.port, FRAMES, paced))
                    runs[way].append((user + system) / FRAMES * 1e6)
            median = {way: sorted(values)[rounds // 2] for way, values in runs.items()}
            for way, values in runs.items():
                print(f"{mode:14s} {way:9s} {median[way]:7.1f} us CPU (user + system) per 20 ms "
                      f"duplex frame, median of {rounds} x {FRAMES} frames "
                      f"({', '.join(f'{v:.0f}' for v in values)})")
            print(f"{mode:14s} ratio     {median['usual'] / median['realtalk']:5.2f}x less CPU "
                  "with realtalk")
            if paced:
                floor = median["clock"]
                print(f"{mode:14s} above the device clock's own cost: "
                      f"{(median['usual'] - floor) / (median['realtalk'] - floor):5.2f}x")


if __name__ == "__main__":
    main()
