"""Downlink cost: receive a stream of 20 ms ``response.output_audio.delta`` events over loopback
and parse each into a typed event, with realtalk (``realtalk.connect`` + ``recv``) and, side by
side on the same stream from the same server, the ``openai`` package's realtime connection
(``AsyncOpenAI(websocket_base_url=...).realtime.connect`` + ``recv``). realtalk is measured
twice on asyncio: ``recv`` (two wake-ups of the event loop per event: read, then resume the
awaiting task) and ``consume(handler)`` (one: the event is parsed and handed over where it is
read).

The server (realtalk's own ``WebSocketServer``) runs in a separate process, so the CPU time
measured in this process is the client's alone. Each round opens a connection, receives
``EVENTS`` events and closes. ``extra_info`` records ``cpu_us_per_event`` (process CPU time of
the receive loop divided by the events) and ``events_per_s`` (wall clock of the same loop).

    .venv/bin/python -m pytest benches/bench_transport.py --benchmark-only \
        --benchmark-columns=median,iqr,ops -p no:cacheprovider

Three streams: ``burst-plain`` (the server writes 50 events per write, no compression: the
clients are the bottleneck), ``burst-deflate`` (the same with permessage-deflate, both clients'
default; compressed once per set of agreed parameters and then written as it stands, since
compressing live costs the server more than inflating costs either client), ``paced-plain`` (one event per write, 0.5 ms apart: every event wakes the client on
its own, which measures the per-wakeup cost).
"""

from __future__ import annotations

import base64
import functools
import json
import multiprocessing
import statistics
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

EVENTS = 4000
BURST = 50  # events per server write in the "burst" stream
PACE = 0.0005  # seconds between events in the "paced" stream: each arrives on its own
SAMPLES_PER_20MS = 480  # 24 kHz pcm16
ROUNDS = 5


def make_stream() -> list[bytes]:
    """What a live GA server sends for one spoken answer: one delta per 20 ms of audio."""
    rng = __import__("random").Random(1)
    events = []
    for index in range(EVENTS):
        # A quiet 440 Hz-ish tone with noise: audio-like, not a repeated constant.
        audio = bytes(rng.getrandbits(8) if i % 2 else (index + i) % 7 for i in range(960))
        events.append(
            json.dumps(
                {
                    "type": "response.output_audio.delta",
                    "event_id": f"event_{index:021d}",
                    "response_id": "resp_C9G5RJeJ2gF77mV7f2B1j",
                    "item_id": "item_C9G5RJeJ2gF77mV7f2B1k",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": base64.b64encode(audio).decode(),
                    "obfuscation": "dGs9Yk",
                },
                separators=(",", ":"),
            ).encode()
        )
    return events


def compressed_bursts(stream: list[bytes], agreed: Any) -> list[bytes]:
    """The stream as permessage-deflate frames, ``BURST`` per write, compressed the way the
    server's agreed extension compresses them (a fresh context, the same parameters)."""
    from websockets.extensions.permessage_deflate import PerMessageDeflate
    from websockets.frames import Frame, Opcode

    # (websockets keeps the agreed parameters in private attributes)
    deflate = PerMessageDeflate(
        agreed.remote_no_context_takeover,
        agreed.local_no_context_takeover,
        agreed.remote_max_window_bits,
        agreed.local_max_window_bits,
        agreed.compress_settings,
    )
    frames = [
        Frame(Opcode.TEXT, event).serialize(mask=False, extensions=[deflate]) for event in stream
    ]
    return [b"".join(frames[start : start + BURST]) for start in range(0, len(frames), BURST)]


def run_server(port_queue: Any) -> None:
    from realtalk.transport import WebSocket, WebSocketServer

    stream = make_stream()
    compressed: dict[tuple[Any, ...], list[bytes]] = {}

    async def handler(ws: WebSocket) -> None:
        assert ws.request is not None
        extensions = ws._protocol.extensions
        if ws.request.query.get("mode") == "paced":
            for event in stream:
                await ws.send_text(event)
                await anyio.sleep(PACE)
        elif extensions:
            # Compressing costs the server more than either client spends inflating: compressed
            # once per set of agreed parameters, the stream is then written as it stands, so
            # that the burst measures the clients, not the server's zlib. (No other frame is
            # sent before the close, whose control frame is never compressed.)
            (agreed,) = extensions
            key = (
                agreed.remote_no_context_takeover,
                agreed.local_no_context_takeover,
                agreed.remote_max_window_bits,
                agreed.local_max_window_bits,
                repr(agreed.compress_settings),
            )
            if key not in compressed:
                compressed[key] = compressed_bursts(stream, agreed)
            for burst in compressed[key]:
                await ws._stream.send(burst)
        else:
            for start in range(0, len(stream), BURST):
                await ws.send_texts(stream[start : start + BURST])
        async for _ in ws:
            pass

    async def main() -> None:
        async with WebSocketServer(handler, ping_interval=None) as server:
            port_queue.put(server.port)
            await anyio.sleep_forever()

    anyio.run(main)


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    process = context.Process(target=run_server, args=(port_queue,), daemon=True)
    process.start()
    try:
        yield port_queue.get(timeout=60)
    finally:
        process.terminate()
        process.join(10)


class Meter:
    """CPU and wall time of the receive loops of all rounds."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 0.0
        self.events = 0

    def record(self, cpu: float, wall: float, events: int) -> None:
        self.cpu += cpu
        self.wall += wall
        self.events += events

    def report(self, benchmark: Any) -> None:
        benchmark.extra_info["cpu_us_per_event"] = round(self.cpu / self.events * 1e6, 2)
        benchmark.extra_info["events_per_s"] = round(self.events / self.wall)
        print(
            f"\n{benchmark.name}: {self.cpu / self.events * 1e6:.2f} us CPU/event, "
            f"{self.events / self.wall:,.0f} events/s"
        )


class _Enough(Exception):
    """Ends a consume() once the round has its events."""


async def realtalk_receive(
    port: int, meter: Meter, compression: Any, mode: str, *, consume: bool = False
) -> None:
    """The round through ``recv`` in a loop, or through ``consume(handler)``."""
    import realtalk

    from realtalk.transport import WebSocketOptions

    async with realtalk.connect(
        f"ws://127.0.0.1:{port}/v1?mode={mode}",
        api_key="sk-local",
        options=WebSocketOptions(compression=compression),
    ) as conn:
        first = await conn.recv()  # the stream is flowing
        assert first.type == "response.output_audio.delta"
        # Like the openai round: a count and the last event, not a list of them all (thousands
        # of live events would make the garbage collector's passes longer for one side only).
        received = 0
        event: Any = None
        cpu, wall = time.process_time(), time.perf_counter()
        if consume:

            def handle(delivered: Any) -> None:
                nonlocal received, event
                received += 1
                event = delivered
                if received == EVENTS - 1:
                    raise _Enough

            try:
                await conn.consume(handle)
            except _Enough:
                pass
        else:
            for _ in range(EVENTS - 1):
                event = await conn.recv()
                received += 1
        meter.record(time.process_time() - cpu, time.perf_counter() - wall, EVENTS - 1)
        assert received == EVENTS - 1 and event.delta


async def openai_receive(port: int, meter: Meter, compression: Any, mode: str) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="sk-local", websocket_base_url=f"ws://127.0.0.1:{port}/v1")
    options: Any = {} if compression == "deflate" else {"compression": None}
    async with client.realtime.connect(
        model="gpt-realtime", extra_query={"mode": mode}, websocket_connection_options=options
    ) as conn:
        first = await conn.recv()
        assert first.type == "response.output_audio.delta"
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(EVENTS - 1):
            event = await conn.recv()
        meter.record(time.process_time() - cpu, time.perf_counter() - wall, EVENTS - 1)
        assert event.delta  # type: ignore[union-attr]
    await client.close()


CASES = {
    # name: (round, anyio backend, backend options)
    "realtalk-asyncio": (realtalk_receive, "asyncio", {}),
    "realtalk-trio": (realtalk_receive, "trio", {}),
    "realtalk-consume-asyncio": (functools.partial(realtalk_receive, consume=True), "asyncio", {}),
    "openai-asyncio": (openai_receive, "asyncio", {}),
    # uvloop (a C event loop that latency-minded servers install) under both clients
    "realtalk-uvloop": (realtalk_receive, "asyncio", {"use_uvloop": True}),
    "realtalk-consume-uvloop": (
        functools.partial(realtalk_receive, consume=True),
        "asyncio",
        {"use_uvloop": True},
    ),
    "openai-uvloop": (openai_receive, "asyncio", {"use_uvloop": True}),
}


STREAMS = {
    # (mode, compression): the server writes bursts of events, or one event at a time
    "burst-plain": ("burst", None),
    "burst-deflate": ("burst", "deflate"),
    "paced-plain": ("paced", None),
}


@pytest.mark.parametrize("stream", list(STREAMS))
@pytest.mark.parametrize("case", list(CASES))
def test_receive_audio_deltas(benchmark: Any, server_port: int, case: str, stream: str) -> None:
    receive, backend, options = CASES[case]
    mode, compression = STREAMS[stream]
    benchmark.group = f"transport: receive {EVENTS} audio deltas, {stream}"
    meter = Meter()

    def one_round() -> None:
        anyio.run(
            receive, server_port, meter, compression, mode, backend=backend, backend_options=options
        )

    anyio.run(  # warm up
        receive, server_port, Meter(), compression, mode, backend=backend, backend_options=options
    )
    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    meter.report(benchmark)


PAIRED_WAYS = ("realtalk-asyncio", "realtalk-consume-asyncio", "openai-asyncio")


def test_paced_ratio_with_the_ways_alternating(benchmark: Any, server_port: int) -> None:
    """The paced stream again, the three asyncio ways taking turns within each round, so that a
    change in the host's load between rows does not tilt the ratio (the rows above run one
    way's rounds back to back). Reports each way's median and the median of the per-round
    ratios to the openai package."""
    benchmark.group = f"transport: receive {EVENTS} audio deltas, paced, ways alternating"
    per_round: dict[str, list[float]] = {way: [] for way in PAIRED_WAYS}

    def one_round() -> None:
        for way in PAIRED_WAYS:
            receive, backend, options = CASES[way]
            meter = Meter()
            anyio.run(
                receive, server_port, meter, None, "paced", backend=backend, backend_options=options
            )
            per_round[way].append(meter.cpu / meter.events * 1e6)

    benchmark.pedantic(one_round, rounds=ROUNDS + 2, iterations=1)  # 7: an odd count, a true median
    openai = per_round["openai-asyncio"]
    for way in PAIRED_WAYS:
        figures = per_round[way]
        benchmark.extra_info[f"{way}_cpu_us_per_event"] = round(statistics.median(figures), 2)
        line = f"\n{way}: median {statistics.median(figures):.1f} us CPU/event"
        if way != "openai-asyncio":
            ratios = [theirs / ours for ours, theirs in zip(figures, openai, strict=True)]
            benchmark.extra_info[f"{way}_ratio"] = round(statistics.median(ratios), 2)
            line += (
                f", {statistics.median(ratios):.2f}x less than openai "
                f"(per round {min(ratios):.2f}-{max(ratios):.2f}x)"
            )
        print(line)
